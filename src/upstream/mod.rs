//! The leaf of every route: forward one request to its upstream.
//!
//! One pooled hyper client serves all routes; bodies stream both ways and are
//! never buffered whole. Redirects are passed back, never followed. The
//! per-route timeout covers connecting and waiting for response headers
//! (504); a failed connect is a 502; a request body that stalls for
//! `limits.body_idle_timeout` is the client's 408. Each call is timed, or counted as an
//! error, by route; open WebSocket tunnels are a gauge.
//!
//! A DPoP-bound token ([`Credential::Dpop`]) goes with a proof made here,
//! for the request as it is sent: its method, and the upstream's origin
//! and path (RFC 9449 §4.2 `htu`, no query). The `DPoP-Nonce` an upstream
//! answers with is kept for its origin and goes in the next proofs (§9).
//! An upstream that refuses a proof for want of a nonce (401 with
//! `use_dpop_nonce`) gets the same request once more, with the nonce, when
//! sending it twice cannot do harm: an idempotent method without a body.
//! Any other request gets its 401 back as the upstream wrote it; the next
//! call carries the nonce, and the caller may send it again.

pub(crate) mod forwarded;
pub(crate) mod hygiene;
pub(crate) mod pool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::body::{self, Body};
use crate::config::HeaderRule;
use crate::error::{BoxError, ClientBodyError, Refusal, UpstreamError};
use crate::metrics::Metrics;
use crate::oidc::dpop::{self, Bound};
use crate::routes::{Leaf, Route};
use crate::server::ConnectionHold;
use crate::session::SessionEnd;
use crate::telemetry;

use self::forwarded::Forwarded;
use self::pool::Pool;

/// The upstream side of one worker: its connection pool and hygiene rules.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// Base name of cloakroom's cookies, kept from upstreams.
    cookie_base: String,
    /// `identity_headers` and every route's `claim_headers`: client headers
    /// never forwarded.
    identity_headers: Arc<[HeaderRule]>,
    /// The longest pause in a request body before it is a 408 (PX-34).
    body_idle_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// What the front half of cloakroom learned about a request.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The normalised, authorised path.
    pub path: String,
    pub forwarded: Forwarded,
    pub request_id: HeaderValue,
    /// The token to inject, if the route sends one.
    pub credential: Option<Credential>,
    /// The route's `claim_headers`, valued for this user.
    pub identity: Vec<(header::HeaderName, HeaderValue)>,
    /// The request's session ends: a tunnel it opens closes then.
    pub session_end: Option<SessionEnd>,
}

/// How a route's token goes upstream.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(HeaderValue),
    /// `Authorization: DPoP <token>`, and a proof for each request.
    Dpop(Bound),
}

impl Credential {
    /// The `Authorization` value, marked sensitive.
    pub fn authorization(&self) -> HeaderValue {
        match self {
            Credential::Bearer(value) => value.clone(),
            Credential::Dpop(bound) => bound.authorization(),
        }
    }
}

/// The request id's header: on the request, its answer and the upstream call.
pub(crate) static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

// === impl Upstream ===

