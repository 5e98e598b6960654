//! The embedded store: one replica, first runs, tests.
//!
//! Shaped like mini-redis's `Db`: an `Arc<Shared>` whose std `Mutex` is never
//! held across an `.await`, and one purge task that sleeps until the next
//! expiry (or until woken because an earlier one was added). Reads also check
//! expiry, so a key is gone at its deadline whether or not the purge has run.
//! Indexes expire the same way; ending announcements go straight to this
//! process's subscribers. Queues live as long as the process: a restart
//! loses them with the sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};

/// Announcements a subscriber may fall behind by before it is dropped (and
/// so told, by its closed channel, that it missed some).
const ANNOUNCEMENT_BACKLOG: usize = 1024;

/// A handle to the in-memory store; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    // Stops the purge task when the last handle goes.
    _guard: Arc<DropGuard>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    purge: Notify,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    indexes: HashMap<String, Index>,
    queues: HashMap<String, Queue>,
    /// (deadline, key) of entries and indexes, the next expiry first.
    expirations: BTreeSet<(Instant, String)>,
    /// Whoever listens for ending announcements.
    listeners: Vec<tokio::sync::mpsc::Sender<String>>,
    shutdown: bool,
}

#[derive(Debug)]
struct Index {
    /// Oldest first.
    entries: Vec<IndexEntry>,
    expires_at: Instant,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    beside: Option<Bytes>,
    version: u64,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct Queue {
    last_id: u64,
    /// By id, which is the order they were pushed in.
    items: BTreeMap<u64, Queued>,
    /// `(due, id)` of every item, the first due first.
    due: BTreeSet<(Instant, u64)>,
}

#[derive(Debug)]
struct Queued {
    item: Bytes,
    retries: u32,
    due: Instant,
}

#[derive(Debug)]
struct DropGuard {
    shared: Arc<Shared>,
}

// === impl MemoryStore ===

impl MemoryStore {
    /// Creates the store and spawns its purge task on the current runtime.
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            purge: Notify::new(),
        });
        tokio::spawn(purge_expired(shared.clone()));
        Self {
            _guard: Arc::new(DropGuard {
                shared: shared.clone(),
            }),
            shared,
        }
    }

    /// How many keys are held, live or awaiting purge.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let state = self.shared.lock();
        Ok(state.live(key).map(|e| Versioned {
            value: e.value.clone(),
            version: e.version,
        }))
    }

    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let expires_at = Instant::now() + ttl;
        let mut state = self.shared.lock();
        let current = state.live(key).map_or(0, |e| e.version);
        if current != expected {
            return Err(StoreError::Conflict);
        }
        let version = current + 1;
        if let Some(old) = state.entries.insert(
            key.to_owned(),
            Entry {
                value,
                beside,
                version,
                expires_at,
            },
        ) {
            state.expirations.remove(&(old.expires_at, key.to_owned()));
        }
        let wake = state
            .expirations
            .first()
            .is_none_or(|(first, _)| expires_at < *first);
        state.expirations.insert((expires_at, key.to_owned()));
        drop(state);
        if wake {
            self.shared.purge.notify_one();
        }
        Ok(version)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.shared.lock().remove(key);
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut state = self.shared.lock();
        let live = state.live(key).is_some();
        let removed = state.remove(key);
        Ok(removed.filter(|_| live).and_then(|e| e.beside))
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let mut state = self.shared.lock();
        if state.live(key).is_some_and(|e| e.value == value) {
            state.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut state = self.shared.lock();
        let wake = state.extend_index(index, ttl);
        let entries = &mut state.index_mut(index).entries;
        entries.retain(|e| e.key != entry.key);
        // The others, oldest first, make room; the new entry stays.
        let excess = (entries.len() + 1).saturating_sub(max.max(1));
        let pushed_out = entries.drain(..excess).collect();
        entries.push(entry);
        entries.sort_by_key(|e| e.created);
        drop(state);
        if wake {
            self.shared.purge.notify_one();
        }
        Ok(pushed_out)
    }

    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.shared.lock();
        let Some(entry) = state
            .live_index_mut(index)
            .and_then(|i| i.entries.iter_mut().find(|e| e.key == key))
        else {
            return Ok(false);
        };
        entry.last_seen = last_seen;
        let wake = state.extend_index(index, ttl);
        drop(state);
        if wake {
            self.shared.purge.notify_one();
        }
        Ok(true)
    }

    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if let Some(found) = state.live_index_mut(index) {
            found.entries.retain(|e| !keys.contains(&e.key));
        }
        Ok(())
    }

    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let mut state = self.shared.lock();
        Ok(state
            .live_index_mut(index)
            .map(|i| i.entries.clone())
            .unwrap_or_default())
    }

    async fn announce_ended(&self, key: &str) -> Result<(), StoreError> {
        // A listener too far behind is dropped: its closed channel tells it
        // that it missed announcements.
        self.shared
            .lock()
            .listeners
            .retain(|l| l.try_send(key.to_owned()).is_ok());
        Ok(())
    }

    async fn ended_announcements(&self) -> Result<Announcements, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(ANNOUNCEMENT_BACKLOG);
        self.shared.lock().listeners.push(tx);
        Ok(rx)
    }

    async fn queue_push(
        &self,
        queue: &str,
        item: Bytes,
        max: usize,
        _ttl: Duration,
    ) -> Result<Vec<Bytes>, StoreError> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let queue = state.queues.entry(queue.to_owned()).or_default();
        queue.last_id += 1;
        let id = queue.last_id;
        queue.items.insert(
            id,
            Queued {
                item,
                retries: 0,
                due: now,
            },
        );
        queue.due.insert((now, id));
        let mut dropped = Vec::new();
        while queue.items.len() > max.max(1) {
            let Some((oldest, queued)) = queue.items.pop_first() else {
                break;
            };
            queue.due.remove(&(queued.due, oldest));
            dropped.push(queued.item);
        }
        Ok(dropped)
    }

    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let Some(queue) = state.queues.get_mut(queue) else {
            return Ok(None);
        };
        let Some(&(due, id)) = queue.due.first().filter(|(due, _)| *due <= now) else {
            return Ok(None);
        };
        queue.due.remove(&(due, id));
        let Some(queued) = queue.items.get_mut(&id) else {
            return Ok(None);
        };
        queued.due = now + hold;
        queue.due.insert((queued.due, id));
        Ok(Some(Claimed {
            id: id.to_string(),
            item: queued.item.clone(),
            retries: queued.retries,
        }))
    }

    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError> {
        let due = Instant::now() + after;
        let mut state = self.shared.lock();
        let (Some(queue), Ok(id)) = (state.queues.get_mut(queue), id.parse::<u64>()) else {
            return Ok(());
        };
        if let Some(queued) = queue.items.get_mut(&id) {
            queue.due.remove(&(queued.due, id));
            queued.due = due;
            queued.retries = queued.retries.saturating_add(1);
            queue.due.insert((due, id));
        }
        Ok(())
    }

    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        let (Some(queue), Ok(id)) = (state.queues.get_mut(queue), id.parse::<u64>()) else {
            return Ok(());
        };
        if let Some(queued) = queue.items.remove(&id) {
            queue.due.remove(&(queued.due, id));
        }
        Ok(())
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        Ok(self.shared.lock().queues.get(queue).map_or(0, |q| q.items.len()))
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the store; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl State ===

