//! Keep-alive connections to upstreams, one pool per worker thread.
//!
//! Built on hyper's connection-level HTTP/1 client: a connection is checked
//! out for one request and comes back to the pool when its response body has
//! been read to the end, not before (HTTP/1 carries one exchange at a time).
//! A body dropped half-read takes its connection with it, since the rest of
//! the bytes would be mistaken for the next response.
//!
//! A pooled connection the upstream closed while idle can fail a request
//! before any byte of it was written; hyper hands such a request back, and it
//! is sent once more on a fresh connection. A request that was (even partly)
//! sent is never retried.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::body::{self, Body};
use crate::error::{BoxError, UpstreamError};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Key = (Scheme, Authority);

/// The upstream connections of one worker.
pub(crate) struct Pool {
    connector: Connector,
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    max_idle_per_upstream: usize,
    idle_timeout: Duration,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// A checked-out connection, returned to the pool when its response ends.
struct ConnectionLease {
    pool: Weak<Pool>,
    key: Key,
    sender: SendRequest<Body>,
}

pin_project_lite::pin_project! {
    /// A response body that returns its connection at end of stream.
    struct PooledBody {
        #[pin]
        inner: Incoming,
        lease: Option<ConnectionLease>,
    }
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(connector: Connector) -> Arc<Self> {
        Arc::new(Self {
            connector,
            idle: Mutex::new(HashMap::new()),
            max_idle_per_upstream: 256,
            idle_timeout: Duration::from_secs(60),
        })
    }

    /// Sends `request` (origin-form URI, `Host` set) to `scheme://authority`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        scheme: &Scheme,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, BoxError> {
        let key = (scheme.clone(), authority.clone());
        loop {
            let (mut sender, reused) = match self.checkout(&key).await {
                Some(sender) => (sender, true),
                None => (self.connect(&key).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(key, sender, response)),
                Err(mut e) => match e.take_message() {
                    // Never written: the pooled connection had gone stale.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Unavailable(Box::new(e.into_error())).into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still usable.
    async fn checkout(&self, key: &Key) -> Option<SendRequest<Body>> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(key)?.pop()?
            };
            if idle.sender.is_closed() || idle.since.elapsed() > self.idle_timeout {
                continue;
            }
            let mut sender = idle.sender;
            // Just returned: the connection may still be finishing the last
            // exchange; it is ready as soon as it has.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, (scheme, authority): &Key) -> Result<SendRequest<Body>, BoxError> {
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()?;
        let unavailable = |e: BoxError| -> BoxError { Box::new(UpstreamError::Unavailable(e)) };
        let io = self.connector.clone().oneshot(uri).await.map_err(unavailable)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| unavailable(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Ties the connection to the response: back to the pool when the body
    /// ends (or now, if there is none); never after a protocol switch.
    fn lease(
        self: &Arc<Self>,
        key: Key,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<Body> {
        let lease = ConnectionLease {
            pool: Arc::downgrade(self),
            key,
            sender,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return response.map(body::boxed);
        }
        if response.body().is_end_stream() {
            lease.release();
            return response.map(body::boxed);
        }
        response.map(|inner| {
            body::boxed(PooledBody {
                inner,
                lease: Some(lease),
            })
        })
    }
}

// === impl ConnectionLease ===

impl ConnectionLease {
    fn release(self) {
        let Some(pool) = self.pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(self.key).or_default();
        if list.len() < pool.max_idle_per_upstream {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

// === impl PooledBody ===

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            // hyper stops polling a body that says it has ended, so the
            // last frame may be the last call we get.
            Some(Ok(_)) if !this.inner.is_end_stream() => {}
            Some(Err(_)) => {
                this.lease.take();
            }
            Some(Ok(_)) | None => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
