//! The session record: what the store holds for one session, sealed.
//!
//! Sealed with AES-256-GCM under the per-session key that only the cookie
//! carries, with the store key as associated data, so a record cannot be
//! moved under another session's key (threat-model T09, CK-14). Whoever
//! reads the store alone recovers nothing.
//!
//! Two formats, told apart by the first byte sealed: 1, JSON (`{`), which
//! every release reads; and 2, compact (`wire.rs`: postcard, each JWT as
//! its decoded segments (`jwt.rs`), the claims relative to the ID token
//! (`claims.rs`)), two thirds of the bytes. Every release reads both;
//! `session.record_format` says which one this replica writes, so that a
//! rollout first brings every replica to reading format 2 (RD-13, N2).

mod claims;
mod jwt;
mod wire;

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use hmac::Mac;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use self::jwt::Split;
use self::wire::{Compact, Device, Kept};
use crate::config::RecordFormat;
use crate::cookie::{SealError, Ticket};
use crate::secret::{AccessToken, IdToken, RefreshToken};

/// The JSON format's number, written in every JSON record.
const JSON: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// The format the record was read in (1 JSON, 2 compact; a new one's:
    /// the one it is first written in). Sealing writes the format it is
    /// asked for, whatever this says: JSON says 1.
    #[serde(serialize_with = "json_format")]
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

    /// Seals the record in `format` under the ticket's key, bound to
    /// `store_key`.
    pub fn seal(&self, format: RecordFormat, ticket: &Ticket, store_key: &str) -> Bytes {
        let plain = match format {
            RecordFormat::Json => Zeroizing::new(serde_json::to_vec(self).unwrap_or_default()),
            RecordFormat::Compact => self.compact(),
        };
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: store_key.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Bytes::from(out)
    }

    /// Opens a record of either format. A record of an unknown format is
    /// "no session" (RD-13).
    pub fn open(bytes: &[u8], ticket: &Ticket, store_key: &str) -> Result<Self, SealError> {
        if bytes.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
        let plain = Zeroizing::new(
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
        match plain.split_first() {
            Some((b'{', _)) => {
                let record: Record = serde_json::from_slice(&plain).map_err(|_| SealError::Malformed)?;
                if record.format > JSON {
                    return Err(SealError::Malformed);
                }
                Ok(record)
            }
            Some((&wire::TAG, rest)) => Self::from_compact(rest).ok_or(SealError::Malformed),
            _ => Err(SealError::Malformed),
        }
    }

    /// Format 2's bytes, tag first.
    fn compact(&self) -> Zeroizing<Vec<u8>> {
        let access = Split::new(self.access_token.expose());
        let refresh = self.refresh_token.as_ref().map(|t| Split::new(t.expose()));
        let id = self.id_token.as_ref().map(|t| Split::new(t.expose()));
        let claims = claims::encode(&self.claims, id.as_ref().and_then(|t| t.token().payload()));
        let (resources, exchanged) = (
            split_all(&self.resource_tokens),
            split_all(&self.exchanged_tokens),
        );
        let jwk = self.device.as_ref().map(|d| d.jwk.to_string());
        wire::encode(&Compact {
            access_token: access.token(),
            access_expires_at: self.access_expires_at,
            access_issued_ms: self.access_issued_ms,
            access_lifetime: self.access_lifetime,
            access_jkt: self.access_jkt.as_deref(),
            refresh_token: refresh.as_ref().map(Split::token),
            id_token: id.as_ref().map(Split::token),
            claims: &claims,
            created_at: self.created_at,
            last_seen: self.last_seen,
            resource_tokens: on_wire(&resources),
            exchanged_tokens: on_wire(&exchanged),
            device: self.device.as_ref().zip(jwk.as_deref()).map(|(d, jwk)| Device {
                id: &d.id,
                alg: &d.alg,
                jwk,
                bound_at: d.bound_at,
            }),
        })
    }

    /// The record format 2's `bytes` (after the tag) hold.
    fn from_compact(bytes: &[u8]) -> Option<Self> {
        let wire = wire::decode(bytes)?;
        let payload = wire.id_token.as_ref().and_then(|t| t.payload());
        let read = |tokens: &[Kept<'_>]| {
            tokens
                .iter()
                .map(|t| {
                    let token = ResourceToken {
                        access_token: AccessToken::new(jwt::text(&t.access_token)),
                        expires_at: t.expires_at,
                        issued_ms: t.issued_ms,
                        lifetime: t.lifetime,
                        jkt: t.jkt.map(str::to_owned),
                    };
                    (t.key.to_owned(), token)
                })
                .collect()
        };
        let device = match &wire.device {
            Some(d) => Some(DeviceKey {
                id: d.id.to_owned(),
                alg: d.alg.to_owned(),
                jwk: serde_json::from_str(d.jwk).ok()?,
                bound_at: d.bound_at,
            }),
            None => None,
        };
        Some(Record {
            format: RecordFormat::Compact.number(),
            access_token: AccessToken::new(jwt::text(&wire.access_token)),
            access_expires_at: wire.access_expires_at,
            access_issued_ms: wire.access_issued_ms,
            access_lifetime: wire.access_lifetime,
            access_jkt: wire.access_jkt.map(str::to_owned),
            refresh_token: wire.refresh_token.map(|t| RefreshToken::new(jwt::text(&t))),
            id_token: wire.id_token.map(|t| IdToken::new(jwt::text(&t))),
            claims: claims::decode(wire.claims, payload).ok()?,
            created_at: wire.created_at,
            last_seen: wire.last_seen,
            resource_tokens: read(&wire.resource_tokens),
            exchanged_tokens: read(&wire.exchanged_tokens),
            device,
        })
    }
}

/// Routes' tokens made ready for the wire (format 2).
fn split_all(tokens: &BTreeMap<String, ResourceToken>) -> Vec<(&str, &ResourceToken, Split<'_>)> {
    tokens
        .iter()
        .map(|(key, token)| (key.as_str(), token, Split::new(token.access_token.expose())))
        .collect()
}

/// Routes' tokens on the wire (format 2).
fn on_wire<'a>(tokens: &'a [(&'a str, &'a ResourceToken, Split<'a>)]) -> Vec<Kept<'a>> {
    tokens
        .iter()
        .map(|(key, token, split)| Kept {
            key,
            access_token: split.token(),
            expires_at: token.expires_at,
            issued_ms: token.issued_ms,
            lifetime: token.lifetime,
            jkt: token.jkt.as_deref(),
        })
        .collect()
}

/// A JSON record says format 1, whatever format it was read in.
fn json_format<S: serde::Serializer>(_: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u32(JSON)
}

#[cfg(test)]
mod tests;
