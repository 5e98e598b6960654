//! The outermost steps every request passes, before routing and after the
//! answer is written, on tower-http's layers, outermost first:
//!
//! 1. sensitive-header marking ([`SENSITIVE`]), on the way in and out;
//! 2. the peer's trust: a configured trusted proxy may bring its request id,
//!    trace context and baggage, anyone else's are dropped ([`Peer`]);
//! 3. the request id: kept or made ([`SetRequestIdLayer`]), put on the
//!    answer ([`PropagateRequestIdLayer`]);
//! 4. with traces on, the request's trace span ([`TraceLayer`]), which
//!    lives until the answer's body ends.
//!
//! Below them the routing service answers every request, errors included,
//! so the edge never sees a failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use ipnet::IpNet;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};

use crate::body::{self, Body};
use crate::telemetry;
use crate::upstream::{forwarded, X_REQUEST_ID};

/// Header values that must never reach a log line or a debug print, and
/// that HTTP/2 must never keep in its compression table (HPACK's "never
/// indexed"): credentials in, session cookies out.
pub const SENSITIVE: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
];

/// The whole edge over the routing service, type-erased. Always ready: no
/// layer here or below holds requests back.
pub type EdgeService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Who sent a request: the connection's peer and whether it is a
/// configured trusted proxy. Put in the request's extensions by the edge.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub trusted: bool,
}

/// Wraps `routing` in the edge. The request must carry its connection's
/// `SocketAddr` in its extensions ([`super::App::handle`] puts it there).
pub fn wrap<S>(routing: S, trusted_proxies: Arc<[IpNet]>) -> EdgeService
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    // Traces are chosen at start (restart-only): with them off, no trace
    // layer at all rather than one making disabled spans.
    let traced = telemetry::traces_on().then(|| {
        ServiceBuilder::new()
            // Back to the one body type, over the trace layer's wrapper.
            .layer(MapResponseBodyLayer::new(body::boxed))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(RequestSpan)
                    .on_request(())
                    .on_response(RecordStatus)
                    .on_body_chunk(())
                    .on_eos(())
                    .on_failure(()),
            )
            .into_inner()
    });
    let service = ServiceBuilder::new()
        .layer(SetSensitiveHeadersLayer::new(SENSITIVE))
        .map_request(move |request| trust(request, &trusted_proxies))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), NewRequestId))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .option_layer(traced)
        .service(routing);
    BoxCloneSyncService::new(service)
}

/// Marks the request's [`Peer`]. A request id from anyone but a trusted
/// proxy, or one that is not short printable text, is dropped so a fresh
/// one is made: a client cannot choose the id an operator searches logs by.
/// So is anyone else's trace context and baggage, traces on or off (PX-38).
fn trust(mut request: Request<Body>, trusted_proxies: &[IpNet]) -> Request<Body> {
    let addr = request
        .extensions()
        .get::<SocketAddr>()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let trusted = forwarded::is_trusted(addr.ip(), trusted_proxies);
    let keep_id = trusted
        && request
            .headers()
            .get_all(&X_REQUEST_ID)
            .iter()
            .map(|v| is_request_id(v.as_bytes()))
            .eq([true]);
    if !keep_id {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    if !trusted {
        telemetry::forget_context(request.headers_mut());
    }
    request.extensions_mut().insert(Peer { addr, trusted });
    request
}

/// A fresh request id: a v4 UUID's 32 hex digits. Written here rather than
/// tower-http's `MakeRequestUuid` to keep the ids' form (no dashes) and
/// skip its string formatting on every request.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        let id = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// 1 to 128 of `[A-Za-z0-9-_.:]`: safe in a log line, a header and a URL.
fn is_request_id(id: &[u8]) -> bool {
    let ok_char = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:".contains(b);
    (1..=128).contains(&id.len()) && id.iter().all(ok_char)
}

/// The request's server span (traces on), continuing a trusted proxy's
/// trace. Its fields are what a trace may show: never the query, a header
/// value, a cookie or a token. The routing service names it after the
/// route and records the problem code.
#[derive(Clone, Copy)]
struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let span = tracing::info_span!(
            target: "cloakroom::trace",
            "request",
            otel.name = %request.method(),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            cloakroom.problem = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if span.is_disabled() {
            return span;
        }
        if request.extensions().get::<Peer>().is_some_and(|p| p.trusted) {
            telemetry::continue_trace(&span, request.headers());
        }
        telemetry::record_trace_id(&span);
        span
    }
}

