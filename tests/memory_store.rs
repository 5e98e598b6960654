//! The memory store against the store contract. Time is tokio's, paused, so
//! the TTL checks take no real seconds.

mod support;

use std::sync::Arc;

use cloakroom::metrics::Metrics;
use cloakroom::session::{MeasuredStore, MemoryStore};

#[tokio::test(start_paused = true)]
async fn memory_store_meets_the_contract() {
    support::store_contract::run_all(&MemoryStore::new()).await;
}

/// The measuring store changes no answer, and counts every operation.
#[tokio::test(start_paused = true)]
async fn the_measuring_store_meets_the_contract_and_counts() {
    let metrics = Arc::new(Metrics::new());
    let store = MeasuredStore::new(Arc::new(MemoryStore::new()), metrics.clone());
    support::store_contract::run_all(&store).await;
    let text = metrics.encode(true);
    for series in [
        "cloakroom_store_operations_total{op=\"get\",outcome=\"ok\"}",
        "cloakroom_store_operations_total{op=\"get\",outcome=\"miss\"}",
        "cloakroom_store_operations_total{op=\"put\",outcome=\"conflict\"}",
        "cloakroom_store_operations_total{op=\"delete_if\",outcome=\"miss\"}",
        "cloakroom_store_operation_duration_seconds_count{op=\"delete\"}",
        "cloakroom_store_operations_total{op=\"ping\",outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
}
