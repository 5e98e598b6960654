//! Sealed cookie values: AES-256-GCM under a key ring.
//!
//! Wire format, base64url without padding:
//!
//! ```text
//! version (1) ‖ kid length (1) ‖ kid ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! The key id and version travel in clear so the right key is found without
//! trial decryption (KR-04). The associated data binds the purpose, version,
//! cookie name and key id: a value sealed for the pre-auth cookie does not
//! open as a session cookie, nor under another name (threat-model T06). Each
//! purpose has its own AES key, derived from the configured secret with HKDF,
//! and every seal draws a fresh random 96-bit nonce (T05).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::config::CookieKey;

/// The format version in the first byte.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Browsers keep at most 4096 bytes per cookie; anything longer is not ours.
pub const MAX_VALUE_LEN: usize = 4096;

/// What a sealed value is for. Part of the associated data and of the key
/// derivation, so one purpose's value never opens as another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Login,
    /// A token of cloakroom's own client (`token: client`) in the shared
    /// store. Not a cookie, but the same ring: every replica already holds
    /// it, it rotates without losing a value (the old key still opens),
    /// and its own HKDF label keeps these keys apart from the cookies'.
    ClientToken,
    /// A session's refresh tokens, sealed a second time beside its record
    /// so that its end can revoke them without the cookie
    /// (`session::revocation`). The same ring for the same reasons; its
    /// own label, so a client token's key opens none of these.
    Revocation,
    /// The bound cookie of a device-bound session (`session::device`).
    Bound,
    /// A challenge a device signs to bind or renew a session; never a
    /// cookie, and never accepted as one.
    DeviceChallenge,
}

/// Why a value does not open. All mean "no valid cookie" to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("cookie value is malformed")]
    Malformed,
    #[error("cookie sealed with an unknown key")]
    UnknownKey,
    #[error("cookie failed authentication")]
    Tampered,
}

/// The configured keys: the first seals, every one unseals.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

struct RingKey {
    id: String,
    /// One key per purpose, in [`Purpose::ALL`]'s order.
    ciphers: Vec<Aes256Gcm>,
}

/// An opened value, and whether it should be re-sealed under the current
/// primary key (it was sealed with an older one: KR-01).
pub struct Opened {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub stale_key: bool,
}

// === impl Purpose ===

impl Purpose {
    const ALL: [Self; 6] = [
        Self::Session,
        Self::Login,
        Self::ClientToken,
        Self::Revocation,
        Self::Bound,
        Self::DeviceChallenge,
    ];

    /// Whether its values travel in a cookie, and so are never longer
    /// than a browser keeps. The others stay in the store, where a long
    /// token (a JWT access token, a large refresh token) is no anomaly.
    fn is_cookie(self) -> bool {
        matches!(self, Purpose::Session | Purpose::Login | Purpose::Bound)
    }

    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::Login => b"login",
            Purpose::ClientToken => b"client token",
            Purpose::Revocation => b"revocation",
            Purpose::Bound => b"bound",
            Purpose::DeviceChallenge => b"device challenge",
        }
    }
}

// === impl KeyRing ===

