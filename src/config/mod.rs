//! The typed configuration, read from YAML before any port is bound.
//!
//! `Config::load(text, env)` parses, substitutes `${VAR}`, reads `*_file`
//! secrets, and checks every key, returning all problems at once with their
//! key paths. `config/reference.yaml` documents each key and its default.
//!
//! Each section is read in its own module (`routes`, `oidc`, `session` and
//! its `redis` store, `cookie`, `limits`, `logging`); `values` holds the
//! parsers they share and `node` the reader that collects the errors. This
//! module reads the top level and the rules that span sections.

pub mod access;
mod admin;
pub mod audience;
pub mod authorize;
pub mod client_key;
mod cookie;
pub mod dpop;
pub mod env;
mod errors;
pub mod exchange;
mod forward_auth;
pub mod headers;
mod limits;
pub mod log_filter;
mod logging;
pub mod node;
mod oidc;
pub mod posture;
mod redis;
mod routes;
mod session;
pub mod statics;
mod telemetry;
pub mod units;
mod values;

use std::net::SocketAddr;

use ipnet::IpNet;
use serde_json::Value;
use url::Url;

pub use self::access::{ClaimHeader, ClaimHeaders, ClaimPath, Rule, StepUp};
pub use self::admin::AdminConfig;
pub use self::audience::Audience;
pub use self::cookie::{CookieConfig, CookieKey, SameSite};
pub use self::env::{Env, MapEnv, ProcessEnv};
pub use self::errors::{ErrorsConfig, LoginPage};
pub use self::exchange::{Exchange, SubjectToken};
pub use self::forward_auth::ForwardAuthConfig;
pub use self::headers::HeaderRule;
pub use self::limits::Limits;
pub use self::logging::{LogConfig, LogFormat};
pub use self::node::{ConfigError, ConfigErrors};
use self::node::{Cursor, Each, Fields, FromNode, Reported};
pub use self::oidc::{
    AuthorizeParams, ClientKey, ClientKeyAlg, DpopConfig, DpopKey, Issuer, LoginParams, OidcConfig, Par,
    TokenEndpointAuth,
};
pub use self::redis::{LocalCache, RedisConfig, RedisTls, RedisTopology, RedisWait};
use self::routes::check_routes;
pub use self::routes::{covers, AuthMode, CsrfMode, RouteConfig, Target, TokenKind, FORBIDDEN_METHODS};
pub use self::session::{DeviceBinding, SessionConfig, StoreConfig};
pub use self::statics::StaticConfig;
pub use self::telemetry::{OtlpConfig, TelemetryConfig};
use self::values::{is_plain_remote, Origin, PublicUrl};

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
    /// The admin listener's API (off by default).
    pub admin: AdminConfig,
    /// Traces over OTLP; off unless `telemetry.otlp` is given.
    pub telemetry: TelemetryConfig,
    /// Where a failed login sends a person (cloakroom's page by default).
    pub errors: ErrorsConfig,
    pub routes: Vec<RouteConfig>,
    /// The check endpoint an ingress in front calls; set when a route has
    /// `forward_auth: true`.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// Worker threads serving requests; 0 means one per CPU.
    pub workers: usize,
    /// Allows a plain-http `public_url` and issuer on any host name, for
    /// development on real host names (issue 13). Warned about at start;
    /// `cloakroom check --strict` refuses it.
    pub insecure_dev_mode: bool,
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
        if !matches!(tree, Value::Object(_) | Value::Null) {
            // Said before `${VAR}` is read: a document that is one scalar
            // would otherwise be reported for its text, not its shape.
            let found = node::kind(&tree);
            return Err(ConfigErrors::single(
                "",
                format!("expected a mapping, found {found}"),
            ));
        }
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
                "must be https (plain http is allowed only for localhost development): \
                 the session cookie must be Secure (RFC 10017 §6.1.3.2)",
            );
        }
        let trusted_proxies = f.or("trusted_proxies", Vec::new(), at);
        let allowed_origins = f.or::<Vec<Origin>>("allowed_origins", Vec::new(), at);
        let identity_headers = f.or("identity_headers", HeaderRule::defaults(), at);
        let oidc = f.optional::<OidcConfig>("oidc", at);
        if oidc
            .as_ref()
            .is_some_and(|o| is_plain_remote(o.issuer.url()) && !dev_mode)
        {
            at.error_at("oidc.issuer", "must be https");
        }
        let oidc_given = f.has("oidc") || oidc.is_some();
        let session = f.or("session", SessionConfig::default(), at);
        let cookie = f.or("cookie", CookieConfig::default(), at);
        let limits = f.or("limits", Limits::default(), at);
        let log = f.or("log", LogConfig::default(), at);
        let admin = f.or("admin", AdminConfig::default(), at);
        let telemetry = f.or("telemetry", TelemetryConfig::default(), at);
        let errors = f.or("errors", ErrorsConfig::default(), at);
        let workers = f.or::<u64>("workers", 0, at);
        let forward_auth = f.optional::<ForwardAuthConfig>("forward_auth", at);
        let forward_auth_given = f.has("forward_auth") || forward_auth.is_some();
        let routes = f.required::<Each<RouteConfig>>("routes", at);
        f.finish(at);

        if let Some(routes) = &routes {
            check_routes(routes, at);
            let needs_login = routes
                .parsed()
                .find(|(_, r)| r.auth != AuthMode::None)
                .map(|(i, _)| i);
            let any_forward_auth = routes.parsed().any(|(_, r)| r.is_forward_auth());
            if oidc.as_ref().is_some_and(|o| o.dpop.is_some()) {
                for (i, _) in routes
                    .parsed()
                    .filter(|(_, r)| r.is_forward_auth() && r.token != TokenKind::None)
                {
                    // A proof is made for the request it goes with; the
                    // ingress makes that request, to a URL cloakroom does
                    // not know, and sees the resource server's nonces.
                    at.error_at(
                        &format!("routes[{i}].forward_auth"),
                        "with oidc.dpop, a forward_auth route cannot hand its token to the ingress: \
                         a DPoP-bound token needs a proof from whoever calls the API; \
                         set token: none, or proxy the API through cloakroom",
                    );
                }
            }
            if forward_auth_given && !any_forward_auth && routes.0.len() == routes.parsed().count() {
                at.error_at("forward_auth", "no route has forward_auth: true");
            }
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
            } else if let Some((i, _)) = routes.parsed().find(|(_, r)| r.token == TokenKind::Client) {
                // Client tokens come from the IdP and are sealed in the
                // store with a key derived from the cookie keys.
                if !oidc_given {
                    at.error_at("oidc", format!("required because routes[{i}] has token: client"));
                }
                if cookie.as_ref().is_some_and(|c| c.keys.is_empty()) {
                    at.error_at(
                        "cookie.keys",
                        format!("at least one key is required because routes[{i}] has token: client (run `cloakroom keygen`)"),
                    );
                }
            }
        }
        let config = Config {
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
            admin: admin.ok_or(Reported)?,
            telemetry: telemetry.ok_or(Reported)?,
            errors: errors.ok_or(Reported)?,
            forward_auth: match routes
                .as_ref()
                .map(|r| r.parsed().any(|(_, r)| r.is_forward_auth()))
            {
                Some(true) => Some(forward_auth.unwrap_or_default()),
                _ => None,
            },
            routes: routes.and_then(Each::complete).ok_or(Reported)?,
            workers: usize::try_from(workers.ok_or(Reported)?).map_err(|_| at.fail("workers: too many"))?,
            insecure_dev_mode: dev.ok_or(Reported)?,
        };
        // Rules that span sections, on a config whose sections all read.
        config.errors.check_served(&config.routes, at);
        posture::refuse(&config, at);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn client_token_routes_need_oidc_and_a_cookie_key() {
        let got = errors(
            "public_url: https://app.example.com
cookie: {keys: []}
routes: [{path: /jobs, upstream: 'http://a', auth: none, token: client, scopes: [jobs]}]",
        );
        assert_eq!(
            got,
            [
                "oidc: required because routes[0] has token: client",
                "cookie.keys: at least one key is required because routes[0] has token: client (run `cloakroom keygen`)",
            ]
        );
    }

    #[test]
    fn dpop_refuses_a_forward_auth_route_that_would_hand_its_token_to_the_ingress() {
        let yaml = |route: &str| {
            format!(
                "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s, dpop: {{keys: [{{key_file: /run/dpop.pem}}]}}}}
cookie: {{keys: [{{id: '1', secret: {KEY}}}]}}
routes: [{{path: /api, upstream: 'http://a'}}, {route}]"
            )
        };
        let env = MapEnv::default().with_file("/run/dpop.pem", dpop::tests::PEM);
        let got = Config::load(&yaml("{path: /app, forward_auth: true}"), &env).unwrap_err();
        assert_eq!(
            got.to_string(),
            "routes[1].forward_auth: with oidc.dpop, a forward_auth route cannot hand its token to the \
             ingress: a DPoP-bound token needs a proof from whoever calls the API; set token: none, \
             or proxy the API through cloakroom"
        );
        // Claim headers only: nothing bound to hand over.
        assert!(Config::load(&yaml("{path: /app, forward_auth: true, token: none}"), &env).is_ok());
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
        assert_eq!(
            c.oidc.as_ref().unwrap().client_secret.as_ref().unwrap().expose(),
            "s3cr3t-value"
        );
        assert_eq!(c.cookie.keys[0].secret.expose().len(), 32);
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
    }

    #[test]
    fn reference_and_example_configs_load() {
        let env = MapEnv::default()
            .with_var("CLIENT_SECRET", "s")
            .with_var("COOKIE_KEY_1", KEY)
            .with_var("COOKIE_KEY_2", KEY)
            .with_var("ADMIN_TOKEN", KEY)
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
    fn a_document_that_is_not_a_mapping_says_so_before_reading_variables() {
        assert_eq!(errors("ౠ${"), ["expected a mapping, found a string"]);
        assert_eq!(errors("[1, '${NOPE}']"), ["expected a mapping, found a list"]);
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
