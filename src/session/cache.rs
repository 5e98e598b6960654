//! A replica-local cache of session records in front of Redis.
//!
//! The common request reads its session from memory instead of Redis. Every
//! write or delete of a session (touch, refresh, logout, revocation) is
//! published on a Redis channel; every replica drops its copy when the
//! message arrives, so a logged-out cookie is refused everywhere on its next
//! request. While the subscription is down, messages could be missed, so
//! the cache is emptied and bypassed until it is back.
//!
//! Only session records (`…:s`) are cached; locks and completed-login
//! claims always go to Redis. Values stay sealed in the cache, exactly as in Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::redis::RedisStore;
use super::store::{Announcements, IndexEntry, SessionStore, StoreError, Versioned};

/// The channel invalidations travel on.
pub const CHANNEL: &str = "cloakroom:invalidate";
/// An entry older than this is read again even without a message: a bound
/// on the damage of a message lost in a way the subscriber did not notice.
const MAX_AGE: Duration = Duration::from_secs(30);
/// How often the subscription is checked, and how long its server may take
/// to answer: the longest a silent server leaves the cache on.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// Beyond this many entries the cache starts over rather than grow.
const MAX_ENTRIES: usize = 100_000;

/// Redis, with a local cache of session records.
#[derive(Clone)]
pub struct CachedStore {
    inner: RedisStore,
    cache: Arc<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<String, (Versioned, Instant)>>,
    /// Set only while the invalidation subscription is live.
    live: AtomicBool,
}

// === impl CachedStore ===

impl CachedStore {
    /// Wraps `inner` and subscribes to invalidations through it.
    pub fn new(inner: RedisStore) -> Self {
        let cache = Arc::new(Cache::default());
        tokio::spawn(subscribe(inner.clone(), Arc::downgrade(&cache)));
        Self { inner, cache }
    }

    fn cacheable(key: &str) -> bool {
        key.ends_with(":s")
    }

    /// Drops the local copy and tells the other replicas to drop theirs.
    async fn invalidate(&self, key: &str) {
        if Self::cacheable(key) {
            self.cache.forget(key);
            if let Err(e) = self.inner.publish(CHANNEL, key).await {
                tracing::warn!(error = %e, "could not publish a session invalidation");
            }
        }
    }
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let cacheable = Self::cacheable(key) && self.cache.live.load(Ordering::Acquire);
        if cacheable {
            if let Some(hit) = self.cache.lookup(key) {
                return Ok(Some(hit));
            }
        }
        let found = self.inner.get(key).await?;
        if let (true, Some(value)) = (cacheable, &found) {
            self.cache.insert(key, value.clone());
        }
        Ok(found)
    }

    async fn get_latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let found = self.inner.get(key).await?;
        match &found {
            Some(value) if Self::cacheable(key) => self.cache.insert(key, value.clone()),
            _ => self.cache.forget(key),
        }
        Ok(found)
    }

    async fn put(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64, StoreError> {
        let result = self.inner.put(key, value, expected, ttl).await;
        // Written, or refused because our copy was stale: either way the
        // local copy is wrong now.
        if matches!(result, Ok(_) | Err(StoreError::Conflict)) {
            self.invalidate(key).await;
        }
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await?;
        self.invalidate(key).await;
        Ok(())
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_if(key, value).await?;
        self.invalidate(key).await;
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    // Indexes and announcements are never cached.

    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.inner.index_add(index, entry, ttl, max).await
    }

    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.index_touch(index, key, last_seen, ttl).await
    }

    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError> {
        self.inner.index_remove(index, keys).await
    }

    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.inner.index_list(index).await
    }

    async fn announce_ended(&self, key: &str) -> Result<(), StoreError> {
        self.inner.announce_ended(key).await
    }

    async fn ended_announcements(&self) -> Result<Announcements, StoreError> {
        self.inner.ended_announcements().await
    }
}

// === impl Cache ===

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Versioned, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, key: &str) -> Option<Versioned> {
        self.lock()
            .get(key)
            .filter(|(_, at)| at.elapsed() < MAX_AGE)
            .map(|(v, _)| v.clone())
    }

    fn insert(&self, key: &str, value: Versioned) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_owned(), (value, Instant::now()));
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::Release);
        }
        // Anything cached before (re)subscribing may have missed a message.
        self.lock().clear();
        if live {
            self.live.store(true, Ordering::Release);
        }
    }
}

/// Keeps a subscription to [`CHANNEL`] alive for as long as the cache is.
async fn subscribe(store: RedisStore, cache: std::sync::Weak<Cache>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(live) = cache.upgrade() else { return };
        let subscribed = async {
            let client = store.subscriber().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                live.set_live(true);
                delay = Duration::from_millis(100);
                drop(live);
                let (mut sink, mut messages) = pubsub.split();
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                heartbeat.tick().await;
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let Some(cache) = cache.upgrade() else { return };
                            if let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) {
                                cache.forget(key);
                            }
                        }
                        _ = heartbeat.tick() => {
                            // A server cut off by a partition closes nothing:
                            // only asking it tells that messages stopped.
                            let pong = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) || cache.strong_count() == 0 {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!("session invalidation subscription lost; local cache off until it is back");
            }
            Err(e) => {
                tracing::debug!(error = %e, "session invalidation subscription failed");
                drop(live);
            }
        }
        if let Some(cache) = cache.upgrade() {
            cache.set_live(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
