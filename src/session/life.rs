//! A session's life: unseal the cookie, load and open the record, enforce
//! the timeouts, record activity; create one at login; delete one.
//!
//! The cookie is authenticated before anything else happens: a tampered,
//! foreign or expired cookie is refused without a store lookup (CK-01).
//! A store *error* is a 503 that keeps the cookie; only a *missing* record
//! means "log in again" (T46, RD-05). A session found past a timeout is
//! ended (`ending.rs`): deleted, and whatever depends on it closed. A new
//! session is listed in its owner's indexes (`index.rs`). Every write of a
//! record keeps its refresh tokens beside it for the revocation at its end
//! (`revocation.rs`).

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use super::index::{self, Indexes, Owner};
use super::record::{self, Record};
use super::sessions::{Created, Loaded, Sessions};
use super::store::StoreError;
use crate::audit;
use crate::cookie::{Purpose, Ticket};
use crate::error::{BoxError, Refusal};
use crate::metrics::EndReason;
use crate::oidc::TokenResponse;

// === impl Sessions ===

impl Sessions {
    /// Loads the session the request's cookie names and records the
    /// activity, or refuses with `LoginRequired` (no session) or a
    /// `StoreError` (store down). `client` sent the request.
    pub async fn load(&self, headers: &HeaderMap, client: IpAddr) -> Result<Loaded, BoxError> {
        let mut loaded = self.open(headers, Some(client)).await?;
        self.check_device(&loaded, headers)?;
        self.touch(&mut loaded).await?;
        Ok(loaded)
    }

