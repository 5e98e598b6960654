//! On routes that send the user's token: refuse nested encodings (PX-32)
//! and compatibility forms (PX-36) an upstream might decode or fold into
//! another path, on the path as received. Only token routes carry this step.

use http::Request;

use super::step::{Next, ResponseFuture, Step};
use crate::body::Body;
use crate::error::Refusal;
use crate::path::nested;

/// Refuses a request whose raw path nests an encoded dot, separator or NUL,
/// or holds a compatibility form of one.
#[derive(Debug, Clone, Copy)]
pub struct NestedEncoding;

impl Step for NestedEncoding {
    fn call(&self, request: Request<Body>, next: Next) -> ResponseFuture {
        if let Err(e) = nested::check(request.uri().path()) {
            tracing::debug!(error = %e, "refused request path");
            return Box::pin(std::future::ready(Err(Refusal::BadRequest("path").into())));
        }
        next.run(request)
    }
}
