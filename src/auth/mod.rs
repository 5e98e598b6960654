//! The BFF endpoints under `/auth/`.
//!
//! - `GET /auth/login?return_to=`: start a code flow (PKCE S256, state, nonce),
//!   a step-up with `max_age` and `acr_values` ([`step_up`]);
//! - `GET /auth/callback`: finish it, start a new session;
//! - `GET /auth/user`: the session's claims and expiry (or, opted in,
//!   `{"authenticated": false}` without one);
//! - `POST /auth/logout`: end the session here and at the IdP;
//! - `POST /auth/backchannel-logout`: the IdP ends sessions (server to server);
//! - `GET /auth/sessions`, `DELETE /auth/sessions/{id}`: the user's sessions;
//! - `POST /auth/device/register`, `POST /auth/device/refresh`: a browser
//!   binds the session to its key, and proves it still holds it (DBSC,
//!   [`device`]).

pub mod backchannel;
pub mod callback;
pub mod csrf;
pub mod device;
pub mod device_proof;
pub mod fetch_metadata;
pub mod login;
pub mod logout;
pub mod pending;
pub mod return_to;
pub mod sessions;
pub mod step_up;
pub mod user;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::clock::Clock;
use crate::config::{Config, DeviceBinding};
use crate::error::{BoxError, Refusal};
use crate::metrics::bursts::Bursts;
use crate::metrics::Metrics;
use crate::oidc::Idp;
use crate::refresh::Refresher;
use crate::revoker::Revoker;
use crate::session::{SessionStore, Sessions};

/// Everything the login flow and sessions need, shared by all workers.
pub struct Auth {
    pub config: Arc<Config>,
    pub idp: Arc<Idp>,
    /// Sessions' life: load, create, timeouts; the cookie key ring.
    pub sessions: Arc<Sessions>,
    /// Token refresh, one flight per session in this replica.
    pub refresher: Arc<Refresher>,
    /// This replica's worker of the revocation queue, for as long as this
    /// `Auth` serves: held, never read; dropping it stops the worker.
    _revoker: Arc<Revoker>,
    pub csrf: csrf::Csrf,
    /// Code exchanges per client address (LG-28); kept across reloads.
    pub exchanges: Arc<Bursts>,
}

// === impl Auth ===

impl Auth {
    /// `None` when no `oidc` section is configured (anonymous routes only).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, BoxError> {
        Self::reloaded(config, store, clock, metrics, None)
    }

    /// [`Auth::new`] for a reloaded config: from `previous`, the running
    /// one, it keeps the `Idp` (its discovery and JWKS cache) when the
    /// `oidc` section is unchanged, and the refresh flights in any case.
    /// Sessions (key ring, timeouts) and CSRF origins are built anew.
    pub fn reloaded(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
        previous: Option<&Auth>,
    ) -> Result<Option<Arc<Self>>, BoxError> {
        let Some(oidc) = config.oidc.clone() else {
            return Ok(None);
        };
        let idp = match previous {
            Some(previous) if previous.idp.config == oidc => previous.idp.clone(),
            _ => Idp::new(oidc, clock.clone())?,
        };
        let endings = previous.map(|p| p.sessions.endings.clone()).unwrap_or_default();
        let exchanges = previous.map_or_else(callback::exchange_limiter, |p| p.exchanges.clone());
        let sessions = Arc::new(Sessions::reloaded(&config, store, clock, metrics, endings)?);
        let refresher = match previous {
            Some(previous) => previous.refresher.reloaded(sessions.clone(), idp.clone()),
            None => Refresher::new(sessions.clone(), idp.clone()),
        };
        sessions.spawn_watcher();
        let revoker = Revoker::spawn(sessions.clone(), idp.clone());
        Ok(Some(Arc::new(Self {
            refresher,
            _revoker: revoker,
            csrf: csrf::Csrf::new(&config),
            exchanges,
            config,
            idp,
            sessions,
        })))
    }

    /// The redirect URI registered at the IdP.
    pub fn redirect_uri(&self) -> String {
        self.config.redirect_uri()
    }

    /// Serves `/auth/*` to `client`.
    pub async fn handle(
        &self,
        path: &str,
        request: Request<Body>,
        client: IpAddr,
    ) -> Result<Response<Body>, BoxError> {
        if path == "/auth/backchannel-logout" {
            return backchannel::logout(self, request).await;
        }
        // None of the others reads a body.
        let (request, _) = request.into_parts();
        if let Some(id) = path.strip_prefix("/auth/sessions/") {
            if request.method != Method::DELETE {
                return Err(Refusal::MethodNotAllowed {
                    allow: "DELETE".into(),
                }
                .into());
            }
            return sessions::end(self, &request, id, client).await;
        }
        match (path, &request.method) {
            ("/auth/login", &Method::GET) => Ok(login::start(self, &request).await?),
            ("/auth/callback", &Method::GET) => callback::finish(self, &request, client).await,
            ("/auth/user", &Method::GET) => user::get(self, &request, client).await,
            ("/auth/logout", &Method::POST) => {
                self.csrf.check(&request.method, &request.headers)?;
                logout::logout(self, &request.headers, client).await
            }
            ("/auth/sessions", &Method::GET) => sessions::list(self, &request, client).await,
            (device::REGISTER | device::REFRESH, _)
                if self.config.session.device_binding == DeviceBinding::Off =>
            {
                Err(Refusal::NotFound.into())
            }
            (device::REGISTER, &Method::POST) => device::register(self, &request).await,
            (device::REFRESH, &Method::POST) => device::refresh(self, &request).await,
            (device::REGISTER | device::REFRESH, _) => {
                Err(Refusal::MethodNotAllowed { allow: "POST".into() }.into())
            }
            ("/auth/login" | "/auth/callback" | "/auth/user" | "/auth/sessions", _) => {
                Err(Refusal::MethodNotAllowed { allow: "GET".into() }.into())
            }
            ("/auth/logout", _) => Err(Refusal::MethodNotAllowed { allow: "POST".into() }.into()),
            _ => Err(Refusal::NotFound.into()),
        }
    }
}

/// A JSON answer that no cache keeps.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A redirect no cache keeps and no Referer leaks from (T19).
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
