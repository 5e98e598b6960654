//! Nested percent-encoding on routes that carry a token (PX-32).
//!
//! Normalisation decodes a path once and refuses encoded `/`, `\`, `.` and
//! NUL. An encoded `%` survives it (`%252e` stays `%252E`), and an upstream,
//! or a gateway behind cloakroom, that decodes twice turns
//! `/api/orders/%252e%252e/admin` into `/api/admin`, with the user's token.
//! So on such routes each segment is decoded again and again (at most
//! `MAX_DEPTH` times) and refused when any decoding yields what a
//! single decoding may not: a separator, NUL, a dot segment.
//!
//! A plain `%25` passes: `100%25` is `100%` and decodes no further;
//! `%2541` is `%41`, then `A`. Only an escape whose decoding reaches one of
//! the refused forms is a 400.

use super::PathError;

/// Decodings examined per segment; anything still decodable below that is
/// refused rather than judged.
const MAX_DEPTH: usize = 4;

/// Refuses `raw` (the request path as received) if a segment, decoded once
/// or more, is a dot segment or holds a separator, NUL, a control character
/// or an overlong UTF-8 form.
pub fn check(raw: &str) -> Result<(), PathError> {
    for segment in raw.split('/') {
        // Tomcat and friends read `..;x` as `..`: refused even undecoded.
        if is_dot_segment(segment.as_bytes(), true) {
            return Err(PathError::NestedEncoding);
        }
        if segment.contains('%') {
            check_segment(segment.as_bytes())?;
        }
    }
    Ok(())
}

fn check_segment(raw: &[u8]) -> Result<(), PathError> {
    let mut layer = raw.to_vec();
    for depth in 1..=MAX_DEPTH {
        let Some(decoded) = decode_once(&layer) else {
            return Ok(());
        };
        if is_refused(&decoded, depth) {
            return Err(PathError::NestedEncoding);
        }
        layer = decoded;
    }
    match decode_once(&layer) {
        Some(_) => Err(PathError::NestedEncoding),
        None => Ok(()),
    }
}

/// What a segment may not become at `depth` decodings.
fn is_refused(segment: &[u8], depth: usize) -> bool {
    let separator = segment.iter().any(|b| matches!(b, b'/' | b'\\' | 0));
    // From the second decoding on, these came from an encoded `%`: no
    // legitimate client writes a query mark or a newline that way.
    let smuggled = depth >= 2
        && segment
            .iter()
            .any(|b| matches!(b, b'?' | b'#') || b.is_ascii_control());
    separator || smuggled || is_dot_segment(segment, false) || has_overlong_utf8(segment)
}

/// `.` or `..`, or (with `params_only`) only their `;`-parameter forms
/// such as `..;jsessionid=1`, which normalisation leaves alone.
fn is_dot_segment(segment: &[u8], params_only: bool) -> bool {
    let (name, has_params) = match segment.iter().position(|b| *b == b';') {
        Some(i) => (&segment[..i], true),
        None => (segment, false),
    };
    (name == b"." || name == b"..") && (has_params || !params_only)
}

/// Overlong UTF-8 (`C0 AE` for `.`), which lenient decoders read as ASCII.
fn has_overlong_utf8(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| {
        matches!(w[0], 0xC0 | 0xC1)
            || (w[0] == 0xE0 && (0x80..0xA0).contains(&w[1]))
            || (w[0] == 0xF0 && (0x80..0x90).contains(&w[1]))
    }) || bytes.last().is_some_and(|b| matches!(b, 0xC0 | 0xC1))
}

/// One round of decoding, `%XX` and IIS's `%uXXXX`; `None` if nothing in
/// `bytes` decodes. Malformed escapes stay as they are.
fn decode_once(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |s: &[u8]| -> Option<u32> {
        let text = std::str::from_utf8(s).ok()?;
        u32::from_str_radix(text, 16).ok()
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = bytes.get(i + 1..i + 3).and_then(hex) {
                out.push(v as u8);
                changed = true;
                i += 3;
                continue;
            }
            let wide = bytes.get(i + 1).is_some_and(|b| b.eq_ignore_ascii_case(&b'u'));
            if let Some(v) = wide.then(|| bytes.get(i + 2..i + 6).and_then(hex)).flatten() {
                let c = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                changed = true;
                i += 6;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample; tests/proxy.rs runs the whole corpus against cloakroom.
    const SAMPLE: &[&str] = &[
        "%252e%252E",
        "%2525252e%2525252e",
        "..%252f",
        "%255C",
        "%2500",
        "%25%32%65%25%32%65",
        "..%253bx",
        "..;",
        "%25c0%25ae",
        "%25u002e%25u002e",
        "%250a",
        "%252525252525252e",
    ];

    #[test]
    fn px32_every_nested_encoding_of_a_dot_segment_or_separator_is_refused() {
        for entry in SAMPLE {
            let path = format!("/api/orders/{entry}/admin");
            assert_eq!(check(&path), Err(PathError::NestedEncoding), "{path}");
        }
    }

    #[test]
    fn px32_plain_percent_and_harmless_escapes_pass() {
        for path in [
            "/api/orders/100%25",
            "/api/orders/50%25off",
            "/api/orders/%25",
            "/api/orders/a%2541",
            "/api/orders/file%252ejson",
            "/api/orders/caf%C3%A9",
            "/api/orders/a%20b",
            "/api/orders/v1.2/x..y/.hidden",
            "/api/orders/a;b=1",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }
}
