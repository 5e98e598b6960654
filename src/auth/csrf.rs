//! CSRF guard for API routes, page routes, `/auth/user` and `/auth/logout`.
//!
//! Every call must carry `X-CSRF: 1`: a custom header that a cross-site
//! form or `text/plain` fetch cannot add without a CORS preflight, which
//! cloakroom never grants (threat-model T11). Unsafe methods must also come
//! from an allowed origin: `Origin` exactly `public_url`'s or one listed in
//! `allowed_origins`, or, without `Origin`, `Sec-Fetch-Site: same-origin`.
//! `same-site` is not enough: a sibling subdomain is same-site (T12).

use http::{header, HeaderMap, Method};

use crate::config::Config;
use crate::error::Refusal;

pub struct Csrf {
    origins: Vec<String>,
}

// === impl Csrf ===

impl Csrf {
    pub fn new(config: &Config) -> Self {
        let mut origins = vec![config.public_url.origin().ascii_serialization()];
        origins.extend(config.allowed_origins.iter().cloned());
        Self { origins }
    }

    /// A WebSocket handshake cannot carry custom headers, and browsers
    /// always send `Origin` with it: that must be an allowed one (CS-10).
    pub fn check_websocket(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            Some(origin) if self.origins.iter().any(|o| o == origin) => Ok(()),
            _ => Err(Refusal::Csrf("websocket from a foreign origin")),
        }
    }

    /// API calls: `X-CSRF: 1` always, never cross-site, and an allowed
    /// origin for unsafe methods.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        if headers.get("x-csrf").is_none_or(|v| v != "1") {
            return Err(Refusal::Csrf("missing X-CSRF: 1"));
        }
        if fetch_site(headers) == Some("cross-site") {
            return Err(Refusal::Csrf("cross-site request"));
        }
        self.check_unsafe(method, headers)
    }

    /// Pages (`login_redirect` routes) are loaded by navigations, which
    /// cannot carry `X-CSRF`, and a link from another site must still open
    /// them: reads pass. Every unsafe method still needs an allowed origin,
    /// like an API call's (CS-12).
    pub fn check_unsafe(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        // Deliberately not Method::is_safe: OPTIONS and TRACE are not reads.
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        let fetch_site = fetch_site(headers);
        if fetch_site == Some("cross-site") {
            return Err(Refusal::Csrf("cross-site request"));
        }
        match headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("")) {
            Some(origin) if self.origins.iter().any(|o| o == origin) => Ok(()),
            Some(_) => Err(Refusal::Csrf("origin not allowed")),
            None if fetch_site == Some("same-origin") => Ok(()),
            None => Err(Refusal::Csrf("no Origin on an unsafe request")),
        }
    }
}

fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
}
