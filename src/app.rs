//! The public listener's outer steps, shared by every route, outermost
//! first:
//!
//! 1. the edge ([`edge`], tower-http's layers): sensitive-header marking,
//!    the peer's trust, the request id and the request's trace span;
//! 2. the routing service (`Routing`): the client's cap on requests in
//!    flight (PX-35, 429), metrics, the access log (path only, never the
//!    query) and the one rescue;
//! 3. protocol limits (414, 431), framing (PX-12) and methods nobody may use;
//! 4. path normalisation, the SPA client module, `/auth/*`, and
//!    longest-prefix routing (400, 404, 405);
//! 5. the route's own stack, built once per config ([`crate::stack`]).
//!
//! Every failure comes back as an error and becomes a problem+json response
//! in one place, the routing service, via [`crate::rescue::classify`].
//! There too every request is counted (route, method, status, code,
//! latency), with the logins it starts or completes and the CSRF refusals.
//!
//! The edge, config, router, stacks and `Auth` a worker serves with sit
//! behind one swappable pointer: a config reload ([`crate::reload`]) builds the
//! next set with [`App::prepare`] and puts it in place with
//! [`App::install`]. Each request takes one snapshot at its start and is
//! served by it to the end, so a reload never changes a request midway.

mod access_log;
mod check;
mod counting;
pub mod edge;
mod failure;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tower::Service;
use tower_http::request_id::RequestId;

use crate::auth::Auth;
use crate::body::{self, Body};
use crate::config::{Config, Limits, FORBIDDEN_METHODS};
use crate::error::{BoxError, Refusal};
use crate::metrics::{self, Metrics};
use crate::path::normalize_path;
use crate::rescue;
use crate::routes::{Leaf, Route, Router};
use crate::server::ConnectionHold;
use crate::session::SessionStore;
use crate::stack::{self, Context, RouteService};
use crate::upstream::forwarded;
use crate::upstream::{hygiene, Upstream, X_REQUEST_ID};

use self::access_log::AccessLine;
use self::counting::Counted;
use self::edge::{EdgeService, Peer};
use self::failure::Failure;

/// One worker's public listener. Cheap to clone.
#[derive(Clone)]
pub struct App {
    worker: Arc<Worker>,
}

struct Worker {
    /// What requests are served with now; replaced whole by a reload.
    current: ArcSwap<Shared>,
    /// Kept across reloads: the store connection does not change.
    store: Arc<dyn SessionStore>,
    /// Process-wide: outlives any config the rest is built from.
    metrics: Arc<Metrics>,
}

/// Everything one config decides for a worker.
struct Shared {
    /// The edge over the routing service: what a request is handed to.
    service: EdgeService,
    /// The worker's upstream pool under this config's hygiene rules.
    upstream: Upstream,
}

/// Below the edge: routes each request and answers it, errors included.
/// Cheap to clone.
#[derive(Clone)]
struct Routing(Arc<RoutingState>);

struct RoutingState {
    config: Arc<Config>,
    router: Router,
    /// Each route's stack, in the order of `router.routes()`.
    stacks: Vec<RouteService>,
    auth: Option<Arc<Auth>>,
    metrics: Arc<Metrics>,
}

/// A worker's state for a new config, built but not serving yet.
pub struct Prepared(Arc<Shared>);

