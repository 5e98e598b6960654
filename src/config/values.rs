//! Value parsers shared across the config: http(s) URLs (origins,
//! `public_url`, upstreams) and the plain-http rule, socket addresses, IP
//! ranges, durations and byte sizes.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::node::from_text;
use super::units;

/// An origin (`https://host[:port]`) as browsers send it in `Origin`.
pub(super) struct Origin(pub(super) String);

from_text!(Origin, |text| {
    let url = absolute_http_url(text)?;
    if url.path() != "/" || url.query().is_some() {
        return Err("must be an origin only (scheme, host, port)".into());
    }
    Ok(Origin(url.origin().ascii_serialization()))
});

/// `public_url`: an origin; http only for local development.
pub(super) struct PublicUrl(pub(super) Url);

from_text!(PublicUrl, |text| {
    let url = absolute_http_url(text)?;
    if url.path() != "/" || url.query().is_some() {
        return Err("must be an origin only (scheme, host, port), without a path".into());
    }
    // Plain http is judged with insecure_dev_mode, in Config::from_node.
    Ok(PublicUrl(url))
});

/// An absolute http(s) URL without a query: an upstream's base URL, or
/// where the IdP sends the browser after logout.
pub(super) struct UrlWithoutQuery(pub(super) Url);

from_text!(UrlWithoutQuery, |text| {
    let url = absolute_http_url(text)?;
    if url.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(UrlWithoutQuery(url))
});

/// A byte count written with or without a unit.
pub(super) struct Bytes(pub(super) u64);

from_text!(Bytes, |text| units::parse_bytes(text).map(Bytes));

/// Plain http to anything but this machine: refused for the browser-facing
/// origin and the issuer, allowed for localhost development, and on other
/// host names with `insecure_dev_mode`.
pub(super) fn is_plain_remote(url: &Url) -> bool {
    url.scheme() == "http" && !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

pub(super) fn absolute_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|_| "not an absolute http(s) URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("not an absolute http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

from_text!(SocketAddr, |text| {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address like 0.0.0.0:8080"))
});

from_text!(IpNet, |text| {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))
});

from_text!(Duration, units::parse_duration);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    #[test]
    fn compound_durations_and_decimal_sizes_load() {
        let c = load(
            "public_url: http://localhost:8080
session: {idle_timeout: 1h30m, absolute_timeout: 1.5d}
routes: [{path: /, upstream: 'http://a', auth: none, max_body: 1.5MiB, timeout: 1m30s}]",
        )
        .unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(90 * 60));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(36 * 3600));
        assert_eq!(c.routes[0].max_body, 1_572_864);
        assert_eq!(c.routes[0].timeout, Duration::from_secs(90));
    }
}
