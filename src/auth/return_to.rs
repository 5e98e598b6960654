//! Where the browser goes after login: a local path, or `/`.
//!
//! Parsed strictly rather than pattern-matched (threat-model T17, LG-12),
//! by [`crate::path::local`].

use crate::path::local::local_path;
pub use crate::path::local::MAX_LEN;
use url::Url;

/// The local path to return to, or `/` for anything else.
pub fn sanitize(raw: Option<&str>) -> String {
    raw.and_then(local_path).unwrap_or_else(|| "/".to_owned())
}

/// `return_to` (a path [`sanitize`] kept) with `error=` added to its
/// query, before any fragment: how a silent login's refusal reaches the
/// SPA. `error` is one of a few fixed words, never the IdP's description.
pub fn with_error(return_to: &str, error: &str) -> String {
    let Ok(mut url) = Url::parse("https://return-to.invalid/").and_then(|b| b.join(return_to)) else {
        return "/".to_owned();
    };
    url.query_pairs_mut().append_pair("error", error);
    let mut out = url.path().to_owned();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = url.fragment() {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    #[test]
    fn idp02_the_error_joins_the_query_before_the_fragment() {
        assert_eq!(with_error("/", "login_required"), "/?error=login_required");
        assert_eq!(
            with_error("/app/x?tab=2#top", "consent_required"),
            "/app/x?tab=2&error=consent_required#top"
        );
    }

    #[test]
    fn local_paths_survive() {
        assert_eq!(sanitize(Some("/app/orders?id=1#top")), "/app/orders?id=1#top");
        assert_eq!(sanitize(Some("/")), "/");
        assert_eq!(sanitize(None), "/");
    }

    #[test]
    fn lg12_open_redirect_corpus_lands_on_root() {
        for evil in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "http://evil.com/path",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "/%09/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r/evil.com",
            "/ /evil.com",
            "///evil.com",
            "////evil.com",
            "https:evil.com",
            "https://app.example.com.evil.com",
            "//app.example.com@evil.com",
            "/\\/evil.com",
            "evil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "\u{3002}evil.com",
            "//evil%E3%80%82com",
            " //evil.com",
            "",
            "/.\\./evil.com",
        ] {
            let got = sanitize(Some(evil));
            assert!(
                got.starts_with('/') && !got.starts_with("//") && !got.contains("evil.com") || got == "/",
                "{evil:?} -> {got:?}"
            );
            assert!(
                Url::parse("https://app.example.com/")
                    .unwrap()
                    .join(&got)
                    .unwrap()
                    .host_str()
                    == Some("app.example.com"),
                "{evil:?}"
            );
        }
    }
}
