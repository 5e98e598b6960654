//! `oidc.dpop`: the keys cloakroom proves possession of its tokens with
//! (DPoP, RFC 9449), as a key ring.
//!
//! ```yaml
//! oidc:
//!   dpop:
//!     keys:
//!       - {id: dpop-2, key_file: /run/secrets/dpop-2.pem}   # binds new tokens
//!       - {id: dpop-1, key_file: /run/secrets/dpop-1.jwk}   # kept for tokens bound to it
//! ```
//!
//! Every replica holds the same keys: a token one replica obtained is sent
//! by any other, with a proof signed by the key it is bound to. The first
//! key binds every token obtained from now on; the others are kept for the
//! tokens already bound to them (the record keeps each token's key
//! thumbprint, `jkt`), until those are renewed. A key is an EC P-256 private
//! key, as PEM (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)
//! or as a JWK (`kty: EC`, `crv: P-256`, `x`, `y`, `d`). It is read and
//! checked with the config: a key that does not parse is a config error at
//! its key path, never a failed login later. The key text never prints.

use std::collections::HashSet;
use std::sync::Arc;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sha2::Digest;

use super::client_key::KeyProblem;
use super::node::{Cursor, Each, Fields, FromNode, Reported};
use crate::secret::Secret;

/// `oidc.dpop`: the key ring, the binding key first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    keys: Vec<DpopKey>,
}

/// One P-256 key pair, parsed and checked, with its names.
#[derive(Clone)]
pub struct DpopKey {
    /// What logs and `check` call it: `id`, else the JWK's `kid`, else
    /// the thumbprint.
    id: String,
    /// The RFC 7638 thumbprint of the public key: what a bound token's
    /// `cnf.jkt` names, and what the record keeps per token.
    jkt: String,
    /// The public key's coordinates, base64url.
    x: String,
    y: String,
    pair: Arc<EcdsaKeyPair>,
    text: Secret<String>,
}

// === impl DpopConfig ===

impl DpopConfig {
    /// A ring of `keys`, the first binding new tokens; `None` when empty.
    pub fn new(keys: Vec<DpopKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// The key every new token is bound with.
    pub fn current(&self) -> &DpopKey {
        // Never empty: reading refuses an empty ring.
        &self.keys[0]
    }

    /// The key whose thumbprint is `jkt`, if the ring still holds it.
    pub fn by_jkt(&self, jkt: &str) -> Option<&DpopKey> {
        self.keys.iter().find(|k| k.jkt == jkt)
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> &[DpopKey] {
        &self.keys
    }
}

impl FromNode for DpopConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let keys = f.required::<Each<DpopKey>>("keys", at);
        f.finish(at);
        let keys = keys.ok_or(Reported)?;
        if keys.0.is_empty() {
            at.error_at("keys", "at least one key is required: the first binds new tokens");
            return Err(Reported);
        }
        let (mut ids, mut jkts) = (HashSet::new(), HashSet::new());
        for (i, key) in keys.parsed() {
            if !ids.insert(key.id.as_str()) {
                at.error_at(&format!("keys[{i}].id"), "duplicate key id");
            }
            if !jkts.insert(key.jkt.as_str()) {
                at.error_at(&format!("keys[{i}].key"), "the same key as an earlier one");
            }
        }
        Ok(DpopConfig {
            keys: keys.complete().ok_or(Reported)?,
        })
    }
}

// === impl DpopKey ===

impl DpopKey {
    /// Reads `text` (PEM or JWK) as a P-256 key pair named `id`, else by
    /// the JWK's `kid`, else by its thumbprint.
    pub fn new(text: String, id: Option<String>) -> Result<Self, KeyProblem> {
        let problem = |key, reason: String| KeyProblem { key, reason };
        let trimmed = text.trim();
        let read = if trimmed.starts_with('{') {
            from_jwk(trimmed)
        } else if trimmed.starts_with("-----BEGIN") {
            from_pem(trimmed).map(|pair| (pair, None))
        } else {
            Err("expected an EC P-256 private key as PEM or as a JWK".into())
        };
        let (pair, kid) = read.map_err(|reason| problem("key", reason))?;
        // The public key as an uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => (
                URL_SAFE_NO_PAD.encode(&rest[..32]),
                URL_SAFE_NO_PAD.encode(&rest[32..]),
            ),
            _ => return Err(problem("key", "not a P-256 key".into())),
        };
        let jkt = thumbprint(&x, &y);
        let id = match id.or(kid) {
            Some(id) if id.trim().is_empty() => return Err(problem("id", "must not be empty".into())),
            Some(id) => id,
            None => jkt.clone(),
        };
        Ok(Self {
            id,
            jkt,
            x,
            y,
            pair: Arc::new(pair),
            text: Secret::new(text),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The RFC 7638 thumbprint of the public key (base64url SHA-256).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public key as a JWK: what a proof's header carries.
    pub fn public_jwk(&self) -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y})
    }

    /// The key pair that signs proofs.
    pub fn pair(&self) -> &EcdsaKeyPair {
        &self.pair
    }
}

