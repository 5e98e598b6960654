//! The Redis store against a real `redis-server`: the store contract, and
//! what users see when Redis is slow, down, or back.

mod support;

use std::time::Duration;

use bytes::Bytes;
use cloakroom::config::{RedisConfig, RedisTopology};
use cloakroom::secret::Secret;
use cloakroom::session::{CachedStore, RedisStore, SessionStore, StoreError};
use support::idp::world;
use support::redis::RedisServer;
use support::wait::poll;

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
        local_cache: None,
        ..RedisConfig::standalone(url)
    }
}

/// The status of an API call, retried for up to 5 s while Redis comes back.
async fn api_once_redis_answers(w: &support::idp::World, browser: &support::Browser) -> u16 {
    let call = async || w.api_get(browser).await.status;
    poll(Duration::from_secs(5), Duration::from_millis(100), call, |s| {
        *s == 200
    })
    .await
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&config(&redis.url())).await.unwrap();
    support::store_contract::run_all(&store).await;
}

#[tokio::test]
async fn the_cached_store_meets_the_contract() {
    let redis = RedisServer::start();
    let plain = RedisStore::connect(&config(&redis.url())).await.unwrap();
    let store = CachedStore::new(plain.clone(), 1_000);
    until_cached(&redis, &plain, &store).await;
    support::store_contract::run_all_but_expiry(&store).await;
}

/// A bound of 64 records and ten times as many sessions, each read once,
/// while 8 of them keep being used: those 8 stay in memory.
#[tokio::test]
async fn the_local_cache_keeps_its_busy_records_past_its_bound() {
    let redis = RedisServer::start();
    let plain = RedisStore::connect(&config(&redis.url())).await.unwrap();
    let key = |n: usize| format!("cloakroom:{{bound-{n}}}:s");
    let value = |n: usize| Bytes::from(format!("sealed {n}"));
    for n in 0..640 {
        plain
            .put(&key(n), value(n), 0, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let cached = CachedStore::new(plain.clone(), 64);
    until_cached(&redis, &plain, &cached).await;
    let busy = 0..8;
    for n in busy.end..640 {
        assert_eq!(cached.get(&key(n)).await.unwrap().unwrap().value, value(n));
        for b in busy.clone() {
            assert_eq!(cached.get(&key(b)).await.unwrap().unwrap().value, value(b));
        }
    }
    let before = calls(&redis, "hmget");
    for b in busy.clone() {
        assert_eq!(cached.get(&key(b)).await.unwrap().unwrap().value, value(b));
    }
    assert_eq!(calls(&redis, "hmget"), before, "a busy record was evicted");
    // The one-off records made room for each other: most are gone.
    let before = calls(&redis, "hmget");
    for n in busy.end..640 {
        cached.get(&key(n)).await.unwrap();
    }
    let misses = calls(&redis, "hmget") - before;
    assert!(misses >= 640 - 8 - 64, "{misses} reads of 632 went to Redis");
}

/// Waits until `store`'s cache answers (its invalidation subscription is
/// live): a record read twice costs Redis one read. The record is written
/// through `plain`, which publishes no invalidation.
async fn until_cached(redis: &RedisServer, plain: &RedisStore, store: &CachedStore) {
    let key = "cloakroom:{until-cached}:s";
    plain
        .put(key, Bytes::from_static(b"x"), 0, Duration::from_secs(60))
        .await
        .unwrap();
    let hit = async || {
        store.get(key).await.unwrap();
        let before = calls(redis, "hmget");
        store.get(key).await.unwrap();
        calls(redis, "hmget") == before
    };
    assert!(
        poll(Duration::from_secs(5), Duration::from_millis(50), hit, |hit| *hit).await,
        "the cache never went live"
    );
}

#[tokio::test]
async fn every_key_has_a_ttl_and_values_are_opaque() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&config(&redis.url())).await.unwrap();
    store
        .put(
            "cloakroom:{abc}:s",
            Bytes::from_static(b"sealed"),
            0,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let ttl: i64 = redis.cli(&["PTTL", "cloakroom:{abc}:s"]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn rd04_rd05_a_frozen_redis_is_an_error_not_a_missing_key() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&config(&redis.url())).await.unwrap();
    assert!(
        matches!(store.get("cloakroom:{x}:s").await, Ok(None)),
        "missing is None"
    );
    redis.freeze();
    let started = std::time::Instant::now();
    let result = store.get("cloakroom:{x}:s").await;
    redis.thaw();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "a silent Redis is an error"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the command timeout"
    );
    assert!(
        matches!(store.get("cloakroom:{x}:s").await, Ok(None)),
        "usable again"
    );
}

