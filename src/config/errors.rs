//! The `errors` section: where a person is sent when a login fails.

use serde_json::Value;

use super::access::AuthMode;
use super::node::{from_text, Cursor, Fields, FromNode, Reported};
use super::routes::{serving, RouteConfig};
use crate::path::local::local_path;

/// How failures reach a person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorsConfig {
    /// A page of the SPA a failed login redirects to, with `error` (the
    /// stable code) and `request_id` in its query; `None` (the default)
    /// keeps cloakroom's own page.
    pub login_page: Option<LoginPage>,
}

/// A local path of this origin, outside `/auth/`: where a failed login
/// sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPage(String);

// === impl ErrorsConfig ===

impl FromNode for ErrorsConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let login_page = f.optional::<LoginPage>("login_page", at);
        f.finish(at);
        Ok(ErrorsConfig { login_page })
    }
}

impl ErrorsConfig {
    /// The login page must be served without a session: a failed login
    /// sent to a page that needs one is sent to log in again, and, with the
    /// IdP down, around again without end.
    pub(super) fn check_served(&self, routes: &[RouteConfig], at: &mut Cursor<'_>) {
        let Some(page) = &self.login_page else {
            return;
        };
        let path = page.0.split('?').next().unwrap_or_default();
        if let Some((i, route)) = serving(routes, path) {
            if route.auth == AuthMode::Required {
                at.error_at(
                    "errors.login_page",
                    format!(
                        "served by routes[{i}] ({}), which has auth: required: a failed login \
                         sent there would be sent to log in again; serve it from a route with \
                         auth: none or optional",
                        route.path
                    ),
                );
            }
        }
    }
}

// === impl LoginPage ===

impl LoginPage {
    /// The page's URL for one failure: its query gets `error` and
    /// `request_id` added (after any it has).
    pub fn for_failure(&self, code: &str, request_id: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("error", code)
            .append_pair("request_id", request_id)
            .finish();
        let separator = if self.0.contains('?') { '&' } else { '?' };
        format!("{}{separator}{query}", self.0)
    }
}

from_text!(LoginPage, |text| {
    // Held to the rule of `return_to`: a page of this origin, never a URL
    // an attacker could make the error path redirect to (T17).
    let Some(path) = local_path(text) else {
        return Err("must be a local path of this origin, such as /signin-error".into());
    };
    if path.contains('#') {
        return Err("must not have a fragment: the error and request_id go in the query".into());
    }
    if path == "/auth" || path.starts_with("/auth/") || path.starts_with("/auth?") {
        // A failing login would only start another one, or loop.
        return Err("must be a page of the app, not under /auth/".into());
    }
    Ok(LoginPage(path))
});

#[cfg(test)]
mod tests {
    use crate::config::tests::{errors, load};

    const BASE: &str =
        "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";

    #[test]
    fn the_login_page_is_a_local_path_and_gets_the_code_and_request_id() {
        assert!(load(BASE).unwrap().errors.login_page.is_none());
        let page = |p: &str| {
            load(&format!("{BASE}errors: {{login_page: '{p}'}}"))
                .unwrap()
                .errors
                .login_page
                .unwrap()
        };
        assert_eq!(
            page("/signin-error").for_failure("login_failed", "r-1"),
            "/signin-error?error=login_failed&request_id=r-1"
        );
        assert_eq!(
            page("/app/?view=error").for_failure("idp_unavailable", "r 2"),
            "/app/?view=error&error=idp_unavailable&request_id=r+2"
        );
    }

    #[test]
    fn lg12_a_login_page_off_origin_or_under_auth_is_refused_at_its_key() {
        let local = "errors.login_page: must be a local path of this origin, such as /signin-error";
        for (page, why) in [
            ("https://evil.example/x", local),
            ("//evil.example/x", local),
            ("/\\\\evil.example", local),
            ("signin-error", local),
            ("/%2F/evil.example", local),
            (
                "/#/signin-error",
                "errors.login_page: must not have a fragment: the error and request_id go in the query",
            ),
            (
                "/auth/login",
                "errors.login_page: must be a page of the app, not under /auth/",
            ),
        ] {
            assert_eq!(
                errors(&format!("{BASE}errors: {{login_page: '{page}'}}")),
                [why],
                "{page}"
            );
        }
        assert_eq!(
            errors(&format!("{BASE}errors: {{login_pgae: /x}}")),
            ["errors.login_pgae: unknown key"]
        );
    }

    #[test]
    fn lg12_a_login_page_that_needs_a_session_is_refused_naming_its_route() {
        let yaml = |page: &str| {
            format!(
                "public_url: http://localhost:8080
oidc: {{issuer: 'http://localhost:9000', client_id: c, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: '${{KEY}}'}}]}}
routes:
  - {{path: /, upstream: 'http://a', auth: required, login_redirect: true}}
  - {{path: /public, upstream: 'http://a', auth: none}}
  - {{path: /maybe, upstream: 'http://a', auth: optional}}
errors: {{login_page: '{page}'}}"
            )
        };
        assert_eq!(
            errors(&yaml("/signin-error?from=login")),
            [
                "errors.login_page: served by routes[0] (/), which has auth: required: a failed login \
              sent there would be sent to log in again; serve it from a route with auth: none or optional"
            ]
        );
        assert_eq!(
            errors(&yaml("/publicity")).len(),
            1,
            "a prefix on a segment boundary only"
        );
        for served in ["/public", "/public/signin-error?x=1", "/maybe/error"] {
            assert!(load(&yaml(served)).is_ok(), "{served}");
        }
    }
}
