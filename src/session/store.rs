//! The `SessionStore` contract shared by the memory and Redis stores.
//!
//! Values are opaque bytes (records arrive sealed). Every write carries a
//! TTL, and writes are compare-and-set on a version number so a slow writer
//! can never overwrite a newer record (threat-model T27).
//!
//! Besides values, a store keeps *indexes* (which sessions a subject, or an
//! IdP session, has: `session::index`) and carries *ending announcements*
//! from the replica that ends a session to every replica, so that what
//! lives on beside a session (a WebSocket tunnel, a streamed answer) ends
//! with it (`session::ending`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::BoxError;

/// One session in an index: its store key and what a listing shows of it.
/// An index holds at most one entry per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The session's store key.
    pub key: String,
    /// Seconds since the epoch. When an index is full, the entries created
    /// first are pushed out first.
    pub created: u64,
    /// Seconds since the epoch; [`SessionStore::index_touch`] moves it.
    pub last_seen: u64,
    /// Anything else, opaque to the store.
    pub data: Bytes,
}

/// Ending announcements as they arrive: store keys of ended sessions. The
/// channel closes when the subscription is lost; announcements made until
/// the next subscription may be missed.
pub type Announcements = tokio::sync::mpsc::Receiver<String>;

/// A stored value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    /// Starts at 1 for a new key and grows by one on every write.
    pub version: u64,
}

/// Why a store call failed. A missing key is not an error: it is `Ok(None)`,
/// so "no session" (401) and "store down" (503) stay apart (RD-05).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable")]
    Unavailable(#[source] BoxError),
    #[error("session record changed concurrently")]
    Conflict,
}

/// Where sessions, completed-login markers and locks live.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Reads a live value.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Reads a live value from the source of truth, past any cache: for
    /// reads that decide whether to call the IdP or what to write.
    async fn get_latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.get(key).await
    }

    /// Writes `value` if the stored version is `expected` (0: the key must
    /// not exist). Returns the new version, or `Conflict`.
    async fn put(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64, StoreError>;

    /// Removes a key; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes a key only if it still holds `value`; `false` otherwise.
    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError>;

    /// Checks the backend answers, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Adds `entry` to `index` (replacing one for the same key), keeps the
    /// index at least `ttl` longer, and, past `max` entries (at least 1),
    /// removes the oldest others (by `created`) and returns them, oldest
    /// first: the entry just added always stays. One atomic step.
    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    /// Sets the `last_seen` of `key`'s entry, if `index` has one, and keeps
    /// the index at least `ttl` longer; `false` if it has none (and nothing
    /// changed).
    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Removes the entries of `keys` from `index`; missing ones are no error.
    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError>;

    /// Every entry of `index`, oldest first (empty if there is none). May
    /// name sessions that have ended since: their readers prune them.
    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError>;

    /// Tells every replica, this one included, that the session stored
    /// under `key` has ended.
    async fn announce_ended(&self, key: &str) -> Result<(), StoreError>;

    /// Subscribes to ending announcements. A subscriber that loses its
    /// channel subscribes again, and must assume it missed some meanwhile.
    async fn ended_announcements(&self) -> Result<Announcements, StoreError>;
}
