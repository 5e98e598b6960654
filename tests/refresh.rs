//! Refresh with rotation against the real IdP (5-second access tokens,
//! rotating refresh tokens), in one replica and across three sharing Redis.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::idp::{world_with, world_with_clock, World};
use support::redis::RedisServer;
use support::wait::until;
use support::{echoed, Browser};

/// Access tokens live 5 s; cloakroom refreshes when less than 2 s are left.
async fn short_lived(replicas: usize, redis: Option<&RedisServer>) -> World {
    let store = redis.map_or(String::new(), |r| {
        format!("store: {{redis: {{url: '{}'}}}}, ", r.url())
    });
    let extra = format!("session: {{{store}refresh_skew: 2s}}");
    world_with(
        &extra,
        json!({"access_token_ttl": 5, "rotate_refresh": true}),
        replicas,
    )
    .await
}

async fn bearer(browser: &Browser, base: &str) -> (u16, Option<String>) {
    let page = browser.fetch(&format!("{base}/api/orders")).await;
    if page.status != 200 {
        return (page.status, Some(page.body));
    }
    let seen = page.json();
    (page.status, echoed(&seen, "authorization"))
}

/// How far to move cloakroom's clock for a 5 s token refreshed 2 s before
/// its expiry to be due: half a second past its refresh point, a second
/// and a half before it expires.
const DUE: Duration = Duration::from_millis(3500);

/// Waits until the IdP has received `n` token requests: a call it holds
/// has arrived.
async fn until_token_requests(w: &World, n: u64) {
    let what = format!("the IdP never got {n} token requests");
    until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        &what,
        async || w.idp.stats().await["token_requests"].as_u64() >= Some(n),
    )
    .await;
}

/// Waits until the IdP has granted `n` refreshes; a grant answered late
/// (`"phase": "after"`) is counted before its delay.
async fn until_refresh_granted(w: &World, n: u64) {
    let what = format!("the IdP never granted {n} refreshes");
    until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        &what,
        async || w.idp.stats().await["grants"]["refresh_token"].as_u64() >= Some(n),
    )
    .await;
}

/// [`bearer`] as a task of its own, for a call that will be held up.
fn in_background(browser: &Browser, base: &str) -> tokio::task::JoinHandle<(u16, Option<String>)> {
    let (browser, base) = (browser.clone(), base.to_owned());
    tokio::spawn(async move { bearer(&browser, &base).await })
}

#[tokio::test]
async fn rf01_tokens_refresh_before_expiry_and_the_new_refresh_token_replaces_the_old() {
    let w = short_lived(1, None).await;
    let (browser, _) = w.login("alice").await;
    let (status, first) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200);
    w.clock.advance(DUE);
    let (status, second) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200);
    assert_ne!(first, second, "a new access token after the skew point");
    let (_, third) = bearer(&browser, &w.base).await;
    assert_eq!(second, third, "no second refresh while the new token is fresh");
    w.clock.advance(DUE);
    let (status, fourth) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200, "the rotated refresh token was stored and works");
    assert_ne!(third, fourth);
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 2, "{stats}");
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
}

