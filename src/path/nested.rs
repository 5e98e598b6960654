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
//!
//! Unicode compatibility normalisation (NFKC, NFKD) is one more decoding an
//! upstream may apply: it turns `%EF%BC%8E%EF%BC%8E` (`．．`, U+FF0E) into
//! `..` (PX-36). So a segment, raw or at any decoding, may hold no character
//! whose compatibility decomposition has a `.`, `/`, `\` or `%` in it (the
//! last would be read as an escape after folding: `％２ｅ` is `%2e`).

use icu_normalizer::DecomposingNormalizerBorrowed;

use super::error::PathError;

/// Decodings examined per segment; anything still decodable below that is
/// refused rather than judged.
const MAX_DEPTH: usize = 4;

/// Refuses `raw` (the request path as received) if a segment, decoded once
/// or more, is a dot segment or holds a separator, NUL, a control character
/// or an overlong UTF-8 form; or if a segment, raw or decoded, holds a
/// compatibility form of `.`, `/`, `\` or `%`.
pub fn check(raw: &str) -> Result<(), PathError> {
    for segment in raw.split('/') {
        // Tomcat and friends read `..;x` as `..`: refused even undecoded.
        if is_dot_segment(segment.as_bytes(), true) {
            return Err(PathError::NestedEncoding);
        }
        if segment.contains('%') || !segment.is_ascii() {
            check_segment(segment.as_bytes())?;
        }
    }
    Ok(())
}

fn check_segment(raw: &[u8]) -> Result<(), PathError> {
    if has_compatibility_form(raw) {
        return Err(PathError::CompatibilityForm);
    }
    let mut layer = raw.to_vec();
    for depth in 1..=MAX_DEPTH {
        let Some(decoded) = decode_once(&layer) else {
            return Ok(());
        };
        if is_refused(&decoded, depth) {
            return Err(PathError::NestedEncoding);
        }
        if has_compatibility_form(&decoded) {
            return Err(PathError::CompatibilityForm);
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

/// Whether `bytes` hold a character that NFKC or NFKD would fold into one
/// with a `.`, `/`, `\` or `%`: the fullwidth and small forms (U+FF0E,
/// U+FF0F, U+FF3C, U+FF05, U+FE52, U+FE68, U+FE6A), the leaders U+2024 to
/// U+2026, and the few symbols that spell one out (`⒈` is `1.`, `℅` is
/// `c/o`). Judged one character at a time, which is exact here: composition
/// never produces an ASCII character, so every one of these in a normalised
/// string came from one character's decomposition. The table is Unicode's
/// own (`UnicodeData.txt` decomposition mappings, as ICU4X compiles them
/// into `icu_normalizer`), not a hand-written list; U+2215 DIVISION SLASH
/// and U+2044 FRACTION SLASH have none, so they pass.
fn has_compatibility_form(bytes: &[u8]) -> bool {
    if bytes.is_ascii() {
        return false;
    }
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    // Invalid UTF-8 becomes U+FFFD here, which folds to nothing refused;
    // overlong forms are judged by `has_overlong_utf8`.
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_ascii())
        .any(|c| folds_to_refused(&nfkd, c))
}

fn folds_to_refused(nfkd: &DecomposingNormalizerBorrowed<'_>, c: char) -> bool {
    nfkd.normalize_iter(std::iter::once(c))
        .any(|d| matches!(d, '.' | '/' | '\\' | '%'))
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
    fn px36_compatibility_forms_of_dots_and_separators_are_refused_raw_or_encoded() {
        for entry in [
            "\u{FF0E}\u{FF0E}",
            "%EF%BC%8E%EF%BC%8E",
            "%ef%bc%8e%ef%bc%8e",
            "%25ef%25bc%258e%25ef%25bc%258e",
            "%uFF0E%uFF0E",
            "a%EF%BC%8Fb",
            "a\u{FF3C}b",
            "%EF%BC%BC",
            "\u{2024}\u{2024}",
            "%E2%80%A5",
            "\u{FE52}\u{FE52}",
            "a%EF%B9%A8b",
            "%EF%BC%85%EF%BC%92%EF%BD%85",
            "\u{2488}",
        ] {
            let path = format!("/api/orders/{entry}/admin");
            assert_eq!(check(&path), Err(PathError::CompatibilityForm), "{path}");
        }
    }

    #[test]
    fn px36_the_refused_characters_are_exactly_those_nfkd_folds_into_a_dot_or_separator() {
        let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
        let refused: Vec<u32> = ('\u{80}'..=char::MAX)
            .filter(|c| folds_to_refused(&nfkd, *c))
            .map(u32::from)
            .collect();
        // The whole list in the tables `icu_normalizer` ships: the leaders and ellipses, the account and
        // care-of symbols, the digit-full-stop symbols, the small, vertical
        // and fullwidth forms.
        #[rustfmt::skip]
        let expected = [
            0x2024, 0x2025, 0x2026, 0x2100, 0x2101, 0x2105, 0x2106,
            0x2488, 0x2489, 0x248A, 0x248B, 0x248C, 0x248D, 0x248E, 0x248F, 0x2490,
            0x2491, 0x2492, 0x2493, 0x2494, 0x2495, 0x2496, 0x2497, 0x2498, 0x2499,
            0x249A, 0x249B, 0x33C2, 0x33C7, 0x33D8, 0xFE19, 0xFE30, 0xFE52, 0xFE68,
            0xFE6A, 0xFF05, 0xFF0E, 0xFF0F, 0xFF3C, 0x1F100,
        ];
        assert_eq!(refused, expected);
        // Look-alikes without a compatibility mapping stay what they are.
        for unmapped in [0x2215, 0x2044, 0x29F5, 0x3002, 0xFF61] {
            assert!(!refused.contains(&unmapped), "U+{unmapped:04X}");
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
            "/api/orders/café",
            "/api/orders/%E2%88%95",
            "/api/orders/%EF%BC%A1",
            "/api/orders/a%20b",
            "/api/orders/v1.2/x..y/.hidden",
            "/api/orders/a;b=1",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }
}
