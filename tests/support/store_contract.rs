//! The behaviour every [`SessionStore`] must show, as one suite run against
//! each implementation: the memory store (`tests/memory_store.rs`) and real
//! Redis (`tests/redis_store.rs`, `tests/redis_ha.rs`).
//!
//! Timing uses `tokio::time::sleep`, so a paused test clock runs it instantly
//! for the memory store while a real server sees real seconds.

use std::time::Duration;

use bytes::Bytes;
use cloakroom::session::{Claimed, IndexEntry, SessionStore, StoreError};

/// Runs every contract check against `store`, on `cloakroom:{contract-…}:s`
/// keys: inside the namespace a production ACL grants.
pub async fn run_all(store: &dyn SessionStore) {
    values_expire_after_their_ttl(store).await;
    run_all_but_expiry(store).await;
}

/// [`run_all`] for a store that keeps copies of values (the Redis store
/// with its local cache): everything but a value's expiry, which a copy may
/// outlive by the cache's own bound (30 s). Sessions do not lean on it:
/// `Sessions` judges the timeouts from the record itself.
pub async fn run_all_but_expiry(store: &dyn SessionStore) {
    missing_key_is_none_not_an_error(store).await;
    put_creates_then_compare_and_sets(store).await;
    stale_version_conflicts_and_keeps_the_newer_value(store).await;
    delete_is_idempotent(store).await;
    delete_if_compares_the_value(store).await;
    index_lists_entries_oldest_first(store).await;
    index_pushes_out_the_oldest_past_its_bound(store).await;
    index_touch_moves_last_seen_of_present_entries_only(store).await;
    index_remove_forgets_entries(store).await;
    index_expires_after_the_longest_ttl_given(store).await;
    announcements_reach_every_subscriber(store).await;
    beside_a_value_is_written_with_it_and_only_taken(store).await;
    a_queue_hands_each_due_item_to_one_claim(store).await;
    a_claimed_item_comes_back_after_its_hold_or_retry(store).await;
    a_queue_drops_its_oldest_items_past_its_bound(store).await;
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

fn entry(key: &str, created: u64, data: &'static str) -> IndexEntry {
    IndexEntry {
        key: key.to_owned(),
        created,
        last_seen: created,
        data: bytes(data),
    }
}

async fn index_lists_entries_oldest_first(store: &dyn SessionStore) {
    let index = "cloakroom:{contract-index-list}:idx";
    assert_eq!(
        store.index_list(index).await.unwrap(),
        [],
        "no index is an empty one"
    );
    for (key, created) in [("b", 20), ("a", 10), ("c", 30)] {
        let out = store
            .index_add(index, entry(key, created, "{}"), TTL, 10)
            .await
            .unwrap();
        assert_eq!(out, []);
    }
    // Data may hold any bytes, spaces and newlines included.
    let odd = entry("b", 20, "Firefox on Linux\n{\"sid\": 1}");
    store.index_add(index, odd.clone(), TTL, 10).await.unwrap();
    let listed = store.index_list(index).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"], "one entry per key, oldest first");
    assert_eq!(listed[1], odd);
    store
        .index_remove(index, &["a".into(), "b".into(), "c".into()])
        .await
        .unwrap();
}

async fn index_pushes_out_the_oldest_past_its_bound(store: &dyn SessionStore) {
    let index = "cloakroom:{contract-index-bound}:idx";
    for (key, created) in [("k2", 2), ("k1", 1), ("k3", 3)] {
        assert_eq!(
            store
                .index_add(index, entry(key, created, "d"), TTL, 3)
                .await
                .unwrap(),
            []
        );
    }
    let out = store
        .index_add(index, entry("k4", 4, "d4"), TTL, 3)
        .await
        .unwrap();
    assert_eq!(
        out,
        [entry("k1", 1, "d")],
        "the oldest is pushed out, with its data"
    );
    let out = store.index_add(index, entry("k5", 5, "d"), TTL, 2).await.unwrap();
    let keys: Vec<&str> = out.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["k2", "k3"], "oldest first");
    let left = index_keys(store, index).await;
    assert_eq!(left, ["k4", "k5"]);
    // The entry just added stays, even when its clock says it is older
    // (another replica's clock).
    let out = store.index_add(index, entry("k0", 0, "d"), TTL, 2).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, "k4");
    let left = index_keys(store, index).await;
    assert_eq!(left, ["k0", "k5"]);
    store.index_remove(index, &left).await.unwrap();
}

