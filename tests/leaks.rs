//! PX-25: across a whole session (login, API calls, token exchanges, user
//! info, logout) no response cloakroom writes and no log line it emits
//! contains a token, an authorization code, the client secret or a session
//! cookie value; with DPoP (`oidc.dpop`) too, nor a proof.
//!
//! This test binary captures every log line of the process at debug level,
//! so it holds this one test only.

mod support;

use support::dpop_api::{dpop, Key};
use support::idp::{world, world_oidc, World};

#[tokio::test]
async fn px25_no_secret_reaches_a_response_or_a_log_line() {
    let logs = support::logs::Logs::capture("debug");
    let key = Key::new();
    // Token exchange too: one the IdP makes (its upstream is down, so the
    // answer is cloakroom's own), one it refuses.
    let exchanges = "  - {path: /ledger, upstream: 'http://127.0.0.1:9', token: exchange, exchange: {audience: 'urn:cloakroom:test:ledger'}}
  - {path: /refused, upstream: 'http://127.0.0.1:9', token: exchange, exchange: {audience: 'urn:cloakroom:test:unknown'}}
";
    for w in [
        world(exchanges).await,
        world_oidc(&dpop(&[("k1", &key)]), serde_json::json!({})).await,
    ] {
        session_leaks_nothing(&w, &logs).await;
    }
}

async fn session_leaks_nothing(w: &World, logs: &support::logs::Logs) {
    let browser = support::Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    assert_eq!(browser.get(&callback, &[]).await.status, 302);
    let cookie = browser.cookie(&w.base, "cloakroom").expect("session cookie");
    let api = w
        .api(
            &browser,
            reqwest::Method::POST,
            &[("x-csrf", "1"), ("origin", &w.base)],
        )
        .await;
    assert_eq!(api.status, 200);
    // With DPoP, the proof the upstream got is as secret as a token.
    let proof = support::echoed(&api.json(), "dpop");
    assert_eq!(proof.is_some(), w.yaml.contains("dpop:"));
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
    if w.yaml.contains("token: exchange") {
        let exchanged = browser.fetch(&w.url("/ledger/entries")).await;
        assert_eq!(
            exchanged.json()["code"],
            "upstream_unavailable",
            "exchanged, then sent"
        );
        let refused = browser.fetch(&w.url("/refused")).await;
        assert_eq!(refused.json()["code"], "token_exchange_refused");
    }
    // A failing call too, so error paths are logged.
    assert_eq!(
        w.api(&browser, reqwest::Method::POST, &[("x-csrf", "1")])
            .await
            .status,
        403
    );
    let logout = w.logout(&browser).await;
    assert_eq!(logout.status, 200);
    assert_eq!(w.api_get(&browser).await.status, 401);

    let issued = w.idp.issued().await;
    assert!(
        issued.len() >= 3,
        "access, refresh and ID token issued: {}",
        issued.len()
    );
    let mut secrets: Vec<(&str, String)> = issued.into_iter().map(|t| ("token", t)).collect();
    secrets.push(("authorization code", code));
    secrets.push(("client secret", "test-secret".into()));
    secrets.push(("session cookie", cookie));
    secrets.extend(proof.map(|p| ("DPoP proof", p)));

    let log_text = logs.text();
    assert!(log_text.contains("cloakroom::access"), "logs were captured");
    // What the browser got from cloakroom itself; proxied bodies are the
    // upstream's (the test echo server repeats its request headers).
    let responses: Vec<(String, String)> = browser
        .seen
        .lock()
        .unwrap()
        .responses
        .iter()
        .filter(|(_, t)| !t.contains("\"body_len\""))
        .cloned()
        .collect();
    for (what, secret) in &secrets {
        for line in log_text.lines() {
            assert!(!line.contains(secret.as_str()), "{what} in a log line: {line}");
        }
        for (url, text) in &responses {
            // The session cookie is legitimately set by the callback response.
            if *what == "session cookie" && url.contains("/auth/callback") {
                continue;
            }
            assert!(!text.contains(secret.as_str()), "{what} in a response: {text}");
        }
    }
}
