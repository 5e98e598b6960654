//! A resource server that takes DPoP-bound tokens (RFC 9449 §7.1), as a
//! real API checks them, for the echo upstream ([`super::Upstream::verify_dpop`]):
//!
//! - `Authorization: DPoP <token>`, the token a JWT signed by a key of the
//!   IdP's JWKS, for this API's audience, with a `cnf.jkt`;
//! - one `DPoP` header, a JWT with `typ: dpop+jwt`, `alg: ES256` and a
//!   public `jwk` (no private part) in its header, signed by that key,
//!   whose RFC 7638 thumbprint is the token's `cnf.jkt`;
//! - `htm` the request's method, `htu` this API's URL as called (no
//!   query), `ath` the token's hash, `iat` within a minute of the clock,
//!   a `jti` never seen before (a replayed proof is refused), and, once
//!   the API asks for nonces, the current one.
//!
//! Refusals are 401 with `WWW-Authenticate: DPoP error="…"`; a missing or
//! stale nonce is `use_dpop_nonce`, with the nonce in `DPoP-Nonce` (§9).
//!
//! And cloakroom's side: a fresh key in a file ([`Key`]), and the
//! `oidc.dpop` entry naming keys ([`dpop`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Digest;

use super::upstream::{text, BoxBody};

/// A fresh P-256 key in a PEM file, and its thumbprint.
pub struct Key {
    file: tempfile::NamedTempFile,
    pub jkt: String,
}

impl Key {
    pub fn new() -> Self {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let jkt = cloakroom::config::DpopKey::new(pem.clone(), None)
            .unwrap()
            .jkt()
            .to_owned();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), pem).unwrap();
        Self { file, jkt }
    }

    /// This key as an entry of `oidc.dpop.keys`, named `id`.
    pub fn entry(&self, id: &str) -> String {
        format!("{{id: {id}, key_file: '{}'}}", self.file.path().display())
    }
}

/// The `oidc` entry that binds tokens to `keys` (id, key), the first
/// current.
pub fn dpop(keys: &[(&str, &Key)]) -> String {
    let entries: Vec<String> = keys.iter().map(|(id, key)| key.entry(id)).collect();
    format!("dpop: {{keys: [{}]}}", entries.join(", "))
}

/// How far a proof's `iat` may be from the API's clock.
const IAT_WINDOW: u64 = 60;

pub struct DpopApi {
    jwks: JwkSet,
    audience: String,
    clock: cloakroom::Clock,
    /// `http://127.0.0.1:PORT`: what `htu` must start with.
    origin: String,
    /// The nonce proofs must carry, once the API asks for them.
    nonce: Mutex<Option<String>>,
    jtis: Mutex<HashSet<String>>,
    /// Every proof accepted, in order: `{jkt, claims}`, the thumbprint of
    /// the key that signed it and its claims.
    accepted: Mutex<Vec<Value>>,
    /// Why each refused request was refused, in order.
    refused: Mutex<Vec<String>>,
}

