//! The security headers on every answer cloakroom writes itself (PX-26):
//! `/auth/*`, problems (404, 405, 401, …), the SPA's client module, and the
//! admin listener. Upstream answers pass through as the upstream wrote
//! them, and static files carry their route's `headers`.
//!
//! `Cache-Control` is not set here: each answer says its own (`no-store`
//! on `/auth/*`, problems and the admin listener; `no-cache` with an ETag
//! on the client module, which holds nothing of anyone's).

use http::header::{self, HeaderMap, HeaderValue};

/// HSTS for a year, subdomains included (threat-model T02).
pub(crate) const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Nothing of ours loads anything, and nobody frames it. The one style
/// allowed is the login error page's own, by its hash (`rescue::page`).
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'sha256-zdqWToIIydAOsDNnjRS2jIgmgYyKsyY7jTuzg29osI8='; frame-ancestors 'none'";

/// Sets the headers; HSTS only when the browser reaches cloakroom over
/// https (it would be ignored over http anyway).
pub(crate) fn apply(headers: &mut HeaderMap, https: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px26_the_set_and_hsts_only_over_https() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src *"),
        );
        apply(&mut headers, false);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CSP,
            "replaced, not added"
        );
        assert_eq!(headers.get_all(header::CONTENT_SECURITY_POLICY).iter().count(), 1);
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
        apply(&mut headers, true);
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
