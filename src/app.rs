//! The public listener's request pipeline, outermost step first:
//!
//! 1. request id and access log (path only, never the query);
//! 2. protocol limits (414, 431) and methods nobody may use;
//! 3. path normalisation and longest-prefix routing (400, 404, 405);
//! 4. the route's session requirement;
//! 5. the upstream (streaming proxy, WebSocket).
//!
//! Every failure comes back as an error and becomes a problem+json response
//! in one place, [`App::handle`], via [`crate::error::classify`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::{session, Auth};
use crate::body::{self, Body};
use crate::config::{AuthMode, Config, CsrfMode, Limits, TokenKind, FORBIDDEN_METHODS};
use crate::cookie::CookieNames;
use crate::error::{self, BoxError, Code, Refusal};
use crate::path::normalize_path;
use crate::refresh::{self, RefreshError};
use crate::routes::{Leaf, Route, Router};
use crate::secret::Secret;
use crate::session::SessionStore;
use crate::static_files::Audience;
use crate::upstream::forwarded::{self, Forwarded};
use crate::upstream::{hygiene, Forward, Upstream};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The shared state behind the public listener. Cheap to clone.
#[derive(Clone)]
pub struct App {
    shared: Arc<Shared>,
}

struct Shared {
    config: Arc<Config>,
    router: Router,
    upstream: Upstream,
    store: Arc<dyn SessionStore>,
    auth: Option<Arc<Auth>>,
    /// `public_url`'s host and port, the `X-Forwarded-Host` of untrusted peers.
    public_host: String,
}

// === impl App ===

