//! The BFF endpoints under `/auth/`.
//!
//! - `GET /auth/login?return_to=`: start a code flow (PKCE S256, state, nonce),
//!   a step-up with `max_age` and `acr_values` ([`step_up`]);
//! - `GET /auth/callback`: finish it, start a new session;
//! - `GET /auth/user`: the session's claims and expiry;
//! - `POST /auth/logout`: end the session here and at the IdP.

pub mod callback;
pub mod csrf;
pub mod fetch_metadata;
pub mod login;
pub mod logout;
pub mod pending;
pub mod return_to;
pub mod step_up;
pub mod user;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{BoxError, Refusal};
use crate::metrics::Metrics;
use crate::oidc::Idp;
use crate::refresh::Refresher;
use crate::session::{SessionStore, Sessions};

/// Everything the login flow and sessions need, shared by all workers.
pub struct Auth {
    pub config: Arc<Config>,
    pub idp: Arc<Idp>,
    /// Sessions' life: load, create, timeouts; the cookie key ring.
    pub sessions: Arc<Sessions>,
    /// Token refresh, one flight per session in this replica.
    pub refresher: Arc<Refresher>,
    pub csrf: csrf::Csrf,
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
        let Some(oidc) = config.oidc.clone() else {
            return Ok(None);
        };
        let idp = Idp::new(oidc, clock.clone())?;
        let sessions = Arc::new(Sessions::new(&config, store, clock, metrics)?);
        Ok(Some(Arc::new(Self {
            refresher: Refresher::new(sessions.clone(), idp.clone()),
            csrf: csrf::Csrf::new(&config),
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
        // None of these endpoints reads a body.
        let (request, _) = request.into_parts();
        match (path, &request.method) {
            ("/auth/login", &Method::GET) => Ok(login::start(self, &request).await?),
            ("/auth/callback", &Method::GET) => callback::finish(self, &request).await,
            ("/auth/user", &Method::GET) => {
                self.csrf.check(&request.method, &request.headers)?;
                let loaded = self.sessions.load(&request.headers, client).await?;
                let mut response = json(StatusCode::OK, &user::user_info(&self.sessions, &loaded));
                if let Some(cookie) = self.sessions.reseal(&loaded) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                Ok(response)
            }
            ("/auth/logout", &Method::POST) => {
                self.csrf.check(&request.method, &request.headers)?;
                logout::logout(self, &request.headers, client).await
            }
            ("/auth/login" | "/auth/callback" | "/auth/user", _) => {
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
