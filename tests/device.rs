//! Device-bound sessions (DBSC, DB-01 to DB-10 in docs/threat-model.md): a session bound to a browser's key
//! needs the short-lived bound cookie, which only a proof of that key
//! renews; a copied session cookie alone is refused within the bound
//! cookie's lifetime, and counted, never a logout. Driven by a DBSC client
//! written from the specification (`support::dbsc`), across two replicas
//! sharing Redis, each judging time by one manual clock.

mod support;

use std::time::Duration;

use serde_json::json;
use support::dbsc::{self, DbscSession, DeviceKey, Offer};
use support::idp::{world_with_clock, World};
use support::redis::RedisServer;
use support::{Browser, SESSION_COOKIE};

const BOUND_COOKIE: &str = "cloakroom-bound";
const ANOMALY: &str = "cloakroom_anomalies_total{kind=\"session_cookie_without_device\"}";
const PROOF_REFUSED: &str = "cloakroom_anomalies_total{kind=\"device_proof_refused\"}";

/// Two replicas on one Redis, `extra` config added, one manual clock.
async fn world(redis: &RedisServer, extra: &str) -> World {
    let store = format!("session: {{store: {{redis: {{url: '{}'}}}}{extra}}}", redis.url());
    world_with_clock(&store, json!({}), 2, cloakroom::Clock::manual()).await
}

fn event(name: &str) -> String {
    format!("cloakroom_device_sessions_total{{event=\"{name}\"}}")
}

/// Logs `user` in on the first replica (the browser carries the session
/// to the second too); the offer `GET /auth/user` made.
async fn login(w: &World, user: &str) -> (Browser, Offer) {
    let browser = w.login_everywhere(user).await;
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 200, "{}", user.body);
    let offer = dbsc::offer(&user).expect("an unbound session is offered to bind");
    (browser, offer)
}

/// Logs in and binds the session to a new key of `key`'s kind.
async fn bound(w: &World, user: &str, key: DeviceKey) -> (Browser, DbscSession) {
    let (browser, offer) = login(w, user).await;
    let (page, session) = dbsc::register(&browser, &w.base, &offer, key).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let session = session.unwrap();
    for (base, _) in &w.others {
        let value = browser.cookie(&w.base, BOUND_COOKIE).unwrap();
        browser.set_cookie(base, BOUND_COOKIE, &value);
    }
    (browser, session)
}

/// `GET /api/orders` on `base`, as the SPA sends it.
async fn api(browser: &Browser, base: &str) -> support::Page {
    browser.fetch(&format!("{base}/api/orders")).await
}

/// A browser that holds `from`'s session cookie and nothing else: a copy
/// of the cookie jar's session cookie, used on another machine.
fn copied(w: &World, from: &Browser) -> Browser {
    let thief = Browser::new(&w.base);
    thief.set_cookie(
        &w.base,
        SESSION_COOKIE,
        &from.cookie(&w.base, SESSION_COOKIE).unwrap(),
    );
    thief
}

#[tokio::test]
async fn db01_registration_binds_the_session_and_every_replica_asks_for_the_bound_cookie() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;

    // The login's own answer offers it, with a challenge of its own.
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let landed = browser.get(&callback, &[]).await;
    assert_eq!(landed.status, 302);
    let at_login = dbsc::offer(&landed).expect("the login's answer offers binding");
    assert_eq!(at_login.algorithms, ["ES256", "RS256"]);
    assert_eq!(at_login.path, "/auth/device/register");

    let (browser, session) = bound(&w, "alice", DeviceKey::es256()).await;
    let instructions = &session.instructions;
    assert_eq!(instructions["refresh_url"], "/auth/device/refresh");
    assert_eq!(
        instructions["scope"],
        json!({"origin": w.base, "include_site": false})
    );
    assert_eq!(
        instructions["credentials"],
        json!([{"type": "cookie", "name": BOUND_COOKIE, "attributes": "Path=/; HttpOnly; SameSite=Strict"}])
    );
    assert!(instructions.get("continue").is_none());
    assert_eq!(w.counted(&event("registered")).await, 1);

    // Bound: both replicas serve it, and offer nothing more.
    for base in w.bases() {
        assert_eq!(api(&browser, &base).await.status, 200, "{base}");
        let user = browser.fetch(&format!("{base}/auth/user")).await;
        assert!(
            dbsc::offer(&user).is_none(),
            "{base}: a bound session is not offered again"
        );
    }
    // A second registration of the same session, even with a fresh
    // challenge, is refused: it stays bound to its first key.
    let (page, _) = dbsc::register(&browser, &w.base, &at_login, DeviceKey::es256()).await;
    assert_eq!(page.status, 400, "{}", page.body);
}

