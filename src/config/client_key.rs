//! `oidc.client_key`: the private key cloakroom signs its client
//! assertions with (`token_endpoint_auth: private_key_jwt`, RFC 7523),
//! and how the IdP finds its public half (`kid`).
//!
//! The key is read once, with the config: a PEM that does not parse, a
//! curve other than P-256 or an algorithm that does not fit the key is a
//! config error at its key path, never a failed login later. The PEM text
//! never prints.

use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::node::from_text;
use crate::secret::Secret;

/// A signing key for client assertions, parsed and checked.
#[derive(Clone)]
pub struct ClientKey {
    pem: Secret<String>,
    key: Arc<EncodingKey>,
    alg: ClientKeyAlg,
    kid: String,
}

/// The algorithms a client assertion may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKeyAlg {
    Rs256,
    Ps256,
    Es256,
}

/// Why a key cannot be used, and which key of `oidc` to name.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyProblem {
    pub key: &'static str,
    pub reason: String,
}

// === impl ClientKey ===

impl ClientKey {
    /// Reads `pem`, checks `alg` against it (default: RS256 for an RSA
    /// key, ES256 for a P-256 one) and takes `kid`, or derives it as the
    /// RFC 7638 thumbprint of the public key, the name most IdPs give a
    /// key registered as a JWK without one.
    pub fn new(pem: String, alg: Option<ClientKeyAlg>, kid: Option<String>) -> Result<Self, KeyProblem> {
        let problem = |key, reason: &str| KeyProblem {
            key,
            reason: reason.to_owned(),
        };
        // Which family the PEM holds decides the default algorithm; an EC
        // key must be PKCS#8 (`BEGIN PRIVATE KEY`), an RSA one may be
        // PKCS#1 too (`BEGIN RSA PRIVATE KEY`).
        let (key, alg) = match (EncodingKey::from_ec_pem(pem.as_bytes()), alg) {
            (Ok(key), None | Some(ClientKeyAlg::Es256)) => (key, ClientKeyAlg::Es256),
            (Ok(_), Some(_)) => {
                return Err(problem("client_key_alg", "an EC key signs only ES256"));
            }
            (Err(_), alg) => match EncodingKey::from_rsa_pem(pem.as_bytes()) {
                Ok(_) if alg == Some(ClientKeyAlg::Es256) => {
                    return Err(problem(
                        "client_key_alg",
                        "ES256 needs an EC P-256 key; this is an RSA key",
                    ));
                }
                Ok(key) => (key, alg.unwrap_or(ClientKeyAlg::Rs256)),
                Err(_) => {
                    return Err(problem(
                        "client_key",
                        "not a private key cloakroom can use: expected PEM, an RSA key \
                         (PKCS#8 or PKCS#1) or an EC P-256 key (PKCS#8)",
                    ));
                }
            },
        };
        // Deriving the public key also proves the private one is whole
        // (and, for EC, on P-256).
        let jwk = Jwk::from_encoding_key(&key, alg.algorithm()).map_err(|_| {
            problem(
                "client_key",
                "the key cannot be read (an EC key must be on P-256)",
            )
        })?;
        let kid = match kid {
            Some(kid) if kid.is_empty() => return Err(problem("client_key_id", "must not be empty")),
            Some(kid) => kid,
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|_| problem("client_key", "no RFC 7638 thumbprint for this key"))?,
        };
        Ok(Self {
            pem: Secret::new(pem),
            key: Arc::new(key),
            alg,
            kid,
        })
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    pub fn alg(&self) -> ClientKeyAlg {
        self.alg
    }

    /// The `kid` every assertion's header names.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// Two keys are the same when their text, algorithm and name are: what a
// reload compares to keep or replace the IdP client.
impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem && self.alg == other.alg && self.kid == other.kid
    }
}

impl Eq for ClientKey {}

// === impl ClientKeyAlg ===

impl ClientKeyAlg {
    pub fn algorithm(self) -> Algorithm {
        match self {
            ClientKeyAlg::Rs256 => Algorithm::RS256,
            ClientKeyAlg::Ps256 => Algorithm::PS256,
            ClientKeyAlg::Es256 => Algorithm::ES256,
        }
    }
}

