//! What a person sees when a login fails: cloakroom's own page, or a
//! redirect to the SPA's (`errors.login_page`).
//!
//! Nothing from the request or the IdP is reflected (threat-model T20,
//! LG-11); the page names the stable code and the request id, and offers
//! one action. Its only style is [`STYLE`], allowed by its hash in the
//! CSP every answer of ours carries ([`crate::security_headers::CSP`]): no
//! external file, no inline `style` attribute, no script.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::LoginPage;
use crate::error::Code;

/// The page's stylesheet: light and dark, after the reader's setting. Its
/// SHA-256 is in the CSP; a test keeps the two in step.
pub(crate) const STYLE: &str = ":root{color-scheme:light dark;--bg:#f4f6f9;--card:#fff;--text:#1b2330;\
--muted:#5b6675;--line:#dde2ea;--accent:#2457d6;--on-accent:#fff}\
@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#181c23;--text:#e6e9ef;\
--muted:#9aa4b2;--line:#2a303a;--accent:#7aa2ff;--on-accent:#0f1217}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--text);\
font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
main{width:min(28rem,calc(100% - 2rem));padding:2rem;background:var(--card);\
border:1px solid var(--line);border-radius:12px;box-shadow:0 2px 8px rgb(0 0 0/.08)}\
h1{margin:0 0 .5rem;font-size:1.25rem;line-height:1.3}\
p{margin:0 0 1.5rem}\
a{display:inline-block;padding:.6rem 1.25rem;border-radius:8px;background:var(--accent);\
color:var(--on-accent);font-weight:600;text-decoration:none}\
a:hover{filter:brightness(1.08)}\
a:focus-visible{outline:3px solid var(--accent);outline-offset:3px}\
.ref{margin:1.5rem 0 0;padding-top:1rem;border-top:1px solid var(--line);color:var(--muted);\
font:.85rem/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}";

/// Cloakroom's error page, with a "Try again" link that starts a new login.
pub(super) fn render(status: StatusCode, code: Code, request_id: &str) -> Response<Body> {
    let text = match code {
        Code::LoginExpired => "The sign-in took too long and has expired.",
        Code::IdpUnavailable => "The sign-in service is not reachable right now.",
        Code::IdpBadResponse => "The sign-in service gave an answer that cannot be used.",
        Code::SessionStoreUnavailable => "Sign-in is not available right now.",
        Code::TooManyRequests => "Too many sign-ins from this address: please wait a minute.",
        _ => "The sign-in could not be completed.",
    };
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>Sign-in problem</title><style>{STYLE}</style>\
<main><h1>We could not sign you in</h1><p>{text}</p>\
<a href=\"/auth/login\">Try again</a>\
<p class=ref>code: {code}<br>request: {id}</p></main></html>",
        code = code.as_str(),
        id = printable(request_id),
    );
    let mut response = Response::new(body::full(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A 302 to the SPA's page for a failed login, with the stable code and
/// the request id in its query; no cache keeps it, no Referer leaks from
/// it (T19). The code rides in the extensions, so the failure is counted.
pub(super) fn redirect(page: &LoginPage, code: Code, request_id: &str) -> Response<Body> {
    let location = page.for_failure(code.as_str(), &printable(request_id));
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    // The page is a checked local path and the query is form-encoded.
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response.extensions_mut().insert(code);
    response
}

/// The request id as shown: a trusted proxy's id may be any text, so only
/// letters, digits and `-` are kept (nothing to escape, nothing to inject).
fn printable(request_id: &str) -> String {
    request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use sha2::Digest;

    use super::*;

    #[test]
    fn px26_the_csp_allows_exactly_this_pages_style() {
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
        let allowed = format!("style-src 'sha256-{hash}'");
        assert!(
            crate::security_headers::CSP.contains(&allowed),
            "security_headers::CSP must carry {allowed}"
        );
    }
}
