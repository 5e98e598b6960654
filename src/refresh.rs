//! Token refresh with rotation, one at a time per session, across replicas.
//!
//! The failure this prevents (threat-model T26, §3.3): with rotating refresh
//! tokens, two callers presenting the same refresh token make the IdP see
//! reuse, revoke the whole grant, and log the user out. So:
//!
//! 1. A fresh enough access token is used as is (caller).
//! 2. Inside a replica, one flight per session: callers share one spawned
//!    task, which runs to the end even if every caller goes away, so a
//!    rotated token is never lost to a cancelled request.
//! 3. Across replicas, a lease in the store (`…:lock`), renewed every third
//!    of its TTL while the IdP call is in flight.
//! 4. After taking the lease, the record is read again, from Redis itself
//!    (never a replica's cache): if another replica refreshed meanwhile,
//!    its tokens are used and the IdP is not called.
//! 5. The token endpoint is called once, never retried.
//! 6. The new tokens are written with compare-and-set on the record version.
//! 7. Callers that find the lease taken watch the record for the winner's
//!    write, up to the obtain timeout, then answer 503 `refresh_pending`;
//!    they never end the session.
//! 8. `invalid_grant` ends the session (after one more read, in case a
//!    winner's write explains it); an unreachable IdP keeps it.
//!
//! Each flight counts once in `cloakroom_refreshes_total` by how it ended.
//! An `invalid_grant` for a refresh token that the record, read again, no
//! longer holds means the token we presented had already been rotated (by
//! a flight whose lease we did not see): the self-inflicted reuse this
//! module exists to prevent, reported as the `refresh_token_reuse` anomaly.
//! A refreshed ID token naming another user is `identity_changed`; one
//! that fails validation is `refused_id_token`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

use crate::audit;
use crate::config::Audience;
use crate::cookie::Ticket;
use crate::metrics::{Anomaly, EndReason, Grant, RefreshOutcome};
use crate::oidc::{IdTokenCheckError, Idp, IdpError};
use crate::secret::{AccessToken, RefreshToken};
use crate::session::lock::{self, RefreshLease};
use crate::session::record::{Record, ResourceToken};
use crate::session::{Indexes, Loaded, Sessions, StoreError};

/// How long the lease lives without renewal: above a slow token call.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How long a caller waits for another replica's refresh.
const OBTAIN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// What made a refresh fail, shared by every caller of one flight.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

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
}

// === impl RefreshError ===

impl RefreshError {
    fn idp(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::IdpDown(Arc::new(cause))
    }

    fn store(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::StoreDown(Arc::new(cause))
    }
}

/// Which of a session's access tokens a refresh renews: the session's
/// own, or a route's token for its resource and scopes (PX-23). Every
/// target is obtained with the session's one refresh token, so they share
/// the session's lease: a rotation one of them makes is the token the next
/// one presents, on any replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User,
    Resource(Arc<Audience>),
}

// === impl Target ===

impl Target {
    /// The flight key in this replica: one flight per session and target.
    fn flight_key(&self, key: &str) -> String {
        match self {
            Self::User => key.to_owned(),
            Self::Resource(audience) => format!("{key} {}", audience.key()),
        }
    }

    /// The target's token in `record`, with when it is due for renewal
    /// (milliseconds) and when it expires (seconds).
    fn held<'r>(&self, skew: Duration, record: &'r Record) -> Option<(&'r AccessToken, u64, u64)> {
        match self {
            Self::User => Some((
                &record.access_token,
                refresh_point_ms(skew, record),
                record.access_expires_at,
            )),
            Self::Resource(audience) => record.resource_tokens.get(&audience.key()).map(|t| {
                let due = point_ms(skew, Some(t.issued_ms), Some(t.lifetime), t.expires_at);
                (&t.access_token, due, t.expires_at)
            }),
        }
    }

    /// Puts a granted access token where this target keeps it.
    fn store(&self, record: &mut Record, token: AccessToken, lifetime: u64, now_ms: u64) {
        match self {
            Self::User => {
                record.access_token = token;
                record.set_access_lifetime(lifetime, now_ms);
            }
            Self::Resource(audience) => {
                let kept = ResourceToken {
                    access_token: token,
                    expires_at: (now_ms / 1000).saturating_add(lifetime),
                    issued_ms: now_ms,
                    lifetime,
                };
                record.resource_tokens.insert(audience.key(), kept);
            }
        }
    }

    fn audience(&self) -> Option<&Audience> {
        match self {
            Self::User => None,
            Self::Resource(audience) => Some(audience),
        }
    }
}

