//! `GET /auth/user`: the session's configured claims and expiry, no token.
//!
//! Without a session it is a 401 `login_required`, or, with
//! `session.anonymous_user`, a 200 `{"authenticated": false}`: a signed-out
//! page load is then not an error in the browser's console. Either way the
//! CSRF header is asked for first (CS-09), and a session store that cannot
//! answer stays a 503: "the store is down" is never "signed out".

use std::net::IpAddr;

use http::request::Parts;
use http::{header, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::answer::json;
use super::state::Auth;
use crate::body::Body;
use crate::error::{BoxError, Refusal};
use crate::session::{Loaded, Sessions};

pub async fn get(auth: &Auth, request: &Parts, client: IpAddr) -> Result<Response<Body>, BoxError> {
    auth.csrf.check(&request.method, &request.headers)?;
    let loaded = match auth.sessions.load(&request.headers, client).await {
        Ok(loaded) => loaded,
        Err(e) if auth.config.session.anonymous_user && is_no_session(&*e) => {
            let mut response = json(StatusCode::OK, &json!({"authenticated": false}));
            if auth.sessions.names.find_session(&request.headers).is_some() {
                // The cookie names no usable session: drop it, as a 401 would.
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, auth.sessions.names.clear_session());
            }
            return Ok(response);
        }
        Err(e) => return Err(e),
    };
    let mut response = json(StatusCode::OK, &user_info(&auth.sessions, &loaded));
    if let Some(offer) = super::device::offer(auth, &loaded, &request.headers) {
        response
            .headers_mut()
            .insert("secure-session-registration", offer);
    }
    for cookie in auth.sessions.reseal(&loaded) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `login_required`: no cookie, one that does not open, a session gone or
/// timed out. Not a store error.
fn is_no_session(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<Refusal>() == Some(&Refusal::LoginRequired)
}

pub fn user_info(sessions: &Sessions, loaded: &Loaded) -> Value {
    let config = &sessions.config;
    let mut out = Map::new();
    for name in &config.claims {
        if let Some(v) = loaded.record.claims.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    out.insert("authenticated".into(), json!(true));
    out.insert(
        "expires_at".into(),
        json!(loaded.ticket.issued_at + config.absolute_timeout.as_secs()),
    );
    out.insert(
        "idle_expires_at".into(),
        json!(loaded.record.last_seen + config.idle_timeout.as_secs()),
    );
    Value::Object(out)
}
