//! The typed configuration, read from YAML before any port is bound.
//!
//! `Config::load(text, env)` parses, substitutes `${VAR}`, reads `*_file`
//! secrets, and checks every key, returning all problems at once with their
//! key paths. `config/reference.yaml` documents each key and its default.

pub mod env;
pub mod headers;
pub mod log_filter;
pub mod node;
mod redis;
mod routes;
mod session;
pub mod statics;
pub mod strict;
pub mod units;
mod values;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use serde_json::Value;
use url::Url;

pub use self::env::{Env, MapEnv, ProcessEnv};
pub use self::headers::HeaderRule;
use self::node::{from_text, Cursor, Each, Fields, FromNode, Reported};
pub use self::node::{ConfigError, ConfigErrors};
pub use self::redis::{RedisConfig, RedisTls, RedisTopology, RedisWait};
use self::routes::check_routes;
pub use self::routes::{AuthMode, CsrfMode, RouteConfig, Target, TokenKind, FORBIDDEN_METHODS};
pub use self::session::{SessionConfig, StoreConfig};
pub use self::statics::StaticConfig;
use self::values::{absolute_http_url, is_plain_remote, Bytes, Origin, PublicUrl, Upstream};
use crate::secret::Secret;

/// Everything cloakroom needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The origin browsers use; `{public_url}/auth/callback` is the redirect URI.
    pub public_url: Url,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Origins besides `public_url` allowed to make unsafe API calls.
    pub allowed_origins: Vec<String>,
    /// Client headers claiming an identity, stripped before forwarding.
    pub identity_headers: Vec<HeaderRule>,
    pub oidc: Option<OidcConfig>,
    pub session: SessionConfig,
    pub cookie: CookieConfig,
    pub limits: Limits,
    pub log: LogConfig,
    pub routes: Vec<RouteConfig>,
    /// Worker threads serving requests; 0 means one per CPU.
    pub workers: usize,
    /// Allows a plain-http `public_url` and issuer on any host name, for
    /// development on real host names (issue 13). Warned about at start;
    /// `cloakroom check --strict` refuses it.
    pub insecure_dev_mode: bool,
}

/// The IdP and how cloakroom authenticates to it.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub scopes: Vec<String>,
    /// Where the IdP sends the browser after logout; default `{public_url}/`.
    pub post_logout_redirect_uri: Option<Url>,
    /// Send `id_token_hint` at logout, for IdPs that insist on it. Off by
    /// default: the logout answer then carries no token of any kind.
    pub id_token_hint: bool,
    /// Where logout revokes refresh tokens (RFC 7009), for IdPs whose
    /// metadata does not say; used in preference to the metadata (LO-13).
    pub revocation_endpoint: Option<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// The base name; `__Host-` is prepended when `public_url` is https.
    pub name: String,
    /// The key ring: the first key seals, every key unseals.
    pub keys: Vec<CookieKey>,
}

#[derive(Debug, Clone)]
pub struct CookieKey {
    pub id: String,
    pub secret: Secret<Vec<u8>>,
}

/// Protocol limits applied to every request and connection.
#[derive(Debug, Clone)]
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
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

// === impl Config ===

impl Config {
    /// Parses and validates a config file. Reads nothing but `env`.
    pub fn load(text: &str, env: &dyn Env) -> Result<Self, ConfigErrors> {
        Self::load_named(text, "config", env)
    }

    /// Like [`Config::load`]; YAML syntax errors name `source` (the file
    /// path) with the line and column, e.g. `config/x.yaml:7:4: …`.
    pub fn load_named(text: &str, source: &str, env: &dyn Env) -> Result<Self, ConfigErrors> {
        let mut tree: Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigErrors(vec![ConfigError::yaml(source, &e)]))?;
        let mut errors = Vec::new();
        let mut at = Cursor::root(&mut errors);
        env::substitute(&mut tree, env, &mut at);
        env::read_secret_files(&mut tree, env, &mut at);
        let config = at.read::<Config>(&tree);
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Whether the browser reaches cloakroom over https.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The redirect URI to register at the IdP: `{public_url}/auth/callback`.
    pub fn redirect_uri(&self) -> String {
        // `public_url` is an origin, so it always ends in `/`.
        format!("{}auth/callback", self.public_url)
    }

