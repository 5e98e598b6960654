//! `POST /auth/logout`: end the session (on every replica, with what depends
//! on it), queue its refresh token's revocation, clear the cookie, and
//! answer with the IdP's end-session URL.
//!
//! The revocation goes through the queue every other end uses
//! (`session::revocation`): the answer never waits for the IdP, and an IdP
//! that is down has it retried until it is back (LO-05).

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::answer::json;
use super::state::Auth;
use crate::body::Body;
use crate::error::{BoxError, Refusal};
use crate::metrics::EndReason;

pub async fn logout(auth: &Auth, headers: &HeaderMap, client: IpAddr) -> Result<Response<Body>, BoxError> {
    let sessions = &auth.sessions;
    // Read, not touched: it is deleted next.
    let loaded = match sessions.open(headers, Some(client)).await {
        Ok(l) => Some(l),
        Err(e) if e.is::<Refusal>() => None,
        Err(e) => return Err(e),
    };
    let mut id_token = None;
    if let Some(loaded) = loaded {
        sessions
            .end_opened(&loaded.key, &loaded.record, EndReason::Logout, Some(client))
            .await?;
        id_token = loaded.record.id_token;
    }
    let logout_url = end_session_url(auth, id_token.as_ref().map(|t| t.expose())).await;
    let mut response = json(StatusCode::OK, &json!({ "logout_url": logout_url }));
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, sessions.names.clear_session());
    h.append(header::SET_COOKIE, sessions.names.clear_bound());
    h.extend(
        sessions
            .names
            .clear_previous_session()
            .map(|c| (header::SET_COOKIE, c)),
    );
    response
        .headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    Ok(response)
}

/// RP-Initiated Logout 1.0 §2, or `null` when the IdP has no such endpoint.
async fn end_session_url(auth: &Auth, id_token: Option<&str>) -> Value {
    let Ok(metadata) = auth.idp.metadata().await else {
        return Value::Null;
    };
    let Some(endpoint) = &metadata.end_session_endpoint else {
        return Value::Null;
    };
    let oidc = &auth.idp.config;
    let post_logout = auth.config.post_logout_redirect_uri();
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", &oidc.client_id)
            .append_pair("post_logout_redirect_uri", &post_logout);
        q.append_pair("state", &crate::random::token(16));
        if let (true, Some(token)) = (oidc.id_token_hint, id_token) {
            q.append_pair("id_token_hint", token);
        }
    }
    Value::String(url.to_string())
}
