//! Which connections are idle: none of their requests in flight (PX-27).
//!
//! HTTP/1 keep-alive connections are already bounded between requests by
//! hyper's `header_read_timeout`; HTTP/2 has no such bound, and a client
//! that answers pings can hold a connection with no stream open forever.
//! A request counts as in flight from the moment the service is called
//! until its response body has been sent or dropped, so a long download
//! or event stream is never mistaken for idleness.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;

use crate::body::{self, Body};

/// The requests in flight on one connection, and when the last one ended.
///
/// Counters and one lazily re-armed timer rather than a channel the idle
/// watch subscribes to: a request costs two atomic additions and a clock
/// read, where a channel woke the connection's task at each request's
/// start and end and armed a timer at each end (gone, an authenticated
/// request takes 0.91× the CPU: BENCHMARKS.md).
#[derive(Debug)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection began), in
    /// nanoseconds after `since`.
    quiet_from: AtomicU64,
    since: Instant,
}

/// One request in flight; it ends when this is dropped.
#[derive(Debug)]
pub(super) struct InFlight {
    activity: Arc<Activity>,
}

// === impl Activity ===

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            quiet_from: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    /// Marks a request as started.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            activity: self.clone(),
        }
    }

    /// Resolves once no request has been in flight for `timeout`, counted
    /// from this call at the earliest.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        // The config refuses 0s; a timer that never waits would spin here.
        let timeout = timeout.max(Duration::from_millis(1));
        let mut deadline = Instant::now() + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Its end is not known yet: look again a period later.
                deadline = Instant::now() + timeout;
                continue;
            }
            let quiet_from = self.since + Duration::from_nanos(self.quiet_from.load(Ordering::Acquire));
            match quiet_from + timeout {
                idle_at if idle_at <= Instant::now() => return,
                // A request came and went since the timer was armed.
                idle_at => deadline = idle_at,
            }
        }
    }

    fn end(&self) {
        let now = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The time first, so whoever sees the count drop sees it too.
        self.quiet_from.fetch_max(now, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

// === impl InFlight ===

impl InFlight {
    /// Keeps the request in flight until `response`'s body is done.
    pub(super) fn until_sent(self, response: Response<Body>) -> Response<Body> {
        response.map(|inner| body::holding(inner, self))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn px27_idle_only_after_the_last_response_body_ends() {
        let activity = Arc::new(Activity::new());
        let request = activity.begin();
        let response = request.until_sent(Response::new(body::full(bytes::Bytes::from_static(b"streaming"))));
        // A minute with a body still unsent is not idleness.
        let idle = tokio::time::timeout(Duration::from_secs(60), activity.idle_for(Duration::from_secs(1)));
        assert!(idle.await.is_err());
        drop(response);
        let idle = tokio::time::timeout(Duration::from_secs(2), activity.idle_for(Duration::from_secs(1)));
        assert!(idle.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn px27_a_request_within_the_period_counts_the_period_again_from_its_end() {
        let activity = Arc::new(Activity::new());
        let started = Instant::now();
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity.idle_for(Duration::from_secs(10)).await;
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let first = activity.begin();
        let second = activity.begin();
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(second);
        // The last of the two ended at 7 s: idle at 17 s, not at 10 s.
        let idle_after = watch.await.expect("the watch ends");
        assert!(
            (Duration::from_secs(17)..Duration::from_millis(17_010)).contains(&idle_after),
            "{idle_after:?}"
        );
    }
}