/// The answer's status on the request's span; a 5xx marks it failed.
#[derive(Clone, Copy)]
struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, response: &Response<B>, _latency: Duration, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        span.record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// What the routing service saw, and an answer with a session cookie.
    #[derive(Clone)]
    struct Probe(Arc<std::sync::Mutex<Option<Request<Body>>>>);

    impl Service<Request<Body>> for Probe {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            *self.0.lock().unwrap() = Some(request);
            let mut response = Response::new(body::empty());
            response
                .headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_static("s=sealed; HttpOnly"));
            std::future::ready(Ok(response))
        }
    }

    async fn through_edge(peer: &str, headers: &[(&str, &str)]) -> (Request<Body>, Response<Body>) {
        let seen = Probe(Default::default());
        let trusted: Arc<[IpNet]> = Arc::from(vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let edge = wrap(seen.clone(), trusted);
        let mut request = Request::new(body::empty());
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        let response = edge.oneshot(request).await.unwrap();
        let request = seen.0.lock().unwrap().take().unwrap();
        (request, response)
    }

    #[tokio::test]
    async fn px25_credentials_and_session_cookies_are_marked_sensitive_both_ways() {
        let (request, response) = through_edge(
            "192.0.2.1:5000",
            &[
                ("cookie", "s=sealed"),
                ("authorization", "Bearer t"),
                ("proxy-authorization", "Basic x"),
                ("accept", "text/html"),
            ],
        )
        .await;
        for name in ["cookie", "authorization", "proxy-authorization"] {
            assert!(request.headers()[name].is_sensitive(), "{name} on the way in");
        }
        assert!(!request.headers()["accept"].is_sensitive());
        assert!(response.headers()["set-cookie"].is_sensitive());
        // What a `{:?}` of the headers would print.
        assert!(!format!("{:?}", request.headers()).contains("sealed"));
    }

    #[tokio::test]
    async fn px08_only_a_trusted_proxy_chooses_the_request_id() {
        let id = |r: &Request<Body>| r.headers()[&X_REQUEST_ID].to_str().unwrap().to_owned();

        let (request, response) = through_edge("10.1.2.3:5000", &[("x-request-id", "lb-123")]).await;
        assert_eq!(id(&request), "lb-123");
        assert_eq!(response.headers()[&X_REQUEST_ID], "lb-123");
        assert!(request.extensions().get::<Peer>().unwrap().trusted);

        for (peer, given) in [
            ("192.0.2.1:5000", "chosen-by-client"),
            ("10.1.2.3:5000", "has space"),
            ("10.1.2.3:5000", &"x".repeat(129)),
        ] {
            let (request, response) = through_edge(peer, &[("x-request-id", given)]).await;
            let made = id(&request);
            assert_ne!(made, given, "{peer} {given}");
            assert!(
                made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()),
                "{made}"
            );
            assert_eq!(response.headers()[&X_REQUEST_ID], made.as_str());
        }
        // Two ids from a trusted proxy: neither is chosen.
        let (request, _) =
            through_edge("10.1.2.3:5000", &[("x-request-id", "a"), ("x-request-id", "b")]).await;
        assert_eq!(request.headers().get_all(&X_REQUEST_ID).iter().count(), 1);
        assert!(!["a", "b"].contains(&id(&request).as_str()));
    }

    #[tokio::test]
    async fn px38_only_a_trusted_proxy_brings_trace_context_and_baggage() {
        let context = [
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=client"),
            ("baggage", "tenant=other"),
        ];
        let (request, _) = through_edge("192.0.2.1:5000", &context).await;
        for (name, _) in context {
            assert!(!request.headers().contains_key(name), "{name} from a client");
        }
        let (request, _) = through_edge("10.1.2.3:5000", &context).await;
        for (name, value) in context {
            assert_eq!(request.headers()[name], value, "{name} from a trusted proxy");
        }
    }
}
