//! Tokens of cloakroom's own client (`token: client`, RFC 6749 §4.4): no
//! session, one token per (resource, scopes) shared by every replica
//! through the store, fetched once per expiry across them.
//!
//! The same machinery as a session's refresh: one flight per token in a
//! replica, a lease in the store across replicas (renewed while the IdP
//! call runs), the store read again under the lease so a token another
//! replica wrote is used instead of a second grant, and callers that find
//! the lease taken wait for that write. The token is sealed in the store
//! with a key of its own purpose derived from the cookie key ring
//! ([`Purpose::ClientToken`]), with its store key as associated data, so
//! whoever reads the store alone holds nothing usable. This replica also
//! keeps the token it last saw, so a fresh one costs no store read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::flight::{point_ms, renewing, Fresh, RefreshError, Refresher, LEASE_TTL, OBTAIN_TIMEOUT, POLL};
use crate::config::Audience;
use crate::cookie::Purpose;
use crate::metrics::Grant;
use crate::secret::AccessToken;
use crate::session::lock;

/// What the store holds for one client token, sealed.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: AccessToken,
    expires_at: u64,
    issued_ms: u64,
    lifetime: u64,
    /// The DPoP key it is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
}

// === impl Refresher ===

impl Refresher {
    /// A token of cloakroom's own client for `audience`: the one this
    /// replica holds while fresh, else the store's, else one grant across
    /// replicas.
    pub async fn client_token(self: &Arc<Self>, audience: &Arc<Audience>) -> Result<Fresh, RefreshError> {
        let key = store_key(audience);
        let now_ms = self.sessions.clock.now_ms();
        if let Some((fresh, due)) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            // Kept across reloads: its key may have left the ring since.
            if now_ms < *due && self.provable(fresh.jkt.as_deref()) {
                return Ok(fresh.clone());
            }
        }
        self.join_flight(key.clone(), || {
            let (this, audience) = (self.clone(), audience.clone());
            async move { obtain(&this, &audience, &key).await }
        })
        .await
    }
}

/// The store key of `audience`'s client token: a hash, so no resource URL
/// or scope shows in the store's key space; its own hash tag.
fn store_key(audience: &Audience) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"cloakroom client token ")
        .chain_update(audience.key().as_bytes())
        .finalize();
    format!("cloakroom:{{c{}}}:s", hex::encode(&digest[..16]))
}

/// One flight: the store's token if fresh, else a grant under the lease.
async fn obtain(refresher: &Refresher, audience: &Audience, key: &str) -> Result<Fresh, RefreshError> {
    let store = refresher.sessions.store.as_ref();
    let lock_key = lock::lock_key(key);
    let deadline = tokio::time::Instant::now() + OBTAIN_TIMEOUT;
    let lease = loop {
        if let (_, Some(fresh)) = read(refresher, key).await? {
            return Ok(fresh);
        }
        match lock::acquire(store, &lock_key, LEASE_TTL)
            .await
            .map_err(RefreshError::store)?
        {
            Some(lease) => break lease,
            // Another replica is fetching it: take its token when written.
            None if tokio::time::Instant::now() >= deadline => return Err(RefreshError::Pending),
            None => tokio::time::sleep(POLL).await,
        }
    };
    renewing(refresher, lease, granted(refresher, audience, key)).await
}

/// Under the lease: the store once more, then the grant and its write.
async fn granted(refresher: &Refresher, audience: &Audience, key: &str) -> Result<Fresh, RefreshError> {
    let (version, fresh) = read(refresher, key).await?;
    if let Some(fresh) = fresh {
        return Ok(fresh);
    }
    let metrics = &refresher.sessions.metrics;
    let tokens = metrics
        .token_call(
            Grant::ClientCredentials,
            refresher.idp.client_credentials(audience),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the IdP refused or missed a client credentials grant");
            RefreshError::from_idp(e)
        })?;
    let now_ms = refresher.sessions.clock.now_ms();
    let lifetime = tokens.access_token_lifetime(now_ms / 1000);
    let stored = Stored {
        access_token: tokens.access_token,
        expires_at: (now_ms / 1000).saturating_add(lifetime),
        issued_ms: now_ms,
        lifetime,
        jkt: tokens.jkt,
    };
    let json = zeroize::Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default());
    let sealed = refresher.sessions.ring.seal(Purpose::ClientToken, key, &json);
    let ttl = std::time::Duration::from_secs(lifetime.max(1));
    // Under the lease nobody else writes; a conflict means the lease was
    // lost and another replica's token is there: either serves.
    match refresher
        .sessions
        .store
        .put(key, sealed.into(), version, ttl)
        .await
    {
        Ok(_) | Err(crate::session::StoreError::Conflict) => {}
        Err(e) => tracing::warn!(error = %e, "a client token could not be shared through the store"),
    }
    Ok(remember(refresher, key, &stored))
}

/// The stored token's version (0: none) and the token if it is fresh.
async fn read(refresher: &Refresher, key: &str) -> Result<(u64, Option<Fresh>), RefreshError> {
    let Some(found) = refresher
        .sessions
        .store
        .get_latest(key)
        .await
        .map_err(RefreshError::store)?
    else {
        return Ok((0, None));
    };
    let opened = std::str::from_utf8(&found.value)
        .ok()
        .and_then(|text| {
            refresher
                .sessions
                .ring
                .unseal(Purpose::ClientToken, key, text)
                .ok()
        })
        .and_then(|o| serde_json::from_slice::<Stored>(&o.plaintext).ok());
    // Sealed under a key no longer in the ring: fetched anew.
    let Some(stored) = opened else {
        return Ok((found.version, None));
    };
    let due = due_ms(refresher, &stored);
    let usable = refresher.sessions.clock.now_ms() < due && refresher.provable(stored.jkt.as_deref());
    let fresh = usable.then(|| remember(refresher, key, &stored));
    Ok((found.version, fresh))
}

fn due_ms(refresher: &Refresher, stored: &Stored) -> u64 {
    point_ms(
        refresher.sessions.config.refresh_skew,
        Some(stored.issued_ms),
        Some(stored.lifetime),
        stored.expires_at,
    )
}

/// Keeps `stored` as this replica's copy, and hands it out.
fn remember(refresher: &Refresher, key: &str, stored: &Stored) -> Fresh {
    let fresh = Fresh {
        access_token: Arc::new(stored.access_token.clone()),
        expires_at: stored.expires_at,
        jkt: stored.jkt.clone(),
    };
    let due = due_ms(refresher, stored);
    refresher
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.to_owned(), (fresh.clone(), due));
    fresh
}
