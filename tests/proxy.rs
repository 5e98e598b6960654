//! The proxy core against a real echo upstream: routing, hygiene, limits,
//! streaming, WebSocket, HTTP/2, shutdown.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::drain::Draining;
use support::wait::until;
use support::{client, config, echoed, free_addr, raw, raw_json, App, Upstream, COOKIE_KEY};
use tokio_tungstenite::tungstenite::Message;

const BOUND: Duration = Duration::from_secs(10);

async fn get_json(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn forwards_to_the_route_upstream_with_normalised_path_and_query() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/api/orders", &up.url(), "")])).await;
    let (status, json) = get_json(&app.url("/api/orders/./1//2?x=%2F&y=1")).await;
    assert_eq!(status, 200);
    assert_eq!(json["uri"], "/api/orders/1/2?x=%2F&y=1");
    assert_eq!(json["method"], "GET");
}

#[tokio::test]
async fn px01_px02_escaping_paths_never_reach_an_unlisted_upstream_path() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/api/orders/", &up.url(), "")])).await;
    // Normalised first, then matched: `/api/admin` has no route.
    for path in ["/api/orders/../admin", "/api/orders/x/../../admin", "/other"] {
        let r = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let json: Value = r.json().await.unwrap();
        assert_eq!(json["code"], "not_found");
    }
    // Ambiguous encodings are refused before matching. Sent raw: HTTP
    // clients would resolve `%2e%2e` themselves.
    for path in [
        "/api/orders/%2e%2e/admin",
        "/api/orders/..%2Fadmin",
        "/api/orders/%5C..%5Cadmin",
        "/api/orders/%00",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw(app.addr, request.as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(
            response.contains("\"code\":\"bad_request\""),
            "{path}: {response}"
        );
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
}

/// Nested encodings (PX-32): each decodes, at some depth, to a dot segment,
/// a separator, NUL, a control character, a query mark or an overlong
/// UTF-8 form; mixed case, partial encodings and IIS `%u` included.
const NESTED_ENCODINGS: &[&str] = &[
    "%252e%252e",
    "%252E%252E",
    "%252e%252E",
    "%25252e%25252e",
    "%2525252E%2525252e",
    "%252e",
    ".%252e",
    "%252e.",
    "%252e%252e%252f",
    "%252f",
    "%252F",
    "%25252f",
    "%25252F",
    "..%252f",
    "..%252F",
    "x%252f..%252fadmin",
    "%255c",
    "%255C",
    "%25255c",
    "%2525255c",
    "..%255c",
    "%252e%252e%255c",
    "%2500",
    "%252500",
    "%25252500",
    "%25%32%65%25%32%65",
    "%25%32%45",
    "%25%32%66",
    "%25%32%46",
    "%25%35%63",
    "%25%35%43",
    "%25%30%30",
    "%2525%32%65",
    "%25%32%35%32%65",
    "%252e%252e%253b",
    "..%253bx",
    "..;",
    "..;jsessionid=1",
    ".;",
    "%25c0%25ae%25c0%25ae",
    "%25C0%25AE",
    "%c0%ae%c0%ae",
    "%C0%AF",
    "%c1%9c",
    "%25e0%2580%25ae",
    "%25u002e%25u002e",
    "%25U002E",
    "%25u002f",
    "%25u005c",
    "%250a",
    "%250d%250a",
    "%2509",
    "%253f",
    "%2523",
    "%252525252525252e",
];

#[tokio::test]
async fn px32_nested_encodings_on_a_token_route_never_reach_the_upstream() {
    let w = support::idp::world("").await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, "cloakroom").expect("session cookie");
    // The login ended on a page the upstream served.
    let before = w.up.requests();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nCookie: cloakroom={cookie}\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n")
    };
    for entry in NESTED_ENCODINGS {
        let path = format!("/api/orders/{entry}/admin");
        let response = raw(w.app.addr, get(&path).as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(
            response.contains("\"code\":\"bad_request\""),
            "{path}: {response}"
        );
    }
    assert_eq!(w.up.requests(), before, "nothing reached the upstream");

    // A literal `%25` that decodes to nothing refused is forwarded, token and all.
    for (path, forwarded) in [
        ("/api/orders/100%25", "/api/orders/100%25"),
        ("/api/orders/50%25off", "/api/orders/50%25off"),
        ("/api/orders/a%2541", "/api/orders/a%2541"),
        ("/api/orders/file%252ejson", "/api/orders/file%252ejson"),
        ("/api/orders/v1.2/caf%C3%A9", "/api/orders/v1.2/caf%C3%A9"),
    ] {
        let response = raw(w.app.addr, get(path).as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        let json = raw_json(&response);
        assert_eq!(json["uri"], forwarded);
        assert!(echoed(&json, "authorization").is_some_and(|a| a.starts_with("Bearer ")));
    }
}

#[tokio::test]
async fn px36_compatibility_forms_on_a_token_route_never_reach_the_upstream() {
    let w = support::idp::world("").await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, "cloakroom").expect("session cookie");
    let before = w.up.requests();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nCookie: cloakroom={cookie}\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n")
    };
    // What an upstream applying NFKC reads as `..`, `/` or `\`.
    for entry in [
        "%ef%bc%8e%ef%bc%8e",
        "%EF%BC%8E%EF%BC%8E",
        "\u{FF0E}\u{FF0E}",
        "%uFF0E%uFF0E",
        "%25EF%25BC%258E%25EF%25BC%258E",
        "x%EF%BC%8Fadmin",
        "x\u{FF3C}admin",
        "%E2%80%A4%E2%80%A4",
        "%E2%80%A5",
        "%EF%B9%92%EF%B9%92",
        "x%EF%B9%A8admin",
    ] {
        let path = format!("/api/orders/{entry}/admin");
        let response = raw(w.app.addr, get(&path).as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(
            response.contains("\"code\":\"bad_request\""),
            "{path}: {response}"
        );
    }
    assert_eq!(w.up.requests(), before, "nothing reached the upstream");

    // Other non-ASCII, look-alikes NFKC leaves alone included, is forwarded.
    for path in [
        "/api/orders/%E2%88%95",
        "/api/orders/%EF%BC%A1",
        "/api/orders/caf%C3%A9",
    ] {
        let response = raw(w.app.addr, get(path).as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert_eq!(raw_json(&response)["uri"], path);
    }
}

#[tokio::test]
async fn strip_prefix_and_upstream_base_path_compose() {
    let up = Upstream::start().await;
    let base = format!("{}/v1/", up.url());
    let app = App::start(&config(&[
        ("/api", &base, ", strip_prefix: true"),
        ("/", &up.url(), ""),
    ]))
    .await;
    assert_eq!(
        get_json(&app.url("/api/orders?q=1")).await.1["uri"],
        "/v1/orders?q=1"
    );
    assert_eq!(get_json(&app.url("/api")).await.1["uri"], "/v1/");
    assert_eq!(get_json(&app.url("/apiary")).await.1["uri"], "/apiary");
}

#[tokio::test]
async fn px05_methods_outside_the_allowlist_get_405() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[
        ("/ro", &up.url(), ", methods: [GET, HEAD]"),
        ("/", &up.url(), ""),
    ]))
    .await;
    let r = client().post(app.url("/ro/x")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "method_not_allowed");
    let trace = reqwest::Method::from_bytes(b"TRACE").unwrap();
    let r = client()
        .request(trace, app.url("/anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        405,
        "TRACE is refused even where every method is allowed"
    );
    assert_eq!(up.requests(), 0);
    assert_eq!(client().get(app.url("/ro/x")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn px06_px08_client_identity_and_forwarding_headers_are_replaced() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let r = client()
        .get(app.url("/h"))
        .header("authorization", "Bearer attacker")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x_forwarded_user", "admin")
        .header("x-auth-request-email", "admin@example.com")
        .header("forwarded", "for=6.6.6.6")
        .header("x-request-id", "chosen-by-client")
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let json: Value = r.json().await.unwrap();
    assert_eq!(echoed(&json, "authorization"), None);
    assert_eq!(echoed(&json, "x_forwarded_user"), None);
    assert_eq!(echoed(&json, "x-auth-request-email"), None);
    assert_eq!(echoed(&json, "forwarded"), None);
    assert_eq!(echoed(&json, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echoed(&json, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echoed(&json, "x-forwarded-host").as_deref(),
        Some("localhost:8080")
    );
    assert_eq!(
        echoed(&json, "host"),
        Some(up.addr.to_string()),
        "upstream Host is the route's"
    );
    assert_ne!(
        rid, "chosen-by-client",
        "an untrusted peer cannot choose the request id"
    );
    assert_eq!(echoed(&json, "x-request-id"), Some(rid));
}

#[tokio::test]
async fn px28_an_untrusted_host_header_never_becomes_x_forwarded_host() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    for request in [
        &b"GET /h HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"[..],
        b"GET http://evil.example/h HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    ] {
        let response = raw(app.addr, request, BOUND).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let json = raw_json(&response);
        assert_eq!(
            echoed(&json, "x-forwarded-host").as_deref(),
            Some("localhost:8080"),
            "public_url's host, not the client's"
        );
    }
}

#[tokio::test]
async fn px29_method_overrides_and_identity_headers_are_stripped() {
    let up = Upstream::start().await;
    let forged = [
        ("x-http-method-override", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x_http_method_override", "DELETE"),
        ("true-client-ip", "6.6.6.6"),
        ("x-amzn-oidc-data", "eyJhbGciOiJub25lIn0.e30."),
        ("x-ms-client-principal", "eyJ1c2VyX2lkIjoiYWRtaW4ifQ"),
        ("x-user-id", "admin"),
        ("X_User_Id", "admin"),
        ("x-original-host", "evil.example"),
        ("x-host", "evil.example"),
    ];
    let send = |app: &App| {
        let mut request = client().get(app.url("/h")).header("x-kept", "yes");
        for (name, value) in forged {
            request = request.header(name, value);
        }
        request.send()
    };
    let app = App::start(&config(&[("/", &up.url(), ", methods: [GET]")])).await;
    let json: Value = send(&app).await.unwrap().json().await.unwrap();
    for (name, _) in forged {
        assert_eq!(
            echoed(&json, &name.to_ascii_lowercase()),
            None,
            "{name} must not be forwarded"
        );
    }
    assert_eq!(echoed(&json, "x-kept").as_deref(), Some("yes"));

    // A configured list replaces the default; method overrides still go.
    let yaml = config(&[("/", &up.url(), "")]) + "identity_headers: [x-original-host, 'x-tenant-*']\n";
    let app = App::start(&yaml).await;
    let r = send(&app).await.unwrap();
    let json: Value = r.json().await.unwrap();
    assert_eq!(echoed(&json, "x-user-id").as_deref(), Some("admin"));
    assert_eq!(echoed(&json, "x-original-host"), None);
    assert_eq!(echoed(&json, "x-http-method-override"), None);
}

#[tokio::test]
async fn px08_trusted_proxies_extend_the_forwarding_chain() {
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")]) + "trusted_proxies: [127.0.0.0/8]\n";
    let app = App::start(&yaml).await;
    let r = client()
        .get(app.url("/h"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-request-id", "lb-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-123");
    let json: Value = r.json().await.unwrap();
    assert_eq!(
        echoed(&json, "x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(echoed(&json, "x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echoed(&json, "x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
}

#[tokio::test]
async fn px09_connection_nominated_headers_are_removed() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let request = b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret, Keep-Alive\r\nX-Secret: 1\r\n\
Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Kept: yes\r\n\r\n";
    let response = raw(app.addr, request, BOUND).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = raw_json(&response);
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
        "connection",
    ] {
        assert_eq!(echoed(&json, gone), None, "{gone} must not be forwarded");
    }
    assert_eq!(echoed(&json, "x-kept").as_deref(), Some("yes"));
    assert_eq!(json["version"], "HTTP/1.1", "PX-15: no h2c upgrade");
}

#[tokio::test]
async fn px10_px11_cloakroom_cookies_stay_between_browser_and_cloakroom() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let json: Value = client()
        .get(app.url("/h"))
        .header("cookie", "theme=dark; cloakroom=abc; cloakroom-login=x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed(&json, "cookie").as_deref(), Some("theme=dark"));
    let r = client().get(app.url("/cookies")).send().await.unwrap();
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set, ["ok=1; Path=/"]);
}

/// An upstream that answers every request with `response`, then closes.
async fn fixed_upstream(response: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn px30_a_nameless_upstream_cookie_cannot_plant_cloakrooms_cookie() {
    let up = fixed_upstream(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: =cloakroom=evil; Path=/\r\nSet-Cookie: ==cloakroom-login=evil\r\n\
Set-Cookie: kept=1; Domainish=x\r\nSet-Cookie: wide=1; domain=localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .await;
    let app = App::start(&config(&[("/", &format!("http://{up}"), "")])).await;
    let r = client().get(app.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set, ["kept=1; Domainish=x"]);
}

#[tokio::test]
async fn px16_header_and_target_limits_answer_431_and_414() {
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")]) + "limits: {max_headers: 20, max_uri_bytes: 1KiB}\n";
    let app = App::start(&yaml).await;
    let mut many = client().get(app.url("/h"));
    for i in 0..25 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let r = many.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "too_large");
    let r = client()
        .get(app.url(&format!("/{}", "a".repeat(2000))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    let r = client()
        .get(app.url("/h"))
        .header("x-big", "b".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn px16_oversized_bodies_get_413_before_any_100_continue() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), ", max_body: 1KiB")])).await;
    let request = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    let response = raw(app.addr, request, Duration::from_secs(2)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(!response.contains("100 Continue"));
    assert!(response.contains("\"code\":\"too_large\""));
    assert_eq!(up.requests(), 0);

    // A chunked body has no length up front: it is cut off where it crosses the limit.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 512]))));
    let r = client()
        .post(app.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(up.seen.upload_bytes.load(std::sync::atomic::Ordering::SeqCst) <= 1024);
}

#[tokio::test]
async fn uf01_uf02_upstream_timeout_is_504_and_refused_connect_is_502() {
    let up = Upstream::start().await;
    let closed = free_addr();
    let app = App::start(&config(&[
        ("/slowpoke", &up.url(), ", timeout: 300ms, strip_prefix: true"),
        ("/gone", &format!("http://{closed}"), ""),
    ]))
    .await;
    let r = client().get(app.url("/slowpoke/sleep")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "upstream_timeout");
    let r = client().get(app.url("/gone")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("upstream_unavailable"));
    assert!(
        !body.contains(&closed.port().to_string()),
        "no upstream address in the body: {body}"
    );
}

#[tokio::test]
async fn px20_upstream_redirects_are_passed_back_not_followed() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let r = client().get(app.url("/redirect")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://elsewhere.invalid/next");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn slow_chunked_response_arrives_chunk_by_chunk() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let r = client().get(app.url("/slow")).send().await.unwrap();
    let mut body = r.bytes_stream();
    // The first chunk arrives while the upstream is still holding the second.
    let first = tokio::time::timeout(BOUND, body.next())
        .await
        .expect("first chunk")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    up.seen.release.notify_one();
    let second = tokio::time::timeout(BOUND, body.next())
        .await
        .expect("second chunk")
        .unwrap()
        .unwrap();
    assert_eq!(&second[..], b"second");
    assert!(body.next().await.is_none());
}

#[tokio::test]
async fn a_10_mb_upload_is_streamed_not_buffered() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), ", max_body: 20MiB")])).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }));
    let request = tokio::spawn(client().post(app.url("/upload")).body(body).send());
    let mib = Bytes::from(vec![7u8; 1 << 20]);
    tx.send(Ok(mib.clone())).await.unwrap();
    // The upstream holds the first MiB while nine are still unsent: nothing
    // waited for the whole body.
    let what = "first MiB reached the upstream before the rest was sent";
    until(BOUND, Duration::from_millis(10), what, async || {
        up.seen.upload_bytes.load(Ordering::SeqCst) >= 1 << 20
    })
    .await;
    for _ in 0..9 {
        tx.send(Ok(mib.clone())).await.unwrap();
    }
    drop(tx);
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (10u64 << 20).to_string());
}

