//! Refresh with rotation against the real IdP (5-second access tokens,
//! rotating refresh tokens), in one replica and across three sharing Redis.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::echoed;
use support::idp::{world_with, Browser, World};
use support::redis::RedisServer;

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
    let page = browser
        .get(&format!("{base}/api/orders"), &[("x-csrf", "1")])
        .await;
    if page.status != 200 {
        return (page.status, Some(page.body));
    }
    let seen: Value = serde_json::from_str(&page.body).unwrap();
    (page.status, echoed(&seen, "authorization"))
}

#[tokio::test]
async fn rf01_tokens_refresh_before_expiry_and_the_new_refresh_token_replaces_the_old() {
    let w = short_lived(1, None).await;
    let (browser, _) = w.login("alice").await;
    let (status, first) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, second) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200);
    assert_ne!(first, second, "a new access token after the skew point");
    let (_, third) = bearer(&browser, &w.base).await;
    assert_eq!(second, third, "no second refresh while the new token is fresh");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, fourth) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200, "the rotated refresh token was stored and works");
    assert_ne!(third, fourth);
    let stats = w.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 2, "{stats}");
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
}

#[tokio::test]
async fn rf14_200_parallel_calls_on_3_replicas_make_exactly_one_refresh() {
    let redis = RedisServer::start();
    let w = short_lived(3, Some(&redis)).await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, "cloakroom").unwrap();
    let mut bases = vec![w.base.clone()];
    bases.extend(w.others.iter().map(|(b, _)| b.clone()));
    for base in &bases {
        browser.set_cookie(base, "cloakroom", &cookie);
    }
    let (_, before) = bearer(&browser, &w.base).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let calls = (0..200).map(|i| {
        let browser = browser.clone();
        let base = bases[i % bases.len()].clone();
        async move { bearer(&browser, &base).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let tokens: std::collections::HashSet<_> = results.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(tokens.len(), 1, "every call carried the same fresh token");
    assert_ne!(tokens.into_iter().next().unwrap(), before);
    let stats = w.idp.stats().await;
    assert_eq!(
        stats["grants"]["refresh_token"], 1,
        "exactly one refresh grant: {stats}"
    );
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
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
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let page = browser.get(&w.url("/api/orders"), &[("x-csrf", "1")]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("login_required"));
    assert!(page
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0")));
    assert_eq!(
        browser.get(&w.url("/auth/user"), &[("x-csrf", "1")]).await.status,
        401,
        "ended everywhere"
    );
}

#[tokio::test]
async fn rf10_rf11_an_idp_outage_serves_valid_tokens_then_503_and_never_logs_out() {
    // 5-second tokens, refreshed when less than 4 s are left.
    let mut w = world_with("session: {refresh_skew: 4s}", json!({"access_token_ttl": 5}), 1).await;
    let (browser, _) = w.login("alice").await;
    let (_, token) = bearer(&browser, &w.base).await;
    w.idp.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Due for refresh, the IdP is gone, the token is still valid: use it.
    let (status, still) = bearer(&browser, &w.base).await;
    assert_eq!(status, 200, "RF-10");
    assert_eq!(still, token);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    // Expired and the IdP is gone: 503, session kept.
    let page = browser.get(&w.url("/api/orders"), &[("x-csrf", "1")]).await;
    assert_eq!(page.status, 503, "RF-11: {}", page.body);
    assert!(page.body.contains("idp_unavailable"));
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");
    assert_eq!(
        browser.get(&w.url("/auth/user"), &[("x-csrf", "1")]).await.status,
        200,
        "the session is kept"
    );
}
