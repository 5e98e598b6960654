//! A route's `resource` and `scopes`: which API a token is for (RFC 8707)
//! and how narrow it is, so one route's token is worth nothing at another
//! route's API (PX-23).
//!
//! A route that names either gets a token of its own, obtained with the
//! session's refresh token, narrowed to them. The login asks for the union:
//! every route's resource and scopes, so the grant covers each narrower
//! token asked for later.

use std::collections::BTreeSet;

use url::Url;

use super::node::from_text;

/// What a route's own token is for: a resource indicator, a narrowed
/// scope, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience {
    pub resource: Option<Url>,
    /// Sorted and without duplicates: two routes naming the same scopes in
    /// another order share one token.
    pub scopes: Vec<String>,
}

/// A `resource` value: an absolute URI without a fragment (RFC 8707 §2).
pub(super) struct Resource(pub(super) Url);

/// One scope token (RFC 6749 §3.3).
pub(super) struct Scope(pub(super) String);

// === impl Audience ===

impl Audience {
    pub fn new(resource: Option<Url>, scopes: Vec<String>) -> Self {
        let scopes: BTreeSet<String> = scopes.into_iter().collect();
        Self {
            resource,
            scopes: scopes.into_iter().collect(),
        }
    }

    /// The name the session record keeps this token under: the resource
    /// and the scopes, which neither may contain a space.
    pub fn key(&self) -> String {
        let resource = self.resource.as_ref().map_or("", Url::as_str);
        format!("{resource} {}", self.scopes.join(" "))
    }

    /// `scope` for the token request, if the route narrows it.
    pub fn scope(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }
}

from_text!(Resource, |text| {
    let url = Url::parse(text).map_err(|_| "not an absolute URI".to_string())?;
    if url.fragment().is_some() {
        return Err("must not have a #fragment (RFC 8707)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(Resource(url))
});

from_text!(Scope, |text| {
    // RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E, at least one.
    let valid = |c: char| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c);
    if text.is_empty() || !text.chars().all(valid) {
        return Err(format!(
            "{text:?} is not a scope (no spaces, quotes or backslashes)"
        ));
    }
    Ok(Scope(text.to_owned()))
});

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;
    use crate::config::{Config, MapEnv};

    const HEAD: &str = "public_url: https://app.example.com
oidc: {issuer: 'https://idp.example.com', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
";

    #[test]
    fn px23_resource_and_scopes_are_checked_by_key_path() {
        let got = errors(&format!(
            "{HEAD}routes:
  - {{path: /a, upstream: 'http://a', resource: 'https://a.example/#x'}}
  - {{path: /b, upstream: 'http://a', auth: none, resource: 'https://b.example/'}}
  - {{path: /c, upstream: 'http://a', token: none, scopes: [read]}}
  - {{path: /d, upstream: 'http://a', scopes: ['a b', read]}}
  - {{path: /e, upstream: 'http://a', resource: 'not a uri'}}
"
        ));
        assert_eq!(
            got,
            [
                "routes[0].resource: must not have a #fragment (RFC 8707)",
                "routes[1].resource: `token: none` sends no token for it to narrow",
                "routes[2].scopes: `token: none` sends no token for it to narrow",
                "routes[3].scopes[0]: \"a b\" is not a scope (no spaces, quotes or backslashes)",
                "routes[4].resource: not an absolute URI",
            ]
        );
    }

    #[test]
    fn the_login_asks_for_every_route_resource_and_scope() {
        let config = Config::load(
            &format!(
                "{HEAD}routes:
  - {{path: /a, upstream: 'http://a', resource: 'urn:x:orders', scopes: [orders.read, openid]}}
  - {{path: /b, upstream: 'http://a', resource: 'urn:x:billing', scopes: [billing]}}
  - {{path: /c, upstream: 'http://a', resource: 'urn:x:orders', scopes: [orders.read]}}
  - {{path: /d, upstream: 'http://a'}}
"
            ),
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(
            config.login_scopes(),
            [
                "openid",
                "profile",
                "email",
                "offline_access",
                "orders.read",
                "billing"
            ]
        );
        assert_eq!(
            config.login_resources().into_iter().collect::<Vec<_>>(),
            ["urn:x:billing", "urn:x:orders"]
        );
        let a = config.routes[0].audience.as_ref().unwrap();
        assert_eq!(a.key(), "urn:x:orders openid orders.read");
        assert_eq!(config.routes[3].audience, None);
    }
}
