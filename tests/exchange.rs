//! Token exchange (`token: exchange`, RFC 8693) against the real IdP: a
//! route trades the session's token at the token endpoint for one meant for
//! its API alone, which the test IdP issues only after checking the token
//! presented. The upstreams verify what they receive as APIs do: the IdP's
//! signature and their own audience. One exchange per token and expiry,
//! whatever the number of replicas and concurrent calls; a refusal or an
//! outage is a 502 or 503 that keeps the session.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::idp::{world_with_clock, World};
use support::redis::RedisServer;
use support::{bearer_at as call, bearer_claims, Browser, Upstream};

const LEDGER: &str = "urn:cloakroom:test:ledger";
const REPORTS: &str = "urn:cloakroom:test:reports";

/// The session's access tokens live 30 s and are due at 28 s; exchanged
/// tokens live 60 s and are due at 58 s (`refresh_skew: 2s`), by the
/// replicas' clock, which moves only when a test moves it. Both are long in
/// real time too, for the IdP checks a subject token by its own clock.
const SESSION_DUE: Duration = Duration::from_secs(29);
const EXCHANGE_DUE: Duration = Duration::from_secs(59);

/// A world whose `/ledger` route exchanges the session's access token for
/// a ledger token, and `/reports` its ID token for a reports token, each
/// API verifying tokens for its own audience; `more` routes besides, and
/// `replicas` sharing `redis` when given.
async fn exchanging(replicas: usize, redis: Option<&RedisServer>, more: &str) -> (World, Upstream, Upstream) {
    let (ledger, reports) = (Upstream::start().await, Upstream::start().await);
    // A test machine under load can hold Redis past the 500 ms default;
    // what these tests count is grants, not store latency.
    let store = redis.map_or(String::new(), |r| {
        format!("store: {{redis: {{url: '{}', command_timeout: 3s}}}}, ", r.url())
    });
    let extra = format!(
        "  - {{path: /ledger, upstream: '{l}', token: exchange, exchange: {{audience: '{LEDGER}', scopes: ['ledger:read']}}}}
  - {{path: /reports, upstream: '{r}', token: exchange, exchange: {{audience: '{REPORTS}', subject_token: id_token}}}}
{more}session: {{{store}refresh_skew: 2s}}",
        l = ledger.url(),
        r = reports.url(),
    );
    let settings = json!({"access_token_ttl": 30, "exchange_token_ttl": 60});
    let w = world_with_clock(&extra, settings, replicas, cloakroom::Clock::manual()).await;
    let jwks = w.idp.jwks().await;
    ledger.verify_tokens(jwks.clone(), LEDGER);
    reports.verify_tokens(jwks, REPORTS);
    (w, ledger, reports)
}

/// `calls` calls to `path` at once, spread over `bases`, each accepted by
/// its API: the tokens sent.
async fn burst(browser: &Browser, bases: &[String], path: &str, calls: usize) -> HashSet<String> {
    let calls = (0..calls).map(|i| {
        let (browser, base) = (browser.clone(), bases[i % bases.len()].clone());
        async move { call(&browser, &base, path).await }
    });
    let mut seen = HashSet::new();
    for (status, bearer) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{bearer}");
        seen.insert(bearer);
    }
    seen
}

