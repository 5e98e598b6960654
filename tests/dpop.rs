//! DPoP (RFC 9449) against the real IdP: with `oidc.dpop`, every token
//! request carries a proof, the IdP binds what it issues to cloakroom's
//! key, and each call upstream sends the bound token with a fresh proof.
//! The upstreams check what they get as an API does
//! (`support::dpop_api`): the token's signature, audience and `cnf.jkt`,
//! the proof's signature, key, `htm`, `htu`, `ath`, `iat`, nonce, and
//! that its `jti` was never seen before.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::dpop_api::{dpop, Key};
use support::idp::{world_full, World};
use support::redis::RedisServer;
use support::{echoed, App, Browser, Upstream};

/// The default API's audience at the test IdP.
const API: &str = "urn:cloakroom:test-api";
const ORDERS: &str = "urn:cloakroom:test:orders";

/// Access tokens live 5 s; renewed when less than 2 s are left.
const DUE: Duration = Duration::from_millis(3500);

/// One replica with DPoP on, the key `key`, routes `extra` besides the
/// defaults, the IdP started with `settings` (5 s tokens), judging time by
/// a manual clock; its default upstream checks DPoP as an API for [`API`].
async fn world(key: &Key, extra: &str, settings: Value) -> World {
    let mut idp = json!({"access_token_ttl": 5});
    for (k, v) in settings.as_object().unwrap() {
        idp[k] = v.clone();
    }
    let extra = format!("{extra}session: {{refresh_skew: 2s}}");
    let clock = cloakroom::Clock::manual();
    let w = world_full(&extra, &dpop(&[("k1", key)]), idp, 1, clock).await;
    w.up.verify_dpop(w.idp.jwks().await, API, w.clock.clone());
    w
}

/// `GET url` from `browser` as the SPA sends it: the status, and the
/// `Authorization` the upstream accepted.
async fn call(browser: &Browser, url: &str) -> (u16, String) {
    let page = browser.fetch(url).await;
    if page.status != 200 {
        return (page.status, page.body);
    }
    (200, echoed(&page.json(), "authorization").expect("a token"))
}

/// Token requests the IdP received, and how many of them had a proof.
async fn token_requests(w: &World) -> (u64, u64) {
    let stats = w.idp.stats().await;
    let count = |k: &str| stats[k].as_u64().unwrap();
    (count("token_requests"), count("dpop_token_requests"))
}

/// A JWT's claims, read without verifying (the upstream verified it).
fn payload(authorization: &str) -> Value {
    use base64::Engine;
    let token = authorization.split_once(' ').unwrap().1;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn dp01_a_login_binds_the_token_and_every_call_carries_a_fresh_proof() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let (browser, landed) = w.login("alice").await;
    // The login's own landing page is an API call with a proof.
    assert_eq!(landed.status, 200, "{}", landed.body);
    let (requests, with_proof) = token_requests(&w).await;
    assert_eq!((requests, with_proof), (1, 1), "the code exchange had a proof");
    // The code was bound to the key too (RFC 9449 §10).
    let asked = w.idp.authorizations().await.pop().unwrap();
    assert_eq!(asked["dpop_jkt"], key.jkt.as_str());

    let mut tokens = HashSet::new();
    for _ in 0..40 {
        let (status, authorization) = call(&browser, &w.url("/api/orders")).await;
        assert_eq!(status, 200, "{authorization}");
        assert!(authorization.starts_with("DPoP "), "{authorization}");
        tokens.insert(authorization);
    }
    assert_eq!(tokens.len(), 1, "one token");
    let claims = payload(tokens.iter().next().unwrap());
    assert_eq!(
        claims["cnf"]["jkt"],
        key.jkt.as_str(),
        "bound to the key: {claims}"
    );

    // Every proof passed the API's checks, each with a jti of its own.
    let accepted = w.up.dpop().accepted();
    assert_eq!(accepted.len(), 41);
    assert!(w.up.dpop().refused().is_empty(), "{:?}", w.up.dpop().refused());
    let jtis: HashSet<&str> = accepted
        .iter()
        .map(|p| p["claims"]["jti"].as_str().unwrap())
        .collect();
    assert_eq!(jtis.len(), 41, "no proof used twice");
    assert!(accepted.iter().all(|p| p["jkt"] == key.jkt.as_str()));
    let last = &accepted.last().unwrap()["claims"];
    assert_eq!(last["htm"], "GET");
    assert_eq!(last["htu"], format!("{}/api/orders", w.up.url()));
}

