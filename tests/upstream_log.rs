//! UF-02: the log line of a 502 names the upstream that failed, so an
//! operator can tell which one is down; the response body still does not.
//!
//! This test binary captures every log line of the process, so it holds
//! this one test only.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::{client, config, free_addr, App};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn uf02_a_502_log_line_names_the_upstream_that_failed() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("warn")
        .with_writer(move || writer.clone())
        .init();

    let closed = free_addr();
    let app = App::start(&config(&[("/gone", &format!("http://{closed}"), "")])).await;
    let r = client().get(app.url("/gone/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!r.text().await.unwrap().contains(&closed.to_string()));

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(&rid) && l.contains("request failed"))
        .unwrap_or_else(|| panic!("no failure line for {rid}:\n{text}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["fields"]["upstream"], format!("http://{closed}"), "{line}");
}
