//! The access line (`cloakroom::access`: request id, client, method, path
//! without the query, route, status, code, duration) and the outcome on
//! the request's trace span.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};

use crate::body::Body;
use crate::error::Code;
use crate::routes::Route;
use crate::telemetry;

/// What the line needs of the request, taken before the request is
/// handed on.
pub(super) struct AccessLine {
    method: Method,
    path: String,
}

impl AccessLine {
    /// `None` when neither the line nor a span will be written: only pay
    /// for its inputs then. With traces on, always: `enabled!` would leave
    /// the trace layer's filter state set for the next span
    /// (tracing-subscriber's per-layer filters are only reset by a span or
    /// event).
    pub(super) fn start<B>(request: &Request<B>) -> Option<Self> {
        (telemetry::traces_on() || tracing::enabled!(target: "cloakroom::access", tracing::Level::INFO)).then(
            || Self {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            },
        )
    }

    pub(super) fn write(
        self,
        request_id: &str,
        client: IpAddr,
        route: Option<&Arc<Route>>,
        response: &Response<Body>,
        elapsed: Duration,
    ) {
        let code = response.extensions().get::<Code>().map(|c| c.as_str());
        record_outcome(&tracing::Span::current(), &self.method, route, code);
        tracing::info!(
            target: "cloakroom::access",
            request_id = %request_id,
            client = %client.to_canonical(),
            method = %self.method,
            path = %self.path,
            route = route.map_or("-", |r| r.config.path.as_str()),
            status = response.status().as_u16(),
            code = code.unwrap_or("-"),
            ms = elapsed.as_secs_f64() * 1000.0,
        );
    }
}

/// The route and problem code on the request's span; the edge records the
/// status.
fn record_outcome(span: &tracing::Span, method: &Method, route: Option<&Arc<Route>>, code: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    if let Some(route) = route {
        let path = route.config.path.as_str();
        span.record("http.route", path);
        telemetry::rename(span, format!("{method} {path}"));
    }
    if let Some(code) = code {
        span.record("cloakroom.problem", code);
    }
}