/// `calls` API calls at once, spread over `bases`: every one must succeed.
/// Returns the distinct access tokens the upstream saw.
async fn burst(browser: &Browser, bases: &[String], calls: usize) -> HashSet<Option<String>> {
    let calls = (0..calls).map(|i| {
        let browser = browser.clone();
        let base = bases[i % bases.len()].clone();
        async move { bearer(&browser, &base).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed, e.g. {:?}",
        failed.len(),
        results.len(),
        failed.first()
    );
    results.into_iter().map(|(_, t)| t).collect()
}

/// Refresh grants the IdP has answered, after asserting none was revoked.
async fn refresh_grants(w: &World) -> u64 {
    let stats = w.idp.stats().await;
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
    stats["grants"]["refresh_token"].as_u64().unwrap_or(0)
}

/// `calls` API calls at once, spread over every replica of `w`, when the
/// access token is due: all succeed with one new token, from exactly one
/// refresh grant, and no grant is revoked.
async fn one_refresh_for_a_burst(w: &World, calls: usize) {
    let (browser, bases) = (w.login_everywhere("alice").await, w.bases());
    let (_, before) = bearer(&browser, &w.base).await;
    w.clock.advance(DUE);
    let tokens = burst(&browser, &bases, calls).await;
    assert_eq!(tokens.len(), 1, "every call carried the same fresh token");
    assert_ne!(tokens.into_iter().next().unwrap(), before);
    assert_eq!(refresh_grants(w).await, 1, "exactly one refresh grant");
}

#[tokio::test]
async fn rf01_rf20_50_parallel_calls_on_one_replica_make_exactly_one_refresh() {
    let w = short_lived(1, None).await;
    one_refresh_for_a_burst(&w, 50).await;
}

#[tokio::test]
async fn rf02_200_parallel_calls_on_3_replicas_make_exactly_one_refresh() {
    let redis = RedisServer::start();
    let w = short_lived(3, Some(&redis)).await;
    one_refresh_for_a_burst(&w, 200).await;
}

#[tokio::test]
async fn rf08_a_revoked_grant_ends_the_session_with_401() {
    let w = short_lived(1, None).await;
    let (browser, _) = w.login("alice").await;
    assert_eq!(bearer(&browser, &w.base).await.0, 200);
    // The user revokes the grant at the IdP (the refresh token is the one
    // issued token that is not a JWT).
    let refresh_token = w
        .idp
        .issued()
        .await
        .into_iter()
        .find(|t| t.matches('.').count() != 2)
        .unwrap();
    let revoked = support::client()
        .post(format!("{}/token/revocation", w.idp.issuer))
        .basic_auth("cloakroom", Some("test-secret"))
        .form(&[
            ("token", refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    w.clock.advance(DUE);
    let page = w.api_get(&browser).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("login_required"));
    assert!(page.clears_a_cookie());
    assert_eq!(
        browser.fetch(&w.url("/auth/user")).await.status,
        401,
        "ended everywhere"
    );
}

#[tokio::test]
async fn rf10_rf11_an_idp_outage_serves_valid_tokens_then_503_and_never_logs_out() {
    // 5-second tokens, refreshed half-way (the 4 s skew is longer than that).
    let mut w = world_with("session: {refresh_skew: 4s}", json!({"access_token_ttl": 5}), 1).await;
    let (browser, _) = w.login("alice").await;
    let (_, token) = bearer(&browser, &w.base).await;
    w.idp.kill();
    w.clock.advance(Duration::from_secs(3));
    // Due for refresh, the IdP is gone, the token is still valid: use it.
    let (status, still) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200, "RF-10");
    assert_eq!(still, token);
    w.clock.advance(Duration::from_secs(3));
    // Expired and the IdP is gone: 503, session kept.
    let page = w.api_get(&browser).await;
    assert_eq!(page.status, 503, "RF-11: {}", page.body);
    assert!(page.body.contains("idp_unavailable"));
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");
    assert_eq!(
        browser.fetch(&w.url("/auth/user")).await.status,
        200,
        "the session is kept"
    );
}

/// A session on `w` (3 replicas' worth of config in Redis) and a second
/// replica as its own process, with the browser's cookie on both.
async fn with_doomed_replica(w: &World) -> (Browser, support::Process) {
    let doomed = support::Process::start(&w.yaml);
    let (browser, _) = w.login("alice").await;
    browser.carry_session(&w.base, &doomed.base);
    (browser, doomed)
}

/// Starts a refresh on `doomed` (the access token is due), kills it once
/// `held` says its token call is held at the IdP, and returns the statuses
/// the surviving replica answers until it gives something other than 503.
async fn kill_mid_refresh(
    w: &World,
    browser: &Browser,
    mut doomed: support::Process,
    held: impl AsyncFnOnce(),
) -> (Vec<u16>, String) {
    let (status, _) = bearer(browser, &w.base).await;
    assert_eq!(status, 200);
    // The doomed replica is a process of its own, on the system clock: its
    // token becomes due in real time.
    tokio::time::sleep(DUE).await;
    let in_flight = {
        let cookie = browser.cookie(&doomed.base, "cloakroom").unwrap();
        let request = support::client()
            .get(format!("{}/api/orders", doomed.base))
            .header("x-csrf", "1")
            .header("cookie", format!("cloakroom={cookie}"));
        tokio::spawn(request.send())
    };
    held().await;
    doomed.kill();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the doomed replica never answered"
    );
    // Past the access token's expiry for the survivor, which judges by
    // `w.clock`: nothing can be served without a refresh.
    w.clock.advance(Duration::from_secs(2));
    // The dead replica's lease runs out within its TTL (15 s); meanwhile
    // the survivor answers 503 refresh_pending, keeping the session.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let page = w.api_get(browser).await;
        seen.push(page.status);
        if page.status != 503 {
            return (seen, page.body);
        }
        assert!(page.body.contains("refresh_pending"), "{}", page.body);
        assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recovered: {seen:?}"
        );
    }
}

