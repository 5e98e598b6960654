//! The admin listener: `/healthz` (the process is up) and `/readyz` (it can
//! serve: the session store answers). Nothing here reveals session data.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::{Code, Problem};
use crate::oidc::Idp;
use crate::session::SessionStore;

/// Answers one admin request.
pub async fn handle<B>(
    request: Request<B>,
    store: Arc<dyn SessionStore>,
    idp: Option<Arc<Idp>>,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Problem::new(StatusCode::METHOD_NOT_ALLOWED, Code::MethodNotAllowed).into_response("-");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match store.ping().await {
            Ok(()) if idp.as_ref().is_some_and(|i| !i.is_ready()) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "IdP not discovered yet\n")
            }
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(e) => {
                tracing::warn!(error = %e, "not ready: session store");
                text(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable\n")
            }
        },
        _ => Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("-"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
