//! The admin listener as a load balancer and an orchestrator see it:
//! readiness follows this replica (draining or not), never the shared
//! session store or IdP.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::drain::Draining;
use support::redis::RedisServer;
use support::wait::poll;
use support::{client, config, App, Upstream};

/// How long anything here may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(10);

/// `GET {path}` on the admin listener: status and body (JSON for `/readyz`).
async fn admin_get(app: &App, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("http://{}{path}", app.admin))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn readyz(app: &App) -> (u16, Value) {
    let (status, text) = admin_get(app, "/readyz").await;
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("/readyz is not JSON: {text}"));
    (status, body)
}

#[tokio::test]
async fn readyz_stays_200_while_redis_is_down_and_names_it_in_the_body() {
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")])
        + &format!(
            "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms}}}}}}\n",
            redis.url()
        );
    let app = App::start(&yaml).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["draining"], false);
    assert_eq!(body["session_store"], "ok");
    assert!(body["idp"].is_null(), "no IdP configured: {body}");

    // Redis is shared by every replica: taking this one out of the load
    // balancer would take all of them out, anonymous routes included.
    redis.stop();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["session_store"], "unavailable");
    let r = client().get(app.url("/anonymous")).send().await.unwrap();
    assert_eq!(r.status(), 200, "an anonymous route with Redis down");

    redis.resume();
    let (status, body) = poll(
        BOUND,
        Duration::from_millis(100),
        async || readyz(&app).await,
        |(_, body)| body["session_store"] == "ok",
    )
    .await;
    assert_eq!(
        (status, &body["session_store"]),
        (200, &Value::from("ok")),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_answers_503_while_the_replica_drains() {
    let up = Upstream::start().await;
    // A request still in flight keeps the drain going.
    let draining = Draining::start(&up).await;
    let app = &draining.app;

    let (status, body) = poll(
        BOUND,
        Duration::from_millis(10),
        async || readyz(app).await,
        |(status, _)| *status == 503,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["draining"], true);
    assert_eq!(body["session_store"], "ok");
    assert_eq!(
        admin_get(app, "/healthz").await,
        (200, "ok\n".to_owned()),
        "still alive while draining"
    );
    // What a Docker HEALTHCHECK sees meanwhile.
    let url = format!("http://{}/readyz", app.admin);
    let (code, _, stderr) = health(&["--url", &url]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        one_line(&stderr).starts_with(&format!(
            "cloakroom health: {url}: 503 Service Unavailable: {{\"ready\":false,\"draining\":true,"
        )),
        "{stderr}"
    );

    let app = draining.finish(&up).await;
    assert!(
        tokio::net::TcpStream::connect(app.admin).await.is_err(),
        "the admin listener closes once the drain is over"
    );
}

// === `cloakroom health` ===

/// What `cloakroom health ARGS` did: exit code, stdout, stderr.
async fn health(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // Blocking: the app under test serves on this runtime meanwhile.
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .arg("health")
            .args(&args)
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code(), text(out.stdout), text(out.stderr))
    })
    .await
    .unwrap()
}

/// Asserts `stderr` is one line and returns it.
fn one_line(stderr: &str) -> &str {
    let line = stderr.strip_suffix('\n').unwrap_or(stderr);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "not one line: {stderr:?}"
    );
    line
}

#[tokio::test]
async fn health_exits_0_when_the_admin_listener_named_by_the_config_is_ready() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    // As in a container: bound to every address, probed on loopback.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let yaml = config(&[("/", &up.url(), "")]) + &format!("admin_listen: 0.0.0.0:{}\n", app.admin.port());
    std::io::Write::write_all(&mut file, yaml.as_bytes()).unwrap();

    let (code, stdout, stderr) = health(&["--config", file.path().to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("http://127.0.0.1:{}/readyz: 200 OK\n", app.admin.port())
    );
    assert_eq!(stderr, "");

    let url = format!("http://{}/healthz", app.admin);
    let (code, _, stderr) = health(&["--url", &url]).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn health_exits_1_with_a_one_line_reason_otherwise() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;

    let url = format!("http://{}/nope", app.admin);
    let (code, stdout, stderr) = health(&["--url", &url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!("cloakroom health: {url}: 404 Not Found: {{")),
        "{line}"
    );

    let url = format!("http://{}/readyz", support::free_addr());
    let (code, _, stderr) = health(&["--url", &url]).await;
    assert_eq!(code, Some(1));
    let line = one_line(&stderr);
    assert!(line.starts_with(&format!("cloakroom health: {url}: ")), "{line}");
    assert!(line.contains("Connection refused"), "{line}");

    let (code, _, stderr) = health(&["--config", "/nonexistent/cloakroom.yaml"]).await;
    assert_eq!(code, Some(1));
    let line = one_line(&stderr);
    assert!(
        line.starts_with("cloakroom health: cannot read /nonexistent/cloakroom.yaml: "),
        "{line}"
    );
}
