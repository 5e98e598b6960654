//! Header hygiene between the browser and upstreams, both directions.
//!
//! Order matters (threat-model T36): `Connection`-nominated and fixed
//! hop-by-hop headers go first, then client copies of identity and
//! forwarding headers, then cloakroom's own cookies. Only after all of that
//! does cloakroom write its own headers, so no client nomination can remove
//! (or smuggle) a header cloakroom injected.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::HeaderRule;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop and never cross a proxy (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
    ]
    .contains(&name)
}

/// Client headers that claim an identity or a forwarding path. Matched after
/// lower-casing and turning `_` into `-`, because some servers treat
/// `X_Forwarded_User` as `X-Forwarded-User` (threat-model T35).
const IDENTITY_EXACT: &[&str] = &[
    "authorization",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "remote-user",
    "x-remote-user",
    "x-user",
    "x-email",
    "x-id-token",
    "x-access-token",
];
const IDENTITY_PREFIXES: &[&str] = &["x-forwarded-", "x-auth-request-"];

/// Headers that make frameworks treat a request as another method, which
/// would get around a route's `methods:` allowlist (PX-29). Always removed.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "x-original-method",
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass of cheap comparisons finds out.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    let fixed: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for name in fixed {
        headers.remove(name);
    }
}

/// Removes every client-sent identity, credential, forwarding and
/// method-override header, and those `configured` (`identity_headers`).
pub(crate) fn strip_client_identity(headers: &mut HeaderMap, configured: &[HeaderRule]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            is_identity_header(name.as_str()) || configured.iter().any(|rule| rule.matches(name.as_str()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

fn is_identity_header(name: &str) -> bool {
    // Header names from hyper are already lower case; `_` counts as `-`.
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (*x == b'_' && *y == b'-'))
    };
    let name = name.as_bytes();
    IDENTITY_EXACT
        .iter()
        .chain(METHOD_OVERRIDES)
        .any(|known| same(name, known.as_bytes()))
        || IDENTITY_PREFIXES
            .iter()
            .any(|p| name.len() >= p.len() && same(&name[..p.len()], p.as_bytes()))
}

/// Whether a cookie name belongs to cloakroom: the base name, with or without
/// a `__Host-Http-`/`__Host-`/`__Secure-` prefix, and anything derived from it.
pub(crate) fn is_reserved_cookie(name: &str, base: &str) -> bool {
    // `__Host-Http-` before `__Host-`, which would leave `Http-cloakroom`.
    let bare = ["__Host-Http-", "__Host-", "__Secure-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    bare == base || bare.strip_prefix(base).is_some_and(|rest| rest.starts_with('-'))
}

/// Rewrites `Cookie` so upstreams never see cloakroom's cookies (PX-10).
pub(crate) fn strip_reserved_cookies(headers: &mut HeaderMap, base: &str) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    // Split by hand, not with the `cookie` crate: a nameless pair, which
    // that parser refuses, must still be judged (and kept or dropped) here.
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_reserved_cookie(pair.split('=').next().unwrap_or("").trim(), base))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// Drops upstream `Set-Cookie`s that would overwrite cloakroom's cookies or
/// widen their scope with `Domain` (PX-11, PX-30). Returns how many were
/// dropped.
pub(crate) fn strip_upstream_set_cookies(headers: &mut HeaderMap, base: &str) -> usize {
    if !headers.contains_key(header::SET_COOKIE) {
        return 0;
    }
    let all: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    let kept: Vec<HeaderValue> = all
        .iter()
        .filter(|v| is_allowed_set_cookie(v.as_bytes(), base))
        .cloned()
        .collect();
    let dropped = all.len() - kept.len();
    if dropped > 0 {
        headers.remove(header::SET_COOKIE);
        for value in kept {
            headers.append(header::SET_COOKIE, value);
        }
    }
    dropped
}

/// Whether an upstream `Set-Cookie` may reach the browser: parsed, not
/// named like one of cloakroom's, no `Domain` attribute.
fn is_allowed_set_cookie(value: &[u8], base: &str) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    // A browser stores `=cloakroom=evil` as a nameless cookie and sends it
    // back as `cloakroom=evil`: judge it by the name its value carries.
    let text = text.trim_start_matches(|c: char| c == '=' || c.is_ascii_whitespace());
    // What cannot be parsed cannot be judged.
    let Ok(cookie) = cookie::Cookie::parse(text) else {
        return false;
    };
    !is_reserved_cookie(cookie.name(), base) && cookie.domain().is_none()
}

/// Keeps only the `Sec-WebSocket-Protocol` entries that may reach the
/// upstream (PX-31): those in `allowed` when the route lists them, else all
/// but those that look like credentials. Browsers cannot set headers on a
/// WebSocket handshake, so some apps smuggle a token in as a subprotocol;
/// behind cloakroom the upstream gets the session's token instead.
pub(crate) fn filter_websocket_protocols(headers: &mut HeaderMap, allowed: Option<&[String]>) {
    if !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| match allowed {
            Some(list) => list.iter().any(|a| a == p),
            None => !looks_like_credential(p),
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
}

/// Subprotocol entries that carry a credential: the prefixes apps and
/// Kubernetes use (`access_token.…`, `base64url.bearer.authorization.k8s.io.…`)
/// and anything that starts like a JWT.
fn looks_like_credential(protocol: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "access_token",
        "access-token",
        "accesstoken",
        "bearer",
        "authorization",
        "auth-token",
        "token",
        "jwt",
        "id_token",
        "base64url.bearer",
    ];
    let lower = protocol.to_ascii_lowercase();
    PREFIXES.iter().any(|p| lower.starts_with(p)) || lower.contains(".bearer.") || protocol.starts_with("eyJ")
}