#[tokio::test]
async fn rf17_a_replica_killed_before_its_token_call_arrives_costs_a_wait_not_a_login() {
    let redis = RedisServer::start();
    let store = format!("store: {{redis: {{url: '{}'}}}}, ", redis.url());
    let w = world_with(
        &format!("session: {{{store}refresh_skew: 2s}}"),
        // The first refresh is held 3 s, then dropped: its client is gone.
        json!({"access_token_ttl": 5, "token_delay": {"call": 2, "ms": 3000, "phase": "before"}}),
        1,
    )
    .await;
    let (browser, doomed) = with_doomed_replica(&w).await;
    let (_, before) = bearer(&browser, &w.base).await;
    // Its token call (the second, after the login's) has arrived.
    let held = async || until_token_requests(&w, 2).await;
    let (seen, body) = kill_mid_refresh(&w, &browser, doomed, held).await;
    assert_eq!(
        seen.last(),
        Some(&200),
        "the next refresh succeeds: {seen:?} {body}"
    );
    let seen_token = echoed(&serde_json::from_str(&body).unwrap(), "authorization");
    assert_ne!(seen_token, before, "with a new access token");
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
}

#[tokio::test]
async fn rf18_a_replica_killed_after_the_idp_rotated_costs_exactly_one_login() {
    let redis = RedisServer::start();
    let store = format!("store: {{redis: {{url: '{}'}}}}, ", redis.url());
    let w = world_with(
        &format!("session: {{{store}refresh_skew: 2s}}"),
        // The first refresh rotates the token at once; its answer is late.
        json!({"access_token_ttl": 5, "token_delay": {"call": 2, "ms": 3000, "phase": "after"}}),
        1,
    )
    .await;
    let (browser, doomed) = with_doomed_replica(&w).await;
    // The IdP has rotated the refresh token; its answer is late.
    let held = async || until_refresh_granted(&w, 1).await;
    let (seen, body) = kill_mid_refresh(&w, &browser, doomed, held).await;
    // The stored refresh token was spent by the dead replica: the IdP sees
    // it reused and ends the grant. Without an IdP grace period that is one
    // 401 login_required, the cookie cleared, never a loop.
    assert_eq!(seen.last(), Some(&401), "{seen:?}");
    assert!(body.contains("login_required"), "{body}");
    let stats = w.idp.stats().await;
    assert_eq!(stats["revoked"], 1, "{stats}");
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "signing in again works");
    assert_eq!(bearer(&browser, &w.base).await.0, 200);
}