#[tokio::test]
async fn dp02_a_captured_proof_replayed_to_the_api_is_refused() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let (browser, _) = w.login("alice").await;
    let seen = browser.fetch(&w.url("/api/orders?page=2")).await.json();
    let authorization = echoed(&seen, "authorization").unwrap();
    let proof = echoed(&seen, "dpop").unwrap();
    // The proof names the URL without its query (RFC 9449 §4.2).
    let claims = payload(&format!("DPoP {proof}"));
    assert_eq!(claims["htu"], format!("{}/api/orders", w.up.url()));

    // What a compromised hop on the way could do with both headers.
    let replayed = support::client()
        .get(format!("{}/api/orders?page=2", w.up.url()))
        .header("authorization", &authorization)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(replayed.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_dpop_proof"));
    let refused = w.up.dpop().refused();
    assert!(refused.last().unwrap().contains("replayed"), "{refused:?}");
    // And the token alone, as a bearer token, is no better.
    let as_bearer = support::client()
        .get(format!("{}/api/orders", w.up.url()))
        .header("authorization", authorization.replacen("DPoP", "Bearer", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), 401);
}

#[tokio::test]
async fn dp03_a_refreshed_token_is_bound_to_the_key_too() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let (browser, _) = w.login("alice").await;
    let (_, first) = call(&browser, &w.url("/api/orders")).await;

    w.clock.advance(DUE);
    let (status, second) = call(&browser, &w.url("/api/orders")).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(first, second, "renewed");
    assert!(second.starts_with("DPoP "));
    assert_eq!(payload(&second)["cnf"]["jkt"], key.jkt.as_str());
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
    assert_eq!(token_requests(&w).await, (2, 2));
}

#[tokio::test]
async fn dp04_an_idp_that_requires_nonces_is_asked_once_more_with_its_nonce() {
    let key = Key::new();
    let w = world(&key, "", json!({"dpop_nonce": true})).await;
    let (browser, landed) = w.login("alice").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let stats = w.idp.stats().await;
    assert_eq!(stats["dpop_nonce_refusals"], 1, "{stats}");
    assert_eq!(
        stats["grants"]["authorization_code"], 1,
        "one code, exchanged once"
    );

    // The nonce is kept: the refresh needs no second try.
    w.clock.advance(DUE);
    let (status, renewed) = call(&browser, &w.url("/api/orders")).await;
    assert_eq!(status, 200, "{renewed}");
    let stats = w.idp.stats().await;
    assert_eq!(stats["dpop_nonce_refusals"], 1, "{stats}");
    assert_eq!(stats["grants"]["refresh_token"], 1);
    assert_eq!(payload(&renewed)["cnf"]["jkt"], key.jkt.as_str());
}

#[tokio::test]
async fn dp05_an_apis_nonce_is_kept_and_a_bodiless_get_is_sent_once_more_with_it() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let (browser, _) = w.login("alice").await;
    let api = w.up.dpop();
    api.require_nonce("nonce-1");

    // A GET: refused for want of the nonce, sent again with it.
    let before = w.up.requests();
    let (status, _) = call(&browser, &w.url("/api/orders")).await;
    assert_eq!(status, 200);
    assert_eq!(w.up.requests() - before, 2, "one more try");
    assert_eq!(api.accepted().last().unwrap()["claims"]["nonce"], "nonce-1");

    // A POST carries the nonce kept from then on.
    let post = |base: String| {
        let browser = browser.clone();
        async move {
            let headers = [("x-csrf", "1"), ("origin", base.as_str())];
            browser
                .send(
                    reqwest::Method::POST,
                    &format!("{base}/api/orders"),
                    &headers,
                    None,
                )
                .await
        }
    };
    assert_eq!(post(w.base.clone()).await.status, 200);

    // A new nonce: a POST is never sent twice; its 401 is the API's, and
    // the next call carries the new nonce.
    api.require_nonce("nonce-2");
    let before = w.up.requests();
    let refused = post(w.base.clone()).await;
    assert_eq!(refused.status, 401);
    assert!(refused.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("use_dpop_nonce"));
    assert!(!refused.clears_a_cookie(), "the session stays");
    assert_eq!(w.up.requests() - before, 1, "sent once");
    assert_eq!(post(w.base.clone()).await.status, 200);
    assert_eq!(api.accepted().last().unwrap()["claims"]["nonce"], "nonce-2");
}

