//! A lease lock in the session store, for one refresh across replicas.
//!
//! Built on the store's compare-and-set: taking is "create if absent",
//! renewing and releasing are "only if the version I hold is still there".
//! The lease expires by its TTL if its holder dies (RD-10), and a late
//! holder cannot release or renew a lease someone else has taken since.

use std::time::Duration;

use bytes::Bytes;

use super::store::{SessionStore, StoreError};

/// A held refresh lease. Renew it while working; release it when done.
pub struct RefreshLease {
    key: String,
    /// A random owner token: only its holder matches it.
    owner: Bytes,
    version: u64,
}

/// The lock key that belongs with a session's store key (same hash tag).
pub fn lock_key(session_key: &str) -> String {
    format!("{}:lock", session_key.trim_end_matches(":s"))
}

/// Tries to take the lease; `None` if someone else holds it.
pub async fn acquire(
    store: &dyn SessionStore,
    key: &str,
    ttl: Duration,
) -> Result<Option<RefreshLease>, StoreError> {
    let owner = Bytes::from(crate::random::token(16));
    match store.put(key, owner.clone(), 0, ttl).await {
        Ok(version) => Ok(Some(RefreshLease {
            key: key.to_owned(),
            owner,
            version,
        })),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e),
    }
}

// === impl RefreshLease ===

impl RefreshLease {
    /// Extends the lease; `false` if it was lost (expired and taken).
    pub async fn renew(&mut self, store: &dyn SessionStore, ttl: Duration) -> Result<bool, StoreError> {
        // Version and owner must both still match: versions restart at 1
        // when a lease expires and is taken again.
        let current = store.get(&self.key).await?;
        if current.is_none_or(|c| c.value != self.owner || c.version != self.version) {
            return Ok(false);
        }
        match store.put(&self.key, self.owner.clone(), self.version, ttl).await {
            Ok(version) => {
                self.version = version;
                Ok(true)
            }
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases the lease if it is still ours.
    pub async fn release(self, store: &dyn SessionStore) -> Result<(), StoreError> {
        store.delete_if(&self.key, &self.owner).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn rd10_one_holder_at_a_time_and_orphans_expire() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(10);
        let mut first = acquire(&store, "k:lock", ttl).await.unwrap().expect("free");
        assert!(acquire(&store, "k:lock", ttl).await.unwrap().is_none(), "held");
        assert!(first.renew(&store, ttl).await.unwrap());
        tokio::time::sleep(Duration::from_secs(11)).await;
        // The holder died without releasing: the lease expired.
        let second = acquire(&store, "k:lock", ttl)
            .await
            .unwrap()
            .expect("expired lease is free");
        // The late first holder can neither renew nor release it.
        assert!(!first.renew(&store, ttl).await.unwrap());
        first.release(&store).await.unwrap();
        assert!(
            acquire(&store, "k:lock", ttl).await.unwrap().is_none(),
            "still the second's"
        );
        second.release(&store).await.unwrap();
        assert!(acquire(&store, "k:lock", ttl).await.unwrap().is_some());
    }

    #[test]
    fn lock_keys_share_the_session_hash_tag() {
        assert_eq!(lock_key("cloakroom:{abc}:s"), "cloakroom:{abc}:lock");
    }
}
