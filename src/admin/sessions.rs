//! The admin API, on the admin listener, off unless `admin.api_token` (or
//! `admin.api_token_file`) is set:
//!
//! - `DELETE /admin/sessions?sub=…&iss=…`: ends every session of a subject
//!   on every replica, with their tunnels and streams (LO-12), and answers
//!   `{"ended": <how many were live>}`. `iss` defaults to the configured
//!   issuer.
//!
//! Every call carries `Authorization: Bearer <api_token>`, compared in
//! constant time; anything else is a 401. The refresh tokens of the ended
//! sessions are queued for revocation at the IdP, as at any end
//! (`session::revocation`; not with `session.revoke_on_end: false`, when
//! only each session's cookie could open them).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use sha2::Digest;

use crate::auth::Auth;
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::Code;
use crate::metrics::EndReason;
use crate::rescue::{self, Problem};
use crate::session::Sessions;

/// The admin API: its token (as a digest) and the sessions it ends.
pub struct Api {
    token: [u8; 32],
    sessions: Arc<Sessions>,
    issuer: String,
}

// === impl Api ===

impl Api {
    /// The API, when configured and there are sessions to manage.
    pub fn new(config: &Config, auth: Option<&Arc<Auth>>) -> Option<Arc<Self>> {
        let token = config.admin.api_token.as_ref()?;
        let Some(auth) = auth else {
            tracing::warn!("admin.api_token is set, but without oidc there are no sessions to manage");
            return None;
        };
        Some(Arc::new(Self {
            token: digest(token.expose().as_bytes()),
            sessions: auth.sessions.clone(),
            issuer: auth.idp.issuer().to_owned(),
        }))
    }

    /// Answers one request under `/admin/`.
    pub async fn handle(&self, request: &Parts) -> Response<Body> {
        if !self.authorized(request) {
            return Problem::new(StatusCode::UNAUTHORIZED, Code::LoginRequired)
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
                .into_response("-");
        }
        if request.uri.path() != "/admin/sessions" {
            return Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("-");
        }
        if request.method != Method::DELETE {
            return Problem::new(StatusCode::METHOD_NOT_ALLOWED, Code::MethodNotAllowed)
                .with_header(header::ALLOW, HeaderValue::from_static("DELETE"))
                .into_response("-");
        }
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let Some(sub) = query.get("sub").filter(|s| !s.is_empty()) else {
            return Problem::new(StatusCode::BAD_REQUEST, Code::BadRequest).into_response("-");
        };
        let iss = query.get("iss").unwrap_or(&self.issuer);
        match self.sessions.end_subject(iss, sub, EndReason::Admin).await {
            Ok(ended) => {
                tracing::info!(sub = %sub, iss = %iss, ended, "admin API ended a subject's sessions");
                let body = serde_json::json!({ "ended": ended });
                let mut response = Response::new(body::full(Bytes::from(format!("{body}\n"))));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin API could not end sessions");
                rescue::classify(&e).into_response("-")
            }
        }
    }

    /// `Authorization: Bearer <token>`, compared in constant time: both
    /// sides are hashed first, so neither the length nor a prefix of the
    /// token shows in the time it takes.
    fn authorized(&self, request: &Parts) -> bool {
        let given = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let given = digest(given.trim().as_bytes());
        let difference = given
            .iter()
            .zip(self.token.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}
