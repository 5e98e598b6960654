//! Waiting for real time to pass (a server to start, a socket to close, a
//! log line to be read) by polling, within a bound: never longer than it
//! takes, and a broken part fails the test instead of hanging it.
//!
//! Expiry judged by cloakroom's clock is not waited for: tests move the
//! clock instead (`World::clock`).

use std::time::{Duration, Instant};

/// Calls `probe` every `every` until `done` holds for its answer or `limit`
/// has passed; returns the last answer either way, for the caller to assert
/// on.
pub async fn poll<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let answer = probe().await;
        if done(&answer) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `holds` answers true, asking every `every`; fails the test
/// with `what` once `limit` has passed.
pub async fn until(limit: Duration, every: Duration, what: &str, mut holds: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !holds().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}

/// [`until`] for synchronous code and checks: blocks the thread between
/// checks.
pub fn until_blocking(limit: Duration, every: Duration, what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !holds() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(every);
    }
}
