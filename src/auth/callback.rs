//! `GET /auth/callback`: finish the code flow and start a new session.
//!
//! Every failure is a [`LoginError`]: the rescue turns it into a short page
//! with a stable code; the details go to the log, never to the page (T20). A top-level cross-site navigation from
//! the IdP is expected here, so no CSRF header is asked for (CS-11): the
//! state, bound to this browser's pre-auth cookie, plays that role (T14).
//!
//! Each code exchange spends the client secret at the token endpoint, and
//! an IdP that rate-limits per client would lock every user out if anyone
//! could make cloakroom spend it at will (LG-28). So a login's `state`
//! exchanges one code: once the IdP has answered, its claim is kept until
//! the login would have expired, and only a failure to reach the IdP or the
//! store before the code is exchanged gives it back. After the exchange,
//! every failure is final (LG-03): a code is never sent twice, the pre-auth
//! cookie is cleared, the new refresh token is revoked, and the user starts
//! a new login. And a client address (an IPv6 /64; the forwarded
//! address behind a trusted proxy) may have at most
//! `limits.refused_code_exchanges_per_minute` codes refused by the IdP over a
//! sliding minute; beyond that the callback is a 429 with `Retry-After`, and
//! may be retried as is. An exchange counts once the IdP has refused its
//! code, not while it runs, nor when the IdP accepts the code or cannot be
//! reached: forged codes are what the IdP refuses, and the real logins of a
//! whole office behind one NAT address must never be throttled by each
//! other, even while a slow IdP keeps many in flight. What a burst of
//! forged codes can spend before their refusals are known is capped by
//! the exchanges one address may have in flight, [`oidc::MAX_TOKEN_CALLS`]
//! (the replica's own bound on token calls).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use http::request::Parts;
use http::{header, HeaderMap, Response};
use serde_json::{Map, Value};
use sha2::Digest;

use super::answer::redirect;
use super::pending::{self, LATE_GRACE};
use super::state::Auth;
use super::{device, return_to};
use crate::body::Body;
use crate::cookie::CookieNames;
use crate::error::{BoxError, LoginError, WithHeaders};
use crate::metrics::bursts::Attempt;
use crate::metrics::{EndReason, Grant, Limit};
use crate::oidc::userinfo::{self, UserinfoError};
use crate::oidc::{self, IdTokenCheckError, IdpError, TokenResponse};
use crate::secret::AccessToken;
use crate::session::{revocation, Indexes, StoreError};

/// The answers to `prompt=none` that mean "the user must interact"
/// (OpenID Connect Core §3.1.2.6): a silent login returns them to the SPA.
pub const SILENT_REFUSALS: &[&str] = &[
    "login_required",
    "interaction_required",
    "consent_required",
    "account_selection_required",
];

/// Marks the answer that returns a silent login's refusal to the SPA, so
/// it is counted apart from logins completed and failed.
#[derive(Debug, Clone, Copy)]
pub struct SilentRefusal;

/// Parameters that must not appear twice (T18, LG-10).
pub const SINGLE: &[&str] = &["code", "state", "iss", "error", "error_description"];

/// The callback's query parameters, decoded; a repeated parameter keeps its
/// last value, and one of [`SINGLE`] repeated refuses the callback (T18).
pub fn parameters(query: &str) -> Result<HashMap<String, String>, LoginError> {
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() && SINGLE.contains(&k.as_ref()) {
            return Err(LoginError::refused("duplicated parameter"));
        }
    }
    Ok(params)
}

