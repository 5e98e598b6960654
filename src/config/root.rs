//! The top level of the config file: [`Config`], each section read in its
//! place, and what the sections imply together (the claims a session
//! keeps, what the login asks for, the headers stripped everywhere).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use ipnet::IpNet;
use serde_json::Value;
use url::Url;

use super::access::{AuthMode, ALWAYS_KEPT};
use super::admin::AdminConfig;
use super::audience::Audience;
use super::cookie::CookieConfig;
use super::errors::ErrorsConfig;
use super::forward_auth::ForwardAuthConfig;
use super::headers::HeaderRule;
use super::limits::Limits;
use super::logging::LogConfig;
use super::node::{Cursor, Each, Fields, FromNode, Reported};
use super::oidc::OidcConfig;
use super::routes::{check_routes, RouteConfig, TokenKind};
use super::session::SessionConfig;
use super::telemetry::TelemetryConfig;
use super::values::{is_plain_remote, Origin, PublicUrl};

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

    /// The top-level claims a session keeps: `session.claims`, every claim
    /// a route's `access` or `claim_headers` reads, and [`ALWAYS_KEPT`].
    pub fn kept_claims(&self) -> BTreeSet<String> {
        let mut kept: BTreeSet<String> = self.session.claims.iter().cloned().collect();
        kept.extend(ALWAYS_KEPT.iter().map(|c| (*c).to_owned()));
        for route in &self.routes {
            if let Some(rule) = &route.access {
                rule.claims(&mut kept);
            }
            kept.extend(route.claim_headers.0.iter().map(|h| h.claim.top.clone()));
        }
        kept
    }

    /// Every `acr` value some route's `step_up` lists: the only ones
    /// `/auth/login` passes on to the IdP.
    pub fn step_up_acr_values(&self) -> BTreeSet<&str> {
        self.routes
            .iter()
            .filter_map(|r| r.step_up.as_ref())
            .flat_map(|s| s.acr_values.iter().map(String::as_str))
            .collect()
    }

    /// The client headers removed from every request before it goes
    /// upstream: `identity_headers`, and every name any route's
    /// `claim_headers` sets, so a client can never supply one, on any
    /// route (T35).
    pub fn stripped_identity_headers(&self) -> Vec<HeaderRule> {
        let mut rules = self.identity_headers.clone();
        for route in &self.routes {
            for header in &route.claim_headers.0 {
                let rule = HeaderRule::Exact(header.name.as_str().to_owned());
                if !rules.iter().any(|r| r.matches(header.name.as_str())) {
                    rules.push(rule);
                }
            }
        }
        rules
    }

    /// The `scope` of the authorization request: `oidc.scopes`, then every
    /// scope a route's own token asks for, so the grant covers them all.
    pub fn login_scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = self
            .oidc
            .as_ref()
            .map(|o| o.scopes.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for scope in self.user_audiences().flat_map(|a| a.scopes.iter()) {
            if !scopes.contains(&scope.as_str()) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// Every `resource` a `token: user` route names, once each: the
    /// authorization request's `resource` parameters.
    pub fn login_resources(&self) -> BTreeSet<&str> {
        self.user_audiences()
            .filter_map(|a| a.resource.as_ref().map(Url::as_str))
            .collect()
    }

    fn user_audiences(&self) -> impl Iterator<Item = &Audience> {
        self.routes
            .iter()
            .filter(|r| r.token == TokenKind::User)
            .filter_map(|r| r.audience.as_deref())
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
        // Rules that span sections, on a config whose sections all read
        // (and the security posture's, in `Config::load_named`).
        config.errors.check_served(&config.routes, at);
        Ok(config)
    }
}
