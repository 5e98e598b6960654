//! The memory store against the store contract. Time is tokio's, paused, so
//! the TTL checks take no real seconds.

mod support;

use cloakroom::session::MemoryStore;

#[tokio::test(start_paused = true)]
async fn memory_store_meets_the_contract() {
    support::store_contract::run_all(&MemoryStore::new()).await;
}
