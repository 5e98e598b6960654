//! The token step: the access token a route sends upstream, handed to the
//! leaf as the `Authorization` value to inject. Its source is chosen once,
//! when the route's stack is built:
//!
//! - the session's own token (`token: user`);
//! - the route's own token for its `resource` and `scopes` (`token: user`
//!   with either), obtained with the session's refresh token the first time
//!   the route is called and renewed by the same refresh, so a route's
//!   upstream never sees a token meant for another's (PX-23);
//! - a token the IdP gives in exchange for the session's (`token:
//!   exchange`, RFC 8693), for the route's `exchange` audience, resource
//!   and scopes, obtained the first time the route is called and exchanged
//!   again when due, the session's access token refreshed first when it is
//!   the one presented.
//!
//! All three are taken from the session the session layer found, refreshed
//! or exchanged when due (one grant per token and expiry across replicas,
//! `refresh.rs`). Without a session (an `optional` route), nothing is added.
//!
//! - cloakroom's own client's token (`token: client`): no session needed,
//!   one per (resource, scopes) shared by every replica through the store
//!   (`refresh/client.rs`).
//!
//! Whichever the source, a token bound to a DPoP key (`oidc.dpop`) goes as
//! `Authorization: DPoP`, and the leaf adds a proof for the request it
//! makes ([`Credential::Dpop`]); any other as `Authorization: Bearer`. A
//! token whose key has left the ring is renewed before it is sent.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};

use crate::body::Body;
use crate::config::{Audience, RouteConfig, SubjectToken, TokenKind};
use crate::error::BoxError;
use crate::oidc::dpop::Bound;
use crate::refresh::{Fresh, RefreshError, Refresher, Target};
use crate::session::Loaded;
pub use crate::upstream::Credential;

use super::step::{Next, ResponseFuture, Step};

/// Puts the session's token for the route, refreshed when due, in the
/// request's extensions for the leaf.
#[derive(Clone)]
pub struct UserToken {
    refresher: Arc<Refresher>,
    target: Target,
}

impl UserToken {
    /// The route's source, on a route whose token comes from the session:
    /// with `token: user`, its own token when it names an audience, else
    /// the session's; with `token: exchange`, the one exchanged for it.
    pub fn for_route(refresher: &Arc<Refresher>, route: &RouteConfig) -> Option<Self> {
        let target = match (route.token, &route.exchange) {
            (TokenKind::User, _) => route
                .audience
                .as_ref()
                .map_or(Target::User, |a| Target::Resource(a.clone())),
            (TokenKind::Exchange, Some(exchange)) => Target::Exchange(exchange.clone()),
            _ => return None,
        };
        Some(Self {
            refresher: refresher.clone(),
            target,
        })
    }
}

impl Step for UserToken {
    fn call(&self, mut request: Request<Body>, next: Next) -> ResponseFuture {
        let (refresher, target) = (self.refresher.clone(), self.target.clone());
        Box::pin(async move {
            if let Some(loaded) = super::session::loaded(&request).cloned() {
                let token = match &target {
                    Target::User => access_token(&refresher, &loaded).await?,
                    Target::Resource(_) | Target::Exchange(_) => {
                        own_token(&refresher, &loaded, &target).await?
                    }
                };
                request.extensions_mut().insert(credential(&refresher, &token)?);
            }
            next.run(request).await
        })
    }
}

/// How long a request with a still-valid access token waits for its refresh.
const REFRESH_PATIENCE: Duration = Duration::from_secs(2);

/// The session's access token, refreshed first when it is about to expire.
/// While the IdP or the store cannot refresh it, a token that is still
/// valid is used as it is (RF-10); an expired one gives a 503 that keeps
/// the session (RF-11).
async fn access_token(refresher: &Arc<Refresher>, loaded: &Loaded) -> Result<Fresh, RefreshError> {
    let now = refresher.now();
    let record = &loaded.record;
    let held = || Fresh {
        access_token: Arc::new(record.access_token.clone()),
        expires_at: record.access_expires_at,
        jkt: record.access_jkt.clone(),
    };
    if refresher.is_fresh(record) {
        return Ok(held());
    }
    // A token whose DPoP key left the ring cannot be sent, valid or not.
    let usable = |now| record.access_expires_at > now && refresher.provable(record.access_jkt.as_deref());
    if record.refresh_token.is_none() {
        // Nothing to refresh with: the token serves until it expires (LG-18).
        if usable(now) {
            return Ok(held());
        }
        return Err(RefreshError::Ended);
    }
    let flight = refresher.refresh(loaded);
    let valid_for = Duration::from_secs(record.access_expires_at.saturating_sub(now));
    let refreshed = if valid_for > 2 * REFRESH_PATIENCE && usable(now) {
        // The current token still works for a while: a slow IdP delays this
        // request by at most REFRESH_PATIENCE; the refresh goes on without it.
        tokio::time::timeout(REFRESH_PATIENCE, flight)
            .await
            .unwrap_or(Err(RefreshError::Pending))
    } else {
        flight.await
    };
    match refreshed {
        Ok(fresh) => Ok(fresh),
        // Judged now, not before the refresh: a slow IdP may have outlived it.
        Err(e) if !matches!(e, RefreshError::Ended) && usable(refresher.now()) => {
            tracing::debug!(error = %e, "refresh postponed; the current access token is still valid");
            Ok(held())
        }
        Err(e) => Err(e),
    }
}

