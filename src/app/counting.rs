//! Every answer counted: `cloakroom_requests_total` and its latency by
//! route label, method, status and code, and what the answer says about
//! logins and CSRF.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use http::Response;

use crate::auth::callback::SilentRefusal;
use crate::body::Body;
use crate::error::Code;
use crate::metrics::Metrics;

/// What one request was, for its counts.
pub(super) struct Counted {
    /// The route label: a configured path, an `/auth/*` endpoint, or `none`.
    pub route: Cow<'static, str>,
    /// The `/auth/*` endpoint it reached, if any.
    pub endpoint: Option<&'static str>,
    pub method: &'static str,
    pub client: IpAddr,
    pub elapsed: Duration,
}

impl Counted {
    pub(super) fn count(self, metrics: &Metrics, response: &Response<Body>) {
        let code = response.extensions().get::<Code>();
        if code == Some(&Code::CsrfFailed) {
            metrics.csrf_refused(&self.route, self.client);
        }
        let code = code.map(|c| c.as_str());
        if let (Some(endpoint), "GET") = (self.endpoint, self.method) {
            let silent = response.extensions().get::<SilentRefusal>().is_some();
            match (endpoint, code) {
                ("/auth/login", None) => metrics.login_started(),
                ("/auth/callback", None) if silent => metrics.login_silent_refused(),
                ("/auth/callback", None) => metrics.login_completed(),
                ("/auth/login" | "/auth/callback", Some(code)) => metrics.login_failed(code),
                _ => {}
            }
        }
        metrics.request(
            self.route,
            self.method,
            response.status().as_u16(),
            code,
            self.elapsed,
        );
    }
}
