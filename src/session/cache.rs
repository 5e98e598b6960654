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
//!
//! The cache holds at most `max_entries` records (`local_cache.max_entries`).
//! Past that bound the least used make room, one at a time: a replica that
//! meets more sessions than it can hold keeps the busy ones and never starts
//! over, so a large deployment does not send every request to Redis at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::redis::RedisStore;
use super::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};

/// The channel invalidations travel on.
pub const CHANNEL: &str = "cloakroom:invalidate";
/// An entry older than this is read again even without a message: a bound
/// on the damage of a message lost in a way the subscriber did not notice.
const MAX_AGE: Duration = Duration::from_secs(30);
/// How often the subscription is checked, and how long its server may take
/// to answer: the longest a silent server leaves the cache on.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Redis, with a local cache of session records.
#[derive(Clone)]
pub struct CachedStore {
    inner: RedisStore,
    cache: Arc<Cache>,
}

/// The records, by store key, each with the instant it was read.
///
/// `quick_cache` rather than `moka` (or a map behind one lock): a read takes
/// one shard's read lock and sets a reference bit, so the workers share no
/// lock and a hit allocates nothing; eviction is Clock-PRO (close to
/// S3-FIFO), scan-resistant, so a burst of sessions seen once does not push
/// out the ones in use; and every crate it needs is already in the tree.
/// `moka` records reads in buffers that its housekeeping drains and brings
/// crossbeam's epoch collector with it; its per-entry expiry would buy
/// nothing here, where [`MAX_AGE`] is one comparison on a hit.
struct Cache {
    entries: quick_cache::sync::Cache<String, Entry>,
    /// Set only while the invalidation subscription is live.
    live: AtomicBool,
}

#[derive(Clone)]
struct Entry {
    record: Versioned,
    read_at: Instant,
}

// === impl CachedStore ===

impl CachedStore {
    /// Wraps `inner`, keeping up to `max_entries` records, and subscribes
    /// to invalidations through it.
    pub fn new(inner: RedisStore, max_entries: usize) -> Self {
        let cache = Arc::new(Cache::new(max_entries));
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

    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let result = self.inner.put_beside(key, value, beside, expected, ttl).await;
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

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let beside = self.inner.take(key).await?;
        self.invalidate(key).await;
        Ok(beside)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_if(key, value).await?;
        self.invalidate(key).await;
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    // Indexes, announcements and queues are never cached.

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

    async fn queue_push(
        &self,
        queue: &str,
        item: Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.inner.queue_push(queue, item, max, ttl).await
    }

    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError> {
        self.inner.queue_claim(queue, hold).await
    }

    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError> {
        self.inner.queue_retry(queue, id, after).await
    }

    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError> {
        self.inner.queue_done(queue, id).await
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        self.inner.queue_len(queue).await
    }
}

// === impl Cache ===

impl Cache {
    fn new(max_entries: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(max_entries.max(1)),
            live: AtomicBool::new(false),
        }
    }

    fn lookup(&self, key: &str) -> Option<Versioned> {
        let entry = self.entries.get(key)?;
        if entry.read_at.elapsed() < MAX_AGE {
            return Some(entry.record);
        }
        // Too old to trust: make room now rather than at eviction. Only
        // this copy: a fresher one inserted meanwhile stays.
        self.entries.remove_if(key, |e| e.read_at == entry.read_at);
        None
    }

    fn insert(&self, key: &str, record: Versioned) {
        let entry = Entry {
            record,
            read_at: Instant::now(),
        };
        self.entries.insert(key.to_owned(), entry);
    }

    fn forget(&self, key: &str) {
        self.entries.remove(key);
    }

    fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::Release);
        }
        // Anything cached before (re)subscribing may have missed a message.
        self.entries.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `local_cache.max_entries`.
    const BOUND: usize = 100_000;

    fn record(n: u64) -> Versioned {
        Versioned {
            value: Bytes::from(format!("sealed {n}")),
            version: n,
        }
    }

    fn key(n: u64) -> String {
        format!("cloakroom:{{{n:x}}}:s")
    }

    /// Each shard's share of the bound is rounded up.
    fn most(cache: &Cache) -> usize {
        BOUND + cache.entries.num_shards()
    }

    #[test]
    fn past_its_bound_the_cache_keeps_its_busy_records_and_never_starts_over() {
        let cache = Cache::new(BOUND);
        let hot: Vec<u64> = (0..100).collect();
        for &n in &hot {
            cache.insert(&key(n), record(n));
        }
        // Three times the bound in sessions seen once, while the hot ones
        // keep being used.
        let mut fewest = usize::MAX;
        for n in 1_000..(1_000 + 3 * BOUND as u64) {
            cache.insert(&key(n), record(n));
            if n % 1_000 == 0 {
                for &h in &hot {
                    assert_eq!(
                        cache.lookup(&key(h)),
                        Some(record(h)),
                        "busy record {h} evicted at {n}"
                    );
                }
            }
            if n >= 1_000 + BOUND as u64 {
                fewest = fewest.min(cache.entries.len());
            }
        }
        assert!(
            cache.entries.len() <= most(&cache),
            "{} entries",
            cache.entries.len()
        );
        assert!(
            fewest >= BOUND * 9 / 10,
            "the cache fell to {fewest} entries past its bound: it started over"
        );
        // The newest one-off records are there too: eviction took the oldest.
        let last = 1_000 + 3 * BOUND as u64 - 1;
        assert_eq!(cache.lookup(&key(last)), Some(record(last)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_read_and_write_at_once_and_see_only_what_was_written() {
        let cache = Arc::new(Cache::new(1_024));
        let tasks: Vec<_> = (0..32u64)
            .map(|t| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let mut hits = 0;
                    for i in 0..5_000u64 {
                        // Keys shared by every task, and each task's own.
                        let n = if i % 2 == 0 {
                            i % 512
                        } else {
                            1_000_000 + t * 10_000 + i
                        };
                        match cache.lookup(&key(n)) {
                            Some(found) => {
                                assert_eq!(found, record(n), "another key's record");
                                hits += 1;
                            }
                            None => cache.insert(&key(n), record(n)),
                        }
                        if i % 97 == 0 {
                            cache.forget(&key(n));
                        }
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    hits
                })
            })
            .collect();
        let mut hits = 0;
        for task in tasks {
            hits += task.await.expect("no task panicked");
        }
        assert!(hits > 0, "the shared keys were served from the cache");
        assert!(cache.entries.len() <= 1_024 + cache.entries.num_shards());
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_older_than_the_max_age_is_read_again() {
        let cache = Cache::new(BOUND);
        cache.insert(&key(1), record(1));
        tokio::time::advance(MAX_AGE - Duration::from_secs(1)).await;
        assert_eq!(cache.lookup(&key(1)), Some(record(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.lookup(&key(1)), None);
        assert_eq!(cache.entries.len(), 0, "dropped once too old");
        // Read again from the store: fresh for another MAX_AGE.
        cache.insert(&key(1), record(2));
        assert_eq!(cache.lookup(&key(1)), Some(record(2)));
    }

    #[test]
    fn an_invalidation_drops_the_record_and_a_lost_subscription_empties_the_cache() {
        let cache = Cache::new(BOUND);
        for n in 0..10 {
            cache.insert(&key(n), record(n));
        }
        cache.forget(&key(3));
        assert_eq!(cache.lookup(&key(3)), None);
        assert_eq!(cache.lookup(&key(4)), Some(record(4)));

        cache.set_live(true);
        assert!(cache.live.load(Ordering::Acquire));
        assert_eq!(cache.entries.len(), 0, "emptied when (re)subscribed");
        cache.insert(&key(5), record(5));
        cache.set_live(false);
        assert!(!cache.live.load(Ordering::Acquire), "bypassed while down");
        assert_eq!(cache.entries.len(), 0, "emptied when the subscription is lost");
    }
}
