//! What the authorization request carries besides the protocol's own
//! parameters: `oidc.authorize_params`, static and sent on every login, and
//! `oidc.login_params`, the names a caller of `/auth/login` may pass
//! through (IDP-02).
//!
//! Neither may name a parameter cloakroom sets itself: the flow's security
//! rests on those (T14), so no config and no caller can replace them.

use serde_json::Value;

use super::node::{kind, Cursor, FromNode, Reported};

/// Parameters cloakroom sets on every authorization request, or whose
/// change would break the flow it runs: `response_mode` and the request
/// objects would move the answer out of the callback's query.
pub const PROTOCOL_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
    "dpop_jkt",
];

/// Parameters of `/auth/login` that step-up logins own (`max_age`,
/// `acr_values`, checked at the callback) or that are cloakroom's own
/// (`return_to`): a caller cannot pass them through as well.
pub const LOGIN_OWN_PARAMS: &[&str] = &["return_to", "max_age", "acr_values"];

/// Parameters that ask the IdP for a stronger login. Sent on every login
/// they would prove nothing: nothing at the callback checks that the IdP
/// did what they asked, and a user may drop them from the authorization
/// request. A route's `step_up` asks for them and is checked.
pub const STEP_UP_PARAMS: &[&str] = &["max_age", "acr_values"];

/// The longest value of a static parameter or of one passed through.
pub const MAX_PARAM_LEN: usize = 512;

/// `oidc.authorize_params`: name and value, in the config's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeParams(pub Vec<(String, String)>);

/// `oidc.login_params`: names a caller of `/auth/login` may pass through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginParams(pub Vec<String>);

// === impl AuthorizeParams ===

impl FromNode for AuthorizeParams {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let map = match node {
            Value::Object(map) => map,
            Value::Null => return Ok(Self::default()),
            other => return Err(at.fail(format!("expected a mapping, found {}", kind(other)))),
        };
        let mut out = Vec::new();
        let mut bad = false;
        for (name, value) in map {
            let read = at.nested(name, |at| {
                check_name(name, PROTOCOL_PARAMS, at)?;
                if named(STEP_UP_PARAMS, name) {
                    return Err(at.fail(format!(
                        "{name:?} would be asked for but never checked at the callback; \
                         require it with `step_up` on the routes that need it (routes[].step_up)"
                    )));
                }
                let value = String::from_node(value, at)?;
                if value.len() > MAX_PARAM_LEN {
                    return Err(at.fail(format!("longer than {MAX_PARAM_LEN} bytes")));
                }
                Ok(value)
            });
            match read {
                Ok(value) => out.push((name.clone(), value)),
                Err(Reported) => bad = true,
            }
        }
        if bad {
            return Err(Reported);
        }
        Ok(Self(out))
    }
}

// === impl LoginParams ===

impl LoginParams {
    pub fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

impl FromNode for LoginParams {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let Value::Array(items) = node else {
            return Err(at.fail(format!("expected a list, found {}", kind(node))));
        };
        let mut out: Vec<String> = Vec::new();
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            let read = at.nested(&format!("[{i}]"), |at| {
                let name = String::from_node(item, at)?;
                check_name(&name, PROTOCOL_PARAMS, at)?;
                if named(LOGIN_OWN_PARAMS, &name) {
                    return Err(at.fail(format!(
                        "{name:?} is set by /auth/login itself and cannot be passed through"
                    )));
                }
                if named(&out, &name) {
                    return Err(at.fail(format!("{name:?} is listed twice")));
                }
                Ok(name)
            });
            match read {
                Ok(name) => out.push(name),
                Err(Reported) => bad = true,
            }
        }
        if bad {
            return Err(Reported);
        }
        Ok(Self(out))
    }
}

/// A parameter name: plain text, and not one cloakroom sets.
fn check_name(name: &str, refused: &[&str], at: &mut Cursor<'_>) -> Result<(), Reported> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(at.fail(format!(
            "{name:?} is not a parameter name (letters, digits, _ - .)"
        )));
    }
    if named(refused, name) {
        return Err(at.fail(format!(
            "{name:?} is a protocol parameter cloakroom sets itself; it cannot be configured"
        )));
    }
    Ok(())
}

