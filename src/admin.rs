//! The admin listener: `/healthz` (liveness: the process is up),
//! `/readyz` (readiness: this replica takes traffic), `/metrics`
//! (Prometheus), and, when configured, the admin API under `/admin/`
//! ([`sessions`]). Nothing here reveals session data (PX-22).
//!
//! `/readyz` answers 503 only while the replica drains (shutdown has begun),
//! and 200 otherwise. The session store and the IdP are shared by every
//! replica: if readiness followed them, a Redis or IdP outage would take
//! every replica out of the load balancer at once, and anonymous routes,
//! which need neither, would go down with the session routes. So their state
//! is reported in the JSON body, including the last discovery failure's
//! cause (LG-27), but never turns readiness off, e.g.
//! `{"ready":true,"draining":false,"session_store":"unavailable","idp":{"issuer":"https://idp.example.com","state":"failed","cause":"…"}}`.
//! `/metrics` looks the same way before each exposition, for the
//! `cloakroom_store_up` and `cloakroom_idp_up` gauges, and reads the
//! revocation queue's length (`cloakroom_revocation_queue_length`).

pub(crate) mod sessions;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::body::{self, Body};
use crate::error::Code;
use crate::metrics::{self, Metrics};
use crate::oidc::{DiscoveryState, Idp};
use crate::rescue::Problem;
use crate::security_headers;
use crate::session::{revocation, SessionStore};

/// The IdP part of `/readyz`: `{"issuer", "state", "cause"}`.
#[derive(Serialize)]
struct IdpReadiness<'a> {
    issuer: &'a str,
    #[serde(flatten)]
    discovery: DiscoveryState,
}

/// Answers one admin request. `draining` is true once shutdown has begun;
/// `api` is the admin API, if configured.
pub(crate) async fn handle<B>(
    request: Request<B>,
    store: Arc<dyn SessionStore>,
    idp: Option<Arc<Idp>>,
    api: Option<Arc<sessions::Api>>,
    metrics: Arc<Metrics>,
    draining: bool,
) -> Response<Body> {
    let mut response = if request.uri().path().starts_with("/admin/") {
        let (parts, _) = request.into_parts();
        match api {
            Some(api) => api.handle(&parts).await,
            None => Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("-"),
        }
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, Code::MethodNotAllowed).into_response("-")
    } else {
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => readyz(&*store, idp.as_deref(), draining).await,
            "/metrics" => {
                look_around(&*store, idp.as_deref(), &metrics).await;
                exposition(&metrics, request.headers())
            }
            _ => Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("-"),
        }
    };
    // Plain http inside the cluster: no HSTS, the rest as on the public side.
    security_headers::apply(response.headers_mut(), false);
    response
}

async fn readyz(store: &dyn SessionStore, idp: Option<&Idp>, draining: bool) -> Response<Body> {
    let store_ok = match store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            false
        }
    };
    let idp = idp.map(|i| IdpReadiness {
        issuer: i.issuer(),
        discovery: i.discovery_state(),
    });
    // Deliberately neither the store nor the IdP: see the module doc.
    let ready = !draining;
    let body = json!({
        "ready": ready,
        "draining": draining,
        "session_store": if store_ok { "ok" } else { "unavailable" },
        "idp": idp,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = respond(status, Bytes::from(format!("{body}\n")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// How long a scrape waits for the store's ping and the IdP's metadata:
/// together well inside Prometheus's default 10 s scrape timeout.
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// Sets `cloakroom_store_up` and `cloakroom_idp_up` from a ping of the
/// store and a fetch of the IdP's metadata, both at once, and the
/// revocation queue's length when the store answers. At scrape time, so
/// the gauges say what holds now even when no traffic has tried either,
/// and at the scraper's pace rather than a timer's.
async fn look_around(store: &dyn SessionStore, idp: Option<&Idp>, metrics: &Metrics) {
    let store_up = async {
        let pinged = matches!(tokio::time::timeout(PROBE_LIMIT, store.ping()).await, Ok(Ok(())));
        if pinged {
            let queued = tokio::time::timeout(PROBE_LIMIT, store.queue_len(revocation::QUEUE)).await;
            if let Ok(Ok(length)) = queued {
                metrics.set_revocation_queue(length);
            }
        }
        pinged
    };
    let idp_up = async {
        match idp {
            Some(idp) => Some(idp.probe(PROBE_LIMIT).await),
            None => None,
        }
    };
    let (store_up, idp_up) = tokio::join!(store_up, idp_up);
    metrics.set_store_up(store_up);
    metrics.set_idp_up(idp_up);
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the
/// Prometheus text format otherwise.
fn exposition(metrics: &Metrics, headers: &http::HeaderMap) -> Response<Body> {
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let (body, content_type) = if openmetrics {
        (metrics.encode(true), metrics::OPENMETRICS)
    } else {
        (metrics.encode(false), metrics::PROMETHEUS_TEXT)
    };
    let mut response = respond(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = respond(status, Bytes::from_static(body.as_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
