//! The HTTP client for IdP calls: redirects off, bounded time and size.
//!
//! An IdP endpoint that answers with a redirect is refused rather than
//! followed, so a code, verifier, refresh token or client secret is never
//! re-sent to a host the metadata did not name (threat-model T21, LG-15).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;

use super::IdpError;

/// IdP answers larger than this are refused (T39).
const MAX_BODY: usize = 1 << 20;

/// Builds the IdP client. TLS is always verified.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider; use ring, as the
    // upstream connector does. A second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("cloakroom/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` and reads a JSON answer of at most [`MAX_BODY`] bytes.
/// Status and content type are checked before parsing; OAuth error bodies
/// become [`IdpError::Rejected`].
pub async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, IdpError> {
    let response = request
        .send()
        .await
        .map_err(|e| IdpError::Unreachable(Box::new(e)))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(IdpError::BadResponse("the IdP answered with a redirect"));
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(IdpError::Unreachable(format!("IdP answered {status}").into()));
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        // `application/json`, or a JSON subtype such as `application/jwk-set+json`.
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
    let body = read_capped(response).await?;
    if !is_json {
        return Err(IdpError::BadResponse("the IdP answer is not JSON"));
    }
    if status.is_client_error() {
        let oauth: super::OAuthError =
            serde_json::from_slice(&body).map_err(|_| IdpError::BadResponse("unreadable IdP error"))?;
        return Err(IdpError::Rejected(oauth));
    }
    if !status.is_success() {
        return Err(IdpError::BadResponse("unexpected IdP status"));
    }
    serde_json::from_slice(&body).map_err(|_| IdpError::BadResponse("unreadable IdP answer"))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, IdpError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| IdpError::Unreachable(Box::new(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(IdpError::BadResponse("the IdP answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
