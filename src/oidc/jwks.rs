//! The IdP's signing keys, cached, refetched on an unknown `kid` at most
//! once per throttle window (threat-model T24). Keys come only from the
//! metadata's `jwks_uri`; `jku`, `x5u` and `jwk` token headers are ignored.
//!
//! The window counts refetches for unknown kids only, not the first fetch:
//! an IdP that rotates its key just after we first read its JWKS (or just
//! before it signs, ID-18) is followed at once, not after the window.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::{http, IdpError};

/// Minimum time between two fetches caused by unknown key ids.
const REFETCH_THROTTLE: Duration = Duration::from_secs(10);

pub struct Jwks {
    uri: Url,
    state: Mutex<State>,
}

struct State {
    keys: Arc<JwkSet>,
    /// Whether the JWKS was ever read.
    fetched: bool,
    /// The last refetch an unknown `kid` caused: the throttle's window.
    refetched_at: Option<Instant>,
}

// === impl Jwks ===

impl Jwks {
    pub fn new(uri: Url) -> Self {
        Self {
            uri,
            state: Mutex::new(State {
                keys: Arc::new(JwkSet { keys: Vec::new() }),
                fetched: false,
                refetched_at: None,
            }),
        }
    }

    /// The key a token names (or the only candidate when it names none).
    /// Fails closed: an unknown `kid` after a throttled refetch is an error.
    pub async fn find(&self, client: &reqwest::Client, kid: Option<&str>) -> Result<Option<Jwk>, IdpError> {
        let mut state = self.state.lock().await;
        if let Some(key) = pick(&state.keys, kid) {
            return Ok(Some(key));
        }
        if state.fetched {
            let may_refetch = state
                .refetched_at
                .is_none_or(|at| at.elapsed() >= REFETCH_THROTTLE);
            if !may_refetch {
                return Ok(None);
            }
            state.refetched_at = Some(Instant::now());
        }
        let document: serde_json::Value = http::json("jwks", client.get(self.uri.clone())).await?;
        state.fetched = true;
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
        state.keys = Arc::new(JwkSet { keys });
        Ok(pick(&state.keys, kid))
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
