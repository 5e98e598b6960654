//! What the benches share: the upstream they proxy to (this same
//! executable re-started in upstream mode), child processes stopped on
//! drop, sessions created in Redis as logins write them, and readings of
//! a process's memory and of Redis.
// Each bench uses a part of this.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value};

use cloakroom::clock::Clock;
use cloakroom::config::{Config, MapEnv, StoreConfig};
use cloakroom::metrics::Metrics;
use cloakroom::oidc::TokenResponse;
use cloakroom::session::{RedisStore, Sessions};

const ROLE: &str = "CLOAKROOM_BENCH_ROLE";
/// What the upstream answers every request with.
pub const BODY: &[u8] = b"{\"ok\":true,\"items\":[1,2,3,4,5,6,7,8,9,10]}";

/// Whether this process was started as a benchmark (`cargo bench`), not
/// listed or run as a test by `cargo test --benches`, which must do nothing.
pub fn is_bench_run() -> bool {
    !std::env::args().any(|a| a == "--list") && std::env::args().any(|a| a == "--bench")
}

/// Serves as the upstream, or as the bare hyper proxy, and never returns,
/// when this process was started by [`start_upstream`] or
/// [`start_hyper_proxy`].
pub fn serve_upstream_if_asked() {
    let port: u16 = env_or("PORT", 0);
    match std::env::var(ROLE).as_deref() {
        Ok("upstream") => upstream(port),
        Ok("hyper-proxy") => hyper_proxy(port, env_or("UPSTREAM_PORT", 0)),
        _ => return,
    }
    std::process::exit(0);
}

/// Starts the bare hyper proxy (this executable again) on a free port,
/// forwarding to `upstream_port`, with HTTP/1 `writev` off when `flat`;
/// returns it and its port once it listens.
pub fn start_hyper_proxy(upstream_port: u16, flat: bool) -> (Guard, u16) {
    let port = free_port();
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    if flat {
        command.env("BENCH_HYPER_FLAT", "1");
    }
    let child = command
        .env(ROLE, "hyper-proxy")
        .env("PORT", port.to_string())
        .env("UPSTREAM_PORT", upstream_port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start hyper proxy");
    wait_for(port);
    (Guard(child), port)
}

/// Starts the upstream (this executable again) on a free port; returns it
/// and its port once it listens.
pub fn start_upstream() -> (Guard, u16) {
    let port = free_port();
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(ROLE, "upstream")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start upstream");
    wait_for(port);
    (Guard(child), port)
}

fn upstream(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind upstream");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let mut r = Response::new(Full::new(Bytes::from_static(BODY)));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().expect("static"));
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// The reference for what cloakroom adds: the same hyper server and
/// pooled hyper client cloakroom is built on, on the same allocator and a
/// multi-thread runtime, forwarding every request as it came (the URI
/// made absolute) with no auth, no header work and no metrics.
fn hyper_proxy(port: u16, upstream_port: u16) {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind hyper proxy");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, hyper::body::Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    async move {
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                        *req.uri_mut() = format!("http://127.0.0.1:{upstream_port}{path}")
                            .parse()
                            .expect("uri");
                        match client.request(req).await {
                            Ok(response) => Ok::<_, Infallible>(response.map(|b| b.boxed())),
                            Err(_) => {
                                let mut r =
                                    Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
                                *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                Ok(r)
                            }
                        }
                    }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if std::env::var("BENCH_HYPER_FLAT").is_ok() {
                    builder.http1().writev(false);
                }
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

/// An environment knob: its value, or `default` when unset; a value that
/// does not parse stops the bench with the knob's name.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => match v.replace('_', "").parse() {
            Ok(n) => n,
            Err(_) => panic!("{name}: not a valid value: {v:?}"),
        },
        Err(_) => default,
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn wait_for(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child process when the benchmark ends, however it ends.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: nginx's and Apache's parents then stop their workers too.
        let pid = self.0.id().to_string();
        let terminated = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time process `pid` has used so far (user and system), seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after the name.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One numeric field of Redis's `INFO` (`used_memory`, `total_commands_processed`, …).
pub fn redis_info(redis: &crate::support::redis::RedisServer, field: &str) -> u64 {
    let info = redis.cli(&["INFO", "everything"]);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Creates `n` sessions in the Redis store `yaml` names, as logins would
/// (`Sessions::create`: the sealed record and its user's indexes), with
/// the tokens and ID-token claims `login(i)` gives session `i`; returns
/// their `Cookie` header values.
pub async fn create_sessions(
    yaml: &str,
    n: usize,
    login: impl Fn(usize) -> (TokenResponse, Map<String, Value>),
) -> Result<Vec<String>, String> {
    let config = Config::load(yaml, &MapEnv::default()).map_err(|e| e.to_string())?;
    let StoreConfig::Redis(redis) = &config.session.store else {
        return Err("not a Redis store".into());
    };
    let store = RedisStore::connect(redis).await.map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new());
    let sessions =
        Sessions::new(&config, Arc::new(store), Clock::system(), metrics).map_err(|e| e.to_string())?;
    let sessions = &sessions;
    let login = &login;
    let cookies: Vec<String> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let (tokens, claims) = login(i);
            sessions
                .create(tokens, claims, Some("bench"), None)
                .await
                .map(|created| created.cookie)
        })
        .buffer_unordered(64)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let name = &sessions.names.session;
    Ok(cookies.into_iter().map(|c| format!("{name}={c}")).collect())
}
