//! The `routes` list: which requests go where, who may make them, and the
//! proof of origin they must carry.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use url::Url;

use super::access::{self, AuthMode, ClaimHeaders, Rule, StepUp};
use super::audience::{Audience, Resource, Scope};
use super::exchange::Exchange;
use super::headers::Subprotocol;
use super::node::{from_text, Cursor, Each, Fields, FromNode, Reported};
use super::statics::StaticConfig;
use super::values::{Bytes, UrlWithoutQuery};
use crate::path::normalize_path;

/// One `routes[]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Normalised path prefix, matched on segment boundaries.
    pub path: String,
    /// Where the route's requests go: an upstream, files from disk, or the
    /// ingress in front that asks first (`forward_auth`).
    pub target: Target,
    pub auth: AuthMode,
    pub token: TokenKind,
    /// `resource` and `scopes`: the route's own, narrower token (PX-23).
    pub audience: Option<Arc<Audience>>,
    /// `exchange`: what the session's token is exchanged for (`token:
    /// exchange`, RFC 8693); set exactly on those routes.
    pub exchange: Option<Arc<Exchange>>,
    pub strip_prefix: bool,
    /// `None` allows every method but TRACE, TRACK and CONNECT.
    pub methods: Option<Vec<Method>>,
    pub timeout: Duration,
    pub max_body: u64,
    pub websocket: bool,
    /// The only `Sec-WebSocket-Protocol` entries forwarded; `None` forwards
    /// all but those that look like credentials (PX-31).
    pub websocket_protocols: Option<Vec<String>>,
    /// A WebSocket tunnel is closed this long after it opened; `None`: it
    /// lasts as long as its session (or its peers) let it.
    pub websocket_max_lifetime: Option<Duration>,
    /// Pages: a missing session redirects to login instead of answering 401.
    pub login_redirect: bool,
    /// How reads prove they come from the SPA (issue 13).
    pub csrf: CsrfMode,
    /// Who may use the route, judged on the session's claims.
    pub access: Option<Rule>,
    /// How recent and how strong the login behind the session must be.
    pub step_up: Option<StepUp>,
    /// Headers the upstream receives, valued from the session's claims.
    pub claim_headers: ClaimHeaders,
}

/// What a route serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Proxy to this base URL.
    Upstream(Url),
    /// Serve files from a directory (`static:`).
    Static(StaticConfig),
    /// Forwarded by an ingress in front, which asks the check endpoint
    /// ([`super::ForwardAuthConfig`]) first (`forward_auth: true`).
    ForwardAuth,
}

/// The CSRF proof a route asks of safe methods (`GET`, `HEAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfMode {
    /// `X-CSRF: 1`, which only script can add.
    Header,
    /// `X-CSRF: 1` or the browser's own `Sec-Fetch-Site: same-origin`, for
    /// requests that cannot carry headers (`EventSource`, `<img>`, downloads).
    FetchMetadata,
}

/// `token`: which access token goes upstream: the user's, cloakroom's own
/// client's (client credentials, no session needed), one the IdP gives in
/// exchange for the user's (RFC 8693), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    User,
    Client,
    Exchange,
    None,
}

/// Methods no route may allow: they echo or tunnel and have no place behind a BFF.
pub const FORBIDDEN_METHODS: &[&str] = &["TRACE", "TRACK", "CONNECT"];

// === impl RouteConfig ===

impl RouteConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;
}

