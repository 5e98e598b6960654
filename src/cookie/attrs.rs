//! Cookie names and `Set-Cookie` attributes.
//!
//! Over https: `__Host-` prefix (or `__Host-Http-`, which a browser lets
//! only an HTTP response set, with `cookie.host_http_prefix`; not for the
//! bound cookie, see [`CookieNames::new`]), `Secure`,
//! `Path=/`, no `Domain` (BBA §6.1.3.2). A cookie under the other prefix
//! is still read, so that switching prefixes logs nobody out. The session cookie is `SameSite=Strict` (or `Lax` when
//! `cookie.same_site` says so, with a reason); the pre-auth cookie must be `Lax`, because the IdP's redirect back to the callback is a
//! cross-site navigation. Plain http (localhost development only) drops the
//! prefix and `Secure`, which browsers would refuse there.

use std::time::Duration;

use http::HeaderValue;

use crate::config::{Config, SameSite};

/// The names and attributes of cloakroom's cookies: the session cookie,
/// the pre-auth cookies (one per login in progress), and the bound cookie
/// of a device-bound session.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: String,
    pub login: String,
    pub bound: String,
    /// The session and login cookies' names under the other `__Host-`
    /// prefix (https only): still read, so that a change of
    /// `cookie.host_http_prefix` logs nobody out.
    pub previous_session: Option<String>,
    pub previous_login: Option<String>,
    secure: bool,
    /// The session cookie's `SameSite` value.
    same_site: &'static str,
    /// [`Self::clear_session`]'s value, made once: every answer that may
    /// end a session carries it ready, and cloning it copies no bytes.
    cleared_session: HeaderValue,
}

// === impl CookieNames ===

impl CookieNames {
    pub fn new(config: &Config) -> Self {
        let secure = config.is_https();
        let (prefix, other) = match (secure, config.cookie.host_http_prefix) {
            (false, _) => ("", None),
            (true, true) => ("__Host-Http-", Some("__Host-")),
            (true, false) => ("__Host-", Some("__Host-Http-")),
        };
        let base = &config.cookie.name;
        // The bound cookie stays `__Host-` under either prefix: Chromium
        // refuses a DBSC credential named `__Host-Http-` (its session
        // instructions fail with InvalidCredentialsCookie, so the browser
        // never refreshes it). A script that sets one gains nothing: it
        // opens no session without the device's key.
        let bound_prefix = if secure { "__Host-" } else { "" };
        Self {
            session: format!("{prefix}{base}"),
            login: format!("{prefix}{base}-login"),
            bound: format!("{bound_prefix}{base}-bound"),
            previous_session: other.map(|p| format!("{p}{base}")),
            previous_login: other.map(|p| format!("{p}{base}-login")),
            secure,
            same_site: match config.cookie.same_site {
                SameSite::Strict => "Strict",
                SameSite::Lax => "Lax",
            },
            cleared_session: HeaderValue::from_static(""),
        }
        .with_cleared_session()
    }

    fn with_cleared_session(mut self) -> Self {
        self.cleared_session = self.build(&self.session, "", self.same_site, Some(Duration::ZERO));
        self
    }

    /// The session cookie; no `Max-Age`, so it ends with the browser
    /// session at the latest (server-side timeouts are what count).
    pub fn set_session(&self, value: &str) -> HeaderValue {
        self.build(&self.session, value, self.same_site, None)
    }

    /// The pre-auth cookie `name` (one login's, [`Self::login`] plus a
    /// suffix), living no longer than its transaction.
    pub fn set_login(&self, name: &str, value: &str, max_age: Duration) -> HeaderValue {
        self.build(name, value, "Lax", Some(max_age))
    }

    /// Clears the session cookie with the attributes it was set with (CK-15).
    pub fn clear_session(&self) -> HeaderValue {
        self.cleared_session.clone()
    }

    /// Clears the session cookie under its previous name, once it has
    /// been re-issued under the current one.
    pub fn clear_previous_session(&self) -> Option<HeaderValue> {
        let name = self.previous_session.as_ref()?;
        Some(self.build(name, "", self.same_site, Some(Duration::ZERO)))
    }

