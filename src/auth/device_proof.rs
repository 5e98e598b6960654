//! The DBSC wire format: the proof a device signs (a `dbsc+jwt`, W3C DBSC
//! §"DBSC Proof JWT Syntax") and the structured headers (RFC 9651) it and
//! the challenges travel in.
//!
//! A proof's key is the browser's: at registration the one in the JWT's
//! header (`jwk`), afterwards the one the session kept. Its freshness is
//! the challenge's (`jti`): cloakroom's own, sealed with an expiry, spent
//! once (`session::device`). Chromium 156 signs `jti` alone (`aud` behind
//! a feature); neither `aud` nor `iat` is needed, and neither is read.

use http::{HeaderMap, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sfv::{BareItem, Item, KeyRef, ListSerializer, Parser, StringRef, TokenRef};

/// The algorithms offered, by name: the two the specification names
/// besides `none`, which would bind nothing.
pub const ALGORITHMS: [(Algorithm, &str); 2] = [(Algorithm::ES256, "ES256"), (Algorithm::RS256, "RS256")];

/// A proof checked at registration: the key it was signed with, and the
/// challenge it signs.
#[derive(Debug)]
pub struct Registration {
    pub alg: &'static str,
    pub jwk: serde_json::Value,
    pub challenge: String,
}

/// Why a proof is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("no Secure-Session-Response header, or not one string")]
    Missing,
    #[error("not a dbsc+jwt")]
    Malformed,
    #[error("algorithm not offered")]
    Algorithm,
    #[error("no usable public key")]
    Key,
    #[error("the signature does not verify")]
    Signature,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
}

/// The registration proof of `headers`: signed by the key in its header.
pub fn registration(headers: &HeaderMap) -> Result<Registration, ProofError> {
    let jwt = response_jwt(headers)?;
    let header = dbsc_header(&jwt)?;
    let jwk = header.jwk.ok_or(ProofError::Key)?;
    let challenge = verify(&jwt, header.alg, &jwk)?;
    let jwk = public_only(&jwk)?;
    Ok(Registration {
        alg: name(header.alg),
        jwk,
        challenge,
    })
}

/// The refresh proof of `headers`, signed by the session's key (`alg`,
/// `jwk` as registered); returns the challenge it signs.
pub fn refresh(headers: &HeaderMap, alg: &str, jwk: &serde_json::Value) -> Result<String, ProofError> {
    let jwt = response_jwt(headers)?;
    let header = dbsc_header(&jwt)?;
    if name(header.alg) != alg {
        return Err(ProofError::Algorithm);
    }
    let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| ProofError::Key)?;
    verify(&jwt, header.alg, &jwk)
}

/// `Sec-Secure-Session-Id`: the DBSC session the browser refreshes.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    string_item(headers.get("sec-secure-session-id")?)
}

/// `Secure-Session-Registration` offering to bind a session: `path` to
/// register at, and the challenge to sign.
pub fn registration_header(path: &str, challenge: &str) -> Option<HeaderValue> {
    let mut list = ListSerializer::new();
    {
        let mut algorithms = list.inner_list();
        for (_, alg) in ALGORITHMS {
            algorithms.bare_item(TokenRef::from_str(alg).ok()?);
        }
        algorithms
            .finish()
            .parameter(KeyRef::constant("path"), StringRef::from_str(path).ok()?)
            .parameter(
                KeyRef::constant("challenge"),
                StringRef::from_str(challenge).ok()?,
            );
    }
    HeaderValue::from_str(&list.finish()?).ok()
}

/// `Secure-Session-Challenge`: `challenge`, for the session `id`.
pub fn challenge_header(challenge: &str, id: &str) -> Option<HeaderValue> {
    let mut list = ListSerializer::new();
    list.bare_item(StringRef::from_str(challenge).ok()?)
        .parameter(KeyRef::constant("id"), StringRef::from_str(id).ok()?);
    HeaderValue::from_str(&list.finish()?).ok()
}

/// `Secure-Session-Response`: one string (or, as Chromium sends it,
/// bare), the JWT.
fn response_jwt(headers: &HeaderMap) -> Result<String, ProofError> {
    let mut values = headers.get_all("secure-session-response").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ProofError::Missing);
    };
    string_item(value).ok_or(ProofError::Missing)
}

/// One sf-string, as the draft has it; or the bare value, as Chromium
/// sends both `Sec-Secure-Session-Id` and `Secure-Session-Response`.
fn string_item(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    if text.starts_with('"') {
        let item: Item = Parser::new(text).parse().ok()?;
        return match item.bare_item {
            BareItem::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        };
    }
    let bare = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b';');
    bare.then(|| text.to_owned())
}

/// The JWT's header, if it is a DBSC proof with an offered algorithm.
fn dbsc_header(jwt: &str) -> Result<jsonwebtoken::Header, ProofError> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| ProofError::Malformed)?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dbsc+jwt"))
    {
        return Err(ProofError::Malformed);
    }
    if name(header.alg).is_empty() {
        return Err(ProofError::Algorithm);
    }
    Ok(header)
}

/// An offered algorithm's name; empty for any other.
fn name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find_map(|(a, name)| (*a == alg).then_some(*name))
        .unwrap_or("")
}

/// Verifies `jwt`'s signature with `jwk` for `alg`; its `jti`.
fn verify(jwt: &str, alg: Algorithm, jwk: &Jwk) -> Result<String, ProofError> {
    let key = DecodingKey::from_jwk(jwk).map_err(|_| ProofError::Key)?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => ProofError::Signature,
        jsonwebtoken::errors::ErrorKind::Json(_) => ProofError::Malformed,
        _ => ProofError::Key,
    })?;
    Ok(claims.claims.jti)
}

/// The public members of the key, as the record keeps it: a JWK that
/// carries a private member is no browser's.
fn public_only(jwk: &Jwk) -> Result<serde_json::Value, ProofError> {
    let value = serde_json::to_value(jwk).map_err(|_| ProofError::Key)?;
    let private = ["d", "p", "q", "dp", "dq", "qi", "k"];
    if private.iter().any(|m| value.get(m).is_some()) {
        return Err(ProofError::Key);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_and_the_challenge_are_structured_fields() {
        assert_eq!(
            registration_header("/auth/device/register", "c-1").unwrap(),
            "(ES256 RS256);path=\"/auth/device/register\";challenge=\"c-1\""
        );
        assert_eq!(challenge_header("c-2", "s1").unwrap(), "\"c-2\";id=\"s1\"");
    }

    #[test]
    fn a_session_id_is_one_string_or_token() {
        let at = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("sec-secure-session-id", HeaderValue::from_str(v).unwrap());
            session_id(&h)
        };
        assert_eq!(at("\"abc\"").as_deref(), Some("abc"));
        // Chromium sends it bare, whatever its first character.
        assert_eq!(at("abc").as_deref(), Some("abc"));
        assert_eq!(at("5-_x").as_deref(), Some("5-_x"));
        assert_eq!(at("\"a\", \"b\""), None);
        assert_eq!(at("a, b"), None);
        assert_eq!(at("\"a\";x=1").as_deref(), Some("a"), "parameters are ignored");
    }

    #[test]
    fn a_response_that_is_no_dbsc_jwt_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(registration(&h).err(), Some(ProofError::Missing));
        h.insert("secure-session-response", HeaderValue::from_static("\"a.b.c\""));
        assert_eq!(registration(&h).err(), Some(ProofError::Malformed));
        h.append("secure-session-response", HeaderValue::from_static("\"a.b.c\""));
        assert_eq!(registration(&h).err(), Some(ProofError::Missing), "twice");
    }
}
