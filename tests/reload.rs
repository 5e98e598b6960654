//! Hot reload of the config: SIGHUP, file changes, and what a reload swaps
//! while requests, sessions and WebSockets go on. cloakroom runs as a
//! process of its own here (except where a test asks for a reload through
//! the library), in front of the real IdP and echo upstreams.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::idp::Idp;
use support::wait::{poll, until};
use support::{free_port, Browser, Process, Upstream, COOKIE_KEY, SESSION_COOKIE};
use tokio_tungstenite::tungstenite::Message;

/// A second cookie key, for rotations.
const NEW_KEY: &str = "CHiClzn6zKxoPXKClqz5QreL9PumeBvgQ88tUFCxiEI";

const LIMIT: Duration = Duration::from_secs(15);
const EVERY: Duration = Duration::from_millis(50);

/// The real IdP, two echo upstreams, and the port cloakroom will listen on.
struct Site {
    idp: Idp,
    up1: Upstream,
    up2: Upstream,
    port: u16,
    base: String,
}

impl Site {
    async fn start() -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let idp = Idp::start(json!({
            "redirect_uris": [format!("{base}/auth/callback")],
            "post_logout_redirect_uris": [format!("{base}/")],
        }));
        Self {
            idp,
            up1: Upstream::start().await,
            up2: Upstream::start().await,
            port,
            base,
        }
    }

    /// A config with login, JSON logs at `level`, the cookie `keys` (a YAML
    /// list) and `routes` (YAML list items; `{up1}` and `{up2}` name the
    /// upstreams).
    fn yaml(&self, level: &str, keys: &str, routes: &str) -> String {
        let routes = routes
            .replace("{up1}", &self.up1.url())
            .replace("{up2}", &self.up2.url());
        format!(
            "public_url: {base}
log: {{format: json, level: {level}}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: {keys}}}
routes:
{routes}",
            base = self.base,
            iss = self.idp.issuer,
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts cloakroom with `yaml`, keeping its logs; returns once it is
    /// ready and the IdP discovered.
    fn serve(&self, yaml: &str) -> Process {
        let process = Process::start_logged_at(self.port, yaml);
        process.wait_ready();
        process
    }

    /// Logs `user` in; returns the browser.
    async fn login(&self, user: &str) -> Browser {
        let browser = Browser::new(&self.base);
        let (page, _) = browser.navigate(&self.url("/auth/login?return_to=/"), user).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(browser.cookie(&self.base, SESSION_COOKIE).is_some());
        browser
    }
}

const KEY_1: &str = "[{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]";

/// The ring after a rotation: the new key seals, the old one still opens.
fn rotated() -> String {
    format!("[{{id: '2', secret: {NEW_KEY}}}, {{id: '1', secret: {COOKIE_KEY}}}]")
}

/// The id of the key a sealed cookie names (in clear, KR-04).
fn kid(cookie: &str) -> String {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cookie)
        .unwrap();
    let len = usize::from(raw[1]);
    String::from_utf8(raw[2..2 + len].to_vec()).unwrap()
}

/// Log lines whose message starts with `start`.
fn lines(process: &Process, start: &str) -> Vec<Value> {
    process
        .logs()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(start)))
        .collect()
}

/// Waits until `n` log lines start with `start`; returns them.
async fn logged(process: &Process, start: &str, n: usize) -> Vec<Value> {
    let found = poll(LIMIT, EVERY, async || lines(process, start), |l| l.len() >= n).await;
    assert!(
        found.len() >= n,
        "expected {n} line(s) starting {start:?}; logs: {:#?}",
        process.logs()
    );
    found
}

/// Waits until `GET url` answers `status`.
async fn answers(url: &str, status: u16) {
    until(
        LIMIT,
        EVERY,
        &format!("{url} never answered {status}"),
        async || {
            let r = support::client().get(url).send().await;
            r.is_ok_and(|r| r.status().as_u16() == status)
        },
    )
    .await;
}

/// Waits until `GET url` is answered 200 by `up` (its request count grows).
async fn served_by(url: &str, up: &Upstream) {
    until(
        LIMIT,
        EVERY,
        &format!("{url} never reached the upstream"),
        async || {
            let before = up.requests();
            let r = support::client().get(url).send().await;
            r.is_ok_and(|r| r.status() == 200) && up.requests() > before
        },
    )
    .await;
}

