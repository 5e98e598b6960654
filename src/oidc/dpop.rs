//! DPoP proofs (RFC 9449): how cloakroom shows it holds the key its tokens
//! are bound to, at the IdP and at the APIs (`oidc.dpop`).
//!
//! With `oidc.dpop`, every call to the token endpoint carries a proof made
//! with the ring's current key ([`crate::config::DpopConfig`]), so the IdP
//! binds what it issues to that key (`token_type: DPoP`, `cnf.jkt`). A
//! bound token is sent as `Authorization: DPoP <token>`, each time with a
//! fresh proof for that one request: its method (`htm`), the URL actually
//! called without query or fragment (`htu`), the time (`iat`), a unique
//! `jti` and the token's hash (`ath`). A copy of the token is useless
//! without the key, and a copy of a proof is good for one request to one
//! URL, once.
//!
//! Nonces (§8, §9): a server may ask that proofs carry a nonce it chose,
//! by answering `use_dpop_nonce` with a `DPoP-Nonce` header, and may send
//! the next nonce on any answer. The IdP's latest nonce is kept for the
//! next proof sent to it, and a token request it refused for want of one
//! is sent once more with it (the IdP refused it before looking at the
//! grant, so nothing was spent). Each API's latest nonce is kept by its
//! origin and used from the next call (see `upstream::forward` for which
//! calls are sent again).
//!
//! Signing: ES256 with aws-lc-rs's `EcdsaKeyPair`, parsed once with the
//! config. Of the sound P-256 signers already in the tree, aws-lc-rs and
//! ring sign in the same time (within 10 % either way, `cargo bench
//! --bench dpop`), and jsonwebtoken's `encode` takes 1.6 to 1.9 times as
//! long, as it parses the key on every call. aws-lc-rs is the one the JWT
//! checks already link (jsonwebtoken's backend), and it reads both PEM
//! forms (PKCS#8, SEC1) and a JWK's `d`, `x`, `y` as they are. A proof's
//! header is the same for every proof of a key, so it is encoded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::Digest;

use super::discovery::{DiscoveryError, Metadata};
use crate::clock::Clock;
use crate::config::{DpopConfig, DpopKey, OidcConfig};
use crate::random;
use crate::secret::AccessToken;

/// The request header a proof travels in (RFC 9449 §4.1).
pub static DPOP: HeaderName = HeaderName::from_static("dpop");
/// The answer header a server's next nonce travels in (§8.1).
pub static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Nonces longer than this are not kept: a server's nonce is an opaque
/// value of a few dozen characters, and a proof carries it on every call.
const MAX_NONCE_LEN: usize = 512;

/// Makes proofs with the configured keys, and keeps the servers' nonces.
/// One per [`super::Idp`], shared by every worker.
pub struct Dpop {
    config: DpopConfig,
    /// Each key's proof header, base64url, in the ring's order.
    headers: Vec<String>,
    clock: Clock,
    /// The IdP's latest nonce.
    idp_nonce: Mutex<Option<String>>,
    /// Each API's latest nonce, by origin (`scheme://authority`): only the
    /// configured upstreams' origins, so bounded by the config.
    upstream_nonces: Mutex<HashMap<String, String>>,
}

/// The claims of a proof (RFC 9449 §4.2).
#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

// === impl Dpop ===

impl Dpop {
    pub fn new(config: DpopConfig, clock: Clock) -> Self {
        let headers = config
            .keys()
            .iter()
            .map(|key| {
                let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
                URL_SAFE_NO_PAD.encode(header.to_string())
            })
            .collect();
        Self {
            config,
            headers,
            clock,
            idp_nonce: Mutex::new(None),
            upstream_nonces: Mutex::new(HashMap::new()),
        }
    }

    /// The key every new token is bound with.
    pub fn current(&self) -> &DpopKey {
        self.config.current()
    }

    /// Whether the ring still holds the key a token is bound to: without
    /// it the token cannot be used, only renewed.
    pub fn holds(&self, jkt: &str) -> bool {
        self.config.by_jkt(jkt).is_some()
    }

    /// A proof for a call to the IdP (`htm` `htu`, for a bound token
    /// `ath`), made with the key `jkt` names (the current one when `None`)
    /// and carrying the IdP's latest nonce.
    pub fn idp_proof(&self, jkt: Option<&str>, htm: &str, htu: &str, ath: Option<&str>) -> Option<String> {
        let index = self.index(jkt)?;
        let nonce = lock(&self.idp_nonce).clone();
        Some(self.sign(index, htm, htu, ath, nonce.as_deref()))
    }

