//! The revocation queue in-process, on the memory store: ends without the
//! cookie revoke, an IdP that fails is retried, a rotated key ring still
//! opens what was sealed, two replicas never revoke the same tokens twice,
//! and `revoke_on_end: false` keeps nothing beside a record.
//!
//! The revocation endpoint is a few lines of hyper below, answering what
//! the test sets: a real IdP cannot be told to fail on cue. The same cases
//! end to end, against the real IdP, are in tests/revocation.rs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::Revoker;
use crate::clock::Clock;
use crate::config::{Config, MapEnv};
use crate::metrics::{EndReason, Metrics};
use crate::oidc::Idp;
use crate::session::revocation::QUEUE;
use crate::session::{MemoryStore, SessionStore, Sessions};

/// A revocation endpoint answering with the status the test sets.
struct Endpoint {
    /// Every token whose revocation was acknowledged, in order.
    revoked: Mutex<Vec<String>>,
    /// Requests answered with a failure.
    failed: Mutex<u32>,
    status: AtomicU16,
}

impl Endpoint {
    async fn serve(self: Arc<Self>, issuer: String, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let form = request.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
        let mut status = 200;
        let body = match path.as_str() {
            "/.well-known/openid-configuration" => json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "revocation_endpoint": format!("{issuer}/revoke"),
                "code_challenge_methods_supported": ["S256"],
            }),
            "/revoke" => {
                status = self.status.load(Ordering::SeqCst);
                if status == 200 {
                    self.revoked.lock().unwrap().push(form["token"].clone());
                } else {
                    *self.failed.lock().unwrap() += 1;
                }
                json!({})
            }
            _ => json!({ "keys": [] }),
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        response
    }

    fn revoked(&self) -> Vec<String> {
        self.revoked.lock().unwrap().clone()
    }
}

const KEY_1: &str = "q83vEjRWeJASNFZ4kKvN7xI0VniQq83vEjRWeJASNFY";
const KEY_2: &str = "NFZ4kKvN7xI0VniQq83vEjRWeJASNFZ4kKvN7xI0VnI";

/// One store, one endpoint, and replicas on them.
struct Bench {
    endpoint: Arc<Endpoint>,
    store: Arc<dyn SessionStore>,
    issuer: String,
    metrics: Arc<Metrics>,
}

