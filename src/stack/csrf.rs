//! CSRF, for protected routes: the policy is chosen once per route from its
//! configuration (API call, page, or fetch-metadata reads); a WebSocket
//! handshake is always checked by its `Origin` (CS-10).

use std::sync::Arc;

use http::Request;

use super::step::{Next, ResponseFuture, Step};
use crate::auth::Auth;
use crate::body::Body;
use crate::config::{CsrfMode, RouteConfig};
use crate::upstream::hygiene;

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

/// Checks a request by its route's policy.
#[derive(Clone)]
pub struct CsrfGuard {
    auth: Arc<Auth>,
    policy: Policy,
}

impl CsrfGuard {
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

impl Step for CsrfGuard {
    fn call(&self, request: Request<Body>, next: Next) -> ResponseFuture {
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
            Ok(()) => next.run(request),
            Err(refusal) => Box::pin(std::future::ready(Err(refusal.into()))),
        }
    }
}
