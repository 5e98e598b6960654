//! At most `max_connections_per_ip` open connections per client address
//! (PX-27), so idle sockets from one address cannot take every slot of
//! `max_connections` and lock everyone else out; and at most
//! `max_requests_per_ip` requests in flight per client address (PX-35),
//! across its connections and HTTP/2 streams, so one address cannot hold
//! an upstream connection (a file descriptor) per stream by the thousand.
//!
//! Written here rather than taken from a rate-limiting crate: these are
//! counts of what is open now, given back when it closes, not rates over
//! time, and the map holds only addresses with something open.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64 and
//! could otherwise open each connection from a fresh address. Peers in
//! `trusted_proxies` are not capped: every client behind a load balancer
//! arrives from its few addresses, and the balancer bounds its own clients.
//! Loopback is capped like any other address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// The open-connection count of every client address.
#[derive(Debug, Clone)]
pub(super) struct PerIp {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// What is counted, for the log line at the cap.
    what: &'static str,
    max: u64,
    exempt: Vec<IpNet>,
    // A std Mutex, never held across an await: taken once per accept and
    // once per close.
    open: Mutex<HashMap<IpAddr, Count>>,
}

#[derive(Debug, Default)]
struct Count {
    open: u64,
    /// Whether the refusal has been logged since the address reached the cap.
    warned: bool,
}

/// One connection's (or request's) place in its address's count; given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    held: Option<(Arc<Shared>, IpAddr)>,
}

// === impl PerIp ===

impl PerIp {
    /// Counts open `what`s (connections, requests) per address, at most `max`.
    pub(super) fn new(what: &'static str, max: u64, exempt: &[IpNet]) -> Self {
        Self {
            shared: Arc::new(Shared {
                what,
                max,
                exempt: exempt.to_vec(),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A slot for one more from `peer`, or `None` when that address
    /// already has its maximum open.
    pub(super) fn acquire(&self, peer: IpAddr) -> Option<Slot> {
        let peer = peer.to_canonical();
        if self.shared.exempt.iter().any(|net| net.contains(&peer)) {
            return Some(Slot { held: None });
        }
        let key = key(peer);
        let mut open = self.shared.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_default();
        if count.open >= self.shared.max {
            if !count.warned {
                count.warned = true;
                tracing::warn!(
                    peer = %key,
                    max = self.shared.max,
                    "per-address cap on open {} reached; refusing more from it",
                    self.shared.what
                );
            }
            return None;
        }
        count.open += 1;
        Some(Slot {
            held: Some((self.shared.clone(), key)),
        })
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 by its /64.
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

// === impl Slot ===

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((shared, key)) = self.held.take() else {
            return;
        };
        let mut open = shared.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&key) {
            count.open = count.open.saturating_sub(1);
            if count.open == 0 {
                // Forget the address: the map holds only addresses with open connections.
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px27_each_address_gets_its_own_cap() {
        let cap = PerIp::new("connections", 2, &[]);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let held: Vec<Slot> = (0..2).map(|_| cap.acquire(a).unwrap()).collect();
        assert!(cap.acquire(a).is_none(), "third from a");
        assert!(cap.acquire(b).is_some(), "b has its own count");
        drop(held);
        assert!(
            cap.acquire(a).is_some(),
            "closed connections give their slots back"
        );
        assert!(
            cap.shared.open.lock().unwrap().is_empty(),
            "addresses with nothing open are forgotten"
        );
    }

    #[test]
    fn px27_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let cap = PerIp::new("connections", 1, &[]);
        let _x = cap.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(cap.acquire("2001:db8::2".parse().unwrap()).is_none());
        assert!(cap.acquire("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _v4 = cap.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(cap.acquire("::ffff:192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn px27_trusted_proxies_are_not_capped() {
        let cap = PerIp::new("connections", 1, &["10.0.0.0/8".parse().unwrap()]);
        let lb: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<Slot> = (0..5).map(|_| cap.acquire(lb).unwrap()).collect();
        assert_eq!(held.len(), 5);
    }
}
