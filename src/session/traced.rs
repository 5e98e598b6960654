//! `TracedStore`: a child span around each store call made inside a
//! request, when traces are on. The span names the operation and the
//! backend; never the key (it names a session) or the value.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::Instrument;

use super::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};

/// A store whose calls inside a request are spans of that request.
pub struct TracedStore {
    inner: Arc<dyn SessionStore>,
    /// `db.system.name`: `memory` or `redis`.
    system: &'static str,
}

// === impl TracedStore ===

impl TracedStore {
    pub fn new(inner: Arc<dyn SessionStore>, system: &'static str) -> Self {
        Self { inner, system }
    }

    /// The span of `operation`; none outside a request, so background work
    /// (a readiness ping) starts no trace of its own.
    fn span(&self, operation: &'static str) -> tracing::Span {
        if tracing::Span::current().is_none() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            target: "cloakroom::trace",
            "store",
            otel.name = format_args!("store {operation}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = self.system,
            db.operation.name = operation,
        )
    }
}

/// Marks `span` failed when the store was unavailable (a conflict is an
/// answer, not a failure).
fn outcome<T>(span: &tracing::Span, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(StoreError::Unavailable(_)) = &result {
        span.record("otel.status_code", "ERROR");
    }
    result
}

#[async_trait]
impl SessionStore for TracedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let span = self.span("get");
        outcome(&span, self.inner.get(key).instrument(span.clone()).await)
    }

    async fn get_latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let span = self.span("get_latest");
        outcome(&span, self.inner.get_latest(key).instrument(span.clone()).await)
    }

    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let span = self.span("put");
        let result = self
            .inner
            .put_beside(key, value, beside, expected, ttl)
            .instrument(span.clone())
            .await;
        outcome(&span, result)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let span = self.span("delete");
        outcome(&span, self.inner.delete(key).instrument(span.clone()).await)
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let span = self.span("take");
        outcome(&span, self.inner.take(key).instrument(span.clone()).await)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let span = self.span("delete_if");
        outcome(
            &span,
            self.inner.delete_if(key, value).instrument(span.clone()).await,
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Readiness probes: not part of any request's trace.
        self.inner.ping().await
    }

    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let span = self.span("index_add");
        outcome(
            &span,
            self.inner
                .index_add(index, entry, ttl, max)
                .instrument(span.clone())
                .await,
        )
    }

    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let span = self.span("index_touch");
        outcome(
            &span,
            self.inner
                .index_touch(index, key, last_seen, ttl)
                .instrument(span.clone())
                .await,
        )
    }

    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError> {
        let span = self.span("index_remove");
        outcome(
            &span,
            self.inner
                .index_remove(index, keys)
                .instrument(span.clone())
                .await,
        )
    }

    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let span = self.span("index_list");
        outcome(&span, self.inner.index_list(index).instrument(span.clone()).await)
    }

    async fn announce_ended(&self, key: &str) -> Result<(), StoreError> {
        let span = self.span("announce_ended");
        outcome(
            &span,
            self.inner.announce_ended(key).instrument(span.clone()).await,
        )
    }

    /// A subscription, not an operation: no span.
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
        let span = self.span("queue_push");
        outcome(
            &span,
            self.inner
                .queue_push(queue, item, max, ttl)
                .instrument(span.clone())
                .await,
        )
    }

    // The queue's worker runs outside any request: its calls make no span
    // (`span` is none there), but go through the same way.

    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError> {
        let span = self.span("queue_claim");
        outcome(
            &span,
            self.inner.queue_claim(queue, hold).instrument(span.clone()).await,
        )
    }

    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError> {
        let span = self.span("queue_retry");
        outcome(
            &span,
            self.inner
                .queue_retry(queue, id, after)
                .instrument(span.clone())
                .await,
        )
    }

    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError> {
        let span = self.span("queue_done");
        outcome(
            &span,
            self.inner.queue_done(queue, id).instrument(span.clone()).await,
        )
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        // Read at each metrics scrape: not part of any request's trace.
        self.inner.queue_len(queue).await
    }
}
