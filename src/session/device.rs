//! Device-bound sessions (DBSC, W3C webappsec-dbsc): what a session keeps
//! of its device, the bound cookie, and the challenges the device signs.
//!
//! A browser with DBSC holds a key pair it cannot export. At registration
//! (`auth::device`) the public key goes into the session record, which
//! every replica reads. From then on the session cookie alone opens
//! nothing: each request that loads the session must also carry the bound
//! cookie, which lives `session.bound_cookie_lifetime` and which only a
//! proof of the key renews. A copied cookie jar is worth that long at most.
//!
//! The bound cookie and the challenges are sealed with the cookie key ring
//! (each under its own purpose) and name the session by its store key, so
//! any replica issues and checks them without a store read. A challenge is
//! spent once across replicas, by a claim in the store. A session can be
//! bound only in its first [`REGISTRATION_WINDOW`]: later, whoever holds a
//! copy of an unbound cookie could otherwise bind it to a key of theirs.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::record::DeviceKey;
use super::sessions::{Loaded, Sessions};
use super::store::StoreError;
use crate::config::DeviceBinding;
use crate::cookie::Purpose;
use crate::error::DeviceRefusal;
use crate::metrics::{Anomaly, DeviceEvent};

/// How long after its login a session may be bound (and is offered to).
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(300);

/// How much longer than a bound cookie a challenge lives: a browser signs
/// the challenge it was handed at its last refresh when its cookie runs
/// out, so the challenge must outlive the cookie.
const CHALLENGE_MARGIN: Duration = Duration::from_secs(300);

/// The associated-data name of challenges: not a cookie, but the ring's
/// seal wants one.
const CHALLENGE_NAME: &str = "device challenge";

/// What a bound cookie and a challenge hold, sealed: the session's store
/// key, and until when it is good; a challenge also its own randomness.
#[derive(Serialize, Deserialize)]
struct Sealed {
    k: String,
    e: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    n: String,
}

/// Why a challenge is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the challenge is not one of ours, or not this session's")]
    Foreign,
    #[error("the challenge has expired")]
    Expired,
    #[error("the challenge was used before")]
    Spent,
}

// === impl Sessions ===

impl Sessions {
    /// Whether this session may still be bound, and so is offered to.
    pub fn binding_offered(&self, loaded: &Loaded) -> bool {
        self.config.device_binding != DeviceBinding::Off
            && loaded.record.device.is_none()
            && self.clock.now() < loaded.record.created_at + REGISTRATION_WINDOW.as_secs()
    }

    /// A bound session needs its bound cookie; under `require`, a session
    /// past its registration window needs to be bound. Neither refusal is
    /// a logout: the session stays for the device that holds its key.
    pub(super) fn check_device(&self, loaded: &Loaded, headers: &HeaderMap) -> Result<(), DeviceRefusal> {
        if self.config.device_binding == DeviceBinding::Off {
            return Ok(());
        }
        let Some(device) = &loaded.record.device else {
            if self.config.device_binding == DeviceBinding::Require && !self.binding_offered(loaded) {
                self.metrics.device(DeviceEvent::Unbound);
                return Err(DeviceRefusal::BindingRequired);
            }
            return Ok(());
        };
        let bound = crate::cookie::CookieNames::find(headers, &self.names.bound)
            .and_then(|value| self.open_sealed(Purpose::Bound, &self.names.bound, value))
            .filter(|b| b.k == loaded.key && b.n == device.id && b.e > self.clock.now());
        if bound.is_some() {
            return Ok(());
        }
        match headers.get("secure-session-skipped") {
            // The browser says why it has no fresh cookie (it could not
            // reach the refresh endpoint, or spent its quota): no theft.
            Some(reason) => {
                self.metrics.device(DeviceEvent::Skipped);
                tracing::info!(
                    session = %crate::metrics::key_hash(&loaded.key),
                    reason = reason.to_str().unwrap_or("-"),
                    "device-bound session without its bound cookie: the browser skipped its refresh"
                );
            }
            None => self.metrics.anomaly(
                Anomaly::SessionCookieWithoutDevice,
                Some(&loaded.key),
                loaded.client,
                None,
            ),
        }
        Err(DeviceRefusal::ProofRequired)
    }

    /// The `Set-Cookie` of a fresh bound cookie for the session `key`
    /// bound to `device`.
    pub fn bound_cookie(&self, key: &str, device: &DeviceKey) -> HeaderValue {
        let lifetime = self.config.bound_cookie_lifetime;
        let sealed = Sealed {
            k: key.to_owned(),
            e: self.clock.now() + lifetime.as_secs(),
            n: device.id.clone(),
        };
        let value = self.seal(Purpose::Bound, &self.names.bound, &sealed);
        self.names.set_bound(&value, lifetime)
    }

    /// A new challenge for the session `key` to sign.
    pub fn device_challenge(&self, key: &str) -> String {
        let nonce = crate::random::bytes::<16>();
        let lifetime = self.config.bound_cookie_lifetime + CHALLENGE_MARGIN;
        let sealed = Sealed {
            k: key.to_owned(),
            e: self.clock.now() + lifetime.as_secs(),
            n: hex::encode(nonce),
        };
        self.seal(Purpose::DeviceChallenge, CHALLENGE_NAME, &sealed)
    }

