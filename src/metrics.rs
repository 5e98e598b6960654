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
//! A leaf: it imports nothing of cloakroom; callers pass `&'static str`
//! codes and their own facts.

pub mod bursts;
#[cfg(target_os = "linux")]
mod process;

use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use self::bursts::Bursts;

/// The OpenMetrics text format's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's content type (version 0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How failures from one client make a burst: this many within a minute.
pub const BURST_THRESHOLD: u32 = 10;
pub const BURST_WINDOW: Duration = Duration::from_secs(60);
/// How many client addresses each burst detector tracks at most.
const BURST_CAPACITY: usize = 10_000;

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
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteMethod>,
    upstream_duration: Histograms<RouteOnly>,
    upstream_errors: Family<RouteError, Counter>,
    logins: Family<LoginLabels, Counter>,
    refreshes: Family<Outcome, Counter>,
    token_calls: Histograms<GrantLabel>,
    grants: Family<GrantOutcomeLabels, Counter>,
    store_ops: Family<StoreLabels, Counter>,
    store_duration: Histograms<OpLabel>,
    /// The store series, by op and outcome, resolved on first use: the
    /// most frequent recording skips the families' maps.
    store_counters: [[OnceLock<Counter>; StoreOutcome::COUNT]; StoreOp::COUNT],
    store_timers: [OnceLock<Histogram>; StoreOp::COUNT],
    sessions_created: Counter,
    sessions_ended: Family<ReasonLabel, Counter>,
    revocations: Family<Outcome, Counter>,
    /// The revocation queue's length at the last scrape.
    revocation_queue: Gauge,
    csrf_refusals: Family<RouteOnly, Counter>,
    over_limit: Family<LimitLabel, Counter>,
    unseal_failures: Counter,
    tunnels: Gauge,
    /// The last scrape's look at the session store and the IdP.
    store_up: Gauge,
    /// Empty while no IdP is configured: no series, rather than a 0 that
    /// would read as an outage.
    idp_up: Family<Vec<(&'static str, &'static str)>, Gauge>,
    reloads: Family<Outcome, Counter>,
    anomalies: Family<KindLabel, Counter>,
    device_sessions: Family<EventLabel, Counter>,
    unseal_bursts: Bursts,
    csrf_bursts: Bursts,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteMethod {
    route: Cow<'static, str>,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteError {
    route: Cow<'static, str>,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    outcome: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabel {
    grant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantOutcomeLabels {
    grant: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// What happened to a device-bound session (DBSC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Registration was offered to a browser (a challenge handed out).
    Offered,
    /// A browser bound a session to its key.
    Registered,
    /// A bound cookie was renewed with a proof of the key.
    Refreshed,
    /// The refresh endpoint asked the browser to sign a challenge.
    Challenged,
    /// A registration or refresh proof was refused.
    Refused,
    /// The refresh endpoint told the browser the session is over.
    Ended,
    /// A request came without its bound cookie, and the browser said it
    /// skipped the refresh (`Secure-Session-Skipped`).
    Skipped,
    /// `device_binding: require` refused a session that was not bound.
    Unbound,
}

/// How one refresh flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The IdP granted new tokens and they were written.
    Rotated,
    /// Another replica's (or flight's) refresh supplied the tokens: found
    /// while waiting for its lease, after taking the lease, or explaining
    /// an `invalid_grant`.
    WaitedOnOtherReplica,
    /// Our tokens were granted, but another writer committed first while
    /// our lease was lost; its tokens were kept (RF-06).
    LostLease,
    /// The IdP answered `invalid_grant`: the session ended.
    InvalidGrant,
    IdpDown,
    StoreDown,
    /// The IdP would not exchange the session's token (an OAuth error or
    /// an unusable answer); the session goes on.
    Refused,
    /// Another refresh did not finish in time: `503 refresh_pending`.
    Pending,
    /// The session ended otherwise: no refresh token, the record gone, or
    /// a refreshed ID token refused.
    Ended,
}

/// What became of a refresh token revocation queued at a session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Put in the queue.
    Queued,
    /// The IdP revoked the tokens.
    Done,
    /// An attempt failed; it is retried later.
    Failed,
    /// Left undone: pushed out of a full queue, given up after its
    /// retries, refused for good by the IdP (or it names no revocation
    /// endpoint), sealed with a key no longer configured, or never queued
    /// (the store down).
    Dropped,
}

/// A per-client-address limit a request was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_requests_per_ip` requests already in flight (PX-35).
    RequestsPerIp,
    /// `limits.refused_code_exchanges_per_minute` spent at the callback (LG-28).
    CodeExchanges,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    /// Found past its idle timeout while its record was still stored (the
    /// store's TTL usually removes it first: then it is [`Self::Gone`]).
    Idle,
    /// Its cookie came back past the absolute timeout.
    Absolute,
    InvalidGrant,
    /// A refreshed ID token named another subject or issuer, or was refused.
    ForgedIdpAnswer,
    /// A login in the same browser replaced it (CK-11).
    Replaced,
    /// Its user ended it from another session (`DELETE /auth/sessions/{id}`).
    EndedByUser,
    /// The admin API ended its subject's sessions.
    Admin,
    /// The IdP's back-channel logout.
    BackchannelLogout,
    /// Its subject went over `session.max_per_user`: the oldest ends.
    PerUserLimit,
    /// Its cookie came back and the record was gone from the store: in
    /// practice the idle timeout, which the store's TTL enforces; also a
    /// session ended elsewhere whose cookie is replayed, or a store that
    /// lost its data. Counted when the cookie comes back, not when the
    /// record expires.
    Gone,
}

