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
//!
//! A value may have a second part kept *beside* it, written with it in the
//! same compare-and-set and returned only when the key is taken
//! ([`SessionStore::take`]): never by a read. Sessions keep their refresh
//! tokens there, sealed to the server's key, for the revocation at their
//! end (`session::revocation`).
//!
//! And a store keeps *queues* of work any replica may do (the revocations
//! still to make): items due at a time, each claimed by one replica at a
//! time, retried later, bounded in length.

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

/// An item claimed from a queue ([`SessionStore::queue_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Names the item to [`SessionStore::queue_retry`] and
    /// [`SessionStore::queue_done`].
    pub id: String,
    pub item: Bytes,
    /// How many times it was put back with [`SessionStore::queue_retry`].
    pub retries: u32,
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
    /// not exist). Returns the new version, or `Conflict`. Nothing is
    /// kept beside it any more.
    async fn put(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64, StoreError> {
        self.put_beside(key, value, None, expected, ttl).await
    }

    /// [`SessionStore::put`], keeping `beside` with the value (in place of
    /// what was kept there; `None`: nothing). No read returns it; only
    /// [`SessionStore::take`] does.
    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError>;

    /// Removes a key; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes a key as [`SessionStore::delete`] does and returns what was
    /// kept beside its value, if anything: one atomic step, so two takers
    /// never both get it.
    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

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

    /// Adds `item` to `queue`, due now, and keeps the queue at least `ttl`
    /// longer. Past `max` items (at least 1) the oldest others are dropped
    /// and returned, oldest first: the item just added always stays. One
    /// atomic step.
    async fn queue_push(
        &self,
        queue: &str,
        item: Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<Bytes>, StoreError>;

    /// Claims the item of `queue` that has been due longest, if one is due
    /// now: it is due again only `hold` later, so no other claim gets it
    /// meanwhile, and an item whose claimant died before
    /// [`SessionStore::queue_retry`] or [`SessionStore::queue_done`] comes
    /// back by itself. Atomic: two claims never get the same item at once.
    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError>;

    /// Puts a claimed item back, due `after` from now, one more retry
    /// counted; an item dropped meanwhile stays dropped.
    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError>;

    /// Removes an item; a missing one is not an error.
    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError>;

    /// How many items `queue` holds, due or not.
    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError>;
}
