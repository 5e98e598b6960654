//! Wall-clock seconds, for token and session expiry.
//!
//! Every expiry decision reads one [`Clock`], handed to the parts that
//! decide. In production it is the system clock; a test may move it
//! forward to reach an expiry without waiting for it in real time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, by the system clock.
pub fn now() -> u64 {
    now_ms() / 1000
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The clock expiry is judged by: the system's, or one a test holds still
/// and moves by hand. Cheap to clone; clones move together.
#[derive(Clone, Debug)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// The system clock, this many milliseconds ahead.
    System(Arc<AtomicU64>),
    /// Stands at this many milliseconds since the epoch until advanced.
    Manual(Arc<AtomicU64>),
}

// === impl Clock ===

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self {
            kind: Kind::System(Arc::default()),
        }
    }

    /// A clock that stands still at the system's time now, and moves only
    /// by [`Clock::advance`]: what real time a test takes changes nothing.
    pub fn manual() -> Self {
        Self {
            kind: Kind::Manual(Arc::new(AtomicU64::new(now_ms()))),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Milliseconds since the Unix epoch, for lifetimes of a few seconds,
    /// where whole seconds would be too coarse.
    pub fn now_ms(&self) -> u64 {
        match &self.kind {
            Kind::System(ahead) => now_ms().saturating_add(ahead.load(Ordering::Relaxed)),
            Kind::Manual(at) => at.load(Ordering::Relaxed),
        }
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let (Kind::System(ms) | Kind::Manual(ms)) = &self.kind;
        ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual();
        let at = clock.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now_ms(), at);
        clock.clone().advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), at + 1_500);
    }

    #[test]
    fn clones_share_the_advance() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(Duration::from_secs(300));
        assert!(clone.now() >= before + 300);
        assert!(Clock::system().now() < before + 300, "other clocks stay put");
    }
}
