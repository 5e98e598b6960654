//! The admin listener: `/healthz` (the process is up) and `/readyz` (it can
//! serve: the session store answers and the IdP is discovered). Nothing here
//! reveals session data.
//!
//! `/readyz` answers 200 or 503 with a JSON body naming what is not ready,
//! including the last discovery failure's cause (LG-27), e.g.
//! `{"ready":false,"session_store":"ok","idp":{"issuer":"https://idp.example.com","state":"failed","cause":"…"}}`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::body::{self, Body};
use crate::error::Code;
use crate::oidc::{DiscoveryState, Idp};
use crate::rescue::Problem;
use crate::session::SessionStore;

/// The IdP part of `/readyz`: `{"issuer", "state", "cause"}`.
#[derive(Serialize)]
struct IdpReadiness<'a> {
    issuer: &'a str,
    #[serde(flatten)]
    discovery: DiscoveryState,
}

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
        "/readyz" => readyz(&*store, idp.as_deref()).await,
        _ => Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("-"),
    }
}

async fn readyz(store: &dyn SessionStore, idp: Option<&Idp>) -> Response<Body> {
    let store_ok = match store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "not ready: session store");
            false
        }
    };
    let idp = idp.map(|i| IdpReadiness {
        issuer: i.issuer(),
        discovery: i.discovery_state(),
    });
    let ready = store_ok && idp.as_ref().is_none_or(|i| i.discovery == DiscoveryState::Ready);
    let body = json!({
        "ready": ready,
        "session_store": if store_ok { "ok" } else { "unavailable" },
        "idp": idp,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = respond(status, Bytes::from(format!("{body}\n")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = respond(status, Bytes::from_static(body.as_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
