//! Proxy throughput on loopback, measured with wrk, in one run:
//!
//! - `direct`: wrk → upstream (the reference ceiling);
//! - `hyper`: wrk → a bare hyper reverse proxy (this executable again,
//!   hyper's server and pooled client, no auth) → upstream, so that
//!   cloakroom's own work is the difference between it and the routes
//!   below, and hyper's the difference between it and nginx;
//! - `hyper-flat`: the same with HTTP/1 `writev` off (hyper copies each
//!   answer's head and body into one buffer and writes it with one
//!   `write`): what that knob buys;
//! - `anonymous`: wrk → cloakroom (anonymous route) → upstream;
//! - `nginx`: wrk → nginx as a plain keep-alive reverse proxy → upstream,
//!   when `nginx` is installed (`apt-get install nginx-light wrk`);
//! - `auth-memory`, `auth-redis-cache`, `auth-redis`: wrk with a session
//!   cookie → cloakroom (login required, bearer injected) → upstream, with
//!   the memory store, with Redis and the local cache, and with Redis
//!   alone. These need Node.js (the test IdP logs the session in) and
//!   `redis-server`; without them they are skipped.
//! - `auth-dpop`: as `auth-memory`, with `oidc.dpop`: the token is bound
//!   to cloakroom's key and each request carries a fresh proof (ES256).
//!
//! With `BENCH_SESSIONS=1,10000,100000` (counts, comma separated), the
//! Redis replicas are also loaded with that many distinct sessions each
//! (each replica its own), round-robin, so the local cache hits and misses
//! as in production:
//! `auth-redis-cache@N` (the cache on) and `auth-redis@N` (off). The
//! sessions are created in Redis through the library (`Sessions::create`,
//! as a login would, one user each) rather than by N logins; wrk cycles
//! through their cookies with a Lua script, which costs wrk a little CPU,
//! so compare `@N` targets with each other (`@1` is the same path with one
//! cookie). `BENCH_CACHE_ENTRIES` sets the cache replica's
//! `local_cache.max_entries` (default 100 000), to measure a cache smaller
//! than the sessions. The memory store's sessions live inside its process:
//! it keeps its one logged-in session.
//!
//! With `BENCH_BASELINE=<path to another cloakroom binary>` (an earlier
//! commit's release build), `auth-memory@baseline` runs that binary on the
//! same authenticated route, interleaved with the rest, and the ratio of
//! this build to it is printed: a change's cost, measured in one run.
//!
//! Prints req/s, p50 and p99 latency, ratios against nginx, direct and
//! the anonymous route, and which targets it skipped and why. Run with
//! `cargo bench --bench proxy`; `BENCH_SECONDS` (default 10),
//! `BENCH_ROUNDS` (default 3) and `BENCH_CONNECTIONS` (default 64) tune it;
//! `BENCH_TARGETS` (names, comma separated) keeps only those targets, for
//! longer rounds of a comparison.
//!
//! With `BENCH_PERF=<targets>` (e.g. `hyper,auth-redis-cache`), a pass
//! after the counted rounds runs each under `perf record` (Debian's
//! `linux-perf`, frame pointers, 1 999 Hz) on the process serving it, which
//! leaves in
//! `BENCH_PERF_DIR` (default `target/bench-perf`) the folded stacks and a
//! flame graph when `inferno` is installed (`cargo install inferno`), and
//! prints that process's CPU time per request and how it divides among
//! the parts of the path (`proxy/breakdown.rs`; `BENCH_BREAKDOWN=<folded
//! stacks>:<µs per request>` prints that again for a saved profile). For
//! whole stacks build
//! with frame pointers and symbols:
//! `RUSTFLAGS='-C force-frame-pointers=yes' CARGO_PROFILE_BENCH_STRIP=none
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo bench --bench proxy`.
//!
//! The upstream is this same executable re-started in upstream mode, so it
//! is a separate process shared by every target.

#[path = "proxy/breakdown.rs"]
mod breakdown;
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Map, Value};

use cloakroom::oidc::TokenResponse;
use cloakroom::secret::AccessToken;

use common::{free_port, wait_for, Guard, BODY};

// The upstream and the bare hyper proxy run in this executable: on
// cloakroom's allocator, so the hyper reference differs from it by
// cloakroom's work alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    common::serve_upstream_if_asked();
    if !common::is_bench_run() {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    if let Ok(saved) = std::env::var("BENCH_BREAKDOWN") {
        // A saved profile's breakdown again: `<name>.folded:<µs per request>`.
        let (path, cpu_us) = saved
            .rsplit_once(':')
            .and_then(|(path, us)| Some((path, us.parse::<f64>().ok()?)))
            .expect("BENCH_BREAKDOWN=<folded stacks>:<µs of CPU per request>");
        let folded = std::fs::read_to_string(path).expect("read the folded stacks");
        breakdown::print(path, &folded, cpu_us);
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk");
        std::process::exit(1);
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: u64 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().expect("temp dir");

    let (_upstream, upstream_port) = common::start_upstream();

    let cloakroom_port = free_port();
    let config = dir.path().join("cloakroom.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{cloakroom_port}\nadmin_listen: 127.0.0.1:{admin}\npublic_url: http://localhost:{cloakroom_port}
log: {{level: warn}}\nroutes: [{{path: /, upstream: 'http://127.0.0.1:{upstream_port}', auth: none}}]\n",
            admin = free_port()
        ),
    )
    .expect("write config");
    let _cloakroom = Guard(
        Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("start cloakroom"),
    );
    wait_for(cloakroom_port);

    let (_hyper_proxy, hyper_port) = common::start_hyper_proxy(upstream_port, false);
    let (_hyper_flat, hyper_flat_port) = common::start_hyper_proxy(upstream_port, true);

    let nginx_port = free_port();
    let _nginx = start_nginx(dir.path(), nginx_port, upstream_port);
    if _nginx.is_some() {
        wait_for(nginx_port);
    }

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut targets = vec![
        Target::plain("direct", upstream_port),
        Target::plain("hyper", hyper_port),
        Target::plain("hyper-flat", hyper_flat_port),
        Target::plain("anonymous", cloakroom_port),
    ];
    if _nginx.is_some() {
        targets.push(Target::plain("nginx", nginx_port));
    }
    let mut skipped = Vec::new();
    let _authenticated = authenticated(upstream_port, dir.path(), &mut targets, &mut skipped);
    if let Ok(only) = std::env::var("BENCH_TARGETS") {
        targets.retain(|t| only.split(',').any(|name| name.trim() == t.name));
    }
    for target in &targets {
        wrk(target, 2, connections); // warm-up: pools, caches, CPU frequency
    }
    // Rounds interleave the targets, so drift in the machine's state (other
    // load, frequency) falls on all of them alike; every other round runs
    // them in reverse, so no target always follows the same one. The
    // median round counts.
    let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let target = &targets[i];
            let sample = wrk(target, seconds, connections);
            eprintln!(
                "round {}: {:<24} {:>10.0} req/s",
                round + 1,
                target.name,
                sample.rps
            );
            samples[i].push(sample);
        }
    }
    // Profiles come from a pass of their own after the rounds: perf's
    // sampling slows the process it watches, so no counted round has it.
    let perf_list = std::env::var("BENCH_PERF").unwrap_or_default();
    for target in targets
        .iter()
        .filter(|t| perf_list.split(',').any(|name| name.trim() == t.name))
    {
        let profile = Profile::start(target, seconds);
        let sample = wrk(target, seconds, connections);
        profile.finish(target, &sample, seconds);
    }
    let results: Vec<(&str, Sample)> = targets
        .iter()
        .zip(samples)
        .map(|(target, s)| (target.name.as_str(), median(s)))
        .collect();

    println!(
        "\nproxy benchmark: wrk -t2 -c{connections} -d{seconds}s, median of {rounds} interleaved rounds, {} byte responses, loopback",
        BODY.len()
    );
    println!(
        "{:<24} {:>12} {:>10} {:>10}",
        "target", "req/s", "p50 ms", "p99 ms"
    );
    for (name, r) in &results {
        println!("{name:<24} {:>12.0} {:>10.3} {:>10.3}", r.rps, r.p50_ms, r.p99_ms);
    }
    let get = |n: &str| results.iter().find(|(name, _)| *name == n).map(|(_, r)| r.rps);
    let ratio = |a: &str, b: &str| {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            println!("{a:>24} / {b:<20} = {:.2}x req/s", x / y);
        }
    };
    ratio("anonymous", "direct");
    ratio("anonymous", "nginx");
    ratio("hyper", "nginx");
    ratio("hyper-flat", "hyper");
    ratio("anonymous", "hyper");
    ratio("auth-memory", "auth-memory@baseline");
    for auth in ["auth-memory", "auth-redis-cache", "auth-redis", "auth-dpop"] {
        ratio(auth, "anonymous");
        ratio(auth, "hyper");
        ratio(auth, "nginx");
    }
    ratio("auth-dpop", "auth-memory");
    for n in session_counts() {
        let (cached, plain) = (format!("auth-redis-cache@{n}"), format!("auth-redis@{n}"));
        ratio(&cached, &plain);
        if n != 1 {
            ratio(&cached, "auth-redis-cache@1");
        }
        ratio(&cached, "nginx");
    }
    if get("nginx").is_none() {
        skipped.push("nginx: not installed, so no nginx reference in this run".into());
    }
    for reason in &skipped {
        println!("skipped {reason}");
    }
}

/// What wrk loads: a port, and the headers a logged-in SPA would send, or
/// a Lua script that sends them for many sessions.
struct Target {
    name: String,
    port: u16,
    headers: Vec<String>,
    script: Option<PathBuf>,
}

impl Target {
    fn plain(name: &str, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            port,
            headers: Vec::new(),
            script: None,
        }
    }
}

/// The processes behind the authenticated targets, stopped on drop.
struct Authenticated {
    _idp: support::idp::Idp,
    _dpop_key: support::dpop_api::Key,
    _redis: support::redis::RedisServer,
    _replicas: Vec<support::Process>,
}

/// Starts the test IdP, Redis and three cloakroom processes (memory store,
/// Redis with the local cache, Redis without), logs one session into each,
/// and adds them to `targets`; then the `@N` targets of `BENCH_SESSIONS`.
/// Skipped when Node.js or Redis is missing.
fn authenticated(
    upstream: u16,
    dir: &Path,
    targets: &mut Vec<Target>,
    skipped: &mut Vec<String>,
) -> Option<Authenticated> {
    let missing = ["node", "redis-server"]
        .into_iter()
        .find(|tool| Command::new(tool).arg("--version").output().is_err());
    if let Some(tool) = missing {
        skipped.push(format!("auth-*: {tool} is not installed"));
        return None;
    }
    let redis = support::redis::RedisServer::start_with(&["--appendonly", "no"]);
    let baseline = std::env::var("BENCH_BASELINE").ok();
    let stores = [
        ("auth-memory", "memory".to_owned()),
        (
            "auth-redis-cache",
            match std::env::var("BENCH_CACHE_ENTRIES") {
                Ok(n) => format!(
                    "{{redis: {{url: '{}', local_cache: {{max_entries: {n}}}}}}}",
                    redis.url()
                ),
                Err(_) => format!("{{redis: {{url: '{}'}}}}", redis.url()),
            },
        ),
        (
            "auth-redis",
            format!("{{redis: {{url: '{}', local_cache: false}}}}", redis.url()),
        ),
    ];
    let ports: Vec<u16> = stores.iter().map(|_| free_port()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut replicas = Vec::new();
    let mut runs: Vec<(&'static str, String, u16, Option<&str>)> = stores
        .into_iter()
        .zip(ports)
        .map(|((name, store), port)| (name, store, port, None))
        .collect();
    if let Some(binary) = baseline.as_deref() {
        runs.push(("auth-memory@baseline", "memory".into(), free_port(), Some(binary)));
    }
    runs.push(("auth-dpop", "memory".into(), free_port(), None));
    let dpop_key = support::dpop_api::Key::new();
    let idp = support::idp::Idp::start(serde_json::json!({
        "redirect_uris": runs.iter().map(|r| format!("http://127.0.0.1:{}/auth/callback", r.2)).collect::<Vec<_>>(),
        // No refresh during the run: the figures are for the session path.
        "access_token_ttl": 3600,
    }));
    // The Redis replicas that serve, and their configs.
    let mut on_redis = Vec::new();
    for (name, store, port, binary) in runs {
        let dpop = if name == "auth-dpop" {
            format!(", {}", support::dpop_api::dpop(&[("bench", &dpop_key)]))
        } else {
            String::new()
        };
        let yaml = format!(
            "public_url: http://127.0.0.1:{port}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret{dpop}}}
cookie: {{keys: [{{id: '1', secret: {key}}}]}}
session: {{store: {store}}}
routes:
  - {{path: /api, upstream: 'http://127.0.0.1:{upstream}'}}
  - {{path: /, upstream: 'http://127.0.0.1:{upstream}', auth: none}}",
            iss = idp.issuer,
            key = "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY",
        );
        replicas.push(match binary {
            Some(binary) => support::Process::start_binary_at(binary, port, &yaml),
            None => support::Process::start_at(port, &yaml),
        });
        let base = format!("http://127.0.0.1:{port}");
        let browser = support::Browser::new(&base);
        let (page, _) =
            runtime.block_on(browser.navigate(&format!("{base}/auth/login?return_to=/"), "bench"));
        let cookie = browser.cookie(&base, "cloakroom").filter(|_| page.status == 200);
        let Some(cookie) = cookie else {
            skipped.push(format!("{name}: login failed ({})", page.status));
            continue;
        };
        targets.push(Target {
            name: name.to_owned(),
            port,
            headers: vec![format!("Cookie: cloakroom={cookie}"), "X-CSRF: 1".into()],
            script: None,
        });
        if store.contains("redis") && binary.is_none() {
            on_redis.push((name, port, yaml));
        }
    }
    let counts = session_counts();
    if let (Some(most), Some((_, _, yaml))) = (counts.iter().max(), on_redis.first()) {
        // Each replica cycles through sessions of its own (they share the
        // cookie key, so one call makes them all): a session's activity is
        // written back at most once a minute, by whichever replica meets it
        // first after that, and with shared sessions that write would fall
        // on one target of a pair and spare the other.
        let started = Instant::now();
        match runtime.block_on(create_sessions(yaml, *most * on_redis.len())) {
            Ok(cookies) => {
                eprintln!("{} sessions created in {:.1?}", cookies.len(), started.elapsed());
                for &n in &counts {
                    for (j, (name, port, _)) in on_redis.iter().enumerate() {
                        let own = &cookies[j * most..j * most + n];
                        targets.push(Target {
                            name: format!("{name}@{n}"),
                            port: *port,
                            headers: Vec::new(),
                            script: Some(round_robin(dir, &format!("{name}@{n}"), own)),
                        });
                    }
                }
                skipped.push(
                    "auth-memory@N: the memory store's sessions live inside its process (one session measured)"
                        .into(),
                );
            }
            Err(e) => skipped.push(format!("auth-redis*@N: sessions not created: {e}")),
        }
    } else if !counts.is_empty() {
        skipped.push("auth-redis*@N: no Redis replica logged in".into());
    }
    Some(Authenticated {
        _idp: idp,
        _dpop_key: dpop_key,
        _redis: redis,
        _replicas: replicas,
    })
}

/// `BENCH_SESSIONS`: how many sessions each `@N` target cycles through.
fn session_counts() -> Vec<usize> {
    let Ok(list) = std::env::var("BENCH_SESSIONS") else {
        return Vec::new();
    };
    list.split(',')
        .map(|n| match n.trim().replace('_', "").parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("BENCH_SESSIONS: expected counts ≥ 1, comma separated, not {n:?}"),
        })
        .collect()
}

/// Creates `n` sessions in the Redis store `yaml` names, each for its own
/// user so the per-user bound pushes none out; returns their `Cookie`
/// header values.
async fn create_sessions(yaml: &str, n: usize) -> Result<Vec<String>, String> {
    let config = cloakroom::config::Config::load(yaml, &cloakroom::config::MapEnv::default())
        .map_err(|e| e.to_string())?;
    let issuer = config.oidc.as_ref().ok_or("no oidc section")?.issuer.to_string();
    common::create_sessions(yaml, n, |i| {
        let claims = Map::from_iter([
            ("iss".to_owned(), Value::from(issuer.as_str())),
            ("sub".to_owned(), Value::from(format!("bench-{i}"))),
        ]);
        let tokens = TokenResponse {
            // No refresh during the run: the figures are for the session path.
            access_token: AccessToken::new(format!("bench-access-token-{i}")),
            token_type: "Bearer".into(),
            expires_in: Some(3600),
            refresh_token: None,
            id_token: None,
            issued_token_type: None,
            jkt: None,
        };
        (tokens, claims)
    })
    .await
}

/// A wrk script that sends each request with the next of `cookies`, the
/// two wrk threads starting half the list apart.
fn round_robin(dir: &Path, label: &str, cookies: &[String]) -> PathBuf {
    let list = dir.join(format!("cookies-{label}.txt"));
    std::fs::write(&list, cookies.join("\n") + "\n").expect("write the cookie list");
    let script = dir.join(format!("sessions-{label}.lua"));
    std::fs::write(
        &script,
        format!(
            r#"local cookies = {{}}
for line in io.lines({list:?}) do cookies[#cookies + 1] = line end
local threads = 0
function setup(thread)
  thread:set("start", threads)
  threads = threads + 1
end
local i = 0
function init(args)
  i = (start or 0) * math.floor(#cookies / 2)
end
function request()
  i = i % #cookies + 1
  return wrk.format(nil, nil, {{["Cookie"] = cookies[i], ["X-CSRF"] = "1"}})
end
"#
        ),
    )
    .expect("write the wrk script");
    script
}

/// `perf record` on the process behind one target, for one wrk run.
struct Profile {
    perf: Option<std::process::Child>,
    pids: Vec<u32>,
    cpu_before: f64,
    dir: PathBuf,
}

impl Profile {
    fn start(target: &Target, seconds: u64) -> Self {
        // nginx serves from several workers: all of them count.
        let pids = pids_listening(target.port);
        assert!(!pids.is_empty(), "no process listens behind {}", target.name);
        let list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let dir = std::env::var("BENCH_PERF_DIR").map_or_else(
            |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-perf"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).expect("create BENCH_PERF_DIR");
        // Skip wrk's first second (connections opening) and stop before its last.
        let perf = Command::new("perf")
            .args(["record", "-F", "1999", "-g", "-D", "1000", "-p", &list, "-o"])
            .arg(dir.join(format!("{}.perf.data", target.name)))
            .args(["--", "sleep", &seconds.saturating_sub(1).max(1).to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("warning: perf not started ({e}): apt-get install linux-perf"))
            .ok();
        Self {
            perf,
            cpu_before: cpu_seconds(&pids),
            pids,
            dir,
        }
    }

    fn finish(self, target: &Target, sample: &Sample, seconds: u64) {
        let cpu = cpu_seconds(&self.pids) - self.cpu_before;
        let requests = sample.rps * seconds as f64;
        let cpu_us = cpu * 1e6 / requests.max(1.0);
        println!(
            "{}: {cpu_us:.1} µs of CPU per request in the process serving it ({cpu:.2} s for {requests:.0} requests)",
            target.name,
        );
        let Some(mut perf) = self.perf else { return };
        let _ = perf.wait();
        let data = self.dir.join(format!("{}.perf.data", target.name));
        let script = Command::new("perf")
            .args(["script", "--no-inline", "-i"])
            .arg(&data)
            .stderr(Stdio::null())
            .output();
        let Ok(script) = script else { return };
        let folded = run_with_input("inferno-collapse-perf", &[], &script.stdout);
        let Some(folded) = folded else {
            println!(
                "{}: perf data in {} (install inferno for a flame graph)",
                target.name,
                data.display()
            );
            return;
        };
        let base = self.dir.join(&target.name);
        std::fs::write(base.with_extension("folded"), &folded).expect("write folded stacks");
        breakdown::print(&target.name, &String::from_utf8_lossy(&folded), cpu_us);
        let title = format!(
            "{}: {:.0} req/s under perf (cargo bench --bench proxy)",
            target.name, sample.rps
        );
        if let Some(svg) = run_with_input("inferno-flamegraph", &["--title", &title], &folded) {
            std::fs::write(base.with_extension("svg"), svg).expect("write the flame graph");
        }
        println!(
            "{}: perf data, folded stacks and flame graph in {}",
            target.name,
            self.dir.display()
        );
    }
}

/// The processes listening on `port` on loopback, from `ss`.
fn pids_listening(port: u16) -> Vec<u32> {
    let Ok(out) = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
    else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split("pid=")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    // A master that only accepts (nginx's) is listed too; it costs nothing.
    pids
}

fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|&pid| common::cpu_seconds(pid)).sum()
}

/// `program`'s standard output for `input` on its standard input; `None`
/// when it is not installed or fails.
fn run_with_input(program: &str, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    out.status.success().then_some(out.stdout)
}

struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(target: &Target, seconds: u64, connections: u64) -> Sample {
    let url = format!("http://127.0.0.1:{}/api/items?page=1", target.port);
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    for header in &target.headers {
        command.args(["-H", header]);
    }
    if let Some(script) = &target.script {
        command.arg("-s").arg(script);
    }
    let out = command.arg(&url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(line) = errors {
        eprintln!("warning: {}: {}", target.name, line.trim());
    }
    Sample {
        rps: field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        p50_ms: field("50%").map(to_ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(to_ms).unwrap_or(f64::NAN),
    }
}

/// The sample with the median req/s (its latencies come with it).
fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = samples.len() / 2;
    samples.swap_remove(mid)
}

/// wrk prints latencies as `812.00us`, `1.23ms` or `1.02s`.
fn to_ms(v: &str) -> f64 {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, f64::NAN)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

fn start_nginx(dir: &Path, port: u16, upstream: u16) -> Option<Guard> {
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|n| Command::new(n).arg("-v").output().is_ok())?;
    let conf = dir.join("nginx.conf");
    // A plain, tuned reverse proxy: keep-alive to the upstream, no access log,
    // one worker per core, as a production nginx would run.
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host $proxy_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}\n",
            dir = dir.display()
        ),
    )
    .ok()?;
    let child = Command::new(nginx)
        .args(["-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Guard(child))
}