#[tokio::test]
async fn dp06_bearer_tokens_answered_to_a_request_with_a_proof_fail_the_login() {
    let key = Key::new();
    // The token endpoint drops every proof, as an IdP without DPoP does.
    let w = world(&key, "", json!({"dpop_ignored": true})).await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("idp_bad_response"), "{}", page.body);
    assert!(
        browser.cookie(&w.base, support::SESSION_COOKIE).is_none(),
        "no session"
    );
    assert_eq!(w.up.requests(), 0, "nothing reached the API");
    // Nobody holds the refused answer's refresh token: it is revoked.
    let revoked = async || w.idp.stats().await["revocations"] == 1;
    support::wait::until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "revoked",
        revoked,
    )
    .await;
}

#[tokio::test]
async fn dp07_bearer_tokens_answered_to_a_refresh_are_a_502_that_keeps_the_session() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let (browser, _) = w.login("alice").await;
    let (_, first) = call(&browser, &w.url("/api/orders")).await;

    set_ignored(&w, true).await;
    // Expired, so the refused refresh leaves nothing to send.
    w.clock.advance(Duration::from_secs(6));
    let page = browser.fetch(&w.url("/api/orders")).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert_eq!(page.json()["code"], "idp_bad_response");
    assert!(!page.clears_a_cookie(), "never a logout");

    // The refused answer rotated the refresh token: kept, so once the IdP
    // binds again the session renews with it.
    set_ignored(&w, false).await;
    let (status, renewed) = call(&browser, &w.url("/api/orders")).await;
    assert_eq!(status, 200, "{renewed}");
    assert_ne!(renewed, first);
    assert_eq!(payload(&renewed)["cnf"]["jkt"], key.jkt.as_str());
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 2, "{stats}");
    assert_eq!(stats["revoked"], 0, "the grant lives on: {stats}");
}

async fn set_ignored(w: &World, on: bool) {
    let answer = support::client()
        .get(format!("{}/__dpop_ignored?on={on}", w.idp.origin))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
}