impl FromNode for RouteConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let path = f.required::<RoutePath>("path", at).map(|p| p.0);
        let is_static = f.has("static");
        let forward_auth = f.has("forward_auth");
        let target = if forward_auth {
            read_forward_auth(&mut f, at)
        } else if is_static {
            if f.has("upstream") {
                at.error_at("upstream", "set either upstream or static, not both");
            }
            f.optional::<StaticConfig>("static", at).map(Target::Static)
        } else {
            f.required::<UrlWithoutQuery>("upstream", at)
                .map(|u| Target::Upstream(u.0))
        };
        let auth = f.or("auth", AuthMode::Required, at);
        let default_token = match auth {
            Some(AuthMode::None) => TokenKind::None,
            _ if is_static => TokenKind::None,
            _ => TokenKind::User,
        };
        let token = f.or("token", default_token, at);
        let resource = f.optional::<Resource>("resource", at).map(|r| r.0);
        let scopes = f.optional::<Vec<Scope>>("scopes", at);
        let exchange_given = f.has("exchange");
        let exchange = f.optional::<Exchange>("exchange", at);
        let strip_prefix = f.or("strip_prefix", false, at);
        let methods = f.optional::<Vec<Method>>("methods", at);
        let timeout = f.or("timeout", Self::DEFAULT_TIMEOUT, at);
        let max_body = f.or("max_body", Bytes(Self::DEFAULT_MAX_BODY), at);
        let websocket = f.or("websocket", false, at);
        let websocket_protocols = f.optional::<Vec<Subprotocol>>("websocket_protocols", at);
        let websocket_max_lifetime = f.optional::<Duration>("websocket_max_lifetime", at);
        let login_redirect = f.or("login_redirect", false, at);
        let csrf = f.or("csrf", CsrfMode::Header, at);
        let access = f.optional::<Rule>("access", at);
        let step_up = f.optional::<StepUp>("step_up", at);
        let claim_headers = f.or("claim_headers", ClaimHeaders::default(), at);
        f.finish(at);
        access::check_route(
            auth,
            is_static,
            [access.is_some(), step_up.is_some()],
            claim_headers.as_ref().is_some_and(|h| !h.0.is_empty()),
            at,
        );

        if forward_auth {
            if auth == Some(AuthMode::None) {
                at.error_at(
                    "auth",
                    "a forward_auth route checks a session: set required or optional",
                );
            }
            if strip_prefix == Some(true) {
                at.error_at(
                    "strip_prefix",
                    "only meaningful on a route cloakroom forwards (upstream)",
                );
            }
        }
        if auth == Some(AuthMode::None) && token == Some(TokenKind::User) {
            at.error_at(
                "token",
                "`user` needs a session; set auth to required or optional",
            );
        }
        check_exchange(
            auth,
            token,
            exchange_given,
            [resource.is_some(), scopes.is_some()],
            at,
        );
        if token == Some(TokenKind::None) {
            for (key, set) in [("resource", resource.is_some()), ("scopes", scopes.is_some())] {
                if set {
                    at.error_at(key, "`token: none` sends no token for it to narrow");
                }
            }
        }
        if websocket_protocols.is_some() && websocket == Some(false) {
            at.error_at("websocket_protocols", "only meaningful with websocket: true");
        }
        if websocket_max_lifetime.is_some() && websocket == Some(false) {
            at.error_at("websocket_max_lifetime", "only meaningful with websocket: true");
        }
        if websocket_max_lifetime == Some(Duration::ZERO) {
            at.error_at("websocket_max_lifetime", "must be longer than 0s");
        }
        if auth == Some(AuthMode::None) && login_redirect == Some(true) {
            at.error_at("login_redirect", "only meaningful with auth: required");
        }
        if auth == Some(AuthMode::None) && csrf == Some(CsrfMode::FetchMetadata) {
            at.error_at("csrf", "only meaningful on a route that reads the session");
        }
        if methods.as_ref().is_some_and(Vec::is_empty) {
            at.error_at(
                "methods",
                "must list at least one method (or be left out to allow all)",
            );
        }
        if timeout == Some(Duration::ZERO) {
            at.error_at("timeout", "must be longer than 0s");
        }
        let methods = if is_static {
            check_static_route(auth, token, websocket, methods.as_deref(), at);
            Some(vec![Method::GET, Method::HEAD])
        } else {
            methods
        };
        Ok(RouteConfig {
            path: path.ok_or(Reported)?,
            target: target.ok_or(Reported)?,
            auth: auth.ok_or(Reported)?,
            token: token.ok_or(Reported)?,
            audience: (resource.is_some() || scopes.is_some() || token == Some(TokenKind::Client)).then(
                || {
                    let scopes = scopes.into_iter().flatten().map(|s| s.0).collect();
                    Arc::new(Audience::new(resource, scopes))
                },
            ),
            exchange: exchange
                .filter(|_| token == Some(TokenKind::Exchange))
                .map(Arc::new),
            strip_prefix: strip_prefix.ok_or(Reported)?,
            methods,
            timeout: timeout.ok_or(Reported)?,
            max_body: max_body.ok_or(Reported)?.0,
            websocket: websocket.ok_or(Reported)?,
            websocket_protocols: websocket_protocols.map(|list| list.into_iter().map(|p| p.0).collect()),
            websocket_max_lifetime,
            login_redirect: login_redirect.ok_or(Reported)?,
            csrf: csrf.ok_or(Reported)?,
            access,
            step_up,
            claim_headers: claim_headers.ok_or(Reported)?,
        })
    }
}