/// What a request was routed to, for the log and the metrics.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// Refused before routing, or no route (404).
    None,
    Route(&'a Arc<Route>),
    /// An `/auth/*` endpoint, or the client module.
    Endpoint(&'static str),
}

// === impl App ===

impl App {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        auth: Option<Arc<Auth>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BoxError> {
        // One upstream pool per App, so per worker thread.
        let upstream = Upstream::new(
            &config.cookie.name,
            &config.stripped_identity_headers(),
            config.limits.body_idle_timeout,
            metrics.clone(),
        )?;
        let shared = Shared::build(config, auth, upstream, metrics.clone())?;
        Ok(Self {
            worker: Arc::new(Worker {
                current: ArcSwap::from_pointee(shared),
                store,
                metrics,
            }),
        })
    }

    /// Builds this worker's router and stacks for `config`, on the same
    /// upstream pool (open upstream connections are kept). Nothing serves
    /// with them until [`App::install`].
    pub fn prepare(&self, config: Arc<Config>, auth: Option<Arc<Auth>>) -> Result<Prepared, BoxError> {
        let upstream = self
            .worker
            .current
            .load()
            .upstream
            .with_rules(&config.cookie.name, &config.stripped_identity_headers());
        Shared::build(config, auth, upstream, self.worker.metrics.clone())
            .map(|shared| Prepared(Arc::new(shared)))
    }

    /// Serves new requests with `prepared`. Requests already started finish
    /// with the state they started with; WebSocket tunnels, which no longer
    /// pass through here, are untouched.
    pub fn install(&self, prepared: Prepared) {
        self.worker.current.store(prepared.0);
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.worker.store
    }

    /// Serves one request from `peer`. Never fails: errors become problems.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut request = request.map(body::boxed);
        request.extensions_mut().insert(peer);
        // One snapshot for the whole request, however long it runs.
        let mut service = self.worker.current.load().service.clone();
        // Called without `ready`: the edge is always ready. The named
        // future keeps `Service` projections out of this async fn's state,
        // where rustc cannot prove them `Send` for every lifetime.
        let answer: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
        > = service.call(request);
        match answer.await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

// === impl Shared ===

impl Shared {
    fn build(
        config: Arc<Config>,
        auth: Option<Arc<Auth>>,
        upstream: Upstream,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BoxError> {
        let router = Router::new(&config.routes, config.is_https())?;
        let public_host: Arc<str> = public_host(&config.public_url).into();
        let stacks = router
            .routes()
            .iter()
            .map(|route| stack::build(route, auth.as_ref(), &upstream, &public_host))
            .collect();
        let trusted_proxies = config.trusted_proxies.clone().into();
        let routing = Routing(Arc::new(RoutingState {
            config,
            router,
            stacks,
            auth,
            metrics,
        }));
        Ok(Self {
            service: edge::wrap(routing, trusted_proxies),
            upstream,
        })
    }
}

// === impl Routing ===

impl Service<Request<Body>> for Routing {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { Ok(state.serve(request).await) })
    }
}

// === impl RoutingState ===

impl RoutingState {
    /// Routes and answers one request, through the three steps every
    /// request shares: the rescue ([`failure`]), the counts ([`counting`])
    /// and the access line ([`access_log`]).
    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let access = AccessLine::start(&request);
        let method =
            metrics::method_label(request.method(), hygiene::is_websocket_upgrade(request.headers()));
        // The edge always marks both; the fallbacks only keep this total.
        let Peer { addr: peer, trusted } = request.extensions().get::<Peer>().copied().unwrap_or(Peer {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            trusted: false,
        });
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map_or(HeaderValue::from_static("-"), |id| id.header_value().clone());
        let client = forwarded::client_ip(request.headers(), peer.ip(), &self.config.trusted_proxies);
        let clear_session = self.auth.as_ref().and_then(|a| {
            a.sessions
                .names
                .find_session(request.headers())
                .map(|_| a.sessions.names.clear_session())
        });
        let reader = rescue::Reader::of(request.uri().path(), request.headers());
        let mut target = Target::None;
        // A place under the client's cap on requests in flight (PX-35),
        // held until the answer's body is sent: a request holds an upstream
        // connection that long.
        let in_flight = request
            .extensions()
            .get::<Arc<ConnectionHold>>()
            .map(|hold| hold.requests().acquire(client));
        let result = match in_flight {
            Some(None) => {
                self.metrics.over_limit(metrics::Limit::RequestsPerIp);
                Err(Refusal::TooManyRequests { retry_after_secs: 1 }.into())
            }
            _ => {
                self.route(request, peer, trusted, client, &request_id, &mut target)
                    .await
            }
        };
        let request_id_text = request_id.to_str().unwrap_or("");
        let mut response = result.unwrap_or_else(|e| {
            Failure {
                request_id: request_id_text,
                reader,
                login_page: self.config.errors.login_page.as_ref(),
                https: self.config.is_https(),
                upstream: target.route().and_then(|r| match &r.leaf {
                    Leaf::Upstream { scheme, authority } => Some(format!("{scheme}://{authority}")),
                    Leaf::Static(_) | Leaf::ForwardAuth => None,
                }),
                clear_session,
            }
            .answer(e)
        });
        // The edge puts the request's id on every answer: an upstream's own
        // id never replaces it.
        response.headers_mut().remove(&X_REQUEST_ID);
        if let Some(Some(slot)) = in_flight {
            response = response.map(|body| body::holding(body, slot));
        }
        Counted {
            route: target.label(),
            endpoint: target.endpoint_name(),
            method,
            client,
            elapsed: started.elapsed(),
        }
        .count(&self.metrics, &response);
        if let Some(line) = access {
            line.write(
                request_id_text,
                client,
                target.route(),
                &response,
                started.elapsed(),
            );
        }
        response
    }

    async fn route<'a>(
        &'a self,
        request: Request<Body>,
        peer: SocketAddr,
        trusted: bool,
        client: IpAddr,
        request_id: &HeaderValue,
        target: &mut Target<'a>,
    ) -> Result<Response<Body>, BoxError> {
        check_limits(&request, &self.config.limits)?;
        check_framing(request.headers())?;
        let path = normalize_path(request.uri().path()).map_err(|e| {
            tracing::debug!(error = %e, "refused request path");
            Refusal::BadRequest("path")
        })?;
        // === the SPA's client module (issue 13), served with or without login ===
        if let Some(mut response) = crate::client_module::serve(&path, request.method(), request.headers()) {
            *target = Target::endpoint(&path);
            self.protect(response.headers_mut());
            return Ok(response);
        }
        if let Some(forward_auth) = &self.config.forward_auth {
            if check::is_check(&path, &forward_auth.path) {
                *target = Target::Endpoint("forward_auth");
                let original = check::original(request, &path, forward_auth, trusted)?;
                let index = self.router.find_index(&original.path).ok_or(Refusal::NotFound)?;
                let route = &self.router.routes()[index];
                if !matches!(route.leaf, Leaf::ForwardAuth) {
                    // The ingress checks only what it forwards itself.
                    return Err(Refusal::NotFound.into());
                }
                let context = (original.path, peer, trusted, client, request_id);
                return self.enter(index, original.request, context, target).await;
            }
        }
        if let (Some(auth), true) = (&self.auth, path.starts_with("/auth/")) {
            *target = Target::endpoint(&path);
            let mut response = auth.handle(&path, request, client).await?;
            self.protect(response.headers_mut());
            // Whatever an endpoint says: answers about a session are nobody's to keep.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(response);
        }
        let index = self.router.find_index(&path).ok_or(Refusal::NotFound)?;
        if matches!(self.router.routes()[index].leaf, Leaf::ForwardAuth) {
            // The ingress forwards these; cloakroom only answers its checks,
            // whose answers carry the token.
            return Err(Refusal::NotFound.into());
        }
        self.enter(index, request, (path, peer, trusted, client, request_id), target)
            .await
    }

    /// Hands `request` to the stack of route `index`, with the
    /// [`Context`] made of `(path, peer, trusted, client, request id)`.
    async fn enter<'a>(
        &'a self,
        index: usize,
        mut request: Request<Body>,
        (path, peer, trusted, client, request_id): (String, SocketAddr, bool, IpAddr, &HeaderValue),
        target: &mut Target<'a>,
    ) -> Result<Response<Body>, BoxError> {
        let route = &self.router.routes()[index];
        *target = Target::Route(route);
        check_method(route, request.method())?;
        if hygiene::is_websocket_upgrade(request.headers()) && !route.config.websocket {
            return Err(Refusal::BadRequest("websocket not enabled on this route").into());
        }
        request.extensions_mut().insert(Context {
            path,
            peer,
            trusted,
            client,
            request_id: request_id.clone(),
        });
        // Every route stack is always ready: no layer holds requests back.
        let below: stack::ResponseFuture = self.stacks[index].clone().call(request);
        below.await
    }

    /// Security headers on responses cloakroom writes itself (PX-26).
    fn protect(&self, headers: &mut http::HeaderMap) {
        crate::security_headers::apply(headers, self.config.is_https());
    }
}

