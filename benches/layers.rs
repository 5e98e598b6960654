//! What the tower layering costs one request, in-process, against a leaf
//! that answers at once (so only the layers are measured):
//!
//! - the edge (`app::edge`: sensitive headers, the peer's trust, the
//!   request id set and copied to the answer; traces off, as by default),
//!   on a browser-like request;
//! - a route stack's steps (`stack::step`): 1, 3 and 6 steps that pass the
//!   request on, for the cost of one step.
//!
//! Prints nanoseconds per request, each against the bare leaf measured in
//! the same run. Run with `cargo bench --bench layers`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use tower::{Service, ServiceBuilder};

use cloakroom::app::edge;
use cloakroom::body::{self, Body};
use cloakroom::error::BoxError;
use cloakroom::stack::step::{Next, Step};
use cloakroom::stack::ResponseFuture;

const N: u64 = 200_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let leaf =
        tower::service_fn(|_: Request<Body>| async { Ok::<_, BoxError>(Response::new(body::empty())) });
    let bare = best_of(5, || runtime.block_on(run(leaf, N)));
    println!("bare leaf:                {:>6.0} ns per request", per(bare, N));

    let infallible =
        tower::service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(body::empty())) });
    let trusted: Arc<[ipnet::IpNet]> = Arc::from(vec!["10.0.0.0/8".parse().unwrap()]);
    let edged = edge::wrap(infallible, trusted);
    let took = best_of(5, || runtime.block_on(run(edged.clone(), N)));
    println!(
        "edge, traces off:         {:>6.0} ns per request, {:+.0} ns over the bare leaf",
        per(took, N),
        per(took, N) - per(bare, N)
    );

    // As `stack::build` makes them: steps nested by a `ServiceBuilder`,
    // type-erased once at the top.
    let boxed = best_of(5, || runtime.block_on(run(route(leaf), N)));
    let step = || PassOn.into_layer();
    let stacks = [
        (1, route(ServiceBuilder::new().layer(step()).service(leaf))),
        (
            3,
            route(
                ServiceBuilder::new()
                    .layer(step())
                    .layer(step())
                    .layer(step())
                    .service(leaf),
            ),
        ),
        (
            6,
            route(
                ServiceBuilder::new()
                    .layer(step())
                    .layer(step())
                    .layer(step())
                    .layer(step())
                    .layer(step())
                    .layer(step())
                    .service(leaf),
            ),
        ),
    ];
    println!("boxed leaf (a route):     {:>6.0} ns per request", per(boxed, N));
    for (steps, stack) in stacks {
        let took = best_of(5, || runtime.block_on(run(stack.clone(), N)));
        println!(
            "{steps} step(s):                {:>6.0} ns per request, {:+.0} ns per step",
            per(took, N),
            (per(took, N) - per(boxed, N)) / f64::from(steps)
        );
    }
}

/// A route's service, as `stack::build` erases it.
fn route<S>(service: S) -> tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    tower::util::BoxCloneSyncService::new(service)
}

/// A step that only passes the request on.
#[derive(Clone)]
struct PassOn;

impl Step for PassOn {
    fn call(&self, request: Request<Body>, next: Next) -> ResponseFuture {
        next.run(request)
    }
}

/// `n` requests such as a browser sends through `service`, one after another.
async fn run<S, E>(mut service: S, n: u64) -> Duration
where
    S: Service<Request<Body>, Response = Response<Body>, Error = E>,
    E: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..n {
        let response = service.call(black_box(browser_request())).await.unwrap();
        black_box(response);
    }
    start.elapsed()
}

/// The headers a logged-in SPA's fetch carries.
fn browser_request() -> Request<Body> {
    let mut request = Request::get("/api/items?page=1")
        .header("host", "app.example")
        .header("accept", "application/json")
        .header("accept-language", "en-GB,en;q=0.9")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("cookie", "__Host-cloakroom=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")
        .header("x-csrf", "1")
        .header("sec-fetch-site", "same-origin")
        .body(body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 5000)));
    request
}

fn best_of(rounds: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().unwrap_or_default()
}

fn per(took: Duration, n: u64) -> f64 {
    took.as_nanos() as f64 / n as f64
}