    /// Where the IdP sends the browser after logout, to register there too:
    /// `oidc.post_logout_redirect_uri`, else `{public_url}/`.
    pub fn post_logout_redirect_uri(&self) -> String {
        self.oidc
            .as_ref()
            .and_then(|o| o.post_logout_redirect_uri.as_ref())
            .unwrap_or(&self.public_url)
            .to_string()
    }
}

impl FromNode for Config {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let listen = f.or("listen", "0.0.0.0:8080".parse().expect("valid"), at);
        let admin_listen = f.or("admin_listen", "127.0.0.1:9090".parse().expect("valid"), at);
        // Read first: it decides whether plain http is allowed below.
        let dev = f.or("insecure_dev_mode", false, at);
        let dev_mode = dev == Some(true);
        let public_url = f.required::<PublicUrl>("public_url", at).map(|u| u.0);
        if public_url
            .as_ref()
            .is_some_and(|u| is_plain_remote(u) && !dev_mode)
        {
            at.error_at(
                "public_url",
                "must be https (plain http is allowed only for localhost development)",
            );
        }
        let trusted_proxies = f.or("trusted_proxies", Vec::new(), at);
        let allowed_origins = f.or::<Vec<Origin>>("allowed_origins", Vec::new(), at);
        let identity_headers = f.or("identity_headers", HeaderRule::defaults(), at);
        let oidc = f.optional::<OidcConfig>("oidc", at);
        if oidc
            .as_ref()
            .is_some_and(|o| is_plain_remote(&o.issuer) && !dev_mode)
        {
            at.error_at("oidc.issuer", "must be https");
        }
        let oidc_given = f.has("oidc") || oidc.is_some();
        let session = f.or("session", SessionConfig::default(), at);
        let cookie = f.or("cookie", CookieConfig::default(), at);
        let limits = f.or("limits", Limits::default(), at);
        let log = f.or("log", LogConfig::default(), at);
        let workers = f.or::<u64>("workers", 0, at);
        let routes = f.required::<Each<RouteConfig>>("routes", at);
        f.finish(at);

        if let Some(routes) = &routes {
            check_routes(routes, at);
            let needs_login = routes
                .parsed()
                .find(|(_, r)| r.auth != AuthMode::None)
                .map(|(i, _)| i);
            if let Some(i) = needs_login {
                if !oidc_given {
                    at.error_at(
                        "oidc",
                        format!("required because routes[{i}] has auth other than none"),
                    );
                }
                if cookie.as_ref().is_some_and(|c| c.keys.is_empty()) {
                    at.error_at(
                        "cookie.keys",
                        format!("at least one key is required because routes[{i}] needs login (run `cloakroom keygen`)"),
                    );
                }
            }
        }
        Ok(Config {
            listen: listen.ok_or(Reported)?,
            admin_listen: admin_listen.ok_or(Reported)?,
            public_url: public_url.ok_or(Reported)?,
            trusted_proxies: trusted_proxies.ok_or(Reported)?,
            allowed_origins: allowed_origins
                .ok_or(Reported)?
                .into_iter()
                .map(|o| o.0)
                .collect(),
            identity_headers: identity_headers.ok_or(Reported)?,
            oidc,
            session: session.ok_or(Reported)?,
            cookie: cookie.ok_or(Reported)?,
            limits: limits.ok_or(Reported)?,
            log: log.ok_or(Reported)?,
            routes: routes.and_then(Each::complete).ok_or(Reported)?,
            workers: usize::try_from(workers.ok_or(Reported)?).map_err(|_| at.fail("workers: too many"))?,
            insecure_dev_mode: dev.ok_or(Reported)?,
        })
    }
}

from_text!(TokenEndpointAuth, |text| match text {
    "client_secret_basic" => Ok(TokenEndpointAuth::ClientSecretBasic),
    "client_secret_post" => Ok(TokenEndpointAuth::ClientSecretPost),
    _ => Err(format!(
        "{text:?} is not one of client_secret_basic, client_secret_post"
    )),
});

from_text!(LogFormat, |text| match text {
    "auto" => Ok(LogFormat::Auto),
    "json" => Ok(LogFormat::Json),
    "text" => Ok(LogFormat::Text),
    _ => Err(format!("{text:?} is not one of auto, json, text")),
});

