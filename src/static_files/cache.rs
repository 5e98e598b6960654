//! Caching rules for static files: which names are content-hashed (cached
//! for a year, never revalidated), validators (`ETag`) for the rest.

use std::fs::Metadata;
use std::time::UNIX_EPOCH;

use http::{HeaderMap, HeaderValue};

/// For a file whose name changes whenever its content does.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else, `index.html` first: use it, but ask each time.
pub(crate) const REVALIDATE: &str = "no-cache";

/// Whether a file name carries a content hash the way bundlers write them:
/// `app.3f9a1c2b.js` (webpack, Angular: hex), `index-BfR2x3Kq.js` (Vite,
/// Rollup: base64url). The hash is the last `.`- or `-`-separated part of
/// the stem: at least 8 characters, hex digits, or letters and digits
/// mixed (so a word like `template` or `settings` is not taken for one).
pub(crate) fn is_hashed(file_name: &str) -> bool {
    let Some((stem, _ext)) = file_name.rsplit_once('.') else {
        return false;
    };
    let Some(at) = stem.rfind(['.', '-']) else {
        return false;
    };
    let (name, hash) = (&stem[..at], &stem[at + 1..]);
    if name.is_empty() || hash.len() < 8 || hash.len() > 64 {
        return false;
    }
    let is = |f: fn(&u8) -> bool| hash.as_bytes().iter().any(f);
    let token = hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let hex = hash.bytes().all(|b| b.is_ascii_hexdigit()) && is(u8::is_ascii_digit);
    let mixed = is(u8::is_ascii_digit) || (is(u8::is_ascii_uppercase) && is(u8::is_ascii_lowercase));
    token && (hex || mixed)
}

/// A weak validator from size and modification time: cheap, and changes
/// whenever a deployment replaces the file. Weak because the same file may
/// go out gzip-, brotli- or un-encoded.
pub(crate) fn etag(metadata: &Metadata) -> Option<HeaderValue> {
    let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    let tag = format!("W/\"{:x}-{:x}\"", metadata.len(), modified.as_nanos());
    HeaderValue::from_str(&tag).ok()
}

/// `If-None-Match` holds `etag` (weak comparison, RFC 9110 §13.1.2), or `*`.
pub(crate) fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag.to_str().unwrap_or(""));
    request
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// Whether a `Range` may still be served under this `If-Range` (RFC 9110
/// §13.1.5, PX-39): only when it validates the file strongly. tower-http's
/// `ServeFile` does not read `If-Range`, and would splice a range of
/// today's file into yesterday's. Our entity tags are weak, and a weak tag
/// never matches strongly, so only a date equal to the file's
/// `Last-Modified` keeps the range; anything else gets the whole file.
pub(crate) fn if_range_holds(if_range: &HeaderValue, metadata: &Metadata) -> bool {
    let Some(date) = if_range
        .to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    else {
        return false;
    };
    metadata
        .modified()
        .is_ok_and(|modified| httpdate::HttpDate::from(modified) == httpdate::HttpDate::from(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundler_hashes_are_recognised_and_words_are_not() {
        for hashed in [
            "app.3f9a1c2b.js",
            "main.3f9a1c2b4d5e6f70.js",
            "index-BfR2x3Kq.js",
            "index-DiwrgTda.css",
            "chunk-5QJ7ZK2A.js",
            "logo.a1b2c3d4.svg",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "app.js",
            "favicon.ico",
            "index-template.js",
            "my-settings.css",
            "robots.txt",
            "3f9a1c2b.js",
            "app.3f9a.js",
            "noext",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let tag = HeaderValue::from_static("W/\"10-abc\"");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::IF_NONE_MATCH, HeaderValue::from_static(v));
            not_modified(&h, &tag)
        };
        assert!(with("W/\"10-abc\""));
        assert!(with("\"10-abc\""));
        assert!(with("\"x\", W/\"10-abc\""));
        assert!(with("*"));
        assert!(!with("W/\"10-abd\""));
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }
}
