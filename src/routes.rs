//! Path normalisation and longest-prefix route matching.
//!
//! A request is matched on its **normalised** path (RFC 3986 §6.2.2), and the
//! upstream receives exactly that normalised path: what was authorised is what
//! is forwarded (threat-model T34, PX-02). Encodings that different servers
//! decode differently (`%2F`, `%5C`, `%2E`, `%00`) are refused outright.

use std::sync::Arc;

use http::uri::{Authority, Scheme};

use crate::config::{RouteConfig, Target};
use crate::error::BoxError;
use crate::static_files::StaticFiles;

/// Why a request path cannot be normalised; the request gets a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with /")]
    NotAbsolute,
    #[error("encoded '/', '\\', '.' or NUL in path")]
    AmbiguousEncoding,
    #[error("malformed percent-encoding in path")]
    BadEncoding,
    #[error("backslash or control character in path")]
    BadCharacter,
}

/// A configured route, ready to serve.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    pub leaf: Leaf,
}

/// What answers a route's requests once they are authorised.
#[derive(Debug)]
pub enum Leaf {
    /// The upstream's scheme and authority, parsed once.
    Upstream { scheme: Scheme, authority: Authority },
    /// Files from a directory.
    Static(Box<StaticFiles>),
}

/// The route table: longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

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

// === impl Route ===

impl Route {
    /// `https`: whether browsers reach cloakroom over https (static routes
    /// then send HSTS).
    pub fn new(config: RouteConfig, https: bool) -> Result<Self, BoxError> {
        let leaf = match &config.target {
            Target::Upstream(upstream) => {
                let scheme = Scheme::try_from(upstream.scheme())?;
                let host = upstream.host_str().unwrap_or_default();
                let authority = match upstream.port() {
                    Some(port) => Authority::try_from(format!("{host}:{port}"))?,
                    None => Authority::try_from(host)?,
                };
                Leaf::Upstream { scheme, authority }
            }
            Target::Static(files) => Leaf::Static(Box::new(StaticFiles::new(&config, files, https)?)),
        };
        Ok(Self { config, leaf })
    }

    /// Whether `path` (normalised) is inside this route's prefix, on a segment boundary.
    pub fn matches(&self, path: &str) -> bool {
        let prefix = self.config.path.as_str();
        prefix == "/"
            || path == prefix
            || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
    }

    /// The path to request upstream: the upstream's base path, then the
    /// request path (less the route prefix with `strip_prefix`).
    pub fn upstream_path(&self, path: &str) -> String {
        let rest = if self.config.strip_prefix && self.config.path != "/" {
            &path[self.config.path.len()..]
        } else {
            path
        };
        let base = self
            .config
            .upstream()
            .map_or("", |u| u.path().trim_end_matches('/'));
        let mut out = String::with_capacity(base.len() + rest.len() + 1);
        out.push_str(base);
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
        out
    }
}

// === impl Router ===

impl Router {
    pub fn new(configs: &[RouteConfig], https: bool) -> Result<Self, BoxError> {
        let mut routes = configs
            .iter()
            .map(|c| Route::new(c.clone(), https).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // Longest prefix first; the first match is the most specific.
        routes.sort_by_key(|r| std::cmp::Reverse(r.config.path.len()));
        Ok(Self { routes })
    }

    /// The most specific route for a normalised path.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, CsrfMode, TokenKind};

    fn route(path: &str, upstream: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            target: Target::Upstream(upstream.parse().unwrap()),
            auth: Auth::None,
            token: TokenKind::None,
            strip_prefix: strip,
            methods: None,
            timeout: RouteConfig::DEFAULT_TIMEOUT,
            max_body: RouteConfig::DEFAULT_MAX_BODY,
            websocket: false,
            login_redirect: false,
            csrf: CsrfMode::Header,
        }
    }

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

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let router = Router::new(
            &[
                route("/", "http://spa", false),
                route("/api", "http://api", false),
                route("/api/admin", "http://admin", false),
            ],
            false,
        )
        .unwrap();
        let upstream = |p: &str| {
            router
                .find(p)
                .map(|r| r.config.upstream().unwrap().host_str().unwrap().to_owned())
        };
        assert_eq!(upstream("/api/admin/users").as_deref(), Some("admin"));
        assert_eq!(upstream("/api/administrator").as_deref(), Some("api"));
        assert_eq!(upstream("/api").as_deref(), Some("api"));
        assert_eq!(upstream("/apix").as_deref(), Some("spa"));
        let no_root = Router::new(&[route("/api", "http://api", false)], false).unwrap();
        assert!(no_root.find("/other").is_none());
    }

    #[test]
    fn upstream_path_joins_base_and_strips_prefix() {
        let r = Route::new(route("/api", "http://api/v1/", true), false).unwrap();
        assert_eq!(r.upstream_path("/api/orders"), "/v1/orders");
        assert_eq!(r.upstream_path("/api"), "/v1/");
        let r = Route::new(route("/api", "http://api", false), false).unwrap();
        assert_eq!(r.upstream_path("/api/orders"), "/api/orders");
        let r = Route::new(route("/", "http://spa", true), false).unwrap();
        assert_eq!(r.upstream_path("/index.html"), "/index.html");
    }
}