#[tokio::test]
async fn dp08_a_new_current_key_binds_new_tokens_and_the_old_ones_keep_their_key() {
    let redis = RedisServer::start();
    let (old, new) = (Key::new(), Key::new());
    let store = format!(
        "store: {{redis: {{url: '{}', command_timeout: 3s}}}}, ",
        redis.url()
    );
    let extra = format!("session: {{{store}refresh_skew: 2s}}");
    let clock = cloakroom::Clock::manual();
    let settings = json!({"access_token_ttl": 5});
    let w = world_full(&extra, &dpop(&[("old", &old)]), settings, 1, clock).await;
    w.up.verify_dpop(w.idp.jwks().await, API, w.clock.clone());
    // A replica with the new key first and the old one kept, as a rollout
    // of the rotation has it, on the same store.
    let rotated = w
        .yaml
        .replace(&dpop(&[("old", &old)]), &dpop(&[("new", &new), ("old", &old)]));
    assert_ne!(rotated, w.yaml);
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let _replica = bound.start_with_clock(&rotated, w.clock.clone());

    // A login started where the old key is current and finished on the
    // new replica: its code was bound to the old key, which proves it.
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    for (name, value) in browser.login_cookies(&w.base) {
        browser.set_cookie(&base, &name, &value);
    }
    browser.navigate(&callback.replace(&w.base, &base), "alice").await;
    assert!(
        browser.cookie(&base, support::SESSION_COOKIE).is_some(),
        "signed in"
    );
    let (status, first) = call(&browser, &format!("{base}/api/orders")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(payload(&first)["cnf"]["jkt"], old.jkt.as_str());
    // The token bound to the old key serves there, proven with that key.
    assert_eq!(w.up.dpop().accepted().last().unwrap()["jkt"], old.jkt.as_str());

    // Renewed, it is bound to the new key.
    w.clock.advance(DUE);
    let (status, renewed) = call(&browser, &format!("{base}/api/orders")).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(payload(&renewed)["cnf"]["jkt"], new.jkt.as_str());
    assert_eq!(w.up.dpop().accepted().last().unwrap()["jkt"], new.jkt.as_str());
    // Only the login's landing page, on the anonymous route, went without.
    assert_eq!(w.up.dpop().refused(), ["one Authorization header expected"]);
}

#[tokio::test]
async fn dp09_a_routes_own_token_and_the_client_token_are_bound_too() {
    let key = Key::new();
    let (orders, jobs) = (Upstream::start().await, Upstream::start().await);
    let routes = format!(
        "  - {{path: /orders, upstream: '{}', resource: '{ORDERS}', scopes: ['orders:read']}}
  - {{path: /jobs, upstream: '{}', auth: none, token: client, resource: '{ORDERS}', scopes: ['orders:read']}}
",
        orders.url(),
        jobs.url()
    );
    let w = world(&key, &routes, json!({})).await;
    let jwks = w.idp.jwks().await;
    orders.verify_dpop(jwks.clone(), ORDERS, w.clock.clone());
    jobs.verify_dpop(jwks, ORDERS, w.clock.clone());
    let (browser, _) = w.login("alice").await;

    let (status, own) = call(&browser, &w.url("/orders/1")).await;
    assert_eq!(status, 200, "{own}");
    let claims = payload(&own);
    assert_eq!(
        (claims["aud"].as_str(), claims["cnf"]["jkt"].as_str()),
        (Some(ORDERS), Some(key.jkt.as_str()))
    );

    let anonymous = support::client().get(w.url("/jobs/run")).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let seen: Value = anonymous.json().await.unwrap();
    let client = echoed(&seen, "authorization").unwrap();
    assert!(client.starts_with("DPoP "), "{client}");
    assert_eq!(payload(&client)["cnf"]["jkt"], key.jkt.as_str());

    let stats = w.idp.stats().await;
    assert_eq!(stats["resource_grants"][ORDERS], 1, "{stats}");
    assert_eq!(stats["client_grants"][ORDERS], 1, "{stats}");
    let (requests, with_proof) = token_requests(&w).await;
    assert_eq!(requests, 3);
    assert_eq!(with_proof, 3, "every grant with a proof");
}

#[tokio::test]
async fn dp11_a_pushed_authorization_request_binds_the_code_to_the_key() {
    let key = Key::new();
    let w = world(&key, "", json!({"par": true})).await;
    let (_, landed) = w.login("alice").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let pushed = w.idp.pushed().await.pop().expect("pushed");
    assert_eq!(pushed["dpop_jkt"], key.jkt.as_str());
    let asked = w.idp.authorizations().await.pop().unwrap();
    assert!(
        asked.get("dpop_jkt").is_none(),
        "only client_id and request_uri: {asked:?}"
    );
}

#[tokio::test]
async fn dp10_check_online_says_whether_the_idp_takes_es256_proofs() {
    let key = Key::new();
    let w = world(&key, "", json!({})).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), &w.yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["check", "--online", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // `check` names each key and what it does.
    assert!(
        stdout.contains("key \"k1\"") && stdout.contains(&key.jkt),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains(" dpop "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.trim_start().starts_with("ok") && line.contains("ES256 listed"),
        "{line}"
    );
}
