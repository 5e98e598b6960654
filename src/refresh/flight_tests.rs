//! The refresh algorithm in-process, on the memory store and a manual clock:
//! single flight, waiting on another replica, a lost lease (RF-06) and a
//! logout during a refresh (RF-15), each in milliseconds.
//!
//! The token endpoint is a few lines of hyper below: these tests need to
//! hold each token call until the test lets it answer, which the IdP of the
//! integration tests (tests/refresh.rs, the same cases end to end) can only
//! approximate with fixed delays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::{RefreshError, Refresher};
use crate::clock::Clock;
use crate::config::{Config, MapEnv};
use crate::metrics::Metrics;
use crate::oidc::Idp;
use crate::session::{lock, Loaded, MemoryStore, SessionStore, Sessions};

/// A token endpoint whose answers the test releases one by one.
#[derive(Default)]
struct Endpoint {
    /// The refresh token of every refresh grant received, in order.
    grants: Mutex<Vec<String>>,
    /// Every token revoked, in order.
    revoked: Mutex<Vec<String>>,
    /// Grant `n` answers once `gates[n]` is notified (when `held`).
    gates: Mutex<Vec<Arc<tokio::sync::Notify>>>,
    held: std::sync::atomic::AtomicBool,
}

impl Endpoint {
    fn gate(&self, n: usize) -> Arc<tokio::sync::Notify> {
        let mut gates = self.gates.lock().unwrap();
        while gates.len() <= n {
            gates.push(Default::default());
        }
        gates[n].clone()
    }

    /// Lets grant `n` (from 0) answer.
    fn release(&self, n: usize) {
        self.gate(n).notify_one();
    }

    /// From now on, each grant waits for [`Endpoint::release`].
    fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn grants(&self) -> Vec<String> {
        self.grants.lock().unwrap().clone()
    }