/// Exchanges the IdP granted for `audience`, after asserting no grant was
/// revoked on the way.
async fn exchanges(w: &World, audience: &str) -> u64 {
    let stats = w.idp.stats().await;
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
    stats["exchange_grants"][audience].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn px23_an_exchanged_token_is_for_its_audience_and_never_reaches_another_upstream() {
    let (w, ledger, reports) = exchanging(1, None, "").await;
    let (browser, _) = w.login("alice").await;

    let (status, via_ledger) = call(&browser, &w.base, "/ledger/entries").await;
    assert_eq!(status, 200, "{via_ledger}");
    let claims = bearer_claims(&via_ledger);
    // Verified by the ledger API: the IdP's signature, its audience.
    assert_eq!(claims["aud"], LEDGER, "{claims}");
    assert_eq!(claims["scope"], "ledger:read", "narrowed: {claims}");
    assert_eq!(claims["sub"], "alice", "the subject carries over: {claims}");
    assert_eq!(claims["iss"], w.idp.issuer.as_str());

    // The ID token as the subject: the same user, another API.
    let (status, via_reports) = call(&browser, &w.base, "/reports/monthly").await;
    assert_eq!(status, 200, "{via_reports}");
    let claims = bearer_claims(&via_reports);
    assert_eq!(
        (claims["aud"].as_str(), claims["sub"].as_str()),
        (Some(REPORTS), Some("alice"))
    );
    let stats = w.idp.stats().await;
    assert_eq!(
        stats["exchange_subjects"],
        json!({"access_token": 1, "id_token": 1})
    );

    // The session's own token goes where it went; no route gets another's.
    let (status, own) = call(&browser, &w.base, "/api/orders").await;
    assert_eq!(status, 200);
    let tokens = [&via_ledger, &via_reports, &own];
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), 3, "three tokens");
    assert_ne!(bearer_claims(&own)["aud"], LEDGER);
    // Each API accepted exactly its own calls.
    assert_eq!((ledger.requests(), reports.requests()), (1, 1));
    // Kept in the session: the second call exchanges nothing.
    assert_eq!(call(&browser, &w.base, "/ledger/entries").await.1, via_ledger);
    assert_eq!(exchanges(&w, LEDGER).await, 1);
    assert_eq!(
        w.counted("cloakroom_idp_grants_total{grant=\"exchange\",outcome=\"granted\"}")
            .await,
        2
    );
}

#[tokio::test]
async fn px23_200_calls_over_3_replicas_make_one_exchange_per_expiry() {
    let redis = RedisServer::start();
    let (w, _ledger, _reports) = exchanging(3, Some(&redis), "").await;
    let (browser, bases) = (w.login_everywhere("alice").await, w.bases());

    let first = burst(&browser, &bases, "/ledger/entries", 200).await;
    assert_eq!(first.len(), 1, "one token for every replica and call");
    assert_eq!(exchanges(&w, LEDGER).await, 1, "one exchange across replicas");

    // Due (and the session's token with it): one exchange more, presenting
    // the session's token refreshed once, whatever the replica.
    w.clock.advance(EXCHANGE_DUE);
    let second = burst(&browser, &bases, "/ledger/entries", 200).await;
    assert_eq!(second.len(), 1);
    assert!(second.is_disjoint(&first));
    assert_eq!(exchanges(&w, LEDGER).await, 2, "one exchange per expiry");
    assert_eq!(w.idp.stats().await["grants"]["refresh_token"], 1);
    // Counted where they were made, on whichever replicas.
    let granted = "cloakroom_idp_grants_total{grant=\"exchange\",outcome=\"granted\"}";
    assert_eq!(w.counted(granted).await, 2);
}

#[tokio::test]
async fn an_exchanged_token_serves_until_due_whatever_becomes_of_the_sessions_token() {
    let (w, _ledger, _reports) = exchanging(1, None, "").await;
    let (browser, _) = w.login("alice").await;
    let (_, exchanged) = call(&browser, &w.base, "/ledger/entries").await;
    let (_, own) = call(&browser, &w.base, "/api/orders").await;

    // The session's token is due and rotates; the exchanged one is kept.
    w.clock.advance(SESSION_DUE);
    let (_, rotated) = call(&browser, &w.base, "/api/orders").await;
    assert_ne!(rotated, own, "the session's token was refreshed");
    assert_eq!(call(&browser, &w.base, "/ledger/entries").await.1, exchanged);
    assert_eq!(exchanges(&w, LEDGER).await, 1);

    // Due itself: exchanged again, for the same user.
    w.clock.advance(EXCHANGE_DUE - SESSION_DUE);
    let (status, again) = call(&browser, &w.base, "/ledger/entries").await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again, exchanged);
    assert_eq!(bearer_claims(&again)["sub"], "alice");
    assert_eq!(exchanges(&w, LEDGER).await, 2);
}

