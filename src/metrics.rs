//! Prometheus metrics and anomaly signals.
//!
//! One [`Metrics`] per process: created once in [`crate::run`], before
//! anything built from the config, and handed down as `Arc<Metrics>`, so a
//! config reload keeps every count. The admin listener serves it at
//! `/metrics` ([`Metrics::encode`]). Every family, what it means and where
//! it is recorded, is listed in `docs/operations.md`, "Metrics and alerts".
//!
//! Label values come from bounded sets only: a route's configured path (or
//! an `/auth/*` endpoint, or `none`), a method name, a status, a stable
//! error code, and the fixed words of the enums here. Never a raw path, a
//! client address, a session id or anything of a token.
//!
//! An anomaly ([`Anomaly`]) is counted in `cloakroom_anomalies_total` and
//! written as one warning on the `cloakroom::anomaly` log target, with the
//! session's hashed id (the hash inside its store key) and the client
//! address where they are known: never a cookie or a token.
//!
//! This file is the recorder: one method per fact a caller reports. The
//! families, their names and the exposition are in `registry.rs`; their
//! label sets in `labels.rs`; the words a caller names a fact with in
//! `words.rs`; anomalies and their log line in `anomaly.rs`; burst
//! detection in `bursts.rs`; the `process_*` families in `process.rs`.
//!
//! A leaf: it imports nothing of cloakroom; callers pass `&'static str`
//! codes and their own facts.

mod anomaly;
pub mod bursts;
mod labels;
#[cfg(target_os = "linux")]
mod process;
mod registry;
mod words;

use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

pub use self::anomaly::{key_hash, Anomaly, BURST_THRESHOLD, BURST_WINDOW};
pub use self::labels::method_label;
use self::labels::{
    EventLabel, GrantLabel, GrantOutcomeLabels, KindLabel, LimitLabel, LoginLabels, OpLabel, Outcome,
    ReasonLabel, RequestLabels, RouteError, RouteMethod, RouteOnly, StoreLabels,
};
pub use self::registry::{Metrics, OPENMETRICS, PROMETHEUS_TEXT};
pub use self::words::{
    DeviceEvent, EndReason, Grant, GrantFailure, GrantOutcome, Limit, RefreshOutcome, Reload, Revocation,
    StoreOp, StoreOutcome,
};

/// Keeps the WebSocket tunnel gauge up while alive.
pub struct Tunnel(Gauge);

// === impl Metrics ===

impl Metrics {
    /// One answered request. `route` is the route's configured path, an
    /// `/auth/*` endpoint, or `none`; `code` the problem code, if any.
    pub fn request(
        &self,
        route: Cow<'static, str>,
        method: &'static str,
        status: u16,
        code: Option<&'static str>,
        elapsed: Duration,
    ) {
        self.request_duration
            .get_or_create(&RouteMethod {
                route: route.clone(),
                method,
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
                code: code.unwrap_or("none"),
            })
            .inc();
    }

