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
//! holds a [`SessionEnd`], which [`Endings`], this replica's registry of
//! watched sessions, resolves when the session ends: at once for an end in
//! this replica, on the announcement for an end in another. Not every end
//! is announced: timeouts happen while nobody looks, and announcements are
//! missed while a subscription is down. So a watcher task also looks at
//! every watched session, by [`Clock`](crate::clock::Clock), twice a second:
//! one due for a check (its absolute end, its idle end as last seen, at the
//! latest [`RECHECK`] after the last check, and every one after each
//! (re)subscription) is read again and judged as a request would judge it.
//!
//! The registry keeps the keys of recently ended sessions for a while, so
//! that a request that loaded its session just before the end cannot
//! start a tunnel that nothing would close.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use super::index::Indexes;
use super::record::Record;
use super::revocation;
use super::store::{Announcements, StoreError};
use super::{Loaded, Sessions};
use crate::audit;
use crate::body::Body;
use crate::cookie::Ticket;
use crate::error::{BoxError, Refusal};
use crate::metrics::EndReason;

/// The longest a watched session goes without being read again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// How often the watcher looks for sessions due for a check: well inside
/// the second in which what depends on a timed-out session must close.
const TICK: Duration = Duration::from_millis(500);
/// How long an ended session's key is remembered.
const TOMBSTONE: Duration = Duration::from_secs(60);
/// Checks run at once, at most.
const CONCURRENT_CHECKS: usize = 16;

/// This replica's watched sessions: those something long-lived depends on.
#[derive(Default)]
pub struct Endings {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    watched: HashMap<String, Watched>,
    /// Keys of sessions ended lately, and when.
    ended: HashMap<String, Instant>,
}

struct Watched {
    ended: watch::Sender<bool>,
    /// Opens the record when the session is checked.
    ticket: Ticket,
    /// When to read it again, in seconds since the epoch by the clock;
    /// `u64::MAX` while a check runs.
    check_at: u64,
}

/// Resolves when its session ends (or when nothing watches sessions any
/// more: a replica shutting its session handling down closes what
/// depended on it). Clones watch the same session.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    ended: watch::Receiver<bool>,
}

/// A response body cut short when its session ended.
#[derive(Debug, thiserror::Error)]
#[error("the session ended")]
pub struct SessionEnded;

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

// === impl Endings ===

impl Endings {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watch(&self, key: &str, ticket: &Ticket, check_at: u64) -> SessionEnd {
        let mut state = self.lock();
        if state.ended.contains_key(key) {
            // Ended between this request's read and now.
            let (_, ended) = watch::channel(true);
            return SessionEnd { ended };
        }
        if let Some(watched) = state.watched.get(key) {
            return SessionEnd {
                ended: watched.ended.subscribe(),
            };
        }
        let (tx, ended) = watch::channel(false);
        state.watched.insert(
            key.to_owned(),
            Watched {
                ended: tx,
                ticket: ticket.clone(),
                check_at,
            },
        );
        SessionEnd { ended }
    }

    /// Closes what depends on the session under `key`, now and for
    /// whatever asks to watch it a little later.
    pub fn end(&self, key: &str) {
        let mut state = self.lock();
        state.ended.insert(key.to_owned(), Instant::now());
        if let Some(watched) = state.watched.remove(key) {
            let _ = watched.ended.send(true);
        }
    }

    /// Marks every watched session due: announcements may have been missed.
    fn resync(&self) {
        for watched in self.lock().watched.values_mut() {
            watched.check_at = 0;
        }
    }

    /// The sessions due for a check at `now`, marked as being checked.
    /// Forgets those nothing depends on any more, and old tombstones.
    fn due(&self, now: u64) -> Vec<(String, Ticket)> {
        let mut state = self.lock();
        state.watched.retain(|_, w| w.ended.receiver_count() > 0);
        state.ended.retain(|_, at| at.elapsed() < TOMBSTONE);
        state
            .watched
            .iter_mut()
            .filter(|(_, w)| w.check_at <= now)
            .map(|(key, w)| {
                w.check_at = u64::MAX;
                (key.clone(), w.ticket.clone())
            })
            .collect()
    }

    fn reschedule(&self, key: &str, check_at: u64) {
        if let Some(watched) = self.lock().watched.get_mut(key) {
            watched.check_at = check_at;
        }
    }

    /// How many sessions something depends on, for tests.
    pub fn watched(&self) -> usize {
        self.lock().watched.len()
    }
}

// === impl SessionEnd ===

impl SessionEnd {
    /// Resolves when the session has ended.
    pub async fn ended(mut self) {
        let _ = self.ended.wait_for(|ended| *ended).await;
    }

    /// `body`, cut short with a [`SessionEnded`] error when the session
    /// ends before it is all sent.
    pub fn guard(self, body: Body) -> Body {
        if http_body::Body::is_end_stream(&body) {
            return body;
        }
        crate::body::boxed(Guarded {
            inner: body,
            ended: Some(Box::pin(self.ended())),
        })
    }
}

/// A body that stops when its session ends.
struct Guarded {
    inner: Body,
    /// `None` once the end was reported.
    ended: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(ended) = self.ended.as_mut() else {
            return Poll::Ready(None);
        };
        if ended.as_mut().poll(cx).is_ready() {
            self.ended = None;
            return Poll::Ready(Some(Err(Box::new(SessionEnded))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_end_reaches_every_watcher_and_later_ones_too() {
        let endings = Endings::default();
        let ticket = Ticket::generate(0);
        let first = endings.watch("k", &ticket, 10);
        let second = endings.watch("k", &ticket, 10);
        assert_eq!(endings.watched(), 1, "one entry per session");
        endings.end("k");
        tokio::time::timeout(Duration::from_secs(1), first.ended())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), second.ended())
            .await
            .unwrap();
        // A request that loaded the session just before it ended.
        let late = endings.watch("k", &ticket, 10);
        tokio::time::timeout(Duration::from_secs(1), late.ended())
            .await
            .unwrap();
        assert_eq!(endings.watched(), 0);
    }

    #[tokio::test]
    async fn due_sessions_are_handed_out_once_and_unwatched_ones_forgotten() {
        let endings = Endings::default();
        let ticket = Ticket::generate(0);
        let kept = endings.watch("due", &ticket, 5);
        let _later = endings.watch("later", &ticket, 50);
        drop(endings.watch("dropped", &ticket, 5));
        let due: Vec<String> = endings.due(10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(due, ["due"]);
        assert!(endings.due(10).is_empty(), "being checked");
        endings.reschedule("due", 20);
        assert_eq!(endings.due(20).len(), 1);
        assert_eq!(endings.watched(), 2, "the dropped one is forgotten");
        endings.resync();
        assert_eq!(endings.due(0).len(), 2, "a resync makes every one due");
        drop(kept);
    }

    #[tokio::test]
    async fn a_guarded_body_stops_when_its_session_ends() {
        use http_body_util::BodyExt;
        let endings = Endings::default();
        let end = endings.watch("k", &Ticket::generate(0), 10);
        let (sender, body) = channel_body();
        let mut guarded = end.guard(body);
        sender.send(Bytes::from_static(b"first")).unwrap();
        let frame = guarded.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first");
        endings.end("k");
        let cut = guarded.frame().await.unwrap();
        assert!(cut.unwrap_err().is::<SessionEnded>());
        assert!(guarded.frame().await.is_none());
    }

    /// A streaming body fed through a channel.
    fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, Body) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let stream = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|b| b.map(|b| Ok::<_, BoxError>(Frame::data(b))))
        });
        (tx, crate::body::boxed(http_body_util::StreamBody::new(stream)))
    }
}
