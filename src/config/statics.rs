//! `routes[].static`: serve the built SPA from a directory instead of
//! proxying to an upstream, so production needs no second web server.
//!
//! Read here, served by [`crate::static_files`]. The directory itself is
//! opened at start (`cloakroom check` too), not while the file is parsed:
//! `Config::load` reads nothing but its `Env`.

use std::path::PathBuf;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde_json::Value;

use super::node::{kind, Cursor, Fields, FromNode, Reported};

/// Headers every static response carries unless the route overrides them.
/// The CSP allows the SPA's own scripts, styles, images and API calls, and
/// nothing inline or from elsewhere.
pub const DEFAULT_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

/// A directory served as a static site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    /// The directory; relative paths are taken from the working directory.
    pub dir: PathBuf,
    /// The file served for a directory and as the history fallback.
    pub index: String,
    /// SPA history fallback: a page path with no file answers with `index`.
    pub fallback: bool,
    /// Serve `<file>.br` / `<file>.gz` when present and accepted.
    pub precompressed: bool,
    /// Response headers: [`DEFAULT_HEADERS`] with the route's own over them;
    /// a header given as `""` is left out.
    pub headers: HeaderMap,
}

impl FromNode for StaticConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let dir = f.required::<String>("dir", at);
        let index = f.or::<String>("index", "index.html".into(), at);
        let fallback = f.or("fallback", true, at);
        let precompressed = f.or("precompressed", true, at);
        let headers = f.or("headers", Headers(HeaderMap::new()), at);
        f.finish(at);
        if dir.as_ref().is_some_and(String::is_empty) {
            at.error_at("dir", "must not be empty");
        }
        if let Some(index) = &index {
            if index.is_empty() || index.contains(['/', '\\']) || index.starts_with('.') {
                at.error_at("index", "must be a plain file name, like index.html");
            }
        }
        let mut merged = HeaderMap::new();
        for (name, value) in DEFAULT_HEADERS {
            merged.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        for (name, value) in headers.ok_or(Reported)?.0 {
            if let Some(name) = name {
                if value.is_empty() {
                    merged.remove(&name);
                } else {
                    merged.insert(name, value);
                }
            }
        }
        Ok(StaticConfig {
            dir: PathBuf::from(dir.ok_or(Reported)?),
            index: index.ok_or(Reported)?,
            fallback: fallback.ok_or(Reported)?,
            precompressed: precompressed.ok_or(Reported)?,
            headers: merged,
        })
    }
}

/// `headers: {Name: value}`, each checked as an HTTP header.
struct Headers(HeaderMap);

impl FromNode for Headers {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let Value::Object(map) = node else {
            return Err(at.fail(format!(
                "expected a mapping of header: value, found {}",
                kind(node)
            )));
        };
        let mut headers = HeaderMap::new();
        for (name, value) in map {
            let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
                at.error_at(name, "not a valid header name");
                continue;
            };
            // Headers that describe the body or its caching are cloakroom's own.
            if RESERVED.contains(&parsed.as_str()) {
                at.error_at(name, "set by cloakroom for each file; cannot be configured");
                continue;
            }
            let Some(text) = at.nested(name, |at| at.read::<String>(value)) else {
                continue;
            };
            match HeaderValue::from_str(&text) {
                Ok(v) => {
                    headers.insert(parsed, v);
                }
                Err(_) => at.error_at(name, "not a valid header value"),
            }
        }
        Ok(Headers(headers))
    }
}

const RESERVED: &[&str] = &[
    "cache-control",
    "content-type",
    "content-length",
    "content-encoding",
    "content-range",
    "etag",
    "last-modified",
    "vary",
    "set-cookie",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::ConfigError;

    fn read(yaml: &str) -> (Option<StaticConfig>, Vec<ConfigError>) {
        let node: Value = serde_saphyr::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        let mut at = Cursor::root(&mut errors);
        let config = at.read::<StaticConfig>(&node);
        (config, errors)
    }

    #[test]
    fn defaults_and_header_overrides() {
        let (config, errors) = read(
            "{dir: dist, headers: {Content-Security-Policy: \"default-src 'self'\", Referrer-Policy: '', X-Extra: extra}}",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let c = config.unwrap();
        assert_eq!(c.dir, PathBuf::from("dist"));
        assert_eq!(c.index, "index.html");
        assert!(c.fallback && c.precompressed);
        assert_eq!(c.headers["content-security-policy"], "default-src 'self'");
        assert_eq!(c.headers["x-content-type-options"], "nosniff");
        assert_eq!(c.headers["x-extra"], "extra");
        assert!(c.headers.get("referrer-policy").is_none());
    }

    #[test]
    fn mistakes_name_their_key() {
        let (_, errors) =
            read("{index: ../x.html, headers: {'bad name': x, Cache-Control: x, X-Ok: \"a\\nb\"}}");
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "dir: required key is missing",
                "headers.bad name: not a valid header name",
                "headers.Cache-Control: set by cloakroom for each file; cannot be configured",
                "headers.X-Ok: not a valid header value",
                "index: must be a plain file name, like index.html",
            ]
        );
    }
}

#[cfg(test)]
mod route_tests {
    use crate::config::{Config, MapEnv, Target};

    fn errors(routes: &str) -> Vec<String> {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes:
{routes}"
        );
        match Config::load(&yaml, &MapEnv::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_static_route_serves_files_with_get_and_head_only() {
        let yaml = "public_url: https://app.example.com
routes: [{path: /, static: {dir: dist}, auth: none}]";
        let c = Config::load(yaml, &MapEnv::default()).unwrap();
        let route = &c.routes[0];
        assert!(matches!(&route.target, Target::Static(s) if s.dir.as_os_str() == "dist"));
        assert_eq!(
            route.methods.as_deref(),
            Some(&[http::Method::GET, http::Method::HEAD][..])
        );
        assert!(route.upstream().is_none());
    }

    #[test]
    fn static_route_mistakes_name_their_key() {
        assert_eq!(
            errors(
                "  - {path: /a, static: {dir: d}, upstream: 'http://a', auth: none}
  - {path: /b, static: {dir: d}, auth: optional, token: user, websocket: true, methods: [GET, POST]}
  - {path: /c}
  - {path: /d, static: {dir: d}, auth: none, csrf: fetch-metadata}
  - {path: /e, upstream: 'http://a', csrf: sometimes}"
            ),
            [
                "routes[0].upstream: set either upstream or static, not both",
                "routes[1].auth: a static route is either required or none",
                "routes[1].token: a static route has no upstream to send a token to",
                "routes[1].websocket: a static route has no upstream to upgrade to",
                "routes[1].methods: a static route answers GET and HEAD only",
                "routes[2].upstream: required key is missing",
                "routes[3].csrf: only meaningful on a route that reads the session",
                "routes[4].csrf: \"sometimes\" is not one of header, fetch-metadata",
            ]
        );
    }

    #[test]
    fn a_signed_in_static_route_is_allowed_with_login_redirect() {
        assert!(errors("  - {path: /, static: {dir: d}, auth: required, login_redirect: true}").is_empty());
    }
}
