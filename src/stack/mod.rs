//! Each route's steps, chosen once at start and composed as tower layers,
//! outermost first:
//!
//! ```text
//! nested-encoding check (token routes) → CSRF → session → access
//!   → claim headers → token → leaf
//! ```
//!
//! A route with `auth: none` has no CSRF, session or token layer at all; a
//! route without `token: user` or `exchange` has no session token layer, one without `access` or
//! `step_up` no access layer, one without `claim_headers` no claim-headers
//! layer; the leaf is the upstream, the route's static files, or (on a
//! `forward_auth` route) the answer to an ingress's check. Nothing
//! below the router asks what kind of route it serves. The outer steps
//! shared by every route (sensitive headers, request id, trace span, access
//! log, limits, routing) live in [`crate::app`], which hands each request
//! to its route's stack with a [`Context`] in its extensions and turns any
//! error a layer returns into the problem response (the one rescue). To add
//! a step to some routes (another token kind, DPoP, a rate
//! limit), write a [`step::Step`] here and choose it in [`build`].

pub mod access;
mod context;
pub mod csrf;
pub mod identity;
pub mod leaf;
pub mod raw_path;
pub mod session;
pub mod step;
pub mod token;

use std::sync::Arc;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::auth::Auth;
use crate::body::Body;
use crate::config::{AuthMode, TokenKind};
use crate::error::{BoxError, Refusal};
use crate::routes::{Leaf as LeafKind, Route};
use crate::upstream::Upstream;

pub use self::context::Context;
pub use self::step::ResponseFuture;
use self::step::Step;

/// One route's whole pipeline, type-erased.
pub type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// Builds `route`'s stack: the layers its configuration asks for, over its
/// leaf.
pub fn build(
    route: &Arc<Route>,
    auth: Option<&Arc<Auth>>,
    upstream: &Upstream,
    public_host: &Arc<str>,
) -> RouteService {
    let config = &route.config;
    let leaf = leaf::Leaf::new(route.clone(), upstream.clone(), public_host.clone());
    let nested = (config.token != TokenKind::None).then(|| raw_path::NestedEncoding.into_layer());
    // `token: client` needs no session; config makes sure `oidc` is there.
    let client = match (config.token, auth, config.audience.as_ref()) {
        (TokenKind::Client, Some(auth), Some(audience)) => {
            Some(token::ClientToken::new(&auth.refresher, audience).into_layer())
        }
        _ => None,
    };
    if config.auth == AuthMode::None {
        let service = ServiceBuilder::new()
            .option_layer(nested)
            .option_layer(client)
            .service(leaf);
        return BoxCloneSyncService::new(service);
    }
    let Some(auth) = auth else {
        // A protected route with no login configured serves nobody.
        let refuse =
            tower::service_fn(|_| async { Err::<Response<Body>, BoxError>(Refusal::LoginRequired.into()) });
        return BoxCloneSyncService::new(refuse);
    };
    // Static files carry their own caching rules; every other answer is
    // made for one user.
    let no_store = !matches!(route.leaf, LeafKind::Static(_));
    let service = ServiceBuilder::new()
        .option_layer(nested)
        .layer(csrf::CsrfGuard::new(auth, config).into_layer())
        .layer(session::SessionStep::new(&auth.sessions, config, no_store).into_layer())
        .option_layer(access::AccessGuard::for_route(config, &auth.sessions.clock).map(Step::into_layer))
        .option_layer(identity::ClaimHeaders::for_route(config).map(Step::into_layer))
        .option_layer(token::UserToken::for_route(&auth.refresher, config).map(Step::into_layer))
        .option_layer(client)
        .service(leaf);
    BoxCloneSyncService::new(service)
}
