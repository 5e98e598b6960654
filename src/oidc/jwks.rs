//! The IdP's signing keys, cached, fetched again on an unknown `kid` at
//! most once per throttle window (threat-model T24). Keys come only from the
//! metadata's `jwks_uri`; `jku`, `x5u` and `jwk` token headers are ignored.
//!
//! Every attempt opens the window before it is sent, failed ones included:
//! while the IdP answers 429 or 503, a flood of tokens naming random kids
//! still asks it once per window. One exception keeps key rotation
//! followed: the first fetch that succeeds closes the window again, so an
//! IdP that rotates its key just after we first read its JWKS (or just
//! before it signs, ID-18) is followed at once, not after the window.
//!
//! Lookups of a known key never wait for a fetch: the keys sit behind a
//! short lock of their own, and fetches queue behind another (one flight).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::time::Instant;
use url::Url;

use super::error::IdpError;
use super::http;

/// Minimum time between two fetches caused by unknown key ids.
const REFETCH_THROTTLE: Duration = Duration::from_secs(10);

pub struct Jwks {
    uri: Url,
    state: Mutex<State>,
    /// Held across a fetch: one flight at a time; waiters then read its keys.
    fetching: tokio::sync::Mutex<()>,
}

struct State {
    keys: Arc<JwkSet>,
    /// Whether a fetch ever succeeded.
    fetched: bool,
    /// The last attempt to fetch, whatever its outcome: the throttle's window.
    attempted_at: Option<Instant>,
}

// === impl Jwks ===

impl Jwks {
    pub fn new(uri: Url) -> Self {
        Self {
            uri,
            state: Mutex::new(State {
                keys: Arc::new(JwkSet { keys: Vec::new() }),
                fetched: false,
                attempted_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The key a token names (or the only candidate when it names none).
    /// Fails closed: an unknown `kid` after a throttled refetch is an error.
    pub async fn find(&self, client: &reqwest::Client, kid: Option<&str>) -> Result<Option<Jwk>, IdpError> {
        if let Some(key) = pick(&self.state().keys, kid) {
            return Ok(Some(key));
        }
        let _flight = self.fetching.lock().await;
        {
            let mut state = self.state();
            // A flight this one waited for may have brought the key.
            if let Some(key) = pick(&state.keys, kid) {
                return Ok(Some(key));
            }
            if state
                .attempted_at
                .is_some_and(|at| at.elapsed() < REFETCH_THROTTLE)
            {
                if state.fetched {
                    return Ok(None);
                }
                // Never read yet: the IdP is the trouble, not the token.
                return Err(IdpError::Unreachable(
                    "the JWKS could not be read; the next attempt waits for the throttle window".into(),
                ));
            }
            state.attempted_at = Some(Instant::now());
        }
        let document: serde_json::Value = http::json("jwks", client.get(self.uri.clone())).await?;
        // One key this version cannot read must not hide the others (ID-22).
        let keys = document
            .get("keys")
            .and_then(|k| k.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let keys = Arc::new(JwkSet { keys });
        let mut state = self.state();
        if !state.fetched {
            // The first read does not count against a rotation seen next.
            state.fetched = true;
            state.attempted_at = None;
        }
        state.keys = keys.clone();
        Ok(pick(&keys, kid))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held left whole values behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn pick(keys: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => keys.find(kid).cloned(),
        // No `kid`: acceptable only when there is exactly one signing key.
        None => {
            let signing: Vec<&Jwk> = keys
                .keys
                .iter()
                .filter(|k| {
                    !matches!(
                        k.common.public_key_use,
                        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                    )
                })
                .collect();
            (signing.len() == 1).then(|| signing[0].clone())
        }
    }
}
