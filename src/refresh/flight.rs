//! What every renewal shares, whatever its token (a session's, a route's,
//! the client's): the [`Refresher`] and this replica's flights, one per
//! token; the lease across replicas, renewed while a grant runs; when a
//! token is due; and how a renewal fails ([`RefreshError`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

use crate::oidc::{Idp, IdpError};
use crate::secret::AccessToken;
use crate::session::lock::RefreshLease;
use crate::session::Sessions;

/// How long the lease lives without renewal: above a slow token call.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(15);
/// How long a caller waits for another replica's refresh.
pub(super) const OBTAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for this replica's flight: then it answers 503
/// `refresh_pending`, and the flight goes on, waiting for the IdP's answer
/// up to [`crate::oidc::TOKEN_CALL_TIMEOUT`] so that a rotated refresh
/// token is kept however late it comes.
pub(super) const FLIGHT_WAIT: Duration = Duration::from_secs(15);
pub(super) const POLL: Duration = Duration::from_millis(50);

/// What made a refresh fail, shared by every caller of one flight.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a refresh gave no new token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// The grant is gone (`invalid_grant`, identity changed, no refresh
    /// token, session deleted): log in again.
    #[error("the session can no longer be refreshed")]
    Ended,
    #[error("the IdP is unavailable for refresh")]
    IdpDown(#[source] Cause),
    #[error("the session store is unavailable for refresh")]
    StoreDown(#[source] Cause),
    #[error("another refresh of this session did not finish in time")]
    Pending,
    /// The IdP would not exchange the session's token for a route's (an
    /// OAuth error, or an answer that is no token): the route's
    /// configuration or the IdP's, never the user's; the session goes on.
    #[error("the IdP did not exchange the session's token")]
    ExchangeRefused(#[source] Cause),
    /// The IdP answered with tokens cloakroom must not use (not bound to
    /// its DPoP key): a 502 that keeps the session.
    #[error("the IdP's answer cannot be used")]
    IdpAnswer(#[source] Cause),
}

// === impl RefreshError ===

impl RefreshError {
    pub(super) fn idp(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::IdpDown(Arc::new(cause))
    }

    pub(super) fn store(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::StoreDown(Arc::new(cause))
    }

    /// An IdP failure as callers see it: an answer that cannot be used
    /// (502), else the IdP down (503).
    pub(super) fn from_idp(e: IdpError) -> Self {
        match e {
            IdpError::Unbound { token_type, .. } => Self::IdpAnswer(Arc::new(IdpError::Unbound {
                token_type,
                refresh_token: None,
            })),
            e => Self::idp(e),
        }
    }
}

/// A usable access token, when it expires, and the DPoP key it is bound
/// to (its thumbprint; `None` for a bearer token).
#[derive(Clone)]
pub struct Fresh {
    pub access_token: Arc<AccessToken>,
    pub expires_at: u64,
    pub jkt: Option<String>,
}

/// In-flight refreshes of this replica, by session store key.
type Flights = std::sync::Mutex<
    std::collections::HashMap<String, Shared<BoxFuture<'static, Result<Fresh, RefreshError>>>>,
>;

/// Refreshes sessions' tokens at the IdP: what a refresh needs, and the
/// flights in progress in this replica.
pub struct Refresher {
    pub(super) sessions: Arc<Sessions>,
    pub(super) idp: Arc<Idp>,
    /// Shared with the refreshers a config reload builds from this one, so
    /// a request after a reload joins a flight started before it.
    pub(super) flights: Arc<Flights>,
    /// Client tokens (`token: client`) this replica last saw; shared with
    /// reloaded refreshers as the flights are.
    pub(super) seen: Arc<Seen>,
}

/// The client tokens this replica last saw, by store key, with when each
/// is due for renewal (milliseconds).
pub(super) type Seen = std::sync::Mutex<std::collections::HashMap<String, (Fresh, u64)>>;

// === impl Refresher ===

impl Refresher {
    pub fn new(sessions: Arc<Sessions>, idp: Arc<Idp>) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            idp,
            flights: Default::default(),
            seen: Default::default(),
        })
    }

    /// A refresher for a reloaded config that shares this one's flights:
    /// one flight per session, whichever config its callers started under.
    pub fn reloaded(&self, sessions: Arc<Sessions>, idp: Arc<Idp>) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            idp,
            flights: self.flights.clone(),
            seen: self.seen.clone(),
        })
    }

    /// What token expiry is judged by.
    pub fn now(&self) -> u64 {
        self.sessions.clock.now()
    }

    /// Joins this replica's flight under `key`, or starts the one `start`
    /// makes, as a task of its own: callers that go away do not cancel it,
    /// and its store and IdP calls are spans of the request that started it
    /// (traces on). The flight leaves the map when it lands; a caller waits
    /// for it at most [`FLIGHT_WAIT`]. One mechanism for every kind of
    /// token (a session's, a route's, the client's).
    pub(super) async fn join_flight<F>(
        &self,
        key: String,
        start: impl FnOnce() -> F,
    ) -> Result<Fresh, RefreshError>
    where
        F: std::future::Future<Output = Result<Fresh, RefreshError>> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let (flights, work) = (self.flights.clone(), start());
                    let task = tokio::spawn(
                        async move {
                            let result = work.await;
                            flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                            result
                        }
                        .instrument(tracing::Span::current()),
                    );
                    async move { task.await.unwrap_or_else(|e| Err(RefreshError::store(e))) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        tokio::time::timeout(FLIGHT_WAIT, flight)
            .await
            .unwrap_or(Err(RefreshError::Pending))
    }

    /// Whether a token bound to `jkt` (or to nothing) can be sent: a key
    /// that left the ring (or DPoP switched off) leaves its tokens to be
    /// renewed, and a bearer token serves until it is.
    pub fn provable(&self, jkt: Option<&str>) -> bool {
        match jkt {
            None => true,
            Some(jkt) => self.idp.dpop().is_some_and(|dpop| dpop.holds(jkt)),
        }
    }

    /// Proofs for bound tokens, with `oidc.dpop`.
    pub fn dpop(&self) -> Option<&Arc<crate::oidc::dpop::Dpop>> {
        self.idp.dpop()
    }
}

