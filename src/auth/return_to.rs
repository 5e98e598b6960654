//! Where the browser goes after login: a local path, or `/`.
//!
//! Parsed strictly rather than pattern-matched (threat-model T17, LG-12):
//! the value must be an absolute path that, resolved against a placeholder
//! origin, stays on that origin and comes back unchanged in meaning.

use url::Url;

/// The longest `return_to` kept; a longer one falls back to `/` (it rides
/// in the pre-auth cookie, which has room for a few kilobytes).
pub const MAX_LEN: usize = 1024;

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

fn local_path(raw: &str) -> Option<String> {
    // A path, not a scheme-relative URL (`//evil`), not a backslash trick
    // (`/\evil`), no control or whitespace characters browsers strip.
    let bytes = raw.as_bytes();
    if raw.len() > MAX_LEN
        || bytes.first() != Some(&b'/')
        || matches!(bytes.get(1), Some(b'/' | b'\\'))
        || raw
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
        || has_encoded_separator_or_control(raw)
    {
        return None;
    }
    let base = Url::parse("https://return-to.invalid/").ok()?;
    let resolved = base.join(raw).ok()?;
    if resolved.origin() != base.origin() {
        return None;
    }
    let mut out = resolved.path().to_owned();
    if let Some(q) = resolved.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = resolved.fragment() {
        out.push('#');
        out.push_str(f);
    }
    // Re-check the normalised form: `/%2F/evil` must not become `//evil`,
    // and percent-encoding must not have grown it past the limit.
    (out.starts_with('/') && !out.starts_with("//") && out.len() <= MAX_LEN).then_some(out)
}

/// `%2F`, `%5C`, `%00`–`%1F` and `%7F`: nothing a real page link needs, and
/// what a decoder somewhere may turn into a second slash.
fn has_encoded_separator_or_control(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1].to_ascii_uppercase(), w[2].to_ascii_uppercase()),
                (b'2', b'F') | (b'5', b'C') | (b'0' | b'1', _) | (b'7', b'F')
            )
    })
}

#[cfg(test)]
mod tests {
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
