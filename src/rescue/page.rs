//! The minimal HTML page a person sees when a login fails.
//!
//! Nothing from the request or the IdP is reflected (threat-model T20,
//! LG-11); the page names the stable code and the request id, and offers
//! one action.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::Code;

/// An error page with a "Sign in again" link that starts a new login.
pub(super) fn render(status: StatusCode, code: Code, request_id: &str) -> Response<Body> {
    let text = match code {
        Code::LoginExpired => "The sign-in took too long and has expired.",
        Code::IdpUnavailable => "The sign-in service is not reachable right now.",
        Code::IdpBadResponse => "The sign-in service gave an answer that cannot be used.",
        Code::SessionStoreUnavailable => "Sign-in is not available right now.",
        Code::TooManyRequests => "Too many sign-ins from this address: please wait a minute.",
        _ => "The sign-in could not be completed.",
    };
    let id: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Sign-in problem</title>\
<p>{text}</p><p><a href=\"/auth/login\">Sign in again</a></p>\
<p><small>code: {code} · request: {id}</small></p></html>",
        code = code.as_str()
    );
    let mut response = Response::new(body::full(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
