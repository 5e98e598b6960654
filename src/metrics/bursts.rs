//! Bursts of one kind of failure from one client, over a sliding window,
//! in bounded memory; the same window also serves as a per-client limiter
//! of attempts that may fail ([`Bursts::admit`], [`Bursts::settle`]).
//!
//! Each client address has two fixed windows (the current one and the one
//! before), and its rate is the usual sliding-window estimate: the previous
//! window's count weighted by how much of it the sliding window still
//! covers, plus the current count. A client is reported when its estimate
//! reaches the threshold, then not again until a whole window has passed
//! since that report: one log line per burst, not one per failure.
//!
//! At most `capacity` addresses are tracked. IPv6 clients are tracked by
//! their /64 (one host's addresses are one client). When the table is full,
//! addresses idle for two windows are dropped first, then the one tracked
//! longest ago; the plain counters still count every failure.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per client and says when one makes a burst.
#[derive(Debug)]
pub struct Bursts {
    window: Duration,
    threshold: u32,
    capacity: usize,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    previous: u32,
    reported: Option<Instant>,
    /// Attempts admitted and not yet settled ([`Bursts::admit`]).
    in_flight: u32,
}

/// An attempt [`Bursts::admit`] let in, in flight until it is settled.
/// One dropped unsettled (its request went away before the outcome was
/// known) counts as failed: leaving early must not be a way around the
/// bound.
#[must_use]
pub struct Attempt<'a> {
    bursts: &'a Bursts,
    client: IpAddr,
    settled: bool,
}

impl Attempt<'_> {
    /// The attempt is over; `failed` says whether it counts as a failure.
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.bursts.settle(self.client, failed, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.bursts.settle(self.client, true, Instant::now());
        }
    }
}

// === impl Bursts ===