#[tokio::test]
async fn an_exchange_the_idp_refuses_is_a_502_that_keeps_the_session() {
    // The IdP exchanges for no such audience, and offers the ledger no
    // `ledger:admin`.
    let refused = "  - {path: /unknown, upstream: 'http://127.0.0.1:9', token: exchange, exchange: {audience: 'urn:cloakroom:test:unknown'}}
  - {path: /admin, upstream: 'http://127.0.0.1:9', token: exchange, exchange: {audience: 'urn:cloakroom:test:ledger', scopes: ['ledger:admin']}}
";
    let (w, _ledger, _reports) = exchanging(1, None, refused).await;
    let (browser, _) = w.login("alice").await;

    for path in ["/unknown", "/admin"] {
        let page = browser.fetch(&w.url(path)).await;
        assert_eq!(page.status, 502, "{path}: {}", page.body);
        assert_eq!(page.json()["code"], "token_exchange_refused");
        assert!(
            !page.headers.contains_key("retry-after"),
            "a retry changes nothing"
        );
        assert!(
            !page.body.contains("audience") && !page.body.contains("scope"),
            "never the IdP's words: {}",
            page.body
        );
        assert!(!page.clears_a_cookie(), "never a logout");
    }
    // The session serves on, its other routes included.
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
    assert_eq!(call(&browser, &w.base, "/api/orders").await.0, 200);
    assert_eq!(call(&browser, &w.base, "/ledger/entries").await.0, 200);
    assert_eq!(
        w.counted("cloakroom_idp_grants_total{grant=\"exchange\",outcome=\"refused\"}")
            .await,
        2
    );
    assert_eq!(
        w.counted("cloakroom_refreshes_total{outcome=\"refused\"}").await,
        2
    );
}

#[tokio::test]
async fn a_subject_token_the_idp_refuses_is_a_502_never_a_logout() {
    let (w, _ledger, _reports) = exchanging(1, None, "").await;
    let (browser, _) = w.login("alice").await;
    // Past the ID token's hour at the IdP: the exchange's invalid_grant
    // names the token presented, not the session's grant.
    w.idp.advance(Duration::from_secs(3700)).await;

    let page = browser.fetch(&w.url("/reports/monthly")).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert_eq!(page.json()["code"], "token_exchange_refused");
    assert!(!page.clears_a_cookie(), "never a logout");
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
    assert_eq!(call(&browser, &w.base, "/api/orders").await.0, 200);
    assert_eq!(w.idp.stats().await["grants"]["refresh_token"], json!(null));
}

#[tokio::test]
async fn an_idp_outage_serves_a_valid_exchanged_token_then_503_and_keeps_the_session() {
    let (mut w, _ledger, _reports) = exchanging(1, None, "").await;
    let (browser, _) = w.login("alice").await;
    let (_, exchanged) = call(&browser, &w.base, "/ledger/entries").await;
    w.idp.kill();

    // Never exchanged, and the IdP is gone: 503, the session kept.
    let page = browser.fetch(&w.url("/reports/monthly")).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert_eq!(page.json()["code"], "idp_unavailable");
    assert!(page.headers.contains_key("retry-after"));
    assert!(!page.clears_a_cookie(), "never a logout");

    // Due but still valid: served as it is while the IdP cannot renew it.
    w.clock.advance(EXCHANGE_DUE);
    assert_eq!(call(&browser, &w.base, "/ledger/entries").await.1, exchanged);
    // Expired: 503, and the session is still there for when the IdP is back.
    w.clock.advance(Duration::from_secs(2));
    let page = browser.fetch(&w.url("/ledger/entries")).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert_eq!(page.json()["code"], "idp_unavailable");
    assert!(!page.clears_a_cookie());
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
}
