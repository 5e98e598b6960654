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
//! A route's own token (`Target::Resource`) is a refresh grant naming its
//! resource and scopes; a token exchanged for the session's
//! (`Target::Exchange`, RFC 8693) is a token exchange under the same flight
//! and lease, presenting the session's token as the record holds it under
//! the lease. Whatever the grant, its token is written into the record
//! with compare-and-set (step 6), so every replica finds it there.
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

use crate::audit;
use crate::config::{Audience, Exchange, SubjectToken};
use crate::cookie::Ticket;
use crate::metrics::{Anomaly, EndReason, Grant, RefreshOutcome};
use crate::oidc::exchange::Subject;
use crate::oidc::{IdTokenCheckError, IdpError, TokenResponse};
use crate::secret::{AccessToken, RefreshToken};
use crate::session::lock;
use crate::session::record::{Record, ResourceToken};
use crate::session::{Indexes, Loaded, StoreError};

use self::flight::{point_ms, renewing, LEASE_TTL, OBTAIN_TIMEOUT, POLL};
pub(crate) use self::flight::{Fresh, RefreshError, Refresher};

/// Which of a session's access tokens a refresh renews: the session's
/// own, a route's token for its resource and scopes (PX-23), or one the
/// IdP gives in exchange for the session's (RFC 8693). The first two are
/// obtained with the session's one refresh token, so every target shares
/// the session's lease: a rotation one of them makes is the token the next
/// one presents, on any replica, and an exchange presents the session's
/// token as the last grant left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User,
    Resource(Arc<Audience>),
    Exchange(Arc<Exchange>),
}

// === impl Target ===

impl Target {
    /// The flight key in this replica: one flight per session and target.
    fn flight_key(&self, key: &str) -> String {
        match self {
            Self::User => key.to_owned(),
            Self::Resource(audience) => format!("{key} {}", audience.key()),
            // A resource is an absolute URI: never the word `exchange`.
            Self::Exchange(exchange) => format!("{key} exchange {}", exchange.key()),
        }
    }

    /// The target's token in `record`.
    fn held<'r>(&self, skew: Duration, record: &'r Record) -> Option<Held<'r>> {
        match self {
            Self::User => Some(Held {
                token: &record.access_token,
                due_ms: refresh_point_ms(skew, record),
                expires_at: record.access_expires_at,
                jkt: record.access_jkt.as_deref(),
            }),
            Self::Resource(_) | Self::Exchange(_) => self.kept(record).map(|t| Held {
                token: &t.access_token,
                due_ms: point_ms(skew, Some(t.issued_ms), Some(t.lifetime), t.expires_at),
                expires_at: t.expires_at,
                jkt: t.jkt.as_deref(),
            }),
        }
    }

    /// A route's token as the record keeps it.
    fn kept<'r>(&self, record: &'r Record) -> Option<&'r ResourceToken> {
        match self {
            Self::User => None,
            Self::Resource(audience) => record.resource_tokens.get(&audience.key()),
            Self::Exchange(exchange) => record.exchanged_tokens.get(&exchange.key()),
        }
    }

    /// Puts a granted access token (bound to the DPoP key `jkt`, if any)
    /// where this target keeps it.
    fn store(
        &self,
        record: &mut Record,
        token: AccessToken,
        jkt: Option<String>,
        lifetime: u64,
        now_ms: u64,
    ) {
        match self {
            Self::User => {
                record.access_token = token;
                record.access_jkt = jkt;
                record.set_access_lifetime(lifetime, now_ms);
            }
            Self::Resource(audience) => {
                let kept = ResourceToken::obtained(token, jkt, lifetime, now_ms);
                record.resource_tokens.insert(audience.key(), kept);
            }
            Self::Exchange(exchange) => {
                let kept = ResourceToken::obtained(token, jkt, lifetime, now_ms);
                record.exchanged_tokens.insert(exchange.key(), kept);
            }
        }
    }

    fn audience(&self) -> Option<&Audience> {
        match self {
            Self::Resource(audience) => Some(audience),
            Self::User | Self::Exchange(_) => None,
        }
    }
}

/// A target's token as the record holds it.
struct Held<'r> {
    token: &'r AccessToken,
    /// When it is due for renewal (milliseconds).
    due_ms: u64,
    /// When it expires (seconds).
    expires_at: u64,
    /// The DPoP key it is bound to, if any.
    jkt: Option<&'r str>,
}

// === impl Refresher ===

