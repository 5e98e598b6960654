//! The behaviour every [`SessionStore`] must show, as one suite run against
//! each implementation: the memory store (`tests/memory_store.rs`) and real
//! Redis (`tests/redis_store.rs`, `tests/redis_ha.rs`).
//!
//! Timing uses `tokio::time::sleep`, so a paused test clock runs it instantly
//! for the memory store while a real server sees real seconds.

use std::time::Duration;

use bytes::Bytes;
use cloakroom::session::{SessionStore, StoreError};

/// Runs every contract check against `store`, on `cloakroom:{contract-…}:s`
/// keys: inside the namespace a production ACL grants.
pub async fn run_all(store: &dyn SessionStore) {
    missing_key_is_none_not_an_error(store).await;
    put_creates_then_compare_and_sets(store).await;
    stale_version_conflicts_and_keeps_the_newer_value(store).await;
    values_expire_after_their_ttl(store).await;
    delete_is_idempotent(store).await;
    delete_if_compares_the_value(store).await;
    store.ping().await.expect("ping");
}

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

const TTL: Duration = Duration::from_secs(60);

async fn missing_key_is_none_not_an_error(store: &dyn SessionStore) {
    assert_eq!(store.get("cloakroom:{contract-missing}:s").await.unwrap(), None);
}

async fn put_creates_then_compare_and_sets(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-cas}:s";
    assert_eq!(store.put(key, bytes("v1"), 0, TTL).await.unwrap(), 1);
    assert!(matches!(
        store.put(key, bytes("again"), 0, TTL).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.put(key, bytes("v2"), 1, TTL).await.unwrap(), 2);
    let got = store.get(key).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (bytes("v2"), 2));
    store.delete(key).await.unwrap();
}

async fn stale_version_conflicts_and_keeps_the_newer_value(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-stale}:s";
    store.put(key, bytes("a"), 0, TTL).await.unwrap();
    store.put(key, bytes("b"), 1, TTL).await.unwrap();
    assert!(matches!(
        store.put(key, bytes("late"), 1, TTL).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get(key).await.unwrap().unwrap().value, bytes("b"));
    store.delete(key).await.unwrap();
}

async fn values_expire_after_their_ttl(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-ttl}:s";
    store
        .put(key, bytes("short"), 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(store.get(key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.get(key).await.unwrap(), None);
    // An expired key counts as absent for compare-and-set too.
    assert_eq!(store.put(key, bytes("new"), 0, TTL).await.unwrap(), 1);
    store.delete(key).await.unwrap();
}

async fn delete_is_idempotent(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-delete}:s";
    store.put(key, bytes("x"), 0, TTL).await.unwrap();
    store.delete(key).await.unwrap();
    store.delete(key).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
}

async fn delete_if_compares_the_value(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-delete-if}:s";
    store.put(key, bytes("mine"), 0, TTL).await.unwrap();
    assert!(!store.delete_if(key, b"theirs").await.unwrap(), "another value");
    assert!(store.get(key).await.unwrap().is_some());
    assert!(store.delete_if(key, b"mine").await.unwrap());
    assert_eq!(store.get(key).await.unwrap(), None);
    assert!(!store.delete_if(key, b"mine").await.unwrap(), "already gone");
}
