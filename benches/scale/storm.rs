//! Part 3: a refresh storm across the replicas.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::common::{env_or, redis_info};
use crate::{call_each, client, percentile, Report, World, REPLICAS};

/// Part 3: every session's token expired, every session called on every
/// replica at once.
pub async fn storm(world: &World, report: &mut Report) {
    let sessions: usize = env_or("SCALE_STORM_SESSIONS", 2_000);
    let concurrency: usize = env_or("SCALE_STORM_CONCURRENCY", 1_024);
    let started = Instant::now();
    let logins: Vec<Result<String, String>> = futures_util::stream::iter(0..sessions)
        .map(|i| async move { world.login(&format!("storm-{i}")).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    let failed = logins.iter().filter(|l| l.is_err()).count();
    let mut causes = std::collections::BTreeMap::<&str, usize>::new();
    for cause in logins.iter().filter_map(|l| l.as_ref().err()) {
        *causes.entry(cause.as_str()).or_default() += 1;
    }
    for (cause, count) in &causes {
        report.line(format!("[storm] {count} logins failed: {cause}"));
    }
    let cookies: Vec<String> = logins.into_iter().filter_map(Result::ok).collect();
    report.line(format!(
        "\n[storm] {} real logins through the test IdP in {took:.1?} ({:.0}/s end to end){}; access tokens of {} s",
        cookies.len(),
        cookies.len() as f64 / took.as_secs_f64(),
        if failed > 0 { format!(", {failed} failed") } else { String::new() },
        world.ttl,
    ));
    // Every token expired (and past its refresh point) before the storm.
    tokio::time::sleep(Duration::from_secs(world.ttl + 1)).await;
    let calls: Vec<(String, String)> = cookies
        .iter()
        .flat_map(|c| (0..REPLICAS).map(move |r| (world.base(r), c.clone())))
        .collect();
    let client = client();
    let grants = |stats: &Value| stats["grants"]["refresh_token"].as_u64().unwrap_or(0);
    let mut rounds = Vec::new();
    for name in ["storm", "quiet"] {
        let grants_before = grants(&world.idp.stats().await);
        let commands_before = redis_info(&world.redis, "total_commands_processed");
        let started = Instant::now();
        let (ok, others, mut latencies) = call_each(&client, calls.clone(), concurrency).await;
        let took = started.elapsed();
        let commands = redis_info(&world.redis, "total_commands_processed") - commands_before;
        let grants = grants(&world.idp.stats().await) - grants_before;
        latencies.sort_unstable();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        report.line(format!(
            "[storm] {name:<5}: {} calls ({} sessions × {REPLICAS} replicas, {concurrency} in flight) in {took:.2?}: {ok} × 200{}; refresh grants {grants} ({:.3} per session); p50 {p50:.1} ms, p99 {p99:.1} ms; Redis {:.0} commands/s ({:.1} per call)",
            calls.len(),
            cookies.len(),
            if others.is_empty() { String::new() } else { format!(", others: {others:?}") },
            grants as f64 / cookies.len().max(1) as f64,
            commands as f64 / took.as_secs_f64(),
            commands as f64 / calls.len().max(1) as f64,
        ));
        rounds.push(p99);
    }
    report.line(format!(
        "[storm] p99 storm / quiet = {:.2}x",
        rounds[0] / rounds[1]
    ));
    // What the replicas warned of meanwhile, by message and error.
    let mut warnings = std::collections::BTreeMap::<String, usize>::new();
    for line in world.replicas.iter().flat_map(|r| r.logs()) {
        if matches!(line["level"].as_str(), Some("WARN" | "ERROR")) {
            let what = format!("{} {}", line["message"], line["error"]);
            *warnings.entry(what).or_default() += 1;
        }
    }
    for (what, count) in warnings {
        report.line(format!("[storm] replicas warned {count} times: {what}"));
    }
    // How the replicas' refreshes ended, and why sessions ended: summed
    // over the three from their metrics.
    let mut counted = std::collections::BTreeMap::<String, f64>::new();
    for replica in &world.replicas {
        let text = client
            .get(format!("{}/metrics", replica.admin))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let Ok(text) = (match text {
            Ok(r) => r.text().await,
            Err(e) => Err(e),
        }) else {
            continue;
        };
        for line in text.lines() {
            let series = ["cloakroom_refreshes_total{", "cloakroom_sessions_ended_total{"];
            if series.iter().any(|s| line.starts_with(s)) {
                if let Some((name, value)) = line.rsplit_once(' ') {
                    *counted.entry(name.to_owned()).or_default() += value.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
    }
    for (series, value) in counted.iter().filter(|(_, v)| **v > 0.0) {
        report.line(format!("[storm] {series} {value}"));
    }
}
