//! A request's session: unseal the cookie, load and open the record,
//! enforce the timeouts; create one at login; end one at logout.
//!
//! The cookie is authenticated before anything else happens: a tampered,
//! foreign or expired cookie is refused without a store lookup (CK-01).
//! A store *error* is a 503 that keeps the cookie; only a *missing* record
//! means "log in again" (T46, RD-05).

use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::Auth;
use crate::body::Body;
use crate::cookie::{CookieNames, Purpose, Ticket};
use crate::error::{BoxError, Refusal};
use crate::oidc::TokenResponse;
use crate::session::record::{self, Record};
use crate::session::StoreError;

/// Writes of `last_seen` are spaced a tenth of the idle timeout apart, at
/// most a minute: idle expiry stays accurate without a write per request.
fn touch_every(auth: &Auth) -> u64 {
    (auth.config.session.idle_timeout.as_secs() / 10).min(60)
}

/// A session found on a request.
pub struct Loaded {
    pub ticket: Ticket,
    pub key: String,
    pub record: Record,
    pub version: u64,
    /// The cookie was sealed with an older key of the ring: re-issue it
    /// under the current one (KR-01).
    pub stale_key: bool,
}

impl Loaded {
    /// The `Set-Cookie` that re-seals this session's ticket, when due.
    pub fn reseal(&self, auth: &Auth) -> Option<http::HeaderValue> {
        self.stale_key.then(|| {
            let value = auth
                .ring
                .seal(Purpose::Session, &auth.names.session, &self.ticket.to_bytes());
            auth.names.set_session(&value)
        })
    }
}

/// Loads the session the request's cookie names and records the activity,
/// or refuses with `LoginRequired` (no session) or a `StoreError` (store
/// down).
pub async fn load(auth: &Auth, headers: &HeaderMap) -> Result<Loaded, BoxError> {
    let mut loaded = open(auth, headers).await?;
    touch(auth, &mut loaded).await?;
    Ok(loaded)
}

/// Reads and opens the session without recording activity.
async fn open(auth: &Auth, headers: &HeaderMap) -> Result<Loaded, BoxError> {
    let value = CookieNames::find(headers, &auth.names.session).ok_or(Refusal::LoginRequired)?;
    let opened = auth
        .ring
        .unseal(Purpose::Session, &auth.names.session, value)
        .map_err(|e| {
            tracing::debug!(error = %e, "session cookie refused");
            Refusal::LoginRequired
        })?;
    let ticket = Ticket::from_bytes(&opened.plaintext).map_err(|_| Refusal::LoginRequired)?;
    let key = record::store_key(&ticket);
    let now = auth.clock.now();
    let absolute = auth.config.session.absolute_timeout.as_secs();
    if now >= ticket.issued_at.saturating_add(absolute) {
        // Past the absolute lifetime, whatever the store says (CK-08).
        let _ = auth.store.delete(&key).await;
        return Err(Refusal::LoginRequired.into());
    }
    let stored = auth.store.get(&key).await?.ok_or(Refusal::LoginRequired)?;
    let record = Record::open(&stored.value, &ticket, &key).map_err(|e| {
        tracing::warn!(error = %e, "session record unreadable; treating as no session");
        Refusal::LoginRequired
    })?;
    let idle = auth.config.session.idle_timeout.as_secs();
    if now >= record.last_seen.saturating_add(idle) {
        let _ = auth.store.delete(&key).await;
        return Err(Refusal::LoginRequired.into());
    }
    Ok(Loaded {
        ticket,
        key,
        record,
        version: stored.version,
        stale_key: opened.stale_key,
    })
}

/// Activity extends the idle expiry, never the absolute one (CK-09).
async fn touch(auth: &Auth, loaded: &mut Loaded) -> Result<(), BoxError> {
    let now = auth.clock.now();
    if now < loaded.record.last_seen + touch_every(auth) {
        return Ok(());
    }
    loaded.record.last_seen = now;
    let ttl = ttl(auth, &loaded.ticket, now);
    let sealed = loaded.record.seal(&loaded.ticket, &loaded.key);
    match auth.store.put(&loaded.key, sealed, loaded.version, ttl).await {
        Ok(v) => loaded.version = v,
        // Another request touched it first: its write is as good.
        Err(StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Stores a new session for fresh tokens; returns the sealed cookie value.
pub async fn create(
    auth: &Auth,
    tokens: TokenResponse,
    claims: Map<String, Value>,
) -> Result<String, StoreError> {
    let now_ms = auth.clock.now_ms();
    let now = now_ms / 1000;
    let ticket = Ticket::generate(now);
    let key = record::store_key(&ticket);
    let kept: Map<String, Value> = claims
        .into_iter()
        .filter(|(name, _)| name == "sub" || name == "iss" || auth.config.session.claims.contains(name))
        .collect();
    let lifetime = tokens.access_token_lifetime(now);
    let mut record = Record {
        format: record::FORMAT,
        access_expires_at: 0,
        access_issued_ms: None,
        access_lifetime: None,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        claims: kept,
        created_at: now,
        last_seen: now,
    };
    record.set_access_lifetime(lifetime, now_ms);
    auth.store
        .put(&key, record.seal(&ticket, &key), 0, ttl(auth, &ticket, now))
        .await?;
    Ok(auth
        .ring
        .seal(Purpose::Session, &auth.names.session, &ticket.to_bytes()))
}

/// The store TTL: the idle timeout, cut at the absolute end.
pub(crate) fn ttl(auth: &Auth, ticket: &Ticket, now: u64) -> Duration {
    let session = &auth.config.session;
    let absolute_end = ticket.issued_at + session.absolute_timeout.as_secs();
    Duration::from_secs(
        session
            .idle_timeout
            .as_secs()
            .min(absolute_end.saturating_sub(now))
            .max(1),
    )
}

/// `GET /auth/user`: configured claims and expiry, no token.
pub fn user_info(auth: &Auth, loaded: &Loaded) -> Value {
    let session = &auth.config.session;
    let mut out = Map::new();
    for name in &session.claims {
        if let Some(v) = loaded.record.claims.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    out.insert(
        "expires_at".into(),
        json!(loaded.ticket.issued_at + session.absolute_timeout.as_secs()),
    );
    out.insert(
        "idle_expires_at".into(),
        json!(loaded.record.last_seen + session.idle_timeout.as_secs()),
    );
    Value::Object(out)
}

/// `POST /auth/logout`: delete the session, revoke its refresh token, clear
/// the cookie, and answer with the IdP's end-session URL.
pub async fn logout(auth: &Auth, headers: &HeaderMap) -> Result<Response<Body>, BoxError> {
    // Read, not touched: it is deleted next.
    let loaded = match open(auth, headers).await {
        Ok(l) => Some(l),
        Err(e) if e.is::<Refusal>() => None,
        Err(e) => return Err(e),
    };
    let mut id_token = None;
    if let Some(loaded) = loaded {
        auth.store.delete(&loaded.key).await?;
        if let Some(rt) = &loaded.record.refresh_token {
            if let Err(e) = auth.idp.revoke(rt.expose()).await {
                tracing::warn!(error = %e, "refresh token revocation failed; the session is deleted anyway");
            }
        }
        id_token = loaded.record.id_token;
    }
    let logout_url = end_session_url(auth, id_token.as_ref().map(|t| t.expose().as_str())).await;
    let mut response = super::json(StatusCode::OK, &json!({ "logout_url": logout_url }));
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth.names.clear_session());
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
