//! `identity_headers`: client request headers that claim an identity and
//! are removed before a request goes upstream (PX-29).
//!
//! Names match without regard to case, and `_` matches `-`, because some
//! servers read `X_User_Id` as `X-User-Id`. A trailing `*` matches a prefix.
//! The list replaces the default; the built-in set in
//! `upstream::hygiene` (`Authorization`, `X-Forwarded-*`, method overrides,
//! …) is stripped whatever it says.

use http::HeaderName;

use super::node::from_text;

/// One entry of `identity_headers`, lower case, `_` written as `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    Exact(String),
    Prefix(String),
}

/// Headers reverse proxies, identity-aware gateways and CDNs use to tell an
/// upstream who the user is or where they came from. A client that sends one
/// directly to cloakroom is forging it.
pub const DEFAULT_IDENTITY_HEADERS: &[&str] = &[
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-remote-addr",
    "x-original-host",
    "x-host",
    "x-user-id",
    "x-userid",
    "x-user-name",
    "x-username",
    "x-user-email",
    "x-userinfo",
    "x-auth-user",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-jwt-assertion",
    "x-client-cert",
    "x-ssl-client-*",
    "x-amzn-oidc-*",
    "x-ms-client-principal*",
    "x-ms-token-*",
    "x-goog-authenticated-user-*",
    "x-goog-iap-jwt-assertion",
    "x-consumer-*",
];

// === impl HeaderRule ===

impl HeaderRule {
    /// The default `identity_headers`.
    pub fn defaults() -> Vec<Self> {
        DEFAULT_IDENTITY_HEADERS
            .iter()
            .filter_map(|text| Self::parse(text).ok())
            .collect()
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (name, prefix) = match text.strip_suffix('*') {
            Some(name) => (name, true),
            None => (text, false),
        };
        if name.is_empty() {
            return Err("name a header (a trailing * matches a prefix, not everything)".into());
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "{text:?} is not a header name (letters, digits, '-', '_'; a trailing * matches a prefix)"
            ));
        }
        let name = name.to_ascii_lowercase().replace('_', "-");
        Ok(if prefix {
            Self::Prefix(name)
        } else {
            Self::Exact(name)
        })
    }

    /// Whether a header name (lower case, as hyper gives it) is covered.
    pub fn matches(&self, name: &str) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (*x == b'_' && *y == b'-'))
        };
        let name = name.as_bytes();
        match self {
            Self::Exact(rule) => same(name, rule.as_bytes()),
            Self::Prefix(rule) => name.len() >= rule.len() && same(&name[..rule.len()], rule.as_bytes()),
        }
    }
}

from_text!(HeaderRule, HeaderRule::parse);

/// A WebSocket subprotocol name, as `Sec-WebSocket-Protocol` lists them
/// (RFC 6455 §4.1: a token, compared exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subprotocol(pub String);

from_text!(Subprotocol, |text| {
    let separator = |b: u8| b"()<>@,;:\\\"/[]?={}".contains(&b);
    let token = !text.is_empty() && text.bytes().all(|b| (0x21..0x7f).contains(&b) && !separator(b));
    if token {
        Ok(Subprotocol(text.to_owned()))
    } else {
        Err(format!(
            "{text:?} is not a subprotocol name (a token: no spaces, commas or separators)"
        ))
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px29_defaults_parse_and_match_every_spelling() {
        let rules = HeaderRule::defaults();
        assert_eq!(rules.len(), DEFAULT_IDENTITY_HEADERS.len());
        let covered = |name: &str| rules.iter().any(|r| r.matches(name));
        for name in [
            "x-user-id",
            "x_user_id",
            "x-amzn-oidc-data",
            "x-ms-client-principal",
            "x-ms-client-principal-name",
            "true-client-ip",
        ] {
            assert!(covered(name), "{name}");
        }
        assert!(!covered("x-user-idx"));
        assert!(!covered("content-type"));
        assert_eq!(
            HeaderRule::parse("X_Custom-*"),
            Ok(HeaderRule::Prefix("x-custom-".into()))
        );
        assert!(HeaderRule::parse("*").is_err());
        assert!(HeaderRule::parse("x user").is_err());
    }
}
