//! UF-02: the log line of a 502 names the upstream that failed, so an
//! operator can tell which one is down; the response body still does not.
//!
//! This test binary captures every log line of the process, so it holds
//! this one test only.

mod support;

use support::{client, config, free_addr, App};

#[tokio::test]
async fn uf02_a_502_log_line_names_the_upstream_that_failed() {
    let logs = support::logs::Logs::capture("warn");

    let closed = free_addr();
    let app = App::start(&config(&[("/gone", &format!("http://{closed}"), "")])).await;
    let r = client().get(app.url("/gone/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!r.text().await.unwrap().contains(&closed.to_string()));

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains(&rid) && l.contains("request failed"))
        .unwrap_or_else(|| panic!("no failure line for {rid}:\n{text}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["fields"]["upstream"], format!("http://{closed}"), "{line}");
}
