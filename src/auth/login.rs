//! `GET /auth/login`: start an authorization code flow.
//!
//! PKCE S256 with a 256-bit verifier, 256-bit `state` and `nonce`. The
//! transaction rides in a pre-auth cookie of its own ([`super::pending`]):
//! nothing is stored server-side, so any number of anonymous calls leaves
//! the server's state as it was (LG-24). A step-up login (`max_age`,
//! `acr_values`) asks the IdP for a new authentication ([`super::step_up`]).
//!
//! Beyond the protocol's parameters the request carries
//! `oidc.authorize_params`, then the caller's parameters that
//! `oidc.login_params` names, then a step-up's; a later one replaces an
//! earlier one of the same name. The protocol's own parameters are set
//! last and config refuses them in either list, so neither can replace
//! them (IDP-02). Any other parameter of `/auth/login` is ignored.
//!
//! With PAR (`oidc.par`, [`crate::oidc::par`]) all of them are pushed to
//! the IdP first, and the browser carries only `client_id` and the
//! `request_uri` the IdP gave back. That costs an IdP call per login,
//! bounded per process (LG-24, see `oidc::par`).

use http::request::Parts;
use http::{header, Response};

use super::answer::redirect;
use super::pending::{self, Transaction};
use super::return_to;
use super::state::Auth;
use super::step_up::Ask;
use crate::body::Body;
use crate::config::authorize::MAX_PARAM_LEN;
use crate::config::OidcConfig;
use crate::error::LoginError;
use crate::oidc::IdpError;

pub async fn start(auth: &Auth, request: &Parts) -> Result<Response<Body>, LoginError> {
    // The page stays generic; the cause is in `/readyz` and logged once
    // per change by discovery (LG-27).
    let metadata = auth.idp.metadata().await.map_err(LoginError::unavailable)?;
    let query = request.uri.query().unwrap_or("");
    let requested = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v);
    let return_to = return_to::sanitize(requested.as_deref());
    let step_up = Ask::from_query(query, &auth.config.step_up_acr_values())?;

    let oidc = &auth.idp.config;
    let mut extra = passed_through(oidc, query)?;
    for (key, value) in step_up.parameters() {
        put(&mut extra, key, value);
    }

    let (mut transaction, state) = Transaction::start(return_to, auth.sessions.clock.now_ms());
    // A silent login's "no" comes back to the SPA, not to an error page.
    transaction.silent = extra.iter().any(|(k, v)| k == "prompt" && v == "none");
    let mut params: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (redirect_uri, scope) = (auth.redirect_uri(), auth.config.login_scopes().join(" "));
    let (nonce, challenge) = (transaction.nonce(), transaction.challenge());
    params.extend([
        ("response_type", "code"),
        ("client_id", oidc.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", scope.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    // The grant covers every route's own resource (RFC 8707 §2.1).
    let resources = auth.config.login_resources();
    params.extend(resources.iter().map(|r| ("resource", *r)));
    // The code is bound to the DPoP key (RFC 9449 §10): only a proof with
    // that key can exchange it. The callback proves that one, whichever
    // key is current by then.
    if let Some(dpop) = auth.idp.dpop() {
        let jkt = dpop.current().jkt();
        params.push(("dpop_jkt", jkt));
        transaction.dpop_jkt = Some(jkt.to_owned());
    }
    let pushed = auth
        .idp
        .push_authorization(&metadata, &params)
        .await
        .map_err(|e| match e {
            IdpError::Unreachable(_) | IdpError::Busy(_) => LoginError::unavailable(e),
            IdpError::Rejected(_) | IdpError::BadResponse(_) | IdpError::Unbound { .. } => {
                LoginError::IdpAnswer(Box::new(e))
            }
        })?;
    let mut url = metadata.authorization_endpoint.clone();
    match &pushed {
        // RFC 9126 §4: the pushed request stands for all the others.
        Some(request_uri) => {
            url.query_pairs_mut()
                .append_pair("client_id", &oidc.client_id)
                .append_pair("request_uri", request_uri);
        }
        None => {
            url.query_pairs_mut().extend_pairs(&params);
        }
    }
    transaction.step_up = step_up;
    let mut response = redirect(url.as_str());
    for cookie in pending::keep(auth, &request.headers, &state, &transaction) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `oidc.authorize_params`, then the parameters of `query` that
/// `oidc.login_params` allows, by exact name (the config refuses any case
/// variant of a protocol parameter there, so none can pass). An allowed parameter given twice or longer
/// than [`MAX_PARAM_LEN`] refuses the login; any other is dropped.
fn passed_through(oidc: &OidcConfig, query: &str) -> Result<Vec<(String, String)>, LoginError> {
    let mut out = oidc.authorize_params.0.clone();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !oidc.login_params.allows(&key) {
            continue;
        }
        if seen.iter().any(|s| *s == key) {
            return Err(LoginError::refused("a login parameter given twice"));
        }
        if value.len() > MAX_PARAM_LEN {
            return Err(LoginError::refused("a login parameter too long"));
        }
        seen.push(key.to_string());
        put(&mut out, &key, value.into_owned());
    }
    Ok(out)
}

/// Sets `key` to `value`, replacing an earlier value of the same name.
fn put(params: &mut Vec<(String, String)>, key: &str, value: String) {
    match params.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => params.push((key.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(extra: &str) -> OidcConfig {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com/', client_id: spa, client_secret: s, {extra}}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
        );
        let config = crate::Config::load(&yaml, &crate::config::MapEnv::default()).unwrap();
        config.oidc.unwrap()
    }

    #[test]
    fn idp02_static_parameters_then_allowed_ones_and_nothing_else() {
        let oidc = oidc("authorize_params: {audience: 'https://api', prompt: consent}, login_params: [login_hint, prompt]");
        let params = passed_through(
            &oidc,
            "login_hint=a%40b.example&prompt=none&kc_idp_hint=evil&redirect_uri=https://evil&return_to=/x",
        )
        .unwrap();
        let expected = [
            ("audience", "https://api"),
            ("prompt", "none"),
            ("login_hint", "a@b.example"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(params, expected);
        assert!(passed_through(&oidc, "login_hint=a&login_hint=b").is_err());
        assert!(passed_through(&oidc, &format!("login_hint={}", "a".repeat(MAX_PARAM_LEN + 1))).is_err());
    }

    #[test]
    fn idp02_case_variants_are_never_passed_through() {
        // Names are matched exactly, and the config holds no case variant
        // of a protocol parameter, so none reaches the IdP.
        let oidc = oidc("login_params: [login_hint]");
        let params = passed_through(
            &oidc,
            "Scope=openid%20admin&REDIRECT_URI=https://evil&Max_Age=0&Login_Hint=x&login_hint=a",
        )
        .unwrap();
        assert_eq!(params, [("login_hint".to_owned(), "a".to_owned())]);
    }
}
