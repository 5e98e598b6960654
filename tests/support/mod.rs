//! Real parts for integration tests: an echo upstream and cloakroom itself,
//! each on `127.0.0.1:0`.
#![allow(dead_code)]

pub mod fake_idp;
pub mod idp;
pub mod pki;
pub mod redis;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::Role;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the echo upstream observed, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Requests that reached the upstream.
    pub requests: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Upload bytes received so far on `/upload`.
    pub upload_bytes: AtomicU64,
    /// Lets `/slow` send its second chunk.
    pub release: Notify,
}

/// An HTTP echo server: answers with JSON describing the request it got.
///
/// - `/slow`: sends `first`, waits for `release`, then sends `second`;
/// - `/upload`: counts body bytes as they arrive, answers the total;
/// - `/sleep`: answers after 30 s;
/// - `/redirect`: 302 to another host;
/// - `/cookies`: sets a reserved, a `Domain` and a harmless cookie;
/// - `/ws`: WebSocket echo;
/// - anything else: `{method, uri, version, headers, body_len}`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let seen = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| echo(req, seen.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(mut req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<BoxBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/slow" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await;
                seen.release.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await;
            });
            let stream = tokio_stream_from(rx);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                    seen.upload_bytes.store(total, Ordering::SeqCst);
                }
            }
            text(StatusCode::OK, total.to_string())
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            text(StatusCode::OK, "late".into())
        }
        "/redirect" => {
            let mut r = text(StatusCode::FOUND, String::new());
            r.headers_mut()
                .insert("location", "http://elsewhere.invalid/next".parse().unwrap());
            r
        }
        "/cookies" => {
            let mut r = text(StatusCode::OK, "cookies".into());
            for c in [
                "__Host-cloakroom=forged; Path=/; Secure",
                "wide=1; Domain=example.com",
                "ok=1; Path=/",
            ] {
                r.headers_mut().append("set-cookie", c.parse().unwrap());
            }
            r
        }
        "/ws" => websocket_echo(&mut req),
        _ => {
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let json = serde_json::json!({
                "method": method, "uri": uri, "version": version,
                "headers": headers, "body_len": body.len(),
            });
            let mut r = text(StatusCode::OK, json.to_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    };
    Ok(response)
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<BoxBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a websocket handshake".into());
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                .await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    r.headers_mut().insert("connection", "upgrade".parse().unwrap());
    r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

fn text(status: StatusCode, body: String) -> Response<BoxBody> {
    let mut r = Response::new(BodyExt::boxed(http_body_util::Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A running cloakroom on `127.0.0.1:0`.
pub struct App {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl App {
    /// Starts cloakroom with `yaml` (listen addresses are chosen here).
    pub async fn start(yaml: &str) -> Self {
        Self::bind().await.start(yaml)
    }

    /// Binds the listeners first, so the config can name the address.
    pub async fn bind() -> Bound {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Bound {
            addr: listener.local_addr().unwrap(),
            listener,
            admin,
        }
    }
}

/// Listeners bound for an [`App`] not started yet.
pub struct Bound {
    pub addr: SocketAddr,
    listener: TcpListener,
    admin: TcpListener,
}

impl Bound {
    pub fn start(self, yaml: &str) -> App {
        self.start_with_clock(yaml, cloakroom::Clock::system())
    }

    /// Starts cloakroom judging expiry by `clock`, which the test may move.
    pub fn start_with_clock(self, yaml: &str, clock: cloakroom::Clock) -> App {
        let config = cloakroom::Config::load(yaml, &cloakroom::config::ProcessEnv)
            .unwrap_or_else(|e| panic!("test config does not load:\n{e}"));
        if std::env::var_os("RUST_LOG").is_some() {
            // Debugging a test: show cloakroom's logs.
            cloakroom::telemetry::init(&config.log);
        }
        let Bound { listener, admin, .. } = self;
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            cloakroom::run_with_clock(listener, admin, config, clock, shutdown)
                .await
                .unwrap();
        });
        App {
            addr,
            admin: admin_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits until cloakroom has drained and stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Signals shutdown without waiting; returns the task to await.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A config with one anonymous route per `(path, upstream, extra yaml)`.
pub fn config(routes: &[(&str, &str, &str)]) -> String {
    let mut yaml = String::from("public_url: http://localhost:8080\nlog: {level: warn}\nroutes:\n");
    for (path, upstream, extra) in routes {
        yaml.push_str(&format!(
            "  - {{path: '{path}', upstream: '{upstream}', auth: none{extra}}}\n"
        ));
    }
    yaml
}

/// A client that never follows redirects and has no cookie store.
pub fn client() -> reqwest::Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// reqwest is built without a default TLS crypto provider; pick ring, as
/// cloakroom does.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// The headers the echo upstream reports, as (name, value) pairs.
pub fn echoed_headers(json: &serde_json::Value) -> Vec<(String, String)> {
    serde_json::from_value(json["headers"].clone()).unwrap()
}

/// The one value of `name` the upstream saw, if exactly one.
pub fn echoed(json: &serde_json::Value, name: &str) -> Option<String> {
    let values: Vec<String> = echoed_headers(json)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect();
    assert!(values.len() <= 1, "{name} seen {} times", values.len());
    values.into_iter().next()
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it or `limit` elapses (a bound so a broken server fails the test instead
/// of hanging it).
pub async fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// cloakroom as a process of its own, for tests that kill it or read its logs.
pub struct Process {
    pub base: String,
    /// The admin listener, `http://127.0.0.1:PORT`.
    pub admin: String,
    child: std::process::Child,
    _config: tempfile::NamedTempFile,
    /// Its stdout lines, when started with [`Process::start_logged`].
    logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cloakroom serve` with `yaml` on free ports; returns once it
    /// reports ready.
    pub fn start(yaml: &str) -> Self {
        Self::start_at(free_port(), yaml)
    }

    /// Starts `cloakroom serve` with `yaml` listening on `port`.
    pub fn start_at(port: u16, yaml: &str) -> Self {
        Self::start_binary_at(env!("CARGO_BIN_EXE_cloakroom"), port, yaml)
    }

    /// [`Process::start_at`] with another build of cloakroom, for a
    /// benchmark against an earlier commit.
    pub fn start_binary_at(binary: &str, port: u16, yaml: &str) -> Self {
        let process = Self::spawn(binary, port, yaml, false);
        process.wait_for(|status| status == 200, "cloakroom did not become ready");
        process
    }

    /// Starts `cloakroom serve` with `yaml` (which should ask for JSON logs)
    /// and keeps every log line; returns once the admin listener answers,
    /// ready or not. `RUST_LOG` is not passed on: the config's level holds.
    pub fn start_logged(yaml: &str) -> Self {
        Self::start_logged_at(free_port(), yaml)
    }

    /// [`Process::start_logged`] listening on `port`.
    pub fn start_logged_at(port: u16, yaml: &str) -> Self {
        let process = Self::spawn(env!("CARGO_BIN_EXE_cloakroom"), port, yaml, true);
        process.wait_for(|status| status != 0, "cloakroom did not start");
        process
    }

    /// Waits (20 s at most) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        self.wait_for(|status| status == 200, "cloakroom did not become ready");
    }

    fn wait_for(&self, done: impl Fn(u16) -> bool, failure: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done(self.readyz().0) {
            assert!(std::time::Instant::now() < deadline, "{failure}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(binary: &str, port: u16, yaml: &str, logged: bool) -> Self {
        use std::io::{BufRead, Write};
        let admin = free_port();
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n{yaml}\n"
        )
        .unwrap();
        let mut command = std::process::Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(config.path())
            .stderr(std::process::Stdio::null());
        if logged {
            command
                .env_remove("RUST_LOG")
                .stdout(std::process::Stdio::piped());
        } else {
            command.stdout(std::process::Stdio::null());
        }
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Self {
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            child,
            _config: config,
            logs,
        }
    }

    /// The process id, to read its resource use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /readyz` on the admin listener: status and body; status 0 when
    /// nothing answers yet.
    pub fn readyz(&self) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.admin.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return (0, String::new());
        };
        let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The JSON log lines written so far.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// SIGKILL: no drain, no cleanup, as a crashed or evicted pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
