//! The leaf of a `static:` route: files from a directory, so a production
//! deployment serves its built SPA without a second web server.
//!
//! - the file the path names ([`resolve`]: nothing outside the directory,
//!   no dotfiles), or for a page path with no file the `index` (SPA
//!   history fallback), else 404;
//! - `Cache-Control`: a year and `immutable` for content-hashed names,
//!   `no-cache` for the rest, `index.html` and the fallback first
//!   ([`cache`]); `private` when the route needs a session;
//! - a weak `ETag` with `If-None-Match` → 304; `Last-Modified`, ranges and
//!   precompressed `.br`/`.gz` siblings come from tower-http's `ServeFile`,
//!   each sibling checked first like the file itself ([`resolve::sibling`]);
//!   an `If-Range` that does not hold drops the range: the whole file, 200
//!   (PX-39);
//! - the route's response headers (a strict CSP by default).
//!
//! Runs after the route's session and CSRF checks, in place of the upstream.

pub(crate) mod cache;
pub(crate) mod resolve;

use std::io;
use std::path::PathBuf;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::body::{self, Body};
use crate::config::{RouteConfig, StaticConfig};
use crate::error::{BoxError, Refusal};

/// A directory served by one route.
#[derive(Debug)]
pub struct StaticFiles {
    /// Canonical: every served file's canonical path starts with it.
    root: PathBuf,
    /// The route prefix removed from request paths (`strip_prefix`).
    strip: Option<String>,
    config: StaticConfig,
    /// The route's headers, plus HSTS over https.
    headers: HeaderMap,
}

/// Whether the files need a session: then no shared cache may keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Anyone,
    SignedIn,
}

// === impl StaticFiles ===

impl StaticFiles {
    /// Opens the route's directory; fails (naming it) if it is not one.
    pub fn new(route: &RouteConfig, config: &StaticConfig, https: bool) -> Result<Self, BoxError> {
        let root = std::fs::canonicalize(&config.dir)
            .and_then(|root| match root.is_dir() {
                true => Ok(root),
                false => Err(io::Error::other("not a directory")),
            })
            .map_err(|e| format!("route {}: static.dir {}: {e}", route.path, config.dir.display()))?;
        let strip = (route.strip_prefix && route.path != "/").then(|| route.path.clone());
        let mut headers = config.headers.clone();
        if https {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        Ok(Self {
            root,
            strip,
            config: config.clone(),
            headers,
        })
    }

    /// Answers a GET or HEAD for the normalised `path`.
    pub async fn serve(
        &self,
        request: Request<Body>,
        path: &str,
        audience: Audience,
    ) -> Result<Response<Body>, BoxError> {
        let rel = match &self.strip {
            Some(prefix) => path.strip_prefix(prefix.as_str()).unwrap_or(path),
            None => path,
        };
        let rel = rel.trim_start_matches('/');
        let index = &self.config.index;
        let (found, hashed) = match resolve::lookup(&self.root, rel, index).await? {
            Some(found) => {
                let name = found.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let hashed = cache::is_hashed(name);
                (found, hashed)
            }
            None if self.config.fallback && is_page(rel, request.headers()) => {
                let found = resolve::lookup(&self.root, "", index)
                    .await?
                    .ok_or(Refusal::NotFound)?;
                (found, false)
            }
            None => return Err(Refusal::NotFound.into()),
        };
        let cache_control = match (hashed, audience) {
            (true, Audience::Anyone) => cache::IMMUTABLE,
            (true, Audience::SignedIn) => "private, max-age=31536000, immutable",
            (false, Audience::Anyone) => cache::REVALIDATE,
            (false, Audience::SignedIn) => "private, no-cache",
        };
        let etag = cache::etag(&found.metadata);

        let (mut parts, _) = request.into_parts();
        let mut response = match &etag {
            Some(tag) if cache::not_modified(&parts.headers, tag) => {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            }
            _ => {
                if parts.headers.contains_key(header::IF_NONE_MATCH) {
                    // RFC 9110 §13.1.3: If-None-Match decides; a date must not.
                    parts.headers.remove(header::IF_MODIFIED_SINCE);
                }
                if let Some(if_range) = parts.headers.remove(header::IF_RANGE) {
                    if !cache::if_range_holds(&if_range, &found.metadata) {
                        parts.headers.remove(header::RANGE);
                    }
                }
                let mut file = ServeFile::new(&found.path);
                if self.config.precompressed {
                    file = self.precompressed(file, &found).await;
                }
                let served = file.oneshot(Request::from_parts(parts, ())).await?;
                served.map(body::boxed)
            }
        };
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
        if self.config.precompressed {
            h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        if let Some(tag) = etag {
            h.insert(header::ETAG, tag);
        }
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        Ok(response)
    }

    /// Turns on each precompressed encoding whose sibling of `found` may be
    /// served (PX-37): `ServeFile` opens `<file>.br` and `<file>.gz` on its
    /// own, and would follow a symlink out of the directory or to a dotfile.
    async fn precompressed(&self, mut file: ServeFile, found: &resolve::Found) -> ServeFile {
        let servable = |extension| async move {
            match resolve::sibling(&self.root, &found.path, extension).await {
                Ok(sibling) => sibling.is_some(),
                // One that cannot be looked at is not served; the file is.
                Err(e) => {
                    tracing::debug!(error = %e, extension, "precompressed sibling not readable");
                    false
                }
            }
        };
        if servable(".br").await {
            file = file.precompressed_br();
        }
        if servable(".gz").await {
            file = file.precompressed_gzip();
        }
        file
    }
}

/// Whether a missing path is a page of the SPA (answered with `index`)
/// rather than a missing asset (404): no file extension in its last
/// segment, or a browser asking for HTML. A missing `app.3f9a1c2b.js`
/// stays a 404 instead of HTML that the browser would refuse as script.
fn is_page(rel: &str, headers: &HeaderMap) -> bool {
    let last = rel.rsplit('/').next().unwrap_or("");
    let accepts_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    !last.contains('.') || accepts_html
}
