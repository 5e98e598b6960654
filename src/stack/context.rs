//! What the outer steps learned about a request, handed to a route's
//! layers in the request's extensions.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, Request};

use crate::body::Body;
use crate::error::BoxError;

/// What the outer steps learned about a request, for the layers below.
#[derive(Debug, Clone)]
pub struct Context {
    /// The normalised, authorised path.
    pub path: String,
    pub peer: SocketAddr,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
    /// The client: the peer, or the address a trusted proxy reports.
    pub client: IpAddr,
    pub request_id: HeaderValue,
}

/// The request's [`Context`]: the outer steps always put one there.
pub(super) fn context(request: &Request<Body>) -> Result<&Context, BoxError> {
    request
        .extensions()
        .get::<Context>()
        .ok_or_else(|| "request reached a route stack without its context".into())
}
