//! Ending a session, and what lives on beside it.
//!
//! A session ends through [`Sessions::end`]: its record is deleted (the
//! cached store drops every replica's copy as it does for any delete), its
//! refresh tokens are queued for revocation at the IdP (`revocation.rs`),
//! it leaves its indexes, and the store announces the end to every
//! replica. Logout, back-channel logout, a user ending another of their
//! sessions, the admin API, the timeouts, `invalid_grant` and the per-user
//! bound all end sessions this way.
//!
//! What outlives a request (an open WebSocket tunnel, a streamed answer)
//! holds a [`SessionEnd`], which `Endings`, this replica's registry of
//! watched sessions (`watched.rs`), resolves when the session ends: at once
//! for an end in this replica, on the announcement for an end in another.
//! Not every end is announced: timeouts happen while nobody looks, and
//! announcements are missed while a subscription is down. So a watcher
//! task also looks at every watched session, by
//! [`Clock`](crate::clock::Clock), twice a second: one due for a check (its
//! absolute end, its idle end as last seen, at the latest [`RECHECK`] after
//! the last check, and every one after each (re)subscription) is read again
//! and judged as a request would judge it.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::index::Indexes;
use super::record::Record;
use super::revocation;
use super::sessions::{Loaded, Sessions};
use super::store::{Announcements, StoreError};
use super::watched::SessionEnd;
use crate::audit;
use crate::cookie::Ticket;
use crate::error::Refusal;
use crate::metrics::EndReason;

/// The longest a watched session goes without being read again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// How often the watcher looks for sessions due for a check: well inside
/// the second in which what depends on a timed-out session must close.
const TICK: Duration = Duration::from_millis(500);
/// Checks run at once, at most.
const CONCURRENT_CHECKS: usize = 16;

// === impl Sessions ===

impl Sessions {
    /// Ends the session stored under `key`, listed in `indexes`: deletes
    /// its record, queues the revocation of the refresh tokens kept beside
    /// it (for a `reason` that revokes), tells every replica, and drops it
    /// from its indexes. Only the delete must succeed: a revocation that
    /// cannot be queued is logged, an index entry left behind is pruned
    /// when read, and a missed announcement is made up for by the
    /// watchers' checks. Nothing here waits for the IdP. `client` is
    /// whoever's request ended it, where one did: for the audit line.
    pub async fn end(
        &self,
        key: &str,
        indexes: &Indexes,
        reason: EndReason,
        client: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        self.end_holding(key, indexes, reason, client, None).await
    }

    /// [`Sessions::end`] for a session whose record the caller has opened:
    /// without tokens kept beside it (`session.revoke_on_end: false`), the
    /// record's own are revoked.
    pub async fn end_opened(
        &self,
        key: &str,
        record: &Record,
        reason: EndReason,
        client: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let indexes = Indexes::of(&record.claims);
        self.end_holding(key, &indexes, reason, client, Some(record))
            .await
    }

    async fn end_holding(
        &self,
        key: &str,
        indexes: &Indexes,
        reason: EndReason,
        client: Option<IpAddr>,
        opened: Option<&Record>,
    ) -> Result<(), StoreError> {
        let revokes = revocation::revokes(reason);
        // What is kept beside the record is taken with it, in one step:
        // it is the last write's, fresher than any record read before.
        let beside = if revokes {
            self.store.take(key).await?
        } else {
            self.store.delete(key).await?;
            None
        };
        self.metrics.session_ended(reason);
        audit::session_ended(
            reason,
            audit::Who {
                session_key: Some(key),
                subject_index: indexes.subject.as_deref(),
                client,
            },
        );
        self.endings.end(key);
        let beside = beside.and_then(|b| String::from_utf8(b.to_vec()).ok());
        match (beside, opened) {
            (Some(sealed), _) => self.queue_revocation(key, sealed).await,
            (None, Some(record)) if revokes => self.revoke_later(key, &record.refresh_tokens()).await,
            (None, _) => {}
        }
        if let Err(e) = self.store.announce_ended(key).await {
            tracing::warn!(error = %e, "could not announce a session's end; other replicas notice it within {RECHECK:?}");
        }
        for index in [&indexes.subject, &indexes.sid].into_iter().flatten() {
            if let Err(e) = self.store.index_remove(index, &[key.to_owned()]).await {
                tracing::debug!(error = %e, "an ended session stays in an index until it is read");
            }
        }
        Ok(())
    }

    /// Watches `loaded`'s session for what outlives this request.
    pub fn watch(&self, loaded: &Loaded) -> SessionEnd {
        let check_at = self.next_check(&loaded.ticket, loaded.record.last_seen);
        self.endings.watch(&loaded.key, &loaded.ticket, check_at)
    }

    /// When a session last seen at `last_seen` must be read again.
    fn next_check(&self, ticket: &Ticket, last_seen: u64) -> u64 {
        let absolute_end = ticket
            .issued_at
            .saturating_add(self.config.absolute_timeout.as_secs());
        let idle_end = last_seen.saturating_add(self.config.idle_timeout.as_secs());
        let recheck = self.clock.now().saturating_add(RECHECK.as_secs());
        absolute_end.min(idle_end).min(recheck)
    }

    /// Starts this replica's watcher; it stops once `self` is dropped.
    pub fn spawn_watcher(self: &Arc<Self>) {
        tokio::spawn(watcher(Arc::downgrade(self)));
    }

    /// Reads every watched session that is due and closes what depends on
    /// those that ended.
    async fn check_due(&self) {
        let due = self.endings.due(self.clock.now());
        futures_util::stream::iter(due)
            .for_each_concurrent(CONCURRENT_CHECKS, |(key, ticket)| async move {
                match self.open_ticket(ticket).await {
                    Ok(loaded) => {
                        let next = self.next_check(&loaded.ticket, loaded.record.last_seen);
                        self.endings.reschedule(&key, next);
                    }
                    // Gone, timed out (and so ended just now), unreadable.
                    Err(e) if e.is::<Refusal>() => self.endings.end(&key),
                    Err(e) => {
                        // A store error is never an end: look again soon.
                        tracing::debug!(error = %e, "a watched session could not be checked");
                        let soon = self.clock.now().saturating_add(1);
                        self.endings.reschedule(&key, soon);
                    }
                }
            })
            .await;
    }
}

/// Closes what depends on sessions that end: on announcements, and on the
/// checks of watched sessions.
async fn watcher(sessions: Weak<Sessions>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announcements: Option<Announcements> = None;
    let mut delay = Duration::from_millis(100);
    let mut subscribe_at = Instant::now();
    loop {
        if announcements.is_none() && Instant::now() >= subscribe_at {
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            match sessions.store.ended_announcements().await {
                Ok(subscribed) => {
                    announcements = Some(subscribed);
                    delay = Duration::from_millis(100);
                    // Whatever ended while unsubscribed is found now.
                    sessions.endings.resync();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "session end announcements unavailable");
                    subscribe_at = Instant::now() + delay;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        let announced = async {
            match &mut announcements {
                Some(a) => a.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            key = announced => {
                let Some(sessions) = sessions.upgrade() else { return };
                match key {
                    Some(key) => sessions.endings.end(&key),
                    None => {
                        tracing::warn!("session end announcements lost; subscribing again");
                        announcements = None;
                    }
                }
            }
            _ = tick.tick() => {
                let Some(sessions) = sessions.upgrade() else { return };
                sessions.check_due().await;
            }
        }
    }
}