    /// Keeps the nonce an IdP answer carries; whether it carried one.
    pub fn note_idp_nonce(&self, headers: &HeaderMap) -> bool {
        let Some(nonce) = nonce_in(headers) else {
            return false;
        };
        *lock(&self.idp_nonce) = Some(nonce);
        true
    }

    fn index(&self, jkt: Option<&str>) -> Option<usize> {
        match jkt {
            None => Some(0),
            Some(jkt) => self.config.keys().iter().position(|k| k.jkt() == jkt),
        }
    }

    /// `header.claims.signature`, signed ES256 by the key at `index`.
    fn sign(&self, index: usize, htm: &str, htu: &str, ath: Option<&str>, nonce: Option<&str>) -> String {
        let jti = random::token(16);
        let claims = Claims {
            jti: &jti,
            htm,
            htu,
            iat: self.clock.now(),
            ath,
            nonce,
        };
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let header = &self.headers[index];
        let mut jwt = String::with_capacity(header.len() + claims.len() * 4 / 3 + 92);
        jwt.push_str(header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
        // ES256's signature is r ‖ s, 64 bytes: the "fixed" encoding.
        let signed = self.config.keys()[index]
            .pair()
            .sign(&SystemRandom::new(), jwt.as_bytes());
        jwt.push('.');
        match signed {
            Ok(signature) => URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jwt),
            // Never seen: aws-lc fails only without randomness. A proof
            // without a signature is refused by the server, and says why.
            Err(_) => tracing::error!("a DPoP proof could not be signed"),
        }
        jwt
    }
}

/// Refuses metadata that lists the proof algorithms the IdP takes without
/// ES256, the one cloakroom signs with: every token request would fail.
/// Metadata that lists none is taken (the field is optional, RFC 9449
/// §5.1): whether the IdP binds its tokens is judged on each answer.
pub fn fits(config: &OidcConfig, metadata: Metadata) -> Result<Metadata, DiscoveryError> {
    match &metadata.dpop_signing_alg_values_supported {
        Some(listed) if config.dpop.is_some() && !listed.iter().any(|a| a == "ES256") => {
            Err(DiscoveryError::DpopWithoutEs256 {
                listed: listed.clone(),
            })
        }
        _ => Ok(metadata),
    }
}

// === a bound token, for the leaf ===

/// A DPoP-bound access token on its way upstream: its `Authorization`
/// value, and what each request's proof needs. Made by the token step,
/// used by `upstream::forward`, which knows the URL it calls.
#[derive(Clone)]
pub struct Bound {
    dpop: Arc<Dpop>,
    key: usize,
    authorization: HeaderValue,
    ath: String,
}

impl Bound {
    /// `token` bound to the key `jkt` names; `None` when the ring no
    /// longer holds it.
    pub fn new(dpop: &Arc<Dpop>, token: &AccessToken, jkt: &str) -> Option<Self> {
        let key = dpop.index(Some(jkt))?;
        let mut authorization = HeaderValue::from_str(&format!("DPoP {}", token.expose())).ok()?;
        authorization.set_sensitive(true);
        Some(Self {
            dpop: dpop.clone(),
            key,
            authorization,
            ath: ath(token),
        })
    }

    /// `Authorization: DPoP <token>`, marked sensitive.
    pub fn authorization(&self) -> HeaderValue {
        self.authorization.clone()
    }

    /// A fresh proof for one request: `method` to `origin` (`scheme://
    /// authority`, as called) and `path` (without the query), with the
    /// latest nonce that origin sent.
    pub fn proof(&self, method: &http::Method, origin: &str, path: &str) -> HeaderValue {
        let nonce = lock(&self.dpop.upstream_nonces).get(origin).cloned();
        let mut htu = String::with_capacity(origin.len() + path.len());
        htu.push_str(origin);
        htu.push_str(path);
        let proof = self
            .dpop
            .sign(self.key, method.as_str(), &htu, Some(&self.ath), nonce.as_deref());
        let mut value = HeaderValue::from_str(&proof).unwrap_or(HeaderValue::from_static(""));
        // It authorizes this request: no log line carries it.
        value.set_sensitive(true);
        value
    }

    /// Keeps the nonce an answer from `origin` carries (§9); whether it
    /// carried one.
    pub fn note(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(nonce) = nonce_in(headers) else {
            return false;
        };
        let mut nonces = lock(&self.dpop.upstream_nonces);
        if nonces.get(origin) != Some(&nonce) {
            nonces.insert(origin.to_owned(), nonce);
        }
        true
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("jkt", &self.dpop.config.keys()[self.key].jkt())
            .finish_non_exhaustive()
    }
}

