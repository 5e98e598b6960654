//! `GET /auth/login`: start an authorization code flow.
//!
//! PKCE S256 with a 256-bit verifier, 256-bit `state` and `nonce`. The
//! transaction (verifier, nonce, return_to, creation time, browser binding)
//! is stored under a hash of the state, single use. The browser is bound by
//! one small pre-auth cookie holding a sealed random secret, reused by every
//! tab, so twenty parallel logins add one cookie, not twenty (T10).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{header, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{page, random_token, redirect, return_to, Auth};
use crate::body::Body;
use crate::cookie::seal::Opened;
use crate::cookie::{CookieNames, Purpose};
use crate::error::{BoxError, Code};
use crate::session::record::hex;

/// The store keeps a transaction a little longer, so a late callback can be
/// told "expired" rather than "unknown".
const STORE_GRACE: Duration = Duration::from_secs(300);

/// One login in progress.
#[derive(Serialize, Deserialize)]
pub struct Transaction {
    pub verifier: String,
    pub nonce: String,
    pub return_to: String,
    pub created_at: u64,
    /// SHA-256 of the browser secret in the pre-auth cookie.
    pub browser: String,
}

/// The store key of the transaction for `state`.
pub fn transaction_key(state: &str) -> String {
    format!(
        "cloakroom:{{{}}}:login",
        hex(&sha2::Sha256::digest(state.as_bytes())[..16])
    )
}

/// The browser secret in this request's pre-auth cookie, if it opens.
pub fn browser_secret(auth: &Auth, headers: &http::HeaderMap) -> Option<Opened> {
    let value = CookieNames::find(headers, &auth.names.login)?;
    auth.ring.unseal(Purpose::Login, &auth.names.login, value).ok()
}

pub fn browser_hash(secret: &[u8]) -> String {
    hex(&sha2::Sha256::digest(secret))
}

pub async fn start(auth: &Auth, request: &Parts, request_id: &str) -> Result<Response<Body>, BoxError> {
    let metadata = match auth.idp.metadata().await {
        Ok(m) => m,
        Err(e) => {
            // The page stays generic; the cause is in `/readyz` and logged
            // once per change by discovery (LG-27).
            tracing::warn!(request_id, error = %e, "login not started: IdP unavailable");
            return Ok(page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::IdpUnavailable,
                request_id,
            ));
        }
    };
    let query = request.uri.query().unwrap_or("");
    let requested = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v);
    let return_to = return_to::sanitize(requested.as_deref());

    // Reuse this browser's pre-auth secret when it has a valid one.
    let existing = browser_secret(auth, &request.headers).filter(|o| o.plaintext.len() == 32 && !o.stale_key);
    let secret = match existing {
        Some(opened) => opened.plaintext.to_vec(),
        None => {
            let mut s = vec![0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut s);
            s
        }
    };

    let state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let transaction = Transaction {
        verifier,
        nonce: nonce.clone(),
        return_to,
        created_at: crate::clock::now(),
        browser: browser_hash(&secret),
    };
    let value = Bytes::from(serde_json::to_vec(&transaction)?);
    auth.store
        .put(
            &transaction_key(&state),
            value,
            0,
            auth.config.session.login_timeout + STORE_GRACE,
        )
        .await?;

    let oidc = &auth.idp.config;
    let mut url = metadata.authorization_endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.client_id)
        .append_pair("redirect_uri", &auth.redirect_uri())
        .append_pair("scope", &oidc.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut response = redirect(url.as_str());
    // Set again each time, so the cookie outlives the newest transaction.
    let sealed = auth.ring.seal(Purpose::Login, &auth.names.login, &secret);
    response.headers_mut().append(
        header::SET_COOKIE,
        auth.names.set_login(&sealed, auth.config.session.login_timeout),
    );
    Ok(response)
}
