//! Request-path normalisation, and the stricter rules of token routes.
//!
//! A request is matched on its **normalised** path (RFC 3986 §6.2.2), and the
//! upstream receives exactly that normalised path: what was authorised is what
//! is forwarded (threat-model T34, PX-02). Encodings that different servers
//! decode differently (`%2F`, `%5C`, `%2E`, `%00`) are refused outright, and
//! on routes that send a token, so are their nested encodings (`%252e`)
//! and compatibility forms (`．`, U+FF0E) of the same characters
//! ([`nested`]).

mod error;
pub mod local;
pub mod nested;

pub use self::error::PathError;

/// Normalises an absolute request path.
///
/// - percent-encoded unreserved characters are decoded, other escapes are
///   upper-cased; encoded `/`, `\`, `.` and NUL are refused;
/// - runs of `/` collapse to one (`//admin` is `/admin`);
/// - `.` and `..` segments are resolved, never climbing above `/`;
/// - a trailing `/` is kept.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(raw.to_owned());
    }
    let decoded = decode_unreserved(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether a path is already normal: no escapes, backslashes or control
/// characters, no empty, `.` or `..` segment. The common case, checked in
/// one pass.
fn is_plain(path: &str) -> bool {
    let clean_bytes = path
        .bytes()
        .all(|b| b != b'%' && b != b'\\' && !b.is_ascii_control());
    clean_bytes
        && !(path.contains("//")
            || path.contains("/./")
            || path.contains("/../")
            || path.ends_with("/.")
            || path.ends_with("/.."))
}

/// Decodes `%XX` of unreserved characters and refuses ambiguous escapes.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(PathError::BadEncoding)?;
                match value {
                    b'/' | b'\\' | b'.' | 0 => return Err(PathError::AmbiguousEncoding),
                    v if v.is_ascii_alphanumeric() || b"-_~".contains(&v) => out.push(v),
                    v => out.extend_from_slice(format!("%{v:02X}").as_bytes()),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::BadCharacter),
            b if b.is_ascii_control() => return Err(PathError::BadCharacter),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII was decoded, so UTF-8 input stays UTF-8.
    String::from_utf8(out).map_err(|_| PathError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px02_dot_segments_and_slashes_are_resolved() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/orders/../admin", "/api/admin"),
            ("/api/./orders/", "/api/orders/"),
            ("//admin", "/admin"),
            ("/api//orders///1", "/api/orders/1"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/api/orders/..", "/api/"),
            ("/api/%41%62%7e", "/api/Ab~"),
            ("/api/a%20b%3f", "/api/a%20b%3F"),
            ("/api;jsessionid=1/x", "/api;jsessionid=1/x"),
            ("/ünï/ok", "/ünï/ok"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn px02_ambiguous_encodings_are_refused() {
        for raw in [
            "/api/orders/%2e%2e/admin",
            "/api/orders/..%2Fadmin",
            "/api/%5Cadmin",
            "/api/%00",
            "/api/%2E/x",
        ] {
            assert_eq!(normalize_path(raw), Err(PathError::AmbiguousEncoding), "{raw}");
        }
        assert_eq!(normalize_path("/api\\admin"), Err(PathError::BadCharacter));
        assert_eq!(normalize_path("/api/%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/api/%4"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("api"), Err(PathError::NotAbsolute));
    }
}