#[tokio::test]
async fn rf04_rf05_waiters_get_503_refresh_pending_while_the_holder_is_stuck_then_its_tokens() {
    let redis = RedisServer::start();
    let w = world_with(
        &format!(
            "session: {{store: {{redis: {{url: '{}'}}}}, refresh_skew: 2s}}",
            redis.url()
        ),
        // The first refresh is answered 9 s late (the grant is spent at once).
        json!({"access_token_ttl": 5, "token_delay": {"call": 2, "ms": 9000, "phase": "after"}}),
        2,
    )
    .await;
    let browser = w.login_everywhere("alice").await;
    let other = w.others[0].0.clone();
    let (_, before) = bearer(&browser, &w.base).await;
    w.clock.advance(DUE);
    let holder = in_background(&browser, &w.base);
    // The holder has the lease and the IdP has spent the grant; its answer
    // is late. Once the access token has expired, the other replica waits
    // for the lease for its obtain timeout (5 s), then answers 503 and
    // keeps the session.
    until_refresh_granted(&w, 1).await;
    w.clock.advance(Duration::from_secs(2));
    let page = browser.fetch(&format!("{other}/api/orders")).await;
    assert_eq!(page.status, 503, "RF-05: {}", page.body);
    assert!(page.body.contains("refresh_pending"), "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");

    let (status, fresh) = holder.await.unwrap();
    assert_eq!(status, 200);
    assert_ne!(fresh, before);
    // RF-04: the waiter's replica re-reads and takes the holder's tokens.
    assert_eq!(bearer(&browser, &other).await, (200, fresh));
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
    assert_eq!(stats["revoked"], 0, "{stats}");
}

#[tokio::test]
async fn rf15_a_logout_during_a_refresh_is_final_and_its_new_refresh_token_is_dead() {
    let w = world_with(
        "session: {refresh_skew: 2s}",
        json!({"access_token_ttl": 5, "token_delay": {"call": 2, "ms": 3000, "phase": "after"}}),
        1,
    )
    .await;
    let (browser, _) = w.login("alice").await;
    w.clock.advance(DUE);
    let refreshing = in_background(&browser, &w.base);
    // The IdP has spent the grant; its answer is late.
    until_refresh_granted(&w, 1).await;
    let logout = w.logout(&browser).await;
    assert_eq!(logout.status, 200, "{}", logout.body);

    let (status, _) = refreshing.await.unwrap();
    assert_eq!(status, 401, "the refresh finished after the logout: no tokens");
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 401, "the session was not written back");
    // Two revocations: the logout's, and the refresh token the late answer
    // carried, which no session holds any more.
    let stats = w.idp.stats_when(|s| s["revocation_requests"] == 2).await;
    assert_eq!(stats["revocation_requests"], 2, "{stats}");
    // (This IdP ends the whole grant on a revocation, so neither token works.)
    let newest_refresh_token = w
        .idp
        .issued()
        .await
        .into_iter()
        .rev()
        .find(|t| t.matches('.').count() != 2)
        .unwrap();
    let reuse = support::client()
        .post(format!("{}/token", w.idp.issuer))
        .basic_auth("cloakroom", Some("test-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", newest_refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 400);
    assert!(reuse.text().await.unwrap().contains("invalid_grant"));
}

#[tokio::test]
async fn rf06_a_refresh_that_lost_its_lease_does_not_overwrite_the_winner() {
    let redis = RedisServer::start();
    // cloakroom's clock stands still but for the advance below: the
    // winner's token does not age while the slow answer is awaited.
    let w = world_with_clock(
        &format!(
            "session: {{store: {{redis: {{url: '{}'}}}}, refresh_skew: 2s}}",
            redis.url()
        ),
        // Reusable refresh tokens, so both refreshes succeed at the IdP;
        // the first is answered 3 s late.
        json!({"access_token_ttl": 5, "rotate_refresh": false,
               "token_delay": {"call": 2, "ms": 3000, "phase": "after"}}),
        2,
        cloakroom::Clock::manual(),
    )
    .await;
    let browser = w.login_everywhere("alice").await;
    let other = w.others[0].0.clone();
    w.clock.advance(DUE);
    let slow = in_background(&browser, &w.base);
    // The slow writer holds the lease and the IdP has granted its refresh.
    until_refresh_granted(&w, 1).await;
    // The slow writer's lease vanishes (a failover that lost it).
    let locks = redis.cli(&["--scan", "--pattern", "cloakroom:*:lock"]);
    let lock = locks.trim();
    assert!(!lock.is_empty() && !lock.contains('\n'), "one lease: {locks:?}");
    assert_eq!(redis.cli(&["DEL", lock]).trim(), "1");
    // The other replica refreshes and commits first.
    let (status, winner) = bearer(&browser, &other).await;
    assert_eq!(status, 200);
    // The slow writer's compare-and-set fails; it keeps the winner's tokens.
    assert_eq!(slow.await.unwrap(), (200, winner.clone()));
    assert_eq!(bearer(&browser, &w.base).await, (200, winner.clone()));
    assert_eq!(bearer(&browser, &other).await, (200, winner));
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 2, "{stats}");
}