impl Bench {
    async fn start() -> Self {
        let endpoint = Arc::new(Endpoint {
            revoked: Mutex::default(),
            failed: Mutex::default(),
            status: AtomicU16::new(200),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn({
            let (endpoint, issuer) = (endpoint.clone(), issuer.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (endpoint, issuer) = (endpoint.clone(), issuer.clone());
                    let service = hyper::service::service_fn(move |request| {
                        let (endpoint, issuer) = (endpoint.clone(), issuer.clone());
                        async move { Ok::<_, std::convert::Infallible>(endpoint.serve(issuer, request).await) }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            }
        });
        Self {
            endpoint,
            store: Arc::new(MemoryStore::new()),
            issuer,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// A replica's config: `keys` (the first seals), and `session` extra.
    fn config(&self, keys: &[(&str, &str)], session: &str) -> Config {
        let keys: Vec<String> = keys
            .iter()
            .map(|(id, secret)| format!("{{id: '{id}', secret: {secret}}}"))
            .collect();
        let yaml = format!(
            "public_url: http://localhost:8080
oidc: {{issuer: '{}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{}]}}
session: {{{session}}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]",
            self.issuer,
            keys.join(", ")
        );
        Config::load(&yaml, &MapEnv::default()).unwrap()
    }

    fn sessions(&self, config: &Config) -> Arc<Sessions> {
        let sessions = Sessions::new(config, self.store.clone(), Clock::manual(), self.metrics.clone());
        Arc::new(sessions.unwrap())
    }

    /// A replica working the queue with `sessions`.
    fn worker(&self, config: &Config, sessions: &Arc<Sessions>) -> Arc<Revoker> {
        let idp = Idp::new(config.oidc.clone().unwrap(), Clock::manual()).unwrap();
        Revoker::spawn(sessions.clone(), idp)
    }

    /// Signs `sub` in with refresh token `rt`; the request headers.
    async fn login(&self, sessions: &Sessions, sub: &str, rt: &str) -> HeaderMap {
        let tokens = serde_json::from_value(json!({
            "access_token": "at", "refresh_token": rt, "token_type": "Bearer", "expires_in": 300,
        }))
        .unwrap();
        let claims = json!({"iss": "https://idp", "sub": sub, "sid": format!("sid-{rt}")});
        let cookie = sessions
            .create(tokens, claims.as_object().unwrap().clone(), None, None)
            .await
            .unwrap()
            .cookie;
        let mut headers = HeaderMap::new();
        let value = format!("{}={cookie}", sessions.names.session);
        headers.insert("cookie", HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn counted(&self, series: &str) -> bool {
        self.metrics.encode(true).lines().any(|l| l == series)
    }

    /// Waits until `done` holds of the endpoint, five seconds at most.
    async fn until(&self, what: &str, done: impl Fn(&Endpoint) -> bool) {
        for _ in 0..250 {
            if done(&self.endpoint) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: revoked {:?}", self.endpoint.revoked());
    }
}

#[tokio::test]
async fn lo12_sessions_ended_without_their_cookie_are_revoked() {
    let bench = Bench::start().await;
    let config = bench.config(&[("1", KEY_1)], "");
    let sessions = bench.sessions(&config);
    let _worker = bench.worker(&config, &sessions);
    bench.login(&sessions, "alice", "rt-a1").await;
    bench.login(&sessions, "alice", "rt-a2").await;
    let bob = bench.login(&sessions, "bob", "rt-b").await;

    // The admin API's way: by subject, no cookie anywhere.
    let ended = sessions
        .end_subject("https://idp", "alice", EndReason::Admin)
        .await
        .unwrap();
    assert_eq!(ended, 2);
    bench.until("both revoked", |e| e.revoked().len() == 2).await;
    let mut revoked = bench.endpoint.revoked();
    revoked.sort();
    assert_eq!(revoked, ["rt-a1", "rt-a2"]);
    assert!(sessions.open(&bob, None).await.is_ok(), "bob's session lives on");
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"queued\"} 2"));
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"done\"} 2"));
    assert_eq!(bench.store.queue_len(QUEUE).await.unwrap(), 0);
}

#[tokio::test]
async fn lo05_an_idp_that_fails_is_asked_again_until_it_revokes() {
    let bench = Bench::start().await;
    let config = bench.config(&[("1", KEY_1)], "");
    let sessions = bench.sessions(&config);
    bench.endpoint.status.store(503, Ordering::SeqCst);
    let _worker = bench.worker(&config, &sessions);
    let alice = bench.login(&sessions, "alice", "rt-a").await;
    let loaded = sessions.open(&alice, None).await.unwrap();
    sessions
        .end_opened(&loaded.key, &loaded.record, EndReason::Logout, None)
        .await
        .unwrap();
    // Asked twice (the first try, then one retry), refused both times.
    bench.until("retried", |e| *e.failed.lock().unwrap() >= 2).await;
    assert!(bench.endpoint.revoked().is_empty());
    assert_eq!(bench.store.queue_len(QUEUE).await.unwrap(), 1, "still queued");
    bench.endpoint.status.store(200, Ordering::SeqCst);
    bench.until("revoked", |e| e.revoked() == ["rt-a"]).await;
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"failed\"} 2"));
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"done\"} 1"));
}

#[tokio::test]
async fn kr01_a_revocation_sealed_before_a_key_rotation_still_opens() {
    let bench = Bench::start().await;
    let before = bench.config(&[("1", KEY_1)], "");
    let old = bench.sessions(&before);
    bench.login(&old, "alice", "rt-a").await;
    // The session ends on a replica of the old ring, while no worker runs.
    old.end_subject("https://idp", "alice", EndReason::Admin)
        .await
        .unwrap();
    // A replica with the rotated ring (key 2 first, key 1 still in it).
    let after = bench.config(&[("2", KEY_2), ("1", KEY_1)], "");
    let rotated = bench.sessions(&after);
    let _worker = bench.worker(&after, &rotated);
    bench.until("revoked", |e| e.revoked() == ["rt-a"]).await;
}

#[tokio::test]
async fn kr02_a_revocation_sealed_with_a_removed_key_is_dropped_and_counted() {
    let bench = Bench::start().await;
    let before = bench.config(&[("1", KEY_1)], "");
    let old = bench.sessions(&before);
    bench.login(&old, "alice", "rt-a").await;
    old.end_subject("https://idp", "alice", EndReason::Admin)
        .await
        .unwrap();
    let after = bench.config(&[("2", KEY_2)], "");
    let _worker = bench.worker(&after, &bench.sessions(&after));
    for _ in 0..250 {
        if bench.counted("cloakroom_revocations_total{outcome=\"dropped\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"dropped\"} 1"));
    assert!(bench.endpoint.revoked().is_empty());
    assert_eq!(
        bench.store.queue_len(QUEUE).await.unwrap(),
        0,
        "not retried forever"
    );
}

#[tokio::test]
async fn two_replicas_never_revoke_the_same_tokens_twice() {
    let bench = Bench::start().await;
    let config = bench.config(&[("1", KEY_1)], "max_per_user: 100");
    let sessions = bench.sessions(&config);
    for n in 0..40 {
        bench.login(&sessions, "alice", &format!("rt-{n}")).await;
    }
    // Queued before any worker runs; then two replicas work the queue.
    sessions
        .end_subject("https://idp", "alice", EndReason::Admin)
        .await
        .unwrap();
    let (_first, _second) = (
        bench.worker(&config, &sessions),
        bench.worker(&config, &bench.sessions(&config)),
    );
    bench.until("all revoked", |e| e.revoked().len() >= 40).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut revoked = bench.endpoint.revoked();
    revoked.sort();
    revoked.dedup();
    assert_eq!(revoked.len(), 40, "each once");
    assert_eq!(bench.endpoint.revoked().len(), 40, "none twice");
}

#[tokio::test]
async fn without_revoke_on_end_nothing_is_kept_beside_a_record_but_logout_revokes() {
    let bench = Bench::start().await;
    let config = bench.config(&[("1", KEY_1)], "revoke_on_end: false");
    let sessions = bench.sessions(&config);
    let _worker = bench.worker(&config, &sessions);
    let alice = bench.login(&sessions, "alice", "rt-a").await;
    let bob = bench.login(&sessions, "bob", "rt-b").await;
    let key = sessions.open(&alice, None).await.unwrap().key;
    assert_eq!(
        bench.store.take(&key).await.unwrap(),
        None,
        "no refresh token beside the record"
    );

    // Without the cookie, nothing to revoke with ...
    sessions
        .end_subject("https://idp", "bob", EndReason::Admin)
        .await
        .unwrap();
    assert!(sessions.open(&bob, None).await.is_err());
    // ... with it (a logout), the record's own token.
    let carol = bench.login(&sessions, "carol", "rt-c").await;
    let loaded = sessions.open(&carol, None).await.unwrap();
    sessions
        .end_opened(&loaded.key, &loaded.record, EndReason::Logout, None)
        .await
        .unwrap();
    bench.until("carol's revoked", |e| e.revoked() == ["rt-c"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bench.endpoint.revoked(), ["rt-c"], "bob's was not");
}

#[tokio::test]
async fn a_replaced_session_is_not_revoked_its_successor_may_share_the_grant() {
    let bench = Bench::start().await;
    let config = bench.config(&[("1", KEY_1)], "");
    let sessions = bench.sessions(&config);
    let _worker = bench.worker(&config, &sessions);
    let old = bench.login(&sessions, "alice", "rt-old").await;
    let loaded = sessions.open(&old, None).await.unwrap();
    sessions
        .end_opened(&loaded.key, &loaded.record, EndReason::Replaced, None)
        .await
        .unwrap();
    let gone = bench.login(&sessions, "alice", "rt-gone").await;
    let loaded = sessions.open(&gone, None).await.unwrap();
    sessions
        .end_opened(&loaded.key, &loaded.record, EndReason::EndedByUser, None)
        .await
        .unwrap();
    bench.until("revoked", |e| e.revoked() == ["rt-gone"]).await;
    assert!(bench.counted("cloakroom_revocations_total{outcome=\"queued\"} 1"));
}

#[test]
fn the_backoff_doubles_up_to_its_cap() {
    use super::{backoff, FIRST_RETRY, LAST_RETRY};
    assert_eq!(backoff(0), FIRST_RETRY);
    assert_eq!(backoff(1), FIRST_RETRY * 2);
    assert_eq!(backoff(5), FIRST_RETRY * 32);
    assert_eq!(backoff(9), LAST_RETRY);
    assert_eq!(backoff(u32::MAX), LAST_RETRY);
}
