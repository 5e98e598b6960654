//! Traces over OTLP/HTTP: cloakroom (its own process, JSON logs) exports to
//! a collector in this test, which decodes what it receives with the
//! OTLP protobuf types.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use support::idp::Idp;
use support::{echoed, free_port, Browser, Process, Upstream, COOKIE_KEY};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP trace receiver: `POST /v1/traces`, protobuf.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Requests not to `/v1/traces` or not protobuf.
    refused: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let serving = collector.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let collector = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let collector = collector.clone();
                        async move {
                            let ok = request.method() == http::Method::POST
                                && request.uri().path() == "/v1/traces"
                                && request.headers()["content-type"] == "application/x-protobuf";
                            let what = format!("{} {}", request.method(), request.uri());
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            if ok {
                                collector.receive(&body);
                            } else {
                                collector.refused.lock().unwrap().push(what);
                            }
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(if ok { 200 } else { 400 })
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (collector, addr)
    }

    fn receive(&self, body: &[u8]) {
        let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
        let mut spans = self.spans.lock().unwrap();
        for resource in export.resource_spans {
            let resource_attrs = resource
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource_attrs.get("service.name").cloned().unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        service: service.clone(),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits for a span that `matches`.
    async fn find(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.spans().into_iter().find(&matches) {
                return span;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span {what} in {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn attributes(list: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(trace id, parent id)` of a `traceparent` value.
fn traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// A client connecting from `local` (a loopback address).
fn client_from(local: &str) -> reqwest::Client {
    support::client_builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_request_is_one_trace_from_the_proxy_in_front_to_the_upstream() {
    let (collector, otlp) = Collector::start().await;
    let up = Upstream::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
    }));
    let yaml = format!(
        "public_url: {base}
log: {{format: json, level: info}}
trusted_proxies: [127.0.0.2/32]
telemetry: {{otlp: {{endpoint: 'http://{otlp}', service_name: cloakroom-test, sample_ratio: 1.0}}}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /app, upstream: '{u}', login_redirect: true}}
  - {{path: /, upstream: '{u}', auth: none}}
",
        iss = idp.issuer,
        u = up.url()
    );
    // Export every 100 ms rather than every 5 s.
    let process = Process::start_logged_with_env(port, &yaml, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    process.wait_ready();

    // === a real login, then an API call with the session ===
    let browser = Browser::new(&base);
    let (page, _) = browser
        .navigate(&format!("{base}/auth/login?return_to=/app/home"), "alice")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let api = browser.fetch(&format!("{base}/api/orders")).await;
    assert_eq!(api.status, 200, "{}", api.body);
    let seen = api.json();
    let request_id = api.headers["x-request-id"].to_str().unwrap().to_owned();
    let sent = echoed(&seen, "traceparent").expect("the upstream received a traceparent");
    let (trace_id, upstream_parent) = traceparent(&sent);

    // The server span of the API call, its route, method, status.
    let server = collector
        .find("GET /api", |s| {
            s.kind == SpanKind::Server as i32
                && s.attributes.get("http.route").map(String::as_str) == Some("/api")
        })
        .await;
    assert_eq!(server.service, "cloakroom-test");
    assert_eq!(server.name, "GET /api");
    assert_eq!(server.attributes["http.request.method"], "GET");
    assert_eq!(server.attributes["http.response.status_code"], "200");
    assert_eq!(
        server.trace_id, trace_id,
        "the upstream's traceparent continues the request's trace"
    );
    assert_eq!(server.parent, "", "a browser's request starts its trace");

    // Its children: the session store, and the upstream call whose span
    // the upstream's traceparent names as parent.
    let store = collector
        .find("store under GET /api", |s| {
            s.parent == server.span_id && s.name.starts_with("store ")
        })
        .await;
    assert_eq!(store.attributes["db.system.name"], "memory");
    assert_eq!(store.kind, SpanKind::Client as i32);
    let upstream = collector
        .find("upstream under GET /api", |s| {
            s.parent == server.span_id && s.name == "GET" && s.kind == SpanKind::Client as i32
        })
        .await;
    assert_eq!(upstream.span_id, upstream_parent);
    assert_eq!(upstream.trace_id, trace_id);
    assert_eq!(upstream.attributes["http.response.status_code"], "200");

    // The login: the callback's server span has the IdP token call below it.
    let token = collector.find("idp token", |s| s.name == "idp token").await;
    let callback = collector
        .find("the callback's span", |s| s.span_id == token.parent)
        .await;
    assert_eq!(callback.kind, SpanKind::Server as i32);
    assert_eq!(token.trace_id, callback.trace_id);
    assert_eq!(token.attributes["http.request.method"], "POST");
    assert_eq!(token.attributes["http.response.status_code"], "200");

    // The access log line of the API call carries the trace id.
    let line = poll_log(&process, |l| l["request_id"] == request_id.as_str()).await;
    assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
    assert_eq!(line["target"], "cloakroom::access", "{line}");

    // === incoming traceparent: adopted from a trusted proxy only ===
    let given_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let given = format!("00-{given_trace}-00f067aa0ba902b7-01");
    let untrusted = client_from("127.0.0.1")
        .get(format!("{base}/"))
        .header("traceparent", &given)
        .header("tracestate", "vendor=client")
        .send()
        .await
        .unwrap();
    assert_eq!(untrusted.status(), 200);
    let untrusted: serde_json::Value = untrusted.json().await.unwrap();
    let (untrusted_trace, _) =
        traceparent(&echoed(&untrusted, "traceparent").unwrap_or_else(|| panic!("{untrusted}")));
    assert_ne!(
        untrusted_trace, given_trace,
        "a client's traceparent is not continued"
    );
    assert_eq!(
        echoed(&untrusted, "tracestate"),
        None,
        "nor its tracestate passed on"
    );

    let trusted = client_from("127.0.0.2")
        .get(format!("{base}/"))
        .header("traceparent", &given)
        .send()
        .await
        .unwrap();
    assert_eq!(trusted.status(), 200);
    let trusted: serde_json::Value = trusted.json().await.unwrap();
    let (trusted_trace, trusted_parent) = traceparent(&echoed(&trusted, "traceparent").unwrap());
    assert_eq!(trusted_trace, given_trace, "a trusted proxy's trace is continued");
    let proxied = collector
        .find("the trusted proxy's request", |s| {
            s.trace_id == given_trace && s.kind == SpanKind::Server as i32
        })
        .await;
    assert_eq!(
        proxied.parent, "00f067aa0ba902b7",
        "the proxy's span is the parent"
    );
    collector
        .find("the trusted request's upstream span", |s| {
            s.span_id == trusted_parent && s.parent == proxied.span_id
        })
        .await;

    // === nothing secret in any span ===
    let cookie = browser
        .cookie(&base, support::SESSION_COOKIE)
        .expect("a session cookie");
    let mut secrets = idp.issued().await;
    secrets.push(cookie);
    secrets.push("test-secret".to_owned());
    assert!(secrets.len() >= 3, "tokens were issued");
    for span in collector.spans() {
        for (key, value) in &span.attributes {
            assert!(!key.to_ascii_lowercase().contains("cookie"), "{span:?}");
            assert!(!key.to_ascii_lowercase().contains("authorization"), "{span:?}");
            for secret in &secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "a secret in span {} ({key})",
                    span.name
                );
            }
            assert!(
                !value.contains('?'),
                "no query in span {} ({key}: {value})",
                span.name
            );
        }
    }
    assert!(collector.refused.lock().unwrap().is_empty());
}

#[tokio::test]
async fn px38_client_trace_context_never_reaches_the_upstream() {
    let (_collector, otlp) = Collector::start().await;
    let up = Upstream::start().await;
    let given_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let given = format!("00-{given_trace}-00f067aa0ba902b7-01");
    let sent = [
        ("traceparent", given.as_str()),
        ("tracestate", "vendor=front"),
        ("baggage", "tenant=other,role=admin"),
    ];
    let call = |from: &'static str, base: String| async move {
        let mut request = client_from(from).get(format!("{base}/"));
        for (name, value) in sent {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await.unwrap()
    };
    for traces in [
        "",
        &format!("telemetry: {{otlp: {{endpoint: 'http://{otlp}'}}}}\n"),
    ] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let yaml = format!(
            "public_url: {base}
trusted_proxies: [127.0.0.2/32]
{traces}routes:
  - {{path: /, upstream: '{u}', auth: none}}
",
            u = up.url()
        );
        let process = Process::start_at(port, &yaml);
        process.wait_ready();
        let on = !traces.is_empty();

        // A client: none of it reaches the upstream; with traces on, the
        // upstream gets cloakroom's own trace, in a trace of its own.
        let seen = call("127.0.0.1", base.clone()).await;
        assert_eq!(echoed(&seen, "baggage"), None, "traces on: {on}");
        assert_eq!(echoed(&seen, "tracestate"), None, "traces on: {on}");
        match echoed(&seen, "traceparent") {
            Some(ours) if on => assert_ne!(traceparent(&ours).0, given_trace),
            other => assert_eq!(other, None, "traces off: nothing is made up"),
        }

        // A trusted proxy: its baggage and tracestate pass on, and its trace
        // continues (through cloakroom's upstream span when traces are on).
        let seen = call("127.0.0.2", base).await;
        assert_eq!(
            echoed(&seen, "baggage").as_deref(),
            Some("tenant=other,role=admin")
        );
        assert_eq!(echoed(&seen, "tracestate").as_deref(), Some("vendor=front"));
        let parent = echoed(&seen, "traceparent").expect("a traceparent");
        assert_eq!(traceparent(&parent).0, given_trace, "traces on: {on}");
        assert_eq!(parent == given, !on, "traces on: {on}");
    }
}

/// Waits for a JSON log line of `process` that `matches`.
async fn poll_log(process: &Process, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = process.logs().into_iter().find(&matches) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such log line in {:#?}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