/// A store operation, as the [`crate::session::SessionStore`] contract
/// names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    GetLatest,
    Put,
    Delete,
    DeleteIf,
    Ping,
    IndexAdd,
    IndexTouch,
    IndexRemove,
    IndexList,
    AnnounceEnded,
    Take,
    QueuePush,
    QueueClaim,
    QueueRetry,
    QueueDone,
    QueueLen,
}

/// How a store operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Ok,
    /// No such key (`get`), or not the expected value (`delete_if`).
    Miss,
    /// Compare-and-set refused.
    Conflict,
    /// The store is unavailable.
    Error,
}

/// A token endpoint grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    /// The session's own token, or a route's own (`resource`, `scopes`).
    RefreshToken,
    /// A token of cloakroom's own client (`token: client`).
    ClientCredentials,
    /// A token exchanged for the session's (`token: exchange`, RFC 8693).
    Exchange,
}

/// How a token endpoint call ended, as the IdP's answer tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Tokens granted.
    Granted,
    /// An OAuth error (`invalid_grant`, `invalid_scope`, `invalid_target`…).
    Refused,
    /// No answer: unreachable, timed out.
    Unavailable,
    /// An answer that was not a usable token response.
    BadResponse,
}

/// What a failed grant says of its [`GrantOutcome`]; the error types of
/// the IdP client implement it, so this leaf imports none of them.
pub trait GrantFailure {
    fn outcome(&self) -> GrantOutcome;
}

/// How a config reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Success,
    Failure,
}

/// Something that should not happen in honest traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// A refresh presented a refresh token that had already been rotated:
    /// the IdP answered `invalid_grant`, and the session record, read again,
    /// holds another refresh token than the one presented.
    RefreshTokenReuse,
    /// A refreshed ID token names another subject or issuer than the
    /// session's.
    IdentityChanged,
    /// A refreshed ID token failed validation (signature, issuer,
    /// audience, expiry, …): the IdP's answer cannot be trusted.
    RefusedIdToken,
    /// [`BURST_THRESHOLD`] session cookies that do not open, from one
    /// client, within [`BURST_WINDOW`].
    UnsealBurst,
    /// [`BURST_THRESHOLD`] CSRF refusals, from one client, within
    /// [`BURST_WINDOW`].
    CsrfBurst,
    /// A device-bound session's cookie came without its bound cookie, and
    /// the browser did not say it skipped a refresh: most likely a copied
    /// cookie jar used on another machine.
    SessionCookieWithoutDevice,
    /// A DBSC proof was refused: a signature that does not verify with
    /// the session's key, or a challenge replayed or not the session's.
    DeviceProofRefused,
}

