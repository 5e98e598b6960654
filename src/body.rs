//! The one body type every layer speaks: boxed, streaming, fallible; and
//! the deadlines on a client's request body (PX-34).
//!
//! A request is in flight while its body is read, so no connection timeout
//! fires for a client that trickles its body one byte at a time: the body
//! needs a deadline of its own. A body cloakroom answers itself is read whole
//! with [`read_whole`] within one deadline; a proxied one is streamed, so
//! [`idle_deadline`] bounds the pause between two of its reads instead.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

use crate::error::{BoxError, Refusal};

/// A streaming HTTP body. Proxied bodies flow through it chunk by chunk.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body held in memory (error pages, JSON answers).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// `body`, keeping `guard` alive until the body is done with (sent to the
/// end, or dropped).
pub fn holding<G: Send + 'static>(body: Body, guard: G) -> Body {
    if body.is_end_stream() {
        // hyper never polls an empty body: done once the head is written.
        return body;
    }
    boxed(Holding {
        inner: body,
        _guard: guard,
    })
}

/// The whole of a request body cloakroom reads itself: at most `max` bytes
/// (else [`Refusal::BodyTooLarge`]), all of it within `within` (else
/// [`Refusal::BodyTimeout`]: a 408, and the connection closed).
pub async fn read_whole(mut body: Body, max: usize, within: Duration) -> Result<Bytes, Refusal> {
    let read = async {
        let mut read = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Refusal::BadRequest("unreadable body"))?;
            if let Ok(data) = frame.into_data() {
                if read.len() + data.len() > max {
                    return Err(Refusal::BodyTooLarge);
                }
                read.extend_from_slice(&data);
            }
        }
        Ok(read.freeze())
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(Refusal::BodyTimeout))
}

/// `body`, failing with [`Refusal::BodyTimeout`] once it has been asked for
/// more and sent nothing for `idle`. The clock starts at the first read, so
/// the time an upstream takes to accept the connection is not counted.
pub fn idle_deadline(body: Body, idle: Duration) -> Body {
    boxed(IdleDeadline {
        inner: body,
        idle,
        sleep: None,
    })
}

pin_project_lite::pin_project! {
    /// A body that must make progress every `idle`.
    struct IdleDeadline {
        #[pin]
        inner: Body,
        idle: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

pin_project_lite::pin_project! {
    /// A body that keeps its guard alive as long as it is.
    struct Holding<G> {
        #[pin]
        inner: Body,
        _guard: G,
    }
}

// === impl Holding ===

impl<G> HttpBody for Holding<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl IdleDeadline ===

impl HttpBody for IdleDeadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some(sleep) = this.sleep.as_mut() {
                sleep.as_mut().reset(Instant::now() + *this.idle);
            }
            return Poll::Ready(frame);
        }
        let idle = *this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Refusal::BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    type Frames = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    /// A body the test feeds frame by frame.
    fn fed() -> (Frames, Body) {
        let (tx, mut rx) = mpsc::channel(4);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (tx, boxed(http_body_util::StreamBody::new(stream)))
    }

    fn data(bytes: &'static [u8]) -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    #[tokio::test(start_paused = true)]
    async fn px34_a_body_read_whole_must_arrive_within_its_deadline() {
        let (tx, body) = fed();
        tx.send(data(b"logout_token=")).await.unwrap();
        let read = read_whole(body, 1024, Duration::from_secs(5)).await;
        assert_eq!(read, Err(Refusal::BodyTimeout));

        let (tx, body) = fed();
        tx.send(data(b"logout_token=x")).await.unwrap();
        drop(tx);
        let read = read_whole(body, 1024, Duration::from_secs(5)).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"logout_token=x"));

        let (tx, body) = fed();
        tx.send(data(b"0123456789")).await.unwrap();
        assert_eq!(
            read_whole(body, 4, Duration::from_secs(5)).await,
            Err(Refusal::BodyTooLarge)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn px34_a_streamed_body_fails_once_idle_and_not_while_it_moves() {
        let (tx, body) = fed();
        let mut body = idle_deadline(body, Duration::from_secs(2));
        let feeder = tokio::spawn(async move {
            // Ten seconds in all, never two without a byte.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send(data(b"x")).await.unwrap();
            }
            tx
        });
        for _ in 0..10 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let _tx = feeder.await.unwrap();
        let started = Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert_eq!(e.downcast_ref::<Refusal>(), Some(&Refusal::BodyTimeout));
        assert!((Duration::from_secs(2)..Duration::from_secs(3)).contains(&started.elapsed()));
    }
}
