//! ID token validation, numbered by the steps of OpenID Connect Core
//! §3.1.3.7. `jsonwebtoken` checks the signature, `exp`, `nbf`, `iss` and
//! `aud` when told to; `iat`, `nonce`, `azp`, `sub` and `at_hash` are checked
//! here (threat-model T22, T23).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::Digest;

/// Clock leeway for `exp`, `nbf` and `iat` (jsonwebtoken's default, T48).
pub const LEEWAY_SECS: u64 = 60;

/// Why an ID token is refused. Details go to logs only.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("malformed ID token header")]
    Header,
    #[error("algorithm {0:?} not allowed")]
    Algorithm(Algorithm),
    #[error("no signing key for the token's kid")]
    UnknownKey,
    #[error("key type does not fit the algorithm")]
    KeyMismatch,
    #[error("ID token rejected: {0}")]
    Invalid(String),
    #[error("ID token claim {0} is wrong or missing")]
    Claim(&'static str),
}

/// What a token must show to be accepted.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// `None` for a refreshed ID token, which carries no nonce requirement.
    pub nonce: Option<&'a str>,
    /// The access token issued alongside, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// Algorithms the provider advertises (empty: RS256, the spec default).
    pub provider_algs: &'a [String],
    pub now: u64,
}

/// Asymmetric algorithms only: `none` cannot even be parsed, and HS* (which
/// an attacker could sign with the public key as the secret) is never used.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Whether cloakroom takes ID tokens signed with `alg` (a JWA name).
pub fn is_allowed(alg: &str) -> bool {
    alg.parse::<Algorithm>().is_ok_and(|a| ALLOWED.contains(&a))
}

/// Reads the header's algorithm and key id, before any key is looked up.
/// A `typ` other than `JWT` (an access token `at+jwt`, a `logout+jwt`) is
/// not an ID token (ID-23). `jku`, `x5u` and `jwk` are never followed.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Header)?;
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(IdTokenError::Header);
    }
    Ok((header.alg, header.kid))
}

/// Validates `token` signed with `jwk` and returns its claims.
pub fn validate(token: &str, jwk: &Jwk, expected: &Expected<'_>) -> Result<Map<String, Value>, IdTokenError> {
    let (alg, _) = header(token)?;
    // 6, 7: the signature, by a key and algorithm we accept.
    let key = decoding_key(alg, jwk, expected.provider_algs)?;

    // 2. iss MUST exactly match; 3. aud MUST contain client_id;
    // 9. exp MUST be in the future (nbf honoured too). Signature: step 6.
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
    let claims = data.claims;

    // sub: a non-empty string (Core §2).
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(IdTokenError::Claim("sub"));
    }
    // 10. iat is required and not in the future beyond the leeway.
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(IdTokenError::Claim("iat"))?;
    if iat > expected.now + LEEWAY_SECS {
        return Err(IdTokenError::Claim("iat"));
    }
    // 3. a single audience: us. An extra, untrusted audience is refused
    //    (ID-05), so azp never has to choose between them.
    let only_us = match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected.client_id,
        Some(Value::Array(auds)) => auds.len() == 1 && auds[0].as_str() == Some(expected.client_id),
        _ => false,
    };
    if !only_us {
        return Err(IdTokenError::Claim("aud"));
    }
    // 5. azp, when present, is us.
    if claims
        .get("azp")
        .is_some_and(|azp| azp.as_str() != Some(expected.client_id))
    {
        return Err(IdTokenError::Claim("azp"));
    }
    // A logout token (or anything with `events`) is not an ID token (ID-23).
    if claims.contains_key("events") {
        return Err(IdTokenError::Claim("events"));
    }
    // ID-10: exp must be a plain number (jsonwebtoken already checked it is
    // in the future); a float or huge value is refused outright.
    if claims.get("exp").and_then(Value::as_u64).is_none() {
        return Err(IdTokenError::Claim("exp"));
    }
    // 11. nonce must equal the one sent in the authorization request.
    if let Some(nonce) = expected.nonce {
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(IdTokenError::Claim("nonce"));
        }
    }
    // Core §3.1.3.8: at_hash, when present, binds the access token.
    if let (Some(at_hash), Some(access_token)) = (claims.get("at_hash"), expected.access_token) {
        if at_hash.as_str() != Some(left_half_hash(alg, access_token).as_str()) {
            return Err(IdTokenError::Claim("at_hash"));
        }
    }
    Ok(claims)
}

/// The key to check a signature made with `alg`, from `jwk`: the
/// algorithm must be one we allow and the provider advertises, and the key
/// of its type. Shared with logout tokens, which are signed alike.
pub fn decoding_key(
    alg: Algorithm,
    jwk: &Jwk,
    provider_algs: &[String],
) -> Result<DecodingKey, IdTokenError> {
    // 7. the algorithm must be one we allow and the provider advertises.
    let advertised = if provider_algs.is_empty() {
        alg == Algorithm::RS256
    } else {
        provider_algs
            .iter()
            .any(|a| a.parse::<Algorithm>().is_ok_and(|a| a == alg))
    };
    if !ALLOWED.contains(&alg) || !advertised {
        return Err(IdTokenError::Algorithm(alg));
    }
    // 6. the key must be of the algorithm's type (no HS* with an RSA key)
    //    and, if it names an algorithm, that one.
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
        // Symmetric keys, and key types this version does not know.
        _ => false,
    };
    let named = jwk.common.key_algorithm.map(|k| format!("{k:?}"));
    if !fits || named.is_some_and(|n| n != format!("{alg:?}")) {
        return Err(IdTokenError::KeyMismatch);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::KeyMismatch)
}

/// base64url of the left half of the token's hash under the JWS algorithm's hash.
fn left_half_hash(alg: Algorithm, value: &str) -> String {
    let digest: Vec<u8> = match alg {
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => sha2::Sha384::digest(value).to_vec(),
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => sha2::Sha512::digest(value).to_vec(),
        _ => sha2::Sha256::digest(value).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_uses_the_left_half_of_the_algorithms_hash() {
        // OIDC Core §A.3 example: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(
            left_half_hash(Algorithm::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn id14_unsigned_tokens_do_not_even_parse() {
        // {"alg":"none"}.{"sub":"x"}.
        assert!(header("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").is_err());
    }
}