/// `token: exchange` and its `exchange` go together, on a route with a
/// session, which says what the token is for in `exchange` alone.
fn check_exchange(
    auth: Option<AuthMode>,
    token: Option<TokenKind>,
    exchange_given: bool,
    [resource, scopes]: [bool; 2],
    at: &mut Cursor<'_>,
) {
    let Some(token) = token else { return };
    if token != TokenKind::Exchange {
        if exchange_given {
            at.error_at("exchange", "only meaningful with token: exchange");
        }
        return;
    }
    if !exchange_given {
        at.error_at(
            "exchange",
            "required with token: exchange (its audience, resource, scopes, subject_token)",
        );
    }
    if auth == Some(AuthMode::None) {
        at.error_at(
            "token",
            "`exchange` needs a session; set auth to required or optional",
        );
    }
    for (key, set) in [("resource", resource), ("scopes", scopes)] {
        if set {
            at.error_at(key, format!("with token: exchange, set exchange.{key} instead"));
        }
    }
}

/// A `forward_auth` route's target: nothing else may say where it goes.
fn read_forward_auth(f: &mut Fields<'_>, at: &mut Cursor<'_>) -> Option<Target> {
    for other in ["upstream", "static"] {
        if f.has(other) {
            at.error_at(other, "set one of upstream, static or forward_auth");
        }
    }
    // Read, so they are not also reported as unknown.
    let _ = f.optional::<UrlWithoutQuery>("upstream", at);
    let _ = f.optional::<StaticConfig>("static", at);
    match f.required::<bool>("forward_auth", at)? {
        true => Some(Target::ForwardAuth),
        false => {
            at.error_at(
                "forward_auth",
                "set upstream or static instead of forward_auth: false",
            );
            None
        }
    }
}

/// Files are the same for everyone and only read: a static route either
/// needs a session or not, sends no token, and answers GET and HEAD.
fn check_static_route(
    auth: Option<AuthMode>,
    token: Option<TokenKind>,
    websocket: Option<bool>,
    methods: Option<&[Method]>,
    at: &mut Cursor<'_>,
) {
    if auth == Some(AuthMode::Optional) {
        at.error_at("auth", "a static route is either required or none");
    }
    if matches!(
        token,
        Some(TokenKind::User | TokenKind::Client | TokenKind::Exchange)
    ) {
        at.error_at("token", "a static route has no upstream to send a token to");
    }
    if websocket == Some(true) {
        at.error_at("websocket", "a static route has no upstream to upgrade to");
    }
    if methods.is_some_and(|m| m.iter().any(|m| m != Method::GET && m != Method::HEAD)) {
        at.error_at("methods", "a static route answers GET and HEAD only");
    }
}

impl RouteConfig {
    /// The upstream base URL, unless the route serves files or answers checks.
    pub fn upstream(&self) -> Option<&Url> {
        match &self.target {
            Target::Upstream(url) => Some(url),
            Target::Static(_) | Target::ForwardAuth => None,
        }
    }

    /// Whether an ingress forwards the route's requests, after asking the
    /// check endpoint.
    pub fn is_forward_auth(&self) -> bool {
        self.target == Target::ForwardAuth
    }
}

/// Whether `path` (normalised) is inside the route prefix `prefix`, on a
/// segment boundary: the router's rule, which config checks share.
pub fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The route that serves `path`, as the router picks it: the longest
/// prefix that covers it.
pub(super) fn serving<'r>(routes: &'r [RouteConfig], path: &str) -> Option<(usize, &'r RouteConfig)> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| covers(&r.path, path))
        .max_by_key(|(_, r)| r.path.len())
}