/// `cloakroom check` on `path`: the error lines it prints.
fn check_errors(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "check refuses the file");
    String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kr01_a_reload_under_load_changes_routes_and_rotates_the_key_ring() {
    let site = Site::start().await;
    let before = "  - {path: /api, upstream: '{up1}'}\n  - {path: /, upstream: '{up1}', auth: none}";
    let app = site.serve(&site.yaml("info", KEY_1, before));
    let mut browsers = Vec::new();
    for user in ["alice", "bob", "carol"] {
        browsers.push(site.login(user).await);
    }
    let old_cookies: Vec<String> = browsers
        .iter()
        .map(|b| b.cookie(&site.base, SESSION_COOKIE).unwrap())
        .collect();
    assert!(old_cookies.iter().all(|c| kid(c) == "1"));

    // Steady load: each browser calls the API in a loop, as an open SPA does.
    let stop = Arc::new(AtomicBool::new(false));
    // Each browser's calls so far, to show the load spans the reload.
    let made: Vec<Arc<AtomicUsize>> = browsers.iter().map(|_| Arc::default()).collect();
    let load: Vec<_> = browsers
        .iter()
        .zip(&made)
        .map(|(browser, made)| {
            let (browser, stop, url) = (browser.clone(), stop.clone(), site.url("/api/orders"));
            let made = made.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let page = browser.fetch(&url).await;
                    statuses.push((page.status, page.body.chars().take(200).collect::<String>()));
                    made.fetch_add(1, Ordering::Relaxed);
                }
                statuses
            })
        })
        .collect();
    until(LIMIT, EVERY, "the API is served before the reload", async || {
        site.up1.requests() >= 30
    })
    .await;

    // One edit and a reload: the new key first, the old one kept second;
    // /api moves to the second upstream; a new route appears.
    let after = "  - {path: /api, upstream: '{up2}'}\n  - {path: /fresh, upstream: '{up2}', auth: none}\n  - {path: /, upstream: '{up1}', auth: none}";
    let before_reload: Vec<usize> = made.iter().map(|m| m.load(Ordering::Relaxed)).collect();
    app.rewrite(&site.yaml("info", &rotated(), after));
    app.sighup();
    served_by(&site.url("/fresh"), &site.up2).await;
    let moved = site.up2.requests();
    until(LIMIT, EVERY, "API calls reach the new upstream", async || {
        site.up2.requests() >= moved + 30
    })
    .await;
    until(
        LIMIT,
        EVERY,
        "every browser's cookie is re-sealed under key 2",
        async || {
            browsers
                .iter()
                .all(|b| kid(&b.cookie(&site.base, SESSION_COOKIE).unwrap()) == "2")
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    for ((task, made), before) in load.into_iter().zip(&made).zip(&before_reload) {
        let statuses = task.await.unwrap();
        let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
        assert!(failed.is_empty(), "failed calls during the reload: {failed:?}");
        // Steady load: every browser called before the reload and after it.
        let total = made.load(Ordering::Relaxed);
        assert!(
            *before > 0 && total > *before,
            "steady load: {before} calls before the reload, {total} in all"
        );
    }

    // Old cookies still open (and would be re-sealed): no logout.
    for old in &old_cookies {
        let r = support::client()
            .get(site.url("/auth/user"))
            .header("x-csrf", "1")
            .header("cookie", format!("{SESSION_COOKIE}={old}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_eq!(kid(value), "2", "re-sealed under the new key (KR-01)");
    }
    assert!(!lines(&app, "config reloaded").is_empty());
    // Neither the reload nor the load logged a token (PX-25).
    let logs = app.logs();
    for token in site.idp.issued().await {
        assert!(
            !logs.iter().any(|l| l.to_string().contains(&token)),
            "a token reached the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_websocket_keeps_relaying_across_a_reload() {
    let site = Site::start().await;
    let routes = |up: &str, extra: &str| {
        format!("  - {{path: /live, upstream: '{{{up}}}', auth: none, websocket: true, strip_prefix: true}}\n{extra}  - {{path: /, upstream: '{{up1}}', auth: none}}")
    };
    let app = site.serve(&site.yaml("info", KEY_1, &routes("up1", "")));
    let ws_url = format!("ws://127.0.0.1:{}/live/ws", site.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    // The route moves to the second upstream and the key ring rotates.
    app.rewrite(&site.yaml(
        "info",
        &rotated(),
        &routes("up2", "  - {path: /fresh, upstream: '{up2}', auth: none}\n"),
    ));
    app.sighup();
    served_by(&site.url("/fresh"), &site.up2).await;
    // Counted once the reload is seen: until then `/fresh` is the `/`
    // route's, which is up1's.
    let tunnels_on_up1 = site.up1.requests();

    // The open tunnel still relays, to the upstream it was opened to.
    for i in 0..20 {
        let text = format!("after {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    // A new WebSocket goes to the new upstream.
    let on_up2 = site.up2.requests();
    let (mut second, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    second.send(Message::text("new")).await.unwrap();
    assert_eq!(second.next().await.unwrap().unwrap(), Message::text("new"));
    assert_eq!(site.up2.requests(), on_up2 + 1);
    assert_eq!(site.up1.requests(), tunnels_on_up1, "nothing else reached up1");
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_is_refused_with_every_error_and_the_old_one_serves() {
    let site = Site::start().await;
    let routes = "  - {path: /api, upstream: '{up1}'}\n  - {path: /, upstream: '{up1}', auth: none}";
    let app = site.serve(&site.yaml("info", KEY_1, routes));
    let browser = site.login("alice").await;
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);
    let served = site.up1.requests();

    // A bad key, a mistyped key and an upstream that is not a URL.
    let bad = site.yaml(
        "info",
        "[{id: '2', secret: c2hvcnQ}, {id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]",
        "  - {path: /api, upstream: '{up2}', timeuot: 5s}\n  - {path: /fresh, upstream: 'not a url', auth: none}",
    );
    app.rewrite(&bad);
    let expected = check_errors(app.config_path());
    assert_eq!(expected.len(), 3, "{expected:?}");
    app.sighup();
    let failed = logged(&app, "config reload failed", 1).await;
    assert_eq!(failed[0]["level"], "ERROR");
    assert_eq!(failed[0]["errors"], 3);
    let refused: Vec<String> = lines(&app, "config reload refused")
        .iter()
        .map(|l| l["error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refused, expected, "every error, as `cloakroom check` prints it");

    // The old config serves: the route, its upstream, and the old ring
    // (the session's cookie is not re-sealed).
    let page = browser.fetch(&site.url("/api/orders")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.headers.get("set-cookie").is_none());
    assert_eq!(site.up1.requests(), served + 1);
    assert_eq!(site.up2.requests(), 0);
    assert_eq!(
        support::client()
            .get(site.url("/fresh"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "/fresh does not exist; / (up1) answers it"
    );
    assert_eq!(site.up1.requests(), served + 2);

    // Not YAML at all: refused the same way, with the file's line and column.
    app.rewrite("routes: [unclosed");
    let expected = check_errors(app.config_path());
    app.sighup();
    logged(&app, "config reload failed", 2).await;
    let refused = lines(&app, "config reload refused");
    let last = refused.last().unwrap()["error"].as_str().unwrap();
    assert_eq!(expected, [last]);
    assert!(last.contains("not valid YAML"), "{last}");
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);

    // Fixed: the next reload applies.
    app.rewrite(&site.yaml("info", KEY_1, "  - {path: /, upstream: '{up2}', auth: none}"));
    app.sighup();
    logged(&app, "config reloaded", 1).await;
    let page = browser.get(&site.url("/anything"), &[]).await;
    assert_eq!(page.status, 200);
    assert!(site.up2.requests() >= 1);
    // No secret from the files reached the logs.
    let text = format!("{:?}", app.logs());
    assert!(!text.contains(COOKIE_KEY) && !text.contains("test-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_reloads() {
    let site = Site::start().await;
    let app = site.serve(&site.yaml("info", KEY_1, "  - {path: /, upstream: '{up1}', auth: none}"));
    // Unchanged: still a reload, and nothing changes.
    app.sighup();
    logged(&app, "config reloaded", 1).await;
    answers(&site.url("/x"), 200).await;

    let routes =
        "  - {path: /fresh, upstream: '{up2}', auth: none}\n  - {path: /, upstream: '{up1}', auth: none}";
    app.rewrite(&site.yaml("info", KEY_1, routes));
    app.sighup();
    served_by(&site.url("/fresh"), &site.up2).await;
    assert_eq!(site.up2.requests(), 1);
    assert_eq!(lines(&app, "SIGHUP received").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_the_file_or_of_a_secret_file_reloads() {
    let site = Site::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cookie-key");
    std::fs::write(&key_file, format!("{COOKIE_KEY}\n")).unwrap();
    let keys = format!("[{{id: '1', secret_file: {}}}]", key_file.display());
    let routes = "  - {path: /api, upstream: '{up1}'}\n  - {path: /, upstream: '{up1}', auth: none}";
    let app = site.serve(&site.yaml("info", &keys, routes));
    let browser = site.login("alice").await;
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);

    // The config file changes; no signal.
    let more = format!("  - {{path: /fresh, upstream: '{{up2}}', auth: none}}\n{routes}");
    app.rewrite(&site.yaml("info", &keys, &more));
    served_by(&site.url("/fresh"), &site.up2).await;
    assert_eq!(lines(&app, "config file changed").len(), 1);
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);

    // The secret file behind key 1 changes (a leaked key replaced, KR-02):
    // cookies sealed with the old secret no longer open.
    std::fs::write(&key_file, format!("{NEW_KEY}\n")).unwrap();
    logged(&app, "config reloaded", 2).await;
    let page = browser.fetch(&site.url("/api/orders")).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("login_required"), "{}", page.body);
    assert_eq!(lines(&app, "config file changed").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_need_a_restart_are_logged_and_the_rest_applies() {
    let site = Site::start().await;
    let app = site.serve(&site.yaml("info", KEY_1, "  - {path: /, upstream: '{up1}', auth: none}"));
    let other = free_port();
    let routes =
        "  - {path: /fresh, upstream: '{up2}', auth: none}\n  - {path: /, upstream: '{up1}', auth: none}";
    let listeners = app
        .listeners()
        .replace(&format!(":{}", site.port), &format!(":{other}"));
    let yaml = format!(
        "{listeners}{}\nworkers: 3\nlimits: {{idle_timeout: 5s}}\nsession: {{store: {{redis: {{url: 'redis://127.0.0.1:1'}}}}}}\n",
        site.yaml("info", KEY_1, routes)
    );
    app.rewrite_whole(&yaml);
    app.sighup();
    served_by(&site.url("/fresh"), &site.up2).await;
    logged(&app, "config reloaded", 1).await;
    let keys: Vec<String> = app
        .logs()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("needs a restart"))
        })
        .map(|l| l["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["listen", "workers", "limits", "session.store"]);
    // Still on the old port, still on the memory store.
    assert!(std::net::TcpStream::connect(("127.0.0.1", other)).is_err());
    let (status, body) = app.readyz();
    assert_eq!(status, 200);
    assert!(body.contains("\"session_store\":\"ok\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_level_reloads() {
    let site = Site::start().await;
    let route = "  - {path: /, upstream: '{up1}', auth: none}";
    let app = site.serve(&site.yaml("warn", KEY_1, route));
    let access = |app: &Process| {
        app.logs()
            .into_iter()
            .filter(|l| l["target"] == "cloakroom::access")
            .count()
    };
    answers(&site.url("/before"), 200).await;

    app.rewrite(&site.yaml("info", KEY_1, route));
    app.sighup();
    // Written after the access line of /before would have been.
    logged(&app, "config reloaded", 1).await;
    assert_eq!(access(&app), 0, "no access lines at warn");
    answers(&site.url("/after"), 200).await;
    let seen = poll(LIMIT, EVERY, async || access(&app), |n| *n >= 1).await;
    assert!(seen >= 1, "access lines at info");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_log_wins_over_a_reloaded_level() {
    let site = Site::start().await;
    let route = "  - {path: /, upstream: '{up1}', auth: none}";
    let app = Process::start_logged_with_env(
        site.port,
        &site.yaml("info", KEY_1, route),
        &[("RUST_LOG", "warn")],
    );
    app.wait_ready();
    app.rewrite(&site.yaml("debug", KEY_1, route));
    app.sighup();
    logged(&app, "log.level changed, but RUST_LOG is set", 1).await;
    answers(&site.url("/after"), 200).await;
    // A warning written after the access line of /after would have been.
    app.rewrite("routes: [unclosed");
    app.sighup();
    logged(&app, "config reload failed", 1).await;
    let below_warn = app
        .logs()
        .into_iter()
        .filter(|l| l["level"] == "INFO" || l["level"] == "DEBUG")
        .count();
    assert_eq!(below_warn, 0, "RUST_LOG=warn still decides: {:#?}", app.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn kr02_a_key_removed_by_a_reload_ends_its_sessions_with_a_401() {
    // In this process, reloaded through the library's handle.
    let site = Site::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloakroom.yaml");
    let routes = "  - {path: /api, upstream: '{up1}'}\n  - {path: /, upstream: '{up1}', auth: none}";
    std::fs::write(&path, site.yaml("warn", KEY_1, routes)).unwrap();
    let bound = support::App::bind_at(site.port).await;
    let (app, reloader) = bound.start_reloading(&path, cloakroom::Clock::system());
    until(LIMIT, EVERY, "cloakroom answers", async || {
        support::client().get(site.url("/")).send().await.is_ok()
    })
    .await;
    let browser = site.login("alice").await;
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);

    let only_new = format!("[{{id: '2', secret: {NEW_KEY}}}]");
    std::fs::write(&path, site.yaml("warn", &only_new, routes)).unwrap();
    assert_eq!(
        reloader.reload().await,
        cloakroom::reload::Outcome::Applied {
            needs_restart: vec![]
        }
    );
    let page = browser.fetch(&site.url("/api/orders")).await;
    assert_eq!(page.status, 401, "not a 500: {}", page.body);
    assert!(page.clears_a_cookie());

    // A new login is sealed under the key that remains.
    let browser = site.login("alice").await;
    assert_eq!(kid(&browser.cookie(&site.base, SESSION_COOKIE).unwrap()), "2");
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);

    // A file that does not load is refused through the handle too.
    std::fs::write(&path, "routes: [unclosed").unwrap();
    let outcome = reloader.reload().await;
    assert_eq!(outcome.label(), "failure");
    assert_eq!(browser.fetch(&site.url("/api/orders")).await.status, 200);
    app.shutdown().await;
}