/// Runs `work` while renewing `lease`, then releases it.
pub(super) async fn renewing<T>(
    refresher: &Refresher,
    mut lease: RefreshLease,
    work: impl std::future::Future<Output = T>,
) -> T {
    let store = refresher.sessions.store.as_ref();
    tokio::pin!(work);
    let mut tick = tokio::time::interval(LEASE_TTL / 3);
    tick.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tick.tick() => {
                if !matches!(lease.renew(store, LEASE_TTL).await, Ok(true)) {
                    tracing::warn!("refresh lease lost while the IdP call was in flight");
                }
            }
        }
    };
    let _ = lease.release(store).await;
    result
}

/// When a token obtained at `issued` (ms) that lives `lifetime` (s) and
/// expires at `expires_at` (s) is renewed: `refresh_skew` before it
/// expires, but never before half of its life has passed (RF-21, the
/// session's `refresh_point_ms`).
pub(super) fn point_ms(skew: Duration, issued: Option<u64>, lifetime: Option<u64>, expires_at: u64) -> u64 {
    let skew = skew.as_millis() as u64;
    match (issued, lifetime) {
        (Some(issued), Some(lifetime)) => {
            let lifetime = lifetime.saturating_mul(1000);
            issued.saturating_add(lifetime - skew.min(lifetime / 2))
        }
        // Written by an earlier release: the configured skew, as it was.
        _ => (expires_at.saturating_mul(1000)).saturating_sub(skew),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reloaded_refresher_shares_the_flights_of_the_running_one() {
        use crate::config::{Config, MapEnv};
        let config = Config::load(
            "public_url: http://localhost:8080
oidc: {issuer: 'http://localhost:9000', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
routes: [{path: /, upstream: 'http://a'}]",
            &MapEnv::default(),
        )
        .unwrap();
        let store: Arc<dyn crate::session::SessionStore> = Arc::new(crate::session::MemoryStore::new());
        let sessions = || {
            Arc::new(
                Sessions::new(&config, store.clone(), crate::Clock::manual(), Default::default()).unwrap(),
            )
        };
        let idp = Idp::new(config.oidc.clone().unwrap(), crate::Clock::manual()).unwrap();
        let running = Refresher::new(sessions(), idp.clone());
        let reloaded = running.reloaded(sessions(), idp);
        assert!(Arc::ptr_eq(&running.flights, &reloaded.flights));
        assert!(!Arc::ptr_eq(&running.sessions, &reloaded.sessions));
    }
}
