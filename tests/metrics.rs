//! `/metrics` on the admin listener, scraped before and after real traffic:
//! logins and refreshes through the real IdP, API calls to the echo
//! upstream, a WebSocket tunnel, refusals, expiry reached by moving the
//! clock, and the anomaly signals. Each family must move by what the
//! traffic did, the exposition must parse, and it must carry no token.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::fake_idp::{claims, sign, FakeIdp, KEY_PEM};
use support::idp::{world_with_clock, World};
use support::redis::RedisServer;
use support::wait::{poll, until};
use support::{App, Browser, Process, Upstream, COOKIE_KEY, SESSION_COOKIE};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape, parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of every sample of `name` that carries all of `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// `GET /metrics` as Prometheus asks for it; checks the content type and
/// that every line parses.
async fn scrape(admin: SocketAddr) -> Scrape {
    let response = support::client()
        .get(format!("http://{admin}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], OPENMETRICS);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    let samples = parse_openmetrics(&text);
    Scrape { text, samples }
}

/// Parses an OpenMetrics text exposition strictly enough to fail on
/// anything malformed: metadata lines, `name{labels} value` samples with
/// quoted label values, and `# EOF` last.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("# EOF"), "the exposition ends with # EOF");
    let mut samples = Vec::new();
    for line in lines {
        if let Some(meta) = line.strip_prefix("# ") {
            let kind = meta.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "metadata line: {line}");
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("sample value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels: {line}"));
                (name, parse_labels(inner, line))
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn parse_labels(mut inner: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !inner.is_empty() {
        let (key, rest) = inner.split_once("=\"").unwrap_or_else(|| panic!("label: {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.push(chars.next().unwrap().1),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        labels.push((key.to_owned(), value));
        inner = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// The change of every listed series between two scrapes.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

/// Nothing issued by the IdP, and no cookie, is in the exposition.
async fn assert_no_secrets(w: &World, scrape: &Scrape, cookies: &[String]) {
    for token in w.idp.issued().await {
        assert!(!scrape.text.contains(&token), "a token in /metrics");
    }
    for cookie in cookies {
        assert!(!scrape.text.contains(cookie.as_str()), "a cookie in /metrics");
    }
    for word in ["Bearer", "eyJ", "cloakroom:{"] {
        assert!(!scrape.text.contains(word), "{word} in /metrics");
    }
}

/// Access tokens live 5 s and are refreshed 2 s before expiry; one route
/// leads to an upstream nobody listens on.
async fn world() -> World {
    let down = support::free_port();
    world_with_clock(
        &format!(
            "  - {{path: /down, upstream: 'http://127.0.0.1:{down}', auth: none, timeout: 2s}}\n\
             session: {{refresh_skew: 2s}}"
        ),
        json!({"access_token_ttl": 5, "rotate_refresh": true}),
        1,
        cloakroom::Clock::manual(),
    )
    .await
}

/// For a 5 s token refreshed 2 s before expiry: past its refresh point.
const DUE: Duration = Duration::from_millis(3500);

/// The session cookie with one character changed: it no longer opens.
fn tampered(cookie: &str) -> String {
    let mut bytes = cookie.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn every_family_moves_with_real_traffic() {
    let w = world().await;
    let admin = w.app.admin;
    let before = scrape(admin).await;
    assert_eq!(before.get("cloakroom_requests_total", &[]), 0.0);
    assert_eq!(before.get("cloakroom_websocket_tunnels", &[]), 0.0);
    for outcome in ["success", "failure"] {
        assert_eq!(
            before.get("cloakroom_config_reloads_total", &[("outcome", outcome)]),
            0.0,
            "the reload counter is there before any reload"
        );
    }

    // A login, API calls, a refresh.
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    for _ in 0..3 {
        assert_eq!(w.api_get(&browser).await.status, 200);
    }
    w.clock.advance(DUE);
    assert_eq!(w.api_get(&browser).await.status, 200);
    // A failed login, a 404 and an unreachable upstream.
    let failed = browser
        .get(&w.url("/auth/callback?state=forged&code=x"), &[])
        .await;
    assert_eq!(failed.status, 400);
    assert_eq!(browser.fetch(&w.url("/auth/nothing")).await.status, 404);
    assert_eq!(browser.get(&w.url("/down/x"), &[]).await.status, 502);
    // A CSRF refusal: an API call without `X-CSRF`.
    assert_eq!(browser.get(&w.url("/api/orders"), &[]).await.status, 403);

    let after = scrape(admin).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);

    // Requests: by route, method, status and code, with their latency.
    let api_ok = [
        ("route", "/api"),
        ("method", "GET"),
        ("status", "200"),
        ("code", "none"),
    ];
    assert_eq!(m("cloakroom_requests_total", &api_ok), 4.0, "{}", after.text);
    assert_eq!(
        m(
            "cloakroom_requests_total",
            &[("route", "/api"), ("status", "403"), ("code", "csrf_failed")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "cloakroom_requests_total",
            &[("route", "none"), ("status", "404"), ("code", "not_found")]
        ),
        1.0,
        "an unknown /auth/ path is `none`, never its raw path"
    );
    assert_eq!(
        m(
            "cloakroom_requests_total",
            &[
                ("route", "/down"),
                ("status", "502"),
                ("code", "upstream_unavailable")
            ]
        ),
        1.0
    );
    assert!(!after.text.contains("/auth/nothing") && !after.text.contains("/down/x"));
    assert_eq!(
        m(
            "cloakroom_request_duration_seconds_count",
            &[("route", "/api"), ("method", "GET")]
        ),
        5.0
    );
    assert!(m("cloakroom_request_duration_seconds_sum", &[("route", "/api")]) > 0.0);

    // Upstream: latency of the answered calls, errors of the others.
    assert_eq!(
        m(
            "cloakroom_upstream_request_duration_seconds_count",
            &[("route", "/api")]
        ),
        4.0
    );
    assert_eq!(
        m(
            "cloakroom_upstream_errors_total",
            &[("route", "/down"), ("error", "unavailable")]
        ),
        1.0
    );

    // Logins: started, completed, failed by code.
    assert_eq!(m("cloakroom_logins_total", &[("outcome", "started")]), 1.0);
    assert_eq!(m("cloakroom_logins_total", &[("outcome", "completed")]), 1.0);
    assert_eq!(
        m(
            "cloakroom_logins_total",
            &[("outcome", "failed"), ("code", "login_failed")]
        ),
        1.0
    );
    assert_eq!(m("cloakroom_sessions_created_total", &[]), 1.0);

    // Refreshes: one rotated, with the token endpoint's latency.
    assert_eq!(m("cloakroom_refreshes_total", &[("outcome", "rotated")]), 1.0);
    assert_eq!(
        m("cloakroom_refreshes_total", &[]),
        1.0,
        "one flight, one outcome"
    );
    assert_eq!(
        m(
            "cloakroom_idp_token_request_duration_seconds_count",
            &[("grant", "refresh_token")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "cloakroom_idp_token_request_duration_seconds_count",
            &[("grant", "authorization_code")]
        ),
        1.0
    );

    // Store operations: the session written, read, and the refresh's
    // lease and compare-and-set.
    assert!(
        m(
            "cloakroom_store_operations_total",
            &[("op", "put"), ("outcome", "ok")]
        ) >= 2.0
    );
    assert!(
        m(
            "cloakroom_store_operations_total",
            &[("op", "get"), ("outcome", "ok")]
        ) >= 4.0
    );
    assert!(m("cloakroom_store_operations_total", &[("op", "get_latest")]) >= 1.0);
    assert!(
        m(
            "cloakroom_store_operation_duration_seconds_count",
            &[("op", "get")]
        ) >= 4.0
    );

    // CSRF refusals, by route.
    assert_eq!(m("cloakroom_csrf_refusals_total", &[("route", "/api")]), 1.0);
    assert_no_secrets(&w, &after, &[cookie]).await;

    // Logout ends the session.
    let before = after;
    assert_eq!(w.logout(&browser).await.status, 200);
    let after = scrape(admin).await;
    assert_eq!(
        moved(
            &before,
            &after,
            "cloakroom_sessions_ended_total",
            &[("reason", "logout")]
        ),
        1.0
    );
    // Its record is taken from the store with its refresh token, which is
    // queued for revocation and revoked by the worker.
    assert_eq!(
        moved(
            &before,
            &after,
            "cloakroom_store_operations_total",
            &[("op", "take")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "cloakroom_revocations_total",
            &[("outcome", "queued")]
        ),
        1.0
    );
    let revoked = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape(admin).await,
        |s| moved(&before, s, "cloakroom_revocations_total", &[("outcome", "done")]) == 1.0,
    )
    .await;
    let done = [("outcome", "done")];
    assert_eq!(
        moved(&before, &revoked, "cloakroom_revocations_total", &done),
        1.0
    );
    assert_eq!(revoked.get("cloakroom_revocation_queue_length", &[]), 0.0);

    // Idle expiry, reached by moving the clock past the 30 min default.
    let (idle, _) = w.login("bob").await;
    assert_eq!(w.api_get(&idle).await.status, 200);
    let before = scrape(admin).await;
    w.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(w.api_get(&idle).await.status, 401);
    let after = scrape(admin).await;
    assert_eq!(
        moved(
            &before,
            &after,
            "cloakroom_sessions_ended_total",
            &[("reason", "idle")]
        ),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(moved(&before, &after, "cloakroom_sessions_ended_total", &[]), 1.0);
}

#[tokio::test]
async fn the_tunnel_gauge_follows_an_open_websocket() {
    let w = world().await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    let before = scrape(w.app.admin).await;

    let mut request = format!("ws://{}/live/ws", w.app.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("{SESSION_COOKIE}={cookie}").parse().unwrap());
    headers.insert("origin", w.base.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert_eq!(
        echo.unwrap().unwrap().unwrap().into_text().unwrap().as_str(),
        "hello"
    );

    let open = scrape(w.app.admin).await;
    assert_eq!(open.get("cloakroom_websocket_tunnels", &[]), 1.0, "{}", open.text);
    assert_eq!(
        moved(
            &before,
            &open,
            "cloakroom_requests_total",
            &[("route", "/live"), ("method", "websocket"), ("status", "101")]
        ),
        1.0
    );

    ws.close(None).await.unwrap();
    drop(ws);
    let closed = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape(w.app.admin).await,
        |s| s.get("cloakroom_websocket_tunnels", &[]) == 0.0,
    )
    .await;
    assert_eq!(
        closed.get("cloakroom_websocket_tunnels", &[]),
        0.0,
        "the tunnel closed"
    );
}

/// A tampered cookie sent again and again, and requests without `X-CSRF`,
/// from one client: each failure counted, each burst one anomaly.
#[tokio::test]
async fn bursts_of_unopenable_cookies_and_csrf_refusals_are_anomalies() {
    let w = world().await;
    let (browser, _) = w.login("alice").await;
    let forged = tampered(&browser.cookie(&w.base, SESSION_COOKIE).unwrap());
    let before = scrape(w.app.admin).await;
    let client = support::client();
    for _ in 0..25 {
        let r = client
            .get(w.url("/api/orders"))
            .header("x-csrf", "1")
            .header("cookie", format!("{SESSION_COOKIE}={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = client.get(w.url("/api/orders")).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    let after = scrape(w.app.admin).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);
    assert_eq!(m("cloakroom_cookie_unseal_failures_total", &[]), 25.0);
    assert_eq!(m("cloakroom_csrf_refusals_total", &[("route", "/api")]), 25.0);
    assert_eq!(
        m("cloakroom_anomalies_total", &[("kind", "unseal_burst")]),
        1.0,
        "one burst, one anomaly: {}",
        after.text
    );
    assert_eq!(m("cloakroom_anomalies_total", &[("kind", "csrf_burst")]), 1.0);
    // A cookie that does not open reaches no store: the only store calls
    // are the scrapes' own looks (`cloakroom_store_up`, the revocation
    // queue's length) and the revocation worker's at its queue.
    let background: f64 = ["ping", "queue_len", "queue_claim"]
        .into_iter()
        .map(|op| m("cloakroom_store_operations_total", &[("op", op)]))
        .sum();
    assert_eq!(m("cloakroom_store_operations_total", &[]), background);
    assert!(!after.text.contains(&forged));
    assert!(!after.text.contains("127.0.0.1"), "no client address in labels");
}

/// The anomaly is one warning line on `cloakroom::anomaly`, with the
/// client address and no cookie.
#[tokio::test]
async fn an_anomaly_is_one_log_line_with_the_client_and_no_cookie() {
    let w = world().await;
    let (browser, _) = w.login("alice").await;
    let forged = tampered(&browser.cookie(&w.base, SESSION_COOKIE).unwrap());
    let yaml = w
        .yaml
        .replace("log: {level: warn}", "log: {level: warn, format: json}");
    let process = Process::start_logged(&yaml);
    let client = support::client();
    for _ in 0..15 {
        let r = client
            .get(format!("{}/api/orders", process.base))
            .header("x-csrf", "1")
            .header("cookie", format!("{SESSION_COOKIE}={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let anomalies = |logs: &[serde_json::Value]| -> Vec<serde_json::Value> {
        logs.iter()
            .filter(|l| l["target"] == "cloakroom::anomaly")
            .cloned()
            .collect()
    };
    let logs = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || process.logs(),
        |logs| !anomalies(logs).is_empty(),
    )
    .await;
    let lines = anomalies(&logs);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["kind"], "unseal_burst");
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["count"], 10);
    let text = line.to_string();
    assert!(!text.contains(&forged), "{text}");
    let metrics = support::client()
        .get(format!("{}/metrics", process.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8",
        "the Prometheus text format for a client that does not ask for OpenMetrics"
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("cloakroom_anomalies_total{kind=\"unseal_burst\"} 1"),
        "{text}"
    );
}

/// The fake IdP answers a refresh with an ID token for another subject.
#[tokio::test]
async fn a_refreshed_id_token_for_another_subject_is_an_anomaly_and_ends_the_session() {
    let idp = FakeIdp::start(Box::new(|iss, nonce, _| {
        sign(&claims(iss, nonce), KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    {
        let mut behaviour = idp.behaviour.lock().unwrap();
        behaviour.expires_in = Some(3);
        behaviour.refresh_forge = Some(Box::new(|iss, _, _| {
            let mut c = claims(iss, "");
            c.remove("nonce");
            c.insert("sub".into(), json!("mallory"));
            sign(&c, KEY_PEM, json!({"kid": "k1"}))
        }));
    }
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
session: {{refresh_skew: 2s}}
routes: [{{path: /api, upstream: '{u}'}}]
",
        iss = idp.issuer,
        u = up.url()
    );
    let clock = cloakroom::Clock::manual();
    let app = bound.start_with_clock(&yaml, clock.clone());
    let browser = Browser::new(&base);
    let callback = format!("{base}/auth/callback");
    let (_, visited) = browser
        .navigate_until(&format!("{base}/auth/login"), "alice", Some(&callback))
        .await;
    assert_eq!(browser.get(visited.last().unwrap(), &[]).await.status, 302);
    let api = format!("{base}/api/x");
    assert_eq!(browser.fetch(&api).await.status, 200);

    let before = scrape(app.admin).await;
    // Past the refresh point of the 3 s token (half-way), before its expiry.
    clock.advance(Duration::from_secs(2));
    assert_eq!(browser.fetch(&api).await.status, 401);
    let after = scrape(app.admin).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);
    assert_eq!(
        m("cloakroom_anomalies_total", &[("kind", "identity_changed")]),
        1.0
    );
    assert_eq!(m("cloakroom_anomalies_total", &[]), 1.0);
    assert_eq!(
        m(
            "cloakroom_sessions_ended_total",
            &[("reason", "forged_idp_answer")]
        ),
        1.0
    );
    assert_eq!(m("cloakroom_refreshes_total", &[("outcome", "ended")]), 1.0);
    assert_eq!(
        m(
            "cloakroom_requests_total",
            &[("route", "/api"), ("status", "401"), ("code", "login_required")]
        ),
        1.0
    );
    assert!(!after.text.contains("mallory") && !after.text.contains("alice"));
}

/// Two replicas on one Redis; the first one's refresh call is held at the
/// IdP while its lease vanishes, so the second refreshes first and the IdP
/// rotates the refresh token. The first then presents the rotated token:
/// `invalid_grant`, which the record, read again, explains.
#[tokio::test]
async fn a_refresh_token_presented_after_its_rotation_is_an_anomaly() {
    let redis = RedisServer::start();
    let w = world_with_clock(
        &format!(
            "session: {{store: {{redis: {{url: '{}'}}}}, refresh_skew: 2s}}",
            redis.url()
        ),
        // Call 1 is the login's code exchange; call 2, the first refresh,
        // is held 3 s before the IdP handles it.
        json!({"access_token_ttl": 5, "rotate_refresh": true,
               "token_delay": {"call": 2, "ms": 3000, "phase": "before"}}),
        2,
        cloakroom::Clock::manual(),
    )
    .await;
    let browser = w.login_everywhere("alice").await;
    let other = w.others[0].0.clone();
    let before = scrape(w.app.admin).await;
    w.clock.advance(DUE);
    let slow = {
        let (browser, url) = (browser.clone(), w.url("/api/orders"));
        tokio::spawn(async move { browser.fetch(&url).await.status })
    };
    until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "the held refresh never reached the IdP",
        async || w.idp.stats().await["token_requests"].as_u64() >= Some(2),
    )
    .await;
    // Its lease vanishes (a failover that lost it); the other replica
    // refreshes and commits first.
    let locks = redis.cli(&["--scan", "--pattern", "cloakroom:*:lock"]);
    assert_eq!(redis.cli(&["DEL", locks.trim()]).trim(), "1");
    assert_eq!(browser.fetch(&format!("{other}/api/orders")).await.status, 200);
    assert_eq!(slow.await.unwrap(), 200, "the winner's tokens are served");

    let after = scrape(w.app.admin).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);
    assert_eq!(
        m("cloakroom_anomalies_total", &[("kind", "refresh_token_reuse")]),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        m(
            "cloakroom_refreshes_total",
            &[("outcome", "waited_on_other_replica")]
        ),
        1.0
    );
    assert!(
        m(
            "cloakroom_store_operation_duration_seconds_count",
            &[("op", "get_latest")]
        ) >= 2.0
    );
    // The other replica counted its own, rotated, refresh.
    let winner = scrape(w.others[0].1.admin).await;
    assert_eq!(
        winner.get("cloakroom_refreshes_total", &[("outcome", "rotated")]),
        1.0
    );
    assert_eq!(winner.get("cloakroom_anomalies_total", &[]), 0.0);
}

/// `GET /metrics` of a process, parsed.
async fn scrape_process(process: &Process) -> Scrape {
    let admin: SocketAddr = process.admin.trim_start_matches("http://").parse().unwrap();
    scrape(admin).await
}

/// Rewrites `process`'s config to `yaml`, sends SIGHUP, and waits until
/// one reload with `outcome` is counted; returns that scrape.
async fn reload(process: &Process, yaml: &str, outcome: &str) -> Scrape {
    process.rewrite(yaml);
    process.sighup();
    let counted = |s: &Scrape| s.get("cloakroom_config_reloads_total", &[("outcome", outcome)]);
    let scraped = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape_process(process).await,
        |s| counted(s) == 1.0,
    )
    .await;
    assert_eq!(counted(&scraped), 1.0, "{}", scraped.text);
    scraped
}

/// A reload keeps every count and adds its outcome; a refused one too.
#[tokio::test]
async fn counts_survive_a_reload_and_reloads_are_counted() {
    let up = Upstream::start().await;
    let yaml = support::config(&[("/a", &up.url(), "")]);
    let process = Process::start_logged(&yaml);
    process.wait_ready();
    let client = support::client();
    for _ in 0..3 {
        let r = client.get(format!("{}/a/x", process.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let a = [("route", "/a"), ("status", "200")];
    assert_eq!(
        scrape_process(&process).await.get("cloakroom_requests_total", &a),
        3.0
    );

    reload(
        &process,
        &support::config(&[("/a", &up.url(), ""), ("/b", &up.url(), "")]),
        "success",
    )
    .await;
    let r = client.get(format!("{}/b/x", process.base)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the new route serves");
    let after = scrape_process(&process).await;
    assert_eq!(
        after.get("cloakroom_requests_total", &a),
        3.0,
        "kept across the reload"
    );
    assert_eq!(
        after.get("cloakroom_requests_total", &[("route", "/b"), ("status", "200")]),
        1.0
    );

    let refused = reload(&process, "routes: not a list\n", "failure").await;
    assert_eq!(refused.get("cloakroom_requests_total", &a), 3.0);
}

/// `cloakroom_store_up` and `cloakroom_idp_up` say what a scrape found:
/// Redis stopped and started again, the IdP gone. The process families
/// are there with their standard names.
#[tokio::test]
async fn the_store_and_idp_gauges_follow_redis_and_the_idp() {
    let mut redis = RedisServer::start();
    let mut w = world_with_clock(
        &format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url()),
        json!({}),
        1,
        cloakroom::Clock::manual(),
    )
    .await;
    let admin = w.app.admin;
    let up = |s: &Scrape, name: &str| s.get(name, &[]);
    let first = scrape(admin).await;
    assert_eq!(up(&first, "cloakroom_store_up"), 1.0, "{}", first.text);
    assert_eq!(up(&first, "cloakroom_idp_up"), 1.0);
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(up(&first, name) > 0.0, "{name}: {}", first.text);
    }

    redis.stop();
    let down = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape(admin).await,
        |s| up(s, "cloakroom_store_up") == 0.0,
    )
    .await;
    assert_eq!(up(&down, "cloakroom_store_up"), 0.0, "Redis stopped");
    assert_eq!(up(&down, "cloakroom_idp_up"), 1.0, "the IdP is still there");

    redis.resume();
    let back = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape(admin).await,
        |s| up(s, "cloakroom_store_up") == 1.0,
    )
    .await;
    assert_eq!(up(&back, "cloakroom_store_up"), 1.0, "Redis started again");

    w.idp.kill();
    let gone = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || scrape(admin).await,
        |s| up(s, "cloakroom_idp_up") == 0.0,
    )
    .await;
    assert_eq!(up(&gone, "cloakroom_idp_up"), 0.0, "the IdP is down");
    assert_eq!(up(&gone, "cloakroom_store_up"), 1.0);
}
