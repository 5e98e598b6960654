//! A local path of this origin, parsed strictly rather than
//! pattern-matched (threat-model T17, LG-12): the value must be an absolute
//! path that, resolved against a placeholder origin, stays on that origin
//! and comes back unchanged in meaning. `return_to` and
//! `errors.login_page` are both held to it.

use url::Url;

/// The longest local path kept (a `return_to` rides in the pre-auth
/// cookie, which has room for a few kilobytes).
pub const MAX_LEN: usize = 1024;

/// `raw` normalised, if it is a local path of this origin.
pub fn local_path(raw: &str) -> Option<String> {
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