/// Rules that span routes: at least one, and no two with the same prefix.
pub(super) fn check_routes(routes: &Each<RouteConfig>, at: &mut Cursor<'_>) {
    if routes.0.is_empty() {
        // Every request would be a 404: surely not what was meant.
        at.error_at("routes", "list at least one route");
    }
    let mut seen = HashSet::new();
    for (i, route) in routes.parsed() {
        if !seen.insert(route.path.as_str()) {
            at.nested("routes", |at| {
                at.error_at(
                    &format!("[{i}].path"),
                    format!("{} is already used by an earlier route", route.path),
                )
            });
        }
    }
}

/// A route prefix: absolute, already in normal form, no query.
struct RoutePath(String);

from_text!(RoutePath, |text| {
    if !text.starts_with('/') {
        return Err("must start with /".into());
    }
    if text.contains(['?', '#']) {
        return Err("must be a path only, without ? or #".into());
    }
    let normal = normalize_path(text).map_err(|e| format!("not a clean path: {e}"))?;
    if normal != text {
        return Err(format!("write it in normal form: {normal}"));
    }
    // `/api/` and `/api` mean the same prefix; keep one spelling.
    let trimmed = match normal.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    Ok(RoutePath(trimmed.to_owned()))
});

from_text!(Method, |text| {
    let upper = text.to_ascii_uppercase();
    if FORBIDDEN_METHODS.contains(&upper.as_str()) {
        return Err(format!("{upper} is never allowed"));
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| format!("{text:?} is not an HTTP method"))
});

from_text!(CsrfMode, |text| match text {
    "header" => Ok(CsrfMode::Header),
    "fetch-metadata" => Ok(CsrfMode::FetchMetadata),
    _ => Err(format!("{text:?} is not one of header, fetch-metadata")),
});

from_text!(TokenKind, |text| match text {
    "user" => Ok(TokenKind::User),
    "client" => Ok(TokenKind::Client),
    "exchange" => Ok(TokenKind::Exchange),
    "none" => Ok(TokenKind::None),
    _ => Err(format!("{text:?} is not one of user, client, exchange, none")),
});

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn route_rules_are_checked() {
        let got = errors(
            "public_url: https://app.example.com
routes:
  - {path: api, upstream: 'http://a', auth: none}
  - {path: /x/../y, upstream: 'ftp://a', auth: none, methods: [GET, TRACE]}
  - {path: /z, upstream: 'http://a', auth: none, token: user, timeout: 10}
  - {path: /w, upstream: 'http://a', auth: none}
  - {path: /w/, upstream: 'http://b', auth: none}
",
        );
        assert_eq!(
            got,
            [
                "routes[0].path: must start with /",
                "routes[1].path: write it in normal form: /y",
                "routes[1].upstream: not an absolute http(s) URL",
                "routes[1].methods[1]: TRACE is never allowed",
                "routes[2].timeout: \"10\" has no unit (write e.g. 10s)",
                "routes[2].token: `user` needs a session; set auth to required or optional",
                "routes[4].path: /w is already used by an earlier route",
            ]
        );
    }

    #[test]
    fn an_empty_route_list_is_an_error_at_routes() {
        assert_eq!(
            errors("public_url: http://localhost:8080\nroutes: []"),
            ["routes: list at least one route"]
        );
    }

    #[test]
    fn px31_websocket_protocols_are_tokens_on_websocket_routes() {
        let got = errors(
            "public_url: http://localhost:8080
routes:
  - {path: /ws, upstream: 'http://a', auth: none, websocket: true, websocket_protocols: [graphql-ws, 'a b']}
  - {path: /x, upstream: 'http://a', auth: none, websocket_protocols: [chat]}
",
        );
        assert_eq!(
            got,
            [
                "routes[0].websocket_protocols[1]: \"a b\" is not a subprotocol name (a token: no spaces, commas or separators)",
                "routes[1].websocket_protocols: only meaningful with websocket: true",
            ]
        );
    }
}
