//! Longest-prefix route matching on normalised paths ([`crate::path`]).

use std::sync::Arc;

use http::uri::{Authority, Scheme};

use crate::config::{RouteConfig, Target};
use crate::error::BoxError;
use crate::static_files::StaticFiles;

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
    /// An answer to an ingress's check: the headers it copies upstream.
    ForwardAuth,
}

/// The route table: longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
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
            Target::ForwardAuth => Leaf::ForwardAuth,
        };
        Ok(Self { config, leaf })
    }

    /// Whether `path` (normalised) is inside this route's prefix, on a segment boundary.
    pub fn matches(&self, path: &str) -> bool {
        crate::config::covers(&self.config.path, path)
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
        self.find_index(path).map(|i| &self.routes[i])
    }

    /// Where in [`Router::routes`] the most specific route for `path` is.
    pub fn find_index(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(path))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, CsrfMode, TokenKind};

    fn route(path: &str, upstream: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            target: Target::Upstream(upstream.parse().unwrap()),
            auth: AuthMode::None,
            token: TokenKind::None,
            audience: None,
            exchange: None,
            strip_prefix: strip,
            methods: None,
            timeout: RouteConfig::DEFAULT_TIMEOUT,
            max_body: RouteConfig::DEFAULT_MAX_BODY,
            websocket: false,
            websocket_protocols: None,
            websocket_max_lifetime: None,
            login_redirect: false,
            csrf: CsrfMode::Header,
            access: None,
            step_up: None,
            claim_headers: Default::default(),
        }
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