    /// An upstream's response head arrived after `elapsed`.
    pub fn upstream_answered(&self, route: &str, elapsed: Duration) {
        self.upstream_duration
            .get_or_create(&RouteOnly {
                route: Cow::Owned(route.to_owned()),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An upstream call got no response: `timeout`, `unavailable`, ….
    pub fn upstream_failed(&self, route: &str, error: &'static str) {
        self.upstream_errors
            .get_or_create(&RouteError {
                route: Cow::Owned(route.to_owned()),
                error,
            })
            .inc();
    }

    /// `/auth/login` sent a browser to the IdP.
    pub fn login_started(&self) {
        self.login("started", "none");
    }

    /// `/auth/callback` started a session.
    pub fn login_completed(&self) {
        self.login("completed", "none");
    }

    /// `/auth/callback` returned a silent login (`prompt=none`) the IdP
    /// answered "the user must interact" to the SPA: not a failure.
    pub fn login_silent_refused(&self) {
        self.login("silent_refused", "none");
    }

    /// `/auth/login` or `/auth/callback` answered with problem `code`.
    pub fn login_failed(&self, code: &'static str) {
        self.login("failed", code);
    }

    fn login(&self, outcome: &'static str, code: &'static str) {
        self.logins.get_or_create(&LoginLabels { outcome, code }).inc();
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.refreshes
            .get_or_create(&Outcome {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Runs one token endpoint call, and records how long it took and how
    /// it ended.
    pub async fn token_call<T, E: GrantFailure>(
        &self,
        grant: Grant,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = call.await;
        self.token_calls
            .get_or_create(&GrantLabel {
                grant: grant.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        let outcome = result.as_ref().map_or_else(E::outcome, |_| GrantOutcome::Granted);
        self.grants
            .get_or_create(&GrantOutcomeLabels {
                grant: grant.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        result
    }

    pub fn store_op(&self, op: StoreOp, outcome: StoreOutcome, elapsed: Duration) {
        self.store_timers[op as usize]
            .get_or_init(|| {
                self.store_duration
                    .get_or_create_owned(&OpLabel { op: op.as_str() })
            })
            .observe(elapsed.as_secs_f64());
        self.store_counters[op as usize][outcome as usize]
            .get_or_init(|| {
                self.store_ops.get_or_create_owned(&StoreLabels {
                    op: op.as_str(),
                    outcome: outcome.as_str(),
                })
            })
            .inc();
    }

    pub fn session_created(&self) {
        self.sessions_created.inc();
    }

    pub fn session_ended(&self, reason: EndReason) {
        self.sessions_ended
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A device-bound session's `event`.
    pub fn device(&self, event: DeviceEvent) {
        self.device_sessions
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }

    /// A revocation of an ended session's refresh tokens reached `outcome`.
    pub fn revocation(&self, outcome: Revocation) {
        self.revocations
            .get_or_create(&Outcome {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The revocation queue's length, as the store said at this scrape.
    pub fn set_revocation_queue(&self, length: usize) {
        self.revocation_queue
            .set(i64::try_from(length).unwrap_or(i64::MAX));
    }

    /// A CSRF rule refused a request from `client` on `route`.
    pub fn csrf_refused(&self, route: &str, client: IpAddr) {
        self.csrf_refusals
            .get_or_create(&RouteOnly {
                route: Cow::Owned(route.to_owned()),
            })
            .inc();
        if let Some(count) = self.csrf_bursts.hit(client, Instant::now()) {
            self.anomaly(Anomaly::CsrfBurst, None, Some(client), Some(count));
        }
    }

    /// A request refused because its client is over `limit`.
    pub fn over_limit(&self, limit: Limit) {
        self.over_limit
            .get_or_create(&LimitLabel {
                limit: limit.as_str(),
            })
            .inc();
    }

    /// A session cookie did not open. `client` is `None` where the caller
    /// does not judge the client (a login's look for an older session).
    pub fn unseal_failed(&self, client: Option<IpAddr>) {
        self.unseal_failures.inc();
        let Some(client) = client else { return };
        if let Some(count) = self.unseal_bursts.hit(client, Instant::now()) {
            self.anomaly(Anomaly::UnsealBurst, None, Some(client), Some(count));
        }
    }

    /// A WebSocket tunnel opened; it counts as open until the guard drops.
    pub fn tunnel_opened(&self) -> Tunnel {
        self.tunnels.inc();
        Tunnel(self.tunnels.clone())
    }

    /// What the session store's ping said at this scrape.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// What the IdP's discovery said at this scrape; `None`: no IdP is
    /// configured, and the series is dropped.
    pub fn set_idp_up(&self, up: Option<bool>) {
        match up {
            Some(up) => {
                self.idp_up.get_or_create(&Vec::new()).set(i64::from(up));
            }
            None => self.idp_up.clear(),
        }
    }

    /// A config reload ended: for the reload code to call.
    pub fn config_reload(&self, outcome: Reload) {
        self.reloads
            .get_or_create(&Outcome {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts an anomaly and logs it once on `cloakroom::anomaly`.
    /// `session_key` is the session's store key: only the hash inside it
    /// is logged.
    pub fn anomaly(
        &self,
        kind: Anomaly,
        session_key: Option<&str>,
        client: Option<IpAddr>,
        count: Option<u32>,
    ) {
        self.anomalies
            .get_or_create(&KindLabel { kind: kind.as_str() })
            .inc();
        anomaly::log(kind, session_key, client, count);
    }
}

// === impl Tunnel ===

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_in_both_formats() {
        let metrics = Metrics::new();
        metrics.request("/api".into(), "GET", 200, None, Duration::from_millis(3));
        metrics.store_op(StoreOp::Get, StoreOutcome::Miss, Duration::from_micros(80));
        let _tunnel = metrics.tunnel_opened();
        metrics.set_store_up(true);
        metrics.set_idp_up(Some(false));
        let open = metrics.encode(true);
        assert!(open.ends_with("# EOF\n"), "{open}");
        for name in [
            "cloakroom_requests_total{route=\"/api\",method=\"GET\",status=\"200\",code=\"none\"} 1",
            "cloakroom_request_duration_seconds_bucket{le=\"0.005\",route=\"/api\",method=\"GET\"} 1",
            "cloakroom_store_operations_total{op=\"get\",outcome=\"miss\"} 1",
            "cloakroom_refreshes_total{outcome=\"lost_lease\"} 0",
            "cloakroom_sessions_ended_total{reason=\"forged_idp_answer\"} 0",
            "cloakroom_revocations_total{outcome=\"dropped\"} 0",
            "cloakroom_revocation_queue_length 0",
            "cloakroom_anomalies_total{kind=\"unseal_burst\"} 0",
            "cloakroom_config_reloads_total{outcome=\"failure\"} 0",
            "cloakroom_websocket_tunnels 1",
            "cloakroom_store_up 1",
            "cloakroom_idp_up 0",
            "cloakroom_build_info{version=",
        ] {
            assert!(open.contains(name), "{name} missing:\n{open}");
        }
        let text = metrics.encode(false);
        assert!(text.contains("# TYPE cloakroom_requests_total counter"), "{text}");
        assert!(!text.contains("# EOF"));
        metrics.set_idp_up(None);
        assert!(
            !metrics.encode(true).contains("cloakroom_idp_up "),
            "no IdP, no series"
        );
    }

    /// The store series live in arrays indexed by the enums: every
    /// operation and outcome has its slot.
    #[test]
    fn every_store_operation_and_outcome_has_its_series() {
        let metrics = Metrics::new();
        for (i, op) in StoreOp::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{op:?} out of order");
            for (j, outcome) in StoreOutcome::ALL.into_iter().enumerate() {
                assert_eq!(outcome as usize, j);
                metrics.store_op(op, outcome, Duration::from_micros(1));
            }
        }
        let text = metrics.encode(true);
        assert!(text.contains("cloakroom_store_operations_total{op=\"announce_ended\",outcome=\"error\"} 1"));
        assert!(text.contains("cloakroom_store_operation_duration_seconds_count{op=\"index_list\"} 4"));
    }

    #[test]
    fn a_tunnel_counts_while_open() {
        let metrics = Metrics::new();
        let first = metrics.tunnel_opened();
        let second = metrics.tunnel_opened();
        drop(first);
        assert_eq!(metrics.tunnels.get(), 1);
        drop(second);
        assert_eq!(metrics.tunnels.get(), 0);
    }
}
