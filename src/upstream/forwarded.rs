//! `X-Forwarded-For/Proto/Host`, written by cloakroom (threat-model PX-08).
//!
//! Client-sent values are believed only when the TCP peer is a configured
//! trusted proxy (a load balancer in front of cloakroom); otherwise they are
//! replaced by what cloakroom itself saw.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the upstream is told about the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub for_chain: String,
    pub proto: String,
    pub host: Option<String>,
}

/// Whether `peer` is one of the trusted proxies.
pub(crate) fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address: the peer's, or, behind trusted proxies, the
/// rightmost `X-Forwarded-For` entry that is not one of them (entries
/// further left were written by whoever the client is, and prove nothing).
pub(crate) fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let mut client = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return client;
    }
    let mut entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
    while is_trusted(client, trusted) {
        match entries.next().and_then(|e| e.trim().parse::<IpAddr>().ok()) {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
    }
    client
}

// === impl Forwarded ===

impl Forwarded {
    /// Reads the request as received, before any header is stripped.
    /// `host` is the `Host` or `:authority` the client used; it is believed
    /// only from a trusted proxy. Anyone else's request is reported at
    /// `public_host`, `public_url`'s host: a client cannot choose the host
    /// an upstream builds its links from (PX-28).
    pub fn from_request(
        headers: &HeaderMap,
        peer: IpAddr,
        trusted: bool,
        host: Option<&str>,
        public_host: &str,
    ) -> Self {
        let text = |name: &HeaderName| -> Option<String> {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let peer = peer.to_canonical().to_string();
        if trusted {
            Self {
                for_chain: text(&X_FORWARDED_FOR).map_or(peer.clone(), |prior| format!("{prior}, {peer}")),
                proto: text(&X_FORWARDED_PROTO).unwrap_or_else(|| "http".into()),
                host: text(&X_FORWARDED_HOST).or_else(|| host.map(str::to_owned)),
            }
        } else {
            Self {
                for_chain: peer,
                proto: "http".into(),
                host: Some(public_host.to_owned()),
            }
        }
    }

    /// Writes the three headers, replacing whatever was there.
    pub fn write(self, headers: &mut HeaderMap) {
        let mut set = |name: &HeaderName, value: String| {
            // Takes the String's buffer; no copy.
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(name.clone(), v);
            }
        };
        set(&X_FORWARDED_FOR, self.for_chain);
        set(&X_FORWARDED_PROTO, self.proto);
        if let Some(host) = self.host {
            set(&X_FORWARDED_HOST, host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h
    }

    #[test]
    fn px08_untrusted_peers_cannot_forge_forwarding_headers() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(!is_trusted(peer, &trusted));
        let f = Forwarded::from_request(&spoofed(), peer, false, Some("evil.example"), "app.example.com");
        assert_eq!(
            f,
            Forwarded {
                for_chain: "203.0.113.9".into(),
                proto: "http".into(),
                host: Some("app.example.com".into())
            }
        );
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(is_trusted(peer, &["10.0.0.0/8".parse().unwrap()]));
        let f = Forwarded::from_request(&spoofed(), peer, true, Some("app.example.com"), "public.example");
        assert_eq!(f.for_chain, "6.6.6.6, 10.1.2.3");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host.as_deref(), Some("evil.example"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 198.51.100.7"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        // Through two trusted proxies: the address the outer one saw.
        assert_eq!(client_ip(&h, ip("10.1.2.3"), &trusted), ip("198.51.100.7"));
        // From anyone else, the header proves nothing.
        assert_eq!(client_ip(&h, ip("203.0.113.9"), &trusted), ip("203.0.113.9"));
        // A trusted proxy that says nothing usable: the proxy itself.
        let junk: HeaderMap = [(X_FORWARDED_FOR.clone(), HeaderValue::from_static("unknown"))]
            .into_iter()
            .collect();
        assert_eq!(client_ip(&junk, ip("10.1.2.3"), &trusted), ip("10.1.2.3"));
    }
}