#[tokio::test]
async fn rd11_a_wrong_password_fails_the_start() {
    let redis = RedisServer::start();
    redis.cli(&["CONFIG", "SET", "requirepass", "right"]);
    let wrong = config(&format!("redis://:wrong@127.0.0.1:{}", redis.port));
    assert!(RedisStore::connect(&wrong).await.is_err());
    let right = config(&format!("redis://:right@127.0.0.1:{}", redis.port));
    RedisStore::connect(&right).await.unwrap();
}

#[tokio::test]
async fn rd01_rd02_a_redis_outage_is_503_keeps_the_session_and_recovers() {
    let mut redis = RedisServer::start();
    // The store's own error path: no local cache that could answer for it.
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms, local_cache: false}}}}}}",
        redis.url()
    ))
    .await;
    let (browser, _) = w.login("alice").await;
    assert_eq!(w.api_get(&browser).await.status, 200);

    redis.stop();
    let before = w.up.requests();
    for _ in 0..3 {
        let r = w.api_get(&browser).await;
        assert_eq!(r.status, 503, "RD-01: {}", r.body);
        assert!(r.body.contains("session_store_unavailable"));
        assert!(r.headers.contains_key("retry-after"));
        assert!(r.headers.get("set-cookie").is_none(), "the cookie is kept");
    }
    // Anonymous routes do not need the store.
    assert_eq!(browser.get(&w.url("/public"), &[]).await.status, 200);
    assert_eq!(w.up.requests(), before + 1);

    redis.resume();
    assert_eq!(
        api_once_redis_answers(&w, &browser).await,
        200,
        "RD-02: the same cookie works after recovery"
    );
}

#[tokio::test]
async fn lo_logout_on_one_replica_is_refused_on_the_others_at_once() {
    let redis = RedisServer::start();
    let w = support::idp::world_with(
        &format!("session: {{store: {{redis: {{url: '{}'}}}}}}", redis.url()),
        serde_json::json!({}),
        3,
    )
    .await;
    let browser = w.login_everywhere("alice").await;
    for (base, _) in &w.others {
        assert_eq!(browser.fetch(&format!("{base}/auth/user")).await.status, 200);
    }
    let logout = w.logout(&browser).await;
    assert_eq!(logout.status, 200);
    for (base, _) in &w.others {
        let page = browser.fetch(&format!("{base}/api/orders")).await;
        assert_eq!(page.status, 401, "replica {base} still accepts the cookie");
    }
}

#[tokio::test]
async fn session_size_in_redis_is_small_and_every_key_expires() {
    let redis = RedisServer::start();
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{}'}}}}}}",
        redis.url()
    ))
    .await;
    let (_browser, _) = w.login("alice").await;
    let keys = redis.cli(&["--scan", "--pattern", "cloakroom:*"]);
    let sessions: Vec<&str> = keys.lines().filter(|k| k.ends_with(":s")).collect();
    assert_eq!(sessions.len(), 1, "{keys}");
    let bytes: u64 = redis
        .cli(&["MEMORY", "USAGE", sessions[0]])
        .trim()
        .parse()
        .unwrap();
    eprintln!("one session in Redis: {bytes} bytes (MEMORY USAGE)");
    assert!(bytes < 8192, "{bytes} bytes per session");
    for key in keys.lines() {
        let ttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }
}

