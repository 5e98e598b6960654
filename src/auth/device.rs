//! Device-bound sessions (DBSC): the offer, `POST /auth/device/register`
//! and `POST /auth/device/refresh`, as Chrome ships them (W3C DBSC; where
//! the draft and Chrome differ, Chrome's behaviour is followed: the
//! registration is one request, a refresh two, and a registration answer
//! carries no challenge).
//!
//! - The offer (`Secure-Session-Registration`, with a challenge for this
//!   session) goes with the login's answer and with `GET /auth/user`
//!   while the session is unbound and in its registration window, unless
//!   the request came from another site: the browser registers in that
//!   request's context, and would send no `SameSite` cookie. A login
//!   through an IdP on another site is bound at its first `/auth/user`.
//! - Registration: the browser posts a proof signed by its new key, the
//!   key in the proof's header; the key goes into the session record,
//!   and the answer is the session instructions and the first bound
//!   cookie.
//! - Refresh: without a proof, a 403 with a challenge; with one, signed
//!   by the kept key over a challenge of ours, a new bound cookie and the
//!   challenge for next time. A session that is gone, or not this DBSC
//!   session's, is answered `continue: false`, which ends the browser's
//!   DBSC session.
//!
//! Any replica answers any of them: the key is in the shared record, and
//! challenges are sealed with the key ring and spent in the store.

use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::answer::json;
use super::device_proof::{self, ProofError};
use super::state::Auth;
use crate::body::Body;
use crate::config::DeviceBinding;
use crate::error::{BoxError, Refusal};
use crate::metrics::{Anomaly, DeviceEvent};
use crate::session::device::{ChallengeError, REGISTRATION_WINDOW};
use crate::session::{DeviceKey, Loaded};

pub const REGISTER: &str = "/auth/device/register";
pub const REFRESH: &str = "/auth/device/refresh";

/// The offer to bind `loaded` in the answer to a request with `headers`,
/// when it is due: unbound, in its window.
pub fn offer(auth: &Auth, loaded: &Loaded, headers: &HeaderMap) -> Option<HeaderValue> {
    if !auth.sessions.binding_offered(loaded) {
        return None;
    }
    offer_for(auth, &loaded.key, headers)
}

/// The offer to bind the session `key` in the answer to a request with
/// `headers`: none when that request came from another site (Chromium
/// 156 then posts the registration without the `SameSite` session
/// cookie, a certain 401).
pub fn offer_for(auth: &Auth, key: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "cross-site");
    if auth.config.session.device_binding == DeviceBinding::Off || cross_site {
        return None;
    }
    auth.sessions.metrics.device(DeviceEvent::Offered);
    device_proof::registration_header(REGISTER, &auth.sessions.device_challenge(key))
}

/// `POST /auth/device/register`.
pub async fn register(auth: &Auth, request: &Parts) -> Result<Response<Body>, BoxError> {
    let sessions = &auth.sessions;
    let mut loaded = sessions.open(&request.headers, None).await?;
    let session = crate::metrics::key_hash(&loaded.key).to_owned();
    let refused = |why: &str| {
        sessions.metrics.device(DeviceEvent::Refused);
        tracing::info!(session, why, "device registration refused");
        Err(Refusal::BadRequest("device registration refused").into())
    };
    if loaded.record.device.is_some() {
        return refused("the session is bound already");
    }
    if sessions.clock.now() >= loaded.record.created_at + REGISTRATION_WINDOW.as_secs() {
        return refused("past the registration window");
    }
    let proof = match device_proof::registration(&request.headers) {
        Ok(proof) => proof,
        Err(e) => return refused(&e.to_string()),
    };
    match sessions.take_challenge(&loaded.key, &proof.challenge).await? {
        Ok(()) => {}
        Err(e) => {
            if e != ChallengeError::Expired {
                sessions
                    .metrics
                    .anomaly(Anomaly::DeviceProofRefused, Some(&loaded.key), None, None);
            }
            return refused(&e.to_string());
        }
    }
    let device = DeviceKey::new(proof.alg, proof.jwk, sessions.clock.now());
    if !sessions.bind(&mut loaded, &device).await? {
        return refused("the session was bound meanwhile");
    }
    tracing::info!(
        session = %crate::metrics::key_hash(&loaded.key),
        alg = %device.alg,
        "session bound to its device"
    );
    let mut response = json(StatusCode::OK, &instructions(auth, &device.id));
    response
        .headers_mut()
        .append(header::SET_COOKIE, sessions.bound_cookie(&loaded.key, &device));
    Ok(response)
}

