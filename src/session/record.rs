//! The session record: what the store holds for one session, sealed.
//!
//! Sealed with AES-256-GCM under the per-session key that only the cookie
//! carries, with the store key as associated data, so a record cannot be
//! moved under another session's key (threat-model T09, CK-14). Whoever
//! reads the store alone recovers nothing.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use hmac::Mac;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cookie::{SealError, Ticket};
use crate::secret::{AccessToken, IdToken, RefreshToken};

/// Record format written by this release; older ones stay readable.
pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub access_token: AccessToken,
    /// Seconds since the epoch.
    pub access_expires_at: u64,
    /// When the access token was obtained (milliseconds since the epoch) and
    /// for how long the IdP said it lives (seconds), so the refresh point
    /// can be a fraction of its life. Absent in records written by earlier
    /// releases, which ignore both, so they need no format change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_issued_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_lifetime: Option<u64>,
    /// The thumbprint of the DPoP key the access token is bound to
    /// (RFC 9449 §6.1 `cnf.jkt`); absent for a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_jkt: Option<String>,
    pub refresh_token: Option<RefreshToken>,
    pub id_token: Option<IdToken>,
    /// The ID token claims kept for `/auth/user` and identity checks.
    pub claims: Map<String, Value>,
    pub created_at: u64,
    pub last_seen: u64,
    /// Routes' own tokens, by [`crate::config::Audience::key`], each
    /// obtained with the one `refresh_token` (PX-23). Absent in records
    /// written before them, and left out while empty, so a session without
    /// such routes is stored as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_tokens: BTreeMap<String, ResourceToken>,
    /// Tokens the IdP gave in exchange for one of the session's (`token:
    /// exchange`, RFC 8693), by [`crate::config::Exchange::key`]. Each
    /// serves until it is due, whatever became of the token it was
    /// exchanged for meanwhile. Absent and left out as `resource_tokens`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exchanged_tokens: BTreeMap<String, ResourceToken>,
    /// The device the session is bound to (DBSC), once bound. Absent in
    /// records written before, and while unbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceKey>,
}

/// An access token for one route's resource and scopes, or exchanged for
/// one route, and when it was obtained and expires (as the session's own
/// token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceToken {
    pub access_token: AccessToken,
    pub expires_at: u64,
    pub issued_ms: u64,
    pub lifetime: u64,
    /// The DPoP key it is bound to, as for the session's own token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// What a bound session keeps of its device, in its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// The DBSC session identifier the browser names this session by: a
    /// random value of its own, never the session id.
    pub id: String,
    /// `ES256` or `RS256`, as registered.
    pub alg: String,
    /// The device's public key (RFC 7517).
    pub jwk: serde_json::Value,
    /// When it was bound, seconds since the epoch.
    pub bound_at: u64,
}

/// The store key of a session: a keyed hash of its id (T08), keyed by the
/// session's own data key so it survives cookie-key rotation. The hash tag
/// keeps a session's keys in one Redis Cluster slot.
pub fn store_key(ticket: &Ticket) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(ticket.data_key.expose()).expect("any key length");
    mac.update(b"cloakroom session id");
    mac.update(ticket.sid.expose());
    let digest = mac.finalize().into_bytes();
    format!("cloakroom:{{{}}}:s", hex::encode(&digest[..16]))
}

// === impl DeviceKey ===

impl DeviceKey {
    /// A new binding of `jwk` (signing with `alg`) at `now`.
    pub fn new(alg: &str, jwk: serde_json::Value, now: u64) -> Self {
        Self {
            id: crate::random::token(16),
            alg: alg.to_owned(),
            jwk,
            bound_at: now,
        }
    }
}

// === impl ResourceToken ===

impl ResourceToken {
    /// `token`, obtained at `now_ms` to live `lifetime` seconds.
    pub fn obtained(token: AccessToken, jkt: Option<String>, lifetime: u64, now_ms: u64) -> Self {
        Self {
            access_token: token,
            expires_at: (now_ms / 1000).saturating_add(lifetime),
            issued_ms: now_ms,
            lifetime,
            jkt,
        }
    }
}

