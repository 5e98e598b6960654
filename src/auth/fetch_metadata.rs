//! `csrf: fetch-metadata`: the CSRF proof for reads that cannot carry a
//! header. `EventSource`, `<img>`, `<video>` and a download link cannot add
//! `X-CSRF: 1`; every browser that matters sends `Sec-Fetch-Site` on them
//! instead, and a page cannot forge or remove it (it is a forbidden header
//! name). `same-origin` means the request comes from a page of
//! `public_url`'s own origin, which is what `X-CSRF` proves for a fetch.
//!
//! Only `GET` and `HEAD` get this alternative. A read with no
//! `Sec-Fetch-Site` (an old browser, or not a browser) still needs
//! `X-CSRF: 1`: absence proves nothing. `same-site` is refused like
//! `cross-site`: a sibling subdomain is same-site (threat-model T12).
//! Unsafe methods are checked exactly as on any API route. This relaxes
//! CS-06 for the routes that opt in, and only for same-origin reads.

use http::{HeaderMap, Method};

use super::csrf::Csrf;
use crate::error::Refusal;

// === impl Csrf ===

impl Csrf {
    /// The check for a route with `csrf: fetch-metadata`.
    pub fn check_fetch_metadata(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        // Deliberately not Method::is_safe: OPTIONS and TRACE are not reads.
        let read = method == Method::GET || method == Method::HEAD;
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if read && site == Some("same-origin") {
            return Ok(());
        }
        self.check(method, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, MapEnv};

    fn csrf() -> Csrf {
        let yaml =
            "public_url: https://app.example.com\nroutes: [{path: /, upstream: 'http://a', auth: none}]";
        Csrf::new(&Config::load(yaml, &MapEnv::default()).unwrap())
    }

    fn check(method: Method, headers: &[(&'static str, &'static str)]) -> Result<(), Refusal> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        csrf().check_fetch_metadata(&method, &map)
    }

    #[test]
    fn a_same_origin_read_needs_no_custom_header() {
        assert_eq!(check(Method::GET, &[("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(check(Method::HEAD, &[("sec-fetch-site", "same-origin")]), Ok(()));
    }

    #[test]
    fn a_read_without_fetch_metadata_still_needs_x_csrf() {
        assert!(check(Method::GET, &[]).is_err());
        assert_eq!(check(Method::GET, &[("x-csrf", "1")]), Ok(()));
    }

    #[test]
    fn same_site_cross_site_and_none_are_refused() {
        for site in ["same-site", "cross-site", "none", "SAME-ORIGIN"] {
            assert!(check(Method::GET, &[("sec-fetch-site", site)]).is_err(), "{site}");
        }
        // A cross-site page cannot borrow X-CSRF either (it would need CORS).
        assert!(check(Method::GET, &[("sec-fetch-site", "cross-site"), ("x-csrf", "1")]).is_err());
    }

    #[test]
    fn unsafe_methods_are_checked_as_on_any_api_route() {
        let same = ("sec-fetch-site", "same-origin");
        assert!(check(Method::POST, &[same]).is_err(), "no X-CSRF");
        assert!(check(Method::OPTIONS, &[same]).is_err(), "OPTIONS is not a read");
        assert_eq!(
            check(
                Method::POST,
                &[same, ("x-csrf", "1"), ("origin", "https://app.example.com")]
            ),
            Ok(())
        );
    }
}
