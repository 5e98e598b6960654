//! Sessions and how they end: back-channel logout from the real IdP and
//! forged logout tokens (LO-06 to LO-10), a user ending their own sessions,
//! the admin API (LO-12), the per-user bound, and what lives beside a
//! session (WebSocket tunnels, streamed answers) closing with it on every
//! replica. Test names carry the threat-model case ids.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use support::fake_idp::{self, claims, raw, sign, FakeIdp, ATTACKER_PEM, KEY_PEM};
use support::idp::{world_with, world_with_clock, World};
use support::redis::RedisServer;
use support::wait::poll;
use support::{client, config, App, Browser, Upstream, COOKIE_KEY, SESSION_COOKIE};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What lives beside a session closes this soon after it ends.
const CLOSE: Duration = Duration::from_secs(1);
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const ADMIN_TOKEN: &str = "an-admin-token-of-forty-characters-000000";
const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";

fn redis_store(redis: &RedisServer) -> String {
    format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url())
}

/// Logs `user` in on the first replica from a browser that says it is
/// `user_agent`.
async fn login_as(w: &World, user: &str, user_agent: &str) -> Browser {
    let browser = Browser::new_as(&w.base, user_agent);
    let (page, _) = browser
        .navigate(&w.url("/auth/login?return_to=/app/home"), user)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    browser
}

/// `GET /api/orders` on `base` with the browser's session; the status.
async fn api_status(browser: &Browser, base: &str) -> u16 {
    browser.fetch(&format!("{base}/api/orders")).await.status
}

/// Opens a WebSocket to the echo upstream through `base` with the
/// browser's session cookie for `cookie_base`, and checks it echoes.
async fn open_socket(base: &str, browser: &Browser, cookie_base: &str, origin: &str) -> Socket {
    let cookie = browser
        .cookie(cookie_base, SESSION_COOKIE)
        .expect("a session cookie");
    let url = format!("{}/live/ws", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("{SESSION_COOKIE}={cookie}").parse().unwrap());
    headers.insert("origin", origin.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("ping")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo")
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "ping");
    socket
}

