//! On routes that send the user's token: refuse nested encodings an
//! upstream might decode into another path (PX-32), on the path as
//! received. Only token routes carry this layer.

use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::{BoxError, Refusal};
use crate::path::nested;

use super::ResponseFuture;

/// Adds [`NestedEncoding`].
#[derive(Debug, Clone, Copy)]
pub struct NestedEncodingLayer;

/// Refuses a request whose raw path nests an encoded dot, separator or NUL.
#[derive(Debug, Clone)]
pub struct NestedEncoding<S> {
    inner: S,
}

impl<S> Layer<S> for NestedEncodingLayer {
    type Service = NestedEncoding<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NestedEncoding { inner }
    }
}

impl<S> Service<Request<Body>> for NestedEncoding<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Err(e) = nested::check(request.uri().path()) {
            tracing::debug!(error = %e, "refused request path");
            return Box::pin(std::future::ready(Err(Refusal::BadRequest("path").into())));
        }
        Box::pin(self.inner.call(request))
    }
}