impl Upstream {
    pub fn new(
        cookie_base: &str,
        identity_headers: &[HeaderRule],
        body_idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BoxError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        // TLS to upstreams is always verified; there is no switch to turn it off.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            pool: Pool::new(https),
            cookie_base: cookie_base.to_owned(),
            identity_headers: identity_headers.into(),
            body_idle_timeout,
            metrics,
        })
    }

    /// This worker's pool under new hygiene rules (a config reload): open
    /// upstream connections are kept.
    pub fn with_rules(&self, cookie_base: &str, identity_headers: &[HeaderRule]) -> Self {
        Self {
            pool: self.pool.clone(),
            cookie_base: cookie_base.to_owned(),
            identity_headers: identity_headers.into(),
            body_idle_timeout: self.body_idle_timeout,
            metrics: self.metrics.clone(),
        }
    }

    /// Sends `request` (already authorised) to `route`'s upstream.
    pub async fn forward(
        &self,
        route: &Route,
        mut request: Request<Body>,
        fwd: Forward,
    ) -> Result<Response<Body>, BoxError> {
        let config = &route.config;
        let Leaf::Upstream { scheme, authority } = &route.leaf else {
            return Err("route has no upstream".into());
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Refuse before reading a byte, so `Expect: 100-continue` never gets a 100.
        if declared.is_some_and(|n| n > config.max_body) {
            return Err(Refusal::BodyTooLarge.into());
        }

        let websocket = config.websocket && hygiene::is_websocket_upgrade(request.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        // The tunnel keeps its connection's place under the connection caps.
        let hold = request.extensions_mut().remove::<Arc<ConnectionHold>>();

        let (mut parts, body) = request.into_parts();
        let headers = &mut parts.headers;
        hygiene::strip_hop_by_hop(headers);
        // Inject or strip, in one place: the client's `Authorization` is
        // always removed, ours added after (T35, T36).
        hygiene::strip_client_identity(headers, &self.identity_headers);
        if let Some(credential) = &fwd.credential {
            headers.insert(header::AUTHORIZATION, credential.authorization());
        }
        // Their client copies went with the identity headers just above.
        for (name, value) in fwd.identity {
            headers.insert(name, value);
        }
        hygiene::strip_reserved_cookies(headers, &self.cookie_base);
        hygiene::filter_websocket_protocols(headers, config.websocket_protocols.as_deref());
        // The route's upstream, never the client's `Host`: the proxy cannot
        // be steered elsewhere (PX-19).
        headers.insert(header::HOST, HeaderValue::from_str(authority.as_str())?);
        fwd.forwarded.write(headers);
        headers.insert(X_REQUEST_ID.clone(), fwd.request_id);
        // The upstream call's client span, and its W3C trace context for
        // the upstream (traces on). Only a trusted proxy's trace context and
        // baggage are still here (the edge drops anyone else's, PX-38); its
        // `traceparent` is replaced by this span's, which continues it.
        let span = upstream_span(&parts.method, authority.as_str());
        if !span.is_disabled() {
            telemetry::inject(&span, headers);
        }
        if websocket {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        let path = route.upstream_path(&fwd.path);
        parts.uri = origin_form(&path, parts.uri.query())?;
        parts.version = Version::HTTP_11;
        // The proof of a bound token, for this request as it is sent.
        let bound = match &fwd.credential {
            Some(Credential::Dpop(bound)) => Some((bound, format!("{scheme}://{authority}"))),
            _ => None,
        };
        if let Some((bound, origin)) = &bound {
            parts
                .headers
                .insert(&dpop::DPOP, bound.proof(&parts.method, origin, &path));
        }
        let bodiless = http_body::Body::is_end_stream(&body);
        // What sending it again with an upstream's nonce takes (§9).
        let again = (bound.is_some() && bodiless && !websocket && is_idempotent(&parts.method))
            .then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
        // Most API calls are bodiless GETs: nothing to limit or wrap.
        let body = if bodiless {
            body::empty()
        } else {
            // A stalled body is the client's 408, found while the upstream
            // still waits for it, not a 504 at the route's timeout (PX-34).
            let body = body::idle_deadline(body, self.body_idle_timeout);
            let body = body.map_err(|e| -> BoxError { Box::new(ClientBodyError(e)) });
            let limit = usize::try_from(config.max_body).unwrap_or(usize::MAX);
            body::boxed(Limited::new(body, limit))
        };
        let request = Request::from_parts(parts, body);

        let started = Instant::now();
        let mut response = self.send(route, scheme, authority, request, &span).await?;
        if let Some((bound, origin)) = &bound {
            let nonce = bound.note(origin, response.headers());
            if let Some((method, uri, mut headers)) = again.filter(|_| nonce) {
                if dpop::asks_for_nonce(response.status(), response.headers()) {
                    headers.insert(&dpop::DPOP, bound.proof(&method, origin, &path));
                    let mut retry = Request::new(body::empty());
                    (*retry.method_mut(), *retry.uri_mut(), *retry.headers_mut()) = (method, uri, headers);
                    *retry.version_mut() = Version::HTTP_11;
                    response = self.send(route, scheme, authority, retry, &span).await?;
                    bound.note(origin, response.headers());
                }
            }
        }
        self.metrics.upstream_answered(&config.path, started.elapsed());
        span.record("http.response.status_code", response.status().as_u16());

        // A tunnel only when both sides upgrade; the upstream's upgrade is
        // taken before the answer is taken apart.
        let tunnel = match (client_upgrade, response.status()) {
            (Some(client), http::StatusCode::SWITCHING_PROTOCOLS) => {
                Some((client, hyper::upgrade::on(&mut response)))
            }
            _ => None,
        };
        let (mut parts, body) = response.into_parts();
        // One hygiene for every answer, a `101` included (PX-33): the
        // handshake's headers reach the browser like any other.
        self.clean_answer(&mut parts.headers);
        let Some((client_upgrade, upstream_upgrade)) = tunnel else {
            return Ok(Response::from_parts(parts, body::boxed(body)));
        };
        let (ends, lifetime) = (fwd.session_end, config.websocket_max_lifetime);
        let tunnel = self.metrics.tunnel_opened();
        tokio::spawn(async move {
            bridge(client_upgrade, upstream_upgrade, ends, lifetime).await;
            drop((hold, tunnel));
        });
        // Hop-by-hop, so gone with the rest: the client's side of the
        // upgrade is ours to announce.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        Ok(Response::from_parts(parts, body::empty()))
    }

    /// Sends `request` to the route's upstream within the route's timeout
    /// (which covers the response head only: a stream may then run as
    /// long as it lasts); a failure is counted and marked on `span`.
    async fn send(
        &self,
        route: &Route,
        scheme: &http::uri::Scheme,
        authority: &http::uri::Authority,
        request: Request<Body>,
        span: &tracing::Span,
    ) -> Result<Response<Body>, BoxError> {
        let config = &route.config;
        // Boxed: the send future is large and would otherwise be copied
        // into every enclosing future on the way up.
        let sent = Box::pin(self.pool.send(scheme, authority, request));
        // tokio's timeout, not tower-http's `TimeoutLayer`: that one answers
        // 408 (a slow client); a slow upstream is a 504, counted by route
        // and marked on the upstream span.
        match tokio::time::timeout(config.timeout, sent)
            .instrument(span.clone())
            .await
        {
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                self.metrics.upstream_failed(&config.path, "timeout");
                Err(UpstreamError::Timeout(config.timeout).into())
            }
            Ok(Err(e)) => {
                span.record("otel.status_code", "ERROR");
                self.metrics.upstream_failed(&config.path, failure(&*e));
                Err(e)
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// What every upstream answer goes through before the browser sees it:
    /// hop-by-hop headers go, and `Set-Cookie`s that would overwrite
    /// cloakroom's cookies or widen their scope (PX-11, PX-30).
    fn clean_answer(&self, headers: &mut http::HeaderMap) {
        hygiene::strip_hop_by_hop(headers);
        let dropped = hygiene::strip_upstream_set_cookies(headers, &self.cookie_base);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "dropped upstream Set-Cookie using a reserved name or Domain"
            );
        }
    }
}

/// The `error` label of a send that got no response: the client's body
/// failing is not the upstream's fault.
fn failure(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut chain = std::iter::successors(Some(e), |e| e.source());
    if chain.any(|e| e.is::<ClientBodyError>()) {
        "client_body"
    } else {
        "unavailable"
    }
}

/// The client span of one upstream call: method, host and status, never
/// the path, query or a header value.
fn upstream_span(method: &http::Method, authority: &str) -> tracing::Span {
    tracing::info_span!(
        target: "cloakroom::trace",
        "upstream",
        otel.name = %method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        server.address = authority,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Whether sending a request twice has the effect of sending it once
/// (RFC 9110 §9.2.2).
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// The request-target sent upstream: the upstream path (the route's base
/// path, the authorised path), the query as received.
fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut path_and_query = path.to_owned();
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Uri::builder().path_and_query(path_and_query).build()
}

/// Copies bytes both ways between an upgraded client and upstream
/// connection, until either side closes, the session ends, or the route's
/// `websocket_max_lifetime` is reached. Then both connections are dropped:
/// the bytes are not parsed as frames, so no close frame can be slipped in
/// between them, and both peers see the connection closed.
async fn bridge(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    session_end: Option<SessionEnd>,
    max_lifetime: Option<Duration>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let ended = async {
        match session_end {
            Some(end) => end.ended().await,
            None => std::future::pending().await,
        }
    };
    let too_old = async {
        match max_lifetime {
            Some(lifetime) => tokio::time::sleep(lifetime).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "websocket connection ended");
            }
        }
        () = ended => tracing::debug!("websocket closed: its session ended"),
        () = too_old => tracing::debug!("websocket closed: websocket_max_lifetime reached"),
    }
}