/// A usable access token and when it expires.
#[derive(Clone)]
pub struct Fresh {
    pub access_token: Arc<AccessToken>,
    pub expires_at: u64,
}

/// In-flight refreshes of this replica, by session store key.
type Flights = std::sync::Mutex<
    std::collections::HashMap<String, Shared<BoxFuture<'static, Result<Fresh, RefreshError>>>>,
>;

/// Refreshes sessions' tokens at the IdP: what a refresh needs, and the
/// flights in progress in this replica.
pub struct Refresher {
    sessions: Arc<Sessions>,
    idp: Arc<Idp>,
    /// Shared with the refreshers a config reload builds from this one, so
    /// a request after a reload joins a flight started before it.
    flights: Arc<Flights>,
    /// Client tokens (`token: client`) this replica last saw; shared with
    /// reloaded refreshers as the flights are.
    seen: Arc<client::Seen>,
}

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

    /// Refreshes the session's tokens, sharing one flight per session.
    pub async fn refresh(self: &Arc<Self>, loaded: &Loaded) -> Result<Fresh, RefreshError> {
        self.refresh_target(loaded, &Target::User).await
    }

    /// Renews `target`'s token of the session (obtains it the first time),
    /// sharing one flight per session and target in this replica.
    pub async fn refresh_target(
        self: &Arc<Self>,
        loaded: &Loaded,
        target: &Target,
    ) -> Result<Fresh, RefreshError> {
        let flight_key = target.flight_key(&loaded.key);
        self.join_flight(flight_key, || {
            let (this, ticket, key, version, client, target) = (
                self.clone(),
                loaded.ticket.clone(),
                loaded.key.clone(),
                loaded.version,
                loaded.client,
                target.clone(),
            );
            let subject = Indexes::of(&loaded.record.claims).subject;
            async move {
                let who = audit::Who {
                    session_key: Some(&key),
                    subject_index: subject.as_deref(),
                    client,
                };
                run(&this, &ticket, version, who, &target).await
            }
        })
        .await
    }

    /// Joins this replica's flight under `key`, or starts the one `start`
    /// makes, as a task of its own: callers that go away do not cancel it,
    /// and its store and IdP calls are spans of the request that started it
    /// (traces on). The flight leaves the map when it lands. One mechanism
    /// for every kind of token (a session's, a route's, the client's).
    async fn join_flight<F>(&self, key: String, start: impl FnOnce() -> F) -> Result<Fresh, RefreshError>
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
        flight.await
    }

    /// Whether the record's access token is used as it is, without a
    /// refresh.
    pub fn is_fresh(&self, record: &Record) -> bool {
        self.is_fresh_for(record, &Target::User)
    }

    /// Whether the record holds `target`'s token and it is used as it is.
    pub fn is_fresh_for(&self, record: &Record, target: &Target) -> bool {
        target
            .held(self.sessions.config.refresh_skew, record)
            .is_some_and(|(_, due, _)| self.sessions.clock.now_ms() < due)
    }

    /// `target`'s token in the record as it is, fresh or not.
    pub fn held(&self, record: &Record, target: &Target) -> Option<Fresh> {
        fresh(self, record, target)
    }
}