#[tokio::test]
async fn rd09_a_three_master_cluster_meets_the_contract_and_serves_logins() {
    let cluster = support::redis::RedisCluster::start();
    let seeds = cluster.seeds();
    let mut cfg = config("");
    cfg.topology = RedisTopology::Cluster(seeds.iter().map(|s| Secret::new(s.clone())).collect());
    let store = RedisStore::connect(&cfg).await.unwrap();
    support::store_contract::run_all(&store).await;
    // Session, lock and transaction keys hash-tag into one slot: the Lua
    // scripts never touch two slots (no CROSSSLOT) on any node.
    let list = seeds
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let w = world(&format!("session: {{store: {{redis: {{cluster: [{list}]}}}}}}")).await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(w.api_get(&browser).await.status, 200);
}

#[tokio::test]
async fn kr01_kr03_a_rotated_key_ring_keeps_sessions_and_reseals_cookies() {
    use support::idp::Idp;
    use support::{App, Browser, Upstream};
    const KEY1: &str = support::COOKIE_KEY;
    const KEY2: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let (a, b) = (App::bind().await, App::bind().await);
    let base_a = format!("http://127.0.0.1:{}", a.addr.port());
    let base_b = format!("http://127.0.0.1:{}", b.addr.port());
    let idp = Idp::start(serde_json::json!({"redirect_uris": [format!("{base_a}/auth/callback")]}));
    let yaml = |keys: &str| {
        format!(
            "public_url: {base_a}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{keys}]}}
session: {{store: {{redis: {{url: '{r}'}}}}}}
routes: [{{path: /api, upstream: '{u}'}}]
",
            iss = idp.issuer,
            r = redis.url(),
            u = up.url()
        )
    };
    let k1 = format!("{{id: '1', secret: {KEY1}}}");
    let k2 = format!("{{id: '2', secret: {KEY2}}}");
    // Replica A still runs the old ring; B has k2 first, k1 still accepted.
    let _a = a.start(&yaml(&k1));
    let _b = b.start(&yaml(&format!("{k2}, {k1}")));

    let browser = Browser::new(&base_a);
    browser.navigate(&format!("{base_a}/auth/login"), "alice").await;
    let old = browser.cookie(&base_a, "cloakroom").expect("logged in on A");
    browser.set_cookie(&base_b, "cloakroom", &old);
    let page = browser.fetch(&format!("{base_b}/api/x")).await;
    assert_eq!(page.status, 200, "KR-01: an old-key cookie still works");
    let new = browser.cookie(&base_b, "cloakroom").unwrap();
    assert_ne!(new, old, "re-sealed under the new primary key");
    assert_eq!(browser.fetch(&format!("{base_b}/api/x")).await.status, 200);
    // KR-03: a replica that was never given k2 cannot open the new cookie,
    // which is why k2 is added everywhere before it becomes primary.
    browser.set_cookie(&base_a, "cloakroom", &new);
    assert_eq!(browser.fetch(&format!("{base_a}/api/x")).await.status, 401);
}

/// Calls of one Redis command so far, from `INFO commandstats`.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_local_cache_serves_sessions_without_redis_round_trips() {
    let redis = RedisServer::start();
    for (local_cache, most) in [("true", 1), ("{max_entries: 1000}", 1), ("false", 20)] {
        let w = world(&format!(
            "session: {{store: {{redis: {{url: '{}', local_cache: {local_cache}}}}}}}",
            redis.url()
        ))
        .await;
        let (browser, _) = w.login("alice").await;
        assert_eq!(w.api_get(&browser).await.status, 200);
        let before = calls(&redis, "hmget");
        for _ in 0..20 {
            assert_eq!(w.api_get(&browser).await.status, 200);
        }
        let reads = calls(&redis, "hmget") - before;
        assert!(
            reads <= most,
            "local_cache {local_cache}: {reads} session reads for 20 calls"
        );
        if local_cache == "false" {
            assert_eq!(reads, 20);
        }
    }
}