#[tokio::test]
async fn db10_a_login_back_from_another_site_is_offered_at_its_first_user_call() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;

    // Back from an IdP on another site, the browser would post the
    // registration without the SameSite session cookie: no offer there.
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let landed = browser.get(&callback, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(landed.status, 302);
    assert!(dbsc::offer(&landed).is_none(), "{:?}", landed.headers);
    // The SPA's first call, from its own origin, gets the offer.
    let user = browser
        .get(
            &w.url("/auth/user"),
            &[("x-csrf", "1"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert!(dbsc::offer(&user).is_some(), "{:?}", user.headers);

    // Back from an IdP on the same site, the login's answer offers.
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "bob").await;
    let landed = browser.get(&callback, &[("sec-fetch-site", "same-site")]).await;
    assert!(dbsc::offer(&landed).is_some(), "{:?}", landed.headers);
    assert_eq!(w.counted(&event("offered")).await, 2);
}

#[tokio::test]
async fn db02_a_copied_session_cookie_without_the_device_is_refused_counted_and_no_logout() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, _) = bound(&w, "alice", DeviceKey::es256()).await;
    let (other, _) = bound(&w, "bob", DeviceKey::es256()).await;

    for base in w.bases() {
        let thief = copied(&w, &browser);
        thief.set_cookie(
            &base,
            SESSION_COOKIE,
            &browser.cookie(&w.base, SESSION_COOKIE).unwrap(),
        );
        let refused = api(&thief, &base).await;
        assert_eq!(refused.status, 401, "{base}: {}", refused.body);
        assert_eq!(refused.json()["code"], "device_proof_required");
        assert!(
            !refused.clears_a_cookie(),
            "never a logout: {:?}",
            refused.headers
        );
        let user = thief.fetch(&format!("{base}/auth/user")).await;
        assert_eq!(user.json()["code"], "device_proof_required", "{base}");
        // A bound cookie of another session does not do either.
        thief.set_cookie(&base, BOUND_COOKIE, &other.cookie(&w.base, BOUND_COOKIE).unwrap());
        assert_eq!(api(&thief, &base).await.status, 401, "{base}: bob's bound cookie");
    }
    assert_eq!(w.counted(ANOMALY).await, 6);
    // The user's own browser goes on.
    assert_eq!(api(&browser, &w.base).await.status, 200);
    assert_eq!(
        w.counted(&format!(
            "{}{{reason=\"logout\"}}",
            "cloakroom_sessions_ended_total"
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn db03_the_bound_cookie_expires_and_a_refresh_on_the_other_replica_renews_it() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, mut session) = bound(&w, "alice", DeviceKey::es256()).await;
    let thief = copied(&w, &browser);
    thief.set_cookie(
        &w.base,
        BOUND_COOKIE,
        &browser.cookie(&w.base, BOUND_COOKIE).unwrap(),
    );
    assert_eq!(
        api(&thief, &w.base).await.status,
        200,
        "a full copy works while fresh"
    );

    w.clock.advance(Duration::from_secs(601));
    assert_eq!(
        api(&browser, &w.base).await.json()["code"],
        "device_proof_required"
    );
    assert_eq!(api(&thief, &w.base).await.json()["code"], "device_proof_required");

    // The browser refreshes on the second replica: 403 with a challenge,
    // then its proof.
    let other = w.others[0].0.clone();
    browser.set_cookie(
        &other,
        SESSION_COOKIE,
        &browser.cookie(&w.base, SESSION_COOKIE).unwrap(),
    );
    let renewed = session.refresh(&browser, &other).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_eq!(renewed.json()["session_identifier"], session.id);
    assert!(
        session.cached_challenge.is_some(),
        "the next challenge comes with it"
    );
    assert_eq!(w.counted(&event("challenged")).await, 1);
    let fresh = browser.cookie(&other, BOUND_COOKIE).unwrap();
    browser.set_cookie(&w.base, BOUND_COOKIE, &fresh);
    for base in w.bases() {
        assert_eq!(api(&browser, &base).await.status, 200, "{base}");
    }
    // The thief's copy stays stale: it cannot sign.
    let stolen_refresh = thief
        .send(
            reqwest::Method::POST,
            &w.url("/auth/device/refresh"),
            &[("sec-secure-session-id", &dbsc::sf_string(&session.id))],
            None,
        )
        .await;
    assert_eq!(stolen_refresh.status, 403);
    assert_eq!(api(&thief, &w.base).await.status, 401);

    // The next refresh signs the cached challenge: one request.
    w.clock.advance(Duration::from_secs(601));
    let again = session.refresh(&browser, &w.base).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(w.counted(&event("challenged")).await, 2, "one for the thief");
    assert_eq!(w.counted(&event("refreshed")).await, 2);
    assert_eq!(api(&browser, &w.base).await.status, 200);
}

#[tokio::test]
async fn db04_a_replayed_or_foreign_proof_is_refused_and_counted() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, mut session) = bound(&w, "alice", DeviceKey::es256()).await;
    let first = session.refresh(&browser, &w.base).await;
    assert_eq!(first.status, 200);

    // A proof seen once (on the wire, in a log) is worth nothing again,
    // on either replica.
    let challenge = session.cached_challenge.clone().unwrap();
    let proof = dbsc::sf_string(&session.key.proof(&challenge, false));
    let id = dbsc::sf_string(&session.id);
    let headers = [
        ("sec-secure-session-id", id.as_str()),
        ("secure-session-response", proof.as_str()),
    ];
    let url = w.url("/auth/device/refresh");
    assert_eq!(
        browser
            .send(reqwest::Method::POST, &url, &headers, None)
            .await
            .status,
        200
    );
    let other = format!("{}/auth/device/refresh", w.others[0].0);
    browser.set_cookie(
        &w.others[0].0,
        SESSION_COOKIE,
        &browser.cookie(&w.base, SESSION_COOKIE).unwrap(),
    );
    let replayed = browser.send(reqwest::Method::POST, &other, &headers, None).await;
    assert_eq!(replayed.status, 403, "{}", replayed.body);
    assert!(
        replayed.headers.get("set-cookie").is_none(),
        "no bound cookie for a replay"
    );
    assert_eq!(w.counted(PROOF_REFUSED).await, 1);

    // Another key's signature over a fresh challenge of this session.
    let fresh = dbsc::challenge(&replayed, &session.id).unwrap();
    let forged = dbsc::sf_string(&DeviceKey::es256().proof(&fresh, false));
    let headers = [
        ("sec-secure-session-id", id.as_str()),
        ("secure-session-response", forged.as_str()),
    ];
    let refused = browser.send(reqwest::Method::POST, &url, &headers, None).await;
    assert_eq!(refused.status, 403);
    assert_eq!(w.counted(PROOF_REFUSED).await, 2);
    assert_eq!(w.counted(&event("refused")).await, 2);

    // A registration proof over a challenge of another session.
    let (carol, carol_offer) = login(&w, "carol").await;
    let (_, dave_offer) = login(&w, "dave").await;
    let foreign = Offer {
        challenge: dave_offer.challenge,
        ..carol_offer
    };
    let (page, _) = dbsc::register(&carol, &w.base, &foreign, DeviceKey::es256()).await;
    assert_eq!(page.status, 400);
    assert_eq!(w.counted(PROOF_REFUSED).await, 3);
}

