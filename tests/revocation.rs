//! Every end of a session revokes its refresh token at the real IdP, also
//! the ends made without its cookie (LO-11, LO-12, T31): the admin API,
//! `DELETE /auth/sessions/{id}`, back-channel logout, the per-user bound
//! and the timeouts. The revocation queue retries while the IdP is down
//! (LO-05), survives a replica's restart on Redis, stays bounded, and
//! never holds up the request that ended the session.
//!
//! What proves a revocation is the IdP itself: its introspection says the
//! session's refresh token is no longer active, and a refresh grant with
//! it is refused with `invalid_grant`. The IdP's outages are its own
//! (`/__outage`): it keeps its grants meanwhile, as a real one would.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::idp::{world_with, world_with_clock, World};
use support::redis::RedisServer;
use support::wait::{poll, until};
use support::{client, App, Browser};

const ADMIN_TOKEN: &str = "an-admin-token-of-forty-characters-000000";
/// Time enough for a revocation the worker is woken for, or retries.
const LIMIT: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_millis(100);

/// Logs `user` in from a browser of its own (its own IdP session, so its
/// own grant); the browser and the refresh token its session holds.
async fn login(w: &World, user: &str) -> (Browser, String) {
    let before = w.idp.refresh_tokens().await;
    let browser = Browser::new(&w.base);
    let (page, _) = browser
        .navigate(&w.url("/auth/login?return_to=/app/home"), user)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let new: Vec<String> = w
        .idp
        .refresh_tokens()
        .await
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    assert_eq!(new.len(), 1, "one refresh token per login");
    assert!(w.idp.active(&new[0]).await, "active once issued");
    (browser, new[0].clone())
}

/// Waits until the IdP holds `token` revoked, and checks it refuses it.
async fn revoked(w: &World, token: &str, what: &str) {
    until(LIMIT, EVERY, &format!("{what}: still active"), async || {
        !w.idp.active(token).await
    })
    .await;
    assert_eq!(
        w.idp.refresh_error(token).await.as_deref(),
        Some("invalid_grant"),
        "{what}"
    );
}

