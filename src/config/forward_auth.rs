//! The `forward_auth` section: the endpoint an ingress in front of
//! cloakroom calls to ask whether a request may pass, for the routes marked
//! `forward_auth: true` (which the ingress, not cloakroom, forwards).

use serde_json::Value;

use super::node::{Cursor, Fields, FromNode, Reported};
use crate::path::normalize_path;

/// Where the ingress's subrequest arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The check endpoint, under `/auth/`.
    pub path: String,
    /// A request for a path below the endpoint (`/auth/check/api/x`, what
    /// Envoy's `ext_authz` sends with `path_prefix`) asks about that path.
    /// Off by default: an ingress that routed such a path to cloakroom
    /// publicly would hand the answer, token included, to the browser.
    pub uri_in_path: bool,
}

/// cloakroom's own endpoints, which the check endpoint may not hide.
const TAKEN: &[&str] = &[
    "/auth/login",
    "/auth/callback",
    "/auth/user",
    "/auth/logout",
    "/auth/backchannel-logout",
    "/auth/sessions",
    "/auth/client.js",
    "/auth/client.d.ts",
];

// === impl ForwardAuthConfig ===

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        Self {
            path: "/auth/check".into(),
            uri_in_path: false,
        }
    }
}

impl FromNode for ForwardAuthConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let path = f.or("path", Self::default().path, at);
        let uri_in_path = f.or("uri_in_path", false, at);
        f.finish(at);
        let path = path.ok_or(Reported)?;
        // Under `/auth/`, so whatever routes cloakroom's endpoints to it
        // routes this one too, and no route prefix can shadow it.
        let taken = TAKEN
            .iter()
            .find(|t| **t == path || path.starts_with(&format!("{t}/")));
        let reason = if !path.starts_with("/auth/") || path.len() == "/auth/".len() {
            Some("must be a path under /auth/, e.g. /auth/check".to_owned())
        } else if path.contains(['?', '#']) || normalize_path(&path).ok().as_deref() != Some(&path) {
            Some("must be a clean path in normal form, without ? or #".to_owned())
        } else if path.ends_with('/') {
            Some("must not end with /".to_owned())
        } else {
            taken.map(|taken| format!("{taken} is one of cloakroom's own endpoints"))
        };
        if let Some(reason) = reason {
            at.error_at("path", reason);
            return Err(Reported);
        }
        Ok(Self {
            path,
            uri_in_path: uri_in_path.ok_or(Reported)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{errors, load, KEY};

    fn config(extra: &str, route: &str) -> String {
        format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: '{KEY}'}}]}}
{extra}
routes:
  - {route}
"
        )
    }

    #[test]
    fn the_check_endpoint_defaults_to_auth_check_when_a_route_asks_for_it() {
        let c = load(&config("", "{path: /api, forward_auth: true}")).unwrap();
        assert_eq!(c.forward_auth.unwrap().path, "/auth/check");
        let c = load(&config("", "{path: /api, upstream: 'http://a'}")).unwrap();
        assert!(c.forward_auth.is_none());
        let c = load(&config(
            "forward_auth: {path: /auth/verify}",
            "{path: /api, forward_auth: true}",
        ))
        .unwrap();
        let c = c.forward_auth.unwrap();
        assert_eq!((c.path.as_str(), c.uri_in_path), ("/auth/verify", false));
    }

    #[test]
    fn a_bad_check_endpoint_or_forward_auth_route_is_named_by_its_key() {
        for (path, reason) in [
            ("/check", "must be a path under /auth/, e.g. /auth/check"),
            (
                "/auth/a/../b",
                "must be a clean path in normal form, without ? or #",
            ),
            ("/auth/check/", "must not end with /"),
            ("/auth/user", "/auth/user is one of cloakroom's own endpoints"),
            (
                "/auth/sessions/x",
                "/auth/sessions is one of cloakroom's own endpoints",
            ),
        ] {
            let got = errors(&config(
                &format!("forward_auth: {{path: '{path}'}}"),
                "{path: /api, forward_auth: true}",
            ));
            assert_eq!(got, [format!("forward_auth.path: {reason}")], "{path}");
        }
        assert_eq!(
            errors(&config("forward_auth: {}", "{path: /api, upstream: 'http://a'}")),
            ["forward_auth: no route has forward_auth: true"]
        );
        assert_eq!(
            errors(&config(
                "",
                "{path: /api, forward_auth: true, upstream: 'http://a', strip_prefix: true}"
            )),
            [
                "routes[0].upstream: set one of upstream, static or forward_auth",
                "routes[0].strip_prefix: only meaningful on a route cloakroom forwards (upstream)",
            ]
        );
        assert_eq!(
            errors(&config("", "{path: /api, forward_auth: true, auth: none}")),
            ["routes[0].auth: a forward_auth route checks a session: set required or optional"]
        );
        assert_eq!(
            errors(&config("", "{path: /api, forward_auth: false}")),
            ["routes[0].forward_auth: set upstream or static instead of forward_auth: false"]
        );
    }
}
