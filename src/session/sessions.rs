//! What a session's life needs, built once per config: [`Sessions`] (the
//! store, the cookie key ring and names, the timeouts, the clock, the
//! registry of what depends on sessions, the metrics), and [`Loaded`], a
//! session found on a request. What `Sessions` does is in a file per job:
//! `life.rs` (load, open, create, write), `index.rs` (a user's sessions),
//! `ending.rs` (ends, and the watcher), `revocation.rs` (the refresh tokens
//! revoked at the end).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::record::Record;
use super::store::SessionStore;
use super::watched::Endings;
use crate::clock::Clock;
use crate::config::{Config, SessionConfig};
use crate::cookie::{CookieNames, KeyRing, Ticket};
use crate::error::BoxError;
use crate::metrics::Metrics;

/// Everything a session's life needs: the store, the cookie key ring and
/// names, the timeouts, and the clock they are judged by; and where its
/// events are counted.
pub struct Sessions {
    pub store: Arc<dyn SessionStore>,
    pub ring: KeyRing,
    pub names: CookieNames,
    pub config: SessionConfig,
    /// The ID-token claims a new session keeps ([`Config::kept_claims`]):
    /// those `/auth/user` shows and those routes' rules read.
    pub kept_claims: BTreeSet<String>,
    pub clock: Clock,
    /// What depends on sessions in this replica (tunnels, streams); one
    /// registry for the process, kept across config reloads.
    pub endings: Arc<Endings>,
    pub metrics: Arc<Metrics>,
    /// Wakes this replica's revocation worker (`crate::revoker`) when a
    /// revocation is queued, so that it does not wait for its next look.
    pub revocations_queued: Arc<tokio::sync::Notify>,
}

/// A new session: its cookie's value, and its store key.
pub struct Created {
    pub cookie: String,
    pub key: String,
}

/// A session found on a request.
pub struct Loaded {
    pub ticket: Ticket,
    pub key: String,
    pub record: Record,
    pub version: u64,
    /// The cookie was sealed with an older key of the ring, or came under
    /// the previous prefix's name: re-issue it under the current ones
    /// (KR-01).
    pub stale_key: bool,
    pub stale_name: bool,
    /// The client that presented the cookie, for anomaly reports.
    pub client: Option<IpAddr>,
}

// === impl Sessions ===

impl Sessions {
    pub fn new(
        config: &Config,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BoxError> {
        Self::reloaded(config, store, clock, metrics, Arc::default())
    }

    /// [`Sessions::new`] for a reloaded config: what depends on sessions
    /// (`endings`, the running registry) stays watched across the reload.
    pub fn reloaded(
        config: &Config,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
        endings: Arc<Endings>,
    ) -> Result<Self, BoxError> {
        Ok(Self {
            ring: KeyRing::new(&config.cookie.keys).ok_or("cookie.keys is empty")?,
            names: CookieNames::new(config),
            config: config.session.clone(),
            kept_claims: config.kept_claims(),
            store,
            clock,
            endings,
            metrics,
            revocations_queued: Arc::default(),
        })
    }
}