#[tokio::test]
async fn db05_an_rsa_key_binds_as_well() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, mut session) = bound(&w, "alice", DeviceKey::rs256()).await;
    assert_eq!(api(&browser, &w.base).await.status, 200);
    w.clock.advance(Duration::from_secs(601));
    assert_eq!(session.refresh(&browser, &w.base).await.status, 200);
    assert_eq!(api(&browser, &w.base).await.status, 200);
}

#[tokio::test]
async fn db06_logout_ends_the_bound_session_at_its_next_refresh() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, mut session) = bound(&w, "alice", DeviceKey::es256()).await;
    let session_cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    let out = w.logout(&browser).await;
    assert_eq!(out.status, 200);
    assert!(
        browser.cookie(&w.base, BOUND_COOKIE).is_none(),
        "cleared with the session cookie"
    );

    // A browser that kept both (or a copy of them) hears the session is over.
    browser.set_cookie(&w.base, SESSION_COOKIE, &session_cookie);
    let ended = session.refresh(&browser, &w.base).await;
    assert_eq!(ended.status, 200);
    assert_eq!(
        ended.json(),
        json!({"session_identifier": session.id, "continue": false})
    );
    assert_eq!(w.counted(&event("ended")).await, 1);

    // And a new login in the same browser is a new DBSC session: the old
    // one's refresh is told to stop.
    let (next, _) = login(&w, "alice").await;
    let stale = session.refresh(&next, &w.base).await;
    assert_eq!(stale.json()["continue"], false);
}

