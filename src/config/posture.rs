//! Security posture: what RFC 10017 (OAuth 2.0 for Browser-Based
//! Applications, BCP 212) asks of a BFF, checked on the config.
//!
//! **Errors** refuse the config when it loads, so `serve` and `check` alike:
//!
//! | key | rule | source |
//! |---|---|---|
//! | `public_url`, `oidc.issuer` | https, except on loopback or with `insecure_dev_mode` (read in `root.rs`) | §6.1.3.2 |
//! | `cookie.keys[i].secret` | a 256-bit key, not all zeros (read in `cookie.rs`) | §6.1.3.2; ASVS 5.0 11.2.3 |
//! | `cookie.domain` | never: cookies are host-only (`cookie.rs`) | §6.1.3.2 |
//! | `cookie.same_site` | `strict`; `lax` only with `cookie.same_site_reason`; `none` never | §6.1.3.2, §6.1.3.3.1 |
//! | `routes[i].login_redirect` | not on a `token: user` route while `same_site` is `lax` | §6.1.3.3 |
//! | `session.absolute_timeout` | between 1s and 365d (read in `session.rs`) | ASVS 5.0 7.3.2 |
//!
//! **Warnings** ([`warnings`], [`eviction`]) are printed by `cloakroom
//! check`, logged by `serve` at start, and refused by `check --strict`:
//!
//! | key | rule | source |
//! |---|---|---|
//! | `insecure_dev_mode` | on | §6.1.3.2 |
//! | `session.absolute_timeout` | longer than 7 days | §6.1.2.2; ASVS 5.0 7.3.2 |
//! | `session.store.redis` | the server's `maxmemory-policy` is `allkeys-*` (asked at `check` and at start) | threat model RD-08 |
//!
//! **Recommendations** ([`recommendations`]) are printed by `cloakroom
//! check` and never refuse anything: what a deployment gains by a switch
//! that browsers it serves may not all understand yet.
//!
//! | key | rule | source |
//! |---|---|---|
//! | `cookie.host_http_prefix` | `true` over https | §6.1.3.2 |
//! | `session.device_binding` | not `off` | W3C DBSC |
//!
//! Held by construction, so not configurable and not checked: `Secure`
//! (over https), `HttpOnly`, `Path=/`, the `__Host-` prefix, and the CSRF
//! check of every route that reads the session (`auth` other than `none`,
//! which every `token: user` route has): `csrf:` chooses how a read proves
//! its origin (`X-CSRF: 1`, or the browser's `Sec-Fetch-Site:
//! same-origin`), never whether. Page routes (`login_redirect`) take reads
//! without `X-CSRF`, as navigations cannot send it; a `SameSite=Strict`
//! cookie keeps cross-site navigations from carrying the session, which is
//! why `lax` and a token on a page route do not go together.
//!
//! Not checkable: whether the IdP rotates refresh tokens. No config key
//! says it and neither does the IdP's metadata; the token endpoint shows it
//! only at the first refresh. cloakroom is a confidential client, for which
//! RFC 9700 §2.2.2 does not require rotation, and it takes a rotated token
//! whenever the IdP issues one (`refresh.rs`).

use std::fmt;
use std::time::Duration;

use super::cookie::SameSite;
use super::node::Cursor;
use super::root::Config;
use super::routes::TokenKind;
use super::session::DeviceBinding;
use super::units::format_duration;

/// Sessions longer than this are warned about.
pub const LONG_SESSION: Duration = Duration::from_secs(7 * 86_400);

/// Whether a finding refuses the config or is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Recommendation,
}

/// One rule broken: the key to change, why, and the rule's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub key: String,
    pub reason: String,
    /// Where the rule comes from, e.g. `RFC 10017 §6.1.3.2`.
    pub source: &'static str,
}

// === impl Finding ===

impl Finding {
    fn error(key: impl Into<String>, reason: impl Into<String>, source: &'static str) -> Self {
        Self {
            severity: Severity::Error,
            key: key.into(),
            reason: reason.into(),
            source,
        }
    }

    fn warning(key: impl Into<String>, reason: impl Into<String>, source: &'static str) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(key, reason, source)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.key, self.reason, self.source)
    }
}

/// Records every posture error at its key; run once every section is read.
pub(super) fn refuse(config: &Config, at: &mut Cursor<'_>) {
    for finding in errors(config) {
        at.error_at(&finding.key, format!("{} ({})", finding.reason, finding.source));
    }
}

/// The posture errors that span sections (the others are found where their
/// key is read: see the module doc).
pub fn errors(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    let cookie = &config.cookie;
    if cookie.same_site == SameSite::Lax {
        if cookie.same_site_reason.is_none() {
            found.push(Finding::error(
                "cookie.same_site",
                "lax sends the session cookie with navigations from other sites; keep strict, \
                 or say in cookie.same_site_reason why this deployment needs lax",
                "RFC 10017 §6.1.3.2",
            ));
        }
        for (i, route) in config.routes.iter().enumerate() {
            let users_token = matches!(route.token, TokenKind::User | TokenKind::Exchange);
            if users_token && route.login_redirect {
                found.push(Finding::error(
                    format!("routes[{i}].login_redirect"),
                    "page loads pass without X-CSRF, and with cookie.same_site: lax a link from \
                     another site carries the session: a cross-site request would reach the \
                     upstream with the user's token; use same_site: strict, or token: none on page routes",
                    "RFC 10017 §6.1.3.3",
                ));
            }
        }
    }
    found
}

