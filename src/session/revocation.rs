//! Revoking a session's refresh tokens at the IdP, whoever ends it.
//!
//! A record is sealed with a key only its cookie holds, so what ends a
//! session without the cookie (the user's other session, the admin API,
//! the per-user bound, back-channel logout, a timeout) cannot read its
//! refresh token. With `session.revoke_on_end` (the default), every write
//! of a record therefore keeps its refresh tokens beside it, sealed a
//! second time: to the cookie key ring's [`Purpose::Revocation`] key, with
//! the store key as associated data ([`seal`]). No read returns that part
//! (`SessionStore::put_beside`); the end of the session takes it in the
//! same step as the delete (`SessionStore::take`) and moves it, still
//! sealed, into the revocation queue. A key ring that rotates keeps
//! opening it: every key of the ring opens, the first seals.
//!
//! The queue ([`QUEUE`]) is in the store: shared by every replica, kept
//! across their restarts (in Redis; the memory store keeps it as long as
//! the process). Each replica's `crate::revoker` claims its items, asks
//! the IdP, and retries with backoff while the IdP fails. Queueing is one
//! store write and waits for nothing else, so no request that ends a
//! session is any slower while the IdP is down. Past
//! `session.revocation_queue_max` items the oldest is dropped, counted
//! and logged: the queue never grows without bound.
//!
//! The trade-off, which `revoke_on_end: false` declines: whoever holds
//! both the store and the cookie keys opens the refresh tokens of every
//! live session (the store alone still opens nothing, the keys alone
//! reach no record; the same keys already protect the client tokens in
//! the store, and such an attacker usually holds the client secret from
//! the same config). Without it, nothing is kept beside records, and only
//! an end that opened the record with its cookie (logout, the idle timeout
//! found on a request or by the watcher, a refreshed ID token refused)
//! queues its tokens, sealed the same way, until the IdP has revoked them.
//!
//! Not every end revokes ([`revokes`]).

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::sessions::Sessions;
use crate::audit::{self, RevocationEnd};
use crate::cookie::{KeyRing, Purpose, SealError};
use crate::metrics::{EndReason, Revocation};
use crate::secret::RefreshToken;

/// The store's queue of revocations still to make: one hash tag, one slot.
pub const QUEUE: &str = "cloakroom:{revocations}";
/// How long the queue outlives its last push: beyond that, a deployment
/// that stopped working it has nothing left worth revoking.
const KEEP: Duration = Duration::from_secs(7 * 86_400);
/// What names the session of a failed login's tokens, which none holds.
pub const NO_SESSION: &str = "-";

/// Whether an end for `reason` revokes the session's refresh tokens. Not
/// after `invalid_grant` (the IdP holds them dead already), nor when a
/// login replaces the browser's session (CK-11): the new login may share
/// the old one's grant at the IdP, which a revocation would end too.
pub fn revokes(reason: EndReason) -> bool {
    !matches!(
        reason,
        EndReason::InvalidGrant | EndReason::Replaced | EndReason::Gone
    )
}

/// One revocation waiting in the queue: whose tokens, sealed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The ended session's store key ([`NO_SESSION`] for none): the
    /// associated data the tokens were sealed with, and the session an
    /// audit line names (by its hash).
    pub session: String,
    /// The tokens, as [`seal`] sealed them.
    pub sealed: String,
}

/// What a sealed value holds.
#[derive(Serialize, Deserialize)]
struct Tokens<T> {
    refresh_tokens: Vec<T>,
}

/// `tokens` of the session under `key`, sealed to the ring's revocation
/// key with `key` as associated data: moved under another key, they do
/// not open.
pub fn seal(ring: &KeyRing, key: &str, tokens: &[&RefreshToken]) -> String {
    let json = Zeroizing::new(
        serde_json::to_vec(&Tokens {
            refresh_tokens: tokens.to_vec(),
        })
        .unwrap_or_default(),
    );
    ring.seal(Purpose::Revocation, key, &json)
}

/// Opens what [`seal`] sealed, with any key of the ring.
pub fn open(ring: &KeyRing, key: &str, sealed: &str) -> Result<Vec<RefreshToken>, SealError> {
    let opened = ring.unseal(Purpose::Revocation, key, sealed)?;
    let tokens: Tokens<RefreshToken> =
        serde_json::from_slice(&opened.plaintext).map_err(|_| SealError::Malformed)?;
    Ok(tokens.refresh_tokens)
}

// === impl Pending ===

impl Pending {
    /// A queue item, as the store holds it.
    pub fn parse(item: &[u8]) -> Option<Self> {
        serde_json::from_slice(item).ok()
    }

    /// The session's store key, for an audit line (none for a login's).
    pub fn session_key(&self) -> Option<&str> {
        (self.session != NO_SESSION).then_some(self.session.as_str())
    }
}

// === impl Sessions ===