    async fn until_grants(&self, n: usize) {
        for _ in 0..500 {
            if self.grants.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("{n} grants never arrived: {:?}", self.grants());
    }

    async fn serve(self: Arc<Self>, issuer: String, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let form = request.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
        let body = match path.as_str() {
            "/.well-known/openid-configuration" => json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "revocation_endpoint": format!("{issuer}/revoke"),
                "code_challenge_methods_supported": ["S256"],
            }),
            "/jwks" => json!({ "keys": [] }),
            "/revoke" => {
                self.revoked.lock().unwrap().push(form["token"].clone());
                json!({})
            }
            _ => {
                let n = {
                    let mut grants = self.grants.lock().unwrap();
                    grants.push(form["refresh_token"].clone());
                    grants.len() - 1
                };
                if self.held.load(std::sync::atomic::Ordering::SeqCst) {
                    self.gate(n).notified().await;
                }
                json!({
                    "access_token": format!("at-{}", n + 1),
                    "refresh_token": format!("rt-{}", n + 1),
                    "token_type": "Bearer",
                    "expires_in": 300,
                })
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        response
    }
}

/// One store and clock, an endpoint, and replicas that share them.
struct Bench {
    endpoint: Arc<Endpoint>,
    store: Arc<dyn SessionStore>,
    clock: Clock,
    sessions: Arc<Sessions>,
    config: Config,
}

impl Bench {
    async fn start() -> Self {
        let endpoint = Arc::new(Endpoint::default());
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
        let yaml = format!(
            "public_url: http://localhost:8080
oidc: {{issuer: '{issuer}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: q83vEjRWeJASNFZ4kKvN7xI0VniQq83vEjRWeJASNFY}}]}}
session: {{refresh_skew: 10s}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]"
        );
        let config = Config::load(&yaml, &MapEnv::default()).unwrap();
        let clock = Clock::manual();
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let metrics = Arc::new(Metrics::new());
        let sessions = Arc::new(Sessions::new(&config, store.clone(), clock.clone(), metrics).unwrap());
        Self {
            endpoint,
            store,
            clock,
            sessions,
            config,
        }
    }

    /// A replica: its own refresh flights and IdP client, the shared store.
    fn replica(&self) -> Arc<Refresher> {
        let idp = Idp::new(self.config.oidc.clone().unwrap(), self.clock.clone()).unwrap();
        Refresher::new(self.sessions.clone(), idp)
    }

    /// `n` signed-in sessions whose access tokens are all due at once.
    async fn due_sessions(&self, n: usize) -> Vec<Loaded> {
        let mut cookies = Vec::new();
        for _ in 0..n {
            let tokens = serde_json::from_value(json!({
                "access_token": "at-0", "refresh_token": "rt-0",
                "token_type": "Bearer", "expires_in": 300,
            }))
            .unwrap();
            let sub = serde_json::Map::from_iter([("sub".to_owned(), json!("alice"))]);
            let created = self.sessions.create(tokens, sub, None, None).await.unwrap();
            cookies.push(created.cookie);
        }
        self.clock.advance(Duration::from_secs(295));
        let mut loaded = Vec::new();
        for cookie in &cookies {
            loaded.push(self.load(cookie).await);
        }
        loaded
    }

    /// A signed-in session whose access token is due for refresh.
    async fn due_session(&self) -> Loaded {
        self.due_sessions(1).await.pop().unwrap()
    }

    async fn load(&self, cookie: &str) -> Loaded {
        let mut headers = HeaderMap::new();
        let value = format!("{}={cookie}", self.sessions.names.session);
        headers.insert("cookie", HeaderValue::from_str(&value).unwrap());
        let client = std::net::IpAddr::from([192, 0, 2, 1]);
        self.sessions.load(&headers, client).await.unwrap()
    }

    /// Whether the metrics (every replica shares them here) show `series`.
    fn counted(&self, series: &str) -> bool {
        self.sessions.metrics.encode(true).lines().any(|l| l == series)
    }

    async fn stored_access_token(&self, loaded: &Loaded) -> String {
        let stored = self.store.get(&loaded.key).await.unwrap().unwrap();
        let record =
            crate::session::record::Record::open(&stored.value, &loaded.ticket, &loaded.key).unwrap();
        record.access_token.expose().to_string()
    }
}

/// `replica.refresh(loaded)`, running on its own.
fn in_flight(
    replica: &Arc<Refresher>,
    loaded: &Arc<Loaded>,
) -> tokio::task::JoinHandle<Result<super::Fresh, RefreshError>> {
    let (replica, loaded) = (replica.clone(), loaded.clone());
    tokio::spawn(async move { replica.refresh(&loaded).await })
}

fn access(result: Result<super::Fresh, RefreshError>) -> String {
    result.expect("a fresh token").access_token.expose().to_string()
}

#[tokio::test]
async fn rf01_rf20_fifty_callers_on_one_replica_share_one_token_call() {
    let bench = Bench::start().await;
    bench.endpoint.hold();
    let replica = bench.replica();
    let loaded = Arc::new(bench.due_session().await);
    let callers: Vec<_> = (0..50).map(|_| in_flight(&replica, &loaded)).collect();
    bench.endpoint.until_grants(1).await;
    bench.endpoint.release(0);
    for caller in callers {
        assert_eq!(access(caller.await.unwrap()), "at-1");
    }
    assert_eq!(bench.endpoint.grants(), ["rt-0"], "one token call");
    assert_eq!(bench.stored_access_token(&loaded).await, "at-1");
    // The flight is over: nothing of it stays behind.
    assert!(replica.flights.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refresh_storm_sends_at_most_max_token_calls_at_once_and_the_rest_wait_their_turn() {
    let bench = Bench::start().await;
    bench.endpoint.hold();
    let replica = bench.replica();
    let n = crate::oidc::MAX_TOKEN_CALLS + 8;
    let sessions: Vec<Arc<Loaded>> = bench.due_sessions(n).await.into_iter().map(Arc::new).collect();
    let flights: Vec<_> = sessions.iter().map(|s| in_flight(&replica, s)).collect();
    bench.endpoint.until_grants(crate::oidc::MAX_TOKEN_CALLS).await;
    // However long the IdP takes, no more are sent meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bench.endpoint.grants().len(), crate::oidc::MAX_TOKEN_CALLS);
    for i in 0..n {
        bench.endpoint.release(i);
    }
    for flight in flights {
        assert!(access(flight.await.unwrap()).starts_with("at-"));
    }
    assert_eq!(
        bench.endpoint.grants().len(),
        n,
        "one grant per session, none lost"
    );
    assert!(bench.counted(&format!("cloakroom_refreshes_total{{outcome=\"rotated\"}} {n}")));
}

#[tokio::test]
async fn rf02_rf04_a_replica_that_finds_the_lease_taken_takes_the_winners_tokens() {
    let bench = Bench::start().await;
    bench.endpoint.hold();
    let (first, second) = (bench.replica(), bench.replica());
    let loaded = Arc::new(bench.due_session().await);
    let winner = in_flight(&first, &loaded);
    bench.endpoint.until_grants(1).await;
    let waiter = in_flight(&second, &loaded);
    bench.endpoint.release(0);
    assert_eq!(access(winner.await.unwrap()), "at-1");
    assert_eq!(access(waiter.await.unwrap()), "at-1");
    assert_eq!(
        bench.endpoint.grants().len(),
        1,
        "the waiting replica made no call"
    );
    assert!(bench.counted("cloakroom_refreshes_total{outcome=\"rotated\"} 1"));
    assert!(bench.counted("cloakroom_refreshes_total{outcome=\"waited_on_other_replica\"} 1"));
}

#[tokio::test]
async fn rf06_a_refresh_that_lost_its_lease_keeps_the_winners_tokens() {
    let bench = Bench::start().await;
    bench.endpoint.hold();
    let (slow, fast) = (bench.replica(), bench.replica());
    let loaded = Arc::new(bench.due_session().await);
    let late = in_flight(&slow, &loaded);
    bench.endpoint.until_grants(1).await;
    // The slow writer's lease vanishes (a failover that lost it) ...
    bench.store.delete(&lock::lock_key(&loaded.key)).await.unwrap();
    // ... and another replica refreshes and commits first.
    bench.endpoint.release(1);
    assert_eq!(access(fast.refresh(&loaded).await), "at-2");
    // The slow answer arrives: its compare-and-set fails, the winner stands.
    bench.endpoint.release(0);
    assert_eq!(access(late.await.unwrap()), "at-2");
    assert_eq!(bench.stored_access_token(&loaded).await, "at-2");
    assert_eq!(bench.endpoint.grants(), ["rt-0", "rt-0"]);
    assert!(bench.counted("cloakroom_refreshes_total{outcome=\"rotated\"} 1"));
    assert!(bench.counted("cloakroom_refreshes_total{outcome=\"lost_lease\"} 1"));
}

#[tokio::test]
async fn rf15_a_logout_during_a_refresh_is_final_and_the_new_refresh_token_is_revoked() {
    let bench = Bench::start().await;
    bench.endpoint.hold();
    let replica = bench.replica();
    let idp = Idp::new(bench.config.oidc.clone().unwrap(), bench.clock.clone()).unwrap();
    let _revoker = crate::revoker::Revoker::spawn(bench.sessions.clone(), idp);
    let loaded = Arc::new(bench.due_session().await);
    let refreshing = in_flight(&replica, &loaded);
    bench.endpoint.until_grants(1).await;
    // The user logs out while the IdP's answer is on its way.
    bench.store.delete(&loaded.key).await.unwrap();
    bench.endpoint.release(0);
    assert!(matches!(refreshing.await.unwrap(), Err(RefreshError::Ended)));
    assert!(
        bench.store.get(&loaded.key).await.unwrap().is_none(),
        "not written back"
    );
    // Queued for revocation, and revoked by this replica's worker.
    for _ in 0..250 {
        if !bench.endpoint.revoked.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*bench.endpoint.revoked.lock().unwrap(), ["rt-1"]);
    assert!(bench.counted("cloakroom_refreshes_total{outcome=\"ended\"} 1"));
}