#[tokio::test]
async fn db07_a_skipped_refresh_is_counted_apart_from_theft() {
    let redis = RedisServer::start();
    let w = world(&redis, "").await;
    let (browser, session) = bound(&w, "alice", DeviceKey::es256()).await;
    w.clock.advance(Duration::from_secs(601));
    let skipped = format!("unreachable;session_identifier={}", dbsc::sf_string(&session.id));
    let page = browser
        .get(
            &w.url("/api/orders"),
            &[("x-csrf", "1"), ("secure-session-skipped", &skipped)],
        )
        .await;
    assert_eq!(page.status, 401);
    assert_eq!(w.counted(&event("skipped")).await, 1);
    assert_eq!(w.counted(ANOMALY).await, 0);
}

#[tokio::test]
async fn db08_a_session_binds_only_in_its_first_minutes_and_require_refuses_one_that_did_not() {
    let redis = RedisServer::start();
    let w = world(&redis, ", device_binding: require").await;
    let (browser, offer) = login(&w, "alice").await;
    assert_eq!(
        api(&browser, &w.base).await.status,
        200,
        "served while it may still bind"
    );

    w.clock.advance(Duration::from_secs(301));
    let refused = api(&browser, &w.base).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["code"], "device_binding_required");
    assert!(!refused.clears_a_cookie());
    assert_eq!(w.counted(&event("unbound")).await, 1);
    // Too late to bind it now, even with the challenge it was offered.
    let (page, _) = dbsc::register(&browser, &w.base, &offer, DeviceKey::es256()).await;
    assert_eq!(page.status, 400);

    // Under `offer`, an unbound session is served at any age, and offered
    // nothing once its window has passed.
    let w = world(&redis, "").await;
    let (browser, _) = login(&w, "bob").await;
    w.clock.advance(Duration::from_secs(301));
    assert_eq!(api(&browser, &w.base).await.status, 200);
    assert!(dbsc::offer(&browser.fetch(&w.url("/auth/user")).await).is_none());
}

#[tokio::test]
async fn db09_off_offers_nothing_and_has_no_endpoints() {
    let redis = RedisServer::start();
    let w = world(&redis, ", device_binding: off").await;
    let browser = w.login_everywhere("alice").await;
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 200);
    assert!(dbsc::offer(&user).is_none());
    let page = browser
        .send(reqwest::Method::POST, &w.url("/auth/device/register"), &[], None)
        .await;
    assert_eq!(page.status, 404);
}