// === impl OidcConfig ===

impl FromNode for OidcConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let issuer = f.required::<Issuer>("issuer", at).map(|i| i.0);
        let client_id = f.required::<String>("client_id", at);
        let client_secret = f.required::<String>("client_secret", at);
        let token_endpoint_auth = f.or("token_endpoint_auth", TokenEndpointAuth::ClientSecretBasic, at);
        let default_scopes = ["openid", "profile", "email", "offline_access"]
            .map(String::from)
            .to_vec();
        let scopes = f.or::<Vec<String>>("scopes", default_scopes, at);
        let post_logout_redirect_uri = f
            .optional::<Upstream>("post_logout_redirect_uri", at)
            .map(|u| u.0);
        let id_token_hint = f.or("id_token_hint", false, at);
        let revocation_endpoint = f.optional::<IdpEndpoint>("revocation_endpoint", at).map(|e| e.0);
        if scopes.as_ref().is_some_and(|s| !s.iter().any(|s| s == "openid")) {
            at.error_at("scopes", "must include openid");
        }
        if client_secret.as_ref().is_some_and(String::is_empty) {
            at.error_at("client_secret", "must not be empty");
        }
        f.finish(at);
        Ok(OidcConfig {
            issuer: issuer.ok_or(Reported)?,
            client_id: client_id.ok_or(Reported)?,
            client_secret: Secret::new(client_secret.ok_or(Reported)?),
            token_endpoint_auth: token_endpoint_auth.ok_or(Reported)?,
            scopes: scopes.ok_or(Reported)?,
            post_logout_redirect_uri,
            id_token_hint: id_token_hint.ok_or(Reported)?,
            revocation_endpoint,
        })
    }
}

/// An IdP endpoint set by hand: https (plain http only on this machine).
struct IdpEndpoint(Url);

from_text!(IdpEndpoint, |text| {
    let url = absolute_http_url(text)?;
    if is_plain_remote(&url) {
        // It receives refresh tokens and the client secret.
        return Err("must be https (plain http is allowed only for localhost development)".into());
    }
    Ok(IdpEndpoint(url))
});

/// The issuer identifier: https, no query or fragment (OIDC Discovery §2).
struct Issuer(Url);

from_text!(Issuer, |text| {
    let url = absolute_http_url(text)?;
    // Plain http is judged with insecure_dev_mode, in Config::from_node.
    if url.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(Issuer(url))
});

// === impl CookieConfig ===

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "cloakroom".into(),
            keys: Vec::new(),
        }
    }
}

impl FromNode for CookieConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let name = f.or::<String>("name", "cloakroom".into(), at);
        let keys = f.or::<Each<CookieKey>>("keys", Each(Vec::new()), at);
        f.finish(at);
        if let Some(name) = &name {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !token {
                at.error_at("name", "use letters, digits, '-', '_' or '.' only");
            }
            if name.starts_with("__") {
                at.error_at("name", "leave out the __Host- prefix; it is added for https");
            }
        }
        if let Some(keys) = &keys {
            let mut ids = HashSet::new();
            for (i, key) in keys.parsed() {
                if !ids.insert(key.id.as_str()) {
                    at.error_at(&format!("keys[{i}].id"), "duplicate key id");
                }
            }
        }
        Ok(CookieConfig {
            name: name.ok_or(Reported)?,
            keys: keys.and_then(Each::complete).ok_or(Reported)?,
        })
    }
}

impl FromNode for CookieKey {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let id = f.required::<String>("id", at);
        let secret = f.required::<KeyMaterial>("secret", at);
        f.finish(at);
        if id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 16 || !id.is_ascii())
        {
            at.error_at("id", "must be 1 to 16 ASCII characters");
        }
        Ok(CookieKey {
            id: id.ok_or(Reported)?,
            secret: secret.ok_or(Reported)?.0,
        })
    }
}

/// A 256-bit key written in base64 (standard or URL-safe, padding optional).
struct KeyMaterial(Secret<Vec<u8>>);