/// Whether `list` names `name`, in any case: some IdPs read parameter
/// names case-insensitively, and would see `Scope` as a second `scope`.
fn named(list: &[impl AsRef<str>], name: &str) -> bool {
    list.iter().any(|n| n.as_ref().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    /// The errors of `yaml` about the `oidc` section's keys.
    fn errors(yaml: &str) -> Vec<String> {
        let mut all = crate::config::tests::errors(yaml);
        all.retain(|e| e.starts_with("oidc."));
        all
    }

    fn yaml(oidc: &str) -> String {
        format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com/', client_id: spa, client_secret: s, {oidc}}}
cookie: {{keys: [{{id: '1', secret: '${{KEY}}'}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
        )
    }

    #[test]
    fn idp02_static_and_pass_through_parameters_are_read_in_order() {
        let c = load(&yaml(
            "authorize_params: {audience: 'https://api.example.com', access_type: offline}, \
             login_params: [login_hint, ui_locales]",
        ))
        .unwrap();
        let oidc = c.oidc.unwrap();
        assert_eq!(
            oidc.authorize_params.0,
            [
                ("audience".to_owned(), "https://api.example.com".to_owned()),
                ("access_type".to_owned(), "offline".to_owned())
            ]
        );
        assert!(oidc.login_params.allows("login_hint"));
        assert!(!oidc.login_params.allows("prompt"));
        let none = load(&yaml("id_token_hint: false")).unwrap().oidc.unwrap();
        assert!(none.authorize_params.0.is_empty() && none.login_params.0.is_empty());
    }

    #[test]
    fn idp02_protocol_parameters_are_refused_with_their_key_path() {
        assert_eq!(
            errors(&yaml("authorize_params: {audience: a, redirect_uri: 'https://evil.example/cb'}")),
            ["oidc.authorize_params.redirect_uri: \"redirect_uri\" is a protocol parameter cloakroom sets itself; it cannot be configured"]
        );
        assert_eq!(
            errors(&yaml("login_params: [login_hint, state, max_age, login_hint]")),
            [
                "oidc.login_params[1]: \"state\" is a protocol parameter cloakroom sets itself; it cannot be configured",
                "oidc.login_params[2]: \"max_age\" is set by /auth/login itself and cannot be passed through",
                "oidc.login_params[3]: \"login_hint\" is listed twice",
            ]
        );
        for protocol in [
            "scope",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "client_id",
            "response_type",
        ] {
            let e = errors(&yaml(&format!("authorize_params: {{{protocol}: x}}")));
            assert_eq!(e.len(), 1, "{protocol}: {e:?}");
            assert!(
                e[0].starts_with(&format!("oidc.authorize_params.{protocol}: ")),
                "{e:?}"
            );
        }
        assert_eq!(
            errors(&yaml("authorize_params: [audience]")),
            ["oidc.authorize_params: expected a mapping, found a list"]
        );
    }

    #[test]
    fn idp02_protocol_parameters_are_refused_in_any_case() {
        let e = errors(&yaml("authorize_params: {Scope: openid, ACR_values: mfa}"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("oidc.authorize_params.Scope: \"Scope\" is a protocol parameter"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("oidc.authorize_params.ACR_values: \"ACR_values\" would be asked for"),
            "{e:?}"
        );
        assert_eq!(
            errors(&yaml("login_params: [Redirect_URI, Return_To, login_hint, Login_Hint]")),
            [
                "oidc.login_params[0]: \"Redirect_URI\" is a protocol parameter cloakroom sets itself; it cannot be configured",
                "oidc.login_params[1]: \"Return_To\" is set by /auth/login itself and cannot be passed through",
                "oidc.login_params[3]: \"Login_Hint\" is listed twice",
            ]
        );
    }

    #[test]
    fn idp02_step_up_parameters_are_refused_in_authorize_params() {
        for name in ["acr_values", "max_age"] {
            assert_eq!(
                errors(&yaml(&format!("authorize_params: {{{name}: mfa}}"))),
                [format!(
                    "oidc.authorize_params.{name}: \"{name}\" would be asked for but never checked at the callback; \
                     require it with `step_up` on the routes that need it (routes[].step_up)"
                )]
            );
        }
        assert_eq!(
            errors(&yaml("authorize_params: [audience]")),
            ["oidc.authorize_params: expected a mapping, found a list"]
        );
    }
}
