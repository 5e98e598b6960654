//! The signed-in user's sessions:
//!
//! - `GET /auth/sessions`: every live session of the caller's subject,
//!   oldest first, as `{"sessions": [{"id", "created", "last_seen",
//!   "device", "current"}]}`. `id` is an opaque handle (a hash of the
//!   store key), never the key or the cookie; times are seconds since the
//!   epoch; `device` is what the User-Agent said at login, coarsely
//!   ("Firefox on Linux").
//! - `DELETE /auth/sessions/{id}`: ends one of the caller's own sessions on
//!   every replica, with its tunnels and streams; its next request is a
//!   401. Another subject's id, or one that ended, is a 404. Ending the
//!   caller's own session also clears its cookie. 204.
//!
//! Both take the CSRF proof of `/auth/user` and `/auth/logout`: `X-CSRF: 1`,
//! and an allowed origin for the DELETE.

use std::net::IpAddr;

use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::answer::json;
use super::state::Auth;
use crate::body::{self, Body};
use crate::error::{BoxError, Refusal};
use crate::metrics::EndReason;
use crate::session::Owner;

/// `GET /auth/sessions`.
pub async fn list(auth: &Auth, request: &Parts, client: IpAddr) -> Result<Response<Body>, BoxError> {
    auth.csrf.check(&request.method, &request.headers)?;
    let sessions = &auth.sessions;
    let loaded = sessions.load(&request.headers, client).await?;
    let listed = match Owner::of(&loaded.record.claims) {
        Some(owner) => sessions.sessions_of(&owner.iss, &owner.sub).await?,
        None => Vec::new(),
    };
    let items: Vec<_> = listed
        .iter()
        .map(|s| {
            let current = s.key == loaded.key;
            // This request saw the caller's own session last.
            let last_seen = if current {
                loaded.record.last_seen
            } else {
                s.last_seen
            };
            json!({
                "id": s.handle,
                "created": s.created,
                "last_seen": last_seen,
                "device": s.device,
                "current": current,
            })
        })
        .collect();
    let mut response = json(StatusCode::OK, &json!({ "sessions": items }));
    for cookie in sessions.reseal(&loaded) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `DELETE /auth/sessions/{id}`.
pub async fn end(auth: &Auth, request: &Parts, id: &str, client: IpAddr) -> Result<Response<Body>, BoxError> {
    auth.csrf.check(&request.method, &request.headers)?;
    let sessions = &auth.sessions;
    let loaded = sessions.load(&request.headers, client).await?;
    let owner = Owner::of(&loaded.record.claims).ok_or(Refusal::NotFound)?;
    // Only the caller's own subject's sessions can be found, so another
    // user's id is a 404 like one that never existed.
    let target = sessions
        .sessions_of(&owner.iss, &owner.sub)
        .await?
        .into_iter()
        .find(|s| s.handle == id)
        .ok_or(Refusal::NotFound)?;
    sessions
        .end(&target.key, &target.indexes, EndReason::EndedByUser, Some(client))
        .await?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if target.key == loaded.key {
        response
            .headers_mut()
            .append(header::SET_COOKIE, sessions.names.clear_session());
    }
    Ok(response)
}