// === impl Target ===

impl<'a> Target<'a> {
    /// A known endpoint under `/auth/`; any other path there is `None`
    /// (a 404): the label set stays bounded.
    fn endpoint(path: &str) -> Self {
        match path {
            "/auth/login" => Target::Endpoint("/auth/login"),
            "/auth/callback" => Target::Endpoint("/auth/callback"),
            "/auth/user" => Target::Endpoint("/auth/user"),
            "/auth/logout" => Target::Endpoint("/auth/logout"),
            "/auth/client.js" => Target::Endpoint("/auth/client.js"),
            "/auth/client.d.ts" => Target::Endpoint("/auth/client.d.ts"),
            "/auth/backchannel-logout" => Target::Endpoint("/auth/backchannel-logout"),
            "/auth/sessions" => Target::Endpoint("/auth/sessions"),
            // One label for every session id: never the id itself.
            p if p.starts_with("/auth/sessions/") => Target::Endpoint("/auth/sessions/{id}"),
            _ => Target::None,
        }
    }

    /// The `/auth/*` endpoint (or the client module) it reached.
    fn endpoint_name(self) -> Option<&'static str> {
        match self {
            Target::Endpoint(endpoint) => Some(endpoint),
            _ => None,
        }
    }

    fn route(self) -> Option<&'a Arc<Route>> {
        match self {
            Target::Route(route) => Some(route),
            _ => None,
        }
    }

    /// The `route` label: the route's configured path, the endpoint, or
    /// `none`; never the request's own path.
    fn label(self) -> Cow<'static, str> {
        match self {
            Target::None => Cow::Borrowed("none"),
            Target::Route(route) => Cow::Owned(route.config.path.clone()),
            Target::Endpoint(endpoint) => Cow::Borrowed(endpoint),
        }
    }
}

