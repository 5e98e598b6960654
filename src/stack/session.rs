//! The session, for protected routes: opens the request's session and puts
//! it in the request's extensions for the layers below; without one, a
//! `required` route refuses (401, or a redirect to login for a page load)
//! and an `optional` one goes on anonymously. On the way back: a cookie
//! sealed with an older key is re-issued (KR-01), and a response made for
//! one user is marked for no shared cache (T41), and its body, like a
//! WebSocket tunnel the leaf opens, ends when the session does
//! ([`crate::session::ending`]).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request};

use super::step::{Next, ResponseFuture, Step};
use crate::body::Body;
use crate::config::{AuthMode, RouteConfig};
use crate::error::{BoxError, Refusal};
use crate::session::{Loaded, Sessions};

/// Opens the request's session for the steps below.
#[derive(Clone)]
pub struct SessionStep {
    sessions: Arc<Sessions>,
    required: bool,
    login_redirect: bool,
    /// The leaf's answers are marked `no-store`; static files carry their
    /// own caching rules.
    no_store: bool,
}

impl SessionStep {
    pub fn new(sessions: &Arc<Sessions>, route: &RouteConfig, no_store: bool) -> Self {
        Self {
            sessions: sessions.clone(),
            required: route.auth == AuthMode::Required,
            // An ingress cannot pass a redirect on from its check: it sends
            // the browser to log in on a 401 itself.
            login_redirect: route.login_redirect && !route.is_forward_auth(),
            no_store,
        }
    }

    /// Why a request without a session is refused: a page load on a page
    /// route is sent to log in and back; anything else gets a 401 it can
    /// act on (LG-21).
    fn login_required(&self, request: &Request<Body>) -> BoxError {
        if self.login_redirect && request.method() == Method::GET && is_navigation(request.headers()) {
            let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            return Box::new(Refusal::LoginRedirect(target.to_owned()));
        }
        Box::new(Refusal::LoginRequired)
    }
}

impl Step for SessionStep {
    fn call(&self, mut request: Request<Body>, next: Next) -> ResponseFuture {
        let step = self.clone();
        Box::pin(async move {
            let client = super::context::context(&request)?.client;
            let loaded = match step.sessions.load(request.headers(), client).await {
                Ok(loaded) => loaded,
                Err(e) if e.is::<Refusal>() => {
                    if step.required {
                        return Err(step.login_required(&request));
                    }
                    return next.run(request).await;
                }
                Err(e) => return Err(e),
            };
            let reseal = step.sessions.reseal(&loaded);
            // What outlives this call (a tunnel, a streamed answer) ends
            // with the session.
            let end = step.sessions.watch(&loaded);
            request.extensions_mut().insert(end.clone());
            request.extensions_mut().insert(Arc::new(loaded));
            let mut response = next.run(request).await?.map(|body| end.guard(body));
            for cookie in reseal {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            if step.no_store {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(response)
        })
    }
}

/// The session a request carries, put there by [`SessionStep`].
pub fn loaded(request: &Request<Body>) -> Option<&Arc<Loaded>> {
    request.extensions().get::<Arc<Loaded>>()
}

/// Whether a request is the browser loading a page, the only kind that can
/// follow a redirect to the IdP. A `fetch()` gets a 401 it can act on
/// instead of a redirect it cannot follow (LG-21).
fn is_navigation(headers: &http::HeaderMap) -> bool {
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode == "navigate";
    }
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let accept = header("accept");
    let wants_json = accept.contains("application/json") && !accept.contains("text/html");
    !wants_json && !header("x-requested-with").eq_ignore_ascii_case("XMLHttpRequest")
}