#[tokio::test]
async fn px24_websocket_echo_through_the_proxy() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[
        ("/live", &up.url(), ", websocket: true, strip_prefix: true"),
        ("/", &up.url(), ""),
    ]))
    .await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/live/ws", app.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "cloakroom"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = tokio::time::timeout(BOUND, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();

    // Not on a route without `websocket: true`.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn px33_upstream_set_cookie_on_a_101_is_dropped() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[(
        "/live",
        &up.url(),
        ", websocket: true, strip_prefix: true",
    )]))
    .await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/live/ws-cookies", app.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let set: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set, ["ok=1; Path=/"], "as on any other answer (PX-11, PX-30)");
    // The tunnel itself is untouched.
    ws.send(Message::text("still open")).await.unwrap();
    let echo = tokio::time::timeout(BOUND, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "still open");
}

#[tokio::test]
async fn px31_credential_subprotocols_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[
        ("/live", &up.url(), ", websocket: true, strip_prefix: true"),
        (
            "/listed",
            &up.url(),
            ", websocket: true, strip_prefix: true, websocket_protocols: [graphql-ws]",
        ),
    ]))
    .await;
    // A handshake the echo upstream answers with what it received (200,
    // not 101), so the test sees the headers it got.
    let handshake = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: access_token.eyJhbGciOiJIUzI1NiJ9.e30.c2ln, chat, Bearer.abc, graphql-ws\r\n\r\n"
        )
    };
    for (path, forwarded) in [("/live/h", "chat, graphql-ws"), ("/listed/h", "graphql-ws")] {
        let response = raw(app.addr, handshake(path).as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        let json = raw_json(&response);
        assert_eq!(
            echoed(&json, "sec-websocket-protocol").as_deref(),
            Some(forwarded),
            "{path}"
        );
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_on_the_same_port() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let h2 = support::client_builder().http2_prior_knowledge().build().unwrap();
    let r = h2.post(app.url("/h2?x=1")).body("payload").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["uri"], "/h2?x=1");
    assert_eq!(json["body_len"], 7);
    assert_eq!(json["version"], "HTTP/1.1", "upstreams are spoken to in HTTP/1.1");
}