/// Asserts the socket is closed by the other side within `limit`.
async fn closes_within(socket: &mut Socket, limit: Duration, what: &str) {
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => panic!("{what}: the WebSocket is still open after {limit:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Asserts the socket stays open and echoing.
async fn still_open(socket: &mut Socket) {
    socket.send(Message::text("still")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo")
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "still");
}

// === back-channel logout from the real IdP ===

#[tokio::test]
async fn lo06_a_back_channel_logout_from_the_real_idp_ends_the_session_everywhere() {
    let redis = RedisServer::start();
    let w = world_with(&redis_store(&redis), json!({"backchannel_logout": true}), 2).await;
    let browser = w.login_everywhere("alice").await;
    let (other, _) = w.login("bob").await;
    let bases = w.bases();
    // Both replicas have read (and cached) the session.
    for base in &bases {
        assert_eq!(api_status(&browser, base).await, 200);
    }
    let mut socket = open_socket(&bases[1], &browser, &bases[1], &w.base).await;
    let mut bobs = open_socket(&w.base, &other, &w.base, &w.base).await;

    // Alice signs out at the IdP (from another application, say); the IdP
    // posts its logout token to the first replica before it answers.
    w.logout_at_idp(&browser).await;
    let acknowledged = Instant::now();
    let stats = w.idp.stats().await;
    assert_eq!(stats["backchannel"]["success"], 1, "{stats}");
    assert_eq!(stats["backchannel"]["error"], 0, "{stats}");

    closes_within(
        &mut socket,
        CLOSE.saturating_sub(acknowledged.elapsed()),
        "another replica",
    )
    .await;
    for base in &bases {
        assert_eq!(api_status(&browser, base).await, 401, "{base}");
    }
    // Only her session ended.
    assert_eq!(api_status(&other, &w.base).await, 200);
    still_open(&mut bobs).await;
}

// === forged and invalid logout tokens, signed with the fake IdP's keys ===

/// cloakroom logging in through the fake IdP, whose ID tokens name `alice`
/// and a new IdP session (`sid-1`, `sid-2`, …) each time.
struct Fake {
    idp: FakeIdp,
    _app: App,
    base: String,
    clock: cloakroom::Clock,
    _up: Upstream,
}

async fn fake(extra: &str, clock: cloakroom::Clock) -> Fake {
    let logins = Arc::new(AtomicU64::new(0));
    let idp = FakeIdp::start(Box::new(move |iss, nonce, _| {
        let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
        let mut c = claims(iss, nonce);
        c.insert("sid".into(), json!(format!("sid-{n}")));
        sign(&c, KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /live, upstream: '{u}', websocket: true, strip_prefix: true}}
{extra}
",
        iss = idp.issuer,
        u = up.url()
    );
    let app = bound.start_with_clock(&yaml, clock.clone());
    Fake {
        idp,
        _app: app,
        base,
        clock,
        _up: up,
    }
}

impl Fake {
    async fn login(&self) -> Browser {
        let browser = Browser::new(&self.base);
        let back = format!("{}/api/x", self.base);
        browser
            .navigate_until(
                &format!("{}/auth/login?return_to=/api/x", self.base),
                "alice",
                Some(&back),
            )
            .await;
        assert!(browser.cookie(&self.base, SESSION_COOKIE).is_some(), "logged in");
        browser
    }

    /// Claims of a valid logout token for `alice` and `sid`.
    fn logout_claims(&self, sid: &str) -> Map<String, Value> {
        json!({
            "iss": self.idp.issuer, "aud": "cloakroom", "iat": fake_idp::now(),
            "jti": format!("jti-{}", rand::random::<u64>()), "sub": "alice", "sid": sid,
            "events": { EVENT: {} },
        })
        .as_object()
        .unwrap()
        .clone()
    }

    /// Posts `token` to the back-channel logout endpoint, with `cookie`
    /// (a session cookie) if given.
    async fn post(&self, token: &str, cookie: Option<&str>) -> (u16, http::HeaderMap, String) {
        let mut request = client()
            .post(format!("{}/auth/backchannel-logout", self.base))
            .form(&[("logout_token", token)]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{SESSION_COOKIE}={cookie}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }
}

fn logout_token(claims: &Map<String, Value>) -> String {
    sign(claims, KEY_PEM, json!({"kid": "k1", "typ": "logout+jwt"}))
}

type Claims = Map<String, Value>;

/// A change to otherwise valid logout claims, or a whole token.
enum Forged {
    Claims(Box<dyn Fn(&mut Claims)>),
    Token(Box<dyn Fn(&Claims) -> String>),
}

fn claims_edit(f: impl Fn(&mut Map<String, Value>) + 'static) -> Forged {
    Forged::Claims(Box::new(f))
}

fn token_edit(f: impl Fn(&Map<String, Value>) -> String + 'static) -> Forged {
    Forged::Token(Box::new(f))
}

/// Posts every forged token; each must be a 400 with a problem body that
/// ends nothing, whoever's cookie comes along.
async fn all_refused(f: &Fake, browser: &Browser, cases: Vec<(&str, Forged)>) {
    let cookie = browser.cookie(&f.base, SESSION_COOKIE).unwrap();
    for (case, forged) in cases {
        let mut c = f.logout_claims("sid-1");
        let token = match forged {
            Forged::Claims(edit) => {
                edit(&mut c);
                logout_token(&c)
            }
            Forged::Token(make) => make(&c),
        };
        let (status, headers, body) = f.post(&token, Some(&cookie)).await;
        assert_eq!(status, 400, "{case} must be refused: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{case}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "bad_request", "{case}");
        assert!(!body.contains(&token), "{case}: the token is not echoed");
        assert_eq!(
            api_status(browser, &f.base).await,
            200,
            "{case}: the session lives on"
        );
    }
}

#[tokio::test]
async fn lo07_forged_logout_tokens_are_refused_and_end_nothing() {
    let f = fake("", cloakroom::Clock::system()).await;
    let browser = f.login().await;
    let cases = vec![
        (
            "alg none",
            token_edit(|c| raw(json!({"alg": "none", "typ": "logout+jwt"}), c, "")),
        ),
        (
            "wrong alg (HS256 with the public key as secret)",
            token_edit(|c| {
                let key = jsonwebtoken::EncodingKey::from_secret(b"k1");
                let header = jsonwebtoken::Header {
                    kid: Some("k1".into()),
                    typ: Some("logout+jwt".into()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                };
                jsonwebtoken::encode(&header, c, &key).unwrap()
            }),
        ),
        (
            "signed with a key the IdP does not publish",
            token_edit(|c| sign(c, ATTACKER_PEM, json!({"kid": "k1", "typ": "logout+jwt"}))),
        ),
        (
            "a signature of other claims",
            token_edit(|c| {
                let token = logout_token(c);
                let signature = token.rsplit('.').next().unwrap().to_owned();
                let mut other = c.clone();
                other.insert("sub".into(), json!("mallory"));
                raw(
                    json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"}),
                    &other,
                    &signature,
                )
            }),
        ),
        (
            "wrong aud",
            claims_edit(|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
        ),
        (
            "wrong iss",
            claims_edit(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "no events",
            claims_edit(|c| {
                c.remove("events");
            }),
        ),
        (
            "wrong events member",
            claims_edit(|c| {
                c.insert(
                    "events".into(),
                    json!({"http://schemas.openid.net/event/other": {}}),
                );
            }),
        ),
        (
            "events member not an object",
            claims_edit(|c| {
                c.insert("events".into(), json!({ EVENT: "logout" }));
            }),
        ),
        (
            "a nonce (an ID token, not a logout token)",
            claims_edit(|c| {
                c.insert("nonce".into(), json!("n-0S6_WzA2Mj"));
            }),
        ),
    ];
    all_refused(&f, &browser, cases).await;

    // A request with no logout token, or two, is refused too; a session
    // cookie is never the authority here.
    let cookie = browser.cookie(&f.base, SESSION_COOKIE).unwrap();
    let none = client()
        .post(format!("{}/auth/backchannel-logout", f.base))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .header("x-csrf", "1")
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 400);
    let token = logout_token(&f.logout_claims("sid-1"));
    let two = client()
        .post(format!("{}/auth/backchannel-logout", f.base))
        .form(&[("logout_token", token.as_str()), ("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
    let get = client()
        .get(format!("{}/auth/backchannel-logout", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(api_status(&browser, &f.base).await, 200);

    // The positive control, with no cookie and no CSRF header: 200,
    // no-store, and the session is gone.
    let (status, headers, _) = f.post(&token, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(api_status(&browser, &f.base).await, 401);
}

#[tokio::test]
async fn lo08_logout_tokens_missing_iat_or_jti_too_old_or_mistyped_are_refused() {
    let f = fake("", cloakroom::Clock::system()).await;
    let browser = f.login().await;
    let now = fake_idp::now();
    let cases = vec![
        (
            "no iat",
            claims_edit(|c| {
                c.remove("iat");
            }),
        ),
        (
            "iat an hour old",
            claims_edit(move |c| {
                c.insert("iat".into(), json!(now - 3600));
            }),
        ),
        (
            "iat an hour ahead",
            claims_edit(move |c| {
                c.insert("iat".into(), json!(now + 3600));
            }),
        ),
        (
            "expired",
            claims_edit(move |c| {
                c.insert("exp".into(), json!(now - 3600));
            }),
        ),
        (
            "no jti",
            claims_edit(|c| {
                c.remove("jti");
            }),
        ),
        (
            "typ JWT (an ID token's)",
            token_edit(|c| sign(c, KEY_PEM, json!({"kid": "k1", "typ": "JWT"}))),
        ),
        (
            "typ at+jwt",
            token_edit(|c| sign(c, KEY_PEM, json!({"kid": "k1", "typ": "at+jwt"}))),
        ),
    ];
    all_refused(&f, &browser, cases).await;

    // Without typ, and with an exp ahead, a token is fine: once.
    let mut c = f.logout_claims("sid-1");
    c.insert("exp".into(), json!(now + 120));
    let untyped = sign(&c, KEY_PEM, json!({"kid": "k1", "typ": null}));
    let (status, _, body) = f.post(&untyped, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api_status(&browser, &f.base).await, 401);

    // A replayed jti is refused, even when it would end a live session.
    let again = f.login().await;
    let mut replayed = c.clone();
    replayed.insert("sid".into(), json!("sid-2"));
    let (status, _, body) = f.post(&logout_token(&replayed), None).await;
    assert_eq!(status, 400, "replayed jti: {body}");
    assert_eq!(api_status(&again, &f.base).await, 200);
}

#[tokio::test]
async fn lo09_a_logout_token_naming_neither_sub_nor_sid_is_refused() {
    let f = fake("", cloakroom::Clock::system()).await;
    let browser = f.login().await;
    let cases = vec![
        (
            "neither sub nor sid",
            claims_edit(|c| {
                c.remove("sub");
                c.remove("sid");
            }),
        ),
        (
            "empty sub and sid",
            claims_edit(|c| {
                c.insert("sub".into(), json!(""));
                c.insert("sid".into(), json!(""));
            }),
        ),
        (
            "sid not a string",
            claims_edit(|c| {
                c.insert("sid".into(), json!(1));
            }),
        ),
    ];
    all_refused(&f, &browser, cases).await;
}

#[tokio::test]
async fn lo06_a_logout_token_with_sid_ends_that_idp_session_and_with_only_sub_all() {
    let f = fake("", cloakroom::Clock::system()).await;
    let first = f.login().await; // sid-1
    let second = f.login().await; // sid-2
    let third = f.login().await; // sid-3

    // sid-1 and another subject: nothing ends.
    let mut c = f.logout_claims("sid-1");
    c.insert("sub".into(), json!("mallory"));
    let (status, _, _) = f.post(&logout_token(&c), None).await;
    assert_eq!(status, 200, "a logout for sessions we do not have is still a 200");
    assert_eq!(api_status(&first, &f.base).await, 200);

    // sid-1 only, without sub.
    let mut c = f.logout_claims("sid-1");
    c.remove("sub");
    assert_eq!(f.post(&logout_token(&c), None).await.0, 200);
    assert_eq!(api_status(&first, &f.base).await, 401);
    assert_eq!(api_status(&second, &f.base).await, 200);

    // sub only: every session of alice.
    let mut c = f.logout_claims("");
    c.remove("sid");
    assert_eq!(f.post(&logout_token(&c), None).await.0, 200);
    assert_eq!(api_status(&second, &f.base).await, 401);
    assert_eq!(api_status(&third, &f.base).await, 401);
}

#[tokio::test]
async fn lo10_with_the_store_down_a_back_channel_logout_fails_and_ends_nothing() {
    let mut redis = RedisServer::start();
    let store = format!(
        "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms}}}}}}",
        redis.url()
    );
    let f = fake(&store, cloakroom::Clock::system()).await;
    let browser = f.login().await;
    let token = logout_token(&f.logout_claims("sid-1"));

    redis.stop();
    let (status, _, body) = f.post(&token, None).await;
    assert!(
        status >= 500,
        "never a 200 with the replay cache down: {status} {body}"
    );
    assert_eq!(status, 503, "{body}");
    redis.resume();
    let status = poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || api_status(&browser, &f.base).await,
        |s| *s == 200,
    )
    .await;
    assert_eq!(status, 200, "the session outlived the outage");

    // The IdP's retry of the same token is not taken for a replay.
    let (status, _, body) = f.post(&token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api_status(&browser, &f.base).await, 401);
}

// === the user's own sessions ===

#[tokio::test]
async fn a_user_lists_their_sessions_and_ends_another_one() {
    let w = world_with("", json!({}), 1).await;
    let laptop = login_as(&w, "alice", FIREFOX_LINUX).await;
    let phone = login_as(&w, "alice", CHROME_ANDROID).await;
    let bob = login_as(&w, "bob", FIREFOX_LINUX).await;

    let listing = laptop.fetch(&w.url("/auth/sessions")).await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(listing.headers["cache-control"], "no-store");
    let sessions = listing.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let devices: Vec<&str> = sessions.iter().map(|s| s["device"].as_str().unwrap()).collect();
    assert_eq!(devices, ["Firefox on Linux", "Chrome on Android"], "oldest first");
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[1]["current"], false);
    let cookie = laptop.cookie(&w.base, SESSION_COOKIE).unwrap();
    for s in &sessions {
        let id = s["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            !cookie.contains(id) && !id.contains("cloakroom"),
            "an opaque handle"
        );
        assert!(s["created"].as_u64().unwrap() <= s["last_seen"].as_u64().unwrap());
    }
    let phones_id = sessions[1]["id"].as_str().unwrap().to_owned();

    // CSRF-checked like logout.
    let no_csrf = laptop.get(&w.url("/auth/sessions"), &[]).await;
    assert_eq!(no_csrf.status, 403);
    let url = w.url(&format!("/auth/sessions/{phones_id}"));
    let foreign = [("x-csrf", "1"), ("origin", "https://evil.example")];
    let cross = laptop.send(reqwest::Method::DELETE, &url, &foreign, None).await;
    assert_eq!(cross.status, 403);

    // Another user's session is not found.
    let bobs = bob.fetch(&w.url("/auth/sessions")).await.json();
    let bobs_id = bobs["sessions"][0]["id"].as_str().unwrap().to_owned();
    let ours = [("x-csrf", "1"), ("origin", w.base.as_str())];
    let theirs = w.url(&format!("/auth/sessions/{bobs_id}"));
    assert_eq!(
        laptop
            .send(reqwest::Method::DELETE, &theirs, &ours, None)
            .await
            .status,
        404
    );
    let unknown = w.url("/auth/sessions/00000000000000000000000000000000");
    assert_eq!(
        laptop
            .send(reqwest::Method::DELETE, &unknown, &ours, None)
            .await
            .status,
        404
    );
    assert_eq!(api_status(&bob, &w.base).await, 200);

    // Ending the phone's session from the laptop: its socket closes, its
    // next request is a 401, the laptop goes on.
    let mut socket = open_socket(&w.base, &phone, &w.base, &w.base).await;
    let ended = laptop.send(reqwest::Method::DELETE, &url, &ours, None).await;
    assert_eq!(ended.status, 204, "{}", ended.body);
    assert!(!ended.clears_a_cookie(), "the caller's own cookie stays");
    closes_within(&mut socket, CLOSE, "DELETE /auth/sessions/{id}").await;
    assert_eq!(api_status(&phone, &w.base).await, 401);
    assert_eq!(api_status(&laptop, &w.base).await, 200);
    let left = laptop.fetch(&w.url("/auth/sessions")).await.json();
    assert_eq!(left["sessions"].as_array().unwrap().len(), 1);

    // Ending one's own session is a logout here.
    let own = left["sessions"][0]["id"].as_str().unwrap();
    let own = w.url(&format!("/auth/sessions/{own}"));
    let ended = laptop.send(reqwest::Method::DELETE, &own, &ours, None).await;
    assert_eq!(ended.status, 204);
    assert!(ended.clears_a_cookie());
    assert_eq!(api_status(&laptop, &w.base).await, 401);
}

#[tokio::test]
async fn sessions_are_bounded_per_user_and_the_oldest_ends_first() {
    let w = world_with("session: {max_per_user: 2}", json!({}), 1).await;
    let oldest = login_as(&w, "alice", FIREFOX_LINUX).await;
    let mut socket = open_socket(&w.base, &oldest, &w.base, &w.base).await;
    let middle = login_as(&w, "alice", CHROME_ANDROID).await;
    let bob = login_as(&w, "bob", FIREFOX_LINUX).await;
    still_open(&mut socket).await;

    let newest = login_as(&w, "alice", FIREFOX_LINUX).await;
    closes_within(&mut socket, CLOSE, "pushed out by a newer session").await;
    assert_eq!(api_status(&oldest, &w.base).await, 401);
    assert_eq!(api_status(&middle, &w.base).await, 200);
    assert_eq!(api_status(&newest, &w.base).await, 200);
    assert_eq!(api_status(&bob, &w.base).await, 200, "per user, not in all");
    let listing = newest.fetch(&w.url("/auth/sessions")).await.json();
    assert_eq!(listing["sessions"].as_array().unwrap().len(), 2);
}

// === the admin API ===

async fn admin_delete(app: &App, query: &str, token: Option<&str>) -> (u16, http::HeaderMap, String) {
    let mut request = client().delete(format!("http://{}/admin/sessions{query}", app.admin));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn lo12_the_admin_api_ends_every_session_of_a_subject_on_every_replica() {
    let redis = RedisServer::start();
    let extra = format!("{}\nadmin: {{api_token: '{ADMIN_TOKEN}'}}", redis_store(&redis));
    let w = world_with(&extra, json!({}), 2).await;
    let alice = w.login_everywhere("alice").await;
    let again = w.login_everywhere("alice").await;
    let bob = w.login_everywhere("bob").await;
    let bases = w.bases();
    for base in &bases {
        assert_eq!(api_status(&alice, base).await, 200);
    }
    let mut socket = open_socket(&bases[1], &again, &bases[1], &w.base).await;

    let (status, headers, body) = admin_delete(&w.app, "?sub=alice", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"ended": 2}));
    closes_within(&mut socket, CLOSE, "admin API, on another replica").await;
    for base in &bases {
        assert_eq!(api_status(&alice, base).await, 401, "{base}");
        assert_eq!(api_status(&again, base).await, 401, "{base}");
        assert_eq!(api_status(&bob, base).await, 200, "{base}");
    }
    let iss = format!("?sub=alice&iss={}", w.idp.issuer);
    let (status, _, body) = admin_delete(&w.app, &iss, Some(ADMIN_TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"ended":0}"#));
}

#[tokio::test]
async fn the_admin_api_is_off_by_default_and_asks_for_its_token() {
    let w = world_with(&format!("admin: {{api_token: '{ADMIN_TOKEN}'}}"), json!({}), 1).await;
    let (alice, _) = w.login("alice").await;
    for token in [None, Some("wrong"), Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])] {
        let (status, headers, body) = admin_delete(&w.app, "?sub=alice", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(!body.contains(ADMIN_TOKEN));
    }
    assert_eq!(api_status(&alice, &w.base).await, 200);
    let (status, _, _) = admin_delete(&w.app, "", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400, "sub is required");
    let get = client()
        .get(format!("http://{}/admin/sessions?sub=alice", w.app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    // Not on the public listener.
    let public = client()
        .delete(w.url("/admin/sessions?sub=alice"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    // (the anonymous `/` route forwards it to the echo upstream)
    assert!(!public.text().await.unwrap().contains("\"ended\""));
    assert_eq!(api_status(&alice, &w.base).await, 200);

    let off = world_with("", json!({}), 1).await;
    let (status, _, _) = admin_delete(&off.app, "?sub=alice", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404, "off unless configured");
}

// === what lives beside a session ends with it ===

#[tokio::test]
async fn a_websocket_closes_within_a_second_of_logout_on_the_same_replica() {
    let w = world_with("", json!({}), 1).await;
    let (browser, _) = w.login("alice").await;
    let mut socket = open_socket(&w.base, &browser, &w.base, &w.base).await;
    let (bob, _) = w.login("bob").await;
    let mut bobs = open_socket(&w.base, &bob, &w.base, &w.base).await;
    assert_eq!(w.logout(&browser).await.status, 200);
    closes_within(&mut socket, CLOSE, "logout").await;
    still_open(&mut bobs).await;
}

#[tokio::test]
async fn a_websocket_closes_within_a_second_of_logout_on_another_replica() {
    let redis = RedisServer::start();
    let w = world_with(&redis_store(&redis), json!({}), 2).await;
    let browser = w.login_everywhere("alice").await;
    let bases = w.bases();
    let mut socket = open_socket(&bases[1], &browser, &bases[1], &w.base).await;
    assert_eq!(w.logout(&browser).await.status, 200);
    closes_within(&mut socket, CLOSE, "logout on another replica").await;
}

#[tokio::test]
async fn a_websocket_closes_at_the_absolute_timeout() {
    let clock = cloakroom::Clock::manual();
    let extra = "session: {idle_timeout: 30m, absolute_timeout: 2h}";
    let w = world_with_clock(extra, json!({}), 1, clock.clone()).await;
    let (browser, _) = w.login("alice").await;
    let mut socket = open_socket(&w.base, &browser, &w.base, &w.base).await;
    // Kept alive by requests, until the absolute end.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(25 * 60));
        assert_eq!(api_status(&browser, &w.base).await, 200);
    }
    still_open(&mut socket).await;
    clock.advance(Duration::from_secs(21 * 60));
    closes_within(&mut socket, CLOSE, "absolute timeout").await;
    assert_eq!(api_status(&browser, &w.base).await, 401);
}

#[tokio::test]
async fn a_websocket_closes_at_the_idle_timeout() {
    let clock = cloakroom::Clock::manual();
    let w = world_with_clock("session: {idle_timeout: 30m}", json!({}), 1, clock.clone()).await;
    let (browser, _) = w.login("alice").await;
    let mut socket = open_socket(&w.base, &browser, &w.base, &w.base).await;
    clock.advance(Duration::from_secs(29 * 60));
    still_open(&mut socket).await;
    clock.advance(Duration::from_secs(60));
    closes_within(&mut socket, CLOSE, "idle timeout").await;
    assert_eq!(api_status(&browser, &w.base).await, 401);
}

#[tokio::test]
async fn a_websocket_closes_when_a_refresh_meets_invalid_grant() {
    let clock = cloakroom::Clock::manual();
    let f = fake("", clock.clone()).await;
    let browser = f.login().await;
    let mut socket = open_socket(&f.base, &browser, &f.base, &f.base).await;
    f.idp.behaviour.lock().unwrap().refresh_error = Some((400, "invalid_grant".into()));
    // The 300 s access token is due for refresh.
    f.clock.advance(Duration::from_secs(290));
    assert_eq!(api_status(&browser, &f.base).await, 401);
    closes_within(&mut socket, CLOSE, "invalid_grant").await;
}

#[tokio::test]
async fn a_streamed_answer_stops_when_its_session_ends() {
    let w = world_with("", json!({}), 1).await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    let response = client()
        .get(w.url("/live/slow"))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the first chunk")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    assert_eq!(w.logout(&browser).await.status, 200);
    // The upstream still holds its second chunk: only the end of the
    // session can end the answer.
    match tokio::time::timeout(CLOSE, body.next()).await {
        Err(_) => panic!("the answer is still streaming after {CLOSE:?}"),
        Ok(Some(Ok(chunk))) => panic!("more data after the session ended: {chunk:?}"),
        Ok(None | Some(Err(_))) => {}
    }
}

#[tokio::test]
async fn websocket_max_lifetime_closes_a_tunnel() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[(
        "/live",
        &up.url(),
        ", websocket: true, strip_prefix: true, websocket_max_lifetime: 1s",
    )]))
    .await;
    let opened = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/live/ws", app.addr))
        .await
        .unwrap();
    still_open(&mut socket).await;
    closes_within(&mut socket, Duration::from_secs(3), "websocket_max_lifetime").await;
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "not before its time"
    );
}