impl FromNode for DpopKey {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let id = f.optional::<String>("id", at);
        let text = f.required::<String>("key", at);
        f.finish(at);
        let text = text.ok_or(Reported)?;
        DpopKey::new(text, id).map_err(|problem| {
            at.error_at(problem.key, problem.reason);
            Reported
        })
    }
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("id", &self.id)
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

// The same key text and name: what a reload compares to keep or replace
// the IdP client.
impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.text == other.text
    }
}

impl Eq for DpopKey {}

/// RFC 7638 §3.2: SHA-256 over the required members of an EC key, in
/// lexicographic order, without whitespace.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// A PEM private key: PKCS#8 or SEC1 (RFC 5915), on P-256.
fn from_pem(text: &str) -> Result<EcdsaKeyPair, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .unwrap_or_default()
        .to_owned();
    if label != "PRIVATE KEY" && label != "EC PRIVATE KEY" {
        return Err(format!(
            "a PEM {label:?} is not an EC private key (expected BEGIN PRIVATE KEY or BEGIN EC PRIVATE KEY)"
        ));
    }
    let body: String = lines.take_while(|l| !l.starts_with("-----END")).collect();
    let der = zeroize::Zeroizing::new(
        STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "the PEM body is not base64".to_owned())?,
    );
    // PKCS#8 or RFC 5915; the curve must be P-256 either way.
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| "not an EC P-256 private key (RSA and other curves cannot sign ES256)".to_owned())
}

/// A private JWK (RFC 7518 §6.2): `kty: EC`, `crv: P-256`, `x`, `y`, `d`;
/// with its `kid` when it names one.
fn from_jwk(text: &str) -> Result<(EcdsaKeyPair, Option<String>), String> {
    let jwk: Value = serde_json::from_str(text).map_err(|_| "not a JSON object (a JWK)".to_owned())?;
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty") != Some("EC") || member("crv") != Some("P-256") {
        return Err("the JWK must be an EC key on P-256 (kty: EC, crv: P-256)".into());
    }
    let coordinate = |name: &str| -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let text = member(name).ok_or_else(|| format!("the JWK has no {name:?}"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(|_| format!("the JWK's {name:?} is not base64url"))?;
        if bytes.len() != 32 {
            return Err(format!("the JWK's {name:?} is not a P-256 coordinate"));
        }
        Ok(zeroize::Zeroizing::new(bytes))
    };
    if member("d").is_none() {
        return Err("the JWK is a public key: a private one (with \"d\") is needed to sign".into());
    }
    let (d, x, y) = (coordinate("d")?, coordinate("x")?, coordinate("y")?);
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Checks that `d` and the point belong together, and are on the curve.
    let pair = EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &d, &point)
        .map_err(|_| "the JWK's d, x and y are not one P-256 key pair".to_owned())?;
    Ok((pair, member("kid").map(str::to_owned)))
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::MapEnv;
    use crate::Config;

    /// A P-256 key as PKCS#8 PEM.
    pub(crate) const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9cLYjlz9mfoMEqeG
