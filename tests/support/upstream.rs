//! The echo upstream: an HTTP server on `127.0.0.1:0` that answers with what
//! it received, and counts what it saw for the test to assert on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::Role;

pub(super) type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the echo upstream observed, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Requests that reached the upstream.
    pub requests: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Upload bytes received so far on `/upload`.
    pub upload_bytes: AtomicU64,
    /// Lets `/slow` send its second chunk.
    pub release: Notify,
    /// `/hold` requests waiting now, and the most there ever were at once.
    pub held: AtomicU64,
    pub most_held: AtomicU64,
    /// Set by [`Upstream::let_go`]: `/hold` answers from then on.
    let_go: std::sync::atomic::AtomicBool,
    let_go_now: Notify,
    /// Set by [`Upstream::verify_tokens`]: the IdP's keys and the one
    /// audience this API accepts.
    pub api: std::sync::OnceLock<(jsonwebtoken::jwk::JwkSet, String)>,
    /// Set by [`Upstream::verify_dpop`]: this API takes DPoP-bound tokens
    /// only, each with a proof (RFC 9449 §7.1).
    pub dpop: std::sync::OnceLock<super::dpop_api::DpopApi>,
}

/// An HTTP echo server: answers with JSON describing the request it got.
///
/// - `/slow`: sends `first`, waits for `release`, then sends `second`;
/// - `/upload`: counts body bytes as they arrive, answers the total;
/// - `/sleep`: answers after 30 s;
/// - `/hold`: waits until [`Upstream::let_go`], counting how many wait at once;
/// - `/redirect`: 302 to another host;
/// - `/cookies`: sets [`COOKIES`]: reserved names, a `Domain` and a harmless one;
/// - `/ws`: WebSocket echo;
/// - `/ws-cookies`: WebSocket echo whose `101` sets [`COOKIES`];
/// - anything else: `{method, uri, version, headers, body_len}`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let seen = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| echo(req, seen.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// `/hold` requests waiting now.
    pub fn held(&self) -> u64 {
        self.seen.held.load(Ordering::SeqCst)
    }

    /// Answers every `/hold` request, those waiting and those to come.
    pub fn let_go(&self) {
        self.seen.let_go.store(true, Ordering::SeqCst);
        self.seen.let_go_now.notify_waiters();
    }

    /// From now on the upstream is an API for `audience`, as a real one
    /// verifies a token: every request's bearer must be a JWT signed by a
    /// key of `jwks` whose `aud` names `audience`, else 401 `invalid_token`
    /// (and the echo says why). A request that passes is echoed as usual.
    pub fn verify_tokens(&self, jwks: jsonwebtoken::jwk::JwkSet, audience: &str) {
        assert!(self.seen.api.set((jwks, audience.to_owned())).is_ok(), "set once");
    }

    /// From now on the upstream is an API for `audience` that takes
    /// DPoP-bound tokens only, checking each request as RFC 9449 §4.3 and
    /// §7.1 say (see [`super::dpop_api`]); `clock` is what `iat` is judged
    /// by. A request that passes is echoed as usual.
    pub fn verify_dpop(&self, jwks: jsonwebtoken::jwk::JwkSet, audience: &str, clock: cloakroom::Clock) {
        let api = super::dpop_api::DpopApi::new(jwks, audience, clock, self.addr);
        assert!(self.seen.dpop.set(api).is_ok(), "set once");
    }

    /// The DPoP API's state (after [`Upstream::verify_dpop`]).
    pub fn dpop(&self) -> &super::dpop_api::DpopApi {
        self.seen.dpop.get().expect("verify_dpop first")
    }
}

