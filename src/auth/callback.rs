//! `GET /auth/callback`: finish the code flow and start a new session.
//!
//! Every failure is a short HTML page with a stable code; the details go to
//! the log, never to the page (T20). A top-level cross-site navigation from
//! the IdP is expected here, so no CSRF header is asked for (CS-11): the
//! state, bound to this browser's pre-auth cookie, plays that role (T14).

use std::collections::HashMap;

use http::request::Parts;
use http::{header, Response, StatusCode};
use sha2::Digest;

use super::pending::{self, LATE_GRACE};
use super::{page, redirect, session, Auth};
use crate::body::Body;
use crate::error::Code;
use crate::oidc::{IdTokenCheckError, IdpError};
use crate::random::hex;
use crate::session::StoreError;

/// Parameters that must not appear twice (T18, LG-10).
const SINGLE: &[&str] = &["code", "state", "iss", "error", "error_description"];

/// Finishes the login. Once this browser's login for the state is found,
/// its pre-auth cookie is cleared with the answer (LG-26), except on a 503:
/// then the same callback can be retried as it is.
pub async fn finish(auth: &Auth, request: &Parts, request_id: &str) -> Response<Body> {
    let (mut response, used) = complete(auth, request, request_id).await;
    if let (Some(state), false) = (used, response.status() == StatusCode::SERVICE_UNAVAILABLE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, pending::forget(auth, &state));
    }
    response
}

/// A failed login: the reason to the log, a generic page with the code
/// and request id to the browser (T20).
fn failed(request_id: &str, status: StatusCode, code: Code, why: &str) -> Response<Body> {
    tracing::warn!(request_id, reason = why, code = ?code, "login failed");
    page::error(status, code, request_id)
}

/// The store key that claims the callback for `state`: it is single use,
/// even for two callbacks at once or a replay with a copy of the old
/// pre-auth cookie (LG-03). Held only while the code is exchanged, and kept
/// only by completed logins, so anonymous traffic cannot grow it (LG-24).
fn claim_key(state: &str) -> String {
    format!(
        "cloakroom:{{{}}}:done",
        hex(&sha2::Sha256::digest(state.as_bytes())[..16])
    )
}

/// The answer, and the state of this browser's login it used, if any.
async fn complete(auth: &Auth, request: &Parts, request_id: &str) -> (Response<Body>, Option<String>) {
    let fail = |status, code, why: &str| failed(request_id, status, code, why);
    let query = request.uri.query().unwrap_or("");
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() && SINGLE.contains(&k.as_ref()) {
            return (
                fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "duplicated parameter"),
                None,
            );
        }
    }
    let Some(state) = params.get("state") else {
        return (fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "no state"), None);
    };
    // Only the browser that started this login holds its transaction: a
    // state used anywhere else finds nothing, and takes nothing (LG-25).
    let Some(transaction) = pending::find(auth, &request.headers, state) else {
        let unknown = fail(
            StatusCode::BAD_REQUEST,
            Code::LoginFailed,
            "state unknown to this browser",
        );
        return (unknown, None);
    };
    let response = use_login(auth, request, request_id, &params, state, &transaction).await;
    (response, Some(state.clone()))
}