/// `POST /auth/device/refresh`.
pub async fn refresh(auth: &Auth, request: &Parts) -> Result<Response<Body>, BoxError> {
    let sessions = &auth.sessions;
    let Some(id) = device_proof::session_id(&request.headers) else {
        return Err(Refusal::BadRequest("no Sec-Secure-Session-Id").into());
    };
    let loaded = match sessions.open(&request.headers, None).await {
        Ok(loaded) => loaded,
        // Logged out, ended, timed out: the browser's DBSC session ends
        // with it. A store error stays a 503: the browser tries later.
        Err(e) if e.is::<Refusal>() => return Ok(ended(auth, &id)),
        Err(e) => return Err(e),
    };
    let Some(device) = loaded.record.device.clone().filter(|d| d.id == id) else {
        // A DBSC session of an earlier login in this browser.
        return Ok(ended(auth, &id));
    };
    if request.headers.get("secure-session-response").is_none() {
        sessions.metrics.device(DeviceEvent::Challenged);
        return Ok(challenge(auth, &loaded.key, &id));
    }
    let checked = device_proof::refresh(&request.headers, &device.alg, &device.jwk);
    let taken = match &checked {
        Ok(challenge) => sessions.take_challenge(&loaded.key, challenge).await?,
        Err(_) => Err(ChallengeError::Foreign),
    };
    if let Err(e) = taken {
        // A stale challenge is a browser that waited; anything else is a
        // proof that is not the device's (or a replay).
        let stale = checked.is_ok() && e == ChallengeError::Expired;
        if !stale {
            sessions.metrics.device(DeviceEvent::Refused);
            sessions
                .metrics
                .anomaly(Anomaly::DeviceProofRefused, Some(&loaded.key), None, None);
            let why = checked.err().map_or(e.to_string(), |p: ProofError| p.to_string());
            tracing::info!(
                session = %crate::metrics::key_hash(&loaded.key),
                why,
                "device proof refused"
            );
        }
        return Ok(challenge(auth, &loaded.key, &id));
    }
    sessions.metrics.device(DeviceEvent::Refreshed);
    let mut response = json(StatusCode::OK, &instructions(auth, &id));
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, sessions.bound_cookie(&loaded.key, &device));
    // The challenge for next time, so that the next refresh is one request.
    if let Some(next) = device_proof::challenge_header(&sessions.device_challenge(&loaded.key), &id) {
        h.insert("secure-session-challenge", next);
    }
    Ok(response)
}

/// 403 with a challenge to sign: the browser signs it and asks again.
fn challenge(auth: &Auth, key: &str, id: &str) -> Response<Body> {
    let mut response = json(StatusCode::FORBIDDEN, &json!({"code": "device_proof_required"}));
    if let Some(value) = device_proof::challenge_header(&auth.sessions.device_challenge(key), id) {
        response.headers_mut().insert("secure-session-challenge", value);
    }
    response
}

/// `continue: false`: the browser forgets the DBSC session `id`, and its
/// bound cookie goes with it.
fn ended(auth: &Auth, id: &str) -> Response<Body> {
    auth.sessions.metrics.device(DeviceEvent::Ended);
    let mut response = json(
        StatusCode::OK,
        &json!({"session_identifier": id, "continue": false}),
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth.sessions.names.clear_bound());
    response
}

/// The JSON session instructions: the session `id`, where to refresh,
/// this origin as its scope, and the bound cookie it keeps fresh.
fn instructions(auth: &Auth, id: &str) -> Value {
    let names = &auth.sessions.names;
    json!({
        "session_identifier": id,
        "refresh_url": REFRESH,
        "scope": {
            "origin": auth.config.public_url.origin().ascii_serialization(),
            "include_site": false,
        },
        "credentials": [{
            "type": "cookie",
            "name": names.bound,
            "attributes": names.bound_attributes(),
        }],
    })
}
