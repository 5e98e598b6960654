//! Provider metadata (OpenID Connect Discovery 1.0).
//!
//! The metadata's `issuer` must equal the configured issuer exactly (§4.3),
//! and S256 PKCE must be offered: an IdP that would silently ignore
//! `code_challenge` is never used (threat-model T15, LG-07).

use serde::Deserialize;
use url::Url;

use super::{http, IdpError};

/// What cloakroom uses of the provider's metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub end_session_endpoint: Option<Url>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Why the metadata cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("metadata issuer {found:?} differs from the configured issuer {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the provider does not offer S256 PKCE")]
    NoS256,
    #[error(transparent)]
    Idp(#[from] IdpError),
}

/// Fetches and checks `{issuer}/.well-known/openid-configuration`.
pub async fn discover(client: &reqwest::Client, issuer: &str) -> Result<Metadata, DiscoveryError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let metadata: Metadata = http::json(client.get(url)).await?;
    check(metadata, issuer)
}

fn check(metadata: Metadata, issuer: &str) -> Result<Metadata, DiscoveryError> {
    // Exact string comparison: no normalisation of a trailing slash or case.
    if metadata.issuer != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: issuer.into(),
            found: metadata.issuer,
        });
    }
    if !metadata
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(DiscoveryError::NoS256);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str, pkce: &[&str]) -> Metadata {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "code_challenge_methods_supported": pkce,
        }))
        .unwrap()
    }

    #[test]
    fn lg07_issuer_must_match_exactly_and_s256_is_required() {
        let ok = check(
            metadata("https://idp.example.com", &["plain", "S256"]),
            "https://idp.example.com",
        );
        assert!(ok.is_ok());
        let slash = check(
            metadata("https://idp.example.com/", &["S256"]),
            "https://idp.example.com",
        );
        assert!(matches!(slash, Err(DiscoveryError::IssuerMismatch { .. })));
        let plain = check(
            metadata("https://idp.example.com", &["plain"]),
            "https://idp.example.com",
        );
        assert!(matches!(plain, Err(DiscoveryError::NoS256)));
    }
}