/// Checks the IdP's answer for this browser's login, claims it and
/// exchanges its code.
async fn use_login(
    auth: &Auth,
    request: &Parts,
    request_id: &str,
    params: &HashMap<String, String>,
    state: &str,
    transaction: &pending::Transaction,
) -> Response<Body> {
    let fail = |status, code, why: &str| failed(request_id, status, code, why);
    let store_down = |e: &dyn std::fmt::Display| {
        tracing::warn!(request_id, error = %e, "login failed: session store unavailable");
        page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::SessionStoreUnavailable,
            request_id,
        )
    };
    let timeout = auth.config.session.login_timeout.as_millis() as u64;
    if auth.clock.now_ms() > transaction.started_ms.saturating_add(timeout) {
        return fail(StatusCode::BAD_REQUEST, Code::LoginExpired, "transaction expired");
    }
    let metadata = match auth.idp.metadata().await {
        Ok(m) => m,
        Err(_) => {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::IdpUnavailable,
                "IdP unavailable",
            )
        }
    };
    // RFC 9207: the response names its issuer, and it must be ours.
    match params.get("iss") {
        Some(iss) if iss != auth.idp.issuer() => {
            return fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "iss mismatch");
        }
        None if metadata.authorization_response_iss_parameter_supported => {
            return fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "iss missing");
        }
        _ => {}
    }
    if let Some(error) = params.get("error") {
        // The IdP's own words stay in the log (escaped by the logger).
        tracing::warn!(request_id, idp_error = %error, "IdP returned an error");
        return page::error(StatusCode::BAD_REQUEST, Code::LoginFailed, request_id);
    }
    let Some(code) = params.get("code") else {
        return fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "no code");
    };

    // Claimed before the code is exchanged, in one atomic step: of two
    // callbacks at once, one exchanges and the other is refused. Failing
    // closed: if the store cannot say, nothing is exchanged (RD-12).
    let claim = claim_key(state);
    let ttl = auth.config.session.login_timeout + LATE_GRACE;
    match auth.store.put(&claim, Default::default(), 0, ttl).await {
        Ok(_) => {}
        Err(StoreError::Conflict) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::LoginFailed,
                "login already completed",
            );
        }
        Err(StoreError::Unavailable(e)) => return store_down(&e),
    }
    let response = exchange(auth, request, request_id, code, transaction).await;
    if response.status() != StatusCode::FOUND {
        // Not completed: nothing of this attempt stays in the store, and a
        // retry after a 503 can claim it again.
        let _ = auth.store.delete(&claim).await;
    }
    response
}

/// Exchanges the code, checks the ID token and starts the session.
async fn exchange(
    auth: &Auth,
    request: &Parts,
    request_id: &str,
    code: &str,
    transaction: &pending::Transaction,
) -> Response<Body> {
    let fail = |status, code, why: &str| failed(request_id, status, code, why);
    let tokens = match auth
        .idp
        .exchange_code(code, &transaction.verifier(), &auth.redirect_uri())
        .await
    {
        Ok(t) => t,
        Err(IdpError::Unreachable(e)) => {
            tracing::warn!(request_id, error = %e, "code exchange: IdP unreachable");
            return page::error(StatusCode::SERVICE_UNAVAILABLE, Code::IdpUnavailable, request_id);
        }
        // A redirect, a wrong content type, an unreadable answer (LG-15).
        Err(e @ IdpError::BadResponse(_)) => {
            return fail(
                StatusCode::BAD_GATEWAY,
                Code::IdpBadResponse,
                &format!("code exchange: {e}"),
            );
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::LoginFailed,
                &format!("code exchange: {e}"),
            )
        }
    };
    let Some(id_token) = &tokens.id_token else {
        return fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "no ID token");
    };
    let claims = match auth
        .idp
        .validate_id_token(
            id_token.expose(),
            Some(&transaction.nonce()),
            Some(tokens.access_token.expose()),
        )
        .await
    {
        Ok(c) => c,
        Err(IdTokenCheckError::Idp(IdpError::Unreachable(_))) => {
            return page::error(StatusCode::SERVICE_UNAVAILABLE, Code::IdpUnavailable, request_id);
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::LoginFailed,
                &format!("ID token: {e}"),
            )
        }
    };

    // A session the browser brought along is ended, never promoted (CK-11).
    if let Ok(old) = session::load(auth, &request.headers).await {
        let _ = auth.store.delete(&old.key).await;
    }
    let cookie = match session::create(auth, tokens, claims).await {
        Ok(c) => c,
        Err(StoreError::Unavailable(e)) => {
            tracing::warn!(request_id, error = %e, "login failed: session not stored");
            return page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::SessionStoreUnavailable,
                request_id,
            );
        }
        Err(StoreError::Conflict) => {
            return fail(StatusCode::BAD_REQUEST, Code::LoginFailed, "session id collision")
        }
    };
    let mut response = redirect(&transaction.return_to);
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth.names.set_session(&cookie));
    response
}
