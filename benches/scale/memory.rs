//! Parts 1 and 2: what a session costs in Redis, in each record format
//! (`session.record_format`), and in a replica's local cache.

use std::process::Command;
use std::time::Instant;

use crate::common::{self, env_or, free_port, redis_info, rss_kib};
use crate::support::redis::RedisServer;
use crate::support::Process;
use crate::{call_each, client, mean, sample_keys, LoginShape, Report, World};

/// Part 1: bytes per session in a fresh Redis, for each record format in
/// turn, and their ratio; then compact records in a Redis whose
/// `hash-max-listpack-value` keeps a record's hash a listpack (Redis's
/// default, 64 bytes, makes it a hash table: the sealed record is longer).
/// Returns the Redis of the compact records with Redis's defaults and its
/// sessions' cookies, for part 2.
pub async fn memory(world: &World, shape: &LoginShape, report: &mut Report) -> (RedisServer, Vec<String>) {
    let listpack = ["--hash-max-listpack-value", "4096"];
    let mut per_session = Vec::new();
    let mut last = None;
    for (format, redis_args) in [
        ("json", &[][..]),
        ("compact", &listpack[..]),
        ("compact", &[][..]),
    ] {
        // One Redis at a time: the previous one's memory is given back first.
        drop(last.take());
        let (bytes, redis, cookies) = memory_in(world, shape, format, redis_args, report).await;
        per_session.push(bytes);
        last = Some((redis, cookies));
    }
    if let [json, listpack, compact] = per_session[..] {
        report.line(format!(
            "\n[memory] record_format compact / json: {:.2}x the used_memory per session ({compact:.0} B / {json:.0} B), {:.0} B less",
            compact / json,
            json - compact
        ));
        report.line(format!(
            "[memory] compact, hash-max-listpack-value 4096 / 64 (Redis's default): {:.2}x ({listpack:.0} B / {compact:.0} B), {:.0} B less",
            listpack / compact,
            compact - listpack
        ));
    }
    last.expect("every format measured")
}

