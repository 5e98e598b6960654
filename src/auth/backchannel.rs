//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//!
//! The IdP posts a logout token (`logout_token=` in a form) from server to
//! server when a user logs out there. The token's signature is the only
//! authority: no CSRF header is asked for (no browser sends this), and a
//! session cookie that comes along is never read.
//!
//! Anyone can reach this endpoint, so its form must arrive whole within
//! `limits.body_read_timeout`, or the answer is a 408 and the connection
//! closes (PX-34): a body trickled in must not hold a connection. Then:
//!
//! 1. The token is validated per BCL §2.6 ([`crate::oidc::logout_token`]):
//!    an invalid one is a 400, and nothing ends (LO-07 to LO-09).
//! 2. Its `jti` is claimed in the store, once: a replay is a 400 (LO-08).
//!    The claim fails closed: with the store down the answer is a 503, so
//!    the IdP sees the failure (LO-10, T45).
//! 3. The sessions it names end on every replica, with their tunnels and
//!    streams: with a `sid`, those that IdP session started (and, with a
//!    `sub` too, only that subject's); with only a `sub`, all of the
//!    subject's (LO-06). If ending fails, the claim is released so that
//!    the IdP's retry is not taken for a replay.
//! 4. 200 with `Cache-Control: no-store` (BCL §2.8).

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use sha2::Digest;

use super::state::Auth;
use crate::body::{self, Body};
use crate::error::{BoxError, Refusal};
use crate::metrics::EndReason;
use crate::oidc::logout_token::REPLAY_WINDOW_SECS;
use crate::oidc::LogoutTokenCheckError;
use crate::session::StoreError;

/// A logout token is a few KiB at most.
const MAX_BODY: usize = 64 * 1024;

/// Serves `/auth/backchannel-logout`.
pub async fn logout(auth: &Auth, request: Request<Body>) -> Result<Response<Body>, BoxError> {
    if request.method() != Method::POST {
        return Err(Refusal::MethodNotAllowed { allow: "POST".into() }.into());
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok()?.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == mime::APPLICATION_WWW_FORM_URLENCODED.essence_str());
    if !form {
        return Err(Refusal::BadRequest("back-channel logout needs a form").into());
    }
    let within = auth.config.limits.body_read_timeout;
    let body = body::read_whole(request.into_body(), MAX_BODY, within).await?;
    let token = the_logout_token(&body).ok_or(Refusal::BadRequest("one logout_token expected"))?;

    let logout = match auth.idp.validate_logout_token(&token).await {
        Ok(logout) => logout,
        Err(LogoutTokenCheckError::Idp(e)) => return Err(e.into()),
        Err(LogoutTokenCheckError::Invalid(e)) => {
            tracing::warn!(reason = %e, "back-channel logout token refused");
            return Err(Refusal::BadRequest("invalid logout token").into());
        }
    };

    let claim = jti_key(&logout.iss, &logout.jti);
    let window = std::time::Duration::from_secs(REPLAY_WINDOW_SECS);
    match auth
        .sessions
        .store
        .put(&claim, Default::default(), 0, window)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict) => {
            tracing::warn!("back-channel logout token replayed (its jti was seen before)");
            return Err(Refusal::BadRequest("replayed logout token").into());
        }
        Err(e) => return Err(e.into()),
    }
    let ended = match (&logout.sid, &logout.sub) {
        (Some(sid), sub) => auth.sessions.end_sid(&logout.iss, sid, sub.as_deref()).await,
        (None, Some(sub)) => {
            auth.sessions
                .end_subject(&logout.iss, sub, EndReason::BackchannelLogout)
                .await
        }
        (None, None) => Ok(0),
    };
    let ended = match ended {
        Ok(n) => n,
        Err(e) => {
            let _ = auth.sessions.store.delete(&claim).await;
            return Err(e.into());
        }
    };
    tracing::info!(
        sessions = ended,
        by_sid = logout.sid.is_some(),
        "back-channel logout"
    );
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The form's one `logout_token`; `None` if it has none or several.
fn the_logout_token(form: &[u8]) -> Option<String> {
    let mut tokens = url::form_urlencoded::parse(form).filter(|(name, _)| name == "logout_token");
    match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) => Some(token.into_owned()),
        _ => None,
    }
}

/// The store key that marks a logout token's `jti` as seen.
fn jti_key(iss: &str, jti: &str) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update((iss.len() as u64).to_be_bytes());
    hash.update(iss.as_bytes());
    hash.update(jti.as_bytes());
    format!("cloakroom:{{{}}}:jti", hex::encode(&hash.finalize()[..16]))
}
