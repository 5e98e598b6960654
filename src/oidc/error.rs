//! Why an IdP call failed: the OAuth error an IdP answers, and every
//! other way a call goes wrong.

use serde::Deserialize;

use crate::secret::RefreshToken;

/// An OAuth error response (RFC 6749 §5.2). The description is kept for
/// logs only; it never reaches a browser.
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Why an IdP call failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("IdP refused: {}", .0.error)]
    Rejected(OAuthError),
    #[error("IdP unreachable")]
    Unreachable(#[source] crate::error::BoxError),
    #[error("IdP answer unusable: {0}")]
    BadResponse(&'static str),
    /// cloakroom holds back a call to spare the IdP (a bound reached).
    #[error("IdP call held back: {0}")]
    Busy(&'static str),
    /// A token request carried a DPoP proof and the IdP answered with a
    /// token not bound to the key (`token_type` Bearer): refused, never
    /// used as a bearer token in its place. The refresh token of that
    /// answer is kept here, for a session whose grant rotated with it.
    #[error(
        "the IdP answered token_type {token_type:?} to a token request with a DPoP proof: \
         it did not bind the token to cloakroom's key (oidc.dpop); \
         does the IdP support DPoP for this client?"
    )]
    Unbound {
        token_type: String,
        refresh_token: Option<RefreshToken>,
    },
}

impl crate::metrics::GrantFailure for IdpError {
    fn outcome(&self) -> crate::metrics::GrantOutcome {
        use crate::metrics::GrantOutcome;
        match self {
            Self::Rejected(_) => GrantOutcome::Refused,
            Self::Unreachable(_) | Self::Busy(_) => GrantOutcome::Unavailable,
            Self::BadResponse(_) | Self::Unbound { .. } => GrantOutcome::BadResponse,
        }
    }
}
