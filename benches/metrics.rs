//! What recording metrics costs one request, in-process: an authenticated,
//! proxied GET records a store `get`, an upstream call and the request
//! (six clock reads, five series). Prints nanoseconds per request on one
//! thread and on two threads hitting the same series, and the time of one
//! scrape. Run with `cargo bench --bench metrics`.

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::metrics::{self, Metrics, StoreOp, StoreOutcome};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    let n = 1_000_000u64;
    let clock = best_of(5, || {
        let start = Instant::now();
        for _ in 0..n {
            black_box(Instant::now().elapsed());
        }
        start.elapsed()
    });
    println!("clock read and elapsed: {:.0} ns", per(clock, n));
    for threads in [1, 2] {
        let took = best_of(5, || run(threads, n));
        println!(
            "{threads} thread(s): {:.0} ns of recording per request",
            per(took, n)
        );
    }
    let m = Metrics::new();
    for _ in 0..1000 {
        one_request(&m, "/api");
    }
    let scrape = best_of(5, || {
        let start = Instant::now();
        for _ in 0..100 {
            black_box(m.encode(true));
        }
        start.elapsed()
    });
    println!("one scrape: {:.0} µs", per(scrape, 100) / 1000.0);
}

/// What one authenticated, proxied GET records.
fn one_request(m: &Metrics, route: &str) {
    let started = Instant::now();
    let method = metrics::method_label(&http::Method::GET, false);
    let store = Instant::now();
    m.store_op(StoreOp::Get, StoreOutcome::Ok, store.elapsed());
    let upstream = Instant::now();
    m.upstream_answered(route, upstream.elapsed());
    m.request(Cow::Owned(route.to_owned()), method, 200, None, started.elapsed());
}

fn run(threads: usize, n: u64) -> Duration {
    let m = Arc::new(Metrics::new());
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..n {
                    one_request(black_box(&m), black_box("/api"));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    start.elapsed()
}

fn best_of(rounds: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().unwrap_or_default()
}

fn per(took: Duration, n: u64) -> f64 {
    took.as_nanos() as f64 / n as f64
}
