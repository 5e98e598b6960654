//! A token endpoint answer, whatever the grant, and how long its access
//! token lives.

use serde::Deserialize;

use crate::secret::{AccessToken, IdToken, RefreshToken};

/// A token endpoint answer. Tokens are secrets: they never print.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    #[serde(default)]
    pub id_token: Option<IdToken>,
    /// What a token exchange issued (RFC 8693 §2.2.1).
    #[serde(default)]
    pub issued_token_type: Option<String>,
    /// The DPoP key the access token is bound to (its thumbprint), set by
    /// the call that obtained it; `None` for a bearer token.
    #[serde(skip)]
    pub jkt: Option<String>,
}

/// The access token lifetime assumed when an answer says nothing of it.
const DEFAULT_ACCESS_TOKEN_LIFETIME: u64 = 300;

impl TokenResponse {
    /// Seconds the access token lives: `expires_in`, else the `exp` of a JWT
    /// access token, else a short default; never "forever" (LG-17).
    pub fn access_token_lifetime(&self, now: u64) -> u64 {
        self.expires_in
            .or_else(|| jwt_exp(self.access_token.expose()).map(|exp| exp.saturating_sub(now)))
            .unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME)
    }
}

/// The `exp` claim of a JWT, read without checking it: only the lifetime
/// is taken from it, and the upstream verifies the token itself.
fn jwt_exp(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&json)
        .ok()?
        .get("exp")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(access_token: &str, expires_in: Option<u64>) -> TokenResponse {
        TokenResponse {
            access_token: AccessToken::new(access_token.to_owned()),
            token_type: "Bearer".into(),
            expires_in,
            refresh_token: None,
            id_token: None,
            issued_token_type: None,
            jkt: None,
        }
    }

    #[test]
    fn lg17_lifetime_from_expires_in_then_jwt_exp_then_a_default() {
        // Payload {"exp":1000}.
        let jwt = "eyJhbGciOiJub25lIn0.eyJleHAiOjEwMDB9.";
        assert_eq!(answer(jwt, Some(60)).access_token_lifetime(900), 60);
        assert_eq!(answer(jwt, None).access_token_lifetime(900), 100);
        assert_eq!(
            answer(jwt, None).access_token_lifetime(2000),
            0,
            "already expired"
        );
        assert_eq!(answer("opaque", None).access_token_lifetime(900), 300);
    }
}
