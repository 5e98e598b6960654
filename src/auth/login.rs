//! `GET /auth/login`: start an authorization code flow.
//!
//! PKCE S256 with a 256-bit verifier, 256-bit `state` and `nonce`. The
//! transaction rides in a pre-auth cookie of its own ([`super::pending`]):
//! nothing is stored server-side, so any number of anonymous calls leaves
//! the server's state as it was (LG-24). A step-up login (`max_age`,
//! `acr_values`) asks the IdP for a new authentication ([`super::step_up`]).

use http::request::Parts;
use http::{header, Response};

use super::pending::{self, Transaction};
use super::step_up::Ask;
use super::{redirect, return_to, Auth};
use crate::body::Body;
use crate::error::LoginError;

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

    let (mut transaction, state) = Transaction::start(return_to, auth.sessions.clock.now_ms());
    let oidc = &auth.idp.config;
    let mut url = metadata.authorization_endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.client_id)
        .append_pair("redirect_uri", &auth.redirect_uri())
        .append_pair("scope", &oidc.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &transaction.nonce())
        .append_pair("code_challenge", &transaction.challenge())
        .append_pair("code_challenge_method", "S256");
    for (key, value) in step_up.parameters() {
        url.query_pairs_mut().append_pair(key, &value);
    }
    transaction.step_up = step_up;
    let mut response = redirect(url.as_str());
    for cookie in pending::keep(auth, &request.headers, &state, &transaction) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