impl DpopApi {
    pub fn new(jwks: JwkSet, audience: &str, clock: cloakroom::Clock, addr: SocketAddr) -> Self {
        Self {
            jwks,
            audience: audience.to_owned(),
            clock,
            origin: format!("http://{addr}"),
            nonce: Mutex::new(None),
            jtis: Mutex::default(),
            accepted: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    /// From now on proofs must carry `nonce` (a new one replaces the old).
    pub fn require_nonce(&self, nonce: &str) {
        *self.nonce.lock().unwrap() = Some(nonce.to_owned());
    }

    pub fn nonce(&self) -> Option<String> {
        self.nonce.lock().unwrap().clone()
    }

    /// Every proof accepted so far: `{jkt, claims}`.
    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }

    /// Why each refused request was refused.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }

    /// The 401 for a request that does not pass, or `None` when it does.
    pub fn refuse(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response<BoxBody>> {
        let (error, why) = match self.check(method, uri, headers) {
            Ok(claims) => {
                self.accepted.lock().unwrap().push(claims);
                return None;
            }
            Err(refusal) => refusal,
        };
        self.refused.lock().unwrap().push(why.clone());
        let body = serde_json::json!({"error": error, "error_description": why});
        let mut answer = text(StatusCode::UNAUTHORIZED, body.to_string());
        let challenge = format!("DPoP algs=\"ES256\", error=\"{error}\"");
        answer
            .headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
        if let Some(nonce) = self.nonce() {
            answer.headers_mut().insert("dpop-nonce", nonce.parse().unwrap());
        }
        Some(answer)
    }

    /// The proof's claims when the request passes, else the error code
    /// and why.
    fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Value, (&'static str, String)> {
        let invalid_token = |why: String| ("invalid_token", why);
        let invalid_proof = |why: String| ("invalid_dpop_proof", why);
        let authorizations: Vec<_> = headers.get_all("authorization").iter().collect();
        let token = match authorizations.as_slice() {
            [one] => one
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("DPoP "))
                .ok_or_else(|| invalid_token(format!("not the DPoP scheme: {:?}", one.to_str())))?,
            _ => return Err(invalid_token("one Authorization header expected".into())),
        };
        let token_claims = self.verify_token(token).map_err(invalid_token)?;
        let jkt = token_claims["cnf"]["jkt"]
            .as_str()
            .ok_or_else(|| invalid_token("the token is not bound (no cnf.jkt)".into()))?;

        let proofs: Vec<_> = headers.get_all("dpop").iter().collect();
        let [proof] = proofs.as_slice() else {
            return Err(invalid_proof(format!("{} DPoP headers", proofs.len())));
        };
        let proof = proof.to_str().map_err(|e| invalid_proof(e.to_string()))?;
        let (jwk, claims) = verify_proof(proof).map_err(invalid_proof)?;
        let thumbprint = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| invalid_proof(e.to_string()))?;
        if thumbprint != jkt {
            return Err(invalid_proof(format!(
                "the proof's key {thumbprint} is not the token's cnf.jkt {jkt}"
            )));
        }
        if claims["htm"] != method.as_str() {
            return Err(invalid_proof(format!("htm {} for a {method}", claims["htm"])));
        }
        let htu = format!("{}{}", self.origin, uri.path());
        if claims["htu"] != htu.as_str() {
            return Err(invalid_proof(format!("htu {} for {htu}", claims["htu"])));
        }
        let ath = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()));
        if claims["ath"] != ath.as_str() {
            return Err(invalid_proof("ath is not the token's hash".into()));
        }
        let iat = claims["iat"]
            .as_u64()
            .ok_or_else(|| invalid_proof("no iat".into()))?;
        if iat.abs_diff(self.clock.now()) > IAT_WINDOW {
            return Err(invalid_proof(format!("iat {iat} is not recent")));
        }
        if let Some(nonce) = self.nonce() {
            if claims["nonce"] != nonce.as_str() {
                return Err((
                    "use_dpop_nonce",
                    format!("nonce {} where {nonce} is current", claims["nonce"]),
                ));
            }
        }
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty())
            .ok_or_else(|| invalid_proof("no jti".into()))?;
        // Last: a proof refused for another reason has not spent its jti.
        if !self.jtis.lock().unwrap().insert(jti.to_owned()) {
            return Err(invalid_proof(format!("jti {jti} replayed")));
        }
        Ok(serde_json::json!({"jkt": thumbprint, "claims": claims}))
    }

    /// The access token's claims, verified against the IdP's keys and
    /// this API's audience.
    fn verify_token(&self, token: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| self.jwks.find(kid))
            .ok_or("unknown key")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.audience]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|t| t.claims)
            .map_err(|e| e.to_string())
    }
}

/// A proof's public key and claims, once its header is what RFC 9449
/// §4.2 asks and its signature checks against the key it carries.
fn verify_proof(proof: &str) -> Result<(Jwk, Value), String> {
    let raw_header = proof
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .ok_or("the proof's header is not JSON")?;
    if raw_header["typ"] != "dpop+jwt" || raw_header["alg"] != "ES256" {
        return Err(format!("typ/alg {} {}", raw_header["typ"], raw_header["alg"]));
    }
    if raw_header["jwk"].get("d").is_some() {
        return Err("the proof carries a private key".into());
    }
    let jwk: Jwk = serde_json::from_value(raw_header["jwk"].clone()).map_err(|e| e.to_string())?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map_err(|e| format!("the proof's signature: {e}"))?
        .claims;
    Ok((jwk, claims))
}