from_text!(KeyMaterial, |text| {
    let bytes = decode_base64(text).ok_or("not base64 (generate one with `cloakroom keygen`)")?;
    if bytes.len() != 32 {
        return Err(format!(
            "must decode to 32 bytes, got {} (generate one with `cloakroom keygen`)",
            bytes.len()
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err("must not be all zeros".into());
    }
    Ok(KeyMaterial(Secret::new(bytes)))
});

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
        .iter()
        .find_map(|e| e.decode(text).ok())
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
        if max_connections_per_ip == Some(0) {
            at.error_at("max_connections_per_ip", "must be at least 1");
        }
        // Zero would be no timeout at all, which is what these keys prevent.
        for (key, value) in [
            ("header_read_timeout", header_read_timeout),
            ("first_bytes_timeout", first_bytes_timeout),
            ("idle_timeout", idle_timeout),
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
            shutdown_grace: shutdown_grace.ok_or(Reported)?,
        })
    }
}

// === impl LogConfig ===

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl FromNode for LogConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let d = Self::default();
        let mut f = Fields::open(node, at)?;
        let format = f.or("format", d.format, at);
        let level = f.or("level", d.level, at);
        f.finish(at);
        if let Some(Err(reason)) = level.as_deref().map(log_filter::check) {
            at.error_at("level", reason);
        }
        Ok(LogConfig {
            format: format.ok_or(Reported)?,
            level: level.ok_or(Reported)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const KEY: &str = "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY";

    pub(super) fn load(yaml: &str) -> Result<Config, ConfigErrors> {
        Config::load(
            yaml,
            &MapEnv::default().with_var("SECRET", "s3").with_var("KEY", KEY),
        )
    }

    pub(super) fn errors(yaml: &str) -> Vec<String> {
        load(yaml)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load("public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://127.0.0.1:3000', auth: none}]").unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.session.store, StoreConfig::Memory);
        assert_eq!(c.routes[0].timeout, Duration::from_secs(30));
        assert_eq!(c.routes[0].token, TokenKind::None);
        assert!(c.routes[0].methods.is_none());
        assert_eq!(c.limits.max_headers, 100);
    }

    #[test]
    fn three_mistakes_are_all_reported_with_their_key_paths() {
        let got = errors(
            "public_url: http://localhost:8080
routes:
  - path: /api/
    upstream: http://api:8000
    auth: none
    timeuot: 5s
  - path: /
    upstream: not a url
    auth: none
    max_body: lots
",
        );
        assert_eq!(
            got,
            [
                "routes[0].timeuot: unknown key",
                "routes[1].upstream: not an absolute http(s) URL",
                "routes[1].max_body: \"lots\" is not a size (expected e.g. 1024, 64KiB, 10MB, 1.5MiB)",
            ]
        );
    }

    #[test]
    fn login_routes_need_oidc_and_a_cookie_key() {
        let got = errors("public_url: https://app.example.com\nroutes: [{path: /api, upstream: 'http://a'}]");
        assert_eq!(
            got,
            [
                "oidc: required because routes[0] has auth other than none",
                "cookie.keys: at least one key is required because routes[0] needs login (run `cloakroom keygen`)",
            ]
        );
    }

    #[test]
    fn secrets_come_from_variables_and_files_and_never_print() {
        let yaml = "public_url: https://app.example.com
oidc: {issuer: 'https://idp.example.com', client_id: spa, client_secret: '${SECRET}'}
cookie: {keys: [{id: '1', secret_file: /run/key}]}
routes: [{path: /api, upstream: 'http://a'}]";
        let env = MapEnv::default()
            .with_var("SECRET", "s3cr3t-value")
            .with_file("/run/key", &format!("{KEY}\n"));
        let c = Config::load(yaml, &env).unwrap();
        assert_eq!(c.oidc.as_ref().unwrap().client_secret.expose(), "s3cr3t-value");
        assert_eq!(c.cookie.keys[0].secret.expose().len(), 32);
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
    }

    #[test]
    fn lo13_a_revocation_endpoint_may_be_set_and_must_be_https() {
        let yaml = |endpoint: &str| {
            format!(
                "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s, revocation_endpoint: '{endpoint}'}}
cookie: {{keys: [{{id: '1', secret: '${{KEY}}'}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
            )
        };
        let c = load(&yaml("https://idp.example.com/oauth2/revoke")).unwrap();
        assert_eq!(
            c.oidc.unwrap().revocation_endpoint.unwrap().as_str(),
            "https://idp.example.com/oauth2/revoke"
        );
        assert!(
            load(&yaml("http://127.0.0.1:8081/revoke")).is_ok(),
            "loopback for development"
        );
        assert_eq!(
            errors(&yaml("http://idp.example.com/revoke")),
            ["oidc.revocation_endpoint: must be https (plain http is allowed only for localhost development)"]
        );
        assert_eq!(
            errors(&yaml("/revoke")),
            ["oidc.revocation_endpoint: not an absolute http(s) URL"]
        );
    }

    #[test]
    fn weak_or_malformed_keys_and_plain_http_are_refused() {
        let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let got = errors(&format!(
            "public_url: http://app.example.com
cookie: {{keys: [{{id: a, secret: c2hvcnQ}}, {{id: b, secret: {zeros}}}, {{id: c, secret: '${{KEY}}'}}, {{id: c, secret: '${{KEY}}'}}]}}
routes: [{{path: /, upstream: 'http://a', auth: none}}]"
        ));
        assert_eq!(
            got,
            [
                "public_url: must be https (plain http is allowed only for localhost development)",
                "cookie.keys[0].secret: must decode to 32 bytes, got 5 (generate one with `cloakroom keygen`)",
                "cookie.keys[1].secret: must not be all zeros",
                "cookie.keys[3].id: duplicate key id",
            ]
        );
    }

    #[test]
    fn reference_and_example_configs_load() {
        let env = MapEnv::default()
            .with_var("CLIENT_SECRET", "s")
            .with_var("COOKIE_KEY_1", KEY)
            .with_var("COOKIE_KEY_2", KEY)
            .with_var("SPA_DIR", "/srv/spa");
        for file in ["reference.yaml", "cloakroom.yaml", "spa.yaml"] {
            let path = format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = Config::load(&text, &env) {
                panic!("{file}:\n{e}");
            }
        }
    }

    #[test]
    fn the_kubernetes_example_config_loads_with_its_secret_files() {
        let path = format!("{}/deploy/kubernetes/cloakroom.yaml", env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(path).unwrap();
        let config_map: Value = serde_saphyr::from_str(manifest.split("\n---\n").next().unwrap()).unwrap();
        let text = config_map["data"]["cloakroom.yaml"].as_str().unwrap();
        let secrets = "/run/secrets/cloakroom";
        let env = MapEnv::default()
            .with_file(&format!("{secrets}/client-secret"), "s")
            .with_file(&format!("{secrets}/cookie-key-1"), KEY)
            .with_file(&format!("{secrets}/redis-password"), "p")
            .with_file(
                &format!("{secrets}/redis-ca.pem"),
                "-----BEGIN CERTIFICATE-----\n",
            );
        let config = Config::load(text, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(config.session.store, StoreConfig::Redis(_)));
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

    #[test]
    fn px29_identity_headers_are_checked_at_their_key() {
        let c =
            load("public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]")
                .unwrap();
        assert!(c.identity_headers.iter().any(|r| r.matches("x-user-id")));
        let got =
            errors(
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\nidentity_headers: [X-Ok, 'x bad', '*']",
        );
        assert_eq!(
            got,
            [
                "identity_headers[1]: \"x bad\" is not a header name (letters, digits, '-', '_'; a trailing * matches a prefix)",
                "identity_headers[2]: name a header (a trailing * matches a prefix, not everything)",
            ]
        );
    }

    #[test]
    fn unset_variable_and_bad_yaml_are_errors() {
        let got = errors("public_url: ${NOPE}\nroutes: [{path: /, upstream: 'http://a', auth: none}]");
        assert_eq!(got, ["public_url: environment variable NOPE is not set"]);
        let got = errors("routes: [unclosed");
        assert!(got[0].starts_with("config:1:9: not valid YAML: "), "{got:?}");
    }

    #[test]
    fn yaml_syntax_errors_name_the_file_line_and_column() {
        let text = "public_url: http://localhost:8080\noidc: {client_secret: hunter2\nroutes: []\n";
        let got = Config::load_named(text, "config/x.yaml", &MapEnv::default()).unwrap_err();
        let got = got.to_string();
        assert!(got.starts_with("config/x.yaml:3:7: not valid YAML: "), "{got}");
        assert!(!got.contains('\n'), "one line: {got}");
        assert!(!got.contains("hunter2"), "no snippet of the file: {got}");
    }
}
