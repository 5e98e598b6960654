//! Logout token validation, numbered by the steps of OpenID Connect
//! Back-Channel Logout 1.0 §2.6 (threat-model T33, LO-07 to LO-09).
//!
//! A logout token is signed like an ID token, by the same keys, so the
//! signature and algorithm rules are the ID token's
//! ([`super::id_token::decoding_key`]). Time claims are judged by
//! cloakroom's clock, not the system's. The `jti` replay check (step 7)
//! needs the session store and is the caller's.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::id_token::{decoding_key, IdTokenError, LEEWAY_SECS};

/// The `events` member that makes a JWT a logout token (BCL §2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old (`iat`) a logout token may be: the IdP sends it as the logout
/// happens, so a minute or two covers clock skew and a slow delivery.
pub const MAX_AGE_SECS: u64 = 300;

/// How long a seen `jti` must be remembered: as long as its token could
/// still be accepted.
pub const REPLAY_WINDOW_SECS: u64 = MAX_AGE_SECS + 2 * LEEWAY_SECS;

/// Why a logout token is refused. Details go to logs only.
#[derive(Debug, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("malformed logout token header")]
    Header,
    #[error("logout token typ is not logout+jwt")]
    Type,
    #[error(transparent)]
    Key(#[from] IdTokenError),
    #[error("logout token rejected: {0}")]
    Invalid(String),
    #[error("logout token claim {0} is wrong or missing")]
    Claim(&'static str),
}

/// What a logout token must show to be accepted.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Algorithms the provider advertises for ID tokens (empty: RS256).
    pub provider_algs: &'a [String],
    pub now: u64,
}

/// What an accepted logout token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub iss: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
}

/// Reads the header's algorithm and key id, before any key is looked up.
/// A `typ`, when present, must say `logout+jwt` (BCL §2.4 explicit typing):
/// an ID token or an access token is not a logout token.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), LogoutTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| LogoutTokenError::Header)?;
    if let Some(typ) = header.typ.as_deref() {
        let typ = typ.to_ascii_lowercase();
        if typ != "logout+jwt" && typ != "application/logout+jwt" {
            return Err(LogoutTokenError::Type);
        }
    }
    Ok((header.alg, header.kid))
}

/// Validates `token` signed with `jwk`, per BCL §2.6.
pub fn validate(token: &str, jwk: &Jwk, expected: &Expected<'_>) -> Result<Logout, LogoutTokenError> {
    // 1. An encrypted token (five parts) is not parsed: cloakroom registers
    //    no encryption key, so an IdP has none to encrypt with.
    let (alg, _) = header(token)?;
    // 2. The signature, as for an ID token (Core §3.1.3.7 steps 6 to 8).
    let key = decoding_key(alg, jwk, expected.provider_algs)?;
    // 3. iss, aud as for an ID token; time claims below, by our clock.
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| LogoutTokenError::Invalid(e.to_string()))?
        .claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    // aud contains client_id (one audience, or several with us among them).
    let for_us = match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected.client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected.client_id)),
        _ => false,
    };
    if !for_us {
        return Err(LogoutTokenError::Claim("aud"));
    }
    // 3. iat is required, recent, and not in the future (LO-08).
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(LogoutTokenError::Claim("iat"))?;
    if iat > expected.now + LEEWAY_SECS || iat + MAX_AGE_SECS + LEEWAY_SECS < expected.now {
        return Err(LogoutTokenError::Claim("iat"));
    }
    // exp, when present, is a number in the future.
    if let Some(exp) = claims.get("exp") {
        match exp.as_u64() {
            Some(exp) if exp + LEEWAY_SECS > expected.now => {}
            _ => return Err(LogoutTokenError::Claim("exp")),
        }
    }
    // 4. sub or sid, or both, as non-empty strings (LO-09).
    let (sub, sid) = (text("sub"), text("sid"));
    if claims.get("sub").is_some() && sub.is_none() {
        return Err(LogoutTokenError::Claim("sub"));
    }
    if claims.get("sid").is_some() && sid.is_none() {
        return Err(LogoutTokenError::Claim("sid"));
    }
    if sub.is_none() && sid.is_none() {
        return Err(LogoutTokenError::Claim("sub or sid"));
    }
    // 5. events holds the back-channel logout member, a JSON object.
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(LogoutTokenError::Claim("events"));
    }
    // 6. No nonce: a logout token is not an ID token (LO-07).
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::Claim("nonce"));
    }
    // 7. jti, for the caller's replay check (LO-08).
    let jti = text("jti").ok_or(LogoutTokenError::Claim("jti"))?;
    Ok(Logout {
        iss: text("iss").ok_or(LogoutTokenError::Claim("iss"))?.to_owned(),
        sub: sub.map(str::to_owned),
        sid: sid.map(str::to_owned),
        jti: jti.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo07_an_id_token_type_is_not_a_logout_token() {
        // {"alg":"ES256","typ":"JWT"}.{}.
        let id_token = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln";
        assert!(matches!(header(id_token), Err(LogoutTokenError::Type)));
        // {"alg":"ES256","typ":"logout+jwt"}.{}.
        let logout = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImxvZ291dCtqd3QifQ.e30.c2ln";
        assert_eq!(header(logout).unwrap().0, Algorithm::ES256);
        // {"alg":"none"}.{}.
        assert!(header("eyJhbGciOiJub25lIn0.e30.").is_err());
    }
}