0bIAvBzfqU3FqJrcRf5kF0UZTSahRANCAARn1+TAa6rpl1Lg/iUh6PBxcT2332ZN
JThdhYPy6+SvdiSV0dAf4MKe48ZJyMei9/Q7cCD8JNM0dfOJqIMusc0G
-----END PRIVATE KEY-----
";

    const RSA: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n";

    fn load(dpop: &str, env: MapEnv) -> Result<Config, Vec<String>> {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s, dpop: {dpop}}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
        );
        Config::load(&yaml, &env).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    /// The same key as [`PEM`], as a private JWK named `kid`.
    fn jwk(kid: &str) -> String {
        let key = super::DpopKey::new(PEM.to_owned(), None).unwrap();
        let public = key.public_jwk();
        // d of PEM's key, the 32 bytes after the PKCS#8 prefix.
        let der = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            PEM.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
        let d = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &der[36..68]);
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": public["x"], "y": public["y"], "d": d, "kid": kid})
            .to_string()
    }

    #[test]
    fn a_pem_or_a_jwk_is_read_and_named() {
        let env = MapEnv::default()
            .with_file("/run/dpop.pem", PEM)
            .with_file("/run/dpop.jwk", &jwk("from-jwk"));
        let c = load(
            "{keys: [{key_file: /run/dpop.jwk}, {id: old, key_file: /run/dpop.pem}]}",
            env,
        );
        // One key twice is refused; the message names the second.
        assert_eq!(
            c.unwrap_err(),
            ["oidc.dpop.keys[1].key: the same key as an earlier one"]
        );
        let env = MapEnv::default().with_file("/run/dpop.jwk", &jwk("from-jwk"));
        let c = load("{keys: [{key_file: /run/dpop.jwk}]}", env).unwrap();
        let dpop = c.oidc.unwrap().dpop.unwrap();
        let key = dpop.current();
        assert_eq!(key.id(), "from-jwk", "the JWK's kid");
        assert_eq!(key.jkt().len(), 43, "base64url of a SHA-256");
        assert!(dpop.by_jkt(key.jkt()).is_some());
        let from_pem = super::DpopKey::new(PEM.to_owned(), None).unwrap();
        assert_eq!(from_pem.jkt(), key.jkt(), "one key, one thumbprint");
        assert_eq!(from_pem.id(), from_pem.jkt(), "no id: the thumbprint");
        let debug = format!("{dpop:?}");
        assert!(!debug.contains("MIGHAg") && !debug.contains("\"d\""), "{debug}");
    }

    #[test]
    fn dpop_key_mistakes_name_their_key() {
        let public_only = {
            let mut jwk: serde_json::Value = serde_json::from_str(&jwk("k")).unwrap();
            jwk.as_object_mut().unwrap().remove("d");
            jwk.to_string()
        };
        let env = MapEnv::default()
            .with_file("/run/rsa.pem", RSA)
            .with_file("/run/public.jwk", &public_only)
            .with_file("/run/dpop.pem", PEM);
        let cases = [
            ("{keys: []}", "oidc.dpop.keys: at least one key is required: the first binds new tokens"),
            ("{}", "oidc.dpop.keys: required key is missing"),
            (
                "{keys: [{key: 'hello'}]}",
                "oidc.dpop.keys[0].key: expected an EC P-256 private key as PEM or as a JWK",
            ),
            (
                "{keys: [{key_file: /run/rsa.pem}]}",
                "oidc.dpop.keys[0].key: a PEM \"RSA PRIVATE KEY\" is not an EC private key (expected BEGIN PRIVATE KEY or BEGIN EC PRIVATE KEY)",
            ),
            (
                "{keys: [{key_file: /run/public.jwk}]}",
                "oidc.dpop.keys[0].key: the JWK is a public key: a private one (with \"d\") is needed to sign",
            ),
            (
                "{keys: [{key_file: /run/missing.pem}]}",
                "oidc.dpop.keys[0].key: cannot read key_file /run/missing.pem: entity not found",
            ),
            (
                "{keys: [{id: a, key_file: /run/dpop.pem}, {id: a, key: '-----BEGIN PRIVATE KEY-----'}]}",
                "oidc.dpop.keys[1].key: not an EC P-256 private key (RSA and other curves cannot sign ES256)",
            ),
            (
                "{keys: [{id: '', key_file: /run/dpop.pem}]}",
                "oidc.dpop.keys[0].id: must not be empty",
            ),
            ("{keys: [{key_file: /run/dpop.pem, kid: x}]}", "oidc.dpop.keys[0].kid: unknown key"),
        ];
        for (dpop, expected) in cases {
            let errors = load(dpop, env.clone()).err().unwrap_or_default();
            assert_eq!(
                errors.first().map(String::as_str),
                Some(expected),
                "{dpop}: {errors:?}"
            );
        }
    }
}