/// The value of the `series` line of `app`'s `/metrics`; 0 if absent.
async fn metric(app: &App, series: &str) -> u64 {
    let text = client()
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

const DONE: &str = "cloakroom_revocations_total{outcome=\"done\"}";
const FAILED: &str = "cloakroom_revocations_total{outcome=\"failed\"}";
const DROPPED: &str = "cloakroom_revocations_total{outcome=\"dropped\"}";
const QUEUE_LENGTH: &str = "cloakroom_revocation_queue_length";

async fn admin_end(app: &App, sub: &str) -> Value {
    let response = client()
        .delete(format!("http://{}/admin/sessions?sub={sub}", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn admin() -> String {
    format!("admin: {{api_token: '{ADMIN_TOKEN}'}}")
}

fn redis_store(redis: &RedisServer) -> String {
    format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url())
}

/// `DELETE /auth/sessions/{id}` of the browser's `n`th session (oldest
/// first), as the SPA sends it; the status.
async fn end_listed(w: &World, browser: &Browser, n: usize) -> u16 {
    let listing = browser.fetch(&w.url("/auth/sessions")).await.json();
    let id = listing["sessions"][n]["id"].as_str().unwrap().to_owned();
    let headers = [("x-csrf", "1"), ("origin", w.base.as_str())];
    let url = w.url(&format!("/auth/sessions/{id}"));
    browser
        .send(reqwest::Method::DELETE, &url, &headers, None)
        .await
        .status
}

// === every way a session ends ===

#[tokio::test]
async fn lo12_the_admin_api_revokes_the_refresh_tokens_of_the_sessions_it_ends() {
    let w = world_with(&admin(), json!({}), 1).await;
    let (_, first) = login(&w, "alice").await;
    let (_, second) = login(&w, "alice").await;
    let (_, bobs) = login(&w, "bob").await;
    assert_eq!(admin_end(&w.app, "alice").await, json!({"ended": 2}));
    revoked(&w, &first, "alice's first session").await;
    revoked(&w, &second, "alice's second session").await;
    assert!(w.idp.active(&bobs).await, "only the subject's");
    assert_eq!(metric(&w.app, DONE).await, 2);
}

#[tokio::test]
async fn t31_a_session_ended_from_another_one_has_its_refresh_token_revoked() {
    let w = world_with("", json!({}), 1).await;
    let (laptop, laptops) = login(&w, "alice").await;
    let (phone, phones) = login(&w, "alice").await;
    assert_eq!(end_listed(&w, &laptop, 1).await, 204);
    assert_eq!(phone.fetch(&w.url("/auth/user")).await.status, 401);
    revoked(&w, &phones, "the phone's session").await;
    assert!(w.idp.active(&laptops).await, "the laptop's lives on");
}

#[tokio::test]
async fn lo06_a_back_channel_logout_revokes_the_refresh_token() {
    let w = world_with("", json!({"backchannel_logout": true}), 1).await;
    let (browser, token) = login(&w, "alice").await;
    let (_, bobs) = login(&w, "bob").await;
    // Signing out at the IdP keeps an offline_access grant alive there:
    // only cloakroom's revocation ends it.
    w.logout_at_idp(&browser).await;
    assert_eq!(w.idp.stats().await["backchannel"]["success"], 1);
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 401);
    revoked(&w, &token, "the session the IdP logged out").await;
    assert!(w.idp.active(&bobs).await);
}

#[tokio::test]
async fn the_per_user_bound_revokes_the_session_it_pushes_out() {
    let w = world_with("session: {max_per_user: 1}", json!({}), 1).await;
    let (older, olders) = login(&w, "alice").await;
    let (newer, newers) = login(&w, "alice").await;
    assert_eq!(older.fetch(&w.url("/auth/user")).await.status, 401);
    assert_eq!(newer.fetch(&w.url("/auth/user")).await.status, 200);
    revoked(&w, &olders, "the session pushed out").await;
    assert!(w.idp.active(&newers).await);
}

#[tokio::test]
async fn lo11_idle_and_absolute_timeouts_revoke_the_refresh_token() {
    let clock = cloakroom::Clock::manual();
    let extra = "session: {idle_timeout: 30m, absolute_timeout: 1h}";
    let w = world_with_clock(extra, json!({}), 1, clock.clone()).await;
    let (idle, idles) = login(&w, "alice").await;
    let (busy, busys) = login(&w, "bob").await;
    // Bob stays active (`/auth/user` refreshes no token); alice does not.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(busy.fetch(&w.url("/auth/user")).await.status, 200);
    }
    clock.advance(Duration::from_secs(21 * 60));
    // Past the absolute timeout: ended before its record is read.
    assert_eq!(busy.fetch(&w.url("/auth/user")).await.status, 401);
    revoked(&w, &busys, "absolute timeout").await;
    // Past the idle timeout: ended as its record is read.
    assert_eq!(idle.fetch(&w.url("/auth/user")).await.status, 401);
    revoked(&w, &idles, "idle timeout").await;
}

#[tokio::test]
async fn lo01_logout_revokes_through_the_same_queue() {
    let w = world_with("", json!({}), 1).await;
    let (browser, token) = login(&w, "alice").await;
    assert_eq!(w.logout(&browser).await.status, 200);
    revoked(&w, &token, "logout").await;
    assert_eq!(metric(&w.app, DONE).await, 1);
}

// === the queue ===

#[tokio::test]
async fn lo05_an_idp_down_at_the_end_is_asked_again_until_it_revokes() {
    let w = world_with(&admin(), json!({}), 1).await;
    let (browser, token) = login(&w, "alice").await;
    w.idp.outage("down").await;
    assert_eq!(admin_end(&w.app, "alice").await, json!({"ended": 1}));
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 401);
    // Tried, and tried again after its backoff.
    until(LIMIT, EVERY, "retried", async || {
        metric(&w.app, FAILED).await >= 2
    })
    .await;
    assert_eq!(metric(&w.app, DONE).await, 0);
    assert_eq!(metric(&w.app, QUEUE_LENGTH).await, 1);
    w.idp.outage("up").await;
    revoked(&w, &token, "after the outage").await;
    until(LIMIT, EVERY, "done", async || metric(&w.app, DONE).await == 1).await;
    assert_eq!(metric(&w.app, QUEUE_LENGTH).await, 0);
}

