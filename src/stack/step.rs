//! The one shape of a route's layers: a [`Step`] handles a request given
//! [`Next`], the rest of the stack. The tower plumbing (`Layer`, `Service`,
//! readiness, clone-and-swap, the boxed future) is written once here, so a
//! new step is only its own logic.

use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::BoxError;

/// What every layer's service returns. Layers box the future of the
/// service below them into this named type before awaiting it, so no
/// `Service` projection lands in an async block's state, where rustc
/// cannot prove it `Send` for every lifetime.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// One step of a route's stack.
pub trait Step: Clone + Send + Sync + 'static {
    /// Handles `request`: refuse it, or pass it on with `next.run(request)`
    /// and look at the answer on the way back.
    fn call(&self, request: Request<Body>, next: Next) -> ResponseFuture;

    /// This step as a tower layer.
    fn into_layer(self) -> StepLayer<Self> {
        StepLayer(self)
    }
}

/// The rest of the stack below a step, called at most once.
pub struct Next(Box<dyn FnOnce(Request<Body>) -> ResponseFuture + Send>);

impl Next {
    pub fn run(self, request: Request<Body>) -> ResponseFuture {
        (self.0)(request)
    }
}

/// A [`Step`] as a tower `Layer`.
#[derive(Clone)]
pub struct StepLayer<T>(T);

impl<T: Clone, S> Layer<S> for StepLayer<T> {
    type Service = Stepped<T, S>;
    fn layer(&self, inner: S) -> Self::Service {
        Stepped {
            step: self.0.clone(),
            inner,
        }
    }
}

/// A [`Step`] over the service below it.
#[derive(Clone)]
pub struct Stepped<T, S> {
    step: T,
    inner: S,
}

impl<T, S> Service<Request<Body>> for Stepped<T, S>
where
    T: Step,
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone is ready only if polled; take the ready one (tower's
        // "clone and swap").
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let next = Next(Box::new(move |request| Box::pin(inner.call(request))));
        self.step.call(request, next)
    }
}
