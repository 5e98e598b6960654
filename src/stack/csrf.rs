//! CSRF, for protected routes: the policy is chosen once per route from its
//! configuration (API call, page, or fetch-metadata reads); a WebSocket
//! handshake is always checked by its `Origin` (CS-10).

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::auth::Auth;
use crate::body::Body;
use crate::config::{CsrfMode, RouteConfig};
use crate::error::BoxError;
use crate::upstream::hygiene;

use super::ResponseFuture;

/// What a route's requests must show to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// `X-CSRF: 1`, never cross-site, an allowed origin for unsafe methods.
    Api,
    /// Pages take navigations; unsafe methods need an allowed origin (CS-12).
    Page,
    /// Reads may show `Sec-Fetch-Site: same-origin` instead of `X-CSRF`.
    FetchMetadata,
}

/// Adds [`CsrfGuard`].
#[derive(Clone)]
pub struct CsrfLayer {
    auth: Arc<Auth>,
    policy: Policy,
}

#[derive(Clone)]
pub struct CsrfGuard<S> {
    inner: S,
    auth: Arc<Auth>,
    policy: Policy,
}

impl CsrfLayer {
    pub fn new(auth: &Arc<Auth>, route: &RouteConfig) -> Self {
        let policy = if route.login_redirect {
            Policy::Page
        } else if route.csrf == CsrfMode::FetchMetadata {
            Policy::FetchMetadata
        } else {
            Policy::Api
        };
        Self {
            auth: auth.clone(),
            policy,
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CsrfGuard {
            inner,
            auth: self.auth.clone(),
            policy: self.policy,
        }
    }
}

impl<S> Service<Request<Body>> for CsrfGuard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (method, headers) = (request.method(), request.headers());
        let csrf = &self.auth.csrf;
        let checked = if hygiene::is_websocket_upgrade(headers) {
            csrf.check_websocket(headers)
        } else {
            match self.policy {
                Policy::Api => csrf.check(method, headers),
                Policy::Page => csrf.check_unsafe(method, headers),
                Policy::FetchMetadata => csrf.check_fetch_metadata(method, headers),
            }
        };
        match checked {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(refusal) => Box::pin(std::future::ready(Err(refusal.into()))),
        }
    }
}
