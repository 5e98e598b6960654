//! Accept loop and worker threads: HTTP/1.1 and h2c (prior knowledge) on one
//! port, connection caps (in all and per client address), HTTP/2 streams per
//! connection and the per-address cap on requests in flight (PX-35), a
//! first-bytes timeout, header-read and idle timeouts, graceful drain.
//!
//! Like mini-redis `server::run`, it takes a bound listener and a shutdown
//! future, so tests bind port 0 and `main` passes a SIGTERM future.

mod idle;
mod per_ip;
mod preface;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use self::idle::Activity;
use self::per_ip::PerIp;
pub(crate) use self::per_ip::Slot;
use crate::body::Body;
use crate::config::Limits;

/// Serves on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish for up to `limits.shutdown_grace`.
///
/// Peers in `uncapped` (the trusted proxies) are exempt from
/// `limits.max_connections_per_ip`.
///
/// Each handler in `handlers` gets a thread with its own single-threaded
/// runtime (thread per core, as nginx runs a process per core): a
/// connection, its requests and the upstream connections they use all live
/// on one thread, so handing work between tasks never wakes another core.
/// This task only accepts, and deals connections out in turn.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    limits: &Limits,
    uncapped: &[IpNet],
    handlers: Vec<H>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(
        usize::try_from(limits.max_connections).unwrap_or(usize::MAX),
    ));
    let per_ip = PerIp::new("connections", limits.max_connections_per_ip, uncapped);
    // Keyed by the client address the app trusts, so nobody is exempt here:
    // behind a trusted proxy, each forwarded address counts for itself.
    let requests = RequestCap(PerIp::new("requests", limits.max_requests_per_ip, &[]));
    let mut lanes = Vec::with_capacity(handlers.len());
    for (i, handler) in handlers.into_iter().enumerate() {
        match Lane::spawn(i, handler, limits.clone()) {
            Ok(lane) => lanes.push(lane),
            Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
        }
    }
    tokio::pin!(shutdown);

    let mut next = 0usize;
    while !lanes.is_empty() {
        // At the connection cap, stop accepting: the kernel backlog queues
        // the rest instead of this process running out of file descriptors.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over its address's cap: closed at once, and its permit goes back.
        let Some(slot) = per_ip.acquire(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else { continue };
        next = (next + 1) % lanes.len();
        let held = Arc::new(ConnectionHold {
            _permit: permit,
            _slot: slot,
            requests: requests.clone(),
        });
        if lanes[next].connections.send((stream, peer, held)).is_err() {
            tracing::error!("a worker thread stopped; dropping it");
            lanes.remove(next);
        }
    }

    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    for lane in lanes {
        drop(lane.connections);
        let _ = lane.stopped.await;
    }
}

/// What a connection holds while open: its place under `max_connections`
/// and under its address's cap. Every request of the connection carries it
/// in its extensions, so a WebSocket tunnel, which outlives the HTTP
/// connection that opened it, keeps the place until the tunnel closes.
pub(crate) struct ConnectionHold {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
    requests: RequestCap,
}

/// The per-address cap on requests in flight (PX-35), shared by every
/// connection of one listener. The app takes a place under it for the
/// client address it trusts (the peer, or what a trusted proxy forwarded)
/// and holds it until the response body has been sent.
#[derive(Debug, Clone)]
pub(crate) struct RequestCap(PerIp);

// === impl ConnectionHold ===

impl ConnectionHold {
    pub(crate) fn requests(&self) -> &RequestCap {
        &self.requests
    }
}

// === impl RequestCap ===

impl RequestCap {
    /// A place for one more request from `client` (per /64 for IPv6), or
    /// `None` when it already has `max_requests_per_ip` in flight.
    pub(crate) fn acquire(&self, client: IpAddr) -> Option<Slot> {
        self.0.acquire(client)
    }
}

type Connection = (std::net::TcpStream, SocketAddr, Arc<ConnectionHold>);

/// One worker thread and the channel that feeds it connections.
struct Lane {
    connections: mpsc::UnboundedSender<Connection>,
    stopped: oneshot::Receiver<()>,
}

impl Lane {
    fn spawn<H, F>(index: usize, handler: H, limits: Limits) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let (connections, mut incoming) = mpsc::unbounded_channel::<Connection>();
        let (done, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new().name(format!("cloakroom-worker-{index}")).spawn(move || {
            runtime.block_on(async move {
                let builder = Arc::new(builder(&limits));
                // Shutdown is told through `stop`; every connection task
                // holds a clone of `open`, so `closed` ends once they all have
                // (mini-redis's `shutdown_complete`).
                let (stop, stopping) = watch::channel(false);
                let (open, mut closed) = mpsc::channel::<()>(1);
                while let Some((stream, peer, held)) = incoming.recv().await {
                    let Ok(stream) = TcpStream::from_std(stream) else { continue };
                    let connection = serve_connection(
                        stream,
                        peer,
                        held.clone(),
                        builder.clone(),
                        handler.clone(),
                        limits.clone(),
                        stopping.clone(),
                    );
                    let open = open.clone();
                    tokio::spawn(async move {
                        connection.await;
                        drop((held, open));
                    });
                }
                let _ = stop.send(true);
                drop(open);
                if tokio::time::timeout(limits.shutdown_grace, closed.recv()).await.is_err() {
                    tracing::warn!(grace = ?limits.shutdown_grace, "grace period over; closing remaining connections");
                }
            });
            // Dropping the runtime closes whatever outlived the grace period.
            drop(runtime);
            let _ = done.send(());
        })?;
        Ok(Self { connections, stopped })
    }
}

/// Serves one connection until it ends, is idle for `limits.idle_timeout`,
/// or the server stops.
async fn serve_connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    held: Arc<ConnectionHold>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: H,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Until the protocol is known no hyper timeout runs: ours does (PX-27).
    let io = tokio::select! {
        read = preface::read(stream, limits.first_bytes_timeout) => match read {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closed before the protocol was known");
                return;
            }
        },
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    let activity = Arc::new(Activity::new());
    let service = service_fn({
        let activity = activity.clone();
        move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(held.clone());
            let in_flight = activity.begin();
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(in_flight.until_sent(response.await)) }
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(limits.idle_timeout) => {
                // Asked to close and still idle a whole period later (an
                // HTTP/2 peer that never lets go): drop it.
                if closing {
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own caps sit above the configured limits: the app checks the
    // exact limits and answers with a problem body; these only stop abuse
    // that would never reach the app.
    let header_room = usize::try_from(limits.max_header_bytes + limits.max_uri_bytes).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(header_room.saturating_mul(2).max(16 * 1024))
        .max_headers(
            usize::try_from(limits.max_headers)
                .unwrap_or(100)
                .saturating_mul(2),
        )
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_room.saturating_mul(2)).unwrap_or(u32::MAX))
        // hyper's default is 200, each stream a request in flight with an
        // upstream connection of its own (PX-35).
        .max_concurrent_streams(u32::try_from(limits.max_streams_per_connection).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}