// === impl Record ===

impl Record {
    /// Records that the access token was obtained at `now_ms` and lives
    /// `lifetime` seconds.
    pub fn set_access_lifetime(&mut self, lifetime: u64, now_ms: u64) {
        self.access_expires_at = (now_ms / 1000).saturating_add(lifetime);
        self.access_issued_ms = Some(now_ms);
        self.access_lifetime = Some(lifetime);
    }

    /// Every refresh token the record holds: what revoking its grant at
    /// the IdP means. One today, which every route's own token is obtained
    /// with too (`resource_tokens` hold access tokens only).
    pub fn refresh_tokens(&self) -> Vec<&RefreshToken> {
        self.refresh_token.iter().collect()
    }

    pub fn seal(&self, ticket: &Ticket, store_key: &str) -> Bytes {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &json,
                    aad: store_key.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Bytes::from(out)
    }

    /// Opens a record. A record of an unknown format is "no session" (RD-13).
    pub fn open(bytes: &[u8], ticket: &Ticket, store_key: &str) -> Result<Self, SealError> {
        if bytes.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
        let json = zeroize::Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: sealed,
                        aad: store_key.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Tampered)?,
        );
        let record: Record = serde_json::from_slice(&json).map_err(|_| SealError::Malformed)?;
        if record.format > FORMAT {
            return Err(SealError::Malformed);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn record() -> Record {
        Record {
            format: FORMAT,
            access_token: AccessToken::new("AT-secret".into()),
            access_expires_at: 10,
            access_issued_ms: Some(5_000),
            access_lifetime: Some(5),
            access_jkt: None,
            refresh_token: Some(RefreshToken::new("RT-secret".into())),
            id_token: None,
            claims: Map::new(),
            created_at: 1,
            last_seen: 1,
            resource_tokens: BTreeMap::new(),
            exchanged_tokens: BTreeMap::new(),
            device: None,
        }
    }

    #[test]
    fn ck14_a_record_is_unreadable_without_the_cookie() {
        let ticket = Ticket::generate(0);
        let key = store_key(&ticket);
        let sealed = record().seal(&ticket, &key);
        assert!(!sealed.windows(9).any(|w| w == b"AT-secret"));
        assert!(!sealed.windows(9).any(|w| w == b"RT-secret"));
        assert_eq!(
            Record::open(&sealed, &ticket, &key)
                .unwrap()
                .access_token
                .expose(),
            "AT-secret"
        );
        assert!(
            Record::open(&sealed, &Ticket::generate(0), &key).is_err(),
            "another session's key"
        );
        let other = Ticket::generate(0);
        assert!(
            Record::open(&sealed, &ticket, &store_key(&other)).is_err(),
            "moved under another key"
        );
    }

    /// The record as the previous release declared it, every token a
    /// `Secret<String>`.
    #[derive(Serialize)]
    struct PreviousRecord {
        format: u32,
        access_token: Secret<String>,
        access_expires_at: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        access_issued_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        access_lifetime: Option<u64>,
        refresh_token: Option<Secret<String>>,
        id_token: Option<Secret<String>>,
        claims: Map<String, Value>,
        created_at: u64,
        last_seen: u64,
    }

    /// Seals `json` as the previous release's `Record::seal` did: nonce,
    /// then AES-256-GCM under the data key with the store key as AAD.
    fn seal_as_before(json: &[u8], ticket: &Ticket, store_key: &str) -> Vec<u8> {
        let nonce = [7u8; 12];
        let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: json,
                    aad: store_key.as_bytes(),
                },
            )
            .unwrap();
        [&nonce[..], &sealed].concat()
    }

    #[test]
    fn a_record_sealed_with_secret_string_tokens_opens_with_the_token_types() {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::from("alice"));
        let previous = PreviousRecord {
            format: FORMAT,
            access_token: Secret::new("AT-secret".into()),
            access_expires_at: 10,
            access_issued_ms: Some(5_000),
            access_lifetime: Some(5),
            refresh_token: Some(Secret::new("RT-secret".into())),
            id_token: Some(Secret::new("ID-secret".into())),
            claims: claims.clone(),
            created_at: 1,
            last_seen: 2,
        };
        let json = serde_json::to_vec(&previous).unwrap();
        let ticket = Ticket::generate(0);
        let key = store_key(&ticket);
        let opened = Record::open(&seal_as_before(&json, &ticket, &key), &ticket, &key).unwrap();
        assert_eq!(opened.access_token.expose(), "AT-secret");
        assert_eq!(opened.refresh_token.as_ref().unwrap().expose(), "RT-secret");
        assert_eq!(opened.id_token.as_ref().unwrap().expose(), "ID-secret");
        assert_eq!(
            (
                opened.access_expires_at,
                opened.access_issued_ms,
                opened.access_lifetime
            ),
            (10, Some(5_000), Some(5))
        );
        assert_eq!(
            (opened.claims, opened.created_at, opened.last_seen),
            (claims, 1, 2)
        );

        // And what this release writes is the same text, byte for byte.
        let mut current = record();
        current.id_token = Some(IdToken::new("ID-secret".into()));
        current.claims.insert("sub".into(), Value::from("alice"));
        current.last_seen = 2;
        assert_eq!(serde_json::to_vec(&current).unwrap(), json);
    }

    #[test]
    fn a_record_from_before_token_lifetimes_were_kept_still_opens() {
        let json = br#"{"format":1,"access_token":"AT","access_expires_at":10,"refresh_token":null,"id_token":null,"claims":{},"created_at":1,"last_seen":1}"#;
        let ticket = Ticket::generate(0);
        let key = store_key(&ticket);
        let opened = Record::open(&seal_as_before(json, &ticket, &key), &ticket, &key).unwrap();
        assert_eq!(opened.access_token.expose(), "AT");
        assert!(opened.refresh_token.is_none() && opened.id_token.is_none());
        assert_eq!((opened.access_issued_ms, opened.access_lifetime), (None, None));
        assert_eq!(serde_json::to_vec(&opened).unwrap(), json);
    }

    #[test]
    fn px23_routes_tokens_are_sealed_with_the_record_and_absent_when_none() {
        let ticket = Ticket::generate(0);
        let key = store_key(&ticket);
        let mut with = record();
        with.resource_tokens.insert(
            "urn:x:orders orders:read".into(),
            ResourceToken {
                access_token: AccessToken::new("RES-secret".into()),
                expires_at: 20,
                issued_ms: 15_000,
                lifetime: 5,
                jkt: None,
            },
        );
        with.exchanged_tokens.insert(
            "access_token ledger  read".into(),
            ResourceToken::obtained(AccessToken::new("EXC-secret".into()), None, 60, 15_000),
        );
        let sealed = with.seal(&ticket, &key);
        assert!(!sealed.windows(10).any(|w| w == b"RES-secret"));
        assert!(!sealed.windows(10).any(|w| w == b"EXC-secret"));
        let opened = Record::open(&sealed, &ticket, &key).unwrap();
        let kept = &opened.resource_tokens["urn:x:orders orders:read"];
        assert_eq!((kept.access_token.expose(), kept.expires_at), ("RES-secret", 20));
        let exchanged = &opened.exchanged_tokens["access_token ledger  read"];
        assert_eq!(
            (exchanged.access_token.expose(), exchanged.expires_at),
            ("EXC-secret", 75)
        );
        // A session without them writes what earlier releases wrote.
        let json = serde_json::to_string(&record()).unwrap();
        assert!(!json.contains("resource_tokens"), "{json}");
        assert!(!json.contains("exchanged_tokens"), "{json}");
    }

    #[test]
    fn ck12_store_keys_are_hashed_and_hash_tagged() {
        let ticket = Ticket::generate(0);
        let key = store_key(&ticket);
        assert!(key.starts_with("cloakroom:{") && key.ends_with("}:s"), "{key}");
        let sid_hex = hex::encode(ticket.sid.expose());
        assert!(!key.contains(&sid_hex));
    }
}
