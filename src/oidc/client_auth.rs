//! How cloakroom proves it is the client at the token, revocation and
//! PAR endpoints: a client secret (RFC 6749 §2.3.1, Basic or in the form)
//! or a signed JWT (`private_key_jwt`, RFC 7523 §2.2, OIDC Core §9).
//!
//! A client assertion is made for one call and never reused: `jti` is
//! fresh, it lives [`ASSERTION_LIFETIME`], and the IdP refuses a second
//! use. Like the secret, it is a credential: it goes only in the form
//! body, which no span or log line carries.

use serde::Serialize;

use crate::clock::Clock;
use crate::config::{ClientKey, OidcConfig, TokenEndpointAuth};
use crate::random;

use super::error::IdpError;

/// How long a client assertion is valid: long enough for one call and
/// modest clock skew, short enough that a copy is soon worthless.
const ASSERTION_LIFETIME: u64 = 60;

/// RFC 7523 §2.2.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// Adds client authentication to `request` and sends `form` as its body.
///
/// `audience` is the token endpoint, whichever endpoint is called: OIDC
/// Core §9 says the `aud` SHOULD be the token endpoint's URL, RFC 9126 §2
/// makes the PAR endpoint accept it too, Entra ID and Okta document it as
/// the value they expect, and oidc-provider accepts it beside the issuer
/// and the endpoint called. The issuer alone (the newer RFC 7523bis
/// rule) is refused by IdPs that follow OIDC Core's wording.
pub fn authenticate(
    oidc: &OidcConfig,
    clock: &Clock,
    audience: &str,
    request: reqwest::RequestBuilder,
    form: &[(&str, &str)],
) -> Result<reqwest::RequestBuilder, IdpError> {
    let id = oidc.client_id.as_str();
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    // A pushed authorization request names the client already; a second
    // `client_id` would be a repeated parameter, which is refused.
    let names_client = form.iter().any(|(k, _)| *k == "client_id");
    let secret = || {
        oidc.client_secret
            .as_ref()
            .map(|s| s.expose().as_str())
            .ok_or(IdpError::BadResponse("no client_secret configured"))
    };
    let request = match oidc.token_endpoint_auth {
        // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
        TokenEndpointAuth::ClientSecretBasic => {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request.basic_auth(enc(id), Some(enc(secret()?)))
        }
        TokenEndpointAuth::ClientSecretPost => {
            if !names_client {
                fields.push(("client_id", id));
            }
            fields.push(("client_secret", secret()?));
            request
        }
        TokenEndpointAuth::PrivateKeyJwt => {
            let key = oidc
                .client_key
                .as_ref()
                .ok_or(IdpError::BadResponse("no client_key configured"))?;
            let assertion = sign(key, id, audience, clock.now())?;
            let mut fields = fields;
            if !names_client {
                fields.push(("client_id", id));
            }
            fields.push(("client_assertion_type", JWT_BEARER));
            fields.push(("client_assertion", &assertion));
            return Ok(request.form(&fields));
        }
    };
    Ok(request.form(&fields))
}

/// A client assertion: `iss` and `sub` the client, `aud` the IdP.
fn sign(key: &ClientKey, client_id: &str, audience: &str, now: u64) -> Result<String, IdpError> {
    let mut header = jsonwebtoken::Header::new(key.alg().algorithm());
    header.kid = Some(key.kid().to_owned());
    let claims = Assertion {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: random::token(32),
        iat: now,
        exp: now + ASSERTION_LIFETIME,
    };
    jsonwebtoken::encode(&header, &claims, key.encoding_key())
        .map_err(|_| IdpError::BadResponse("the client assertion could not be signed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{DecodingKey, Validation};

    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9cLYjlz9mfoMEqeG
0bIAvBzfqU3FqJrcRf5kF0UZTSahRANCAARn1+TAa6rpl1Lg/iUh6PBxcT2332ZN
JThdhYPy6+SvdiSV0dAf4MKe48ZJyMei9/Q7cCD8JNM0dfOJqIMusc0G
-----END PRIVATE KEY-----";

    #[test]
    fn an_assertion_names_the_client_and_the_audience_and_lives_a_minute() {
        let key = ClientKey::new(EC_KEY.to_owned(), None, None).unwrap();
        let jwt = sign(&key, "cloakroom", "https://idp.example.com/token", 1_000).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        let public = Jwk::from_encoding_key(key.encoding_key(), jsonwebtoken::Algorithm::ES256).unwrap();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://idp.example.com/token"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_jwk(&public).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["iss"], "cloakroom");
        assert_eq!(claims["sub"], "cloakroom");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_060);
        let again = sign(&key, "cloakroom", "https://idp.example.com/token", 1_000).unwrap();
        let jti = |jwt: &str| {
            jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(jwt)
                .unwrap()
                .claims["jti"]
                .clone()
        };
        assert_ne!(jti(&jwt), jti(&again), "a fresh jti per call");
    }
}