/// Finishes the login for `client`. Once this browser's login for the state
/// is found, its pre-auth cookie is cleared with the answer (LG-26), except
/// when something was unavailable before the code exchange or the client
/// was over its rate: then the same callback can be retried as it is.
pub async fn finish(auth: &Auth, request: &Parts, client: IpAddr) -> Result<Response<Body>, BoxError> {
    let (result, used) = complete(auth, request, client).await;
    let Some(state) = used else {
        return Ok(result?);
    };
    let clear = pending::forget(auth, &state);
    match result {
        Ok(mut response) => {
            response.headers_mut().append(header::SET_COOKIE, clear);
            Ok(response)
        }
        Err(e @ (LoginError::Unavailable(_) | LoginError::Throttled { .. })) => Err(e.into()),
        Err(e) => {
            let mut headers = HeaderMap::new();
            headers.append(header::SET_COOKIE, clear);
            Err(WithHeaders::new(e, headers).into())
        }
    }
}

/// The store key that claims the callback for `state`: it is single use,
/// even for two callbacks at once or a replay with a copy of the old
/// pre-auth cookie (LG-03). Kept by every login whose code the IdP was
/// asked to exchange, so a state spends the client secret once (LG-28):
/// anonymous traffic grows it by at most one small key per exchange, which
/// the per-address rate bounds (LG-24).
fn claim_key(state: &str) -> String {
    format!(
        "cloakroom:{{{}}}:done",
        hex::encode(&sha2::Sha256::digest(state.as_bytes())[..16])
    )
}

/// The answer, and the state of this browser's login it used, if any.
async fn complete(
    auth: &Auth,
    request: &Parts,
    client: IpAddr,
) -> (Result<Response<Body>, LoginError>, Option<String>) {
    let params = match parameters(request.uri.query().unwrap_or("")) {
        Ok(params) => params,
        Err(e) => return (Err(e), None),
    };
    let Some(state) = params.get("state") else {
        return (Err(LoginError::refused("no state")), None);
    };
    // Only the browser that started this login holds its transaction: a
    // state used anywhere else finds nothing, and takes nothing (LG-25).
    let Some(transaction) = pending::find(auth, &request.headers, state) else {
        return (Err(LoginError::refused("state unknown to this browser")), None);
    };
    let result = use_login(auth, request, &params, state, &transaction, client).await;
    (result, Some(state.clone()))
}

