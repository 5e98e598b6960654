//! A real nginx (`nginx-light` has `auth_request` and TLS) on a free
//! loopback port, run as the current user in one process (`master_process
//! off`, so it never switches to another user) with its pid, logs and
//! temporary files in a temporary directory; killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;
use super::pki::Pki;

pub struct Nginx {
    pub port: u16,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` (the name the
    /// certificate is for) when nginx terminates TLS.
    origin: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// Starts nginx serving one `server` whose body (its `location`s) is
    /// `server`; `{port}` in it is replaced by nginx's own port.
    pub fn start(server: &str) -> Self {
        Self::launch(server, false)
    }

    /// [`Nginx::start`] over https only, with `pki`'s server certificate.
    pub fn start_tls(server: &str, pki: &Pki) -> Self {
        let tls = format!(
            "        ssl_certificate {};\n        ssl_certificate_key {};\n",
            pki.path("server"),
            pki.path("server-key")
        );
        Self::launch(&format!("{tls}{server}"), true)
    }

    fn launch(server: &str, tls: bool) -> Self {
        let port = free_port();
        let (listen, origin) = match tls {
            false => ("", format!("http://127.0.0.1:{port}")),
            true => (" ssl", format!("https://localhost:{port}")),
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let server = server.replace("{port}", &port.to_string());
        let conf = format!(
            "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    server {{
        listen 127.0.0.1:{port}{listen};
{server}
    }}
}}
"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "nginx must be installed to run the forward-auth and DBSC \
                     browser tests (apt-get install nginx-light; .ci/run does): {e}"
                )
            });
        let mut nginx = Self {
            port,
            origin,
            dir,
            child,
        };
        let started = std::time::Instant::now();
        // Polled by hand, not with `wait::until_blocking`: an nginx that
        // exits on a bad config should fail the test with its log at once.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.error_log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// What nginx logged, for a failing test's message.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// `nginx` on the PATH, or where Debian puts it (`/usr/sbin`, not always
/// on a test runner's PATH).
fn binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
