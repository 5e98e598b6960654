//! Part 4: a rolling restart under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::common::{self, env_or};
use crate::support::Process;
use crate::{client, LoginShape, Report, World, REPLICAS};

/// Counts of what the load saw during the rolling restart.
#[derive(Default)]
struct Seen {
    ok: AtomicUsize,
    unauthorized: AtomicUsize,
    other_status: AtomicUsize,
    retried: AtomicUsize,
    failed: AtomicUsize,
}

/// Part 4: a rolling restart of the three replicas under load.
pub fn restart(runtime: &tokio::runtime::Runtime, world: &mut World, report: &mut Report) {
    let n: usize = env_or("SCALE_RESTART_SESSIONS", 10_000);
    let clients: usize = env_or("SCALE_RESTART_CLIENTS", 32);
    let yaml = world.yaml(0, &world.redis.url(), 100_000);
    let shape = LoginShape {
        access: "a".repeat(64),
        ..LoginShape::default()
    };
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(world.idp.issuer.as_str()));
    let shape = LoginShape { claims, ..shape };
    let cookies = Arc::new(
        runtime
            .block_on(common::create_sessions(&yaml, n, |i| shape.login(i)))
            .expect("sessions created"),
    );
    let bases: Arc<Vec<String>> = Arc::new((0..REPLICAS).map(|i| world.base(i)).collect());
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let client = client();
    let load: Vec<_> = (0..clients)
        .map(|_| {
            let (cookies, bases, seen, stop, next, client) = (
                cookies.clone(),
                bases.clone(),
                seen.clone(),
                stop.clone(),
                next.clone(),
                client.clone(),
            );
            runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let cookie = &cookies[i % cookies.len()];
                    let mut answered = false;
                    // Round-robin; a replica that is gone passes the call on.
                    for attempt in 0..REPLICAS {
                        let base = &bases[(i + attempt) % REPLICAS];
                        let sent = client
                            .get(format!("{base}/api/items"))
                            .header("cookie", cookie)
                            .header("x-csrf", "1")
                            .send()
                            .await;
                        let counter = match sent {
                            Ok(r) if r.status() == 200 => &seen.ok,
                            Ok(r) if r.status() == 401 => &seen.unauthorized,
                            Ok(_) => &seen.other_status,
                            Err(_) => {
                                seen.retried.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        answered = true;
                        break;
                    }
                    if !answered {
                        seen.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let mut downtimes = Vec::new();
    for i in 0..REPLICAS {
        let stopping = Instant::now();
        let status = world.replicas[i].terminate();
        let drained = stopping.elapsed();
        let yaml = world.yaml(i, &world.redis.url(), 100_000);
        world.replicas[i] = Process::start_at(world.ports[i], &yaml);
        downtimes.push(format!(
            "replica {}: drained in {drained:.2?} ({status}), ready again after {:.2?}",
            i + 1,
            stopping.elapsed()
        ));
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = runtime.block_on(task);
    }
    let took = started.elapsed();
    let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let total = get(&seen.ok) + get(&seen.unauthorized) + get(&seen.other_status) + get(&seen.failed);
    report.line(format!(
        "\n[restart] {n} sessions, {clients} clients round-robin over {REPLICAS} replicas for {took:.1?} while each was restarted (SIGTERM, drain, start on its port): {total} calls ({:.0}/s), {} × 200, 401s {}, other statuses {}, unanswered after every replica {}; {} attempts passed on to the next replica (refused or connection closed)",
        total as f64 / took.as_secs_f64(),
        get(&seen.ok),
        get(&seen.unauthorized),
        get(&seen.other_status),
        get(&seen.failed),
        get(&seen.retried),
    ));
    for line in downtimes {
        report.line(format!("[restart] {line}"));
    }
}