    /// Reads and opens the session without recording activity. A cookie
    /// that does not open is counted, and judged against `client` for a
    /// burst when the caller names one.
    pub async fn open(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Loaded, BoxError> {
        let (name, value) = self.names.find_session(headers).ok_or(Refusal::LoginRequired)?;
        let opened = self.ring.unseal(Purpose::Session, name, value).map_err(|e| {
            tracing::debug!(error = %e, "session cookie refused");
            self.metrics.unseal_failed(client);
            Refusal::LoginRequired
        })?;
        let ticket = Ticket::from_bytes(&opened.plaintext).map_err(|_| Refusal::LoginRequired)?;
        let mut loaded = self.read(ticket, Some(client)).await?;
        loaded.stale_key = opened.stale_key;
        loaded.stale_name = name != self.names.session;
        loaded.client = client;
        Ok(loaded)
    }

    /// Reads and opens the session a ticket names, and judges its
    /// timeouts: one past them is ended, and refused.
    pub async fn open_ticket(&self, ticket: Ticket) -> Result<Loaded, BoxError> {
        self.read(ticket, None).await
    }

    /// [`Sessions::open_ticket`]; `from_cookie`: the ticket came back with
    /// a request (from this client, where the caller judges one), so a
    /// record gone from the store is counted as an end. The watcher's
    /// checks are not: the session's end was counted where it happened, or
    /// its cookie counts it when it comes back.
    async fn read(&self, ticket: Ticket, from_cookie: Option<Option<IpAddr>>) -> Result<Loaded, BoxError> {
        let client = from_cookie.flatten();
        let key = record::store_key(&ticket);
        let now = self.clock.now();
        if now
            >= ticket
                .issued_at
                .saturating_add(self.config.absolute_timeout.as_secs())
        {
            // Past the absolute lifetime, whatever the store says (CK-08).
            let _ = self
                .end(&key, &Indexes::default(), EndReason::Absolute, client)
                .await;
            return Err(Refusal::LoginRequired.into());
        }
        let Some(stored) = self.store.get(&key).await? else {
            // Mostly the idle timeout, which the store's TTL enforces; also
            // a replayed cookie of a session ended elsewhere, or lost data.
            if from_cookie.is_some() {
                self.metrics.session_ended(EndReason::Gone);
                let who = audit::Who {
                    session_key: Some(&key),
                    subject_index: None,
                    client,
                };
                audit::session_ended(EndReason::Gone, who);
            }
            return Err(Refusal::LoginRequired.into());
        };
        let record = Record::open(&stored.value, &ticket, &key).map_err(|e| {
            tracing::warn!(error = %e, "session record unreadable; treating as no session");
            Refusal::LoginRequired
        })?;
        if now
            >= record
                .last_seen
                .saturating_add(self.config.idle_timeout.as_secs())
        {
            let _ = self.end_opened(&key, &record, EndReason::Idle, client).await;
            return Err(Refusal::LoginRequired.into());
        }
        Ok(Loaded {
            ticket,
            key,
            record,
            version: stored.version,
            stale_key: false,
            stale_name: false,
            client: None,
        })
    }

    /// Activity extends the idle expiry, never the absolute one (CK-09).
    /// Writes of `last_seen` are spaced a tenth of the idle timeout apart,
    /// at most a minute: idle expiry stays accurate without a write per
    /// request.
    async fn touch(&self, loaded: &mut Loaded) -> Result<(), BoxError> {
        let now = self.clock.now();
        let every = (self.config.idle_timeout.as_secs() / 10).min(60);
        if now < loaded.record.last_seen + every {
            return Ok(());
        }
        loaded.record.last_seen = now;
        let ttl = self.ttl(&loaded.ticket, now);
        let written = self
            .write(&loaded.ticket, &loaded.key, &loaded.record, loaded.version, ttl)
            .await;
        match written {
            Ok(v) => {
                loaded.version = v;
                if let Some(owner) = Owner::of(&loaded.record.claims) {
                    let created = loaded.record.created_at;
                    self.index_touch(&loaded.key, &owner, created, now, ttl).await;
                }
            }
            // Another request touched it first: its write is as good.
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Stores a new session for fresh tokens and lists it under its owner
    /// (`user_agent` names its device there); returns the sealed cookie
    /// value and the store key.
    pub async fn create(
        &self,
        tokens: TokenResponse,
        claims: Map<String, Value>,
        user_agent: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Created, StoreError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        let ticket = Ticket::generate(now);
        let key = record::store_key(&ticket);
        let kept: Map<String, Value> = claims
            .into_iter()
            // `sid` finds the session again at back-channel logout.
            .filter(|(name, _)| name == "sid" || self.kept_claims.contains(name))
            .collect();
        let lifetime = tokens.access_token_lifetime(now);
        let mut record = Record {
            format: self.config.record_format.number(),
            access_expires_at: 0,
            access_issued_ms: None,
            access_lifetime: None,
            access_jkt: tokens.jkt,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            id_token: tokens.id_token,
            claims: kept,
            created_at: now,
            last_seen: now,
            resource_tokens: Default::default(),
            exchanged_tokens: Default::default(),
            device: None,
        };
        record.set_access_lifetime(lifetime, now_ms);
        let ttl = self.ttl(&ticket, now);
        self.write(&ticket, &key, &record, 0, ttl).await?;
        if let Some(owner) = Owner::of(&record.claims) {
            // A session nobody could find would escape back-channel logout:
            // no index, no session.
            let device = index::device(user_agent);
            if let Err(e) = self.index_new(&key, &owner, device, now, ttl, client).await {
                let _ = self.store.delete(&key).await;
                return Err(e);
            }
        }
        self.metrics.session_created();
        let subject_index = Indexes::of(&record.claims).subject;
        audit::login(audit::Who {
            session_key: Some(&key),
            subject_index: subject_index.as_deref(),
            client,
        });
        Ok(Created {
            cookie: self
                .ring
                .seal(Purpose::Session, &self.names.session, &ticket.to_bytes()),
            key,
        })
    }

    /// Writes `record` under `key` if the stored version is `expected`:
    /// sealed with the ticket's key in the configured format
    /// (`session.record_format`), its refresh tokens beside it sealed for
    /// revocation (`revocation.rs`). Returns the new version.
    pub async fn write(
        &self,
        ticket: &Ticket,
        key: &str,
        record: &Record,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let beside = self.beside(key, &record.refresh_tokens());
        self.store
            .put_beside(
                key,
                record.seal(self.config.record_format, ticket, key),
                beside,
                expected,
                ttl,
            )
            .await
    }

    /// The store TTL: the idle timeout, cut at the absolute end.
    pub fn ttl(&self, ticket: &Ticket, now: u64) -> Duration {
        let absolute_end = ticket.issued_at + self.config.absolute_timeout.as_secs();
        Duration::from_secs(
            self.config
                .idle_timeout
                .as_secs()
                .min(absolute_end.saturating_sub(now))
                .max(1),
        )
    }

    /// The `Set-Cookie`s that re-seal a session's ticket under the current
    /// key and name, when due (and clear the cookie of the previous name).
    pub fn reseal(&self, loaded: &Loaded) -> Vec<HeaderValue> {
        if !loaded.stale_key && !loaded.stale_name {
            return Vec::new();
        }
        let value = self
            .ring
            .seal(Purpose::Session, &self.names.session, &loaded.ticket.to_bytes());
        let mut out = vec![self.names.set_session(&value)];
        if loaded.stale_name {
            out.extend(self.names.clear_previous_session());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderMap;
    use serde_json::Map;

    use crate::clock::Clock;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::session::testing::{login, sessions_counted};
    use crate::session::{SessionStore, Sessions};

    fn ended_gone(metrics: &Metrics) -> u64 {
        let text = metrics.encode(false);
        let line = text
            .lines()
            .find(|l| l.starts_with("cloakroom_sessions_ended_total{reason=\"gone\"}"))
            .expect("every reason's series is there from the start");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Sessions over https on `store`, under the `__Host-Http-` prefix or not.
    fn https_sessions(store: Arc<dyn SessionStore>, host_http_prefix: bool) -> Sessions {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: c, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: q83vEjRWeJASNFZ4kKvN7xI0VniQq83vEjRWeJASNFY}}], host_http_prefix: {host_http_prefix}}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]"
        );
        let config = Config::load(&yaml, &crate::config::MapEnv::default()).unwrap();
        Sessions::new(&config, store, Clock::manual(), Default::default()).unwrap()
    }