#[tokio::test]
async fn rf19_a_late_answer_to_a_token_call_is_waited_for_never_retried_and_its_tokens_kept() {
    let w = world_with(
        "session: {refresh_skew: 2s}",
        // The first refresh is granted at once and answered 17 s later:
        // past the 15 s a caller waits, within the 60 s a token call may
        // take. The IdP has rotated the refresh token meanwhile.
        json!({"access_token_ttl": 5, "rotate_refresh": true,
               "token_delay": {"call": 2, "ms": 17000, "phase": "after"}}),
        1,
    )
    .await;
    let (browser, _) = w.login("alice").await;
    let (_, first) = bearer(&browser, &w.base).await;
    w.clock.advance(DUE);
    let page = w.api_get(&browser).await;
    // The caller stops waiting: 503, session kept, never the expired token.
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("refresh_pending"), "{}", page.body);
    assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");
    // The flight does not: once the answer lands, its tokens serve.
    let what = "the refreshed token never served";
    let mut next = None;
    until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        what,
        async || {
            let (status, seen) = bearer(&browser, &w.base).await;
            assert_ne!(status, 401, "the session must survive a late answer: {seen:?}");
            next = seen.filter(|_| status == 200);
            next.is_some()
        },
    )
    .await;
    assert_ne!(next, first, "the rotated grant's token");
    let stats = w.idp.stats().await;
    assert_eq!(
        stats["token_requests"], 2,
        "the code exchange and one refresh, never a blind retry: {stats}"
    );
}

#[tokio::test]
async fn rf10_a_slow_idp_holds_a_request_with_a_valid_token_briefly_and_the_refresh_lands_later() {
    // 15-second tokens, refreshed when less than 7 s are left (half their
    // life, before the 10 s skew); the first refresh is answered after 4 s.
    let w = world_with(
        "session: {refresh_skew: 10s}",
        json!({"access_token_ttl": 15, "token_delay": {"call": 2, "ms": 4000, "phase": "after"}}),
        1,
    )
    .await;
    let (browser, _) = w.login("alice").await;
    let (_, first) = bearer(&browser, &w.base).await;
    w.clock.advance(Duration::from_secs(8));
    // Due, and still valid for longer than the IdP takes: served with the
    // current token instead of waiting for the slow answer.
    assert_eq!(bearer(&browser, &w.base).await, (200, first.clone()));
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (status, next) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200);
    assert_ne!(next, first, "the refresh finished in the background");
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
}

#[tokio::test]
async fn rd07_a_failover_that_loses_a_rotated_refresh_token_costs_one_login_not_a_loop() {
    let redis = RedisServer::start();
    let w = short_lived(1, Some(&redis)).await;
    let (browser, _) = w.login("alice").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut db = client.get_multiplexed_async_connection().await.unwrap();
    let key = redis
        .cli(&["--scan", "--pattern", "cloakroom:*:s"])
        .trim()
        .to_owned();
    let before_refresh: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(&mut db).await.unwrap();

    w.clock.advance(DUE);
    assert_eq!(
        bearer(&browser, &w.base).await.0,
        200,
        "refreshed: the token rotated"
    );
    // A failover to a replica that never got the refresh's write.
    let _: () = redis::cmd("RESTORE")
        .arg(&key)
        .arg(60_000)
        .arg(before_refresh)
        .arg("REPLACE")
        .query_async(&mut db)
        .await
        .unwrap();

    // The stored refresh token is spent: one 401, the cookie cleared.
    let page = w.api_get(&browser).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("login_required"));
    assert!(page.clears_a_cookie());
    let stats = w.idp.stats().await;
    assert_eq!(
        stats["token_requests"], 3,
        "login, refresh, one failed refresh: {stats}"
    );
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "signing in again works");
    assert_eq!(bearer(&browser, &w.base).await.0, 200);
}

