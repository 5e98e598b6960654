//! The network as a test sees it: free ports, raw bytes on a socket, and an
//! HTTP client that does nothing on its own (no redirects, no cookies).

use std::net::SocketAddr;
use std::time::Duration;

/// A client that never follows redirects and has no cookie store.
pub fn client() -> reqwest::Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// reqwest is built without a default TLS crypto provider; pick ring, as
/// cloakroom does.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it or `limit` elapses (a bound so a broken server fails the test instead
/// of hanging it).
pub async fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a raw HTTP/1.1 response (see [`raw`]), parsed as JSON.
pub fn raw_json(response: &str) -> serde_json::Value {
    let (_, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no body: {response}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// A loopback port nothing listens on: bound, then let go.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A loopback address nothing listens on: a connection to it is refused.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