#[tokio::test]
async fn px19_absolute_form_targets_cannot_steer_the_upstream() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let request =
        b"GET http://evil.example/steal?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let response = raw(app.addr, request, BOUND).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = raw_json(&response);
    assert_eq!(json["uri"], "/steal?x=1");
    assert_eq!(echoed(&json, "host"), Some(up.addr.to_string()));
}

#[tokio::test]
async fn protected_routes_without_a_session_answer_401_or_redirect_pages() {
    let up = Upstream::start().await;
    let yaml = format!(
        "public_url: http://localhost:8080
oidc: {{issuer: 'http://localhost:1', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /app, upstream: '{u}', login_redirect: true}}
",
        u = up.url()
    );
    let app = App::start(&yaml).await;
    let r = client()
        .get(app.url("/api/me"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "login_required");
    let r = client()
        .post(app.url("/app/page"))
        .header("origin", "http://localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "never a redirect for a non-GET");
    let r = client().get(app.url("/app/page?tab=2")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/auth/login?return_to=%2Fapp%2Fpage%3Ftab%3D2"
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn px26_problem_responses_carry_security_headers() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/api", &up.url(), "")])).await;
    let r = client().get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn px22_health_endpoints_live_only_on_the_admin_listener() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/api", &up.url(), "")])).await;
    let admin = format!("http://{}", app.admin);
    let r = client().get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok\n".to_owned())
    );
    let r = client().get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client().get(app.url("/healthz")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn px18_slow_header_senders_are_cut_off() {
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")]) + "limits: {header_read_timeout: 1s}\n";
    let app = App::start(&yaml).await;
    // Half a request line, then silence: the connection is closed by the server.
    let started = std::time::Instant::now();
    let response = raw(app.addr, b"GET /h HTTP/1.1\r\nHost: x\r\nX-Slow: ", BOUND).await;
    assert!(
        started.elapsed() < BOUND,
        "closed by the server, not by the test's bound"
    );
    assert!(!response.contains("200 OK"), "{response}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn px27_idle_sockets_from_one_address_neither_starve_others_nor_stay_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    // Fewer slots in all than the flood below: without a cap per address,
    // the flood would take every one.
    let yaml = config(&[("/", &up.url(), "")])
        + "limits: {max_connections: 16, max_connections_per_ip: 4, first_bytes_timeout: 3s, idle_timeout: 1s}\n";
    let app = App::start(&yaml).await;
    let prefaces: [&[u8]; 3] = [b"", b"P", b"PRI * HTTP/2.0\r\n"];
    let mut flood = Vec::new();
    for i in 0..24 {
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        socket.write_all(prefaces[i % 3]).await.unwrap();
        flood.push(socket);
    }

    // A client from another loopback address is served while the flood is open.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(app.addr).await.unwrap();
    other
        .write_all(b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, other.read_to_end(&mut answer))
        .await
        .expect("another address is served during the flood")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Served while the flood still held its sockets, not after their
    // first-bytes timeout had freed the slots.
    let mut still_open = 0;
    for socket in &mut flood {
        let mut buf = [0u8; 1];
        let quiet = tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buf)).await;
        still_open += usize::from(quiet.is_err());
    }
    assert_eq!(
        still_open, 4,
        "the flood's sockets within its cap were still open"
    );

    // The server closes every flood socket: those over the cap at once, the
    // rest at the first-bytes timeout.
    for (i, mut socket) in flood.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(BOUND, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {}
            other => panic!("flood socket {i} ({:?}) still open: {other:?}", prefaces[i % 3]),
        }
    }
    assert_eq!(up.requests(), 1);

    // The slots came back; an HTTP/2 connection with no stream open is
    // closed at the idle timeout, though it sent a full preface.
    let mut h2 = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frames = Vec::new();
    tokio::time::timeout(BOUND, h2.read_to_end(&mut frames))
        .await
        .expect("idle HTTP/2 connection closed by the server")
        .ok();
    assert_eq!(client().get(app.url("/h")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn px27_open_websocket_tunnels_count_against_their_address_cap() {
    let up = Upstream::start().await;
    let yaml = config(&[("/live", &up.url(), ", websocket: true, strip_prefix: true")])
        + "limits: {max_connections_per_ip: 2}\n";
    let app = App::start(&yaml).await;
    let url = format!("ws://{}/live/ws", app.addr);
    let (first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Both tunnels are open: a third connection from the address is refused.
    let refused = raw(app.addr, b"GET /live/x HTTP/1.1\r\nHost: x\r\n\r\n", BOUND).await;
    assert_eq!(refused, "", "closed at accept");
    second.close(None).await.unwrap();
    drop(second);
    // Its place comes back once the tunnel has closed.
    until(
        BOUND,
        Duration::from_millis(20),
        "a place under the cap again",
        async || {
            let request = b"GET /live/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            raw(app.addr, request, BOUND).await.starts_with("HTTP/1.1 200")
        },
    )
    .await;
    drop(first);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let up = Upstream::start().await;
    let draining = Draining::start(&up).await;
    // New connections are refused once the listener is closed.
    let addr = draining.app.addr;
    until(BOUND, Duration::from_millis(10), "listener closed", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    draining.finish(&up).await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start().await;
    let app = App::start(&(config(&[("/", &up.url(), "")]) + "workers: 1\n")).await;
    for i in 0..5 {
        let r = client().get(app.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(up.requests(), 5);
    assert_eq!(
        up.seen.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection served all five"
    );
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_replaced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers one request per connection, then hangs up
    // without saying so in a header.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let app = App::start(&(config(&[("/", &format!("http://{addr}"), "")]) + "workers: 1\n")).await;
    for _ in 0..3 {
        let r = client().get(app.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn px12_smuggling_forms_are_refused_or_never_reach_the_upstream_ambiguous() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    for (name, request) in [
        (
            "CL+TE",
            &b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        (
            "TE+CL",
            &b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        ("two lengths", &b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"[..]),
        ("signed length", &b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd"[..]),
        ("chunked not last", &b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"[..]),
        ("obs-fold", &b"GET /h HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"[..]),
        ("chunk size overflow", &b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n"[..]),
    ] {
        let response = raw(app.addr, request, BOUND).await;
        let forwarded = up.requests();
        if response.starts_with("HTTP/1.1 400") {
            // Refused, possibly after the headers were forwarded (a broken
            // chunk is only found mid-body): the upstream exchange is aborted.
            assert!(!response.contains("200 OK"), "{name}: nothing after the 400: {response}");
            continue;
        }
        // Processed by Transfer-Encoding per RFC 9112 §6.1: the upstream must
        // never get both framings, and the connection must end after it.
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        assert!(!response.contains("/smuggled"), "{name}: the trailing bytes became a request: {response}");
        let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
        let json: Value = serde_json::from_str(body.split("\r\n").next().unwrap_or(body)).unwrap_or_default();
        assert!(echoed(&json, "content-length").is_none() || echoed(&json, "transfer-encoding").is_none(), "{name}");
        assert!(forwarded >= 1, "{name}");
    }
}

#[tokio::test]
async fn px12_a_repeated_transfer_encoding_is_refused_and_the_connection_closed() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    for (name, request) in [
        (
            "two lines",
            &b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        (
            "one line, twice",
            b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n\
0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            // Coding names are case-insensitive (RFC 9112 §7, PX-39): this
            // is `chunked` twice.
            "twice, in two cases",
            b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, CHUNKED\r\n\r\n\
0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "another coding first",
            b"POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
    ] {
        let started = std::time::Instant::now();
        let response = raw(app.addr, request, BOUND).await;
        assert!(started.elapsed() < BOUND, "{name}: the server closed the connection");
        assert!(response.starts_with("HTTP/1.1 400"), "{name}: {response}");
        assert!(response.to_ascii_lowercase().contains("connection: close"), "{name}: {response}");
        assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{name}: one answer only: {response}");
    }
    assert_eq!(up.requests(), 0, "nothing forwarded");
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` an h2c server announces first.
async fn h2_max_concurrent_streams(addr: std::net::SocketAddr) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // The server's preface is a SETTINGS frame (RFC 9113 §3.4): a 9-byte
    // head, then 6-byte (id, value) pairs.
    let mut head = [0u8; 9];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 0x4, "a SETTINGS frame first");
    let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
    socket.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == 0x3)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
}

async fn over_limit_refusals(app: &App) -> String {
    let text = client()
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("cloakroom_over_limit_refusals_total{limit=\"requests_per_ip\"}"))
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn px35_streams_per_connection_and_requests_in_flight_per_address_are_bounded() {
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")])
        + "limits: {max_streams_per_connection: 10, max_requests_per_ip: 16}\n";
    let app = App::start(&yaml).await;
    assert_eq!(h2_max_concurrent_streams(app.addr).await, Some(10));

    // Four h2c connections from one address, ten streams each, to a route
    // that holds every request.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let h2 = support::client_builder().http2_prior_knowledge().build().unwrap();
        for _ in 0..10 {
            let (h2, url) = (h2.clone(), app.url("/hold"));
            calls.spawn(async move {
                let r = h2.get(url).send().await.unwrap();
                assert_eq!(r.version(), reqwest::Version::HTTP_2);
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), retry, r.text().await.unwrap())
            });
        }
    }
    // Beyond 16 in flight, each is answered at once: 429, `Retry-After`.
    for _ in 0..24 {
        let next = tokio::time::timeout(BOUND, calls.join_next()).await;
        let (status, retry, body) = next.expect("the excess is answered at once").unwrap().unwrap();
        assert_eq!(status, 429, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("\"code\":\"too_many_requests\""), "{body}");
    }
    until(
        BOUND,
        Duration::from_millis(20),
        "16 held at the upstream",
        async || up.held() == 16,
    )
    .await;
    assert_eq!(
        over_limit_refusals(&app).await,
        "cloakroom_over_limit_refusals_total{limit=\"requests_per_ip\"} 24"
    );

    // Another address is served meanwhile.
    let other = support::client_builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    assert_eq!(other.get(app.url("/h")).send().await.unwrap().status(), 200);

    up.let_go();
    while let Some(done) = tokio::time::timeout(BOUND, calls.join_next()).await.unwrap() {
        assert_eq!(done.unwrap().0, 200);
    }
    assert_eq!(up.seen.most_held.load(std::sync::atomic::Ordering::SeqCst), 16);
    // The places came back with the answers.
    assert_eq!(client().get(app.url("/h")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn px35_behind_a_trusted_proxy_each_forwarded_address_has_its_own_cap() {
    let up = Upstream::start().await;
    let yaml = config(&[("/", &up.url(), "")])
        + "trusted_proxies: [127.0.0.1/32]\nlimits: {max_requests_per_ip: 2}\n";
    let app = App::start(&yaml).await;
    let from = |client: &'static str| {
        let url = app.url("/hold");
        async move {
            let r = support::client()
                .get(url)
                .header("x-forwarded-for", client)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let first = tokio::spawn(from("203.0.113.1"));
    let second = tokio::spawn(from("203.0.113.1"));
    until(BOUND, Duration::from_millis(20), "two held", async || {
        up.held() == 2
    })
    .await;
    assert_eq!(from("203.0.113.1").await, 429, "the same client, a third time");
    let other = tokio::spawn(from("203.0.113.2"));
    until(
        BOUND,
        Duration::from_millis(20),
        "another client held",
        async || up.held() == 3,
    )
    .await;
    up.let_go();
    for call in [first, second, other] {
        assert_eq!(call.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn px39_two_host_headers_are_refused() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    let response = raw(
        app.addr,
        b"GET /h HTTP/1.1\r\nHost: localhost:8080\r\nHost: evil.example\r\n\r\n",
        BOUND,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert_eq!(up.requests(), 0, "nothing forwarded");
}

#[tokio::test]
async fn px39_transfer_coding_names_are_case_insensitive_and_whitespace_is_not_part_of_them() {
    let up = Upstream::start().await;
    let app = App::start(&config(&[("/", &up.url(), "")])).await;
    for (name, te) in [
        ("upper case", "CHUNKED"),
        ("mixed case", "Chunked"),
        ("whitespace around", " \tchunked\t "),
    ] {
        let request = format!(
            "POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let response = raw(app.addr, request.as_bytes(), BOUND).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        let json = raw_json(&response);
        assert_eq!(json["body_len"], 5, "{name}: the body read as chunked");
    }
}

/// Sends the request head, then `body` one byte every `every` from a task
/// of its own; the answer is read until the server closes the connection or
/// `BOUND` passes.
async fn trickle(addr: std::net::SocketAddr, head: &str, body: &'static [u8], every: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let trickler = tokio::spawn(async move {
        for byte in body.chunks(1) {
            if write.write_all(byte).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        // Then nothing more, the connection left open.
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, read.read_to_end(&mut out)).await;
    trickler.abort();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn px34_a_trickled_body_cloakroom_reads_itself_is_cut_off_at_its_deadline() {
    let yaml = format!(
        "public_url: http://localhost:8080
log: {{level: warn}}
oidc: {{issuer: 'http://localhost:1', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
limits: {{body_read_timeout: 1s}}
admin: {{api_token: '{token}'}}
routes:
  - {{path: /, upstream: 'http://localhost:1', auth: none}}
",
        token = "t".repeat(32)
    );
    let app = App::start(&yaml).await;
    // A logout token that never finishes arriving: answered at the
    // deadline, and the connection closed.
    let started = std::time::Instant::now();
    let response = trickle(
        app.addr,
        "POST /auth/backchannel-logout HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 65000\r\n\r\n",
        b"logout_token=eyJhbGciOiJSUzI1NiJ9",
        Duration::from_millis(200),
    )
    .await;
    assert_timed_out(started, &response);

    // The endpoints that take no body answer without waiting for one, and
    // close the connection rather than read the rest.
    for (addr, head) in [
        (app.addr, "DELETE /auth/sessions/abc HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Length: 65000\r\n\r\n"),
        (app.addr, "POST /auth/logout HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Length: 65000\r\n\r\n"),
        (
            app.admin,
            "DELETE /admin/sessions?sub=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tttttttttttttttttttttttttttttttt\r\nContent-Length: 65000\r\n\r\n",
        ),
    ] {
        let started = std::time::Instant::now();
        let response = trickle(addr, head, b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", Duration::from_millis(200)).await;
        assert!(started.elapsed() < BOUND, "{head}: closed by the server: {response}");
        assert!(response.starts_with("HTTP/1.1 "), "{head}: answered: {response}");
        assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{head}: {response}");
    }
}

/// PX-34: answered 408 `request_timeout` within the test's bound, with the
/// connection closed.
fn assert_timed_out(started: std::time::Instant, response: &str) {
    assert!(started.elapsed() < BOUND, "closed by the server: {response}");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"code\":\"request_timeout\""), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}

#[tokio::test]
async fn px34_a_stalled_proxied_body_is_a_408_not_a_504() {
    let up = Upstream::start().await;
    // The route waits 30 s for its upstream; the body may pause 1 s.
    let yaml = config(&[("/", &up.url(), ", timeout: 30s")]) + "limits: {body_idle_timeout: 1s}\n";
    let app = App::start(&yaml).await;
    let started = std::time::Instant::now();
    let response = trickle(
        app.addr,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        b"0123456789",
        Duration::from_millis(100),
    )
    .await;
    assert_timed_out(started, &response);
    // The upstream had the bytes that came, and nothing was made up.
    assert_eq!(up.seen.upload_bytes.load(std::sync::atomic::Ordering::SeqCst), 10);

    // A body that keeps moving, however slowly, is not cut off.
    let response = trickle(
        app.addr,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        b"0123456789ab",
        Duration::from_millis(300),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("12"), "{response}");
}
