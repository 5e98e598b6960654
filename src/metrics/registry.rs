//! The registry: every family cloakroom exposes, registered once with its
//! name and help text ([`Metrics::new`]), and the exposition of them all
//! ([`Metrics::encode`]).

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::anomaly::{Anomaly, BURST_CAPACITY, BURST_THRESHOLD, BURST_WINDOW};
use super::bursts::Bursts;
use super::labels::{
    EventLabel, GrantLabel, GrantOutcomeLabels, KindLabel, LimitLabel, LoginLabels, OpLabel, Outcome,
    ReasonLabel, RequestLabels, RouteError, RouteMethod, RouteOnly, StoreLabels,
};
#[cfg(target_os = "linux")]
use super::process;
use super::words::{
    DeviceEvent, EndReason, Limit, RefreshOutcome, Reload, Revocation, StoreOp, StoreOutcome,
};

/// The OpenMetrics text format's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's content type (version 0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Seconds: from a millisecond to ten seconds (a whole request, a token call).
const SLOW_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];
/// Seconds: from 50 µs (a cache hit) to a second (a store call).
const FAST_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric family cloakroom exposes, and the burst detectors.
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) request_duration: Histograms<RouteMethod>,
    pub(super) upstream_duration: Histograms<RouteOnly>,
    pub(super) upstream_errors: Family<RouteError, Counter>,
    pub(super) logins: Family<LoginLabels, Counter>,
    pub(super) refreshes: Family<Outcome, Counter>,
    pub(super) token_calls: Histograms<GrantLabel>,
    pub(super) grants: Family<GrantOutcomeLabels, Counter>,
    pub(super) store_ops: Family<StoreLabels, Counter>,
    pub(super) store_duration: Histograms<OpLabel>,
    /// The store series, by op and outcome, resolved on first use: the
    /// most frequent recording skips the families' maps.
    pub(super) store_counters: [[OnceLock<Counter>; StoreOutcome::COUNT]; StoreOp::COUNT],
    pub(super) store_timers: [OnceLock<Histogram>; StoreOp::COUNT],
    pub(super) sessions_created: Counter,
    pub(super) sessions_ended: Family<ReasonLabel, Counter>,
    pub(super) revocations: Family<Outcome, Counter>,
    /// The revocation queue's length at the last scrape.
    pub(super) revocation_queue: Gauge,
    pub(super) csrf_refusals: Family<RouteOnly, Counter>,
    pub(super) over_limit: Family<LimitLabel, Counter>,
    pub(super) unseal_failures: Counter,
    pub(super) tunnels: Gauge,
    /// The last scrape's look at the session store and the IdP.
    pub(super) store_up: Gauge,
    /// Empty while no IdP is configured: no series, rather than a 0 that
    /// would read as an outage.
    pub(super) idp_up: Family<Vec<(&'static str, &'static str)>, Gauge>,
    pub(super) reloads: Family<Outcome, Counter>,
    pub(super) anomalies: Family<KindLabel, Counter>,
    pub(super) device_sessions: Family<EventLabel, Counter>,
    pub(super) unseal_bursts: Bursts,
    pub(super) csrf_bursts: Bursts,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        let slow: fn() -> Histogram = || Histogram::new(SLOW_BUCKETS);
        let fast: fn() -> Histogram = || Histogram::new(FAST_BUCKETS);
        let mut metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(slow),
            upstream_duration: Family::new_with_constructor(slow),
            upstream_errors: Family::default(),
            logins: Family::default(),
            refreshes: Family::default(),
            token_calls: Family::new_with_constructor(slow),
            grants: Family::default(),
            store_ops: Family::default(),
            store_duration: Family::new_with_constructor(fast),
            store_counters: Default::default(),
            store_timers: Default::default(),
            sessions_created: Counter::default(),
            sessions_ended: Family::default(),
            revocations: Family::default(),
            revocation_queue: Gauge::default(),
            csrf_refusals: Family::default(),
            over_limit: Family::default(),
            unseal_failures: Counter::default(),
            tunnels: Gauge::default(),
            store_up: Gauge::default(),
            idp_up: Family::default(),
            reloads: Family::default(),
            anomalies: Family::default(),
            device_sessions: Family::default(),
            unseal_bursts: Bursts::new(BURST_WINDOW, BURST_THRESHOLD, BURST_CAPACITY),
            csrf_bursts: Bursts::new(BURST_WINDOW, BURST_THRESHOLD, BURST_CAPACITY),
        };
        // The process families keep their standard names (`process_*`),
        // which dashboards expect; cloakroom's own carry its prefix.
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register_collector(Box::new(process::ProcessCollector::new()));
        let r = metrics.registry.sub_registry_with_prefix("cloakroom");
        r.register(
            "requests",
            "Requests answered, by route, method, status and problem code",
            metrics.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time to the response head, by route and method",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        r.register_with_unit(
            "upstream_request_duration",
            "Time from sending to an upstream to its response head, by route",
            Unit::Seconds,
            metrics.upstream_duration.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream calls that got no response, by route and error",
            metrics.upstream_errors.clone(),
        );
        r.register(
            "logins",
            "Logins started, completed, and failed by problem code",
            metrics.logins.clone(),
        );
        r.register(
            "refreshes",
            "Token refresh flights, by outcome",
            metrics.refreshes.clone(),
        );
        r.register_with_unit(
            "idp_token_request_duration",
            "Token endpoint calls, by grant, whatever their answer",
            Unit::Seconds,
            metrics.token_calls.clone(),
        );
        r.register(
            "idp_grants",
            "Token endpoint calls, by grant and outcome",
            metrics.grants.clone(),
        );
        r.register(
            "store_operations",
            "Session store operations, by operation and outcome",
            metrics.store_ops.clone(),
        );
        r.register_with_unit(
            "store_operation_duration",
            "Session store operation time, by operation",
            Unit::Seconds,
            metrics.store_duration.clone(),
        );
        r.register(
            "sessions_created",
            "Sessions created at login",
            metrics.sessions_created.clone(),
        );
        r.register(
            "sessions_ended",
            "Sessions ended, by reason",
            metrics.sessions_ended.clone(),
        );
        r.register(
            "revocations",
            "Refresh token revocations of ended sessions, by outcome: queued, done, failed (retried later), dropped",
            metrics.revocations.clone(),
        );
        r.register(
            "revocation_queue_length",
            "Revocations waiting in the queue (due or retried later), at this scrape",
            metrics.revocation_queue.clone(),
        );
        r.register(
            "csrf_refusals",
            "Requests refused by a CSRF rule, by route",
            metrics.csrf_refusals.clone(),
        );
        r.register(
            "over_limit_refusals",
            "Requests refused for a client over a per-address limit, by limit",
            metrics.over_limit.clone(),
        );
        r.register(
            "cookie_unseal_failures",
            "Session cookies that did not open (tampered, foreign, or sealed with a removed key)",
            metrics.unseal_failures.clone(),
        );
        r.register(
            "websocket_tunnels",
            "WebSocket tunnels open now",
            metrics.tunnels.clone(),
        );
        r.register(
            "store_up",
            "1 if the session store answered a ping at this scrape, else 0",
            metrics.store_up.clone(),
        );
        r.register(
            "idp_up",
            "1 if the IdP served discovery metadata that fits the config at this scrape, else 0",
            metrics.idp_up.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads, by outcome",
            metrics.reloads.clone(),
        );
        r.register(
            "device_sessions",
            "Device-bound sessions (DBSC), by event: offered, registered, refreshed, challenged, refused, ended, skipped, unbound",
            metrics.device_sessions.clone(),
        );
        r.register(
            "anomalies",
            "Anomalies, by kind; each is also logged on the cloakroom::anomaly target",
            metrics.anomalies.clone(),
        );
        r.register(
            "build",
            "The running version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Every series of a fixed label set starts at 0, so the first event
        // is an increase a rate or an alert sees.
        for outcome in RefreshOutcome::ALL {
            metrics.refreshes.get_or_create_owned(&Outcome {
                outcome: outcome.as_str(),
            });
        }
        for reason in EndReason::ALL {
            metrics.sessions_ended.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for kind in Anomaly::ALL {
            metrics
                .anomalies
                .get_or_create_owned(&KindLabel { kind: kind.as_str() });
        }
        for limit in Limit::ALL {
            metrics.over_limit.get_or_create_owned(&LimitLabel {
                limit: limit.as_str(),
            });
        }
        for event in DeviceEvent::ALL {
            metrics.device_sessions.get_or_create_owned(&EventLabel {
                event: event.as_str(),
            });
        }
        for outcome in Revocation::ALL {
            metrics.revocations.get_or_create_owned(&Outcome {
                outcome: outcome.as_str(),
            });
        }
        for outcome in [Reload::Success, Reload::Failure] {
            metrics.reloads.get_or_create_owned(&Outcome {
                outcome: outcome.as_str(),
            });
        }
        for outcome in ["started", "completed"] {
            metrics.logins.get_or_create_owned(&LoginLabels {
                outcome,
                code: "none",
            });
        }
        metrics
    }

    /// The exposition: OpenMetrics text, or the Prometheus text format
    /// (0.0.4) for a scraper that does not ask for OpenMetrics.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if encoded.is_err() {
            // Writing to a String cannot fail; a half exposition is worse
            // than none.
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
