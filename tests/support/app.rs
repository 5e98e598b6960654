//! cloakroom itself: in this process on `127.0.0.1:0` ([`App`]), or as a
//! process of its own on free ports ([`Process`]), and the configs they run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::net::free_port;
use super::wait::until_blocking;

/// The cookie key every test config seals with.
pub const COOKIE_KEY: &str = "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY";

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
        Self::bind_at(0).await
    }

    /// [`App::bind`] with the public listener on `port` (0: any).
    pub async fn bind_at(port: u16) -> Bound {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
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
            let _ = cloakroom::telemetry::init(&config.log, &config.telemetry);
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

impl Bound {
    /// Starts cloakroom from the config file at `path`, reloading it when
    /// the returned [`cloakroom::reload::Reloader`] asks (the file is not
    /// polled: the test decides when).
    pub fn start_reloading(
        self,
        path: &std::path::Path,
        clock: cloakroom::Clock,
    ) -> (App, cloakroom::reload::Reloader) {
        let (config, watched) = cloakroom::reload::load(path);
        let config = config.unwrap_or_else(|e| panic!("test config does not load: {:?}", e.lines()));
        let (reloader, requests) = cloakroom::reload::channel();
        let options = cloakroom::Options {
            clock,
            reload: Some(cloakroom::reload::Triggers {
                watched,
                requests,
                poll: None,
            }),
        };
        let Bound { listener, admin, .. } = self;
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            cloakroom::run_with(listener, admin, config, options, shutdown)
                .await
                .unwrap();
        });
        let app = App {
            addr,
            admin: admin_addr,
            stop: Some(stop),
            task: Some(task),
        };
        (app, reloader)
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

/// cloakroom as a process of its own, for tests that kill it or read its logs.
pub struct Process {
    pub base: String,
    /// The admin listener, `http://127.0.0.1:PORT`.
    pub admin: String,
    child: std::process::Child,
    config: tempfile::NamedTempFile,
    /// The `listen` and `admin_listen` lines the config file starts with.
    listeners: String,
    /// Its stdout lines, when started with [`Process::start_logged`].
    logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cloakroom serve` with `yaml` on free ports; returns once it
    /// is ready and its session store and IdP are up.
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
        process.wait_ready();
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
        Self::start_logged_with_env(port, yaml, &[])
    }

    /// [`Process::start_logged_at`] with `env` set for the process.
    pub fn start_logged_with_env(port: u16, yaml: &str, env: &[(&str, &str)]) -> Self {
        let process = Self::spawn_with(env!("CARGO_BIN_EXE_cloakroom"), port, yaml, true, env);
        process.wait_for(|status, _| status != 0, "cloakroom did not start");
        process
    }

    /// The config file the process was started with.
    pub fn config_path(&self) -> &std::path::Path {
        self.config.path()
    }

    /// Replaces the config file with `yaml` (same listeners), as a deploy
    /// tool or an editor saving by rename does: the new file is written
    /// beside it and renamed over it, so no reader sees half of it.
    pub fn rewrite(&self, yaml: &str) {
        self.rewrite_whole(&format!("{}{yaml}\n", self.listeners));
    }

    /// [`Process::rewrite`] with exactly `text`, listeners included.
    pub fn rewrite_whole(&self, text: &str) {
        let path = self.config.path();
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    /// The `listen` and `admin_listen` lines the config file started with.
    pub fn listeners(&self) -> &str {
        &self.listeners
    }

    /// Sends SIGHUP: reload the config.
    pub fn sighup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits (20 s at most) until `/readyz` answers 200 and its body says
    /// the session store answers and the IdP, if any, is discovered:
    /// readiness alone does not wait for either.
    pub fn wait_ready(&self) {
        self.wait_for(
            |status, body| {
                let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                status == 200
                    && body["session_store"] == "ok"
                    && (body["idp"].is_null() || body["idp"]["state"] == "ready")
            },
            "cloakroom did not become ready",
        );
    }

    fn wait_for(&self, done: impl Fn(u16, &str) -> bool, failure: &str) {
        until_blocking(
            Duration::from_secs(20),
            Duration::from_millis(50),
            failure,
            || {
                let (status, body) = self.readyz();
                done(status, &body)
            },
        );
    }

    fn spawn(binary: &str, port: u16, yaml: &str, logged: bool) -> Self {
        Self::spawn_with(binary, port, yaml, logged, &[])
    }

    fn spawn_with(binary: &str, port: u16, yaml: &str, logged: bool, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, Write};
        let admin = free_port();
        let listeners = format!("listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n");
        let mut config = tempfile::NamedTempFile::new().unwrap();
        writeln!(config, "{listeners}{yaml}").unwrap();
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
        for (name, value) in env {
            command.env(name, value);
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
            config,
            listeners,
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

    /// SIGTERM, as an orchestrator stops a pod: the process drains and
    /// exits; returns once it has.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().unwrap()
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