impl Bursts {
    pub fn new(window: Duration, threshold: u32, capacity: usize) -> Self {
        Self {
            window,
            threshold: threshold.max(1),
            capacity: capacity.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one failure from `client` at `now`. Returns the client's
    /// estimated count over the window when this failure makes a burst
    /// that has not been reported yet.
    pub fn hit(&self, client: IpAddr, now: Instant) -> Option<u32> {
        let (threshold, window) = (self.threshold, self.window);
        self.with_window(client, now, |w, before| {
            w.count = w.count.saturating_add(1);
            let estimate = before.saturating_add(1);
            let quiet = w
                .reported
                .is_none_or(|at| now.saturating_duration_since(at) >= window);
            if estimate >= threshold && quiet {
                w.reported = Some(now);
                return Some(estimate);
            }
            None
        })
    }

    /// Admits one attempt from `client` at `now` that may fail, while its
    /// estimated failures over the window are under `max_failures` and its
    /// attempts in flight under `max_in_flight`; the [`Attempt`] then says
    /// how it went. An attempt in flight is not held against the failure
    /// bound: attempts that succeed (a whole office's logins behind one
    /// address, while the IdP is slow) never throttle each other. Its own
    /// bound caps what a burst can spend before its failures are known.
    pub fn admit(
        &self,
        client: IpAddr,
        max_failures: u32,
        max_in_flight: u32,
        now: Instant,
    ) -> Option<Attempt<'_>> {
        let admitted = self.with_window(client, now, |w, before| {
            if before >= max_failures || w.in_flight >= max_in_flight {
                return false;
            }
            w.in_flight += 1;
            true
        });
        // Made only when admitted: an `Attempt` dropped settles as failed.
        admitted.then(|| Attempt {
            bursts: self,
            client,
            settled: false,
        })
    }

    fn settle(&self, client: IpAddr, failed: bool, now: Instant) {
        self.with_window(client, now, |w, _| {
            w.in_flight = w.in_flight.saturating_sub(1);
            if failed {
                w.count = w.count.saturating_add(1);
            }
        });
    }

    /// Runs `f` on `client`'s window, slid to `now`, with its estimated
    /// count before this event.
    fn with_window<R>(&self, client: IpAddr, now: Instant, f: impl FnOnce(&mut Window, u32) -> R) -> R {
        let key = key(client);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(&key) && clients.len() >= self.capacity {
            self.make_room(&mut clients, now);
        }
        let window = clients.entry(key).or_insert(Window {
            start: now,
            count: 0,
            previous: 0,
            reported: None,
            in_flight: 0,
        });
        let elapsed = now.saturating_duration_since(window.start);
        if elapsed >= 2 * self.window {
            (window.start, window.previous, window.count) = (now, 0, 0);
        } else if elapsed >= self.window {
            window.start += self.window;
            (window.previous, window.count) = (window.count, 0);
        }
        let into = now.saturating_duration_since(window.start).as_secs_f64() / self.window.as_secs_f64();
        let before = (f64::from(window.previous) * (1.0 - into.min(1.0))) as u32 + window.count;
        f(window, before)
    }

    /// Drops addresses idle for two windows; if none is, the one whose
    /// window started longest ago.
    fn make_room(&self, clients: &mut HashMap<IpAddr, Window>, now: Instant) {
        clients.retain(|_, w| now.saturating_duration_since(w.start) < 2 * self.window);
        if clients.len() >= self.capacity {
            let oldest = clients.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

/// IPv4 addresses as they are (an IPv4-mapped IPv6 address as its IPv4
/// one); IPv6 ones by their /64.
fn key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_is_reported_once_per_window() {
        let bursts = Bursts::new(MINUTE, 5, 100);
        let t0 = Instant::now();
        let reports: Vec<_> = (0..12)
            .map(|i| bursts.hit(ip("192.0.2.1"), t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(reports.iter().flatten().count(), 1, "{reports:?}");
        assert_eq!(reports[4], Some(5), "the fifth failure makes the burst");
        // Another client is judged on its own.
        assert_eq!(bursts.hit(ip("192.0.2.2"), t0 + Duration::from_secs(12)), None);
        // A window after the report, the same client's rate is still high:
        // reported again.
        assert!(bursts
            .hit(ip("192.0.2.1"), t0 + Duration::from_secs(65))
            .is_some());
    }

    #[test]
    fn failures_spread_thinly_are_no_burst() {
        let bursts = Bursts::new(MINUTE, 5, 100);
        let t0 = Instant::now();
        for i in 0..20 {
            let at = t0 + Duration::from_secs(20 * i);
            assert_eq!(bursts.hit(ip("192.0.2.1"), at), None, "failure {i}");
        }
    }

    #[test]
    fn the_window_slides_across_its_boundary() {
        let bursts = Bursts::new(MINUTE, 5, 100);
        let t0 = Instant::now();
        // Four in one window, three of them at its end; two at the start
        // of the next make five over the last minute.
        for s in [0, 57, 58, 59] {
            assert_eq!(bursts.hit(ip("192.0.2.1"), t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(bursts.hit(ip("192.0.2.1"), t0 + Duration::from_secs(61)), None);
        assert!(bursts
            .hit(ip("192.0.2.1"), t0 + Duration::from_secs(62))
            .is_some());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let bursts = Bursts::new(MINUTE, 3, 100);
        let t0 = Instant::now();
        assert_eq!(bursts.hit(ip("2001:db8::1"), t0), None);
        assert_eq!(bursts.hit(ip("2001:db8::2"), t0), None);
        assert!(bursts.hit(ip("2001:db8::ffff:3"), t0).is_some());
        assert_eq!(bursts.tracked(), 1);
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn lg28_admit_keeps_a_client_within_its_failures() {
        let limiter = Bursts::new(MINUTE, 1, 100);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let admitted = (0..20)
            .filter(|i| {
                let attempt = limiter.admit(ip("192.0.2.1"), 10, 32, at(*i));
                attempt.map(|a| a.settle(true)).is_some()
            })
            .count();
        assert_eq!(admitted, 10, "ten failures a minute");
        assert!(
            limiter.admit(ip("192.0.2.2"), 10, 32, t0).is_some(),
            "another client has its own"
        );
        // Two windows later the client starts afresh.
        assert!(limiter.admit(ip("192.0.2.1"), 10, 32, t0 + 2 * MINUTE).is_some());
    }

    #[test]
    fn lg28_attempts_that_succeed_never_throttle_each_other() {
        let limiter = Bursts::new(MINUTE, 1, 100);
        let t0 = Instant::now();
        // Twenty at once, more than the failure bound: all in.
        let attempts: Vec<_> = (0..20)
            .map(|_| limiter.admit(ip("192.0.2.1"), 2, 32, t0).expect("admitted"))
            .collect();
        attempts.into_iter().for_each(|a| a.settle(false));
        // And a hundred more, one after another.
        for _ in 0..100 {
            let attempt = limiter.admit(ip("192.0.2.1"), 2, 32, t0);
            attempt.expect("admitted").settle(false);
        }
    }

    #[test]
    fn lg28_a_burst_is_capped_before_its_failures_are_known() {
        let limiter = Bursts::new(MINUTE, 1, 100);
        let t0 = Instant::now();
        let attempts: Vec<_> = (0..100)
            .filter_map(|_| limiter.admit(ip("192.0.2.1"), 2, 32, t0))
            .collect();
        assert_eq!(attempts.len(), 32, "no more in flight at once");
        // They all fail, half of them by going away unsettled: the address
        // is over its failures until they age out.
        for (i, attempt) in attempts.into_iter().enumerate() {
            if i % 2 == 0 {
                attempt.settle(true);
            }
        }
        assert!(limiter.admit(ip("192.0.2.1"), 2, 32, t0 + MINUTE / 2).is_none());
        assert!(limiter.admit(ip("192.0.2.1"), 2, 32, t0 + 2 * MINUTE).is_some());
    }

    #[test]
    fn memory_stays_bounded() {
        let bursts = Bursts::new(MINUTE, 3, 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let client = IpAddr::from(i.to_be_bytes());
            bursts.hit(client, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(bursts.tracked() <= 64, "{} tracked", bursts.tracked());
        // The newest addresses are still tracked.
        let newest = IpAddr::from(9_999u32.to_be_bytes());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(bursts.hit(newest, later), None);
        assert!(bursts.hit(newest, later).is_some());
    }
}