#[tokio::test]
async fn rd01_n3_redis_killed_mid_run_across_3_replicas_gives_only_503s_and_loses_no_session() {
    let mut redis = RedisServer::start();
    let w = support::idp::world_with(
        &format!(
            "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms}}}}}}",
            redis.url()
        ),
        serde_json::json!({}),
        3,
    )
    .await;
    let bases = w.bases();
    // Five users, each logged in once and used on every replica.
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        users.push(w.login_everywhere(name).await);
    }
    let call = |browser: &support::Browser, base: &str| {
        let (browser, url) = (browser.clone(), format!("{base}/api/orders"));
        async move { browser.fetch(&url).await.status }
    };
    for (i, user) in users.iter().enumerate() {
        assert_eq!(call(user, &bases[i % 3]).await, 200);
    }
    redis.stop();
    // Until a replica notices its invalidation subscription is gone it may
    // still answer from its cache; after that, 503. Never a 401, never a 500.
    for (i, user) in users.iter().enumerate() {
        for base in &bases {
            let status = call(user, base).await;
            assert!(
                status == 503 || status == 200,
                "user {i} on {base} during the outage: {status}"
            );
        }
    }
    redis.resume();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, user) in users.iter().enumerate() {
        for base in &bases {
            let (limit, every) = (Duration::from_secs(3), Duration::from_millis(100));
            let status = poll(limit, every, async || call(user, base).await, |s| *s == 200).await;
            assert_eq!(status, 200, "user {i} on {base} after recovery: no session lost");
        }
    }
}

#[tokio::test]
async fn a_replica_that_cannot_hear_invalidations_stops_answering_from_its_cache() {
    let redis = RedisServer::start();
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms}}}}}}",
        redis.url()
    ))
    .await;
    let (browser, _) = w.login("alice").await;
    for _ in 0..3 {
        assert_eq!(w.api_get(&browser).await.status, 200);
    }
    // A silent Redis (a partition: nothing is closed) could be missing a
    // logout's invalidation. The subscription's heartbeat notices within
    // seconds, far inside the cache's 30 s age limit, and the cache stops
    // answering: requests then need Redis, and get 503.
    redis.freeze();
    let mut seen = Vec::new();
    let call = async || {
        let status = w.api_get(&browser).await.status;
        seen.push(status);
        assert!(status == 503 || status == 200, "{seen:?}");
        status
    };
    let status = poll(Duration::from_secs(15), Duration::from_millis(250), call, |s| {
        *s == 503
    })
    .await;
    assert_eq!(status, 503, "the cache kept answering: {seen:?}");
    redis.thaw();
    assert_eq!(
        api_once_redis_answers(&w, &browser).await,
        200,
        "the same cookie works once Redis answers"
    );
}

fn redis_world_yaml(redis: &RedisServer) -> String {
    format!(
        "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms, local_cache: false}}}}}}",
        redis.url()
    )
}