/// With `lifetime`-second access tokens and the default 60 s skew, three
/// replicas on one Redis: a token just obtained is served by every replica,
/// and each expiry costs exactly one refresh grant, however many calls
/// arrive at once. cloakroom's clock stands still between the steps, so
/// however long a burst takes, no token ages during it.
async fn one_grant_per_expiry(lifetime: u64) {
    let redis = RedisServer::start();
    let w = world_with_clock(
        &format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url()),
        json!({"access_token_ttl": lifetime, "rotate_refresh": true}),
        3,
        cloakroom::Clock::manual(),
    )
    .await;
    let (browser, bases) = (w.login_everywhere("alice").await, w.bases());
    let mut current = burst(&browser, &bases, 200).await;
    assert_eq!(current.len(), 1);
    assert_eq!(
        refresh_grants(&w).await,
        0,
        "the token from the login is served as it is"
    );
    for expiry in 1..=2 {
        w.clock.advance(Duration::from_secs(lifetime + 1));
        let renewed = burst(&browser, &bases, 200).await;
        assert_eq!(renewed.len(), 1, "every call carried the same new token");
        assert_ne!(renewed, current, "expiry {expiry}: a new token");
        assert_eq!(refresh_grants(&w).await, expiry, "one grant for expiry {expiry}");
        // Right after the refresh, every replica serves the new token as it is.
        assert_eq!(burst(&browser, &bases, 200).await, renewed);
        assert_eq!(
            refresh_grants(&w).await,
            expiry,
            "no second grant for expiry {expiry}"
        );
        current = renewed;
    }
}

#[tokio::test]
async fn rf21_2s_tokens_are_refreshed_once_per_expiry_across_3_replicas() {
    one_grant_per_expiry(2).await;
}

#[tokio::test]
async fn rf21_5s_tokens_are_refreshed_once_per_expiry_across_3_replicas() {
    one_grant_per_expiry(5).await;
}

#[tokio::test]
async fn rf21_30s_tokens_are_refreshed_once_per_expiry_across_3_replicas() {
    one_grant_per_expiry(30).await;
}

#[tokio::test]
async fn rf21_300s_tokens_are_refreshed_once_per_expiry_across_3_replicas() {
    one_grant_per_expiry(300).await;
}

#[tokio::test]
async fn rf22_a_steady_50_calls_per_second_refresh_once_per_token_not_once_per_call() {
    let redis = RedisServer::start();
    let w = world_with(
        &format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url()),
        json!({"access_token_ttl": 5, "rotate_refresh": true}),
        3,
    )
    .await;
    let (browser, bases) = (w.login_everywhere("alice").await, w.bases());
    // A call every 20 ms for 6 s; cloakroom's clock runs six times as fast
    // (each tick also moves it 100 ms on), so the calls span 36 s of token
    // life: seven 5 s tokens and more.
    let run_for = Duration::from_secs(6);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (started, clock_started) = (Instant::now(), w.clock.now_ms());
    let mut calls = Vec::new();
    while started.elapsed() < run_for {
        tick.tick().await;
        w.clock.advance(Duration::from_millis(100));
        let (browser, base) = (browser.clone(), bases[calls.len() % bases.len()].clone());
        calls.push(tokio::spawn(async move { bearer(&browser, &base).await }));
    }
    let mut tokens = HashSet::new();
    let total = calls.len();
    for call in calls {
        let (status, token) = call.await.unwrap();
        assert_eq!(status, 200, "{token:?}");
        tokens.insert(token);
    }
    let token_life = (w.clock.now_ms() - clock_started) / 1000;
    let grants = refresh_grants(&w).await;
    assert_eq!(
        grants as usize,
        tokens.len() - 1,
        "each grant's token was used, and no token was refreshed twice"
    );
    // 5 s tokens are renewed half-way through their life, 2.5 s after they
    // arrive: one grant per token, not one per call.
    assert!(
        (token_life / 5..=token_life / 2 + 1).contains(&grants),
        "{grants} refresh grants for {total} calls in {token_life} s of token life"
    );
}
