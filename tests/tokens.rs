//! Routes' own tokens against the real IdP: a route naming a `resource`
//! (RFC 8707) and `scopes` sends its upstream a token for that API alone,
//! obtained with the session's refresh token and renewed with it, one grant
//! per resource and rotation across replicas. The upstreams verify what
//! they receive as APIs do: the IdP's signature and their own audience.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::idp::{world_with, World};
use support::redis::RedisServer;
use support::{bearer_at as call, bearer_claims as payload, echoed, Browser, Upstream};

const ORDERS: &str = "urn:cloakroom:test:orders";
const BILLING: &str = "urn:cloakroom:test:billing";

/// Access tokens live 5 s; renewed when less than 2 s are left.
const DUE: Duration = Duration::from_millis(3500);

/// A world whose `/orders` and `/billing` routes each have an API of their
/// own (verifying tokens for its resource), `more` routes besides, and
/// `replicas` sharing `redis` when given.
async fn two_apis(replicas: usize, redis: Option<&RedisServer>, more: &str) -> (World, Upstream, Upstream) {
    let (orders, billing) = (Upstream::start().await, Upstream::start().await);
    // A test machine under load can hold Redis past the 500 ms default;
    // what these tests count is grants, not store latency.
    let store = redis.map_or(String::new(), |r| {
        format!("store: {{redis: {{url: '{}', command_timeout: 3s}}}}, ", r.url())
    });
    let extra = format!(
        "  - {{path: /orders, upstream: '{o}', resource: '{ORDERS}', scopes: ['orders:read']}}
  - {{path: /billing, upstream: '{b}', resource: '{BILLING}', scopes: ['billing:read']}}
{more}session: {{{store}refresh_skew: 2s}}",
        o = orders.url(),
        b = billing.url(),
    );
    let w = world_with(&extra, json!({"access_token_ttl": 5}), replicas).await;
    let jwks = w.idp.jwks().await;
    orders.verify_tokens(jwks.clone(), ORDERS);
    billing.verify_tokens(jwks, BILLING);
    (w, orders, billing)
}

/// `calls` calls at once, alternating `/orders` and `/billing` and spread
/// over `bases`: all accepted by their API; the tokens each route sent.
async fn burst(browser: &Browser, bases: &[String], calls: usize) -> [HashSet<String>; 2] {
    let calls = (0..calls).map(|i| {
        let browser = browser.clone();
        let base = bases[i % bases.len()].clone();
        let path = ["/orders", "/billing"][i % 2];
        async move { (i % 2, call(&browser, &base, path).await) }
    });
    let mut seen = [HashSet::new(), HashSet::new()];
    for (route, (status, bearer)) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{bearer}");
        seen[route].insert(bearer);
    }
    seen
}

/// Refresh grants the IdP answered for each resource, after asserting no
/// grant was revoked (a refresh token presented twice revokes it).
async fn grants(w: &World) -> (u64, u64, u64) {
    let stats = w.idp.stats().await;
    assert_eq!(stats["revoked"], 0, "no grant revoked: {stats}");
    let by = |r: &str| stats["resource_grants"][r].as_u64().unwrap_or(0);
    let all = stats["grants"]["refresh_token"].as_u64().unwrap_or(0);
    (by(ORDERS), by(BILLING), all)
}