/// Part 1 for one record format, in a Redis started with `redis_args`
/// besides no persistence: returns the `used_memory` delta per
/// session, the Redis, and the sessions' cookies.
async fn memory_in(
    world: &World,
    shape: &LoginShape,
    format: &str,
    redis_args: &[&str],
    report: &mut Report,
) -> (f64, RedisServer, Vec<String>) {
    let n: usize = env_or("SCALE_SESSIONS", 100_000);
    let args = [&["--appendonly", "no", "--save", ""][..], redis_args].concat();
    let redis = RedisServer::start_with(&args);
    let yaml = world
        .yaml(0, &redis.url(), 100_000)
        .replace("session: {", &format!("session: {{record_format: {format}, "));
    let before = redis_info(&redis, "used_memory");
    let started = Instant::now();
    let cookies = common::create_sessions(&yaml, n, |i| shape.login(i))
        .await
        .expect("sessions created");
    let took = started.elapsed();
    let after = redis_info(&redis, "used_memory");
    let keys: u64 = redis.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
    let per_session = (after - before) as f64 / n as f64;
    report.line(format!(
        "\n[memory] record_format: {format}{}; {n} sessions created in {took:.1?} ({:.0}/s); Redis used_memory {:.1} MB → {:.1} MB, {keys} keys ({:.2} per session)",
        if redis_args.is_empty() {
            String::new()
        } else {
            format!(", redis-server {}", redis_args.join(" "))
        },
        n as f64 / took.as_secs_f64(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        keys as f64 / n as f64,
    ));
    report.line(format!(
        "[memory] used_memory delta / N        = {per_session:>8.0} B per session"
    ));
    let mut parts_total = 0.0;
    for (kind, pattern) in [
        ("record", "cloakroom:*:s"),
        ("subject index", "cloakroom:*:idx"),
        ("IdP-session index", "cloakroom:*:sid"),
    ] {
        let sample = sample_keys(&redis, pattern, 200);
        if sample.is_empty() {
            report.line(format!("[memory] {kind:<17} (no keys {pattern})"));
            continue;
        }
        let usage = mean(sample.iter().map(|k| {
            redis
                .cli(&["MEMORY", "USAGE", k, "SAMPLES", "0"])
                .trim()
                .parse()
                .unwrap_or(0.0)
        }));
        let count = keys_matching(&redis, pattern);
        let per = usage * count as f64 / n as f64;
        parts_total += per;
        let mut line = format!(
            "[memory] {kind:<17} MEMORY USAGE {usage:>6.0} B × {:.2} per session = {per:>6.0} B",
            count as f64 / n as f64
        );
        if kind == "record" {
            let field = |name: &str| {
                mean(
                    sample
                        .iter()
                        .map(|k| redis.cli(&["HSTRLEN", k, name]).trim().parse().unwrap_or(0.0)),
                )
            };
            let (encoded, beside) = (field("d"), field("b"));
            let tokens = shape.access.len()
                + shape.refresh.as_ref().map_or(0, String::len)
                + shape.id.as_ref().map_or(0, String::len);
            let encoding = redis.cli(&["OBJECT", "ENCODING", &sample[0]]);
            line += &format!(
                "; sealed record {encoded:.0} B = {:.2}x its tokens' {tokens} B; revocation copy {beside:.0} B; hash encoding {}",
                encoded / tokens as f64,
                encoding.trim()
            );
        }
        report.line(line);
    }
    report.line(format!(
        "[memory] keys' MEMORY USAGE sum {parts_total:.0} B = {:.2}x of used_memory / N (the rest: Redis's dict and expiry tables)",
        parts_total / per_session
    ));
    (per_session, redis, cookies)
}

/// How many keys match `pattern` (a full scan, once per kind).
fn keys_matching(redis: &RedisServer, pattern: &str) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--scan", "--pattern", pattern])
        .output()
        .expect("redis-cli");
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

/// Part 2: the resident memory of one replica holding `SCALE_CACHED`
/// sessions in its local cache.
pub async fn rss(world: &World, redis: &RedisServer, cookies: &[String], report: &mut Report) {
    let cached: usize = env_or("SCALE_CACHED", 100_000).min(cookies.len());
    let cookies = &cookies[..cached];
    let port = free_port();
    let yaml = world.yaml(0, &redis.url(), cached.max(100_000)).replace(
        &format!("127.0.0.1:{}", world.ports[0]),
        &format!("127.0.0.1:{port}"),
    );
    let replica = Process::start_at(port, &yaml);
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let one = |count: usize| vec![(base.clone(), cookies[0].clone()); count];
    // Warm-up: connections, pools, the allocator's arenas.
    call_each(&client, one(2_000), 32).await;
    let start = rss_kib(replica.pid());
    let (same_ok, _, _) = call_each(&client, one(2 * cached), 32).await;
    let reference = rss_kib(replica.pid());
    let distinct: Vec<_> = cookies.iter().map(|c| (base.clone(), c.clone())).collect();
    // Each cookie twice: a session seen for the first time in over a
    // minute has its activity written back, and a write drops the copy
    // cached for it (on every replica, this one too); the second call
    // caches it again.
    let started = Instant::now();
    let (ok, others, _) = call_each(&client, [distinct.clone(), distinct].concat(), 32).await;
    let took = started.elapsed();
    let end = rss_kib(replica.pid());
    let per = (end as f64 - reference as f64) * 1024.0 / cached as f64;
    let record: f64 = mean(
        sample_keys(redis, "cloakroom:*:s", 200)
            .iter()
            .map(|k| redis.cli(&["HSTRLEN", k, "d"]).trim().parse().unwrap_or(0.0)),
    );
    report.line(format!(
        "\n[rss] one replica, local cache of {cached}: VmRSS {:.1} MB after warm-up, {:.1} MB after {} calls with one cookie ({same_ok} × 200), {:.1} MB after {cached} distinct cookies twice each ({ok} × 200{}, {:.0} calls/s)",
        start as f64 / 1024.0,
        reference as f64 / 1024.0,
        2 * cached,
        end as f64 / 1024.0,
        if others.is_empty() { String::new() } else { format!(", also {others:?}") },
        2.0 * cached as f64 / took.as_secs_f64(),
    ));
    report.line(format!(
        "[rss] (distinct − one cookie) / {cached} = {per:.0} B per cached session = {:.2}x the sealed record ({record:.0} B)",
        per / record
    ));
}