    /// The session's cookie in the request: its name and value, under the
    /// current name or else the previous one.
    pub fn find_session<'a>(&'a self, headers: &'a http::HeaderMap) -> Option<(&'a str, &'a str)> {
        std::iter::once(&self.session)
            .chain(&self.previous_session)
            .find_map(|name| Some((name.as_str(), Self::find(headers, name)?)))
    }

    /// The bound cookie of a device-bound session, living `max_age`; with
    /// the session cookie's `SameSite`, as the session instructions say
    /// ([`Self::bound_attributes`]).
    pub fn set_bound(&self, value: &str, max_age: Duration) -> HeaderValue {
        self.build(&self.bound, value, self.same_site, Some(max_age))
    }

    pub fn clear_bound(&self) -> HeaderValue {
        self.build(&self.bound, "", self.same_site, Some(Duration::ZERO))
    }

    /// The bound cookie's attributes as DBSC's session instructions name
    /// them: a browser compares them with the cookie it holds.
    pub fn bound_attributes(&self) -> String {
        let mut attributes = format!("Path=/; HttpOnly; SameSite={}", self.same_site);
        if self.secure {
            attributes.push_str("; Secure");
        }
        attributes
    }

    pub fn clear_login(&self, name: &str) -> HeaderValue {
        self.build(name, "", "Lax", Some(Duration::ZERO))
    }

    fn build(&self, name: &str, value: &str, same_site: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        // Names and values are ours: token characters and base64url only.
        HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))
    }

    /// The first value of cookie `name` in the request, never a merge of
    /// several (CK-04): a sibling domain may toss a second one in.
    pub fn find<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
        Self::pairs(headers).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every cookie of the request as (name, value), in order.
    pub fn pairs(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            // A pair without a name or `=` is nobody's cookie.
            .filter_map(Result::ok)
            .filter_map(|c| Some((c.name_raw()?, c.value_raw()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    fn names(public_url: &str) -> CookieNames {
        let yaml =
            format!("public_url: {public_url}\nroutes: [{{path: /, upstream: 'http://a', auth: none}}]");
        CookieNames::new(&Config::load(&yaml, &MapEnv::default()).unwrap())
    }

    #[test]
    fn ck10_https_cookies_are_host_prefixed_secure_and_strict() {
        let n = names("https://app.example.com");
        assert_eq!(
            n.set_session("v"),
            "__Host-cloakroom=v; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            n.set_login(&n.login, "v", Duration::from_secs(600)),
            "__Host-cloakroom-login=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=600"
        );
        assert_eq!(
            n.clear_session(),
            "__Host-cloakroom=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }

    #[test]
    fn the_host_http_prefix_names_the_session_and_login_cookies_and_the_other_prefix_is_still_read() {
        let yaml = "public_url: https://app.example.com
cookie: {host_http_prefix: true}
routes: [{path: /, upstream: 'http://a', auth: none}]";
        let n = CookieNames::new(&Config::load(yaml, &MapEnv::default()).unwrap());
        assert_eq!(
            n.set_session("v"),
            "__Host-Http-cloakroom=v; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(n.login, "__Host-Http-cloakroom-login");
        // Chromium takes no __Host-Http- cookie as a DBSC credential.
        assert_eq!(
            n.set_bound("v", Duration::from_secs(600)),
            "__Host-cloakroom-bound=v; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=600"
        );
        let mut h = http::HeaderMap::new();
        h.append("cookie", "__Host-cloakroom=before".parse().unwrap());
        assert_eq!(n.find_session(&h), Some(("__Host-cloakroom", "before")));
        h.append("cookie", "__Host-Http-cloakroom=now".parse().unwrap());
        assert_eq!(n.find_session(&h), Some(("__Host-Http-cloakroom", "now")));
        assert_eq!(
            n.clear_previous_session().unwrap(),
            "__Host-cloakroom=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
        // And back: a switch the other way reads the Http- cookie.
        let back = names("https://app.example.com");
        assert_eq!(back.previous_session.as_deref(), Some("__Host-Http-cloakroom"));
        assert_eq!(
            back.bound_attributes(),
            "Path=/; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn localhost_development_drops_prefix_and_secure() {
        let n = names("http://localhost:8080");
        assert_eq!(
            n.set_session("v"),
            "cloakroom=v; Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(n.previous_session, None);
        assert_eq!(n.bound_attributes(), "Path=/; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn a_lax_session_cookie_is_set_and_cleared_lax() {
        let yaml = "public_url: https://app.example.com
cookie: {same_site: lax, same_site_reason: 'links from the portal'}
routes: [{path: /, upstream: 'http://a', auth: none}]";
        let n = CookieNames::new(&Config::load(yaml, &MapEnv::default()).unwrap());
        assert_eq!(
            n.set_session("v"),
            "__Host-cloakroom=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            n.clear_session(),
            "__Host-cloakroom=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0"
        );
    }

    #[test]
    fn ck04_the_first_value_wins_and_values_are_never_merged() {
        let mut h = http::HeaderMap::new();
        h.append(
            "cookie",
            "a=1; cloakroom=first; cloakroom=second".parse().unwrap(),
        );
        h.append("cookie", "cloakroom=third".parse().unwrap());
        assert_eq!(CookieNames::find(&h, "cloakroom"), Some("first"));
        assert_eq!(CookieNames::find(&h, "cloak"), None);
    }
}