impl State {
    fn live(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.expires_at > Instant::now())
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.expirations.remove(&(entry.expires_at, key.to_owned()));
        Some(entry)
    }

    /// The live index named `index`, if any.
    fn live_index_mut(&mut self, index: &str) -> Option<&mut Index> {
        self.indexes
            .get_mut(index)
            .filter(|i| i.expires_at > Instant::now())
    }

    /// The index named `index`, a new empty one if none is live.
    fn index_mut(&mut self, index: &str) -> &mut Index {
        let now = Instant::now();
        let index = self.indexes.entry(index.to_owned()).or_insert_with(|| Index {
            entries: Vec::new(),
            expires_at: now,
        });
        if index.expires_at <= now {
            index.entries.clear();
        }
        index
    }

    /// Keeps `index` (created if need be) alive at least `ttl` longer; true
    /// when its deadline is now the first one, and the purge must know.
    fn extend_index(&mut self, index: &str, ttl: Duration) -> bool {
        let deadline = Instant::now() + ttl;
        let current = self.index_mut(index).expires_at;
        if deadline <= current {
            return false;
        }
        self.expirations.remove(&(current, index.to_owned()));
        self.index_mut(index).expires_at = deadline;
        let wake = self
            .expirations
            .first()
            .is_none_or(|(first, _)| deadline < *first);
        self.expirations.insert((deadline, index.to_owned()));
        wake
    }

    /// Removes what has expired; returns the next deadline, if any.
    fn purge(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some((when, key)) = self.expirations.first().cloned() {
            if when > now {
                return Some(when);
            }
            self.expirations.pop_first();
            if self.entries.get(&key).is_some_and(|e| e.expires_at <= now) {
                self.entries.remove(&key);
            }
            if self.indexes.get(&key).is_some_and(|i| i.expires_at <= now) {
                self.indexes.remove(&key);
            }
        }
        None
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.purge.notify_one();
    }
}

async fn purge_expired(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut state = shared.lock();
            if state.shutdown {
                return;
            }
            state.purge()
        };
        match next {
            Some(when) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = shared.purge.notified() => {}
                }
            }
            None => shared.purge.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_keys_are_purged_in_the_background() {
        let store = MemoryStore::new();
        store
            .put("a", Bytes::from_static(b"1"), 0, Duration::from_secs(5))
            .await
            .unwrap();
        store
            .put("b", Bytes::from_static(b"2"), 0, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.len(), 2);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(store.len(), 1, "a is purged without being read");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(store.is_empty());
    }
}