#[tokio::test]
async fn px23_a_routes_token_never_reaches_another_routes_upstream() {
    let (w, orders, billing) = two_apis(1, None, "").await;
    let (browser, _) = w.login("alice").await;
    // The login asked for both resources and their scopes.
    let asked = w.idp.authorizations().await.pop().unwrap();
    for scope in ["orders:read", "billing:read"] {
        assert!(
            asked["scope"].as_str().unwrap().split(' ').any(|s| s == scope),
            "{asked:?}"
        );
    }

    let [via_orders, via_billing] = burst(&browser, std::slice::from_ref(&w.base), 10).await;
    assert!(via_orders.is_disjoint(&via_billing), "one token for both APIs");
    let (_, user) = call(&browser, &w.base, "/api/orders").await;
    assert!(!via_orders.contains(&user) && !via_billing.contains(&user));
    // Each API accepted every call: its own audience, the IdP's signature.
    assert_eq!((orders.requests(), billing.requests()), (5, 5));
    // And a token is narrowed to its route's scopes.
    for (tokens, scope) in [(&via_orders, "orders:read"), (&via_billing, "billing:read")] {
        let claims = payload(tokens.iter().next().unwrap());
        assert_eq!(claims["scope"], scope, "{claims}");
    }
    assert_eq!(grants(&w).await, (1, 1, 2), "one grant per resource");
    let metrics = scrape(&w).await;
    assert!(
        metrics.contains("cloakroom_idp_grants_total{grant=\"refresh_token\",outcome=\"granted\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn px23_200_calls_over_3_replicas_make_one_grant_per_resource_and_rotation() {
    let redis = RedisServer::start();
    let (w, _orders, _billing) = two_apis(3, Some(&redis), "").await;
    let (browser, bases) = (w.login_everywhere("alice").await, w.bases());

    let [first_orders, first_billing] = burst(&browser, &bases, 200).await;
    assert_eq!(
        (first_orders.len(), first_billing.len()),
        (1, 1),
        "one token per route"
    );
    assert_eq!(grants(&w).await, (1, 1, 2));

    // Both due: one renewal each, whatever the replica and the order; each
    // rotation of the one refresh token is the one the next grant presents.
    w.clock.advance(DUE);
    let [orders, billing] = burst(&browser, &bases, 200).await;
    assert_eq!((orders.len(), billing.len()), (1, 1));
    assert!(orders.is_disjoint(&first_orders) && billing.is_disjoint(&first_billing));
    assert_eq!(grants(&w).await, (2, 2, 4));

    // The session's own token is still obtained with the rotated one.
    w.clock.advance(DUE);
    let (status, _) = call(&browser, &bases[1], "/api/orders").await;
    assert_eq!(status, 200);
    assert_eq!(grants(&w).await, (2, 2, 5));
}

#[tokio::test]
async fn px23_an_idp_refusal_of_a_routes_token_is_a_503_that_keeps_the_session() {
    // The IdP knows no `orders:write`: the grant cannot narrow to it.
    let broken = format!("  - {{path: /write, upstream: 'http://127.0.0.1:9', resource: '{ORDERS}', scopes: ['orders:write']}}\n");
    let (w, _orders, _billing) = two_apis(1, None, &broken).await;
    let (browser, _) = w.login("alice").await;

    let page = browser.fetch(&w.url("/write")).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert_eq!(page.json()["code"], "idp_unavailable");
    assert!(page.headers.contains_key("retry-after"));
    assert!(!page.clears_a_cookie(), "never a logout");
    // The session serves on, its other routes included.
    assert_eq!(call(&browser, &w.base, "/orders").await.0, 200);
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
    let metrics = scrape(&w).await;
    assert!(
        metrics.contains("cloakroom_idp_grants_total{grant=\"refresh_token\",outcome=\"refused\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_credentials_tokens_are_fetched_once_per_expiry_across_replicas() {
    let redis = RedisServer::start();
    // No session: an anonymous route with cloakroom's own client's token.
    let jobs = format!("  - {{path: /jobs, upstream: '{{JOBS}}', auth: none, token: client, resource: '{ORDERS}', scopes: ['orders:read']}}\n");
    let api = Upstream::start().await;
    let (w, _orders, _billing) = two_apis(3, Some(&redis), &jobs.replace("{JOBS}", &api.url())).await;
    api.verify_tokens(w.idp.jwks().await, ORDERS);
    let (bases, http) = (w.bases(), support::client());
    let anonymous = |i: usize| {
        let url = format!("{}/jobs/run", bases[i % bases.len()]);
        let http = http.clone();
        async move {
            let answer = http.get(url).send().await.unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap();
            assert_eq!(status, 200, "{body}");
            let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
            echoed(&seen, "authorization").unwrap()
        }
    };
    let client_grants = async || w.idp.stats().await["client_grants"][ORDERS].as_u64().unwrap_or(0);

    let first: HashSet<String> = futures_util::future::join_all((0..150).map(anonymous))
        .await
        .into_iter()
        .collect();
    assert_eq!(first.len(), 1, "one token for every replica");
    assert_eq!(client_grants().await, 1, "one grant across replicas");
    let claims = payload(first.iter().next().unwrap());
    assert_eq!(
        (claims["aud"].as_str(), claims["scope"].as_str()),
        (Some(ORDERS), Some("orders:read"))
    );
    assert!(
        claims.get("sub").is_none_or(|s| s == "cloakroom"),
        "no user: {claims}"
    );

    // What the store holds is sealed.
    let bearer = first
        .iter()
        .next()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let keys = redis.cli(&["--scan", "--pattern", "cloakroom:{c*}:s"]);
    let key = keys.lines().next().expect("the client token is in the store");
    assert!(!redis.cli(&["HGET", key, "d"]).contains(&bearer[..40]));

    // Due: one more grant, whatever the replica.
    w.clock.advance(DUE);
    let second: HashSet<String> = futures_util::future::join_all((0..150).map(anonymous))
        .await
        .into_iter()
        .collect();
    assert_eq!(second.len(), 1);
    assert!(second.is_disjoint(&first));
    assert_eq!(client_grants().await, 2, "one grant per expiry");
    // Counted where they were made, on whichever replicas.
    let mut granted = 0;
    for admin in std::iter::once(w.app.admin).chain(w.others.iter().map(|(_, a)| a.admin)) {
        let text = support::client()
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = "cloakroom_idp_grants_total{grant=\"client_credentials\",outcome=\"granted\"} ";
        granted += text
            .lines()
            .filter_map(|l| l.strip_prefix(series))
            .map(|n| n.parse::<u64>().unwrap())
            .sum::<u64>();
    }
    assert_eq!(granted, 2);
}

/// The first replica's `/metrics`.
async fn scrape(w: &World) -> String {
    let url = format!("http://{}/metrics", w.app.admin);
    support::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
