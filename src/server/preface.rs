//! The first bytes of a connection, read under a deadline (PX-27).
//!
//! hyper's auto builder waits for the protocol preface with no timeout, and
//! its HTTP/1 `header_read_timeout` starts only once HTTP/1 has been chosen:
//! a socket that sends nothing, or stops inside `PRI * HTTP/2.0…`, would
//! hold its connection slot for as long as the peer likes. So cloakroom
//! reads until the protocol is known itself, within `first_bytes_timeout`,
//! and hands hyper the bytes it read in front of the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream that replays the bytes read before it, then reads on.
#[derive(Debug)]
pub(super) struct Rewind<T> {
    prefix: Vec<u8>,
    at: usize,
    inner: T,
}

/// Reads until the bytes tell HTTP/1 from HTTP/2: the whole HTTP/2 preface,
/// or a byte that departs from it. Fails with `TimedOut` if that takes longer
/// than `within`, and with `UnexpectedEof` if the peer closes first.
pub(super) async fn read<T>(mut io: T, within: Duration) -> io::Result<Rewind<T>>
where
    T: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    let first = async {
        // Every byte so far matches the preface: not decided yet.
        while len < H2_PREFACE.len() && buf[..len] == H2_PREFACE[..len] {
            let n = io.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            len += n;
        }
        Ok(())
    };
    match tokio::time::timeout(within, first).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    }
    buf.truncate(len);
    Ok(Rewind {
        prefix: buf,
        at: 0,
        inner: io,
    })
}

// === impl Rewind ===

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = out.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            out.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                // Replayed: give the buffer back.
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn replayed(chunks: &[&[u8]]) -> io::Result<Vec<u8>> {
        let (client, server) = tokio::io::duplex(4096);
        let mut client = client;
        for chunk in chunks {
            client.write_all(chunk).await?;
        }
        let mut io = read(server, Duration::from_millis(200)).await?;
        drop(client);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await?;
        Ok(all)
    }

    #[tokio::test]
    async fn px27_the_bytes_read_first_are_replayed_in_order() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(replayed(&[request]).await.unwrap(), request);
        let h2 = [H2_PREFACE, b"\0\0\0\x04\0\0\0\0\0"].concat();
        assert_eq!(replayed(&[&h2[..3], &h2[3..]]).await.unwrap(), h2);
        // `POST` starts like the preface, then departs from it.
        assert_eq!(
            replayed(&[b"P", b"OST / HTTP/1.1\r\n\r\n"]).await.unwrap(),
            b"POST / HTTP/1.1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn px27_silence_or_half_a_preface_times_out() {
        for sent in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
            let e = replayed(&[sent]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{sent:?}");
        }
    }
}