from_text!(ClientKeyAlg, |text| match text {
    "RS256" => Ok(ClientKeyAlg::Rs256),
    "PS256" => Ok(ClientKeyAlg::Ps256),
    "ES256" => Ok(ClientKeyAlg::Es256),
    _ => Err(format!("{text:?} is not one of RS256, PS256, ES256")),
});

#[cfg(test)]
mod tests {
    use crate::config::{ClientKeyAlg, MapEnv, TokenEndpointAuth};
    use crate::Config;

    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9cLYjlz9mfoMEqeG
0bIAvBzfqU3FqJrcRf5kF0UZTSahRANCAARn1+TAa6rpl1Lg/iUh6PBxcT2332ZN
JThdhYPy6+SvdiSV0dAf4MKe48ZJyMei9/Q7cCD8JNM0dfOJqIMusc0G
-----END PRIVATE KEY-----
";

    fn load(oidc: &str) -> Result<Config, Vec<String>> {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, {oidc}}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
        );
        let env = MapEnv::default().with_file("/run/key.pem", EC_KEY).with_file(
            "/run/junk.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        Config::load(&yaml, &env).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn private_key_jwt_reads_the_key_file_and_derives_the_kid() {
        let c = load("token_endpoint_auth: private_key_jwt, client_key_file: /run/key.pem").unwrap();
        let oidc = c.oidc.unwrap();
        assert_eq!(oidc.token_endpoint_auth, TokenEndpointAuth::PrivateKeyJwt);
        assert!(oidc.client_secret.is_none());
        let key = oidc.client_key.unwrap();
        assert_eq!(key.alg(), ClientKeyAlg::Es256);
        // RFC 7638: base64url of a SHA-256, 43 characters.
        assert_eq!(key.kid().len(), 43, "{}", key.kid());
        assert!(!format!("{key:?}").contains("MIGHAg"), "the key never prints");
        let named = load(
            "token_endpoint_auth: private_key_jwt, client_key_file: /run/key.pem, client_key_id: k-2025",
        )
        .unwrap();
        assert_eq!(named.oidc.unwrap().client_key.unwrap().kid(), "k-2025");
    }

    #[test]
    fn private_key_jwt_mistakes_name_their_key() {
        let cases = [
            (
                "token_endpoint_auth: private_key_jwt",
                "oidc.client_key: required with token_endpoint_auth: private_key_jwt (or client_key_file)",
            ),
            (
                "token_endpoint_auth: private_key_jwt, client_key_file: /run/key.pem, client_secret: s",
                "oidc.client_secret: not used with token_endpoint_auth: private_key_jwt; remove it",
            ),
            (
                "client_secret: s, client_key_file: /run/key.pem",
                "oidc.client_key: used only with token_endpoint_auth: private_key_jwt",
            ),
            (
                "token_endpoint_auth: private_key_jwt, client_key_file: /run/key.pem, client_key_alg: RS256",
                "oidc.client_key_alg: an EC key signs only ES256",
            ),
            (
                "token_endpoint_auth: private_key_jwt, client_key_file: /run/key.pem, client_key_alg: HS256",
                "oidc.client_key_alg: \"HS256\" is not one of RS256, PS256, ES256",
            ),
            (
                "token_endpoint_auth: private_key_jwt, client_key_file: /run/junk.pem",
                "oidc.client_key: not a private key cloakroom can use: expected PEM, an RSA key \
                 (PKCS#8 or PKCS#1) or an EC P-256 key (PKCS#8)",
            ),
            (
                "token_endpoint_auth: client_secret_post",
                "oidc.client_secret: required key is missing",
            ),
        ];
        for (oidc, expected) in cases {
            // Without a usable `oidc`, the routes that need one say so too.
            let errors = load(oidc).err().unwrap_or_default();
            assert_eq!(errors.first().map(String::as_str), Some(expected), "{oidc}");
        }
    }
}
