//! The `oidc` section: the issuer, the client's credentials and scopes,
//! logout and revocation endpoints set by hand, and the authorization
//! request's extra parameters (`authorize.rs`).

use serde_json::Value;
use url::Url;

pub use super::authorize::{AuthorizeParams, LoginParams};
pub use super::client_key::{ClientKey, ClientKeyAlg};
pub use super::dpop::{DpopConfig, DpopKey};
use super::node::{from_text, Cursor, Fields, FromNode, Reported};
use super::values::{absolute_http_url, is_plain_remote, UrlWithoutQuery};
use crate::secret::Secret;

/// The IdP and how cloakroom authenticates to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: Issuer,
    pub client_id: String,
    /// Set exactly when `token_endpoint_auth` is a `client_secret_*`.
    pub client_secret: Option<Secret<String>>,
    pub token_endpoint_auth: TokenEndpointAuth,
    /// Set exactly when `token_endpoint_auth` is `private_key_jwt`.
    pub client_key: Option<ClientKey>,
    /// Whether the authorization request is pushed first (RFC 9126).
    pub par: Par,
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
    /// Bind every token to cloakroom's key (DPoP, RFC 9449): a proof with
    /// each token request, and with each call that sends a bound token.
    pub dpop: Option<DpopConfig>,
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
    /// A JWT signed with `client_key` (RFC 7523 §2.2, OIDC Core §9).
    PrivateKeyJwt,
}

/// `oidc.par`: pushed authorization requests (RFC 9126).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Par {
    /// Pushed when the metadata names `pushed_authorization_request_endpoint`.
    Auto,
    /// Always pushed; an IdP without the endpoint is not usable.
    Required,
    /// Never pushed; an IdP that requires it is not usable.
    Off,
}

// === impl OidcConfig ===

impl FromNode for OidcConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let issuer = f.required::<Issuer>("issuer", at);
        let client_id = f.required::<String>("client_id", at);
        let token_endpoint_auth = f.or("token_endpoint_auth", TokenEndpointAuth::ClientSecretBasic, at);
        let with_key = token_endpoint_auth == Some(TokenEndpointAuth::PrivateKeyJwt);
        let client_secret = f.optional::<String>("client_secret", at);
        let client_key = client_key(&mut f, with_key, at);
        let par = f.or("par", Par::Auto, at);
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
        // A `dpop` section that does not read must not leave DPoP off.
        let dpop_given = f.has("dpop");
        let dpop = f.optional::<DpopConfig>("dpop", at);
        let authorize_params = f.or("authorize_params", AuthorizeParams::default(), at);
        let login_params = f.or("login_params", LoginParams::default(), at);
        if scopes.as_ref().is_some_and(|s| !s.iter().any(|s| s == "openid")) {
            at.error_at("scopes", "must include openid");
        }
        match (&client_secret, with_key) {
            (Some(s), false) if s.is_empty() => at.error_at("client_secret", "must not be empty"),
            (None, false) if token_endpoint_auth.is_some() => {
                at.error_at("client_secret", "required key is missing")
            }
            (Some(_), true) => at.error_at(
                "client_secret",
                "not used with token_endpoint_auth: private_key_jwt; remove it",
            ),
            _ => {}
        }
        f.finish(at);
        if dpop_given && dpop.is_none() {
            return Err(Reported);
        }
        Ok(OidcConfig {
            issuer: issuer.ok_or(Reported)?,
            client_id: client_id.ok_or(Reported)?,
            client_secret: client_secret.map(Secret::new),
            token_endpoint_auth: token_endpoint_auth.ok_or(Reported)?,
            client_key: client_key?,
            par: par.ok_or(Reported)?,
            scopes: scopes.ok_or(Reported)?,
            post_logout_redirect_uri,
            id_token_hint: id_token_hint.ok_or(Reported)?,
            revocation_endpoint,
            userinfo: userinfo.ok_or(Reported)?,
            dpop,
            authorize_params: authorize_params.ok_or(Reported)?,
            login_params: login_params.ok_or(Reported)?,
        })
    }
}

/// `client_key`, `client_key_id` and `client_key_alg`: required with
/// `private_key_jwt`, refused without it (a key nobody uses is a mistake).
fn client_key(
    f: &mut Fields<'_>,
    with_key: bool,
    at: &mut Cursor<'_>,
) -> Result<Option<ClientKey>, Reported> {
    let pem = f.optional::<String>("client_key", at);
    let kid = f.optional::<String>("client_key_id", at);
    let alg = f.optional::<ClientKeyAlg>("client_key_alg", at);
    if !with_key {
        let given = [
            ("client_key", pem.is_some()),
            ("client_key_id", kid.is_some()),
            ("client_key_alg", alg.is_some()),
        ];
        for (key, _) in given.iter().filter(|(_, set)| *set) {
            at.error_at(key, "used only with token_endpoint_auth: private_key_jwt");
        }
        return Ok(None);
    }
    let Some(pem) = pem else {
        at.error_at(
            "client_key",
            "required with token_endpoint_auth: private_key_jwt (or client_key_file)",
        );
        return Err(Reported);
    };
    match ClientKey::new(pem, alg, kid) {
        Ok(key) => Ok(Some(key)),
        Err(problem) => {
            at.error_at(problem.key, problem.reason);
            Err(Reported)
        }
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
    "private_key_jwt" => Ok(TokenEndpointAuth::PrivateKeyJwt),
    _ => Err(format!(
        "{text:?} is not one of client_secret_basic, client_secret_post, private_key_jwt"
    )),
});

// === impl TokenEndpointAuth ===

impl TokenEndpointAuth {
    /// The method's name in `token_endpoint_auth_methods_supported`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuth::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost => "client_secret_post",
            TokenEndpointAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

// `par: off` unquoted is a boolean to YAML 1.1, so `false` is `off`;
// `true` (`on`, `yes`) says nothing of auto or required and is refused.
impl FromNode for Par {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::Bool(false) => Ok(Par::Off),
            Value::String(text) => match text.trim() {
                "auto" => Ok(Par::Auto),
                "required" => Ok(Par::Required),
                "off" => Ok(Par::Off),
                other => Err(at.fail(format!("{other:?} is not one of auto, required, off"))),
            },
            _ => Err(at.fail("expected one of auto, required, off")),
        }
    }
}

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
