//! The `SessionStore` contract shared by the memory and Redis stores.
//!
//! Values are opaque bytes (records arrive sealed). Every write carries a
//! TTL, and writes are compare-and-set on a version number so a slow writer
//! can never overwrite a newer record (threat-model T27).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::BoxError;

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
}
