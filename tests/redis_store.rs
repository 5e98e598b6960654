//! The Redis store against a real `redis-server`: the store contract, and
//! what users see when Redis is slow, down, or back.

mod support;

use std::time::Duration;

use bytes::Bytes;
use cloakroom::config::RedisConfig;
use cloakroom::secret::Secret;
use cloakroom::session::{RedisStore, SessionStore, StoreError};
use support::idp::world;
use support::redis::RedisServer;

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        url: Secret::new(url.to_owned()),
        cluster: vec![],
        command_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&config(&redis.url())).await.unwrap();
    cloakroom::session::contract::run_all(&store).await;
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
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{}', command_timeout: 300ms}}}}}}",
        redis.url()
    ))
    .await;
    let (browser, _) = w.login("alice").await;
    let csrf = [("x-csrf", "1")];
    assert_eq!(w.api(&browser, reqwest::Method::GET, &csrf).await.status, 200);

    redis.stop();
    let before = w.up.requests();
    for _ in 0..3 {
        let r = w.api(&browser, reqwest::Method::GET, &csrf).await;
        assert_eq!(r.status, 503, "RD-01: {}", r.body);
        assert!(r.body.contains("session_store_unavailable"));
        assert!(r.headers.contains_key("retry-after"));
        assert!(r.headers.get("set-cookie").is_none(), "the cookie is kept");
    }
    // Anonymous routes do not need the store.
    assert_eq!(browser.get(&w.url("/public"), &[]).await.status, 200);
    assert_eq!(w.up.requests(), before + 1);

    redis.resume();
    let mut status = 0;
    for _ in 0..50 {
        status = w.api(&browser, reqwest::Method::GET, &csrf).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "RD-02: the same cookie works after recovery");
}
