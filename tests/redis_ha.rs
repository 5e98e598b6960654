//! Redis as production runs it: TLS with client certificates, a primary
//! with a replica behind Sentinel, `WAIT`, and a failover under a live
//! session. Every server is a real `redis-server` started here.

mod support;

use std::time::Duration;

use bytes::Bytes;
use cloakroom::config::{RedisConfig, RedisTls, RedisTopology, RedisWait};
use cloakroom::secret::Secret;
use cloakroom::session::{RedisStore, SessionStore};
use support::idp::world;
use support::pki::Pki;
use support::redis::RedisServer;
use support::wait::{poll, until_blocking};

const MASTER: &str = "cloakroom";

fn tls(pki: &Pki, client_certificate: bool) -> RedisTls {
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    RedisTls {
        ca: Some(read("ca")),
        cert: client_certificate.then(|| read("client")),
        key: client_certificate.then(|| Secret::new(read("client-key"))),
    }
}

fn sentinel_config(sentinel: &RedisServer) -> RedisConfig {
    RedisConfig {
        topology: RedisTopology::Sentinel {
            master_name: MASTER.into(),
            nodes: vec![Secret::new(sentinel.url())],
        },
        wait: Some(RedisWait {
            replicas: 1,
            timeout: Duration::from_millis(200),
        }),
        command_timeout: Duration::from_secs(1),
        local_cache: None,
        ..RedisConfig::standalone("")
    }
}

/// Waits until the sentinel has found the replica through the primary.
fn await_sentinel_sees_replica(sentinel: &RedisServer) {
    let what = "sentinel never saw the replica";
    until_blocking(Duration::from_secs(20), Duration::from_millis(100), what, || {
        sentinel.cli(&["SENTINEL", "REPLICAS", MASTER]).contains("slave")
    });
}

#[tokio::test]
async fn t09_tls_with_a_client_certificate_meets_the_contract_and_nothing_less_connects() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, true);
    let mut config = RedisConfig::standalone(&redis.url());
    config.tls = tls(&pki, true);
    let store = RedisStore::connect(&config).await.unwrap();
    support::store_contract::run_all(&store).await;

    // Without the client certificate the server refuses us; without the CA
    // its certificate is not trusted. Either way the start fails and says why.
    let refused = |config: RedisConfig| async move {
        match RedisStore::connect(&config).await {
            Ok(_) => panic!("connected"),
            Err(e) => e.to_string(),
        }
    };
    config.tls = tls(&pki, false);
    let error = refused(config.clone()).await;
    assert!(error.contains("CertificateRequired"), "{error}");
    config.tls = RedisTls::default();
    let error = refused(config.clone()).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // Plain TCP to a TLS port gets nowhere either.
    let plain = RedisConfig::standalone(&redis.url().replace("rediss://", "redis://"));
    assert!(RedisStore::connect(&plain).await.is_err(), "plain TCP");
}

#[tokio::test]
async fn t09_a_login_over_tls_reads_certificates_from_files_and_uses_the_local_cache() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, true);
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{url}', tls: {{ca_file: '{ca}', cert_file: '{cert}', key_file: '{key}'}}}}}}}}",
        url = redis.url(),
        ca = pki.path("ca"),
        cert = pki.path("client"),
        key = pki.path("client-key"),
    ))
    .await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(w.api_get(&browser).await.status, 200);
    assert!(
        redis.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() >= 1,
        "the session is in Redis"
    );
    let logout = w.logout(&browser).await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert_eq!(w.api_get(&browser).await.status, 401);
}

