//! The leaf of a route's stack: its upstream (streaming proxy, WebSocket),
//! its static files, or, on a `forward_auth` route, the answer to an
//! ingress's check.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::header;
use http::{Request, Response};
use tower::Service;

use super::identity::IdentityHeaders;
use super::step::ResponseFuture;
use super::token::Credential;
use crate::body::Body;
use crate::config::AuthMode;
use crate::error::BoxError;
use crate::routes::{Leaf as LeafKind, Route};
use crate::session::SessionEnd;
use crate::static_files::Audience;
use crate::upstream::forwarded::Forwarded;
use crate::upstream::{Forward, Upstream};

/// Sends a request where its route leads.
#[derive(Clone)]
pub struct Leaf {
    route: Arc<Route>,
    upstream: Upstream,
    /// `public_url`'s host and port, the `X-Forwarded-Host` of untrusted peers.
    public_host: Arc<str>,
}

impl Leaf {
    pub fn new(route: Arc<Route>, upstream: Upstream, public_host: Arc<str>) -> Self {
        Self {
            route,
            upstream,
            public_host,
        }
    }
}

impl Service<Request<Body>> for Leaf {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let leaf = self.clone();
        Box::pin(async move {
            let context = super::context::context(&request)?.clone();
            if let LeafKind::Static(files) = &leaf.route.leaf {
                let audience = match leaf.route.config.auth {
                    AuthMode::None => Audience::Anyone,
                    _ => Audience::SignedIn,
                };
                return files.serve(request, &context.path, audience).await;
            }
            if let LeafKind::ForwardAuth = &leaf.route.leaf {
                return grant(&mut request);
            }
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| request.uri().authority().map(|a| a.to_string()));
            let forwarded = Forwarded::from_request(
                request.headers(),
                context.peer.ip(),
                context.trusted,
                host.as_deref(),
                &leaf.public_host,
            );
            let forward = Forward {
                path: context.path,
                forwarded,
                request_id: context.request_id,
                credential: request.extensions_mut().remove::<Credential>(),
                identity: request
                    .extensions_mut()
                    .remove::<IdentityHeaders>()
                    .map(|h| h.0)
                    .unwrap_or_default(),
                session_end: request.extensions_mut().remove::<SessionEnd>(),
            };
            leaf.upstream.forward(&leaf.route, request, forward).await
        })
    }
}

/// A forward-auth route's answer to the ingress: 200 with the headers the
/// upstream would have been sent (the bearer, the claim headers), for the
/// ingress to copy onto the request it forwards.
fn grant(request: &mut Request<Body>) -> Result<Response<Body>, BoxError> {
    let mut response = Response::new(crate::body::empty());
    let headers = response.headers_mut();
    match request.extensions_mut().remove::<Credential>() {
        Some(Credential::Bearer(bearer)) => {
            headers.insert(header::AUTHORIZATION, bearer);
        }
        // The config refuses a forward_auth route with a token under
        // `oidc.dpop`: only the caller of the API can make its proofs.
        Some(Credential::Dpop(_)) => return Err("a DPoP-bound token cannot be handed to an ingress".into()),
        None => {}
    }
    if let Some(IdentityHeaders(identity)) = request.extensions_mut().remove::<IdentityHeaders>() {
        for (name, value) in identity {
            headers.insert(name, value);
        }
    }
    Ok(response)
}