/// 414 for long targets, 431 for too many or too large headers.
fn check_limits(request: &Request<Body>, limits: &Limits) -> Result<(), Refusal> {
    let target_len = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len as u64 > limits.max_uri_bytes {
        return Err(Refusal::UriTooLong);
    }
    let headers = request.headers();
    // `len()` counts every value, so a repeated name counts each time.
    let bytes: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if headers.len() as u64 > limits.max_headers || bytes as u64 > limits.max_header_bytes {
        return Err(Refusal::HeadersTooLarge);
    }
    Ok(())
}

/// At most one `Transfer-Encoding`, and only `chunked` (PX-12). hyper reads
/// the last coding of the last line; a server in front of or behind
/// cloakroom may read `chunked` twice, or another coding, differently.
/// cloakroom re-frames every body it forwards, so no other coding could be
/// passed on anyway (the header is hop-by-hop). Coding names are
/// case-insensitive and the whitespace around them is not part of them
/// (RFC 9112 §7, §5.5): `CHUNKED` and ` chunked\t` are `chunked`, as hyper
/// reads them too (PX-39).
///
/// And one `Host` (PX-39, RFC 9112 §3.2): of two, each server on the way
/// may pick another.
fn check_framing(headers: &http::HeaderMap) -> Result<(), Refusal> {
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Refusal::BadFraming("more than one Host"));
    }
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Refusal::BadFraming("Transfer-Encoding other than one chunked")),
    }
}

/// 405 outside the route's allowlist, and for TRACE, TRACK and CONNECT everywhere.
fn check_method(route: &Route, method: &Method) -> Result<(), Refusal> {
    let forbidden = FORBIDDEN_METHODS.contains(&method.as_str());
    let allowed = match &route.config.methods {
        Some(list) => list.contains(method),
        None => true,
    };
    if forbidden || !allowed {
        let allow = match &route.config.methods {
            Some(list) => list.iter().map(Method::as_str).collect::<Vec<_>>().join(", "),
            None => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".to_owned(),
        };
        return Err(Refusal::MethodNotAllowed { allow });
    }
    Ok(())
}

/// `host[:port]` of an origin, the port only when not the scheme's default.
fn public_host(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}