#[tokio::test]
async fn rd06_sentinel_meets_the_contract_and_wait_puts_every_write_on_the_replica() {
    let primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinel = RedisServer::sentinel(&primary, MASTER);
    let store = RedisStore::connect(&sentinel_config(&sentinel)).await.unwrap();
    support::store_contract::run_all(&store).await;

    // WAIT returns only once the replica has the write, so it is there
    // the moment `put` returns.
    for i in 0..20 {
        let key = format!("cloakroom:{{w{i}}}:s");
        store
            .put(&key, Bytes::from_static(b"sealed"), 0, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(replica.cli(&["HGET", &key, "d"]).trim(), "sealed", "write {i}");
    }

    // A replica that stops answering slows writes down to the WAIT timeout
    // once, then not at all; it never fails them.
    replica.freeze();
    for i in 0..5 {
        let key = format!("cloakroom:{{frozen{i}}}:s");
        let put = store
            .put(&key, Bytes::from_static(b"x"), 0, Duration::from_secs(60))
            .await;
        assert!(put.is_ok(), "write {i} with the replica frozen: {put:?}");
    }
    replica.thaw();
    assert_eq!(primary.cli(&["EXISTS", "cloakroom:{frozen4}:s"]).trim(), "1");
}

/// How the primary is lost.
enum Fault {
    /// SIGKILL: connections are reset at once.
    Crash,
    /// SIGSTOP: connections stay open and nothing answers (a partition).
    Silence,
}

/// A primary with one replica behind a sentinel, a live session, then the
/// primary lost: every answer meanwhile is 200 or 503, and the same cookie
/// works once the sentinel has promoted the replica.
async fn failover(fault: Fault) {
    let mut primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinel = RedisServer::sentinel(&primary, MASTER);
    await_sentinel_sees_replica(&sentinel);
    let w = world(&format!(
        "session: {{store: {{redis: {{sentinel: {{master_name: {MASTER}, nodes: ['{}']}}, \
         wait: {{replicas: 1, timeout: 200ms}}, command_timeout: 1s, local_cache: false}}}}}}",
        sentinel.url()
    ))
    .await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(w.api_get(&browser).await.status, 200);

    match fault {
        Fault::Crash => primary.kill(),
        Fault::Silence => primary.freeze(),
    }
    let mut seen = Vec::new();
    let recovered = async || {
        let status = w.api_get(&browser).await.status;
        seen.push(status);
        assert!(
            status == 200 || status == 503,
            "only 200 or 503 during a failover: {seen:?}"
        );
        status == 200 && replica.cli(&["ROLE"]).starts_with("master")
    };
    let (limit, every) = (Duration::from_secs(40), Duration::from_millis(200));
    let recovered = poll(limit, every, recovered, |done| *done).await;
    assert!(recovered, "no recovery after the failover: {seen:?}");
    // The session written with WAIT survived on the promoted replica, and
    // new logins land there too.
    let (_, page) = w.login("bob").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(replica.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() >= 2);
}

#[tokio::test]
async fn rd06_a_crashed_primary_fails_over_keeping_the_session_with_only_503_meanwhile() {
    failover(Fault::Crash).await;
}

#[tokio::test]
async fn rd06_a_silent_primary_is_abandoned_for_the_promoted_replica() {
    failover(Fault::Silence).await;
}

/// The ACL a production deployment should give cloakroom: its own keys and
/// channel, reads, writes, scripts, pub/sub and `WAIT`; nothing else.
const LEAST_PRIVILEGE: &[&str] = &[
    "ACL",
    "SETUSER",
    "cloakroom",
    "on",
    ">s3cret",
    "resetkeys",
    "~cloakroom:*",
    "resetchannels",
    "&cloakroom:invalidate",
    "&cloakroom:ended",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@pubsub",
    "+@connection",
    "+wait",
    "-@dangerous",
];

#[tokio::test]
async fn rd11_a_least_privilege_acl_user_is_enough_and_its_password_is_checked() {
    let redis = RedisServer::start();
    assert_eq!(redis.cli(LEAST_PRIVILEGE).trim(), "OK");
    let mut config = RedisConfig::standalone(&redis.url());
    config.username = Some("cloakroom".into());
    config.password = Some(Secret::new("s3cret".into()));
    let store = RedisStore::connect(&config).await.unwrap();
    support::store_contract::run_all(&store).await;

    config.password = Some(Secret::new("wrong".into()));
    match RedisStore::connect(&config).await {
        Ok(_) => panic!("a wrong password connected"),
        Err(e) => assert!(
            !e.to_string().contains("wrong"),
            "the password is not echoed: {e}"
        ),
    }

    // A whole login, with the local cache's subscription, as that user.
    let w = world(&format!(
        "session: {{store: {{redis: {{url: '{}', username: cloakroom, password: s3cret}}}}}}",
        redis.url()
    ))
    .await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(w.api_get(&browser).await.status, 200);
}
