//! Sessions at scale, in one run (`cargo bench --bench scale`):
//!
//! 1. `memory`: bytes per session in Redis. `SCALE_SESSIONS` (default
//!    100 000; 1 000 000 for the full figure) sessions created in a fresh
//!    `redis-server` without persistence as a login writes them
//!    (`Sessions::create`), with tokens and ID-token claims of the sizes a
//!    real login through the test IdP gave in this run: `used_memory`
//!    delta / N, split by `MEMORY USAGE` of sampled keys into the record
//!    and its indexes, and the record's encoded size; for each
//!    `session.record_format` (json, compact) in turn, and compact again
//!    with `hash-max-listpack-value 4096`, with their ratios.
//! 2. `rss`: resident memory of one `cloakroom serve` (Redis store, local
//!    cache of `SCALE_CACHED` entries, default 100 000) before and after
//!    each of `SCALE_CACHED` distinct cookies is requested twice (a
//!    session's first call in over a minute writes its activity back,
//!    which drops its cached copy; the second call caches it again); the
//!    reference is the same number of requests with one cookie.
//! 3. `storm`: `SCALE_STORM_SESSIONS` (default 2 000; 10 000 full) real
//!    logins through the test IdP with access tokens of
//!    `SCALE_STORM_TTL` seconds (default 60), on three replicas sharing one
//!    Redis; once every token has expired, each session is called on all
//!    three replicas at once (at most `SCALE_STORM_CONCURRENCY` calls in
//!    flight, default 1 024): refresh grants at the IdP (one per session),
//!    the calls' p99, Redis commands per second. The reference is the same
//!    calls again, tokens fresh.
//! 4. `restart`: `SCALE_RESTART_SESSIONS` (default 10 000) sessions called
//!    round-robin through all three replicas by `SCALE_RESTART_CLIENTS`
//!    (default 32) clients while each replica in turn is stopped (SIGTERM,
//!    drain) and started again on its port; a call that finds its replica
//!    gone (refused, or its connection closed) is sent to the next one, as
//!    a load balancer does with an idempotent GET. 401s must be 0.
//! 5. `logins`: the callback (code exchange, ID-token checks, seal, store
//!    write) in logins per CPU-second of cloakroom, `SCALE_LOGINS` (default
//!    200) of them; the IdP's token endpoint timed alone with the same
//!    client; and Apache with `mod_auth_openidc` against the same IdP, when
//!    installed (`apt-get install apache2 libapache2-mod-auth-openidc`).
//!
//! `SCALE_PARTS` (names, comma separated) keeps only those parts. Needs
//! `redis-server` and Node.js (the test IdP); prints what it skipped and why.

mod common;
#[path = "scale/logins.rs"]
mod logins;
#[path = "scale/memory.rs"]
mod memory;
#[path = "scale/restart.rs"]
mod restart;
#[path = "scale/storm.rs"]
mod storm;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use cloakroom::oidc::TokenResponse;
use cloakroom::secret::{AccessToken, IdToken, RefreshToken};

use common::{env_or, free_port};
use logins::apache_redirect;
use support::redis::RedisServer;
use support::{Browser, Process, COOKIE_KEY};

/// What the run prints at the end: each part's lines, and what it skipped.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    skipped: Vec<String>,
}

impl Report {
    fn line(&mut self, text: String) {
        eprintln!("{text}");
        self.lines.push(text);
    }
}