/// Keeps the WebSocket tunnel gauge up while alive.
pub struct Tunnel(Gauge);

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
            "device_sessions",
            "Device-bound sessions (DBSC), by event: offered, registered, refreshed, challenged, refused, ended, skipped, unbound",
            metrics.device_sessions.clone(),
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

    /// A revocation of an ended session's refresh tokens reached `outcome`.
    pub fn revocation(&self, outcome: Revocation) {
        self.revocations
            .get_or_create(&Outcome {
                outcome: outcome.as_str(),
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
        let client = client.map(|c| c.to_canonical().to_string());
        tracing::warn!(
            target: "cloakroom::anomaly",
            kind = kind.as_str(),
            session = session_key.map_or("-", key_hash),
            client = client.as_deref().unwrap_or("-"),
            count,
            window_s = count.map(|_| BURST_WINDOW.as_secs()),
            "{}",
            kind.describe(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The method label: the standard methods by name, a WebSocket handshake
/// as `websocket`, any extension method as `other` (a bounded set).
pub fn method_label(method: &Method, websocket: bool) -> &'static str {
    if websocket {
        return "websocket";
    }
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// The hash inside a store key (`cloakroom:{<hash>}:s` for a session: the
/// keyed hash of its id, never the id itself, T08, T43; `…:idx` for a
/// subject's index).
pub fn key_hash(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or("-", |(hash, _)| hash)
}

// === impl Tunnel ===

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === label words ===

impl RefreshOutcome {
    const ALL: [Self; 9] = [
        Self::Rotated,
        Self::WaitedOnOtherReplica,
        Self::LostLease,
        Self::InvalidGrant,
        Self::IdpDown,
        Self::StoreDown,
        Self::Refused,
        Self::Pending,
        Self::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::WaitedOnOtherReplica => "waited_on_other_replica",
            Self::LostLease => "lost_lease",
            Self::InvalidGrant => "invalid_grant",
            Self::IdpDown => "idp_down",
            Self::StoreDown => "store_down",
            Self::Refused => "refused",
            Self::Pending => "pending",
            Self::Ended => "ended",
        }
    }
}

impl Revocation {
    const ALL: [Self; 4] = [Self::Queued, Self::Done, Self::Failed, Self::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

impl DeviceEvent {
    const ALL: [Self; 8] = [
        Self::Offered,
        Self::Registered,
        Self::Refreshed,
        Self::Challenged,
        Self::Refused,
        Self::Ended,
        Self::Skipped,
        Self::Unbound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Registered => "registered",
            Self::Refreshed => "refreshed",
            Self::Challenged => "challenged",
            Self::Refused => "refused",
            Self::Ended => "ended",
            Self::Skipped => "skipped",
            Self::Unbound => "unbound",
        }
    }
}

impl Limit {
    const ALL: [Self; 2] = [Self::RequestsPerIp, Self::CodeExchanges];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestsPerIp => "requests_per_ip",
            Self::CodeExchanges => "code_exchanges",
        }
    }
}

impl EndReason {
    const ALL: [Self; 7] = [
        Self::Logout,
        Self::Idle,
        Self::Absolute,
        Self::InvalidGrant,
        Self::ForgedIdpAnswer,
        Self::Replaced,
        Self::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::EndedByUser => "ended_by_user",
            Self::Admin => "admin",
            Self::BackchannelLogout => "backchannel_logout",
            Self::PerUserLimit => "per_user_limit",
            Self::Idle => "idle",
            Self::Absolute => "absolute",
            Self::InvalidGrant => "invalid_grant",
            Self::ForgedIdpAnswer => "forged_idp_answer",
            Self::Replaced => "replaced",
            Self::Gone => "gone",
        }
    }
}

impl StoreOp {
    const COUNT: usize = 17;
    /// Every operation, in declaration order (the index of its series).
    #[cfg(test)]
    const ALL: [Self; Self::COUNT] = [
        Self::Get,
        Self::GetLatest,
        Self::Put,
        Self::Delete,
        Self::DeleteIf,
        Self::Ping,
        Self::IndexAdd,
        Self::IndexTouch,
        Self::IndexRemove,
        Self::IndexList,
        Self::AnnounceEnded,
        Self::Take,
        Self::QueuePush,
        Self::QueueClaim,
        Self::QueueRetry,
        Self::QueueDone,
        Self::QueueLen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetLatest => "get_latest",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::DeleteIf => "delete_if",
            Self::Ping => "ping",
            Self::IndexAdd => "index_add",
            Self::IndexTouch => "index_touch",
            Self::IndexRemove => "index_remove",
            Self::IndexList => "index_list",
            Self::AnnounceEnded => "announce_ended",
            Self::Take => "take",
            Self::QueuePush => "queue_push",
            Self::QueueClaim => "queue_claim",
            Self::QueueRetry => "queue_retry",
            Self::QueueDone => "queue_done",
            Self::QueueLen => "queue_len",
        }
    }
}

impl StoreOutcome {
    const COUNT: usize = 4;
    #[cfg(test)]
    const ALL: [Self; Self::COUNT] = [Self::Ok, Self::Miss, Self::Conflict, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Miss => "miss",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Exchange => "exchange",
        }
    }
}

impl GrantOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::BadResponse => "bad_response",
        }
    }
}

impl Reload {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl Anomaly {
    const ALL: [Self; 7] = [
        Self::RefreshTokenReuse,
        Self::IdentityChanged,
        Self::RefusedIdToken,
        Self::UnsealBurst,
        Self::CsrfBurst,
        Self::SessionCookieWithoutDevice,
        Self::DeviceProofRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::IdentityChanged => "identity_changed",
            Self::RefusedIdToken => "refused_id_token",
            Self::UnsealBurst => "unseal_burst",
            Self::CsrfBurst => "csrf_burst",
            Self::SessionCookieWithoutDevice => "session_cookie_without_device",
            Self::DeviceProofRefused => "device_proof_refused",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse => "a refresh token was presented after it had been rotated",
            Self::IdentityChanged => "a refreshed ID token names another subject or issuer",
            Self::RefusedIdToken => "a refreshed ID token failed validation",
            Self::UnsealBurst => "a burst of session cookies that do not open, from one client",
            Self::CsrfBurst => "a burst of CSRF refusals, from one client",
            Self::SessionCookieWithoutDevice => {
                "a device-bound session's cookie came without its bound cookie"
            }
            Self::DeviceProofRefused => "a device-bound session's proof was refused",
        }
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

    #[test]
    fn only_the_hash_of_a_store_key_is_logged() {
        assert_eq!(key_hash("cloakroom:{0a1b2c}:s"), "0a1b2c");
        assert_eq!(key_hash("no braces"), "-");
    }

    #[test]
    fn method_labels_are_a_bounded_set() {
        assert_eq!(method_label(&Method::GET, false), "GET");
        assert_eq!(method_label(&Method::GET, true), "websocket");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd, false), "other");
    }
}
