//! A real `redis-server` on a free loopback port, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;
use super::wait::until_blocking;

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    /// `redis-cli` arguments for a TLS-only server.
    tls: Vec<String>,
}

impl RedisServer {
    /// Starts a server with append-only persistence in a temporary
    /// directory, so a stop and start keeps the data (a Redis restart).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra,
            tls: Vec::new(),
        };
        server.resume();
        server
    }

    /// Starts a server that speaks only TLS, with certificates from `pki`;
    /// with `clients_need_certificates`, only clients with one get in.
    pub fn start_tls(pki: &super::pki::Pki, clients_need_certificates: bool) -> Self {
        let port = free_port();
        let auth = if clients_need_certificates { "yes" } else { "no" };
        let extra = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &pki.path("server"),
            "--tls-key-file",
            &pki.path("server-key"),
            "--tls-ca-cert-file",
            &pki.path("ca"),
            "--tls-auth-clients",
            auth,
        ];
        let tls = [
            "--tls",
            "--cacert",
            &pki.path("ca"),
            "--cert",
            &pki.path("client"),
            "--key",
            &pki.path("client-key"),
        ];
        let mut server = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: tls.iter().map(|s| s.to_string()).collect(),
        };
        server.resume();
        server
    }

    /// Starts a replica of `primary`.
    pub fn replica_of(primary: &RedisServer) -> Self {
        let replica = Self::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        until_blocking(
            Duration::from_secs(10),
            Duration::from_millis(50),
            "replica did not sync",
            || {
                replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            },
        );
        replica
    }

    /// Starts a sentinel watching `primary` as `master_name`, quick to act:
    /// it calls the primary down after one silent second.
    pub fn sentinel(primary: &RedisServer, master_name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {master_name} 127.0.0.1 {p} 1\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 5000\n",
                p = primary.port
            ),
        )
        .unwrap();
        let extra = [conf.to_string_lossy().into_owned(), "--sentinel".into()];
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            extra: extra.to_vec(),
            tls: Vec::new(),
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_empty() { "redis" } else { "rediss" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// (Re)starts the server on the same port and data directory.
    pub fn resume(&mut self) {
        // A sentinel takes its config file first; other servers none.
        let sentinel_conf = self.extra.iter().find(|a| a.ends_with("sentinel.conf")).cloned();
        let child = Command::new("redis-server")
            .args(sentinel_conf)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", "always", "--protected-mode", "no", "--dir"])
            .arg(self.dir())
            .args(self.extra.iter().filter(|a| !a.ends_with("sentinel.conf")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        until_blocking(
            Duration::from_secs(10),
            Duration::from_millis(20),
            "redis-server did not start",
            || self.answers_ping(),
        );
    }

    /// Stops the server (SIGTERM: the append-only file is complete).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        if !self.tls.is_empty() {
            return self.cli(&["PING"]).trim() == "PONG";
        }
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Runs a command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(&self.tls)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.thaw();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A three-master Redis Cluster on loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes"]))
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Wait until every node agrees the cluster is up.
        until_blocking(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "cluster did not come up",
            || {
                nodes
                    .iter()
                    .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        Self { nodes }
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