async fn index_touch_moves_last_seen_of_present_entries_only(store: &dyn SessionStore) {
    let index = "cloakroom:{contract-index-touch}:idx";
    store
        .index_add(index, entry("s", 100, "data"), TTL, 10)
        .await
        .unwrap();
    assert!(store.index_touch(index, "s", 160, TTL).await.unwrap());
    assert!(!store.index_touch(index, "absent", 170, TTL).await.unwrap());
    let listed = store.index_list(index).await.unwrap();
    assert_eq!(listed.len(), 1, "touch adds nothing");
    assert_eq!((listed[0].created, listed[0].last_seen), (100, 160));
    assert_eq!(listed[0].data, bytes("data"));
    store.index_remove(index, &["s".into()]).await.unwrap();
}

async fn index_remove_forgets_entries(store: &dyn SessionStore) {
    let index = "cloakroom:{contract-index-remove}:idx";
    store.index_add(index, entry("x", 1, "d"), TTL, 10).await.unwrap();
    store.index_add(index, entry("y", 2, "d"), TTL, 10).await.unwrap();
    store
        .index_remove(index, &["x".into(), "missing".into()])
        .await
        .unwrap();
    store.index_remove(index, &[]).await.unwrap();
    let left = index_keys(store, index).await;
    assert_eq!(left, ["y"]);
    store.index_remove(index, &left).await.unwrap();
}

async fn index_expires_after_the_longest_ttl_given(store: &dyn SessionStore) {
    let index = "cloakroom:{contract-index-ttl}:idx";
    let (short, long) = (Duration::from_millis(500), Duration::from_secs(2));
    store
        .index_add(index, entry("long", 1, "d"), long, 10)
        .await
        .unwrap();
    // A shorter TTL never cuts the index's life.
    store
        .index_add(index, entry("short", 2, "d"), short, 10)
        .await
        .unwrap();
    store.index_touch(index, "short", 3, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.index_list(index).await.unwrap().len(), 2);
    // A touch makes it live longer: until 3.2 s from the start.
    store.index_touch(index, "long", 4, long).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(store.index_list(index).await.unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.index_list(index).await.unwrap(), [], "gone with its TTL");
}

async fn announcements_reach_every_subscriber(store: &dyn SessionStore) {
    let mut first = store.ended_announcements().await.unwrap();
    let mut second = store.ended_announcements().await.unwrap();
    store
        .announce_ended("cloakroom:{contract-ended}:s")
        .await
        .unwrap();
    for listener in [&mut first, &mut second] {
        let key = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
        assert_eq!(
            key.expect("announced in time").as_deref(),
            Some("cloakroom:{contract-ended}:s")
        );
    }
}

async fn beside_a_value_is_written_with_it_and_only_taken(store: &dyn SessionStore) {
    let key = "cloakroom:{contract-beside}:s";
    let kept = Some(bytes("sealed tokens"));
    assert_eq!(store.put_beside(key, bytes("v1"), kept, 0, TTL).await.unwrap(), 1);
    let got = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (bytes("v1"), 1),
        "a read sees the value only"
    );
    // A write replaces what is beside, and a compare-and-set refuses it too.
    let newer = Some(bytes("newer tokens"));
    assert!(matches!(
        store
            .put_beside(key, bytes("late"), Some(bytes("x")), 0, TTL)
            .await,
        Err(StoreError::Conflict)
    ));
    store.put_beside(key, bytes("v2"), newer, 1, TTL).await.unwrap();
    assert_eq!(store.take(key).await.unwrap(), Some(bytes("newer tokens")));
    assert_eq!(store.get(key).await.unwrap(), None, "taken is deleted");
    assert_eq!(store.take(key).await.unwrap(), None, "and taken once");
    // A plain put keeps nothing beside; delete removes it with the key.
    store
        .put_beside(key, bytes("v1"), Some(bytes("t")), 0, TTL)
        .await
        .unwrap();
    store.put(key, bytes("v2"), 1, TTL).await.unwrap();
    assert_eq!(store.take(key).await.unwrap(), None);
    store
        .put_beside(key, bytes("v1"), Some(bytes("t")), 0, TTL)
        .await
        .unwrap();
    store.delete(key).await.unwrap();
    assert_eq!(store.take(key).await.unwrap(), None);
}