/// What production should not run with, though it loads.
pub fn warnings(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    if config.insecure_dev_mode {
        found.push(Finding::warning(
            "insecure_dev_mode",
            "a development switch (plain http on real host names, so no Secure cookie); \
             not allowed with --strict",
            "RFC 10017 §6.1.3.2",
        ));
    }
    let absolute = config.session.absolute_timeout;
    if absolute > LONG_SESSION {
        found.push(Finding::warning(
            "session.absolute_timeout",
            format!(
                "{} is longer than 7 days: a stolen or forgotten session stays usable that long; \
                 make it no longer than the IdP's refresh token lifetime",
                format_duration(absolute)
            ),
            "RFC 10017 §6.1.2.2; ASVS 5.0 7.3.2",
        ));
    }
    found
}

/// What a deployment would gain by, though nothing is wrong without it.
pub fn recommendations(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    if config.is_https() && !config.cookie.host_http_prefix {
        found.push(Finding {
            severity: Severity::Recommendation,
            ..Finding::error(
                "cookie.host_http_prefix",
                "set true: a browser that knows the __Host-Http- prefix lets no script set the \
                 session cookie (document.cookie), and one that does not still reads it as __Host-; \
                 sessions under the old name stay signed in",
                "RFC 10017 §6.1.3.2",
            )
        });
    }
    if config.oidc.is_some() && config.session.device_binding == DeviceBinding::Off {
        found.push(Finding {
            severity: Severity::Recommendation,
            ..Finding::error(
                "session.device_binding",
                "offer: browsers with device-bound sessions (DBSC) then bind each session to a key \
                 they cannot export, so a copied session cookie stops working within minutes; \
                 other browsers are not affected",
                "W3C DBSC; docs/threat-model.md DB-02",
            )
        });
    }
    found
}

