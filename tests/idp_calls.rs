//! How cloakroom calls the IdP, against the real oidc-provider: pushed
//! authorization requests (RFC 9126, `oidc.par`) and client assertions
//! signed with the client's own key (`private_key_jwt`, RFC 7523).

mod support;

use std::io::Write;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use support::fake_idp::{rotated_jwk, rsa_jwk, ATTACKER_PEM, ROTATED_PEM, RSA_PEM};
use support::idp::{world_full, world_oidc, Idp, World};
use support::{echoed, Browser, Upstream, COOKIE_KEY};

/// For a 5 s access token refreshed 2 s before it expires: past its
/// refresh point, before its end.
const DUE: Duration = Duration::from_millis(3500);

/// The RFC 7638 thumbprint of `pem`'s public key: the `kid` cloakroom
/// derives when `client_key_id` is not set.
fn thumbprint(pem: &str) -> String {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    Jwk::from_encoding_key(&key, Algorithm::ES256)
        .unwrap()
        .thumbprint(ThumbprintHash::SHA256)
        .unwrap()
}

/// `pem` in a file of its own, for `client_key_file`.
fn key_file(pem: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pem.as_bytes()).unwrap();
    file
}

fn names(params: &serde_json::Map<String, Value>) -> Vec<&str> {
    let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// The access token the upstream saw on `GET /api/orders`.
async fn bearer(w: &World, browser: &Browser) -> String {
    let r = w.api_get(browser).await;
    assert_eq!(r.status, 200, "{}", r.body);
    echoed(&r.json(), "authorization").expect("a bearer reached the upstream")
}

// === PAR ===

#[tokio::test]
async fn par_is_used_when_advertised_and_the_browser_carries_only_client_id_and_request_uri() {
    let w = world_oidc(
        "authorize_params: {ui_locales: fr}, login_params: [login_hint]",
        json!({"par": true}),
    )
    .await;
    let browser = Browser::new(&w.base);
    let (page, _) = browser
        .navigate(
            &w.url("/auth/login?return_to=/app/home&login_hint=alice%40example.test"),
            "alice",
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/app/home"), "{}", page.url);

    let asked = w.idp.authorizations().await;
    assert_eq!(asked.len(), 1);
    assert_eq!(names(&asked[0]), ["client_id", "request_uri"], "{asked:?}");
    assert_eq!(asked[0]["client_id"], "cloakroom");
    let pushed = w.idp.pushed().await;
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    let pushed = &pushed[0];
    for name in [
        "response_type",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        assert!(pushed.contains_key(name), "{name} pushed: {pushed:?}");
    }
    assert_eq!(pushed["ui_locales"], "fr", "oidc.authorize_params pushed");
    assert_eq!(
        pushed["login_hint"], "alice@example.test",
        "oidc.login_params pushed"
    );
    assert_eq!(pushed["redirect_uri"], w.url("/auth/callback"));
    bearer(&w, &browser).await;
}

#[tokio::test]
async fn par_a_login_still_works_when_the_idp_requires_it() {
    for par in ["", "par: required"] {
        let w = world_oidc(par, json!({"par": true, "require_par": true})).await;
        let (browser, page) = w.login("alice").await;
        assert_eq!(page.status, 200, "{par}: {}", page.body);
        assert_eq!(w.idp.pushed().await.len(), 1, "{par}");
        bearer(&w, &browser).await;
    }
}

#[tokio::test]
async fn par_off_against_an_idp_that_requires_it_is_refused_by_name() {
    let w = world_oidc("par: off", json!({"par": true, "require_par": true})).await;
    assert_eq!(login_status(&w).await, 503, "idp_unavailable");
    let body = readyz_text(&w).await;
    assert!(body.contains(r#""state":"failed""#), "{body}");
    assert!(
        body.contains("oidc.par is off, but the IdP metadata says require_pushed_authorization_requests"),
        "{body}"
    );
    assert!(
        w.idp.authorizations().await.is_empty(),
        "the browser was never sent"
    );
}

#[tokio::test]
async fn par_required_against_an_idp_without_it_is_refused_by_name() {
    let w = world_oidc("par: required", json!({})).await;
    assert_eq!(login_status(&w).await, 503);
    let body = readyz_text(&w).await;
    assert!(
        body.contains(
            "oidc.par is required, but the IdP metadata names no pushed_authorization_request_endpoint"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn par_refused_by_the_idp_is_a_502_with_a_stable_code() {
    // The IdP refuses the push: this client's assertions are signed with a
    // key it does not know.
    let key = key_file(ATTACKER_PEM);
    let oidc = format!(
        "token_endpoint_auth: private_key_jwt, client_key_file: '{}', client_key_id: rp-1",
        key.path().display()
    );
    let settings = json!({
        "par": true,
        "token_endpoint_auth_method": "private_key_jwt",
        "client_jwks": {"keys": [rotated_jwk("rp-1")]},
    });
    let w = world_oidc(&oidc, settings).await;
    let r = support::client()
        .get(w.url("/auth/login"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("idp_bad_response"), "{body}");
    assert!(
        w.idp.authorizations().await.is_empty(),
        "the browser was never sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lg24_pushed_logins_in_flight_are_bounded_and_signed_in_users_keep_working() {
    use cloakroom::oidc::par::MAX_IN_FLIGHT;
    // The IdP holds every push, so the flood's stay in flight.
    let held = world_oidc("", json!({"par": true, "par_delay": 5000})).await;
    let (signed_in, _) = held.login("bob").await;
    let client = support::client();
    let flood = (0..MAX_IN_FLIGHT + 16).map(|_| {
        let request = client.get(held.url("/auth/login"));
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    let flood = futures_util::future::join_all(flood);
    // A signed-in user needs no login: untouched by the flood.
    let during = bearer(&held, &signed_in);
    let (answers, _) = tokio::join!(flood, during);
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s != 302).collect();
    assert!(
        !refused.is_empty(),
        "more logins than the bound were pushed at once"
    );
    assert!(
        refused
            .iter()
            .all(|(s, b)| *s == 503 && b.contains("idp_unavailable")),
        "{refused:?}"
    );
    let stats = held.idp.stats().await;
    let most = stats["par_in_flight_max"].as_u64().unwrap();
    assert!(most <= MAX_IN_FLIGHT as u64, "{most} pushes at once: {stats}");
    assert_eq!(
        held.idp.pushed().await.len(),
        1 + answers.len() - refused.len(),
        "bob's, then one per login sent on"
    );
}

// === private_key_jwt ===

#[tokio::test]
async fn private_key_jwt_login_refresh_and_logout_revocation_authenticate_with_the_key() {
    let key = key_file(RSA_PEM);
    let oidc = format!(
        "token_endpoint_auth: private_key_jwt, client_key_file: '{}', client_key_id: rp-1",
        key.path().display()
    );
    let settings = json!({
        "token_endpoint_auth_method": "private_key_jwt",
        "client_jwks": {"keys": [rsa_jwk("rp-1")]},
        "access_token_ttl": 5,
    });
    let w = world_full(
        "session: {refresh_skew: 2s}",
        &oidc,
        settings,
        1,
        cloakroom::Clock::system(),
    )
    .await;
    assert!(!w.yaml.contains("client_secret"), "{}", w.yaml);
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let first = bearer(&w, &browser).await;
    w.clock.advance(DUE);
    let second = bearer(&w, &browser).await;
    assert_ne!(first, second, "refreshed");
    assert_eq!(w.logout(&browser).await.status, 200);
    let stats = w.idp.stats_when(|s| s["revocations"] == 1).await;
    assert_eq!(stats["grants"]["authorization_code"], 1, "{stats}");
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
    assert_eq!(stats["revocations"], 1, "revoked with the assertion: {stats}");
}

#[tokio::test]
async fn private_key_jwt_signs_pushed_requests_with_a_derived_kid() {
    let key = key_file(ROTATED_PEM);
    let oidc = format!(
        "token_endpoint_auth: private_key_jwt, client_key_file: '{}'",
        key.path().display()
    );
    let settings = json!({
        "par": true,
        "require_par": true,
        "token_endpoint_auth_method": "private_key_jwt",
        "client_jwks": {"keys": [rotated_jwk(&thumbprint(ROTATED_PEM))]},
    });
    let w = world_oidc(&oidc, settings).await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    // The IdP takes a pushed request from this client only with its
    // assertion, and requires PAR: the login proves both.
    assert_eq!(w.idp.pushed().await.len(), 1);
    bearer(&w, &browser).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_with_a_key_the_idp_does_not_know_is_refused_and_logs_no_assertion() {
    let up = Upstream::start().await;
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/callback")],
        "token_endpoint_auth_method": "private_key_jwt",
        "client_jwks": {"keys": [rotated_jwk("rp-1")]},
    }));
    // Signed with another key under the registered key's name.
    let key = key_file(ATTACKER_PEM);
    let app = support::Process::start_logged_at(
        port,
        &format!(
            "public_url: {base}
log: {{format: json, level: debug}}
oidc: {{issuer: '{iss}', client_id: cloakroom, token_endpoint_auth: private_key_jwt,
  client_key_file: '{key}', client_key_id: rp-1}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /, upstream: '{u}', auth: none}}]",
            iss = idp.issuer,
            key = key.path().display(),
            u = up.url()
        ),
    );
    app.wait_ready();
    let browser = Browser::new(&base);
    let (page, _) = browser.navigate(&format!("{base}/auth/login"), "alice").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_failed"), "{}", page.body);
    assert_eq!(idp.stats().await["grants"], json!({}), "no grant");

    let logs: Vec<String> = app.logs().iter().map(Value::to_string).collect();
    assert!(
        logs.iter().any(|l| l.contains("invalid_client")),
        "the IdP's refusal is logged: {logs:#?}"
    );
    let pem_line = ATTACKER_PEM.lines().nth(1).unwrap();
    for line in &logs {
        assert!(!line.contains("eyJ"), "no assertion or token: {line}");
        assert!(!line.contains(pem_line), "no key: {line}");
    }
}

/// The body of `/readyz`: where the discovery's cause is shown.
async fn readyz_text(w: &World) -> String {
    let readyz = support::client()
        .get(format!("http://{}/readyz", w.app.admin))
        .send()
        .await
        .unwrap();
    readyz.text().await.unwrap()
}

/// `GET /auth/login` as a program sends it: the status.
async fn login_status(w: &World) -> u16 {
    support::client()
        .get(w.url("/auth/login"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
