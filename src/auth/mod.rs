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

pub mod answer;
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
mod state;
pub mod step_up;
pub mod user;

use std::net::IpAddr;

use http::{Method, Request, Response};

use crate::body::Body;
use crate::config::DeviceBinding;
use crate::error::{BoxError, Refusal};

pub use self::state::Auth;

// === impl Auth ===

impl Auth {
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