#[tokio::test]
async fn rd03_rd12_redis_down_at_login_or_callback_is_503_and_the_retry_works() {
    let mut redis = RedisServer::start();
    let w = world(&redis_world_yaml(&redis)).await;
    let browser = support::Browser::new(&w.base);
    // Serving (so connected to Redis) before Redis goes away.
    assert_eq!(browser.get(&w.url("/public"), &[]).await.status, 200);

    // Starting a login stores nothing: it works with Redis down.
    redis.stop();
    let page = browser.get(&w.url("/auth/login"), &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    redis.resume();

    // Whether the login was already completed cannot be checked: fail
    // closed, no partial session, and the pre-auth cookie is kept.
    let callback = w.callback_url(&browser, "alice").await;
    let pre_auth = browser.login_cookies(&w.base);
    redis.stop();
    let page = browser.get(&callback, &[]).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        browser.cookie(&w.base, "cloakroom").is_none(),
        "no session cookie"
    );
    assert_eq!(browser.login_cookies(&w.base), pre_auth);
    redis.resume();
    // The code was never exchanged: the same callback completes the login.
    let page = browser.get(&callback, &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(w.api_get(&browser).await.status, 200);
}

#[tokio::test]
async fn rd08_a_full_noeviction_redis_refuses_writes_with_503_and_logs_nobody_out() {
    let redis = RedisServer::start();
    let w = world(&redis_world_yaml(&redis)).await;
    let (browser, _) = w.login("alice").await;
    let newcomer = support::Browser::new(&w.base);
    let callback = w.callback_url(&newcomer, "bob").await;
    // Full: every write is refused with OOM.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let page = newcomer.get(&callback, &[]).await;
    assert_eq!(page.status, 503, "a new login cannot be claimed: {}", page.body);
    assert!(page.body.contains("session_store_unavailable"));
    assert!(newcomer.cookie(&w.base, "cloakroom").is_none());
    // Reads still work: the existing session is served.
    assert_eq!(w.api_get(&browser).await.status, 200);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    // The code was not exchanged: the same callback completes the login.
    assert_eq!(newcomer.get(&callback, &[]).await.status, 302);
    assert_eq!(w.api_get(&newcomer).await.status, 200);
}

#[tokio::test]
async fn lg24_anonymous_logins_store_nothing() {
    let redis = RedisServer::start();
    let w = world(&redis_world_yaml(&redis)).await;
    let (browser, _) = w.login("alice").await;
    let keys = || redis.cli(&["DBSIZE"]).trim().to_owned();
    let before = keys();
    let long = format!("/auth/login?return_to=/{}", "r".repeat(1000));
    for _ in 0..300 {
        // A fresh client each time, as a flood would come.
        let page = support::Browser::new(&w.base).get(&w.url(&long), &[]).await;
        assert_eq!(page.status, 302);
    }
    assert_eq!(keys(), before, "no key for any of the 300 logins");
    // Junk callbacks with a real pending login claim nothing either.
    let victimless = support::Browser::new(&w.base);
    let callback = w.callback_url(&victimless, "bob").await;
    let junk = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = junk
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "code" { "junk".into() } else { v.to_string() },
            )
        })
        .collect();
    let mut junk = junk.clone();
    junk.query_pairs_mut().clear().extend_pairs(&pairs);
    let listed = || -> std::collections::BTreeSet<String> {
        redis.cli(&["--scan"]).lines().map(str::to_owned).collect()
    };
    let known = listed();
    assert_eq!(victimless.get(junk.as_str(), &[]).await.status, 400);
    // A code the IdP refused keeps its login's claim, so that login's state
    // can never spend the client secret again (LG-28): one small key, gone
    // when the login would have expired (login_timeout + 5 min of grace).
    let added: Vec<String> = listed().difference(&known).cloned().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(added[0].ends_with(":done"), "{added:?}");
    let ttl: u64 = redis.cli(&["TTL", &added[0]]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 15 * 60, "{ttl}");
    assert_eq!(w.api_get(&browser).await.status, 200);
}

#[tokio::test]
async fn rd13_rd14_a_corrupt_or_vanished_record_is_a_clean_401() {
    let redis = RedisServer::start();
    let w = world(&redis_world_yaml(&redis)).await;

    let (alice, _) = w.login("alice").await;
    let key = redis
        .cli(&["--scan", "--pattern", "cloakroom:*:s"])
        .trim()
        .to_owned();
    assert_eq!(redis.cli(&["HSET", &key, "d", "not a sealed record"]).trim(), "0");
    let page = w.api_get(&alice).await;
    assert_eq!(page.status, 401, "RD-13: {}", page.body);
    assert!(page.body.contains("login_required") && page.clears_a_cookie());

    let (bob, _) = w.login("bob").await;
    assert_eq!(w.api_get(&bob).await.status, 200);
    // Redis restarted empty.
    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
    let page = w.api_get(&bob).await;
    assert_eq!(page.status, 401, "RD-14: {}", page.body);
    assert!(page.body.contains("login_required") && page.clears_a_cookie());
    let (_, page) = w.login("bob").await;
    assert_eq!(page.status, 200, "a clean re-login");
}