#[tokio::test]
async fn a_queued_revocation_survives_its_replicas_restart() {
    let redis = RedisServer::start();
    let extra = format!("{}\n{}", redis_store(&redis), admin());
    let w = world_with(&extra, json!({}), 1).await;
    let (_, token) = login(&w, "alice").await;
    w.idp.outage("down").await;
    assert_eq!(admin_end(&w.app, "alice").await, json!({"ended": 1}));
    until(LIMIT, EVERY, "tried", async || metric(&w.app, FAILED).await >= 1).await;

    // The replica stops with the revocation undone; a new one starts on
    // the same Redis, and the IdP comes back.
    let World {
        idp, app, yaml, up, ..
    } = w;
    app.shutdown().await;
    let next = App::bind().await.start(&yaml);
    idp.outage("up").await;
    until(LIMIT, EVERY, "revoked by the new replica", async || {
        !idp.active(&token).await
    })
    .await;
    assert_eq!(idp.refresh_error(&token).await.as_deref(), Some("invalid_grant"));
    until(LIMIT, EVERY, "counted there", async || {
        metric(&next, DONE).await == 1
    })
    .await;
    drop(up);
}

#[tokio::test]
async fn the_queue_is_bounded_and_drops_its_oldest() {
    let extra = format!("session: {{revocation_queue_max: 2}}\n{}", admin());
    let w = world_with(&extra, json!({}), 1).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(login(&w, "alice").await.1);
    }
    w.idp.outage("down").await;
    // Ended oldest first: the first session's revocation is pushed out.
    assert_eq!(admin_end(&w.app, "alice").await, json!({"ended": 3}));
    assert_eq!(metric(&w.app, DROPPED).await, 1);
    assert_eq!(metric(&w.app, QUEUE_LENGTH).await, 2);
    w.idp.outage("up").await;
    revoked(&w, &tokens[1], "the second session").await;
    revoked(&w, &tokens[2], "the third session").await;
    assert!(w.idp.active(&tokens[0]).await, "dropped: never revoked");
}

#[tokio::test]
async fn ending_a_session_answers_while_the_idp_hangs() {
    let w = world_with(&admin(), json!({}), 1).await;
    let (laptop, laptops) = login(&w, "alice").await;
    let (_, phones) = login(&w, "alice").await;
    let (_, bobs) = login(&w, "bob").await;
    w.idp.outage("hang").await;
    // Each answers while the IdP answers nothing at all.
    assert_eq!(end_listed(&w, &laptop, 1).await, 204);
    assert_eq!(w.logout(&laptop).await.status, 200);
    assert_eq!(admin_end(&w.app, "bob").await, json!({"ended": 1}));
    // The revocations were sent, and are still waiting at the IdP: the
    // answers above did not wait for them.
    let held = poll(
        LIMIT,
        EVERY,
        async || w.idp.stats().await["held"].clone(),
        |h| h.as_u64() >= Some(1),
    )
    .await;
    assert!(held.as_u64() >= Some(1), "{held}");
    w.idp.outage("up").await;
    for (token, what) in [(&phones, "the phone"), (&laptops, "the laptop"), (&bobs, "bob")] {
        revoked(&w, token, what).await;
    }
}
