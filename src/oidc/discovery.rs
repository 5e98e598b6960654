//! Provider metadata (OpenID Connect Discovery 1.0).
//!
//! The metadata's `issuer` must equal the configured issuer exactly (§4.3),
//! a trailing `/` included (IDP-01). S256 PKCE is always sent; metadata
//! that lists its methods must list S256, so an IdP that says it would
//! ignore `code_challenge` is never used (threat-model T15, LG-07).
//! Metadata that lists none (Entra ID) is accepted, with one line at start:
//! the field is optional (RFC 8414 §2), its absence says nothing either
//! way, and refusing it would shut out IdPs that do check S256.
//!
//! Some IdPs list `revocation_endpoint` only in their RFC 8414
//! authorization-server metadata; [`rfc8414_revocation_endpoint`] reads it
//! from there (LO-13).

use serde::Deserialize;
use url::Url;

use super::error::IdpError;
use super::http;
use crate::config::Issuer;

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
    pub userinfo_endpoint: Option<Url>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// `None` when the metadata does not say (Entra ID).
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9126 §5.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<Url>,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.1: the proof algorithms the IdP takes, if it says.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
}

/// Why the metadata cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("metadata issuer {found:?} differs from the configured issuer {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the provider lists code_challenge_methods_supported {listed:?}, without S256")]
    NoS256 { listed: Vec<String> },
    #[error("oidc.userinfo is true, but the IdP metadata names no userinfo_endpoint")]
    NoUserinfoEndpoint,
    #[error("oidc.par is off, but the IdP metadata says require_pushed_authorization_requests")]
    ParRequired,
    #[error("oidc.par is required, but the IdP metadata names no pushed_authorization_request_endpoint")]
    NoParEndpoint,
    #[error("oidc.dpop signs proofs ES256, but the IdP lists dpop_signing_alg_values_supported {listed:?}")]
    DpopWithoutEs256 { listed: Vec<String> },
    #[error(transparent)]
    Idp(#[from] IdpError),
}

/// Fetches and checks `{issuer}/.well-known/openid-configuration`.
pub async fn discover(client: &reqwest::Client, issuer: &Issuer) -> Result<Metadata, DiscoveryError> {
    let metadata: Metadata = http::json("discovery", client.get(issuer.discovery_url())).await?;
    check(metadata, issuer.as_str())
}

/// What cloakroom reads of RFC 8414 authorization-server metadata.
#[derive(Debug, Deserialize)]
struct ServerMetadata {
    issuer: String,
    #[serde(default)]
    revocation_endpoint: Option<Url>,
}

/// The `revocation_endpoint` of the issuer's RFC 8414 metadata, if it lists
/// one. Its `issuer` must match exactly too (RFC 8414 §3.3).
pub async fn rfc8414_revocation_endpoint(
    client: &reqwest::Client,
    issuer: &str,
) -> Result<Option<Url>, DiscoveryError> {
    let url = rfc8414_url(issuer).ok_or(IdpError::BadResponse("the issuer is not a URL"))?;
    let metadata: ServerMetadata = http::json("metadata", client.get(url)).await?;
    if metadata.issuer != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: issuer.into(),
            found: metadata.issuer,
        });
    }
    Ok(metadata.revocation_endpoint)
}

/// RFC 8414 §3.1: the well-known segment goes between the host and the
/// issuer's path, unlike OIDC Discovery's, which is appended.
fn rfc8414_url(issuer: &str) -> Option<Url> {
    let mut url = Url::parse(issuer).ok()?;
    let path = format!(
        "/.well-known/oauth-authorization-server{}",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    Some(url)
}

/// Whether `metadata` fits the configured `issuer`; `check --online` and
/// discovery judge it alike.
pub fn check(metadata: Metadata, issuer: &str) -> Result<Metadata, DiscoveryError> {
    // Exact string comparison: no normalisation of a trailing slash or case.
    if metadata.issuer != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: issuer.into(),
            found: metadata.issuer,
        });
    }
    if let Some(listed) = &metadata.code_challenge_methods_supported {
        if !listed.iter().any(|m| m == "S256") {
            return Err(DiscoveryError::NoS256 {
                listed: listed.clone(),
            });
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str, pkce: &[&str]) -> Metadata {
        let mut metadata = without_pkce(issuer);
        metadata.code_challenge_methods_supported = Some(pkce.iter().map(|m| m.to_string()).collect());
        metadata
    }

    fn without_pkce(issuer: &str) -> Metadata {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
        }))
        .unwrap()
    }

    #[test]
    fn idp01_a_trailing_slash_is_part_of_the_issuer() {
        let slash = check(
            metadata("https://t.auth0.com/", &["S256"]),
            "https://t.auth0.com/",
        );
        assert!(slash.is_ok());
        let Err(e) = check(metadata("https://t.auth0.com", &["S256"]), "https://t.auth0.com/") else {
            panic!("a missing slash must be refused")
        };
        assert_eq!(
            e.to_string(),
            "metadata issuer \"https://t.auth0.com\" differs from the configured issuer \"https://t.auth0.com/\""
        );
    }

    #[test]
    fn idp01_metadata_without_pkce_methods_is_accepted_but_a_list_without_s256_is_not() {
        let entra = "https://login.microsoftonline.com/tenant/v2.0";
        let unlisted = check(without_pkce(entra), entra).unwrap();
        assert!(unlisted.code_challenge_methods_supported.is_none());
        for listed in [&["plain"][..], &[]] {
            assert!(matches!(
                check(metadata(entra, listed), entra),
                Err(DiscoveryError::NoS256 { .. })
            ));
        }
    }

    #[test]
    fn lo13_rfc8414_metadata_sits_between_host_and_issuer_path() {
        let url = |issuer| rfc8414_url(issuer).unwrap().to_string();
        assert_eq!(
            url("https://idp.example.com"),
            "https://idp.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            url("https://sso.example.com/realms/main"),
            "https://sso.example.com/.well-known/oauth-authorization-server/realms/main"
        );
        assert_eq!(
            url("http://127.0.0.1:8081/tenant/"),
            "http://127.0.0.1:8081/.well-known/oauth-authorization-server/tenant"
        );
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
        assert!(matches!(plain, Err(DiscoveryError::NoS256 { .. })));
    }
}