/// Puts a token of cloakroom's own client for the route's audience in the
/// request's extensions for the leaf, whoever the caller is.
#[derive(Clone)]
pub struct ClientToken {
    refresher: Arc<Refresher>,
    audience: Arc<Audience>,
}

impl ClientToken {
    pub fn new(refresher: &Arc<Refresher>, audience: &Arc<Audience>) -> Self {
        Self {
            refresher: refresher.clone(),
            audience: audience.clone(),
        }
    }
}

impl Step for ClientToken {
    fn call(&self, mut request: Request<Body>, next: Next) -> ResponseFuture {
        let (refresher, audience) = (self.refresher.clone(), self.audience.clone());
        Box::pin(async move {
            let token = refresher.client_token(&audience).await?;
            request.extensions_mut().insert(credential(&refresher, &token)?);
            next.run(request).await
        })
    }
}

/// The route's own token: the one the session holds while fresh, else a
/// grant for it (the first call, or renewal when due). As for the
/// session's token, one still valid serves while the IdP cannot renew it;
/// without one, the IdP's refusal or absence is a 502/503 that keeps the
/// session (only `invalid_grant` to a refresh grant, the refresh token
/// itself gone, ends it). An exchange presents the session's access token
/// refreshed first when due, so the IdP is never handed a stale one.
async fn own_token(refresher: &Arc<Refresher>, loaded: &Loaded, target: &Target) -> Result<Fresh, BoxError> {
    let record = &loaded.record;
    let held = refresher.held(record, target);
    if refresher.is_fresh_for(record, target) {
        if let Some(held) = held {
            return Ok(held);
        }
    }
    let refreshed = match target {
        Target::Exchange(exchange) if exchange.subject == SubjectToken::AccessToken => {
            match access_token(refresher, loaded).await {
                Ok(_) => refresher.refresh_target(loaded, target).await,
                Err(e) => Err(e),
            }
        }
        _ => refresher.refresh_target(loaded, target).await,
    };
    match (refreshed, held) {
        (Ok(fresh), _) => Ok(fresh),
        (Err(e), Some(held))
            if !matches!(e, RefreshError::Ended)
                && held.expires_at > refresher.now()
                && refresher.provable(held.jkt.as_deref()) =>
        {
            tracing::debug!(error = %e, "renewal postponed; the route's token is still valid");
            Ok(held)
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// How `token` goes upstream: `DPoP` when it is bound to a key, else
/// `Bearer`.
fn credential(refresher: &Refresher, token: &Fresh) -> Result<Credential, BoxError> {
    let Some(jkt) = &token.jkt else {
        return Ok(Credential::Bearer(bearer_header(token.access_token.expose())?));
    };
    // Checked before (`provable`); a reload may have taken the key away
    // since: this request fails, and the next renews the token.
    refresher
        .dpop()
        .and_then(|dpop| Bound::new(dpop, &token.access_token, jkt))
        .map(Credential::Dpop)
        .ok_or_else(|| RefreshError::Pending.into())
}

/// `Authorization: Bearer <token>`, marked sensitive so no layer logs it.
fn bearer_header(token: &str) -> Result<HeaderValue, BoxError> {
    // One buffer, handed to the header as it is (no second copy): this
    // runs on every request of a token route.
    let mut bytes = bytes::BytesMut::with_capacity(7 + token.len());
    bytes.extend_from_slice(b"Bearer ");
    bytes.extend_from_slice(token.as_bytes());
    let mut value = HeaderValue::from_maybe_shared(bytes.freeze())?;
    value.set_sensitive(true);
    Ok(value)
}