const HOLD: Duration = Duration::from_secs(1);

/// Claims every item due in `queue` now.
async fn claim_all(store: &dyn SessionStore, queue: &str) -> Vec<Claimed> {
    let mut claimed = Vec::new();
    while let Some(item) = store.queue_claim(queue, HOLD).await.unwrap() {
        claimed.push(item);
    }
    claimed
}

async fn a_queue_hands_each_due_item_to_one_claim(store: &dyn SessionStore) {
    let queue = "cloakroom:{contract-queue}";
    assert_eq!(store.queue_len(queue).await.unwrap(), 0, "no queue is empty");
    assert_eq!(store.queue_claim(queue, HOLD).await.unwrap(), None);
    for item in ["first", "second {\"any\": \"bytes\"}\n"] {
        let dropped = store.queue_push(queue, bytes(item), 10, TTL).await.unwrap();
        assert!(dropped.is_empty());
    }
    assert_eq!(store.queue_len(queue).await.unwrap(), 2);
    let claimed = claim_all(store, queue).await;
    let items: Vec<&[u8]> = claimed.iter().map(|c| c.item.as_ref()).collect();
    assert_eq!(items, [b"first".as_slice(), b"second {\"any\": \"bytes\"}\n"]);
    assert!(claimed.iter().all(|c| c.retries == 0));
    assert_ne!(claimed[0].id, claimed[1].id);
    assert_eq!(store.queue_claim(queue, HOLD).await.unwrap(), None, "both held");
    assert_eq!(store.queue_len(queue).await.unwrap(), 2, "held, not gone");
    for c in &claimed {
        store.queue_done(queue, &c.id).await.unwrap();
    }
    store.queue_done(queue, &claimed[0].id).await.unwrap();
    assert_eq!(store.queue_len(queue).await.unwrap(), 0);
}

async fn a_claimed_item_comes_back_after_its_hold_or_retry(store: &dyn SessionStore) {
    let queue = "cloakroom:{contract-queue-retry}";
    store.queue_push(queue, bytes("died"), 10, TTL).await.unwrap();
    store.queue_push(queue, bytes("failed"), 10, TTL).await.unwrap();
    let claimed = claim_all(store, queue).await;
    assert_eq!(claimed.len(), 2);
    // The second's claimant asks again in 2 s; the first's never answers.
    store
        .queue_retry(queue, &claimed[1].id, Duration::from_secs(2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let back = claim_all(store, queue).await;
    assert_eq!(back.len(), 1, "the hold is over, not the retry's wait");
    assert_eq!((back[0].item.as_ref(), back[0].retries), (b"died".as_slice(), 0));
    store.queue_done(queue, &back[0].id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let back = claim_all(store, queue).await;
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].item.as_ref(), back[0].retries),
        (b"failed".as_slice(), 1)
    );
    store.queue_done(queue, &back[0].id).await.unwrap();
    // A retry of an item done meanwhile brings nothing back.
    store
        .queue_retry(queue, &back[0].id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.queue_claim(queue, HOLD).await.unwrap(), None);
    assert_eq!(store.queue_len(queue).await.unwrap(), 0);
}

async fn a_queue_drops_its_oldest_items_past_its_bound(store: &dyn SessionStore) {
    let queue = "cloakroom:{contract-queue-bound}";
    for item in ["one", "two"] {
        assert!(store
            .queue_push(queue, bytes(item), 2, TTL)
            .await
            .unwrap()
            .is_empty());
    }
    let dropped = store.queue_push(queue, bytes("three"), 2, TTL).await.unwrap();
    assert_eq!(dropped, [bytes("one")], "the oldest goes");
    // A smaller bound drops more; the item just pushed always stays.
    let dropped = store.queue_push(queue, bytes("four"), 1, TTL).await.unwrap();
    assert_eq!(dropped, [bytes("two"), bytes("three")], "oldest first");
    assert_eq!(store.queue_len(queue).await.unwrap(), 1);
    let left = claim_all(store, queue).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].item, bytes("four"));
    store.queue_done(queue, &left[0].id).await.unwrap();
}

/// The keys `index` lists, oldest first.
async fn index_keys(store: &dyn SessionStore, index: &str) -> Vec<String> {
    let listed = store.index_list(index).await.unwrap();
    listed.into_iter().map(|e| e.key).collect()
}