impl App {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        auth: Option<Arc<Auth>>,
    ) -> Result<Self, BoxError> {
        let router = Router::new(&config.routes, config.is_https())?;
        let upstream = Upstream::new(&config.cookie.name, &config.identity_headers)?;
        let public_host = public_host(&config.public_url);
        Ok(Self {
            shared: Arc::new(Shared {
                public_host,
                config,
                router,
                upstream,
                store,
                auth,
            }),
        })
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.store
    }

    /// Serves one request from `peer`. Never fails: errors become problems.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        // Only pay for the access line's inputs when it will be written.
        let access = tracing::enabled!(target: "cloakroom::access", tracing::Level::INFO).then(|| {
            (
                Instant::now(),
                request.method().clone(),
                request.uri().path().to_owned(),
            )
        });
        let trusted = forwarded::is_trusted(peer.ip(), &self.shared.config.trusted_proxies);
        let request_id = request_id(request.headers(), trusted);
        let had_session_cookie = self
            .shared
            .auth
            .as_ref()
            .is_some_and(|a| CookieNames::find(request.headers(), &a.names.session).is_some());

        let mut matched = None;
        let result = self
            .route(request.map(body::boxed), peer, trusted, &request_id, &mut matched)
            .await;
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                let problem = error::classify(&*e);
                if problem.status.is_server_error() {
                    // Which upstream failed, for the operator; never in the body.
                    let upstream = matched.and_then(|r| match &r.leaf {
                        Leaf::Upstream { scheme, authority } => Some(format!("{scheme}://{authority}")),
                        Leaf::Static(_) => None,
                    });
                    tracing::warn!(
                        request_id = %request_id.to_str().unwrap_or(""),
                        upstream = upstream.as_deref().unwrap_or("-"),
                        error = %error::chain(&*e),
                        "request failed"
                    );
                }
                let ends_session = problem.code == Code::LoginRequired && had_session_cookie;
                let mut response = problem.into_response(request_id.to_str().unwrap_or(""));
                self.protect(response.headers_mut());
                if let (true, Some(auth)) = (ends_session, &self.shared.auth) {
                    // The cookie names no usable session: drop it (§3.1).
                    response
                        .headers_mut()
                        .append(header::SET_COOKIE, auth.names.clear_session());
                }
                response
            }
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());

        if let Some((started, method, path)) = access {
            let code = response.extensions().get::<Code>().map(|c| c.as_str());
            tracing::info!(
                target: "cloakroom::access",
                request_id = %request_id.to_str().unwrap_or(""),
                method = %method,
                path = %path,
                route = matched.map_or("-", |r: &Arc<Route>| r.config.path.as_str()),
                status = response.status().as_u16(),
                code = code.unwrap_or("-"),
                ms = started.elapsed().as_secs_f64() * 1000.0,
            );
        }
        response
    }

    async fn route<'a>(
        &'a self,
        request: Request<Body>,
        peer: SocketAddr,
        trusted: bool,
        request_id: &HeaderValue,
        matched: &mut Option<&'a Arc<Route>>,
    ) -> Result<Response<Body>, BoxError> {
        check_limits(&request, &self.shared.config.limits)?;
        check_framing(request.headers())?;
        let path = normalize_path(request.uri().path()).map_err(|e| {
            tracing::debug!(error = %e, "refused request path");
            Refusal::BadRequest("path")
        })?;
        // === the SPA's client module (issue 13), served with or without login ===
        if let Some(mut response) = crate::client_module::serve(&path, request.method(), request.headers()) {
            self.protect(response.headers_mut());
            return Ok(response);
        }
        if let (Some(auth), true) = (&self.shared.auth, path.starts_with("/auth/")) {
            let rid = request_id.to_str().unwrap_or("");
            let mut response = auth.handle(&path, request, rid).await?;
            self.protect(response.headers_mut());
            return Ok(response);
        }
        let route = self.shared.router.find(&path).ok_or(Refusal::NotFound)?;
        *matched = Some(route);
        check_method(route, request.method())?;
        route.check_raw_path(request.uri().path()).map_err(|e| {
            tracing::debug!(error = %e, "refused request path");
            Refusal::BadRequest("path")
        })?;
        let websocket = hygiene::is_websocket_upgrade(request.headers());
        if websocket && !route.config.websocket {
            return Err(Refusal::BadRequest("websocket not enabled on this route").into());
        }
        let mut bearer = None;
        let mut authenticated = false;
        let mut reseal = None;
        if route.config.auth != AuthMode::None {
            let auth = self.shared.auth.as_ref().ok_or(Refusal::LoginRequired)?;
            // Pages are navigations; every other protected route is an API.
            if websocket {
                auth.csrf.check_websocket(request.headers())?;
            } else if route.config.login_redirect {
                auth.csrf.check_unsafe(request.method(), request.headers())?;
            } else if route.config.csrf == CsrfMode::FetchMetadata {
                // Reads that cannot carry X-CSRF (EventSource, <img>): issue 13.
                auth.csrf
                    .check_fetch_metadata(request.method(), request.headers())?;
            } else {
                auth.csrf.check(request.method(), request.headers())?;
            }
            match session::load(auth, request.headers()).await {
                Ok(loaded) => {
                    authenticated = true;
                    reseal = loaded.reseal(auth);
                    if route.config.token == TokenKind::User {
                        let token = access_token(auth, &loaded).await?;
                        bearer = Some(bearer_header(token.expose())?);
                    }
                }
                Err(e) if e.is::<Refusal>() => {
                    if route.config.auth == AuthMode::Required {
                        return Err(self.login_required(route, &request));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // === static routes (issue 13): files from disk in place of an upstream ===
        if let Leaf::Static(files) = &route.leaf {
            let audience = match route.config.auth {
                AuthMode::None => Audience::Anyone,
                _ => Audience::SignedIn,
            };
            let mut response = files.serve(request, &path, audience).await?;
            if let Some(cookie) = reseal {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            return Ok(response);
        }
        // === end static routes ===
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let forwarded = Forwarded::from_request(
            request.headers(),
            peer.ip(),
            trusted,
            host.as_deref(),
            &self.shared.public_host,
        );
        let forward = Forward {
            path,
            forwarded,
            request_id: request_id.clone(),
            bearer,
        };
        let mut response = Box::pin(self.shared.upstream.forward(route, request, forward)).await?;
        if let Some(cookie) = reseal {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if authenticated {
            // A response made for one user is not for any shared cache (T41).
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(response)
    }

    fn login_required(&self, route: &Route, request: &Request<Body>) -> BoxError {
        if route.config.login_redirect && request.method() == Method::GET && is_navigation(request.headers())
        {
            let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            return Box::new(Refusal::LoginRedirect(target.to_owned()));
        }
        Box::new(Refusal::LoginRequired)
    }

    /// Security headers on responses cloakroom writes itself (PX-26).
    fn protect(&self, headers: &mut http::HeaderMap) {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if self.shared.config.is_https() {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
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
/// passed on anyway (the header is hop-by-hop).
fn check_framing(headers: &http::HeaderMap) -> Result<(), Refusal> {
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

/// Whether a request is the browser loading a page, the only kind that can
/// follow a redirect to the IdP. A `fetch()` gets a 401 it can act on
/// instead of a redirect it cannot follow (LG-21).
fn is_navigation(headers: &http::HeaderMap) -> bool {
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode == "navigate";
    }
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let accept = header("accept");
    let wants_json = accept.contains("application/json") && !accept.contains("text/html");
    !wants_json && !header("x-requested-with").eq_ignore_ascii_case("XMLHttpRequest")
}

/// How long a request with a still-valid access token waits for its refresh.
const REFRESH_PATIENCE: Duration = Duration::from_secs(2);

/// The session's access token, refreshed first when it is about to expire.
/// While the IdP or the store cannot refresh it, a token that is still
/// valid is used as it is (RF-10); an expired one gives a 503 that keeps
/// the session (RF-11).
async fn access_token(auth: &Arc<Auth>, loaded: &session::Loaded) -> Result<Arc<Secret<String>>, BoxError> {
    let now = auth.clock.now();
    let record = &loaded.record;
    if refresh::is_fresh(auth, record) {
        return Ok(Arc::new(record.access_token.clone()));
    }
    if record.refresh_token.is_none() {
        // Nothing to refresh with: the token serves until it expires (LG-18).
        if record.access_expires_at > now {
            return Ok(Arc::new(record.access_token.clone()));
        }
        return Err(RefreshError::Ended.into());
    }
    let flight = refresh::refresh(auth, loaded);
    let valid_for = Duration::from_secs(record.access_expires_at.saturating_sub(now));
    let refreshed = if valid_for > 2 * REFRESH_PATIENCE {
        // The current token still works for a while: a slow IdP delays this
        // request by at most REFRESH_PATIENCE; the refresh goes on without it.
        tokio::time::timeout(REFRESH_PATIENCE, flight)
            .await
            .unwrap_or(Err(RefreshError::Pending))
    } else {
        flight.await
    };
    match refreshed {
        Ok(fresh) => Ok(fresh.access_token),
        // Judged now, not before the refresh: a slow IdP may have outlived it.
        Err(e) if e != RefreshError::Ended && record.access_expires_at > auth.clock.now() => {
            tracing::debug!(error = %e, "refresh postponed; the current access token is still valid");
            Ok(Arc::new(record.access_token.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `Authorization: Bearer <token>`, marked sensitive so no layer logs it.
fn bearer_header(token: &str) -> Result<HeaderValue, BoxError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `host[:port]` of an origin, the port only when not the scheme's default.
fn public_host(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A trusted proxy's request id is kept (one id across the whole path);
/// anyone else gets a fresh one.
fn request_id(headers: &http::HeaderMap, trusted: bool) -> HeaderValue {
    let given = headers.get(&X_REQUEST_ID).filter(|v| {
        let ok_char = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:".contains(b);
        trusted && (1..=128).contains(&v.len()) && v.as_bytes().iter().all(ok_char)
    });
    match given {
        Some(v) => v.clone(),
        None => {
            let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
            let id = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
        }
    }
}
