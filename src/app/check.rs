//! The forward-auth check endpoint (`forward_auth.path`, `/auth/check` by
//! default): an ingress in front of cloakroom asks it whether a request may
//! pass, and copies the answer's headers (`Authorization`, the route's
//! `claim_headers`) onto the request it forwards itself.
//!
//! The request it asks about comes from the ingress's headers, believed
//! only from a trusted proxy: `X-Original-Method`/`X-Original-URI` (nginx,
//! ingress-nginx) or `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik).
//! Without them the request's own method is used and, with
//! `forward_auth.uri_in_path`, its URI is the path below the endpoint
//! (`/auth/check/api/x?q` asks about `/api/x?q`), which is what Envoy's
//! `ext_authz` sends with `path_prefix`.
//!
//! The answer carries the route's token, so it is for the ingress alone: a
//! question about cloakroom's own `/auth/` endpoints (which the ingress
//! routes to cloakroom unchecked, and where a browser could read the
//! answer) is a 404, and only `forward_auth` routes are ever checked.

use http::header::HeaderName;
use http::{HeaderMap, Method, Request, Uri};

use crate::body::{self, Body};
use crate::config::ForwardAuthConfig;
use crate::error::Refusal;
use crate::path::normalize_path;

static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The request the ingress asks about.
#[derive(Debug)]
pub(super) struct Original {
    /// The check request, now with the original method and URI, and no body.
    pub request: Request<Body>,
    /// The original path, normalised.
    pub path: String,
}

/// Whether `path` (normalised) is the check endpoint `check` or below it.
pub(super) fn is_check(path: &str, check: &str) -> bool {
    path.strip_prefix(check)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The request the ingress asks about, from `request` to the check
/// endpoint `check` (whose normalised path is `path`).
pub(super) fn original(
    request: Request<Body>,
    path: &str,
    check: &ForwardAuthConfig,
    trusted: bool,
) -> Result<Original, Refusal> {
    let (mut parts, _body) = request.into_parts();
    let headers = &parts.headers;
    let told = [
        &X_ORIGINAL_METHOD,
        &X_ORIGINAL_URI,
        &X_FORWARDED_METHOD,
        &X_FORWARDED_URI,
    ]
    .into_iter()
    .any(|name| headers.contains_key(name));
    if told && !trusted {
        // Anyone else could name any request (PX-08).
        return Err(Refusal::BadRequest("original request named by an untrusted peer"));
    }
    let uri = match told_by(headers, &X_ORIGINAL_URI, &X_FORWARDED_URI)? {
        Some(told) => told
            .parse::<Uri>()
            .ok()
            .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
            .ok_or(Refusal::BadRequest("original URI"))?,
        None => below(&parts.uri, path, check)?,
    };
    let method = match told_by(headers, &X_ORIGINAL_METHOD, &X_FORWARDED_METHOD)? {
        Some(told) => {
            Method::from_bytes(told.as_bytes()).map_err(|_| Refusal::BadRequest("original method"))?
        }
        None => parts.method.clone(),
    };
    let original_path = normalize_path(uri.path()).map_err(|e| {
        tracing::debug!(error = %e, "refused original path");
        Refusal::BadRequest("original path")
    })?;
    if original_path == "/auth" || original_path.starts_with("/auth/") {
        // The ingress sends these to cloakroom unchecked; an answer about
        // them would go to the browser, token included.
        return Err(Refusal::NotFound);
    }
    parts.method = method;
    parts.uri = uri;
    Ok(Original {
        request: Request::from_parts(parts, body::empty()),
        path: original_path,
    })
}

/// What nginx's header `nginx` says, else Traefik's `traefik`.
fn told_by<'h>(
    headers: &'h HeaderMap,
    nginx: &HeaderName,
    traefik: &HeaderName,
) -> Result<Option<&'h str>, Refusal> {
    match one(headers, nginx)? {
        Some(value) => Ok(Some(value)),
        None => one(headers, traefik),
    }
}

/// The one value of `name`, as text; two values are ambiguous.
fn one<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::BadRequest("original request header")),
        (Some(_), Some(_)) => Err(Refusal::BadRequest("original request header repeated")),
    }
}

/// The URI below the check endpoint: `/auth/check/api/x?q` → `/api/x?q`.
fn below(uri: &Uri, path: &str, check: &ForwardAuthConfig) -> Result<Uri, Refusal> {
    let rest = &path[check.path.len()..];
    if rest.is_empty() {
        return Err(Refusal::BadRequest("no original request named"));
    }
    if !check.uri_in_path {
        return Err(Refusal::NotFound);
    }
    let target = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    target.parse().map_err(|_| Refusal::BadRequest("original URI"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(uri: &str, headers: &[(&str, &str)], trusted: bool) -> Result<(Method, String, String), Refusal> {
        let check = ForwardAuthConfig {
            uri_in_path: true,
            ..Default::default()
        };
        ask_at(&check, uri, headers, trusted)
    }

    fn ask_at(
        check: &ForwardAuthConfig,
        uri: &str,
        headers: &[(&str, &str)],
        trusted: bool,
    ) -> Result<(Method, String, String), Refusal> {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body::empty()).unwrap();
        let path = normalize_path(request.uri().path()).unwrap();
        let got = original(request, &path, check, trusted)?;
        let uri = got.request.uri().to_string();
        Ok((got.request.method().clone(), uri, got.path))
    }

    #[test]
    fn the_original_request_comes_from_a_trusted_ingress_or_the_path_below() {
        let nginx = [
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/a/../b?x=1"),
        ];
        assert_eq!(
            ask("/auth/check", &nginx, true).unwrap(),
            (Method::POST, "/api/a/../b?x=1".into(), "/api/b".into())
        );
        let traefik = [("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/api/c")];
        assert_eq!(
            ask("/auth/check", &traefik, true).unwrap(),
            (Method::DELETE, "/api/c".into(), "/api/c".into())
        );
        assert_eq!(
            ask("/auth/check/api/d?y=2", &[], false).unwrap(),
            (Method::GET, "/api/d?y=2".into(), "/api/d".into())
        );
    }

    #[test]
    fn px08_an_untrusted_peer_cannot_name_the_original_request() {
        for header in [
            "x-original-uri",
            "x-forwarded-uri",
            "x-original-method",
            "x-forwarded-method",
        ] {
            let got = ask("/auth/check/api/d", &[(header, "/api/e")], false);
            assert!(matches!(got, Err(Refusal::BadRequest(_))), "{header}: {got:?}");
        }
    }

    #[test]
    fn fa03_a_question_about_cloakrooms_own_endpoints_is_not_answered() {
        for uri in ["/auth/check", "/auth/user", "/auth", "/x/../auth/check"] {
            let got = ask("/auth/check", &[("x-original-uri", uri)], true);
            assert!(matches!(got, Err(Refusal::NotFound)), "{uri}: {got:?}");
        }
        assert!(matches!(
            ask("/auth/check/auth/user", &[], false),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            ask("/auth/check", &[], true),
            Err(Refusal::BadRequest(_))
        ));
        let twice = [("x-original-uri", "/api/a"), ("x-original-uri", "/api/b")];
        assert!(matches!(
            ask("/auth/check", &twice, true),
            Err(Refusal::BadRequest(_))
        ));
        let absolute = [("x-original-uri", "http://evil.example/api/a")];
        assert!(matches!(
            ask("/auth/check", &absolute, true),
            Err(Refusal::BadRequest(_))
        ));
    }
}