/// One flight, counted by how it ended; one that brought no fresh tokens
/// is an audit line.
async fn run(
    refresher: &Refresher,
    ticket: &Ticket,
    seen: u64,
    who: audit::Who<'_>,
    target: &Target,
) -> Result<Fresh, RefreshError> {
    let (key, client) = (who.session_key.unwrap_or_default(), who.client);
    let mut outcome = None;
    let result = flight(refresher, ticket, key, seen, client, target, &mut outcome).await;
    let outcome = outcome.unwrap_or(match &result {
        Ok(_) => RefreshOutcome::WaitedOnOtherReplica,
        Err(RefreshError::Ended) => RefreshOutcome::Ended,
        Err(RefreshError::IdpDown(_)) => RefreshOutcome::IdpDown,
        Err(RefreshError::StoreDown(_)) => RefreshOutcome::StoreDown,
        Err(RefreshError::Pending) => RefreshOutcome::Pending,
    });
    refresher.sessions.metrics.refresh(outcome);
    if result.is_err() {
        audit::refresh_failed(outcome, who);
    }
    result
}

/// Steps 3 to 8. `outcome` is set where the result alone does not tell how
/// the flight ended (new tokens written, a lost lease, `invalid_grant`);
/// any other success took another writer's tokens.
async fn flight(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    seen: u64,
    client: Option<IpAddr>,
    target: &Target,
    outcome: &mut Option<RefreshOutcome>,
) -> Result<Fresh, RefreshError> {
    let store = refresher.sessions.store.as_ref();
    // One lease per session, whatever the target: they share the refresh
    // token, which only one grant at a time may present.
    let lock_key = lock::lock_key(key);
    let deadline = tokio::time::Instant::now() + OBTAIN_TIMEOUT;
    let lease = loop {
        match lock::acquire(store, &lock_key, LEASE_TTL)
            .await
            .map_err(RefreshError::store)?
        {
            Some(lease) => break lease,
            None => {
                // Another replica is refreshing: take its tokens when written.
                if let Some(fresh) = written_since(refresher, ticket, key, seen, target).await? {
                    return Ok(fresh);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RefreshError::Pending);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let result = renewing(
        refresher,
        lease,
        locked(refresher, ticket, key, client, target, outcome),
    )
    .await;
    if let Err(e) = &result {
        tracing::info!(error = %e, "refresh did not succeed");
    }
    result
}

/// Runs `work` while renewing `lease`, then releases it.
async fn renewing<T>(
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

/// The record, if another writer moved it past `seen` with a fresh token.
async fn written_since(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    seen: u64,
    target: &Target,
) -> Result<Option<Fresh>, RefreshError> {
    let (version, record) = read(refresher, ticket, key).await?;
    if version == seen || !refresher.is_fresh_for(&record, target) {
        return Ok(None);
    }
    Ok(fresh(refresher, &record, target))
}

/// The session's record and version, read from Redis itself (never a
/// replica's cache: these reads decide whether to call the IdP).
async fn read(refresher: &Refresher, ticket: &Ticket, key: &str) -> Result<(u64, Record), RefreshError> {
    let stored = refresher
        .sessions
        .store
        .get_latest(key)
        .await
        .map_err(RefreshError::store)?
        .ok_or(RefreshError::Ended)?;
    let record = Record::open(&stored.value, ticket, key).map_err(|_| RefreshError::Ended)?;
    Ok((stored.version, record))
}

/// When a token is renewed: `refresh_skew` before it expires, but never
/// before half of its life has passed. A skew longer than the token's
/// lifetime would make every token stale the moment it arrives, and every
/// call a refresh grant (RF-21); half the lifetime still leaves the other
/// half for the refresh to finish before the token expires. Counted in
/// milliseconds: for a 2 s token, whole seconds would be half its life.
fn refresh_point_ms(skew: Duration, record: &Record) -> u64 {
    point_ms(
        skew,
        record.access_issued_ms,
        record.access_lifetime,
        record.access_expires_at,
    )
}

/// [`refresh_point_ms`] of a token obtained at `issued` (ms) that lives
/// `lifetime` (s) and expires at `expires_at` (s).
fn point_ms(skew: Duration, issued: Option<u64>, lifetime: Option<u64>, expires_at: u64) -> u64 {
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

fn fresh(refresher: &Refresher, record: &Record, target: &Target) -> Option<Fresh> {
    target
        .held(refresher.sessions.config.refresh_skew, record)
        .map(|(token, _, expires_at)| Fresh {
            access_token: Arc::new(token.clone()),
            expires_at,
        })
}

/// Steps 4 to 8, holding the lease.
async fn locked(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    client: Option<IpAddr>,
    target: &Target,
    outcome: &mut Option<RefreshOutcome>,
) -> Result<Fresh, RefreshError> {
    let metrics = &refresher.sessions.metrics;
    let skew = refresher.sessions.config.refresh_skew;
    let (version, record) = read(refresher, ticket, key).await?;
    if let Some(fresh) = fresh(refresher, &record, target).filter(|_| refresher.is_fresh_for(&record, target))
    {
        return Ok(fresh);
    }
    let Some(refresh_token) = record.refresh_token.clone() else {
        if *target == Target::User {
            return Err(RefreshError::Ended);
        }
        // No grant to narrow: logging in again would not give one either.
        return Err(RefreshError::idp(IdpError::BadResponse(
            "no refresh token to obtain a route's own token with",
        )));
    };
    let spent = target.held(skew, &record).map(|(t, _, _)| t.clone());
    let granted = metrics
        .token_call(
            Grant::RefreshToken,
            refresher.idp.refresh_for(&refresh_token, target.audience()),
        )
        .await;
    let tokens = match granted {
        Ok(tokens) => tokens,
        Err(IdpError::Rejected(e)) if e.error == "invalid_grant" => {
            // One more read: a winner's write may explain the rejection.
            if let Ok((_, record)) = read(refresher, ticket, key).await {
                let presented = Some(refresh_token.expose());
                if record.refresh_token.as_ref().map(RefreshToken::expose) != presented {
                    // We presented a token that had been rotated meanwhile.
                    metrics.anomaly(Anomaly::RefreshTokenReuse, Some(key), client, None);
                }
                if let Some(fresh) =
                    fresh(refresher, &record, target).filter(|_| refresher.is_fresh_for(&record, target))
                {
                    return Ok(fresh);
                }
            }
            let _ = refresher
                .sessions
                .end(key, &Indexes::of(&record.claims), EndReason::InvalidGrant, client)
                .await;
            *outcome = Some(RefreshOutcome::InvalidGrant);
            return Err(RefreshError::Ended);
        }
        Err(IdpError::Rejected(e)) => {
            // invalid_client and friends are configuration problems, not
            // the user's: keep the session and say so loudly.
            tracing::error!(error = %e.error, "the IdP refused the refresh; check the client configuration");
            return Err(RefreshError::idp(IdpError::Rejected(e)));
        }
        Err(e) => return Err(RefreshError::idp(e)),
    };
    // A refreshed ID token must describe the same user (T25).
    if let Some(id_token) = &tokens.id_token {
        match refresher
            .idp
            .validate_id_token(id_token, None, Some(&tokens.access_token))
            .await
        {
            Ok(c) if c.get("sub") == record.claims.get("sub") && c.get("iss") == record.claims.get("iss") => {
            }
            Ok(_) => {
                tracing::error!("refreshed ID token names another subject or issuer; ending the session");
                metrics.anomaly(Anomaly::IdentityChanged, Some(key), client, None);
                let _ = refresher
                    .sessions
                    .end_opened(key, &record, EndReason::ForgedIdpAnswer, client)
                    .await;
                return Err(RefreshError::Ended);
            }
            Err(IdTokenCheckError::Idp(e)) => return Err(RefreshError::idp(e)),
            Err(IdTokenCheckError::Invalid(e)) => {
                tracing::error!(error = %e, "refreshed ID token refused; ending the session");
                metrics.anomaly(Anomaly::RefusedIdToken, Some(key), client, None);
                let _ = refresher
                    .sessions
                    .end_opened(key, &record, EndReason::ForgedIdpAnswer, client)
                    .await;
                return Err(RefreshError::Ended);
            }
        }
    }
    let now_ms = refresher.sessions.clock.now_ms();
    let now = now_ms / 1000;
    let lifetime = tokens.access_token_lifetime(now);
    // Compare-and-set; a concurrent touch of `last_seen` moves the version,
    // so apply the new tokens to the newest record and try again.
    let mut current = (version, record);
    for _ in 0..5 {
        let (version, mut record) = current;
        target.store(&mut record, tokens.access_token.clone(), lifetime, now_ms);
        // A rotation by any target's grant is the one refresh token of the
        // session from now on.
        if let Some(rt) = &tokens.refresh_token {
            record.refresh_token = Some(rt.clone());
        }
        if let (Target::User, Some(id)) = (target, &tokens.id_token) {
            record.id_token = Some(id.clone());
        }
        let ttl = refresher.sessions.ttl(ticket, now);
        match refresher.sessions.write(ticket, key, &record, version, ttl).await {
            Ok(_) => {
                *outcome = Some(RefreshOutcome::Rotated);
                return fresh(refresher, &record, target).ok_or(RefreshError::Pending);
            }
            Err(StoreError::Conflict) => {
                match read(refresher, ticket, key).await {
                    // Another writer refreshed meanwhile (our lease was lost):
                    // the first commit stands, ours is dropped (RF-06).
                    Ok((_, newer))
                        if target.held(skew, &newer).map(|(t, _, _)| t.expose())
                            != spent.as_ref().map(AccessToken::expose) =>
                    {
                        tracing::warn!("another replica refreshed this session while the lease was lost; keeping its tokens");
                        *outcome = Some(RefreshOutcome::LostLease);
                        return fresh(refresher, &newer, target).ok_or(RefreshError::Pending);
                    }
                    // Only a touch moved the version: apply our tokens to it.
                    Ok(newer) => current = newer,
                    Err(RefreshError::Ended) => {
                        // Logged out while the IdP answered (RF-15): the new
                        // refresh token must not outlive the session.
                        if let Some(rt) = &tokens.refresh_token {
                            refresher.sessions.revoke_later(key, &[rt]).await;
                        }
                        return Err(RefreshError::Ended);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(StoreError::Unavailable(e)) => {
                // The rotated token is lost; with an IdP grace period the
                // old one still works once (RF-18).
                tracing::error!(error = %e, "refreshed tokens could not be stored");
                return Err(RefreshError::store(StoreError::Unavailable(e)));
            }
        }
    }
    Err(RefreshError::Pending)
}

mod client;

#[cfg(test)]
mod flight_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose token was obtained at 1 000 s and lives `lifetime`
    /// seconds; `known: false` as an earlier release wrote it.
    fn obtained(lifetime: u64, known: bool) -> Record {
        let mut record = Record {
            format: crate::session::record::FORMAT,
            access_token: AccessToken::new("AT".into()),
            access_expires_at: 0,
            access_issued_ms: None,
            access_lifetime: None,
            refresh_token: None,
            id_token: None,
            claims: Default::default(),
            created_at: 1_000,
            last_seen: 1_000,
            resource_tokens: Default::default(),
        };
        record.set_access_lifetime(lifetime, 1_000_000);
        if !known {
            (record.access_issued_ms, record.access_lifetime) = (None, None);
        }
        record
    }

    #[test]
    fn rf21_the_refresh_point_is_never_before_half_the_lifetime() {
        let skew = Duration::from_secs(60);
        // (lifetime, milliseconds after it was obtained when a token is due)
        for (lifetime, due_after) in [
            (2, 1_000),
            (5, 2_500),
            (30, 15_000),
            (120, 60_000),
            (300, 240_000),
        ] {
            let due = refresh_point_ms(skew, &obtained(lifetime, true));
            assert_eq!(due, 1_000_000 + due_after, "{lifetime} s token");
        }
        // A record from before lifetimes were kept: the configured skew.
        assert_eq!(refresh_point_ms(skew, &obtained(300, false)), 1_240_000);
        assert_eq!(refresh_point_ms(skew, &obtained(5, false)), 945_000);
        // A skew shorter than half the lifetime is taken as configured.
        let short = Duration::from_secs(2);
        assert_eq!(refresh_point_ms(short, &obtained(30, true)), 1_028_000);
    }

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
