//! The OpenID Provider as cloakroom sees it: metadata, keys, token calls.

pub mod client_auth;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod exchange;
pub mod fit;
pub mod http;
pub mod id_token;
pub mod jwks;
pub mod logout_token;
pub mod par;
pub mod state;
pub mod token;
pub mod userinfo;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::clock::Clock;
use crate::config::{Audience, Exchange, OidcConfig};
use crate::secret::{AccessToken, IdToken, RefreshToken};

use self::discovery::Metadata;
use self::dpop::Dpop;
pub use self::error::{IdpError, OAuthError};
use self::exchange::Subject;
use self::id_token::{Expected, IdTokenError};
use self::jwks::Jwks;
use self::logout_token::{Logout, LogoutTokenError};
pub use self::state::DiscoveryState;
pub use self::token::TokenResponse;

/// What [`Idp::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The IdP acknowledged the revocation.
    Yes,
    /// The IdP names no revocation endpoint, nor does the config: nothing
    /// was asked.
    NoEndpoint,
}

/// Token-endpoint calls one process has in flight at most. A refresh
/// storm (every replica's sessions due at once, after an outage or a
/// restart) would otherwise queue thousands of grants at the IdP, and a
/// grant the IdP answers after cloakroom stopped waiting (`http.rs`'s
/// timeout) has rotated a refresh token nobody kept: that session's next
/// refresh is `invalid_grant`, a logout. Bounded, each call stays short;
/// the others wait their turn before anything is sent.
pub const MAX_TOKEN_CALLS: usize = 32;

/// How long a token-endpoint call may take once sent. Longer than other
/// IdP calls: a grant the IdP carried out spent what it presented (a
/// rotating refresh token, a code), so an answer given up on is a grant
/// lost, and the session with it. Callers do not wait this long: a
/// refresh's callers leave its flight after [`crate::refresh`]'s own
/// wait, and the flight lands the answer whenever it comes.
pub const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a grant waits for its turn. Nothing has been sent then, so a
/// wait that runs out is `IdpError::Busy` (503, the session and its
/// refresh token kept), never a lost rotation.
pub const TOKEN_CALL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The provider, discovered once and shared by every worker.
pub struct Idp {
    pub config: OidcConfig,
    /// What ID-token `exp`, `iat` and `nbf` are judged by.
    clock: Clock,
    client: reqwest::Client,
    discovered: RwLock<Option<(Arc<Metadata>, Arc<Jwks>)>>,
    discovering: tokio::sync::Mutex<()>,
    state: state::Tracker,
    /// Pushed authorization requests in flight (LG-24, [`par`]).
    pushing: tokio::sync::Semaphore,
    /// Token-endpoint calls in flight ([`MAX_TOKEN_CALLS`]).
    granting: tokio::sync::Semaphore,
    /// Proofs and nonces, with `oidc.dpop`.
    dpop: Option<Arc<Dpop>>,
}

// === impl Idp ===

impl Idp {
    pub fn new(config: OidcConfig, clock: Clock) -> Result<Arc<Self>, reqwest::Error> {
        let dpop = config
            .dpop
            .clone()
            .map(|keys| Arc::new(Dpop::new(keys, clock.clone())));
        Ok(Arc::new(Self {
            config,
            clock,
            dpop,
            client: http::client()?,
            discovered: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            state: state::Tracker::default(),
            pushing: tokio::sync::Semaphore::new(par::MAX_IN_FLIGHT),
            granting: tokio::sync::Semaphore::new(MAX_TOKEN_CALLS),
        }))
    }

    /// Proofs and nonces, when tokens are bound to a key (`oidc.dpop`).
    pub fn dpop(&self) -> Option<&Arc<Dpop>> {
        self.dpop.as_ref()
    }

    /// The configured issuer, as a string compared exactly: a trailing
    /// `/` is part of it (IDP-01).
    pub fn issuer(&self) -> &str {
        self.config.issuer.as_str()
    }

    /// The latest discovery outcome and its cause, for `/readyz` (LG-27).
    pub fn discovery_state(&self) -> DiscoveryState {
        self.state.get()
    }