impl Sessions {
    /// What a record under `key` keeps beside it: its refresh tokens,
    /// sealed for revocation, with `session.revoke_on_end`.
    pub(super) fn beside(&self, key: &str, tokens: &[&RefreshToken]) -> Option<Bytes> {
        (self.config.revoke_on_end && !tokens.is_empty()).then(|| Bytes::from(seal(&self.ring, key, tokens)))
    }

    /// Queues the revocation of `tokens`, which the session under `key`
    /// held ([`NO_SESSION`]: a failed login's, which none holds).
    pub async fn revoke_later(&self, key: &str, tokens: &[&RefreshToken]) {
        if !tokens.is_empty() {
            self.queue_revocation(key, seal(&self.ring, key, tokens)).await;
        }
    }

    /// Queues tokens `sealed` as [`seal`] does, and wakes this replica's
    /// worker. Never an error to the caller: a revocation that cannot be
    /// queued is logged, and the session ends all the same.
    pub(super) async fn queue_revocation(&self, key: &str, sealed: String) {
        let pending = Pending {
            session: key.to_owned(),
            sealed,
        };
        let item = Bytes::from(serde_json::to_vec(&pending).unwrap_or_default());
        let max = self.config.revocation_queue_max;
        match self.store.queue_push(QUEUE, item, max, KEEP).await {
            Ok(dropped) => {
                self.metrics.revocation(Revocation::Queued);
                self.revocations_queued.notify_one();
                for item in dropped {
                    self.metrics.revocation(Revocation::Dropped);
                    tracing::warn!(
                        max,
                        "the revocation queue is full (session.revocation_queue_max): \
                         its oldest refresh token is not revoked"
                    );
                    let pending = Pending::parse(&item);
                    let who = audit::Who {
                        session_key: pending.as_ref().and_then(Pending::session_key),
                        ..Default::default()
                    };
                    audit::revocation(RevocationEnd::QueueFull, who);
                }
            }
            Err(e) => {
                self.metrics.revocation(Revocation::Dropped);
                tracing::warn!(error = %e, "a refresh token revocation could not be queued: it is not revoked");
                let who = audit::Who {
                    session_key: pending.session_key(),
                    ..Default::default()
                };
                audit::revocation(RevocationEnd::NotQueued, who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CookieKey;
    use crate::secret::Secret;

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        let keys: Vec<CookieKey> = keys
            .iter()
            .map(|(id, byte)| CookieKey {
                id: (*id).into(),
                secret: Secret::new(vec![*byte; 32]),
            })
            .collect();
        KeyRing::new(&keys).unwrap()
    }

    #[test]
    fn sealed_tokens_open_only_under_their_key_and_after_a_rotation() {
        let old = ring(&[("1", 7)]);
        let token = RefreshToken::new("RT-secret".into());
        let sealed = seal(&old, "cloakroom:{a}:s", &[&token]);
        assert!(!sealed.contains("RT-secret"));
        let opened = open(&old, "cloakroom:{a}:s", &sealed).unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].expose(), "RT-secret");
        // Moved under another session's key: refused.
        assert!(open(&old, "cloakroom:{b}:s", &sealed).is_err());
        // A rotated ring still opens what the previous key sealed ...
        let rotated = ring(&[("2", 8), ("1", 7)]);
        assert_eq!(
            open(&rotated, "cloakroom:{a}:s", &sealed).unwrap()[0].expose(),
            "RT-secret"
        );
        // ... and a ring without it does not.
        assert_eq!(
            open(&ring(&[("2", 8)]), "cloakroom:{a}:s", &sealed).err(),
            Some(SealError::UnknownKey)
        );
        // Nor does a session cookie's key: purposes are apart.
        let as_cookie = old.unseal(Purpose::Session, "cloakroom:{a}:s", &sealed);
        assert!(as_cookie.is_err());
    }

    #[test]
    fn a_long_refresh_token_seals_and_opens() {
        // Longer than any cookie may be: these values never go to a browser.
        let long = "r".repeat(6000);
        let ring = ring(&[("1", 7)]);
        let sealed = seal(&ring, "k", &[&RefreshToken::new(long.clone())]);
        assert_eq!(open(&ring, "k", &sealed).unwrap()[0].expose(), long);
    }

    #[test]
    fn only_ends_that_leave_the_grant_alive_revoke() {
        for reason in [
            EndReason::Logout,
            EndReason::Idle,
            EndReason::Absolute,
            EndReason::EndedByUser,
            EndReason::Admin,
            EndReason::BackchannelLogout,
            EndReason::PerUserLimit,
            EndReason::ForgedIdpAnswer,
        ] {
            assert!(revokes(reason), "{reason:?}");
        }
        for reason in [EndReason::InvalidGrant, EndReason::Replaced, EndReason::Gone] {
            assert!(!revokes(reason), "{reason:?}");
        }
    }
}