/// The finding for a Redis server whose `maxmemory-policy` is `policy`, if
/// it evicts keys regardless of their TTL. (`volatile-*` and `noeviction`
/// pass: every key cloakroom writes has a TTL, and `noeviction` answers a
/// full Redis with errors, which are 503s, never logouts.)
pub fn eviction(policy: &str) -> Option<Finding> {
    policy.starts_with("allkeys-").then(|| {
        Finding::warning(
            "session.store.redis",
            format!(
                "the Redis server's maxmemory-policy is {policy}: under memory pressure it evicts \
                 live sessions, which users see as random logouts; set noeviction"
            ),
            "threat model RD-08",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cookie::{NO_COOKIE_DOMAIN, SAME_SITE_NONE};
    use crate::config::tests::{errors as load_errors, load, KEY};
    use crate::config::MapEnv;

    const OIDC: &str = "oidc: {issuer: 'https://idp.example.com', client_id: c, client_secret: s}";

    fn with(extra: &str) -> String {
        format!(
            "public_url: https://app.example.com\n{OIDC}
cookie: {{keys: [{{id: '1', secret: '${{KEY}}'}}]{extra}}}
routes:
  - {{path: /api, upstream: 'http://api'}}
  - {{path: /app, upstream: 'http://web', login_redirect: true, token: none}}
  - {{path: /, upstream: 'http://spa', auth: none}}"
        )
    }

    #[test]
    fn a_production_config_has_no_findings() {
        let config = load(&with("")).unwrap();
        assert!(errors(&config).is_empty());
        assert!(warnings(&config).is_empty());
        assert_eq!(config.cookie.same_site, SameSite::Strict);
    }

    #[test]
    fn the_shipped_configs_have_no_warnings() {
        let env = MapEnv::default()
            .with_var("CLIENT_SECRET", "s")
            .with_var("COOKIE_KEY_1", KEY)
            .with_var("COOKIE_KEY_2", KEY)
            .with_var("SPA_DIR", "/srv/spa")
            .with_var("ADMIN_TOKEN", KEY);
        for file in ["reference.yaml", "cloakroom.yaml", "spa.yaml"] {
            let path = format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"));
            let config = Config::load(&std::fs::read_to_string(path).unwrap(), &env).unwrap();
            assert_eq!(warnings(&config), [], "{file}");
            assert_eq!(recommendations(&config), [], "{file}: shipped as recommended");
        }
    }

    #[test]
    fn the_host_http_prefix_and_device_binding_are_recommended_never_required() {
        let config = load(&with("")).unwrap();
        let keys: Vec<String> = recommendations(&config).into_iter().map(|f| f.key).collect();
        assert_eq!(keys, ["cookie.host_http_prefix"]);
        let extra = ", host_http_prefix: true}\nsession: {device_binding: off";
        let config = load(&with(extra)).unwrap();
        let found = recommendations(&config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "session.device_binding");
        assert_eq!(found[0].severity, Severity::Recommendation);
        assert_eq!(warnings(&config), [], "never a warning: --strict passes");
    }

    #[test]
    fn same_site_lax_needs_a_stated_reason() {
        assert_eq!(
            load_errors(&with(", same_site: lax")),
            [
                "cookie.same_site: lax sends the session cookie with navigations from other sites; \
              keep strict, or say in cookie.same_site_reason why this deployment needs lax \
              (RFC 10017 §6.1.3.2)"
            ]
        );
        let config = load(&with(
            ", same_site: lax, same_site_reason: 'links in e-mails open the app signed in'",
        ))
        .unwrap();
        assert_eq!(config.cookie.same_site, SameSite::Lax);
        assert!(errors(&config).is_empty());
        assert_eq!(
            load_errors(&with(", same_site: lax, same_site_reason: ' '")),
            ["cookie.same_site_reason: say why, or leave the key out"]
        );
    }

    #[test]
    fn same_site_none_is_never_allowed() {
        assert_eq!(
            load_errors(&with(", same_site: none")),
            [format!(
                "cookie.same_site: none is never allowed: {SAME_SITE_NONE}"
            )]
        );
        assert_eq!(
            load_errors(&with(", same_site: relaxed")),
            ["cookie.same_site: \"relaxed\" is not one of strict, lax"]
        );
    }

    #[test]
    fn a_cookie_domain_is_refused_at_its_key() {
        assert_eq!(
            load_errors(&with(", domain: example.com")),
            [format!("cookie.domain: {NO_COOKIE_DOMAIN}")]
        );
    }

    #[test]
    fn a_token_page_route_needs_a_strict_cookie() {
        let yaml = with(", same_site: lax, same_site_reason: 'links from the intranet portal'")
            .replace("login_redirect: true, token: none", "login_redirect: true");
        let got = load_errors(&yaml);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("routes[1].login_redirect: page loads pass without X-CSRF"),
            "{got:?}"
        );
        assert!(got[0].ends_with("(RFC 10017 §6.1.3.3)"), "{got:?}");
        // The same route under a strict cookie is fine.
        let strict = with("").replace("login_redirect: true, token: none", "login_redirect: true");
        assert!(errors(&load(&strict).unwrap()).is_empty());
    }

    #[test]
    fn plain_http_needs_the_dev_switch_which_is_a_warning() {
        let yaml = "public_url: http://app.lan:8080
oidc: {issuer: 'http://idp.lan:9000', client_id: c, client_secret: s}
routes: [{path: /, upstream: 'http://spa:3000', auth: none}]";
        assert_eq!(
            load_errors(yaml),
            [
                "public_url: must be https (plain http is allowed only for localhost development): \
                 the session cookie must be Secure (RFC 10017 §6.1.3.2)",
                "oidc.issuer: must be https",
            ]
        );
        let config = load(&format!("insecure_dev_mode: true\n{yaml}")).unwrap();
        let found = warnings(&config);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "insecure_dev_mode");
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0]
            .to_string()
            .starts_with("insecure_dev_mode: a development switch"));
    }

    #[test]
    fn short_cookie_keys_are_refused_at_their_key() {
        let short = "c2hvcnQ";
        let got = load_errors(&with("").replace("'${KEY}'", short));
        assert_eq!(
            got,
            ["cookie.keys[0].secret: must decode to 32 bytes (a 256-bit key), got 5 (generate one with `cloakroom keygen`)"]
        );
    }

    #[test]
    fn sessions_longer_than_a_week_are_warned_about() {
        let at = |abs: &str| {
            let yaml = format!("{}\nsession: {{absolute_timeout: {abs}}}", with(""));
            warnings(&load(&yaml).unwrap())
        };
        assert_eq!(at("7d"), []);
        let found = at("7d1s");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "session.absolute_timeout");
        assert!(
            found[0]
                .to_string()
                .ends_with("(RFC 10017 §6.1.2.2; ASVS 5.0 7.3.2)"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn absolute_timeouts_are_bounded_at_load() {
        for abs in ["0s", "366d", "1000000d"] {
            let yaml = format!("{}\nsession: {{absolute_timeout: {abs}}}", with(""));
            let got = load_errors(&yaml);
            assert!(
                got.contains(&"session.absolute_timeout: must be between 1s and 365d".to_owned()),
                "{abs}: {got:?}"
            );
        }
        let yaml = format!("{}\nsession: {{idle_timeout: 0s}}", with(""));
        assert_eq!(
            load_errors(&yaml),
            ["session.idle_timeout: must be longer than 0s"]
        );
        let yaml = format!("{}\nsession: {{absolute_timeout: 365d}}", with(""));
        assert!(load(&yaml).is_ok());
    }

    #[test]
    fn rd08_only_allkeys_policies_are_findings() {
        for evicts in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            let found = eviction(evicts).expect(evicts);
            assert_eq!(found.key, "session.store.redis");
            assert_eq!(found.severity, Severity::Warning);
            assert!(found.reason.contains(evicts));
        }
        for keeps in [
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-ttl",
            "volatile-random",
        ] {
            assert_eq!(eviction(keeps), None, "{keeps}");
        }
    }
}
