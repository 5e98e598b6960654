//! This replica's registry of watched sessions ([`Endings`]): what
//! outlives a request (an open WebSocket tunnel, a streamed answer) holds
//! a [`SessionEnd`], resolved when its session ends (`ending.rs` says when).
//!
//! The registry keeps the keys of recently ended sessions for a while, so
//! that a request that loaded its session just before the end cannot
//! start a tunnel that nothing would close.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::Body;
use crate::cookie::Ticket;
use crate::error::BoxError;

/// How long an ended session's key is remembered.
const TOMBSTONE: Duration = Duration::from_secs(60);

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

// === impl Endings ===

impl Endings {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn watch(&self, key: &str, ticket: &Ticket, check_at: u64) -> SessionEnd {
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
    pub(super) fn resync(&self) {
        for watched in self.lock().watched.values_mut() {
            watched.check_at = 0;
        }
    }

    /// The sessions due for a check at `now`, marked as being checked.
    /// Forgets those nothing depends on any more, and old tombstones.
    pub(super) fn due(&self, now: u64) -> Vec<(String, Ticket)> {
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

    pub(super) fn reschedule(&self, key: &str, check_at: u64) {
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
