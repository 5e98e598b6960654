//! A DBSC client written from the W3C draft (webappsec-dbsc) as Chrome
//! ships it, independent of cloakroom's code: its key pair (P-256 or RSA,
//! made and used with aws-lc-rs), its `dbsc+jwt` proofs, the structured
//! headers it reads and writes, and the registration and refresh requests
//! a browser makes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sfv::{BareItem, List, ListEntry, Parser};

use super::{Browser, Page};

/// A device's key pair, as the browser keeps it (unexportable there).
pub enum DeviceKey {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// What a `Secure-Session-Registration` offers.
#[derive(Debug, Clone)]
pub struct Offer {
    pub algorithms: Vec<String>,
    pub path: String,
    pub challenge: String,
}

/// A browser's DBSC session with one site.
pub struct DbscSession {
    pub key: DeviceKey,
    pub id: String,
    pub refresh_url: String,
    pub instructions: Value,
    /// The challenge the last answer handed out, to sign at the next
    /// refresh without a 403 first.
    pub cached_challenge: Option<String>,
}

impl DeviceKey {
    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }

    pub fn rs256() -> Self {
        Self::Rs256(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Rs256(_) => "RS256",
        }
    }

    /// The public key as a JWK (RFC 7517/7518).
    pub fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Self::Es256(pair) => {
                // The uncompressed point: 0x04, x, y.
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Self::Rs256(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// A `dbsc+jwt` over `challenge`; with the public key in its header
    /// at registration.
    pub fn proof(&self, challenge: &str, registration: bool) -> String {
        let mut header = json!({"alg": self.alg(), "typ": "dbsc+jwt"});
        if registration {
            header["jwk"] = self.jwk();
        }
        let payload = json!({"jti": challenge});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = match self {
            Self::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Self::Rs256(pair) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut out,
                )
                .unwrap();
                out
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The offer in a response's `Secure-Session-Registration`, if any.
pub fn offer(page: &Page) -> Option<Offer> {
    let value = page.headers.get("secure-session-registration")?.to_str().ok()?;
    let list: List = Parser::new(value).parse().ok()?;
    let Some(ListEntry::InnerList(inner)) = list.into_iter().next() else {
        return None;
    };
    let string = |name: &str| match inner.params.get(name) {
        Some(BareItem::String(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    Some(Offer {
        algorithms: inner
            .items
            .iter()
            .filter_map(|i| match &i.bare_item {
                BareItem::Token(t) => Some(t.as_str().to_owned()),
                _ => None,
            })
            .collect(),
        path: string("path")?,
        challenge: string("challenge")?,
    })
}

/// The challenge of a `Secure-Session-Challenge` for session `id`.
pub fn challenge(page: &Page, id: &str) -> Option<String> {
    let value = page.headers.get("secure-session-challenge")?.to_str().ok()?;
    let list: List = Parser::new(value).parse().ok()?;
    list.into_iter().find_map(|entry| match entry {
        ListEntry::Item(item) => {
            let named = matches!(item.params.get("id"), Some(BareItem::String(s)) if s.as_str() == id);
            match item.bare_item {
                BareItem::String(c) if named => Some(c.as_str().to_owned()),
                _ => None,
            }
        }
        ListEntry::InnerList(_) => None,
    })
}

/// An sf-string holding `text` (a JWT, or a session id).
pub fn sf_string(text: &str) -> String {
    format!("\"{text}\"")
}

/// Registers `key` for the session `browser` holds at `base`, as offered:
/// the answer, and the DBSC session it started when it is a 200.
pub async fn register(
    browser: &Browser,
    base: &str,
    offer: &Offer,
    key: DeviceKey,
) -> (Page, Option<DbscSession>) {
    let proof = sf_string(&key.proof(&offer.challenge, true));
    let page = browser
        .send(
            reqwest::Method::POST,
            &format!("{base}{}", offer.path),
            &[("secure-session-response", &proof)],
            None,
        )
        .await;
    if page.status != 200 {
        return (page, None);
    }
    let instructions = page.json();
    let session = DbscSession {
        key,
        id: instructions["session_identifier"].as_str().unwrap().to_owned(),
        refresh_url: instructions["refresh_url"].as_str().unwrap().to_owned(),
        instructions,
        cached_challenge: None,
    };
    (page, Some(session))
}

impl DbscSession {
    /// A refresh at `base` as the browser makes it: with the cached
    /// challenge signed if it has one, else first without a proof, and
    /// once more with the challenge a 403 hands out. The last answer.
    pub async fn refresh(&mut self, browser: &Browser, base: &str) -> Page {
        let url = format!("{base}{}", self.refresh_url);
        let id = sf_string(&self.id);
        let mut challenge = self.cached_challenge.take();
        for _ in 0..2 {
            let proof = challenge.as_ref().map(|c| sf_string(&self.key.proof(c, false)));
            let mut headers = vec![("sec-secure-session-id", id.as_str())];
            if let Some(proof) = &proof {
                headers.push(("secure-session-response", proof));
            }
            let page = browser.send(reqwest::Method::POST, &url, &headers, None).await;
            self.cached_challenge = self::challenge(&page, &self.id);
            if page.status != 403 {
                return page;
            }
            challenge = self.cached_challenge.take();
        }
        panic!("a second 403 from {url}");
    }
}
