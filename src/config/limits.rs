//! The `limits` section: sizes, counts and timeouts that bound every
//! request and connection.

use std::time::Duration;

use serde_json::Value;

use super::node::{Cursor, Fields, FromNode, Reported};
use super::values::Bytes;

/// Protocol limits applied to every request and connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: u64,
    pub max_headers: u64,
    pub max_uri_bytes: u64,
    pub header_read_timeout: Duration,
    /// From accept until the bytes tell HTTP/1 from HTTP/2 (PX-27).
    pub first_bytes_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: u64,
    /// Open connections per client address (per /64 for IPv6).
    pub max_connections_per_ip: u64,
    /// A body cloakroom reads itself (back-channel logout) arrives whole
    /// within this, or the request is a 408 (PX-34).
    pub body_read_timeout: Duration,
    /// A proxied request body that sends nothing this long is a 408 (PX-34).
    pub body_idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once (PX-35).
    pub max_streams_per_connection: u64,
    /// Requests in flight per client address (per /64 for IPv6), across
    /// its connections and streams (PX-35).
    pub max_requests_per_ip: u64,
    /// Codes the token endpoint may refuse per client address and minute
    /// before `/auth/callback` stops asking it for that address (LG-28).
    pub refused_code_exchanges_per_minute: u64,
    pub shutdown_grace: Duration,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            body_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            max_streams_per_connection: 100,
            max_requests_per_ip: 256,
            refused_code_exchanges_per_minute: 10,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl FromNode for Limits {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let d = Self::default();
        let mut f = Fields::open(node, at)?;
        let max_header_bytes = f.or("max_header_bytes", Bytes(d.max_header_bytes), at);
        let max_headers = f.or("max_headers", d.max_headers, at);
        let max_uri_bytes = f.or("max_uri_bytes", Bytes(d.max_uri_bytes), at);
        let header_read_timeout = f.or("header_read_timeout", d.header_read_timeout, at);
        let first_bytes_timeout = f.or("first_bytes_timeout", d.first_bytes_timeout, at);
        let idle_timeout = f.or("idle_timeout", d.idle_timeout, at);
        let max_connections = f.or("max_connections", d.max_connections, at);
        let max_connections_per_ip = f.or("max_connections_per_ip", d.max_connections_per_ip, at);
        let body_read_timeout = f.or("body_read_timeout", d.body_read_timeout, at);
        let body_idle_timeout = f.or("body_idle_timeout", d.body_idle_timeout, at);
        let max_streams_per_connection = f.or("max_streams_per_connection", d.max_streams_per_connection, at);
        let max_requests_per_ip = f.or("max_requests_per_ip", d.max_requests_per_ip, at);
        let refused_code_exchanges_per_minute = f.or(
            "refused_code_exchanges_per_minute",
            d.refused_code_exchanges_per_minute,
            at,
        );
        let shutdown_grace = f.or("shutdown_grace", d.shutdown_grace, at);
        f.finish(at);
        if max_header_bytes
            .as_ref()
            .is_some_and(|b| !(1024..=1 << 20).contains(&b.0))
        {
            at.error_at("max_header_bytes", "must be between 1KiB and 1MiB");
        }
        if max_headers.is_some_and(|n| !(8..=1000).contains(&n)) {
            at.error_at("max_headers", "must be between 8 and 1000");
        }
        if max_connections == Some(0) {
            at.error_at("max_connections", "must be at least 1");
        }
        // Zero would refuse every request (or every login).
        for (key, value) in [
            ("max_connections_per_ip", max_connections_per_ip),
            ("max_streams_per_connection", max_streams_per_connection),
            ("max_requests_per_ip", max_requests_per_ip),
            (
                "refused_code_exchanges_per_minute",
                refused_code_exchanges_per_minute,
            ),
        ] {
            if value == Some(0) {
                at.error_at(key, "must be at least 1");
            }
        }
        // Zero would be no timeout at all, which is what these keys prevent.
        for (key, value) in [
            ("header_read_timeout", header_read_timeout),
            ("first_bytes_timeout", first_bytes_timeout),
            ("idle_timeout", idle_timeout),
            ("body_read_timeout", body_read_timeout),
            ("body_idle_timeout", body_idle_timeout),
        ] {
            if value.is_some_and(|t| t.is_zero()) {
                at.error_at(key, "must be longer than 0s");
            }
        }
        Ok(Limits {
            max_header_bytes: max_header_bytes.ok_or(Reported)?.0,
            max_headers: max_headers.ok_or(Reported)?,
            max_uri_bytes: max_uri_bytes.ok_or(Reported)?.0,
            header_read_timeout: header_read_timeout.ok_or(Reported)?,
            first_bytes_timeout: first_bytes_timeout.ok_or(Reported)?,
            idle_timeout: idle_timeout.ok_or(Reported)?,
            max_connections: max_connections.ok_or(Reported)?,
            max_connections_per_ip: max_connections_per_ip.ok_or(Reported)?,
            body_read_timeout: body_read_timeout.ok_or(Reported)?,
            body_idle_timeout: body_idle_timeout.ok_or(Reported)?,
            max_streams_per_connection: max_streams_per_connection.ok_or(Reported)?,
            max_requests_per_ip: max_requests_per_ip.ok_or(Reported)?,
            refused_code_exchanges_per_minute: refused_code_exchanges_per_minute.ok_or(Reported)?,
            shutdown_grace: shutdown_grace.ok_or(Reported)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{errors, load};

    const BASE: &str =
        "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";

    #[test]
    fn px34_body_deadlines_are_read_and_checked() {
        let d = load(BASE).unwrap().limits;
        assert_eq!(
            (d.body_read_timeout, d.body_idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(10))
        );
        let c = load(&format!(
            "{BASE}limits: {{body_read_timeout: 2s, body_idle_timeout: 3s}}"
        ))
        .unwrap()
        .limits;
        assert_eq!(
            (c.body_read_timeout, c.body_idle_timeout),
            (Duration::from_secs(2), Duration::from_secs(3))
        );
        let got = errors(&format!(
            "{BASE}limits: {{body_read_timeout: 0s, body_idle_timeout: 0s}}"
        ));
        assert_eq!(
            got,
            [
                "limits.body_read_timeout: must be longer than 0s",
                "limits.body_idle_timeout: must be longer than 0s",
            ]
        );
    }

    #[test]
    fn px35_stream_and_in_flight_caps_are_read_and_checked() {
        let d = load(BASE).unwrap().limits;
        assert_eq!((d.max_streams_per_connection, d.max_requests_per_ip), (100, 256));
        let c = load(&format!(
            "{BASE}limits: {{max_streams_per_connection: 8, max_requests_per_ip: 16}}"
        ))
        .unwrap()
        .limits;
        assert_eq!((c.max_streams_per_connection, c.max_requests_per_ip), (8, 16));
        let got = errors(&format!(
            "{BASE}limits: {{max_streams_per_connection: 0, max_requests_per_ip: 0}}"
        ));
        assert_eq!(
            got,
            [
                "limits.max_streams_per_connection: must be at least 1",
                "limits.max_requests_per_ip: must be at least 1",
            ]
        );
    }

    #[test]
    fn lg28_the_code_exchange_rate_is_read_and_checked() {
        assert_eq!(load(BASE).unwrap().limits.refused_code_exchanges_per_minute, 10);
        let c = load(&format!("{BASE}limits: {{refused_code_exchanges_per_minute: 4}}")).unwrap();
        assert_eq!(c.limits.refused_code_exchanges_per_minute, 4);
        let got = errors(&format!("{BASE}limits: {{refused_code_exchanges_per_minute: 0}}"));
        assert_eq!(
            got,
            ["limits.refused_code_exchanges_per_minute: must be at least 1"]
        );
    }

    #[test]
    fn px27_connection_limits_are_read_and_checked() {
        let base =
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";
        let c = load(&format!(
            "{base}limits: {{first_bytes_timeout: 2s, idle_timeout: 1m, max_connections_per_ip: 8}}"
        ))
        .unwrap();
        assert_eq!(c.limits.first_bytes_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections_per_ip, 8);
        let d = load(base).unwrap().limits;
        assert_eq!(
            (d.first_bytes_timeout, d.idle_timeout, d.max_connections_per_ip),
            (Duration::from_secs(5), Duration::from_secs(75), 256)
        );
        let got = errors(&format!(
            "{base}limits: {{first_bytes_timeout: 0s, idle_timeout: 0s, max_connections_per_ip: 0}}"
        ));
        assert_eq!(
            got,
            [
                "limits.max_connections_per_ip: must be at least 1",
                "limits.first_bytes_timeout: must be longer than 0s",
                "limits.idle_timeout: must be longer than 0s",
            ]
        );
    }
}