/// Checks the IdP's answer for this browser's login, claims it and
/// exchanges its code.
async fn use_login(
    auth: &Auth,
    request: &Parts,
    params: &HashMap<String, String>,
    state: &str,
    transaction: &pending::Transaction,
    client: IpAddr,
) -> Result<Response<Body>, LoginError> {
    let timeout = auth.config.session.login_timeout.as_millis() as u64;
    if auth.sessions.clock.now_ms() > transaction.started_ms.saturating_add(timeout) {
        return Err(LoginError::Expired);
    }
    let metadata = auth.idp.metadata().await.map_err(LoginError::unavailable)?;
    // RFC 9207: the response names its issuer, and it must be ours.
    match params.get("iss") {
        Some(iss) if iss != auth.idp.issuer() => return Err(LoginError::refused("iss mismatch")),
        None if metadata.authorization_response_iss_parameter_supported => {
            return Err(LoginError::refused("iss missing"))
        }
        _ => {}
    }
    if let Some(error) = params.get("error") {
        if transaction.silent && SILENT_REFUSALS.contains(&error.as_str()) {
            // Not a failure: the SPA asked whether a sign-in could happen
            // without the user, and learns that it cannot (IDP-02).
            let mut response = redirect(&return_to::with_error(&transaction.return_to, error));
            response.extensions_mut().insert(SilentRefusal);
            return Ok(response);
        }
        // The IdP's own words stay in the log (escaped by the logger).
        tracing::warn!(idp_error = %error, "IdP returned an error");
        return Err(LoginError::refused("the IdP returned an error"));
    }
    let Some(code) = params.get("code") else {
        return Err(LoginError::refused("no code"));
    };

    // Claimed before the code is exchanged, in one atomic step: of two
    // callbacks at once, one exchanges and the other is refused. Failing
    // closed: if the store cannot say, nothing is exchanged (RD-12).
    let claim = claim_key(state);
    let ttl = auth.config.session.login_timeout + LATE_GRACE;
    match auth.sessions.store.put(&claim, Default::default(), 0, ttl).await {
        Ok(_) => {}
        Err(StoreError::Conflict) => return Err(LoginError::refused("login already completed")),
        Err(e) => return Err(LoginError::unavailable(e)),
    }
    // Counted once this state's claim is won: a state already spent is
    // refused without using up its address's exchanges.
    let per_minute = u32::try_from(auth.config.limits.refused_code_exchanges_per_minute).unwrap_or(u32::MAX);
    let in_flight = u32::try_from(oidc::MAX_TOKEN_CALLS).unwrap_or(u32::MAX);
    let Some(attempt) = auth
        .exchanges
        .admit(client, per_minute, in_flight, Instant::now())
    else {
        auth.sessions.metrics.over_limit(Limit::CodeExchanges);
        tracing::warn!(%client, per_minute, "code exchanges over the per-address rate; callback refused");
        // About when the sliding minute has room again.
        let retry_after_secs = (60 / per_minute).max(1);
        // Not spent: the same callback may come back in a while.
        let _ = auth.sessions.store.delete(&claim).await;
        return Err(LoginError::Throttled { retry_after_secs });
    };

    let tokens = match exchange(auth, attempt, code, transaction).await {
        Ok(tokens) => tokens,
        Err(e @ LoginError::Unavailable(_)) => {
            // The IdP could not be reached: the same callback may be
            // retried, and claim it again. Any other failure keeps the
            // claim until it expires: this state has spent its exchange
            // (LG-28).
            let _ = auth.sessions.store.delete(&claim).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // From here the code is spent: the claim stays, whatever happens.
    let refresh_token = tokens.refresh_token.clone();
    let result = start_session(auth, request, client, tokens, transaction).await;
    let failed = result.is_err();
    if let (true, Some(refresh_token)) = (failed, refresh_token) {
        // The browser's own session may hold tokens of the same grant (an
        // IdP that keeps one grant per user and client, as a step-up login
        // does): revoking would end it too, so only a browser without one
        // has its failed login's tokens revoked.
        if auth.sessions.open(&request.headers, None).await.is_err() {
            auth.sessions
                .revoke_later(revocation::NO_SESSION, &[&refresh_token])
                .await;
        }
    }
    result.map_err(|e| match e {
        LoginError::Unavailable(cause) => LoginError::Spent(cause),
        e => e,
    })
}

/// Exchanges the code for tokens, and settles the address's `attempt`.
async fn exchange(
    auth: &Auth,
    attempt: Attempt<'_>,
    code: &str,
    transaction: &pending::Transaction,
) -> Result<TokenResponse, LoginError> {
    let (verifier, redirect_uri) = (transaction.verifier(), auth.redirect_uri());
    let jkt = transaction.dpop_jkt.as_deref();
    let exchanged = auth
        .idp
        .exchange_code(code, verifier.expose(), &redirect_uri, jkt);
    let tokens = auth
        .sessions
        .metrics
        .token_call(Grant::AuthorizationCode, exchanged)
        .await;
    // Only a code the IdP refused counts against the address (LG-28).
    let refused = matches!(tokens, Err(IdpError::Rejected(_) | IdpError::BadResponse(_)));
    attempt.settle(refused);
    // Tokens not bound to the DPoP key (LG-16): refused, not taken as
    // bearer tokens; no session holds the grant's refresh token, so it is
    // revoked (queued, off the answer's path).
    let tokens = match tokens {
        Err(IdpError::Unbound {
            token_type,
            refresh_token: Some(refresh_token),
        }) => {
            auth.sessions
                .revoke_later(revocation::NO_SESSION, &[&refresh_token])
                .await;
            Err(IdpError::Unbound {
                token_type,
                refresh_token: None,
            })
        }
        other => other,
    };
    tokens.map_err(|e| match e {
        IdpError::Unreachable(_) | IdpError::Busy(_) => LoginError::unavailable(e),
        // A redirect, a wrong content type, an unreadable answer (LG-15).
        IdpError::BadResponse(_) | IdpError::Unbound { .. } => LoginError::IdpAnswer(e.into()),
        IdpError::Rejected(_) => LoginError::Refused(format!("code exchange: {e}").into()),
    })
}

/// Checks the ID token (and UserInfo) of the tokens a code brought, and
/// starts the session.
async fn start_session(
    auth: &Auth,
    request: &Parts,
    client: IpAddr,
    tokens: TokenResponse,
    transaction: &pending::Transaction,
) -> Result<Response<Body>, LoginError> {
    let Some(id_token) = &tokens.id_token else {
        return Err(LoginError::refused("no ID token"));
    };
    let claims = auth
        .idp
        .validate_id_token(id_token, Some(&transaction.nonce()), Some(&tokens.access_token))
        .await
        .map_err(|e| match e {
            IdTokenCheckError::Idp(e @ IdpError::Unreachable(_)) => LoginError::unavailable(e),
            e => LoginError::Refused(format!("ID token: {e}").into()),
        })?;
    // A step-up login grants a session only if the IdP did what was asked.
    transaction.step_up.check(&claims, auth.sessions.clock.now())?;
    let claims = if auth.idp.config.userinfo {
        with_userinfo(auth, claims, &tokens.access_token, tokens.jkt.as_deref()).await?
    } else {
        claims
    };

    // A session the browser brought along is ended, never promoted (CK-11).
    if let Ok(old) = auth.sessions.open(&request.headers, None).await {
        let _ = auth
            .sessions
            .end(
                &old.key,
                &Indexes::of(&old.record.claims),
                EndReason::Replaced,
                Some(client),
            )
            .await;
    }
    let user_agent = request
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let created = auth
        .sessions
        .create(tokens, claims, user_agent, Some(client))
        .await
        .map_err(|e| match e {
            StoreError::Conflict => LoginError::refused("session id collision"),
            e => LoginError::unavailable(e),
        })?;
    let mut response = redirect(&transaction.return_to);
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        auth.sessions.names.set_session(&created.cookie),
    );
    // A bound cookie of an earlier session in this browser names no
    // session now.
    if CookieNames::find(&request.headers, &auth.sessions.names.bound).is_some() {
        h.append(header::SET_COOKIE, auth.sessions.names.clear_bound());
    }
    if let Some(offer) = device::offer_for(auth, &created.key, &request.headers) {
        h.insert("secure-session-registration", offer);
    }
    Ok(response)
}

/// The ID token's claims with the UserInfo answer's added (`oidc.userinfo`),
/// asked with the new access token. A failure here is a failed login and
/// stores nothing; the code is spent, so it is final.
async fn with_userinfo(
    auth: &Auth,
    mut claims: Map<String, Value>,
    access_token: &AccessToken,
    jkt: Option<&str>,
) -> Result<Map<String, Value>, LoginError> {
    let idp_error = |e: IdpError| match e {
        IdpError::Unreachable(_) => LoginError::unavailable(e),
        // A refusal of the token it just issued, a redirect, a signed or
        // unreadable answer: the IdP's answer is unusable (LG-15).
        e => LoginError::IdpAnswer(UserinfoError::Idp(e).into()),
    };
    let answer = auth.idp.userinfo(access_token, jkt).await.map_err(idp_error)?;
    match userinfo::merge(&mut claims, answer) {
        Ok(()) => Ok(claims),
        Err(UserinfoError::Idp(e)) => Err(idp_error(e)),
        // OIDC Core §5.3.2: the answer must not be used; no session (ID-21).
        Err(e @ UserinfoError::SubjectMismatch) => Err(LoginError::Refused(e.to_string().into())),
    }
}
