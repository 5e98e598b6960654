//! A [`SessionStore`] that counts and times every operation of the store it
//! wraps, for `cloakroom_store_operations_total` and
//! `cloakroom_store_operation_duration_seconds`.
//!
//! It wraps the outermost store (the local cache, when there is one), so it
//! measures what cloakroom asks of its store: a cache hit is a fast `get`,
//! a Redis round trip a slow one. It changes no answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};
use crate::metrics::{Metrics, StoreOp, StoreOutcome};

/// Measures every call to `inner`.
pub struct MeasuredStore {
    inner: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

// === impl MeasuredStore ===

impl MeasuredStore {
    pub fn new(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn record<T>(
        &self,
        op: StoreOp,
        started: Instant,
        result: &Result<T, StoreError>,
        miss: impl FnOnce(&T) -> bool,
    ) {
        let outcome = match result {
            Ok(value) if miss(value) => StoreOutcome::Miss,
            Ok(_) => StoreOutcome::Ok,
            Err(StoreError::Conflict) => StoreOutcome::Conflict,
            Err(StoreError::Unavailable(_)) => StoreOutcome::Error,
        };
        self.metrics.store_op(op, outcome, started.elapsed());
    }
}

#[async_trait]
impl SessionStore for MeasuredStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record(StoreOp::Get, started, &result, Option::is_none);
        result
    }

    async fn get_latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_latest(key).await;
        self.record(StoreOp::GetLatest, started, &result, Option::is_none);
        result
    }

    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.put_beside(key, value, beside, expected, ttl).await;
        self.record(StoreOp::Put, started, &result, |_| false);
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record(StoreOp::Delete, started, &result, |_| false);
        result
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let started = Instant::now();
        let result = self.inner.take(key).await;
        self.record(StoreOp::Take, started, &result, |_| false);
        result
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete_if(key, value).await;
        self.record(StoreOp::DeleteIf, started, &result, |deleted| !deleted);
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.ping().await;
        self.record(StoreOp::Ping, started, &result, |_| false);
        result
    }

    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let started = Instant::now();
        let result = self.inner.index_add(index, entry, ttl, max).await;
        self.record(StoreOp::IndexAdd, started, &result, |_| false);
        result
    }

    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.index_touch(index, key, last_seen, ttl).await;
        self.record(StoreOp::IndexTouch, started, &result, |found| !found);
        result
    }

    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.index_remove(index, keys).await;
        self.record(StoreOp::IndexRemove, started, &result, |_| false);
        result
    }

    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let started = Instant::now();
        let result = self.inner.index_list(index).await;
        self.record(StoreOp::IndexList, started, &result, Vec::is_empty);
        result
    }

    async fn announce_ended(&self, key: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.announce_ended(key).await;
        self.record(StoreOp::AnnounceEnded, started, &result, |_| false);
        result
    }

    /// A subscription, not an operation: not measured.
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
        let started = Instant::now();
        let result = self.inner.queue_push(queue, item, max, ttl).await;
        self.record(StoreOp::QueuePush, started, &result, |_| false);
        result
    }

    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError> {
        let started = Instant::now();
        let result = self.inner.queue_claim(queue, hold).await;
        self.record(StoreOp::QueueClaim, started, &result, Option::is_none);
        result
    }

    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.queue_retry(queue, id, after).await;
        self.record(StoreOp::QueueRetry, started, &result, |_| false);
        result
    }

    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.queue_done(queue, id).await;
        self.record(StoreOp::QueueDone, started, &result, |_| false);
        result
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        let started = Instant::now();
        let result = self.inner.queue_len(queue).await;
        self.record(StoreOp::QueueLen, started, &result, |_| false);
        result
    }
}
