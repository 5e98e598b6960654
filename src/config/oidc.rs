//! The `oidc` section: the issuer, the client's credentials and scopes,
//! logout and revocation endpoints set by hand, and the authorization
//! request's extra parameters (`authorize.rs`).

use serde_json::Value;
use url::Url;

pub use super::authorize::{AuthorizeParams, LoginParams};
use super::node::{from_text, Cursor, Fields, FromNode, Reported};
use super::values::{absolute_http_url, is_plain_remote, UrlWithoutQuery};
use crate::secret::Secret;

/// The IdP and how cloakroom authenticates to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: Issuer,
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
    /// Extra parameters on every authorization request (IDP-02).
    pub authorize_params: AuthorizeParams,
    /// Parameters a caller of `/auth/login` may pass through (IDP-02).
    pub login_params: LoginParams,
    /// Call the IdP's `userinfo_endpoint` at login and add its claims to the
    /// session's, for IdPs whose ID tokens are thin (OIDC Core §5.3).
    pub userinfo: bool,
}

/// The issuer identifier exactly as configured: a trailing `/` is part of
/// it (IDP-01). Discovery, the authorization response's `iss` and every
/// token's `iss` are compared with this text, never with a normalised URL
/// (`Url` would add a `/` to `https://idp.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    text: String,
    url: Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

// === impl OidcConfig ===

impl FromNode for OidcConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let issuer = f.required::<Issuer>("issuer", at);
        let client_id = f.required::<String>("client_id", at);
        let client_secret = f.required::<String>("client_secret", at);
        let token_endpoint_auth = f.or("token_endpoint_auth", TokenEndpointAuth::ClientSecretBasic, at);
        let default_scopes = ["openid", "profile", "email", "offline_access"]
            .map(String::from)
            .to_vec();
        let scopes = f.or::<Vec<String>>("scopes", default_scopes, at);
        let post_logout_redirect_uri = f
            .optional::<UrlWithoutQuery>("post_logout_redirect_uri", at)
            .map(|u| u.0);
        let id_token_hint = f.or("id_token_hint", false, at);
        let revocation_endpoint = f.optional::<IdpEndpoint>("revocation_endpoint", at).map(|e| e.0);
        let userinfo = f.or("userinfo", false, at);
        let authorize_params = f.or("authorize_params", AuthorizeParams::default(), at);
        let login_params = f.or("login_params", LoginParams::default(), at);
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
            userinfo: userinfo.ok_or(Reported)?,
            authorize_params: authorize_params.ok_or(Reported)?,
            login_params: login_params.ok_or(Reported)?,
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

// === impl Issuer ===

impl Issuer {
    /// The identifier as configured, compared exactly.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The OpenID Connect discovery document's URL: the well-known path
    /// appended after any trailing `/` is removed (OIDC Discovery §4), so
    /// `https://tenant.auth0.com/` is not asked for `//.well-known/…`.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.text.trim_end_matches('/')
        )
    }
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

// The issuer identifier: https, no query or fragment (OIDC Discovery §2).
from_text!(Issuer, |text| {
    let url = absolute_http_url(text)?;
    // Plain http is judged with insecure_dev_mode, in Config::from_node.
    if url.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(Issuer {
        text: text.to_owned(),
        url,
    })
});

from_text!(TokenEndpointAuth, |text| match text {
    "client_secret_basic" => Ok(TokenEndpointAuth::ClientSecretBasic),
    "client_secret_post" => Ok(TokenEndpointAuth::ClientSecretPost),
    _ => Err(format!(
        "{text:?} is not one of client_secret_basic, client_secret_post"
    )),
});

#[cfg(test)]
mod tests {
    use crate::config::tests::{errors, load};

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
}