/// Why `authorization` is not a bearer JWT for `audience` signed by a key
/// of `jwks`, if it is not.
fn refused_token(
    authorization: Option<&http::HeaderValue>,
    jwks: &jsonwebtoken::jwk::JwkSet,
    audience: &str,
) -> Option<String> {
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no bearer token");
    let verified = token.map_err(str::to_owned).and_then(|token| {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| jwks.find(kid))
            .ok_or("unknown key")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[audience]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| e.to_string())
    });
    verified.err()
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(mut req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<BoxBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/slow" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await;
                seen.release.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await;
            });
            let stream = tokio_stream_from(rx);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                    seen.upload_bytes.store(total, Ordering::SeqCst);
                }
            }
            text(StatusCode::OK, total.to_string())
        }
        "/hold" => {
            let now = seen.held.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_held.fetch_max(now, Ordering::SeqCst);
            loop {
                // Made before the check: `notify_waiters` reaches it even
                // if it is not polled yet.
                let woken = seen.let_go_now.notified();
                if seen.let_go.load(Ordering::SeqCst) {
                    break;
                }
                woken.await;
            }
            seen.held.fetch_sub(1, Ordering::SeqCst);
            text(StatusCode::OK, "held".into())
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            text(StatusCode::OK, "late".into())
        }
        "/redirect" => {
            let mut r = text(StatusCode::FOUND, String::new());
            r.headers_mut()
                .insert("location", "http://elsewhere.invalid/next".parse().unwrap());
            r
        }
        "/cookies" => set_cookies(text(StatusCode::OK, "cookies".into())),
        "/ws" => websocket_echo(&mut req),
        "/ws-cookies" => set_cookies(websocket_echo(&mut req)),
        _ if seen.api.get().is_some_and(|(jwks, audience)| {
            refused_token(req.headers().get("authorization"), jwks, audience).is_some()
        }) =>
        {
            let (jwks, audience) = seen.api.get().unwrap();
            let why = refused_token(req.headers().get("authorization"), jwks, audience).unwrap();
            let body = serde_json::json!({"error": "invalid_token", "error_description": why});
            text(StatusCode::UNAUTHORIZED, body.to_string())
        }
        _ => {
            // Checked once: a proof's jti is spent by its first check.
            if let Some(refused) = seen
                .dpop
                .get()
                .and_then(|api| api.refuse(req.method(), req.uri(), req.headers()))
            {
                return Ok(refused);
            }
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let json = serde_json::json!({
                "method": method, "uri": uri, "version": version,
                "headers": headers, "body_len": body.len(),
            });
            let mut r = text(StatusCode::OK, json.to_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            if let Some(nonce) = seen.dpop.get().and_then(|api| api.nonce()) {
                // The next nonce goes with every answer (RFC 9449 §9).
                r.headers_mut().insert("dpop-nonce", nonce.parse().unwrap());
            }
            // Its own id: the client must still see the request's.
            r.headers_mut()
                .insert("x-request-id", "upstream-own-id".parse().unwrap());
            r
        }
    };
    Ok(response)
}

/// The cookies `/cookies` and `/ws-cookies` set: only the last one may reach
/// a browser.
pub const COOKIES: &[&str] = &[
    "__Host-cloakroom=forged; Path=/; Secure",
    "cloakroom=forged; Path=/",
    "=cloakroom=evil",
    "__Host-cloakroom-login=forged; Path=/; Secure",
    "wide=1; Domain=example.com",
    "ok=1; Path=/",
];

fn set_cookies(mut r: Response<BoxBody>) -> Response<BoxBody> {
    for c in COOKIES {
        r.headers_mut().append("set-cookie", c.parse().unwrap());
    }
    r
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<BoxBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a websocket handshake".into());
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                .await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    r.headers_mut().insert("connection", "upgrade".parse().unwrap());
    r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

pub(super) fn text(status: StatusCode, body: String) -> Response<BoxBody> {
    let mut r = Response::new(BodyExt::boxed(http_body_util::Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The headers the echo upstream reports, as (name, value) pairs.
pub fn echoed_headers(json: &serde_json::Value) -> Vec<(String, String)> {
    serde_json::from_value(json["headers"].clone()).unwrap()
}

/// The claims of a bearer JWT (`Bearer <jwt>`), read without verifying
/// it: the upstream that received it verified it.
pub fn bearer_claims(bearer: &str) -> serde_json::Value {
    use base64::Engine;
    let token = bearer.strip_prefix("Bearer ").unwrap_or(bearer);
    let part = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `GET {base}{path}` through `browser`: the status, and the bearer the
/// echo upstream accepted (else the answer's body).
pub async fn bearer_at(browser: &super::Browser, base: &str, path: &str) -> (u16, String) {
    let page = browser.fetch(&format!("{base}{path}")).await;
    if page.status != 200 {
        return (page.status, page.body);
    }
    let bearer = echoed(&page.json(), "authorization").expect("a bearer");
    (200, bearer)
}

/// The one value of `name` the upstream saw, if exactly one.
pub fn echoed(json: &serde_json::Value, name: &str) -> Option<String> {
    let values: Vec<String> = echoed_headers(json)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect();
    assert!(values.len() <= 1, "{name} seen {} times", values.len());
    values.into_iter().next()
}
