//! Which connections are idle: none of their requests in flight (PX-27).
//!
//! HTTP/1 keep-alive connections are already bounded between requests by
//! hyper's `header_read_timeout`; HTTP/2 has no such bound, and a client
//! that answers pings can hold a connection with no stream open forever.
//! A request counts as in flight from the moment the service is called
//! until its response body has been sent or dropped, so a long download
//! or event stream is never mistaken for idleness.

use std::time::Duration;

use http::Response;
use tokio::sync::watch;

use crate::body::{self, Body};

/// The requests in flight on one connection.
#[derive(Debug)]
pub(super) struct Activity {
    in_flight: watch::Sender<usize>,
}

/// One request in flight; it ends when this is dropped.
#[derive(Debug)]
pub(super) struct InFlight {
    in_flight: watch::Sender<usize>,
}

// === impl Activity ===

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            in_flight: watch::Sender::new(0),
        }
    }

    /// Marks a request as started.
    pub(super) fn begin(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight {
            in_flight: self.in_flight.clone(),
        }
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut changes = self.in_flight.subscribe();
        loop {
            if *changes.borrow_and_update() == 0 {
                // Any change while idle is a request starting: start over.
                if tokio::time::timeout(timeout, changes.changed()).await.is_err() {
                    return;
                }
            } else if changes.changed().await.is_err() {
                // Unreachable while `self` lives: it holds the sender.
                std::future::pending::<()>().await;
            }
        }
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
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn px27_idle_only_after_the_last_response_body_ends() {
        let activity = Activity::new();
        let request = activity.begin();
        let response = request.until_sent(Response::new(body::full(bytes::Bytes::from_static(b"streaming"))));
        // A minute with a body still unsent is not idleness.
        let idle = tokio::time::timeout(Duration::from_secs(60), activity.idle_for(Duration::from_secs(1)));
        assert!(idle.await.is_err());
        drop(response);
        let idle = tokio::time::timeout(Duration::from_secs(2), activity.idle_for(Duration::from_secs(1)));
        assert!(idle.await.is_ok());
    }
}