    /// Takes `challenge`, signed for the session `key`: one of ours, for
    /// this session, not expired, and never taken before on any replica.
    pub async fn take_challenge(
        &self,
        key: &str,
        challenge: &str,
    ) -> Result<Result<(), ChallengeError>, StoreError> {
        let Some(opened) = self.open_sealed(Purpose::DeviceChallenge, CHALLENGE_NAME, challenge) else {
            return Ok(Err(ChallengeError::Foreign));
        };
        if opened.k != key {
            return Ok(Err(ChallengeError::Foreign));
        }
        let now = self.clock.now();
        if opened.e <= now {
            return Ok(Err(ChallengeError::Expired));
        }
        let claim = format!(
            "cloakroom:{{{}}}:dc",
            hex::encode(&sha2::Sha256::digest(challenge.as_bytes())[..16])
        );
        let ttl = Duration::from_secs(opened.e - now);
        match self.store.put(&claim, Default::default(), 0, ttl).await {
            Ok(_) => Ok(Ok(())),
            Err(StoreError::Conflict) => Ok(Err(ChallengeError::Spent)),
            Err(e) => Err(e),
        }
    }

    /// Keeps `device` in the session's record: a write that loses to
    /// another (a touch) reads the record again and tries once more. A
    /// session bound meanwhile stays bound to its first key: `Ok(false)`.
    pub async fn bind(&self, loaded: &mut Loaded, device: &DeviceKey) -> Result<bool, StoreError> {
        for _ in 0..3 {
            if loaded.record.device.is_some() {
                return Ok(false);
            }
            loaded.record.device = Some(device.clone());
            let ttl = self.ttl(&loaded.ticket, self.clock.now());
            match self
                .write(&loaded.ticket, &loaded.key, &loaded.record, loaded.version, ttl)
                .await
            {
                Ok(version) => {
                    loaded.version = version;
                    self.metrics.device(DeviceEvent::Registered);
                    return Ok(true);
                }
                Err(StoreError::Conflict) => {
                    let client = loaded.client;
                    *loaded = self
                        .open_ticket(loaded.ticket.clone())
                        .await
                        .map_err(|_| StoreError::Conflict)?;
                    loaded.client = client;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    fn seal(&self, purpose: Purpose, name: &str, sealed: &Sealed) -> String {
        let json = serde_json::to_vec(sealed).unwrap_or_default();
        self.ring.seal(purpose, name, &json)
    }

    fn open_sealed(&self, purpose: Purpose, name: &str, value: &str) -> Option<Sealed> {
        let opened = self.ring.unseal(purpose, name, value).ok()?;
        serde_json::from_slice(&opened.plaintext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::testing::{login, sessions_counted};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_challenge_is_taken_once_for_its_own_session_only() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (sessions, _) = sessions_counted(10, metrics).await;
        let alice = sessions
            .open(&login(&sessions, "alice", "s1").await, None)
            .await
            .unwrap();
        let bob = sessions
            .open(&login(&sessions, "bob", "s2").await, None)
            .await
            .unwrap();
        let challenge = sessions.device_challenge(&alice.key);
        assert_eq!(
            sessions.take_challenge(&bob.key, &challenge).await.unwrap(),
            Err(ChallengeError::Foreign)
        );
        assert_eq!(
            sessions.take_challenge(&alice.key, &challenge).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            sessions.take_challenge(&alice.key, &challenge).await.unwrap(),
            Err(ChallengeError::Spent)
        );
        let later = sessions.device_challenge(&alice.key);
        sessions.clock.advance(Duration::from_secs(3600));
        assert_eq!(
            sessions.take_challenge(&alice.key, &later).await.unwrap(),
            Err(ChallengeError::Expired)
        );
        let mut tampered = sessions.device_challenge(&alice.key).into_bytes();
        tampered[20] ^= 1;
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            sessions.take_challenge(&alice.key, &tampered).await.unwrap(),
            Err(ChallengeError::Foreign)
        );
    }

    #[tokio::test]
    async fn a_bound_session_needs_its_own_fresh_bound_cookie() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (sessions, _) = sessions_counted(10, metrics).await;
        let headers = login(&sessions, "alice", "s1").await;
        let mut loaded = sessions.open(&headers, None).await.unwrap();
        assert!(sessions.binding_offered(&loaded));
        assert!(
            sessions.check_device(&loaded, &headers).is_ok(),
            "unbound: the cookie is enough"
        );

        let device = DeviceKey::new("ES256", serde_json::json!({"kty": "EC"}), 0);
        assert!(sessions.bind(&mut loaded, &device).await.unwrap());
        let other = DeviceKey::new("ES256", serde_json::json!({"kty": "EC"}), 0);
        assert!(!sessions.bind(&mut loaded, &other).await.unwrap(), "bound once");
        let loaded = sessions.open(&headers, None).await.unwrap();
        assert!(!sessions.binding_offered(&loaded));
        assert_eq!(
            sessions.check_device(&loaded, &headers),
            Err(DeviceRefusal::ProofRequired)
        );

        let set = sessions.bound_cookie(&loaded.key, &device);
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut with = headers.clone();
        with.append(http::header::COOKIE, pair.parse().unwrap());
        assert!(sessions.check_device(&loaded, &with).is_ok());

        // Another device's cookie, for the same session, does not do.
        let foreign = sessions.bound_cookie(&loaded.key, &other);
        let pair = foreign.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut wrong = headers.clone();
        wrong.append(http::header::COOKIE, pair.parse().unwrap());
        assert_eq!(
            sessions.check_device(&loaded, &wrong),
            Err(DeviceRefusal::ProofRequired)
        );

        sessions.clock.advance(Duration::from_secs(601));
        assert_eq!(
            sessions.check_device(&loaded, &with),
            Err(DeviceRefusal::ProofRequired),
            "past its lifetime, whatever the browser kept"
        );
    }
}
