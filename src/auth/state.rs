//! What every `/auth/*` endpoint works with: [`Auth`], built once per
//! config and kept in part across reloads.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::BoxError;
use crate::metrics::bursts::Bursts;
use crate::metrics::Metrics;
use crate::oidc::Idp;
use crate::refresh::Refresher;
use crate::revoker::Revoker;
use crate::session::{SessionStore, Sessions};

use super::csrf;

/// Client addresses the exchange limiter keeps track of at most; past
/// that, the longest quiet ones are forgotten first.
const TRACKED_CLIENTS: usize = 10_000;
const MINUTE: Duration = Duration::from_secs(60);

/// Everything the login flow and sessions need, shared by all workers.
pub struct Auth {
    pub config: Arc<Config>,
    pub idp: Arc<Idp>,
    /// Sessions' life: load, create, timeouts; the cookie key ring.
    pub sessions: Arc<Sessions>,
    /// Token refresh, one flight per session in this replica.
    pub refresher: Arc<Refresher>,
    /// This replica's worker of the revocation queue, for as long as this
    /// `Auth` serves: held, never read; dropping it stops the worker.
    _revoker: Arc<Revoker>,
    pub csrf: csrf::Csrf,
    /// Code exchanges per client address (LG-28); kept across reloads.
    pub exchanges: Arc<Bursts>,
}

// === impl Auth ===

impl Auth {
    /// `None` when no `oidc` section is configured (anonymous routes only).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, BoxError> {
        Self::reloaded(config, store, clock, metrics, None)
    }

    /// [`Auth::new`] for a reloaded config: from `previous`, the running
    /// one, it keeps the `Idp` (its discovery and JWKS cache) when the
    /// `oidc` section is unchanged, and the refresh flights in any case.
    /// Sessions (key ring, timeouts) and CSRF origins are built anew.
    pub fn reloaded(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
        previous: Option<&Auth>,
    ) -> Result<Option<Arc<Self>>, BoxError> {
        let Some(oidc) = config.oidc.clone() else {
            return Ok(None);
        };
        let idp = match previous {
            Some(previous) if previous.idp.config == oidc => previous.idp.clone(),
            _ => Idp::new(oidc, clock.clone())?,
        };
        let endings = previous.map(|p| p.sessions.endings.clone()).unwrap_or_default();
        let exchanges = previous.map_or_else(exchange_limiter, |p| p.exchanges.clone());
        let sessions = Arc::new(Sessions::reloaded(&config, store, clock, metrics, endings)?);
        let refresher = match previous {
            Some(previous) => previous.refresher.reloaded(sessions.clone(), idp.clone()),
            None => Refresher::new(sessions.clone(), idp.clone()),
        };
        sessions.spawn_watcher();
        let revoker = Revoker::spawn(sessions.clone(), idp.clone());
        Ok(Some(Arc::new(Self {
            refresher,
            _revoker: revoker,
            csrf: csrf::Csrf::new(&config),
            exchanges,
            config,
            idp,
            sessions,
        })))
    }

    /// The redirect URI registered at the IdP.
    pub fn redirect_uri(&self) -> String {
        self.config.redirect_uri()
    }
}

/// The per-address limiter of code exchanges at the callback (LG-28,
/// `callback.rs`), one per process.
fn exchange_limiter() -> Arc<Bursts> {
    // The threshold is for reporting bursts, which this one never does.
    Arc::new(Bursts::new(MINUTE, u32::MAX, TRACKED_CLIENTS))
}