    #[tokio::test]
    async fn switching_the_cookie_prefix_signs_nobody_out_and_moves_the_cookie() {
        let store: Arc<dyn SessionStore> = Arc::new(crate::session::MemoryStore::new());
        let before = https_sessions(store.clone(), false);
        let tokens = serde_json::from_value(serde_json::json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 300,
        }))
        .unwrap();
        let created = before.create(tokens, Map::new(), None, None).await.unwrap();
        let mut headers = HeaderMap::new();
        let old = format!("__Host-cloakroom={}", created.cookie);
        headers.insert("cookie", old.parse().unwrap());

        let after = https_sessions(store, true);
        let loaded = after
            .open(&headers, None)
            .await
            .expect("the old name still opens");
        let set: Vec<String> = after
            .reseal(&loaded)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(set.len(), 2, "{set:?}");
        assert!(set[0].starts_with("__Host-Http-cloakroom="), "{set:?}");
        assert_eq!(
            set[1],
            "__Host-cloakroom=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
        let renamed = set[0].split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert("cookie", renamed.parse().unwrap());
        let again = after.open(&headers, None).await.expect("the new name opens");
        assert_eq!(again.key, loaded.key);
        assert!(after.reseal(&again).is_empty(), "nothing more to move");
    }

    #[tokio::test]
    async fn a_vanished_record_counts_as_gone_only_when_its_cookie_comes_back() {
        let metrics = Arc::new(Metrics::new());
        let (sessions, _) = sessions_counted(10, metrics.clone()).await;
        let headers = login(&sessions, "alice", "sid-1").await;
        let loaded = sessions.open(&headers, None).await.unwrap();
        // Ended on another replica: the record is gone, the end counted there.
        sessions.store.delete(&loaded.key).await.unwrap();

        let checked = sessions.open_ticket(loaded.ticket.clone()).await;
        assert!(checked.is_err(), "the watcher's check sees the end");
        assert_eq!(ended_gone(&metrics), 0, "a check counts no end");

        assert!(sessions.open(&headers, None).await.is_err());
        assert_eq!(ended_gone(&metrics), 1, "the returning cookie counts it");
    }
}
