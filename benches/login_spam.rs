//! Login spam (threat-model LG-24): what anonymous `GET /auth/login` calls
//! leave behind on the server.
//!
//! Starts the test IdP, Redis, and two cloakroom processes (memory store;
//! Redis store), signs one user in on each, then sends `BENCH_LOGINS`
//! (default 1 000 000) anonymous login calls with a 1 KiB `return_to` to
//! each with wrk, in slices. After every slice it reads cloakroom's resident
//! memory, Redis's `used_memory` and key count, and the signed-in user's
//! `GET /auth/user`. The ratios to read are resident memory after / before
//! and keys after / before; the user's calls must all be 200.
//!
//! Run with `cargo bench --bench login_spam` (needs wrk, Node.js and
//! redis-server); `BENCH_LOGINS` and `BENCH_CONNECTIONS` (default 32) tune it.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use common::{env_or, rss_kib};

fn main() {
    if !common::is_bench_run() {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    for tool in ["wrk", "node", "redis-server"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("{tool} is not installed: apt-get install wrk nodejs redis-server");
            std::process::exit(1);
        }
    }
    let logins: u64 = env_or("BENCH_LOGINS", 1_000_000);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 32);
    let redis = support::redis::RedisServer::start_with(&["--appendonly", "no"]);
    let stores = [
        ("memory", "memory".to_owned()),
        ("redis", format!("{{redis: {{url: '{}'}}}}", redis.url())),
    ];
    let ports: Vec<u16> = stores.iter().map(|_| support::free_port()).collect();
    let idp = support::idp::Idp::start(serde_json::json!({
        "redirect_uris": ports.iter().map(|p| format!("http://127.0.0.1:{p}/auth/callback")).collect::<Vec<_>>(),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let return_to = format!("/{}", "r".repeat(1023));

    println!("\nlogin spam: {logins} anonymous GET /auth/login per store, return_to of {} bytes, wrk -t2 -c{connections}", return_to.len());
    println!(
        "{:<8} {:>10} {:>9} {:>12} {:>12} {:>7} {:>14} {:>14} {:>11} {:>10}",
        "store",
        "sent",
        "req/s",
        "RSS before",
        "RSS after",
        "ratio",
        "redis before",
        "redis after",
        "keys b→a",
        "user 200s"
    );
    for ((name, store), port) in stores.into_iter().zip(ports) {
        let yaml = format!(
            "public_url: http://127.0.0.1:{port}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
session: {{store: {store}}}
routes: [{{path: /, upstream: 'http://127.0.0.1:9', auth: none}}]",
            iss = idp.issuer,
        );
        let cloakroom = support::Process::start_at(port, &yaml);
        let base = format!("http://127.0.0.1:{port}");
        let user = support::Browser::new(&base);
        runtime.block_on(user.navigate(&format!("{base}/auth/login"), "bench"));
        assert!(
            user.cookie(&base, "cloakroom").is_some(),
            "{name}: the user could not sign in"
        );
        let user_ok = || {
            let page = runtime.block_on(user.get(&format!("{base}/auth/user"), &[("x-csrf", "1")]));
            page.status == 200
        };
        let url = format!("{base}/auth/login?return_to={return_to}");
        wrk(&url, 2, connections); // warm-up: pools, allocator, caches
        let rss_before = rss_kib(cloakroom.pid());
        let (mem_before, keys_before) = redis_usage(&redis);

        let (mut sent, mut user_200s, mut user_calls) = (0u64, 0u64, 0u64);
        let started = Instant::now();
        while sent < logins {
            sent += wrk(&url, 5, connections);
            user_calls += 1;
            user_200s += u64::from(user_ok());
        }
        let rate = sent as f64 / started.elapsed().as_secs_f64();
        let rss_after = rss_kib(cloakroom.pid());
        let (mem_after, keys_after) = redis_usage(&redis);
        println!(
            "{name:<8} {sent:>10} {rate:>9.0} {:>9.1} MB {:>9.1} MB {:>6.2}x {:>11.2} MB {:>11.2} MB {:>5}→{:<5} {user_200s:>4}/{user_calls}",
            rss_before as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            rss_after as f64 / rss_before as f64,
            mem_before as f64 / 1048576.0,
            mem_after as f64 / 1048576.0,
            keys_before,
            keys_after,
        );
    }
}

/// Runs wrk against `url` for `seconds`; returns how many requests it sent.
fn wrk(url: &str, seconds: u64, connections: u64) -> u64 {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), url])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        // Every answer is a 302 to the IdP: wrk counts those as non-2xx.
        if !line.contains("Non-2xx") {
            eprintln!("warning: {}", line.trim());
        }
    }
    text.lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Redis's `used_memory` (bytes) and number of keys.
fn redis_usage(redis: &support::redis::RedisServer) -> (u64, u64) {
    let used = common::redis_info(redis, "used_memory");
    let keys = redis.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
    (used, keys)
}
