//! The `cookie` section: the session cookie's name, its `SameSite`, and the
//! key ring that seals it. Everything else about the cookie is fixed
//! (`HttpOnly`, `Path=/`, and over https `Secure` and the `__Host-` prefix,
//! so no `Domain`): see `posture.rs`.

use std::collections::HashSet;

use base64::Engine;
use serde_json::Value;

use super::node::{from_text, Cursor, Each, Fields, FromNode, Reported};
use crate::secret::Secret;

/// Why `cookie.domain` is refused.
pub(super) const NO_COOKIE_DOMAIN: &str =
    "not supported: cloakroom's cookies are host-only (the __Host- prefix \
     forbids Domain), so a sibling subdomain can neither read nor set them (RFC 10017 §6.1.3.2)";

/// Why `cookie.same_site: none` is refused.
pub(super) const SAME_SITE_NONE: &str =
    "every cross-site request would carry the session (RFC 10017 §6.1.3.2, §6.1.3.3.1)";

#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// The base name; `__Host-` is prepended when `public_url` is https.
    pub name: String,
    /// The key ring: the first key seals, every key unseals.
    pub keys: Vec<CookieKey>,
    /// The session cookie's `SameSite`; the pre-auth cookie is always `Lax`.
    pub same_site: SameSite,
    /// Why `same_site` is `lax`: required with it (RFC 10017 §6.1.3.2 asks
    /// for a motivation to relax the cookie).
    pub same_site_reason: Option<String>,
    /// Over https, name the cookies `__Host-Http-<name>` (RFC 10017
    /// §6.1.3.2): a browser that knows the prefix lets only an HTTP
    /// response set them, never `document.cookie`. Cookies under the
    /// other prefix are still read, so switching logs nobody out.
    pub host_http_prefix: bool,
}

/// `cookie.same_site`. `None` is not offered: a cross-site request would
/// carry the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
}

#[derive(Debug, Clone)]
pub struct CookieKey {
    pub id: String,
    pub secret: Secret<Vec<u8>>,
}

// === impl CookieConfig ===

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "cloakroom".into(),
            keys: Vec::new(),
            same_site: SameSite::Strict,
            same_site_reason: None,
            host_http_prefix: false,
        }
    }
}

impl FromNode for CookieConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let name = f.or::<String>("name", "cloakroom".into(), at);
        let keys = f.or::<Each<CookieKey>>("keys", Each(Vec::new()), at);
        let same_site = f.or("same_site", SameSite::Strict, at);
        let same_site_reason = f.optional::<String>("same_site_reason", at);
        let host_http_prefix = f.or("host_http_prefix", false, at);
        if f.has("domain") {
            // Named, not just "unknown key": someone meant to share the cookie.
            at.error_at("domain", NO_COOKIE_DOMAIN);
            f.optional::<Value>("domain", at);
        }
        f.finish(at);
        if let Some(name) = &name {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !token {
                at.error_at("name", "use letters, digits, '-', '_' or '.' only");
            }
            if name.starts_with("__") {
                at.error_at(
                    "name",
                    "leave out the __Host- prefix; it is added for https (see host_http_prefix)",
                );
            }
        }
        if let Some(keys) = &keys {
            let mut ids = HashSet::new();
            for (i, key) in keys.parsed() {
                if !ids.insert(key.id.as_str()) {
                    at.error_at(&format!("keys[{i}].id"), "duplicate key id");
                }
            }
        }
        if same_site_reason.as_ref().is_some_and(|r| r.trim().is_empty()) {
            at.error_at("same_site_reason", "say why, or leave the key out");
        }
        Ok(CookieConfig {
            name: name.ok_or(Reported)?,
            keys: keys.and_then(Each::complete).ok_or(Reported)?,
            same_site: same_site.ok_or(Reported)?,
            same_site_reason,
            host_http_prefix: host_http_prefix.ok_or(Reported)?,
        })
    }
}

impl FromNode for CookieKey {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let id = f.required::<String>("id", at);
        let secret = f.required::<KeyMaterial>("secret", at);
        f.finish(at);
        if id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 16 || !id.is_ascii())
        {
            at.error_at("id", "must be 1 to 16 ASCII characters");
        }
        Ok(CookieKey {
            id: id.ok_or(Reported)?,
            secret: secret.ok_or(Reported)?.0,
        })
    }
}

/// A 256-bit key written in base64 (standard or URL-safe, padding optional).
struct KeyMaterial(Secret<Vec<u8>>);

from_text!(KeyMaterial, |text| {
    let bytes = decode_base64(text).ok_or("not base64 (generate one with `cloakroom keygen`)")?;
    if bytes.len() != 32 {
        return Err(format!(
            "must decode to 32 bytes (a 256-bit key), got {} (generate one with `cloakroom keygen`)",
            bytes.len()
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err("must not be all zeros".into());
    }
    Ok(KeyMaterial(Secret::new(bytes)))
});

from_text!(SameSite, |text| match text {
    "strict" => Ok(SameSite::Strict),
    "lax" => Ok(SameSite::Lax),
    "none" => Err(format!("none is never allowed: {}", SAME_SITE_NONE)),
    _ => Err(format!("{text:?} is not one of strict, lax")),
});

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
        .iter()
        .find_map(|e| e.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn weak_or_malformed_keys_and_plain_http_are_refused() {
        let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let got = errors(&format!(
            "public_url: http://app.example.com
cookie: {{keys: [{{id: a, secret: c2hvcnQ}}, {{id: b, secret: {zeros}}}, {{id: c, secret: '${{KEY}}'}}, {{id: c, secret: '${{KEY}}'}}]}}
routes: [{{path: /, upstream: 'http://a', auth: none}}]"
        ));
        assert_eq!(
            got,
            [
                "public_url: must be https (plain http is allowed only for localhost development): the session cookie must be Secure (RFC 10017 §6.1.3.2)",
                "cookie.keys[0].secret: must decode to 32 bytes (a 256-bit key), got 5 (generate one with `cloakroom keygen`)",
                "cookie.keys[1].secret: must not be all zeros",
                "cookie.keys[3].id: duplicate key id",
            ]
        );
    }
}