/// Whether a request asks for a WebSocket upgrade (RFC 6455 §4.1).
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn px09_connection_nominated_and_fixed_hop_by_hop_headers_go() {
        let mut h = map(&[
            ("connection", "X-CSRF, Cookie, keep-alive"),
            ("x-csrf", "1"),
            ("cookie", "a=b"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn px08_identity_headers_go_in_every_spelling() {
        let mut h = map(&[
            ("authorization", "Bearer attacker"),
            ("x-forwarded-user", "admin"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-auth-request-email", "a@b"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("content-type", "application/json"),
        ]);
        strip_client_identity(&mut h, &[]);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["content-type"]);
    }

    #[test]
    fn px29_method_overrides_always_go_and_configured_names_by_rule() {
        let mut h = map(&[
            ("x-http-method-override", "DELETE"),
            ("x_method_override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-user-id", "admin"),
            ("x-tenant", "other"),
            ("accept", "*/*"),
        ]);
        strip_client_identity(&mut h, &[HeaderRule::Exact("x-tenant".into())]);
        let mut kept: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            ["accept", "x-user-id"],
            "a configured list replaces the default identity list"
        );
    }

    #[test]
    fn px10_cloakroom_cookies_never_reach_upstreams() {
        let mut h = map(&[
            ("cookie", "theme=dark; __Host-cloakroom=abc; cloakroom-login=x"),
            ("cookie", "cloakroomish=1"),
        ]);
        strip_reserved_cookies(&mut h, "cloakroom");
        assert_eq!(
            h.get_all("cookie").iter().collect::<Vec<_>>(),
            ["theme=dark; cloakroomish=1"]
        );
        let mut only_ours = map(&[("cookie", "__Host-cloakroom=abc")]);
        strip_reserved_cookies(&mut only_ours, "cloakroom");
        assert!(!only_ours.contains_key("cookie"));
        // Under `cookie.host_http_prefix`: the session and bound cookies.
        let mut http_prefixed = map(&[(
            "cookie",
            "__Host-Http-cloakroom=abc; theme=dark; __Host-Http-cloakroom-bound=b",
        )]);
        strip_reserved_cookies(&mut http_prefixed, "cloakroom");
        assert_eq!(http_prefixed["cookie"], "theme=dark");
    }

    #[test]
    fn px11_upstream_cannot_set_reserved_or_domain_cookies() {
        let mut h = map(&[
            ("set-cookie", "__Host-cloakroom=x; Path=/; Secure"),
            ("set-cookie", "__Host-Http-cloakroom=x; Path=/; Secure; HttpOnly"),
            (
                "set-cookie",
                "__Host-Http-cloakroom-bound=x; Path=/; Secure; HttpOnly",
            ),
            ("set-cookie", "wide=1; Domain=.example.com"),
            ("set-cookie", "ok=1; Path=/; HttpOnly"),
        ]);
        assert_eq!(strip_upstream_set_cookies(&mut h, "cloakroom"), 4);
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            ["ok=1; Path=/; HttpOnly"]
        );
    }

    #[test]
    fn px30_nameless_cookies_are_judged_by_their_value_and_domain_is_an_attribute() {
        let mut h = map(&[
            ("set-cookie", "=cloakroom=evil"),
            ("set-cookie", " = __Host-cloakroom=evil; Path=/; Secure"),
            ("set-cookie", "==cloakroom-login=x"),
            ("set-cookie", "wide=1; path=/; DOMAIN=example.com"),
            ("set-cookie", "nameless-but-harmless"),
            ("set-cookie", "a=1; Domainx=y"),
            ("set-cookie", "b=1; Path=/domain"),
            ("set-cookie", "=theme=dark"),
        ]);
        assert_eq!(strip_upstream_set_cookies(&mut h, "cloakroom"), 5);
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            ["a=1; Domainx=y", "b=1; Path=/domain", "=theme=dark"]
        );
    }

    #[test]
    fn px31_credential_subprotocols_go_and_an_allowlist_keeps_only_its_own() {
        let offered =
            "access_token.eyJhbGciOiJSUzI1NiJ9, graphql-ws, Bearer.abc, eyJhbGciOiJSUzI1NiJ9.e30.sig";
        let mut h = map(&[
            ("sec-websocket-protocol", offered),
            (
                "sec-websocket-protocol",
                "base64url.bearer.authorization.k8s.io.ZXlK, chat",
            ),
        ]);
        filter_websocket_protocols(&mut h, None);
        assert_eq!(h["sec-websocket-protocol"], "graphql-ws, chat");
        let mut h = map(&[("sec-websocket-protocol", offered)]);
        filter_websocket_protocols(&mut h, Some(&["chat".to_owned()]));
        assert!(!h.contains_key("sec-websocket-protocol"));
    }

    #[test]
    fn websocket_upgrade_needs_both_headers() {
        assert!(is_websocket_upgrade(&map(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade")
        ])));
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_websocket_upgrade(&map(&[
            ("upgrade", "h2c"),
            ("connection", "upgrade")
        ])));
    }
}