/// `ath` (§4.2): the base64url SHA-256 of the access token.
pub fn ath(token: &AccessToken) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.expose().as_bytes()))
}

/// Whether an answer is a resource server's "use a nonce" (§9): a 401
/// whose `WWW-Authenticate` names `use_dpop_nonce`, with the nonce.
pub fn asks_for_nonce(status: http::StatusCode, headers: &HeaderMap) -> bool {
    status == http::StatusCode::UNAUTHORIZED
        && headers.contains_key(&DPOP_NONCE)
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")))
}

/// The `DPoP-Nonce` of an answer, when it is one a proof can carry:
/// printable ASCII (§8.1: `1*NQCHAR`), not absurdly long.
fn nonce_in(headers: &HeaderMap) -> Option<String> {
    let nonce = headers.get(&DPOP_NONCE)?.to_str().ok()?;
    let usable = !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    usable.then(|| nonce.to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dpop::tests::PEM;

    fn dpop() -> Arc<Dpop> {
        let key = DpopKey::new(PEM.to_owned(), Some("k1".into())).unwrap();
        let config = DpopConfig::new(vec![key]).unwrap();
        Arc::new(Dpop::new(config, Clock::manual()))
    }

    /// A proof's header and claims, after checking its signature against
    /// the public key its header carries.
    fn open(proof: &str) -> (serde_json::Value, serde_json::Value) {
        let header = jsonwebtoken::decode_header(proof).unwrap();
        let jwk = header.jwk.clone().expect("the public key in the header");
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
            .unwrap()
            .claims;
        (serde_json::to_value(&header).unwrap(), claims)
    }

    #[test]
    fn a_proof_is_signed_es256_with_the_public_key_in_its_header() {
        let dpop = dpop();
        let proof = dpop
            .idp_proof(None, "POST", "https://idp.example.com/token", None)
            .unwrap();
        let (header, claims) = open(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "never the private key");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(header["jwk"].clone()).unwrap();
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap(),
            dpop.current().jkt()
        );
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://idp.example.com/token");
        assert!(claims.get("ath").is_none() && claims.get("nonce").is_none());
        assert_eq!(claims["iat"], dpop.clock.now());
    }

    #[test]
    fn an_upstream_proof_names_the_request_the_token_and_the_nonce() {
        let dpop = dpop();
        let token = AccessToken::new("the-token".into());
        let bound = Bound::new(&dpop, &token, dpop.current().jkt()).unwrap();
        assert_eq!(bound.authorization().to_str().unwrap(), "DPoP the-token");
        assert!(bound.authorization().is_sensitive());
        let origin = "http://api.internal:8000";
        let first = bound.proof(&http::Method::DELETE, origin, "/orders/7");
        assert!(first.is_sensitive());
        let (_, claims) = open(first.to_str().unwrap());
        assert_eq!(claims["htm"], "DELETE");
        assert_eq!(claims["htu"], "http://api.internal:8000/orders/7");
        assert_eq!(claims["ath"], ath(&token));
        assert!(claims.get("nonce").is_none());

        let mut answer = HeaderMap::new();
        answer.insert(&DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(bound.note(origin, &answer));
        let (_, next) = open(bound.proof(&http::Method::GET, origin, "/").to_str().unwrap());
        assert_eq!(next["nonce"], "n-1");
        assert_ne!(next["jti"], claims["jti"], "a fresh jti per proof");
        let (_, elsewhere) = open(
            bound
                .proof(&http::Method::GET, "http://other", "/")
                .to_str()
                .unwrap(),
        );
        assert!(elsewhere.get("nonce").is_none(), "nonces are per origin");

        // A nonce a proof could not carry is not kept.
        answer.insert(&DPOP_NONCE, HeaderValue::from_static("a \"quoted\" nonce"));
        assert!(!bound.note(origin, &answer));
        assert!(
            Bound::new(&dpop, &token, "another-jkt").is_none(),
            "a key no longer held"
        );
    }

    #[test]
    fn a_resource_servers_nonce_request_is_a_401_naming_use_dpop_nonce() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("DPoP error=\"use_dpop_nonce\", error_description=\"nonce\""),
        );
        assert!(
            !asks_for_nonce(http::StatusCode::UNAUTHORIZED, &headers),
            "no nonce given"
        );
        headers.insert(&DPOP_NONCE, HeaderValue::from_static("n"));
        assert!(asks_for_nonce(http::StatusCode::UNAUTHORIZED, &headers));
        assert!(!asks_for_nonce(http::StatusCode::FORBIDDEN, &headers));
    }
}