fn main() {
    common::serve_upstream_if_asked();
    if !common::is_bench_run() {
        return;
    }
    let parts: Vec<String> = std::env::var("SCALE_PARTS")
        .unwrap_or_else(|_| "memory,rss,storm,restart,logins".into())
        .split(',')
        .map(|p| p.trim().to_owned())
        .collect();
    let wants = |part: &str| parts.iter().any(|p| p == part);
    let mut report = Report::default();
    let missing = ["node", "redis-server"]
        .into_iter()
        .find(|tool| Command::new(tool).arg("--version").output().is_err());
    if let Some(tool) = missing {
        println!("skipped every part: {tool} is not installed (apt-get install nodejs redis-server)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_upstream, upstream) = common::start_upstream();
    let mut world = World::start(upstream);
    let shape = runtime.block_on(world.login_shape());
    report.line(format!(
        "a real login's tokens: access {} B, refresh {} B, ID {} B; claims kept from {} ID-token claims",
        shape.access.len(),
        shape.refresh.as_ref().map_or(0, String::len),
        shape.id.as_ref().map_or(0, String::len),
        shape.claims.len()
    ));

    let mut memory_redis = None;
    if wants("memory") || wants("rss") {
        memory_redis = Some(runtime.block_on(memory::memory(&world, &shape, &mut report)));
    }
    if wants("rss") {
        if let Some((redis, cookies)) = &memory_redis {
            runtime.block_on(memory::rss(&world, redis, cookies, &mut report));
        }
    }
    drop(memory_redis);
    if wants("storm") {
        runtime.block_on(storm::storm(&world, &mut report));
    }
    if wants("restart") {
        restart::restart(&runtime, &mut world, &mut report);
    }
    if wants("logins") {
        runtime.block_on(logins::logins(&world, &mut report));
    }

    println!(
        "\nscale benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for line in &report.lines {
        println!("{line}");
    }
    for part in ["memory", "rss", "storm", "restart", "logins"] {
        if !wants(part) {
            report.skipped.push(format!("{part}: not in SCALE_PARTS"));
        }
    }
    for reason in &report.skipped {
        println!("skipped {reason}");
    }
}

/// The test IdP, one Redis, and three cloakroom replicas sharing it (and
/// the cookie key), each with its own public URL registered at the IdP.
struct World {
    idp: support::idp::Idp,
    redis: RedisServer,
    replicas: Vec<Process>,
    ports: Vec<u16>,
    apache_port: u16,
    upstream: u16,
    ttl: u64,
}

const REPLICAS: usize = 3;

impl World {
    fn start(upstream: u16) -> Self {
        let ttl: u64 = env_or("SCALE_STORM_TTL", 60);
        let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
        let apache_port = free_port();
        let mut redirects: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/auth/callback"))
            .collect();
        redirects.push(apache_redirect(apache_port));
        let idp = support::idp::Idp::start(serde_json::json!({
            "redirect_uris": redirects,
            "access_token_ttl": ttl,
        }));
        let redis = RedisServer::start_with(&["--appendonly", "no", "--save", ""]);
        let mut world = Self {
            idp,
            redis,
            replicas: Vec::new(),
            ports,
            apache_port,
            upstream,
            ttl,
        };
        world.replicas = (0..REPLICAS)
            .map(|i| Process::start_logged_at(world.ports[i], &world.yaml(i, &world.redis.url(), 100_000)))
            .collect();
        world
    }

    /// Replica `i`'s config on the Redis at `url` with a local cache of
    /// `cached` records. The per-address caps are lifted: every client of
    /// the bench comes from 127.0.0.1. A token is refreshed a second
    /// before it expires (`refresh_skew`), so the storm's tokens are due
    /// once expired, and the round after it stays clear of refreshes.
    fn yaml(&self, i: usize, url: &str, cached: usize) -> String {
        format!(
            "public_url: http://127.0.0.1:{port}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
session: {{store: {{redis: {{url: '{url}', local_cache: {{max_entries: {cached}}}}}}}, refresh_skew: 1s}}
limits: {{max_connections_per_ip: 100000, max_requests_per_ip: 100000, max_connections: 100000}}
routes:
  - {{path: /api, upstream: 'http://127.0.0.1:{up}'}}
  - {{path: /, upstream: 'http://127.0.0.1:{up}', auth: none}}",
            port = self.ports[i],
            iss = self.idp.issuer,
            up = self.upstream,
        )
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Logs one user in on the first replica; returns the session cookie
    /// (`name=value`), or why not.
    async fn login(&self, user: &str) -> Result<String, String> {
        let base = self.base(0);
        let browser = Browser::new(&base);
        let (page, _) = browser
            .navigate(&format!("{base}/auth/login?return_to=/"), user)
            .await;
        browser
            .cookie(&base, "cloakroom")
            .filter(|_| page.status == 200)
            .map(|c| format!("cloakroom={c}"))
            .ok_or_else(|| {
                // Where it ended, and what it said: the path (no query, so
                // no code or state) and the start of the body.
                let path = page.url.split('?').next().unwrap_or_default();
                let said: String = page.body.chars().take(120).collect();
                format!("login ended on {} at {path}: {said}", page.status)
            })
    }

    /// One real login's tokens, as the IdP issued them, and the ID token's
    /// claims: what the created sessions are made of.
    async fn login_shape(&self) -> LoginShape {
        self.login("scale-shape").await.expect("the first login");
        let mut shape = LoginShape::default();
        for token in self.idp.issued().await {
            match jwt_claims(&token) {
                Some(claims) if claims.get("aud") == Some(&Value::from("cloakroom")) => {
                    shape.claims = claims;
                    shape.id = Some(token);
                }
                Some(_) => shape.access = token,
                None => shape.refresh = Some(token),
            }
        }
        shape
    }
}

/// A JWT's payload, or `None` for an opaque token.
fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The JWT `token` with `claims` for its payload.
fn with_payload(token: &str, claims: &Map<String, Value>) -> Option<String> {
    let (header, rest) = token.split_once('.')?;
    let (_, signature) = rest.split_once('.')?;
    let payload = serde_json::to_vec(claims).ok()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    Some(format!("{header}.{payload}.{signature}"))
}

/// The tokens and claims of one real login, copied for many sessions.
#[derive(Default)]
struct LoginShape {
    access: String,
    refresh: Option<String>,
    id: Option<String>,
    claims: Map<String, Value>,
}

impl LoginShape {
    /// Session `i`'s login: every token the real one's length, its first
    /// bytes replaced by `i`; its own subject (and IdP session), which its
    /// ID token's payload names too, as a real one would (the signature
    /// kept: nothing checks it here).
    fn login(&self, i: usize) -> (TokenResponse, Map<String, Value>) {
        let mark = |token: &str| {
            let tag = format!("{i:08x}");
            format!("{tag}{}", token.get(tag.len()..).unwrap_or(""))
        };
        let mut claims = self.claims.clone();
        claims.insert("sub".into(), Value::from(format!("scale-{i}")));
        if claims.contains_key("sid") {
            claims.insert("sid".into(), Value::from(format!("scale-sid-{i}")));
        }
        let tokens = TokenResponse {
            access_token: AccessToken::new(mark(&self.access)),
            token_type: "Bearer".into(),
            // No refresh while measuring: the figures are for the session.
            expires_in: Some(3600),
            refresh_token: self.refresh.as_deref().map(|t| RefreshToken::new(mark(t))),
            id_token: self
                .id
                .as_deref()
                .map(|t| IdToken::new(with_payload(t, &claims).unwrap_or_else(|| mark(t)))),
            issued_token_type: None,
            jkt: None,
        };
        (tokens, claims)
    }
}

/// Up to `limit` keys matching `pattern`.
fn sample_keys(redis: &RedisServer, pattern: &str, limit: usize) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    loop {
        let out = redis.cli(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "5000"]);
        let mut lines = out.lines();
        cursor = lines.next().unwrap_or("0").trim().to_owned();
        keys.extend(lines.map(str::to_owned).filter(|k| !k.is_empty()));
        if keys.len() >= limit || cursor == "0" {
            keys.truncate(limit);
            return keys;
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// An HTTP client for the load: no proxy from the environment, a pool as
/// large as the load asks for.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4096)
        .build()
        .expect("client")
}

/// Calls `/api/items` on `base` once per cookie, `concurrency` at a time;
/// returns how many answered 200, and every call's latency.
async fn call_each(
    client: &reqwest::Client,
    calls: Vec<(String, String)>,
    concurrency: usize,
) -> (usize, Vec<u16>, Vec<Duration>) {
    let results: Vec<(u16, Duration)> = futures_util::stream::iter(calls)
        .map(|(base, cookie)| async move {
            let started = Instant::now();
            let status = client
                .get(format!("{base}/api/items"))
                .header("cookie", cookie)
                .header("x-csrf", "1")
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            (status, started.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let mut others: Vec<u16> = results.iter().map(|(s, _)| *s).filter(|s| *s != 200).collect();
    others.sort_unstable();
    others.dedup();
    (ok, others, results.into_iter().map(|(_, d)| d).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}