impl KeyRing {
    /// Builds the ring; `None` when no key is configured.
    pub fn new(keys: &[CookieKey]) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        let keys = keys
            .iter()
            .map(|k| RingKey {
                id: k.id.clone(),
                ciphers: Purpose::ALL
                    .iter()
                    .map(|&purpose| derive(k.secret.expose(), purpose))
                    .collect(),
            })
            .collect();
        Some(Self { keys })
    }

    /// Seals `plaintext` under the primary key for `purpose` and `cookie_name`.
    pub fn seal(&self, purpose: Purpose, cookie_name: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(purpose, cookie_name, &key.id);
        let sealed = key
            .cipher(purpose)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a value sealed by [`KeyRing::seal`]. Cheap checks (length,
    /// encoding, version, key id) come before any decryption.
    pub fn unseal(&self, purpose: Purpose, cookie_name: &str, value: &str) -> Result<Opened, SealError> {
        if value.is_empty() || (purpose.is_cookie() && value.len() > MAX_VALUE_LEN) {
            return Err(SealError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(value).map_err(|_| SealError::Malformed)?;
        let (&version, rest) = raw.split_first().ok_or(SealError::Malformed)?;
        if version != VERSION {
            return Err(SealError::Malformed);
        }
        let (&kid_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if rest.len() < kid_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let kid = std::str::from_utf8(kid).map_err(|_| SealError::Malformed)?;
        let position = self
            .keys
            .iter()
            .position(|k| k.id == kid)
            .ok_or(SealError::UnknownKey)?;
        let key = &self.keys[position];
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let aad = associated_data(purpose, cookie_name, kid);
        let plaintext = key
            .cipher(purpose)
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Tampered)?;
        Ok(Opened {
            plaintext: Zeroizing::new(plaintext),
            stale_key: position != 0,
        })
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

// === impl RingKey ===

impl RingKey {
    fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        // `ALL` lists the variants in declaration order.
        &self.ciphers[purpose as usize]
    }
}

/// One AES key per purpose from the configured secret (HKDF-SHA256).
fn derive(secret: &[u8], purpose: Purpose) -> Aes256Gcm {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"cloakroom cookie v1"), secret);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    let _ = hk.expand(purpose.label(), okm.as_mut());
    Aes256Gcm::new(&(*okm).into())
}

fn associated_data(purpose: Purpose, cookie_name: &str, kid: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48 + cookie_name.len() + kid.len());
    for part in [
        b"cloakroom".as_slice(),
        purpose.label(),
        &[VERSION],
        cookie_name.as_bytes(),
        kid.as_bytes(),
    ] {
        aad.extend_from_slice(part);
        aad.push(0);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn key(id: &str, byte: u8) -> CookieKey {
        CookieKey {
            id: id.into(),
            secret: Secret::new(vec![byte; 32]),
        }
    }

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        KeyRing::new(&keys.iter().map(|(id, b)| key(id, *b)).collect::<Vec<_>>()).unwrap()
    }

    const NAME: &str = "__Host-cloakroom";

    #[test]
    fn round_trip() {
        let r = ring(&[("1", 7)]);
        let v = r.seal(Purpose::Session, NAME, b"ticket");
        let opened = r.unseal(Purpose::Session, NAME, &v).unwrap();
        assert_eq!(&opened.plaintext[..], b"ticket");
        assert!(!opened.stale_key);
    }

    #[test]
    fn ck01_any_flipped_bit_is_refused() {
        let r = ring(&[("1", 7)]);
        let raw = URL_SAFE_NO_PAD
            .decode(r.seal(Purpose::Session, NAME, b"ticket payload"))
            .unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[byte] ^= 1 << bit;
                let result = r.unseal(Purpose::Session, NAME, &URL_SAFE_NO_PAD.encode(&bad));
                assert!(result.is_err(), "byte {byte} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn ck02_ck03_short_empty_garbage_and_huge_values_are_refused() {
        let r = ring(&[("1", 7)]);
        let huge = "A".repeat(8 * 1024);
        for value in ["", "=", "AQ", "AQEx", "not base64!", "ünïcode", huge.as_str()] {
            assert_eq!(
                r.unseal(Purpose::Session, NAME, value).err(),
                Some(SealError::Malformed),
                "{value:.20}"
            );
        }
    }

    #[test]
    fn each_purpose_has_its_own_key_and_no_value_opens_as_anothers() {
        let r = ring(&[("1", 7)]);
        for (i, purpose) in Purpose::ALL.into_iter().enumerate() {
            assert_eq!(purpose as usize, i, "ALL is in declaration order");
            let sealed = r.seal(purpose, NAME, b"x");
            for other in Purpose::ALL {
                assert_eq!(
                    r.unseal(other, NAME, &sealed).is_ok(),
                    other == purpose,
                    "{purpose:?} opened as {other:?}"
                );
            }
        }
    }

    #[test]
    fn only_cookie_values_are_bounded_by_a_cookies_length() {
        let r = ring(&[("1", 7)]);
        let long = vec![b'x'; MAX_VALUE_LEN];
        for purpose in [Purpose::ClientToken, Purpose::Revocation] {
            let sealed = r.seal(purpose, "cloakroom:{k}:s", &long);
            assert!(sealed.len() > MAX_VALUE_LEN);
            let opened = r.unseal(purpose, "cloakroom:{k}:s", &sealed).unwrap();
            assert_eq!(opened.plaintext.len(), long.len(), "{purpose:?}");
        }
        let cookie = r.seal(Purpose::Session, NAME, &long);
        assert_eq!(
            r.unseal(Purpose::Session, NAME, &cookie).err(),
            Some(SealError::Malformed)
        );
    }

    #[test]
    fn ck05_kr02_another_deployments_or_a_removed_key_is_refused() {
        let ours = ring(&[("1", 7)]);
        let theirs = ring(&[("1", 9)]);
        let v = theirs.seal(Purpose::Session, NAME, b"x");
        assert_eq!(
            ours.unseal(Purpose::Session, NAME, &v).err(),
            Some(SealError::Tampered)
        );
        let removed = ring(&[("2", 8)]).seal(Purpose::Session, NAME, b"x");
        assert_eq!(
            ours.unseal(Purpose::Session, NAME, &removed).err(),
            Some(SealError::UnknownKey)
        );
    }

    #[test]
    fn ck06_values_do_not_cross_purposes_or_cookie_names() {
        let r = ring(&[("1", 7)]);
        let login = r.seal(Purpose::Login, "__Host-cloakroom-login", b"x");
        assert!(r.unseal(Purpose::Session, NAME, &login).is_err());
        assert!(r
            .unseal(Purpose::Session, "__Host-cloakroom-login", &login)
            .is_err());
        let session = r.seal(Purpose::Session, NAME, b"x");
        assert!(r.unseal(Purpose::Login, NAME, &session).is_err());
        assert!(r.unseal(Purpose::Session, "__Host-other", &session).is_err());
    }

    #[test]
    fn ck07_every_seal_uses_a_fresh_nonce() {
        let r = ring(&[("1", 7)]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let raw = URL_SAFE_NO_PAD
                .decode(r.seal(Purpose::Session, NAME, b"same"))
                .unwrap();
            assert!(seen.insert(raw[3..3 + NONCE_LEN].to_vec()), "nonce repeated");
        }
    }

    #[test]
    fn kr01_older_keys_open_and_ask_to_be_resealed() {
        let old = ring(&[("1", 7)]);
        let rotated = ring(&[("2", 8), ("1", 7)]);
        let v = old.seal(Purpose::Session, NAME, b"x");
        let opened = rotated.unseal(Purpose::Session, NAME, &v).unwrap();
        assert!(opened.stale_key);
        let resealed = rotated.seal(Purpose::Session, NAME, &opened.plaintext);
        assert!(
            !rotated
                .unseal(Purpose::Session, NAME, &resealed)
                .unwrap()
                .stale_key
        );
    }

    #[test]
    fn kr09_debug_shows_key_ids_only() {
        let debug = format!("{:?}", ring(&[("1", 7)]));
        assert_eq!(debug, "KeyRing { key_ids: [\"1\"] }");
    }
}