impl Refresher {
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

    /// Whether the record's access token is used as it is, without a
    /// refresh.
    pub fn is_fresh(&self, record: &Record) -> bool {
        self.is_fresh_for(record, &Target::User)
    }

    /// Whether the record holds `target`'s token and it is used as it is:
    /// not due, and bound to no key or to one the ring still holds.
    pub fn is_fresh_for(&self, record: &Record, target: &Target) -> bool {
        target
            .held(self.sessions.config.refresh_skew, record)
            .is_some_and(|held| self.sessions.clock.now_ms() < held.due_ms && self.provable(held.jkt))
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
        Err(RefreshError::ExchangeRefused(_)) => RefreshOutcome::Refused,
        // An IdP that answers what cannot be used is counted with an IdP
        // that cannot be reached: either wants an operator.
        Err(RefreshError::IdpAnswer(_)) => RefreshOutcome::IdpDown,
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

fn fresh(refresher: &Refresher, record: &Record, target: &Target) -> Option<Fresh> {
    target
        .held(refresher.sessions.config.refresh_skew, record)
        .map(|held| Fresh {
            access_token: Arc::new(held.token.clone()),
            expires_at: held.expires_at,
            jkt: held.jkt.map(str::to_owned),
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
    let current = read(refresher, ticket, key).await?;
    let record = &current.1;
    if let Some(fresh) = fresh(refresher, record, target).filter(|_| refresher.is_fresh_for(record, target)) {
        return Ok(fresh);
    }
    let tokens = match target {
        Target::Exchange(exchange) => exchanged(refresher, record, exchange).await?,
        Target::User | Target::Resource(_) => {
            match refreshed(refresher, ticket, key, client, target, &current, outcome).await? {
                Granted::Tokens(tokens) => tokens,
                Granted::Written(fresh) => return Ok(fresh),
            }
        }
    };
    write(refresher, ticket, key, target, current, &tokens, outcome).await
}

/// What a refresh grant under the lease came to: tokens to write, or the
/// fresh token another writer's write explains a refusal with.
enum Granted {
    Tokens(TokenResponse),
    Written(Fresh),
}

/// Step 5 and 8 for a refresh grant: the session's refresh token presented
/// once, `invalid_grant` ending the session, a refreshed ID token checked.
async fn refreshed(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    client: Option<IpAddr>,
    target: &Target,
    current: &(u64, Record),
    outcome: &mut Option<RefreshOutcome>,
) -> Result<Granted, RefreshError> {
    let record = &current.1;
    let metrics = &refresher.sessions.metrics;
    let Some(refresh_token) = record.refresh_token.clone() else {
        if *target == Target::User {
            return Err(RefreshError::Ended);
        }
        // No grant to narrow: logging in again would not give one either.
        return Err(RefreshError::idp(IdpError::BadResponse(
            "no refresh token to obtain a route's own token with",
        )));
    };
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
                    return Ok(Granted::Written(fresh));
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
        Err(IdpError::Unbound {
            token_type,
            refresh_token: rotated,
        }) => {
            // Not bound to the DPoP key: the access token is refused, and
            // the session keeps its own. A rotated refresh token is kept,
            // or the grant would end with the one just spent.
            let e = IdpError::Unbound {
                token_type,
                refresh_token: None,
            };
            tracing::error!(error = %e, "refreshed tokens refused; the session keeps its tokens");
            if let (Some(rotated), Ok(current)) = (rotated, read(refresher, ticket, key).await) {
                keep_rotation(refresher, ticket, key, current, &refresh_token, rotated).await;
            }
            return Err(RefreshError::from_idp(e));
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
                    .end_opened(key, record, EndReason::ForgedIdpAnswer, client)
                    .await;
                return Err(RefreshError::Ended);
            }
            Err(IdTokenCheckError::Idp(e)) => return Err(RefreshError::idp(e)),
            Err(IdTokenCheckError::Invalid(e)) => {
                tracing::error!(error = %e, "refreshed ID token refused; ending the session");
                metrics.anomaly(Anomaly::RefusedIdToken, Some(key), client, None);
                let _ = refresher
                    .sessions
                    .end_opened(key, record, EndReason::ForgedIdpAnswer, client)
                    .await;
                return Err(RefreshError::Ended);
            }
        }
    }
    Ok(Granted::Tokens(tokens))
}

/// Step 5 for a token exchange (RFC 8693): the session's token as the
/// record holds it under the lease, presented once. No answer ends the
/// session: an exchange the IdP refuses is the route's configuration or
/// the IdP's, and the session's own token is still good.
async fn exchanged(
    refresher: &Refresher,
    record: &Record,
    exchange: &Exchange,
) -> Result<TokenResponse, RefreshError> {
    let subject = match exchange.subject {
        // Refreshed before the flight when due (`stack::token`); one that
        // expired since is not presented, and a retry refreshes it.
        SubjectToken::AccessToken if record.access_expires_at <= refresher.now() => {
            return Err(RefreshError::Pending);
        }
        SubjectToken::AccessToken => Subject::Access(&record.access_token),
        SubjectToken::IdToken => match &record.id_token {
            Some(id_token) => Subject::Id(id_token),
            None => {
                let missing = IdpError::BadResponse("the session holds no ID token to exchange");
                return Err(RefreshError::ExchangeRefused(Arc::new(missing)));
            }
        },
    };
    let granted = refresher
        .sessions
        .metrics
        .token_call(Grant::Exchange, refresher.idp.exchange(subject, exchange))
        .await;
    granted.map_err(|e| match e {
        IdpError::Unreachable(_) | IdpError::Busy(_) | IdpError::Unbound { .. } => RefreshError::from_idp(e),
        IdpError::Rejected(_) | IdpError::BadResponse(_) => {
            tracing::error!(error = %e, "the IdP did not exchange the session's token; check the route's exchange and the client's grants at the IdP");
            RefreshError::ExchangeRefused(Arc::new(e))
        }
    })
}

/// Steps 6 and 7: `tokens` written into the record with compare-and-set;
/// `current` is the record as read under the lease, before the grant.
async fn write(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    target: &Target,
    mut current: (u64, Record),
    tokens: &TokenResponse,
    outcome: &mut Option<RefreshOutcome>,
) -> Result<Fresh, RefreshError> {
    let skew = refresher.sessions.config.refresh_skew;
    let spent = target.held(skew, &current.1).map(|held| held.token.clone());
    let now_ms = refresher.sessions.clock.now_ms();
    let now = now_ms / 1000;
    let lifetime = tokens.access_token_lifetime(now);
    // Compare-and-set; a concurrent touch of `last_seen` moves the version,
    // so apply the new tokens to the newest record and try again.
    for _ in 0..5 {
        let (version, mut record) = current;
        target.store(
            &mut record,
            tokens.access_token.clone(),
            tokens.jkt.clone(),
            lifetime,
            now_ms,
        );
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
                        if target.held(skew, &newer).map(|held| held.token.expose())
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

/// Writes `rotated` as the session's refresh token in place of
/// `presented`, when an answer whose tokens were refused rotated it: with
/// rotation the presented one is spent, and the grant goes on only with
/// the new one. The access tokens stay as they are. Another writer's
/// rotation meanwhile wins (its token is the newer).
async fn keep_rotation(
    refresher: &Refresher,
    ticket: &Ticket,
    key: &str,
    mut current: (u64, Record),
    presented: &RefreshToken,
    rotated: RefreshToken,
) {
    for _ in 0..5 {
        let (version, mut record) = current;
        if record.refresh_token.as_ref().map(RefreshToken::expose) != Some(presented.expose()) {
            return;
        }
        record.refresh_token = Some(rotated.clone());
        let ttl = refresher.sessions.ttl(ticket, refresher.now());
        match refresher.sessions.write(ticket, key, &record, version, ttl).await {
            Ok(_) => return,
            Err(StoreError::Conflict) => match read(refresher, ticket, key).await {
                Ok(newer) => current = newer,
                Err(_) => return,
            },
            Err(e) => {
                tracing::error!(error = %e, "a rotated refresh token could not be stored");
                return;
            }
        }
    }
}

mod client;
mod flight;

#[cfg(test)]
mod flight_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose token was obtained at 1 000 s and lives `lifetime`
    /// seconds; `known: false` as an earlier release wrote it.
    fn obtained(lifetime: u64, known: bool) -> Record {
        let mut record = Record {
            format: 1,
            access_token: AccessToken::new("AT".into()),
            access_expires_at: 0,
            access_issued_ms: None,
            access_lifetime: None,
            access_jkt: None,
            refresh_token: None,
            id_token: None,
            claims: Default::default(),
            created_at: 1_000,
            last_seen: 1_000,
            resource_tokens: Default::default(),
            exchanged_tokens: Default::default(),
            device: None,
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
}
