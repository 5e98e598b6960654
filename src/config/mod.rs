//! The typed configuration, read from YAML before any port is bound.
//!
//! `Config::load(text, env)` parses, substitutes `${VAR}`, reads `*_file`
//! secrets, and checks every key, returning all problems at once with their
//! key paths. `config/reference.yaml` documents each key and its default.
//!
//! Each section is read in its own module (`routes`, `oidc`, `session` and
//! its `redis` store, `cookie`, `limits`, `logging`); `values` holds the
//! parsers they share and `node` the reader that collects the errors.
//! `root` reads the top level and the rules that span sections; this
//! module reads the file, its `${VAR}` and `*_file` values, and applies the
//! security posture (`posture`) to the whole.

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
mod root;
mod routes;
mod session;
pub mod statics;
mod telemetry;
pub mod units;
mod values;

use serde_json::Value;

pub use self::access::{AuthMode, ClaimHeader, ClaimHeaders, ClaimPath, Rule, StepUp};
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
use self::node::Cursor;
pub use self::node::{ConfigError, ConfigErrors};
pub use self::oidc::{
    AuthorizeParams, ClientKey, ClientKeyAlg, DpopConfig, DpopKey, Issuer, LoginParams, OidcConfig, Par,
    TokenEndpointAuth,
};
pub use self::redis::{LocalCache, RedisConfig, RedisTls, RedisTopology, RedisWait};
pub use self::root::Config;
pub use self::routes::{covers, CsrfMode, RouteConfig, Target, TokenKind, FORBIDDEN_METHODS};
pub use self::session::{DeviceBinding, RecordFormat, SessionConfig, StoreConfig};
pub use self::statics::StaticConfig;
pub use self::telemetry::{OtlpConfig, TelemetryConfig};

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
        if let Some(config) = &config {
            // Rules that span sections, on a config whose sections all read.
            posture::refuse(config, &mut at);
        }
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
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
