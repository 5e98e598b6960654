//! `session.record_format` in a rolling upgrade: two replicas on one
//! Redis, one writing records compact (format 2) and one JSON (format 1),
//! serve the same sessions through logins, touches and refreshes (which
//! bring new ID tokens), both ways round, against the real IdP: nobody is
//! signed out, and `/auth/user`, access rules and the upstream's bearer
//! are the same on either (threat-model N2, RD-13).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::{json, Value};

use cloakroom::clock::Clock;
use cloakroom::config::{Config, MapEnv, StoreConfig};
use cloakroom::session::{RedisStore, Sessions};
use support::idp::Idp;
use support::redis::RedisServer;
use support::{bearer_at, App, Browser, Upstream, COOKIE_KEY, SESSION_COOKIE};

/// Past the refresh point of the IdP's 300 s access tokens (less than 60 s
/// left), short of the 30 min idle timeout; past the minute between writes
/// of a session's activity too.
const DUE: Duration = Duration::from_secs(250);

/// One replica's config: `format` its `session.record_format`, and
/// `extra` the rest of its `session` section and further routes.
fn yaml(base: &str, idp: &Idp, redis: &RedisServer, up: &Upstream, oidc: &str, format: &str) -> String {
    format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret{oidc}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
session:
  store: {{redis: {{url: '{r}', local_cache: false}}}}
  claims: [sub, name, email, groups]
  record_format: {format}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /ops, upstream: '{u}', access: {{groups: [ops]}}}}
  - {{path: /, upstream: '{u}', auth: none}}
",
        iss = idp.issuer,
        r = redis.url(),
        u = up.url()
    )
}

/// The format the session `cookie` names is stored in, read with the
/// library as a replica reads it.
async fn stored_format(yaml: &str, cookie: &str) -> u32 {
    let config = Config::load(yaml, &MapEnv::default()).unwrap();
    let StoreConfig::Redis(redis) = &config.session.store else {
        unreachable!("a Redis store")
    };
    let store = RedisStore::connect(redis).await.unwrap();
    let sessions = Sessions::new(&config, Arc::new(store), Clock::system(), Arc::default()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("cookie", format!("{SESSION_COOKIE}={cookie}").parse().unwrap());
    sessions.open(&headers, None).await.unwrap().record.format
}

/// What a replica shows of the session: `/auth/user` (less its idle
/// expiry, which activity moves), whether `/ops`'s rule admits it, and
/// the bearer.
async fn seen(browser: &Browser, base: &str) -> (Value, u16, String) {
    let mut user = browser.fetch(&format!("{base}/auth/user")).await.json();
    user.as_object_mut().unwrap().remove("idle_expires_at");
    let ops = browser.fetch(&format!("{base}/ops/x")).await.status;
    let (status, bearer) = bearer_at(browser, base, "/api/x").await;
    assert_eq!(status, 200, "{base}: {bearer}");
    (user, ops, bearer)
}

/// Logs in on the first of two replicas, writing `formats[0]` and
/// `formats[1]`, and uses the session on both in turn, each refreshing it
/// once; `settings` for the IdP, `oidc` added to the `oidc` section.
async fn two_replicas(formats: [&str; 2], settings: Value, oidc: &str) {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let (a, b) = (App::bind().await, App::bind().await);
    let bases = [a.addr, b.addr].map(|addr| format!("http://127.0.0.1:{}", addr.port()));
    let mut idp_settings = json!({"redirect_uris": [format!("{}/auth/callback", bases[0])]});
    for (k, v) in settings.as_object().unwrap() {
        idp_settings[k] = v.clone();
    }
    let idp = Idp::start(idp_settings);
    let yamls = formats.map(|format| yaml(&bases[0], &idp, &redis, &up, oidc, format));
    let numbers = formats.map(|format| if format == "compact" { 2 } else { 1 });
    let clock = Clock::manual();
    let _a = a.start_with_clock(&yamls[0], clock.clone());
    let _b = b.start_with_clock(&yamls[1], clock.clone());

    let browser = Browser::new(&bases[0]);
    let (page, _) = browser
        .navigate(&format!("{}/auth/login", bases[0]), "alice")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    browser.carry_session(&bases[0], &bases[1]);
    let cookie = browser.cookie(&bases[0], SESSION_COOKIE).unwrap();
    assert_eq!(
        stored_format(&yamls[0], &cookie).await,
        numbers[0],
        "as the login wrote it"
    );

    let (user, ops, bearer) = seen(&browser, &bases[0]).await;
    assert_eq!(user["sub"], "alice", "{user}");
    assert_eq!(user["groups"], json!(["ops"]), "{user}");
    assert_eq!(ops, 200, "admitted by the rule");
    assert_eq!(
        seen(&browser, &bases[1]).await,
        (user.clone(), ops, bearer.clone())
    );

    // Each replica in turn refreshes the session and writes it in its
    // format; the other reads it.
    let mut last = bearer;
    for (writer, reader) in [(1, 0), (0, 1)] {
        clock.advance(DUE);
        let (user_now, ops_now, refreshed) = seen(&browser, &bases[writer]).await;
        assert_ne!(refreshed, last, "replica {writer} refreshed the token");
        assert_eq!((&user_now, ops_now), (&user, ops), "replica {writer}");
        assert_eq!(
            stored_format(&yamls[writer], &cookie).await,
            numbers[writer],
            "replica {writer} wrote it"
        );
        let read = seen(&browser, &bases[reader]).await;
        assert_eq!(read, (user.clone(), ops, refreshed.clone()), "replica {reader}");
        last = refreshed;
    }
    let stats = idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 2, "{stats}");
}

#[tokio::test]
async fn n2_a_compact_record_is_read_by_a_json_replica_and_the_reverse() {
    two_replicas(
        ["compact", "json"],
        json!({"users": {"alice": {"groups": ["ops"]}}}),
        "",
    )
    .await;
}

#[tokio::test]
async fn n2_a_json_record_is_read_by_a_compact_replica_with_claims_from_userinfo() {
    // Thin ID tokens: `name`, `email` and `groups` come from UserInfo.
    two_replicas(
        ["json", "compact"],
        json!({"userinfo_tokens": true, "users": {"alice": {"groups": ["ops"]}}}),
        ", userinfo: true",
    )
    .await;
}