    /// Whether the IdP serves discovery metadata that fits the config now:
    /// a fresh fetch, never the cached copy, bounded by `limit`. For the
    /// `cloakroom_idp_up` gauge; it changes nothing of the cached state.
    pub async fn probe(&self, limit: Duration) -> bool {
        let fetched = discovery::discover(&self.client, &self.config.issuer);
        matches!(tokio::time::timeout(limit, fetched).await, Ok(Ok(_)))
    }

    /// The metadata, discovering it on first use (one attempt at a time).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, IdpError> {
        self.discovered().await.map(|(m, _)| m)
    }

    async fn discovered(&self) -> Result<(Arc<Metadata>, Arc<Jwks>), IdpError> {
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        let discovered = discovery::discover(&self.client, &self.config.issuer).await;
        let fitting = discovered
            .and_then(|m| userinfo::fits(&self.config, m))
            .and_then(|m| par::fits(&self.config, m))
            .and_then(|m| dpop::fits(&self.config, m));
        match fitting {
            Ok(mut metadata) => {
                if metadata.code_challenge_methods_supported.is_none() {
                    // Entra ID and others support S256 without listing it.
                    // It is sent regardless; that this IdP checks it cannot
                    // be known from its metadata, so the operator is told.
                    tracing::info!(
                        issuer = self.issuer(),
                        "the IdP metadata lists no code_challenge_methods_supported; \
                         PKCE S256 is sent regardless"
                    );
                }
                if self.dpop.is_some() && metadata.dpop_signing_alg_values_supported.is_none() {
                    // Optional metadata: the IdP may bind tokens all the
                    // same, and each answer's token_type says whether it did.
                    tracing::warn!(
                        issuer = self.issuer(),
                        "oidc.dpop is set, but the IdP metadata lists no \
                         dpop_signing_alg_values_supported; logins fail if it answers bearer tokens"
                    );
                }
                self.find_revocation(&mut metadata).await;
                let jwks = Arc::new(Jwks::new(metadata.jwks_uri.clone()));
                let found = (Arc::new(metadata), jwks);
                if let Ok(mut slot) = self.discovered.write() {
                    *slot = Some(found.clone());
                }
                self.state.ready(self.issuer());
                Ok(found)
            }
            Err(e) => {
                let transient = matches!(e, discovery::DiscoveryError::Idp(IdpError::Unreachable(_)));
                self.state
                    .failed(self.issuer(), &crate::error::chain(&e), transient);
                match e {
                    discovery::DiscoveryError::Idp(e) => Err(e),
                    _ => Err(IdpError::BadResponse("IdP metadata refused")),
                }
            }
        }
    }

    /// Completes `metadata` with the RFC 8414 revocation endpoint when it
    /// needs one, and warns when logout will not be able to revoke (LO-13).
    /// Runs once, with the first successful discovery.
    async fn find_revocation(&self, metadata: &mut Metadata) {
        if self.revocation_endpoint(metadata).is_some() {
            return;
        }
        let why = match discovery::rfc8414_revocation_endpoint(&self.client, self.issuer()).await {
            Ok(Some(endpoint)) => {
                tracing::info!(endpoint = %endpoint, "revocation endpoint found in the RFC 8414 metadata");
                metadata.revocation_endpoint = Some(endpoint);
                return;
            }
            Ok(None) => "it lists none".to_owned(),
            Err(e) => crate::error::chain(&e),
        };
        tracing::warn!(
            issuer = self.issuer(),
            rfc8414 = %why,
            "logout cannot revoke refresh tokens: the IdP metadata names no revocation_endpoint; \
             set oidc.revocation_endpoint if the IdP has one"
        );
    }

    /// Where logout revokes refresh tokens: `oidc.revocation_endpoint`,
    /// else the metadata's (OIDC discovery, then RFC 8414).
    fn revocation_endpoint<'a>(&'a self, metadata: &'a Metadata) -> Option<&'a Url> {
        self.config
            .revocation_endpoint
            .as_ref()
            .or(metadata.revocation_endpoint.as_ref())
    }

    fn cached(&self) -> Option<(Arc<Metadata>, Arc<Jwks>)> {
        self.discovered.read().ok().and_then(|d| d.clone())
    }

    /// Retries discovery in the background until it succeeds, so the first
    /// login finds the IdP discovered and `/readyz` reports it (UF-06).
    pub fn discover_in_background(self: &Arc<Self>) {
        let idp = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            while idp.discovered().await.is_err() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        });
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3 with PKCE); with
    /// DPoP, proven with the key `jkt` the code was bound to when the ring
    /// still holds it, else the current one.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        jkt: Option<&str>,
    ) -> Result<TokenResponse, IdpError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
        ];
        self.token_request_with(&form, jkt).await
    }

    /// Uses a refresh token (RFC 6749 §6). Called once per rotation, never
    /// retried: a second use of a rotated token would revoke the grant.
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse, IdpError> {
        self.refresh_for(refresh_token, None).await
    }

    /// [`Idp::refresh`] for a route's own token: with its `resource`
    /// (RFC 8707 §2.2) and its narrowed `scope` (RFC 6749 §6).
    pub async fn refresh_for(
        &self,
        refresh_token: &RefreshToken,
        audience: Option<&Audience>,
    ) -> Result<TokenResponse, IdpError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let scope = audience.and_then(Audience::scope);
        if let Some(resource) = audience.and_then(|a| a.resource.as_ref()) {
            form.push(("resource", resource.as_str()));
        }
        if let Some(scope) = &scope {
            form.push(("scope", scope));
        }
        self.token_request(&form).await
    }

    /// A token of cloakroom's own client (RFC 6749 §4.4), for `resource`
    /// and `scope` when the route names them.
    pub async fn client_credentials(&self, audience: &Audience) -> Result<TokenResponse, IdpError> {
        let mut form = vec![("grant_type", "client_credentials")];
        let scope = audience.scope();
        if let Some(resource) = &audience.resource {
            form.push(("resource", resource.as_str()));
        }
        if let Some(scope) = &scope {
            form.push(("scope", scope));
        }
        self.token_request(&form).await
    }

    /// Exchanges `subject` for an access token for what `exchange` names
    /// (RFC 8693 §2.1, [`exchange`]): its `audience`, `resource` and
    /// `scope`. Called once per token, never retried.
    pub async fn exchange(
        &self,
        subject: Subject<'_>,
        exchange: &Exchange,
    ) -> Result<TokenResponse, IdpError> {
        let scope = exchange.scope();
        let form = exchange::form(subject, exchange, scope.as_deref());
        exchange::accept(self.token_request(&form).await?)
    }

    /// Revokes a refresh token (RFC 7009) when the IdP offers revocation;
    /// [`Revoked::NoEndpoint`] when it does not. An unknown or already
    /// revoked token is revoked too, as far as the IdP says (§2.2).
    pub async fn revoke(&self, refresh_token: &RefreshToken) -> Result<Revoked, IdpError> {
        let metadata = self.metadata().await?;
        let Some(endpoint) = self.revocation_endpoint(&metadata) else {
            return Ok(Revoked::NoEndpoint);
        };
        let form = [
            ("token", refresh_token.expose()),
            ("token_type_hint", "refresh_token"),
        ];
        let request = self.authenticate(&metadata, self.client.post(endpoint.clone()), &form)?;
        http::acknowledged("revocation", request).await?;
        Ok(Revoked::Yes)
    }

    /// Pushes an authorization request (RFC 9126 §2.1) when the config
    /// and `metadata` say so; the `request_uri` the browser is sent with,
    /// or `None` when the parameters go on the redirect as before.
    pub async fn push_authorization(
        &self,
        metadata: &Metadata,
        params: &[(&str, &str)],
    ) -> Result<Option<String>, IdpError> {
        let Some(endpoint) = par::endpoint(&self.config, metadata) else {
            return Ok(None);
        };
        // Never waits: a login beyond the bound is refused at once (LG-24).
        let _slot = self
            .pushing
            .try_acquire()
            .map_err(|_| IdpError::Busy("too many pushed authorization requests in flight"))?;
        let request = self.authenticate(metadata, self.client.post(endpoint.clone()), params)?;
        let pushed: par::Pushed = http::json("par", request).await?;
        Ok(Some(pushed.request_uri))
    }

    /// The UserInfo answer for a fresh access token, through
    /// [`http::json`] like every IdP call (redirects refused, time and size
    /// bounded). A token bound to the DPoP key `jkt` goes with a proof for
    /// the endpoint, as to any resource server.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        jkt: Option<&str>,
    ) -> Result<Map<String, Value>, IdpError> {
        let metadata = self.metadata().await?;
        let endpoint = metadata.userinfo_endpoint.clone().ok_or(IdpError::BadResponse(
            "the IdP metadata names no userinfo_endpoint",
        ))?;
        let request = || {
            self.client
                .get(endpoint.clone())
                .header(reqwest::header::ACCEPT, "application/json")
        };
        let (Some(dpop), Some(jkt)) = (self.dpop(), jkt) else {
            return http::json("userinfo", request().bearer_auth(access_token.expose())).await;
        };
        let mut htu = endpoint.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let ath = dpop::ath(access_token);
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("DPoP {}", access_token.expose()))
                .map_err(|_| IdpError::BadResponse("the access token is not a header value"))?;
        authorization.set_sensitive(true);
        self.with_proof(
            dpop,
            "userinfo",
            Some(jkt),
            "GET",
            htu.as_str(),
            Some(&ath),
            |proof| {
                Ok(request()
                    .header(reqwest::header::AUTHORIZATION, authorization.clone())
                    .header(&dpop::DPOP, proof))
            },
        )
        .await
    }

    /// A call to the token endpoint, whatever its grant. With `oidc.dpop`
    /// it carries a proof made with the current key, and the answer must
    /// be a token bound to it (RFC 9449 §5): a bearer token in its place is
    /// refused ([`IdpError::Unbound`]).
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, IdpError> {
        self.token_request_with(form, None).await
    }

    /// [`Idp::token_request`] proven with the key `jkt` names, when the
    /// ring holds it, else with the current one.
    async fn token_request_with(
        &self,
        form: &[(&str, &str)],
        jkt: Option<&str>,
    ) -> Result<TokenResponse, IdpError> {
        let metadata = self.metadata().await?;
        let _turn = tokio::time::timeout(TOKEN_CALL_WAIT, self.granting.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(IdpError::Busy("too many token requests in flight"))?;
        let endpoint = &metadata.token_endpoint;
        let post = || self.client.post(endpoint.clone()).timeout(TOKEN_CALL_TIMEOUT);
        let request = || self.authenticate(&metadata, post(), form);
        let Some(dpop) = &self.dpop else {
            let tokens: TokenResponse = http::json("token", request()?).await?;
            if !tokens.token_type.eq_ignore_ascii_case("bearer") {
                return Err(IdpError::BadResponse("token_type is not Bearer"));
            }
            return Ok(tokens);
        };
        let key = jkt.filter(|jkt| dpop.holds(jkt)).unwrap_or(dpop.current().jkt());
        let mut tokens: TokenResponse = self
            .with_proof(
                dpop,
                "token",
                Some(key),
                "POST",
                endpoint.as_str(),
                None,
                |proof| Ok(request()?.header(&dpop::DPOP, proof)),
            )
            .await?;
        if !tokens.token_type.eq_ignore_ascii_case("dpop") {
            return Err(IdpError::Unbound {
                token_type: std::mem::take(&mut tokens.token_type),
                refresh_token: tokens.refresh_token.take(),
            });
        }
        tokens.jkt = Some(key.to_owned());
        Ok(tokens)
    }

    /// Sends what `request` makes, with a DPoP proof for `htm` `htu` (and
    /// `ath`, for a bound token) signed by the key `jkt` names, keeping the
    /// nonce the IdP answers with. A request the IdP refused for want of a
    /// nonce, giving one (`use_dpop_nonce`, RFC 9449 §8), is sent once
    /// more with it: the IdP refused it before looking at its grant, so
    /// nothing it carried (a code, a refresh token) was spent. A new proof
    /// and a new client assertion each time: neither may be used twice.
    #[allow(clippy::too_many_arguments)]
    async fn with_proof<T: serde::de::DeserializeOwned>(
        &self,
        dpop: &Dpop,
        operation: &'static str,
        jkt: Option<&str>,
        htm: &str,
        htu: &str,
        ath: Option<&str>,
        request: impl Fn(String) -> Result<reqwest::RequestBuilder, IdpError>,
    ) -> Result<T, IdpError> {
        let mut retry = true;
        loop {
            let proof = dpop.idp_proof(jkt, htm, htu, ath).ok_or(IdpError::BadResponse(
                "the token's DPoP key is no longer in oidc.dpop.keys",
            ))?;
            let mut new_nonce = false;
            let answer = http::json_noting(operation, request(proof)?, |headers| {
                new_nonce = dpop.note_idp_nonce(headers);
            })
            .await;
            match answer {
                Err(IdpError::Rejected(e)) if e.error == "use_dpop_nonce" && new_nonce && retry => {
                    retry = false;
                }
                answer => return answer,
            }
        }
    }

    /// Adds client authentication and the form body
    /// ([`client_auth::authenticate`]).
    fn authenticate(
        &self,
        metadata: &Metadata,
        request: reqwest::RequestBuilder,
        form: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, IdpError> {
        let audience = metadata.token_endpoint.as_str();
        client_auth::authenticate(&self.config, &self.clock, audience, request, form)
    }

    /// Validates an ID token against the provider's keys (fail closed).
    pub async fn validate_id_token(
        &self,
        token: &IdToken,
        nonce: Option<&str>,
        access_token: Option<&AccessToken>,
    ) -> Result<Map<String, Value>, IdTokenCheckError> {
        let (metadata, jwks) = self.discovered().await?;
        let (_, kid) = id_token::header(token.expose())?;
        let jwk = jwks
            .find(&self.client, kid.as_deref())
            .await?
            .ok_or(IdTokenError::UnknownKey)?;
        let expected = Expected {
            issuer: self.issuer(),
            client_id: &self.config.client_id,
            nonce,
            access_token: access_token.map(AccessToken::expose),
            provider_algs: &metadata.id_token_signing_alg_values_supported,
            now: self.clock.now(),
        };
        Ok(id_token::validate(token.expose(), &jwk, &expected)?)
    }

    /// Validates a back-channel logout token against the provider's keys
    /// (fail closed); the `jti` replay check is the caller's.
    pub async fn validate_logout_token(&self, token: &str) -> Result<Logout, LogoutTokenCheckError> {
        let (metadata, jwks) = self.discovered().await?;
        let (_, kid) = logout_token::header(token)?;
        let jwk = jwks
            .find(&self.client, kid.as_deref())
            .await?
            .ok_or(LogoutTokenError::Key(IdTokenError::UnknownKey))?;
        let expected = logout_token::Expected {
            issuer: self.issuer(),
            client_id: &self.config.client_id,
            provider_algs: &metadata.id_token_signing_alg_values_supported,
            now: self.clock.now(),
        };
        Ok(logout_token::validate(token, &jwk, &expected)?)
    }
}

/// A logout token could not be checked (IdP down) or was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogoutTokenCheckError {
    #[error(transparent)]
    Idp(#[from] IdpError),
    #[error(transparent)]
    Invalid(#[from] LogoutTokenError),
}

/// An ID token could not be checked (IdP down) or was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenCheckError {
    #[error(transparent)]
    Idp(#[from] IdpError),
    #[error(transparent)]
    Invalid(#[from] IdTokenError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo13_a_configured_revocation_endpoint_wins_over_the_metadata() {
        let metadata: Metadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "revocation_endpoint": "https://idp.example.com/listed",
        }))
        .unwrap();
        let idp = |configured: Option<&str>| {
            let revocation = configured.map_or(String::new(), |u| format!("revocation_endpoint: '{u}'"));
            let yaml = format!(
                "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s, {revocation}}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
            );
            let config = crate::Config::load(&yaml, &crate::config::MapEnv::default()).unwrap();
            Idp::new(config.oidc.unwrap(), Clock::system()).unwrap()
        };
        let configured = idp(Some("https://idp.example.com/configured"));
        assert_eq!(
            configured.revocation_endpoint(&metadata).unwrap().as_str(),
            "https://idp.example.com/configured"
        );
        let listed = idp(None);
        assert_eq!(
            listed.revocation_endpoint(&metadata).unwrap().as_str(),
            "https://idp.example.com/listed"
        );
    }
}
