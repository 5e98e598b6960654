//! The revocation worker: on every replica, one task that works the
//! store's queue of refresh tokens to revoke (`session::revocation`), so
//! that every session end, whoever caused it, reaches the IdP (RFC 7009).
//!
//! Each round claims the items that are due, a few at a time, until none
//! is left. A claimed item is hidden from every other claim for [`HOLD`]:
//! longer than any IdP call (`oidc::http` gives up after 15 s), so two
//! replicas never revoke the same tokens at once, and short enough that an
//! item whose replica stopped mid-call comes back within a minute. For
//! each item, the tokens are opened with the current key ring (any of its
//! keys: one rotated since still opens) and revoked one by one:
//!
//! - revoked: the item is done;
//! - the IdP failed (unreachable, 5xx, refused): tried again after a
//!   backoff from [`FIRST_RETRY`] doubling to [`LAST_RETRY`], and given up
//!   after [`MAX_RETRIES`] (about a day of failures);
//! - `unsupported_token_type`, no revocation endpoint, or tokens that do
//!   not open (a cookie key removed from the ring): dropped at once.
//!
//! Each outcome is counted (`cloakroom_revocations_total`) and each end
//! written as an audit line. The task wakes at once when this replica
//! queues a revocation, and looks every [`POLL`] for the rest (retries
//! falling due, items other replicas queued). It stops once its
//! [`Revoker`] is dropped; after a config reload, the next one's task
//! takes over (both may run for a moment: their claims keep them apart).
//!
//! Takes `Sessions` and the `Idp`, as `refresh` does, and nothing above.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::audit::{self, RevocationEnd};
use crate::metrics::Revocation;
use crate::oidc::{Idp, IdpError, Revoked};
use crate::session::revocation::{self, Pending, QUEUE};
use crate::session::{Claimed, Sessions};

/// How long a claimed item stays hidden from other claims.
pub(crate) const HOLD: Duration = Duration::from_secs(60);
/// How often the queue is looked at without being woken.
const POLL: Duration = Duration::from_secs(1);
/// Items worked at once by one replica.
const BATCH: usize = 8;
/// The wait before the first retry; each next one waits twice as long, up
/// to [`LAST_RETRY`].
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
pub(crate) const LAST_RETRY: Duration = Duration::from_secs(300);
/// Retries before an item is given up: about a day at [`LAST_RETRY`].
pub(crate) const MAX_RETRIES: u32 = 300;

/// This replica's worker; its task stops once this is dropped.
pub(crate) struct Revoker {
    sessions: Arc<Sessions>,
    idp: Arc<Idp>,
}

/// How long the item's next try waits after `retries` retries.
pub(crate) fn backoff(retries: u32) -> Duration {
    let doublings = 2u32.saturating_pow(retries.min(16));
    FIRST_RETRY.saturating_mul(doublings).min(LAST_RETRY)
}

// === impl Revoker ===

impl Revoker {
    /// Starts the worker for `sessions` (its store, key ring and queue
    /// bound) revoking at `idp`.
    pub(crate) fn spawn(sessions: Arc<Sessions>, idp: Arc<Idp>) -> Arc<Self> {
        let wake = sessions.revocations_queued.clone();
        let revoker = Arc::new(Self { sessions, idp });
        tokio::spawn(work(Arc::downgrade(&revoker), wake));
        revoker
    }

    /// Works the queue until nothing is due.
    async fn round(&self) {
        loop {
            let mut claimed = Vec::with_capacity(BATCH);
            while claimed.len() < BATCH {
                match self.sessions.store.queue_claim(QUEUE, HOLD).await {
                    Ok(Some(item)) => claimed.push(item),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "the revocation queue could not be read");
                        break;
                    }
                }
            }
            if claimed.is_empty() {
                return;
            }
            let more = claimed.len() == BATCH;
            futures_util::future::join_all(claimed.into_iter().map(|c| self.revoke(c))).await;
            if !more {
                return;
            }
        }
    }

    /// Revokes one claimed item's tokens, and settles it in the queue.
    async fn revoke(&self, claimed: Claimed) {
        let pending = Pending::parse(&claimed.item);
        let session_key = pending.as_ref().and_then(Pending::session_key);
        let who = audit::Who {
            session_key,
            ..Default::default()
        };
        let opened = pending
            .as_ref()
            .map(|p| revocation::open(&self.sessions.ring, &p.session, &p.sealed));
        let tokens = match opened {
            Some(Ok(tokens)) => tokens,
            _ => {
                tracing::warn!(
                    "a queued revocation does not open (sealed with a cookie key no longer in \
                     cookie.keys?); its refresh token is not revoked"
                );
                return self.drop_item(&claimed, RevocationEnd::Unreadable, who).await;
            }
        };
        let mut outcome = Ok(Revoked::Yes);
        for token in &tokens {
            outcome = self.idp.revoke(token).await;
            if !matches!(outcome, Ok(Revoked::Yes)) {
                break;
            }
        }
        match outcome {
            Ok(Revoked::Yes) => {
                self.settle(self.sessions.store.queue_done(QUEUE, &claimed.id).await);
                self.sessions.metrics.revocation(Revocation::Done);
                audit::revocation(RevocationEnd::Revoked, who);
            }
            Ok(Revoked::NoEndpoint) => {
                tracing::debug!("no revocation endpoint: an ended session's refresh token is not revoked");
                self.drop_item(&claimed, RevocationEnd::NoEndpoint, who).await;
            }
            Err(IdpError::Rejected(e)) if e.error == "unsupported_token_type" => {
                tracing::warn!("the IdP does not revoke refresh tokens (unsupported_token_type)");
                self.drop_item(&claimed, RevocationEnd::Refused, who).await;
            }
            Err(e) if claimed.retries >= MAX_RETRIES => {
                tracing::warn!(error = %e, retries = claimed.retries, "a refresh token revocation failed every time; given up");
                self.drop_item(&claimed, RevocationEnd::GaveUp, who).await;
            }
            Err(e) => {
                let after = backoff(claimed.retries);
                if claimed.retries == 0 {
                    tracing::warn!(error = %e, retry_in = ?after, "a refresh token revocation failed; it is retried");
                } else {
                    tracing::debug!(error = %e, retries = claimed.retries, retry_in = ?after, "a refresh token revocation failed again");
                }
                let retried = self.sessions.store.queue_retry(QUEUE, &claimed.id, after).await;
                self.settle(retried);
                self.sessions.metrics.revocation(Revocation::Failed);
            }
        }
    }

    /// Removes an item left undone, counted and audited as `end`.
    async fn drop_item(&self, claimed: &Claimed, end: RevocationEnd, who: audit::Who<'_>) {
        self.settle(self.sessions.store.queue_done(QUEUE, &claimed.id).await);
        self.sessions.metrics.revocation(Revocation::Dropped);
        audit::revocation(end, who);
    }

    /// A queue write that failed leaves the item claimed: it comes back
    /// after [`HOLD`], and is tried again (a second revocation is harmless).
    fn settle(&self, written: Result<(), crate::session::StoreError>) {
        if let Err(e) = written {
            tracing::debug!(error = %e, "the revocation queue could not be updated; the item comes back");
        }
    }
}

/// The worker's loop: a round when woken or every [`POLL`], until the
/// [`Revoker`] is gone.
async fn work(revoker: Weak<Revoker>, wake: Arc<tokio::sync::Notify>) {
    loop {
        {
            let Some(revoker) = revoker.upgrade() else {
                return;
            };
            revoker.round().await;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests;
