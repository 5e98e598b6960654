//! ID token validation (OIDC Core §3.1.3.7, and §12.2 for refreshes) and
//! IdP misbehaviour, through a whole login against a purpose-built IdP that
//! forges what a certified one never would. Test names carry the
//! threat-model case ids.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Map, Value};
use support::fake_idp::{self, claims, raw, sign, FakeIdp, ATTACKER_PEM, KEY_PEM};
use support::wait::poll;
use support::{App, Browser, Upstream, COOKIE_KEY};

struct Fake {
    idp: FakeIdp,
    _app: App,
    base: String,
    /// cloakroom's clock: moved forward to reach a refresh point or an expiry.
    clock: cloakroom::Clock,
}

async fn fake() -> Fake {
    fake_with("session: {refresh_skew: 2s}").await
}

/// The fake IdP and cloakroom with `session` as its session settings.
async fn fake_with(session: &str) -> Fake {
    fake_oidc("", session).await
}

/// [`fake_with`], with `oidc` added to the `oidc` section (`, key: value`).
async fn fake_oidc(oidc: &str, session: &str) -> Fake {
    let idp = FakeIdp::start(Box::new(|iss, nonce, _| {
        sign(&claims(iss, nonce), KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s{oidc}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
{session}
routes: [{{path: /api, upstream: '{u}'}}]
",
        iss = idp.issuer,
        u = up.url()
    );
    let clock = cloakroom::Clock::system();
    let app = bound.start_with_clock(&yaml, clock.clone());
    std::mem::forget(up); // lives as long as the test process; nothing is proxied here
    Fake {
        idp,
        _app: app,
        base,
        clock,
    }
}

impl Fake {
    /// Sets how the next ID tokens are made.
    fn forge(&self, f: impl Fn(&str, &str, &str) -> String + Send + Sync + 'static) {
        self.idp.behaviour.lock().unwrap().forge = Box::new(f);
    }

    /// Runs one login; the callback's status (302 = session created).
    async fn login(&self) -> (u16, String) {
        let browser = Browser::new(&self.base);
        let callback = format!("{}/auth/callback", self.base);
        let (_, visited) = browser
            .navigate_until(&format!("{}/auth/login", self.base), "alice", Some(&callback))
            .await;
        let page = browser.get(visited.last().unwrap(), &[]).await;
        (page.status, page.body)
    }

    async fn refused(&self, case: &str) {
        let (status, body) = self.login().await;
        assert_eq!(status, 400, "{case} must be refused: {body}");
        assert!(body.contains("login_failed"), "{case}: {body}");
    }

    async fn accepted(&self, case: &str) {
        let (status, body) = self.login().await;
        assert_eq!(status, 302, "{case} must be accepted: {body}");
    }
}

/// A change to otherwise valid claims.
type Edit = Box<dyn Fn(&mut Map<String, Value>) + Send + Sync>;

fn with(f: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static) -> impl Fn(&str, &str, &str) -> String {
    move |iss, nonce, _| {
        let mut c = claims(iss, nonce);
        f(&mut c);
        sign(&c, KEY_PEM, json!({"kid": "k1"}))
    }
}

#[tokio::test]
async fn id01_to_id12_claims_are_checked() {
    let f = fake().await;
    f.accepted("positive control").await;
    let now = fake_idp::now();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "ID-01 wrong iss",
            Box::new(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "ID-02 missing iss",
            Box::new(|c| {
                c.remove("iss");
            }),
        ),
        (
            "ID-03 wrong aud",
            Box::new(|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
        ),
        (
            "ID-04 missing aud",
            Box::new(|c| {
                c.remove("aud");
            }),
        ),
        (
            "ID-05 extra audience",
            Box::new(|c| {
                c.insert("aud".into(), json!(["cloakroom", "untrusted"]));
            }),
        ),
        (
            "ID-06 foreign azp",
            Box::new(|c| {
                c.insert("azp".into(), json!("someone-else"));
            }),
        ),
        (
            "ID-07 missing sub",
            Box::new(|c| {
                c.remove("sub");
            }),
        ),
        (
            "ID-07 empty sub",
            Box::new(|c| {
                c.insert("sub".into(), json!(""));
            }),
        ),
        (
            "ID-08 missing iat",
            Box::new(|c| {
                c.remove("iat");
            }),
        ),
        (
            "ID-09 iat in the future",
            Box::new(move |c| {
                c.insert("iat".into(), json!(now + 3600));
            }),
        ),
        (
            "ID-10 expired",
            Box::new(move |c| {
                c.insert("exp".into(), json!(now - 3600));
            }),
        ),
        (
            "ID-10 missing exp",
            Box::new(|c| {
                c.remove("exp");
            }),
        ),
        (
            "ID-10 huge exp",
            Box::new(|c| {
                c.insert("exp".into(), json!(1e300));
            }),
        ),
        (
            "ID-10 string exp",
            Box::new(move |c| {
                c.insert("exp".into(), json!((now + 300).to_string()));
            }),
        ),
        (
            "ID-10 float exp",
            Box::new(move |c| {
                c.insert("exp".into(), json!(now as f64 + 300.5));
            }),
        ),
        (
            "ID-11 nbf in the future",
            Box::new(move |c| {
                c.insert("nbf".into(), json!(now + 3600));
            }),
        ),
        (
            "ID-12 wrong nonce",
            Box::new(|c| {
                c.insert("nonce".into(), json!("other"));
            }),
        ),
        (
            "ID-12 missing nonce",
            Box::new(|c| {
                c.remove("nonce");
            }),
        ),
        (
            "ID-20 wrong at_hash",
            Box::new(|c| {
                c.insert("at_hash".into(), json!("AAAAAAAAAAAAAAAAAAAAAA"));
            }),
        ),
        (
            "ID-23 events claim",
            Box::new(|c| {
                c.insert(
                    "events".into(),
                    json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
                );
            }),
        ),
    ];
    for (case, edit) in cases {
        f.forge(with(move |c| edit(c)));
        f.refused(case).await;
    }
    f.forge(with(|c| {
        c.insert("aud".into(), json!(["cloakroom"]));
        c.insert("azp".into(), json!("cloakroom"));
    }));
    f.accepted("ID-05 aud as a one-element array").await;
}

#[tokio::test]
async fn id13_to_id19_signatures_algorithms_and_keys() {
    let f = fake().await;
    f.forge(|iss, nonce, _| sign(&claims(iss, nonce), ATTACKER_PEM, json!({"kid": "k1"})));
    f.refused("ID-13 signed by another key").await;
    f.forge(|iss, nonce, _| raw(json!({"alg": "none"}), &claims(iss, nonce), ""));
    f.refused("ID-14 alg none").await;
    f.forge(|iss, nonce, _| {
        // HS256 "signed" with the published public key as the HMAC secret.
        let c = claims(iss, nonce);
        let header = json!({"alg": "HS256", "kid": "k1"});
        let secret = jsonwebtoken::EncodingKey::from_secret(b"JOGomhQScn_JZKSlk-zno1DZ34WLdLthok1k46hvOu0");
        jsonwebtoken::encode(&serde_json::from_value(header).unwrap(), &c, &secret).unwrap()
    });
    f.refused("ID-15 HS256 with the public key").await;
    f.forge(|iss, nonce, _| sign(&claims(iss, nonce), KEY_PEM, json!({"kid": null})));
    f.accepted("ID-16 no kid, single key").await;
    f.forge(|iss, nonce, _| {
        sign(
            &claims(iss, nonce),
            ATTACKER_PEM,
            json!({"kid": "evil", "jku": "https://evil.example/jwks"}),
        )
    });
    f.refused("ID-19 jku pointing elsewhere").await;
    f.forge(|iss, nonce, _| {
        sign(
            &claims(iss, nonce),
            KEY_PEM,
            json!({"kid": "k1", "typ": "at+jwt"}),
        )
    });
    f.refused("ID-23 an access token as ID token").await;
}

#[tokio::test]
async fn id22_an_unreadable_key_beside_the_real_one_does_no_harm() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().extra_keys =
        vec![json!({"kty": "weird", "kid": "x"}), json!("not a key")];
    f.accepted("ID-22").await;
}

#[tokio::test]
async fn t24_unknown_kids_refetch_the_jwks_at_most_once_per_window() {
    let f = fake().await;
    f.accepted("warm the key cache").await;
    let before = f.idp.jwks_fetches.load(Ordering::SeqCst);
    for i in 0..5 {
        let kid = format!("random-{i}");
        f.forge(move |iss, nonce, _| sign(&claims(iss, nonce), KEY_PEM, json!({"kid": kid})));
        f.refused("unknown kid").await;
    }
    let fetched = f.idp.jwks_fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 1, "{fetched} JWKS fetches for five unknown kids");
}

/// While the JWKS endpoint fails (429, 503, …), anonymous back-channel
/// logout tokens naming random kids still ask it once per window, and the
/// next login is told the IdP is unavailable rather than asking again.
#[tokio::test]
async fn t24_a_failing_jwks_is_asked_at_most_once_per_window() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().jwks_status = 503;
    let http = support::client();
    for i in 0..5 {
        let claims = json!({
            "iss": f.idp.issuer, "aud": "cloakroom", "iat": fake_idp::now(),
            "jti": format!("jti-{i}"), "sub": "alice", "sid": "sid-1",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        let token = sign(
            claims.as_object().unwrap(),
            KEY_PEM,
            json!({"kid": format!("random-{i}"), "typ": "logout+jwt"}),
        );
        let answer = http
            .post(format!("{}/auth/backchannel-logout", f.base))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        assert!(!answer.status().is_success(), "{}", answer.status());
    }
    let (status, body) = f.login().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("idp_unavailable"), "{body}");
    let fetched = f.idp.jwks_fetches.load(Ordering::SeqCst);
    assert_eq!(fetched, 1, "{fetched} JWKS fetches while it failed");
}

#[tokio::test]
async fn lg15_a_redirecting_token_endpoint_is_not_followed() {
    let f = fake().await;
    let evil = Upstream::start().await;
    f.idp.behaviour.lock().unwrap().token_redirect = Some(format!("{}/steal", evil.url()));
    let (status, body) = f.login().await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("idp_bad_response"));
    assert_eq!(evil.requests(), 0, "the code and secret went nowhere else");
}

#[tokio::test]
async fn lg07_an_idp_without_s256_is_never_used() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().s256 = false;
    let browser = Browser::new(&f.base);
    let page = browser.get(&format!("{}/auth/login", f.base), &[]).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("idp_unavailable"));
    assert_eq!(f.idp.token_calls.load(Ordering::SeqCst), 0);
}

// === Refresh answers (RF-07, RF-09, RF-12, RF-13) ===

/// A valid refreshed ID token: same user, no nonce (OIDC Core §12.2).
fn refreshed(edit: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static) -> fake_idp::Forge {
    Box::new(move |iss, _, _| {
        let mut c = claims(iss, "");
        c.remove("nonce");
        edit(&mut c);
        sign(&c, KEY_PEM, json!({"kid": "k1"}))
    })
}

impl Fake {
    /// Logs in with 3-second access tokens; refreshes are due after 1 s.
    async fn session(&self) -> Browser {
        self.idp.behaviour.lock().unwrap().expires_in = Some(3);
        self.session_as_is().await
    }

    /// Logs in with the IdP's behaviour as it is.
    async fn session_as_is(&self) -> Browser {
        let browser = Browser::new(&self.base);
        let callback = format!("{}/auth/callback", self.base);
        let (_, visited) = browser
            .navigate_until(&format!("{}/auth/login", self.base), "alice", Some(&callback))
            .await;
        assert_eq!(browser.get(visited.last().unwrap(), &[]).await.status, 302);
        browser
    }

    async fn api(&self, browser: &Browser) -> support::Page {
        browser.fetch(&format!("{}/api/x", self.base)).await
    }

    async fn user(&self, browser: &Browser) -> u16 {
        browser.fetch(&format!("{}/auth/user", self.base)).await.status
    }
}

async fn refresh_ends_the_session(case: &str, forge: fake_idp::Forge) {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().refresh_forge = Some(forge);
    let browser = f.session().await;
    assert_eq!(f.api(&browser).await.status, 200);
    // Past the refresh point of the 3 s token (half-way), before its expiry.
    f.clock.advance(Duration::from_secs(2));
    let page = f.api(&browser).await;
    assert_eq!(page.status, 401, "{case}: {}", page.body);
    assert!(page.body.contains("login_required"), "{case}: {}", page.body);
    assert_eq!(f.user(&browser).await, 401, "{case}: the session is gone");
    assert_eq!(f.idp.refreshes.lock().unwrap().len(), 1, "{case}: no retry");
}

#[tokio::test]
async fn rf12_a_refreshed_id_token_for_another_subject_ends_the_session() {
    refresh_ends_the_session(
        "RF-12 sub",
        refreshed(|c| {
            c.insert("sub".into(), json!("mallory"));
        }),
    )
    .await;
}

#[tokio::test]
async fn rf13_a_refreshed_id_token_with_another_issuer_audience_or_signer_ends_the_session() {
    refresh_ends_the_session(
        "RF-13 iss",
        refreshed(|c| {
            c.insert("iss".into(), json!("https://evil.example"));
        }),
    )
    .await;
    refresh_ends_the_session(
        "RF-13 aud",
        refreshed(|c| {
            c.insert("aud".into(), json!("someone-else"));
        }),
    )
    .await;
    let attacker: fake_idp::Forge = Box::new(|iss, _, _| {
        let mut c = claims(iss, "");
        c.remove("nonce");
        sign(&c, ATTACKER_PEM, json!({"kid": "k1"}))
    });
    refresh_ends_the_session("RF-13 signature", attacker).await;
}

#[tokio::test]
async fn rf07_rf16_a_refresh_answer_without_a_refresh_token_keeps_the_old_one() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().rotate = false;
    f.idp.behaviour.lock().unwrap().refresh_forge = Some(refreshed(|_| {}));
    let browser = f.session().await;
    for _ in 0..2 {
        f.clock.advance(Duration::from_secs(2));
        let page = f.api(&browser).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    let used = f.idp.refreshes.lock().unwrap().clone();
    assert_eq!(used.len(), 2, "{} refreshes", used.len());
    assert_eq!(
        used[0]["refresh_token"], used[1]["refresh_token"],
        "the second refresh used the original token"
    );
    // RF-16: a refresh asks for nothing beyond the grant (no `scope`), and
    // the client authenticates in the header, not the form.
    let mut fields: Vec<&str> = used[0].keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["grant_type", "refresh_token"]);
}

#[tokio::test]
async fn rf09_invalid_client_on_refresh_is_503_and_keeps_every_session() {
    let f = fake().await;
    let browser = f.session().await;
    f.idp.behaviour.lock().unwrap().refresh_error = Some((401, "invalid_client".into()));
    // Past the access token's expiry: nothing valid is left to serve.
    f.clock.advance(Duration::from_secs(4));
    let page = f.api(&browser).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("idp_unavailable"), "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.headers.get("set-cookie").is_none(), "the cookie is kept");
    assert_eq!(f.user(&browser).await, 200, "the session is kept");
    // Credentials fixed: the same session refreshes.
    f.idp.behaviour.lock().unwrap().refresh_error = None;
    assert_eq!(f.api(&browser).await.status, 200);
}

// === Token answers at login (LG-16 to LG-19) ===

#[tokio::test]
async fn lg16_only_bearer_tokens_are_accepted_in_any_letter_case() {
    let f = fake().await;
    for (token_type, accepted) in [
        ("mac", false),
        ("DPoP", false),
        ("bearer", true),
        ("Bearer", true),
    ] {
        f.idp.behaviour.lock().unwrap().token_type = token_type.into();
        let case = format!("LG-16 token_type {token_type}");
        if accepted {
            f.accepted(&case).await;
        } else {
            // An answer cloakroom cannot use: no session, an IdP fault.
            let (status, body) = f.login().await;
            assert_eq!(status, 502, "{case}: {body}");
            assert!(body.contains("idp_bad_response"), "{case}: {body}");
        }
    }
}

#[tokio::test]
async fn lg17_an_answer_without_expires_in_gets_a_finite_default_lifetime() {
    // With the 300 s default lifetime, a refresh is due half-way (the skew
    // is longer than that), not never.
    let f = fake_with("session: {refresh_skew: 299s}").await;
    f.idp.behaviour.lock().unwrap().expires_in = None;
    f.idp.behaviour.lock().unwrap().refresh_forge = Some(refreshed(|_| {}));
    let browser = f.session_as_is().await;
    assert_eq!(f.api(&browser).await.status, 200);
    assert_eq!(
        f.idp.refreshes.lock().unwrap().len(),
        0,
        "fresh right after login"
    );
    f.clock.advance(Duration::from_secs(140));
    assert_eq!(f.api(&browser).await.status, 200);
    assert_eq!(f.idp.refreshes.lock().unwrap().len(), 0, "not due yet");
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(f.api(&browser).await.status, 200);
    assert_eq!(
        f.idp.refreshes.lock().unwrap().len(),
        1,
        "due half-way through the default lifetime"
    );
}

#[tokio::test]
async fn lg18_without_a_refresh_token_the_session_lasts_as_long_as_its_access_token() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().issue_refresh_token = false;
    f.idp.behaviour.lock().unwrap().expires_in = Some(10);
    let browser = f.session_as_is().await;
    // Due for refresh (less than 2 s left), nothing to refresh with: still served.
    f.clock.advance(Duration::from_secs(8));
    assert_eq!(f.api(&browser).await.status, 200);
    f.clock.advance(Duration::from_secs(3));
    let page = f.api(&browser).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("login_required"));
    assert!(page.clears_a_cookie());
    assert_eq!(f.idp.refreshes.lock().unwrap().len(), 0, "no refresh attempt");
}

#[tokio::test]
async fn lg19_a_discovery_document_naming_another_issuer_is_never_used() {
    let f = fake().await;
    let announced = format!("{}/", f.idp.issuer);
    f.idp.behaviour.lock().unwrap().announced_issuer = Some(announced);
    let page = Browser::new(&f.base)
        .get(&format!("{}/auth/login", f.base), &[])
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("idp_unavailable"));
    assert_eq!(f.idp.token_calls.load(Ordering::SeqCst), 0);
}

// === Discovery failures (LG-27) ===

/// `/readyz` on an admin listener: status and JSON body.
async fn readyz(admin: &str) -> (u16, Value) {
    let r = support::client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("/readyz is not JSON: {text}"));
    (status, body)
}

/// Polls `/readyz` until `done` holds for its body (10 s at most).
async fn readyz_until(admin: &str, done: impl Fn(&Value) -> bool) -> (u16, Value) {
    let every = Duration::from_millis(50);
    let (status, body) = poll(
        Duration::from_secs(10),
        every,
        async || readyz(admin).await,
        |(_, body)| done(body),
    )
    .await;
    assert!(done(&body), "/readyz stayed at {body}");
    (status, body)
}

fn cause(body: &Value) -> &str {
    body["idp"]["cause"].as_str().unwrap_or("")
}

/// A login attempt's page: generic text and the request id, never the cause.
async fn generic_login_failure(base: &str) {
    let page = Browser::new(base).get(&format!("{base}/auth/login"), &[]).await;
    assert_eq!(page.status, 503, "{}", page.body);
    let request_id = page.headers["x-request-id"].to_str().unwrap();
    assert!(!request_id.is_empty());
    assert!(
        page.body
            .contains("The sign-in service is not reachable right now."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("request: {request_id}<")),
        "{}",
        page.body
    );
    for detail in ["issuer", "S256", "well-known", "127.0.0.1"] {
        assert!(
            !page.body.contains(detail),
            "{detail} on the user's page: {}",
            page.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lg27_discovery_causes_are_logged_once_per_change_and_shown_in_readyz() {
    let idp = FakeIdp::start(Box::new(|iss, nonce, _| {
        sign(&claims(iss, nonce), KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    idp.behaviour.lock().unwrap().announced_issuer = Some(format!("{}/", idp.issuer));
    let app = support::Process::start_logged(&format!(
        "public_url: http://localhost:8080
log: {{format: json, level: info}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]",
        iss = idp.issuer
    ));

    // Issuer mismatch: the exact cause in /readyz, a generic page for users,
    // however often discovery is retried. The replica stays ready: anonymous
    // routes need no IdP.
    let (status, body) = readyz_until(&app.admin, |b| b["idp"]["state"] == "failed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["session_store"], "ok");
    assert_eq!(body["idp"]["issuer"], idp.issuer.as_str());
    assert_eq!(cause(&body), cause_of_mismatch(&idp.issuer));
    for _ in 0..3 {
        generic_login_failure(&app.base).await;
    }

    // Another cause: the new one is shown and logged.
    {
        let mut b = idp.behaviour.lock().unwrap();
        b.announced_issuer = None;
        b.s256 = false;
    }
    generic_login_failure(&app.base).await;
    let (status, body) = readyz(&app.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        cause(&body),
        "the provider lists code_challenge_methods_supported [\"plain\"], without S256"
    );

    // Fixed: discovered, and logins start.
    idp.behaviour.lock().unwrap().s256 = true;
    let page = Browser::new(&app.base)
        .get(&format!("{}/auth/login", app.base), &[])
        .await;
    assert_eq!(page.status, 302, "{}", page.body);
    let (status, body) = readyz(&app.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["idp"]["state"], "ready");

    let discovery: Vec<(String, String)> = app
        .logs()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("IdP discover"))
        })
        .map(|l| {
            (
                l["level"].as_str().unwrap().to_owned(),
                l["cause"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let attempts = idp.discovery_fetches.load(Ordering::SeqCst);
    assert!(attempts >= 6, "{attempts} discovery attempts");
    let expected = [
        ("ERROR", cause_of_mismatch(&idp.issuer)),
        (
            "ERROR",
            "the provider lists code_challenge_methods_supported [\"plain\"], without S256".to_owned(),
        ),
        ("INFO", String::new()),
    ];
    assert_eq!(
        discovery,
        expected.map(|(l, c)| (l.to_owned(), c)),
        "one line per change, though discovery ran {attempts} times"
    );
}

fn cause_of_mismatch(issuer: &str) -> String {
    format!("metadata issuer \"{issuer}/\" differs from the configured issuer \"{issuer}\"")
}

/// LG-27 for TLS: an issuer whose certificate no trusted root signed.
#[tokio::test]
async fn lg27_a_tls_failure_is_named_in_readyz() {
    let port = untrusted_tls_server();
    let issuer = format!("https://127.0.0.1:{port}");
    let app = App::start(&format!(
        "public_url: http://localhost:8080
log: {{level: warn}}
oidc: {{issuer: '{issuer}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]"
    ))
    .await;
    let admin = format!("http://{}", app.admin);
    let (status, body) = readyz_until(&admin, |b| b["idp"]["state"] == "failed").await;
    assert_eq!(status, 200, "{body}");
    let cause = cause(&body);
    assert!(
        cause.contains(&format!("{issuer}/.well-known/openid-configuration")),
        "{cause}"
    );
    assert!(
        cause.contains("invalid peer certificate: UnknownIssuer"),
        "{cause}"
    );
    generic_login_failure(&format!("http://{}", app.addr)).await;
}

/// A TLS server on 127.0.0.1 with a self-signed certificate; the port.
fn untrusted_tls_server() -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut tls = rustls::ServerConnection::new(config.clone()).unwrap();
            // The client gives up during the handshake.
            let _ = tls.complete_io(&mut stream);
        }
    });
    port
}

// === UserInfo (ID-21, `oidc.userinfo`) ===

impl Fake {
    /// What the UserInfo endpoint answers next.
    fn userinfo(&self, status: u16, content_type: &str, body: &str) {
        self.idp.behaviour.lock().unwrap().userinfo = (status, content_type.into(), body.into());
    }
}

/// OpenID Foundation `oidcc-client-test-userinfo-invalid-sub`: the UserInfo
/// answer names another subject than the ID token → the answer is not used
/// and the login fails, storing nothing (OIDC Core §5.3.2).
#[tokio::test]
async fn id21_userinfo_naming_another_subject_fails_the_login() {
    let f = fake_oidc(", userinfo: true", "session: {claims: [sub, groups]}").await;
    let browser = f.session_as_is().await;
    let user = browser.fetch(&format!("{}/auth/user", f.base)).await.json();
    assert_eq!(user["groups"], json!(["staff"]), "positive control: {user}");
    let calls = f.idp.userinfo_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].starts_with("Bearer at-"),
        "asked with the new access token"
    );

    for (case, answer) in [
        ("another sub", json!({"sub": "mallory", "groups": ["admins"]})),
        ("no sub", json!({"groups": ["admins"]})),
        (
            "sub not a string",
            json!({"sub": ["alice"], "groups": ["admins"]}),
        ),
    ] {
        f.userinfo(200, "application/json", &answer.to_string());
        let browser = Browser::new(&f.base);
        let callback = format!("{}/auth/callback", f.base);
        let (_, visited) = browser
            .navigate_until(&format!("{}/auth/login", f.base), "alice", Some(&callback))
            .await;
        let page = browser.get(visited.last().unwrap(), &[]).await;
        assert_eq!(page.status, 400, "{case}: {}", page.body);
        assert!(page.body.contains("login_failed"), "{case}: {}", page.body);
        assert!(
            browser.cookie(&f.base, support::SESSION_COOKIE).is_none(),
            "{case}"
        );
        assert_eq!(f.user(&browser).await, 401, "{case}: no session");
    }
}

/// A signed (`application/jwt`) UserInfo answer is refused, and said so; an
/// unreachable or failing UserInfo endpoint is a 503 a new login may cure.
#[tokio::test]
async fn userinfo_signed_or_failing_answers_refuse_the_login_clearly() {
    let f = fake_oidc(", userinfo: true", "").await;
    let claims_jwt = sign(&claims(&f.idp.issuer, ""), KEY_PEM, json!({"kid": "k1"}));
    f.userinfo(200, "application/jwt", &claims_jwt);
    let (status, body) = f.login().await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("idp_bad_response"), "{body}");

    f.userinfo(503, "text/plain", "down");
    let (status, body) = f.login().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("idp_unavailable"), "{body}");
    assert_eq!(f.idp.userinfo_calls.lock().unwrap().len(), 2);
}

/// A UserInfo failure comes after the code exchange: the callback is final.
/// Asked again, the same callback URL sends no second token request with
/// the spent code; the pre-auth cookie is cleared, and the refresh token
/// the exchange brought is revoked, as no session holds it.
#[tokio::test]
async fn lg03_a_failure_after_the_code_exchange_never_exchanges_the_code_again() {
    let f = fake_oidc(", userinfo: true", "").await;
    f.idp.behaviour.lock().unwrap().revocation_listed = true;
    f.userinfo(503, "text/plain", "down");
    let browser = Browser::new(&f.base);
    let callback = format!("{}/auth/callback", f.base);
    let (_, visited) = browser
        .navigate_until(&format!("{}/auth/login", f.base), "alice", Some(&callback))
        .await;
    let url = visited.last().unwrap();
    let first = browser.get(url, &[]).await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert!(first.body.contains("idp_unavailable"), "{}", first.body);
    assert!(first.clears_a_cookie(), "the pre-auth cookie is cleared");
    f.userinfo(200, "application/json", &json!({"sub": "alice"}).to_string());
    let again = browser.get(url, &[]).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.body.contains("login_failed"), "{}", again.body);
    assert_eq!(f.idp.token_calls.load(Ordering::SeqCst), 1, "one code exchange");
    assert!(browser.cookie(&f.base, support::SESSION_COOKIE).is_none());
    let revoked = poll(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || f.idp.revocations.lock().unwrap().clone(),
        |r| !r.is_empty(),
    )
    .await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].starts_with("rt-"), "the new refresh token is revoked");
}

/// `oidc.userinfo: true` with metadata that lists no `userinfo_endpoint`:
/// the IdP is not used, and `/readyz` names the key.
#[tokio::test]
async fn userinfo_asked_of_an_idp_without_the_endpoint_names_the_key() {
    let idp = FakeIdp::start(Box::new(|iss, nonce, _| {
        sign(&claims(iss, nonce), KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    idp.behaviour.lock().unwrap().userinfo_listed = false;
    let app = App::start(&format!(
        "public_url: http://localhost:8080
log: {{level: error}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s, userinfo: true}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]",
        iss = idp.issuer
    ))
    .await;
    let admin = format!("http://{}", app.admin);
    let (_, body) = readyz_until(&admin, |b| b["idp"]["state"] == "failed").await;
    assert_eq!(
        cause(&body),
        "oidc.userinfo is true, but the IdP metadata names no userinfo_endpoint"
    );
    let base = format!("http://{}", app.addr);
    let page = Browser::new(&base).get(&format!("{base}/auth/login"), &[]).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert_eq!(idp.token_calls.load(Ordering::SeqCst), 0);
}

// === The OpenID Foundation's RP modules not covered above (docs/conformance.md) ===

/// A valid token with one byte of its signature changed.
fn bad_signature(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = signature.as_bytes().to_vec();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    format!("{input}.{}", String::from_utf8(bytes).unwrap())
}

/// `oidcc-client-test-invalid-sig-rs256`: an RS256 ID token whose
/// signature does not verify under the published RSA key is refused; the
/// same token correctly signed is accepted.
#[tokio::test]
async fn id13_invalid_sig_rs256_is_refused() {
    let f = fake().await;
    {
        let mut b = f.idp.behaviour.lock().unwrap();
        b.algs = vec!["ES256".into(), "RS256".into()];
        b.extra_keys = vec![fake_idp::rsa_jwk("r1")];
    }
    let rs256 = |iss: &str, nonce: &str| {
        fake_idp::sign_alg(
            &claims(iss, nonce),
            fake_idp::RSA_PEM,
            jsonwebtoken::Algorithm::RS256,
            json!({"kid": "r1"}),
        )
    };
    f.forge(move |iss, nonce, _| rs256(iss, nonce));
    f.accepted("positive control: RS256 correctly signed").await;
    f.forge(move |iss, nonce, _| bad_signature(&rs256(iss, nonce)));
    f.refused("RS256 with an invalid signature").await;
}

/// `oidcc-client-test-invalid-sig-hs256`: an HS256 ID token (keyed with the
/// client secret, as the suite's OP signs it) with a bad signature is
/// refused. cloakroom never accepts HS256 ID tokens, so one correctly
/// signed with the client secret is refused too, even with HS256 in the
/// metadata.
#[tokio::test]
async fn id13_invalid_sig_hs256_is_refused() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().algs = vec!["ES256".into(), "HS256".into()];
    let hs256 = |iss: &str, nonce: &str| {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        // The client secret cloakroom is configured with (`s`).
        let key = jsonwebtoken::EncodingKey::from_secret(b"s");
        jsonwebtoken::encode(&header, &claims(iss, nonce), &key).unwrap()
    };
    f.forge(move |iss, nonce, _| bad_signature(&hs256(iss, nonce)));
    f.refused("HS256 with an invalid signature").await;
    f.forge(move |iss, nonce, _| hs256(iss, nonce));
    f.refused("HS256 keyed with the client secret").await;
}

/// `oidcc-client-test-invalid-sig-es256`: an ES256 ID token that names the
/// published key but whose signature does not verify is refused.
#[tokio::test]
async fn id13_invalid_sig_es256_is_refused() {
    let f = fake().await;
    f.accepted("positive control").await;
    f.forge(|iss, nonce, _| bad_signature(&sign(&claims(iss, nonce), KEY_PEM, json!({"kid": "k1"}))));
    f.refused("ES256 with an invalid signature").await;
}

/// `oidcc-client-test-kid-absent-multiple-jwks`: no `kid` while the JWKS
/// holds several signing keys. The suite accepts either outcome; cloakroom
/// refuses (it never guesses among keys), and this pins it.
#[tokio::test]
async fn id16_kid_absent_multiple_jwks_is_refused() {
    let f = fake().await;
    f.idp.behaviour.lock().unwrap().extra_keys = vec![fake_idp::rotated_jwk("k2")];
    f.accepted("positive control: the same keys, with a kid").await;
    f.forge(|iss, nonce, _| sign(&claims(iss, nonce), KEY_PEM, json!({"kid": null})));
    f.refused("no kid, two keys").await;
}

/// `oidcc-client-test-signing-key-rotation`: between two logins the IdP
/// publishes a new key and signs with it; the next login, right after the
/// first, succeeds (the JWKS is fetched again for the unknown kid), and so
/// does one after the old key is withdrawn.
#[tokio::test]
async fn id18_signing_key_rotation_between_logins_is_followed() {
    let f = fake().await;
    f.accepted("login with k1 (the JWKS is now cached)").await;
    *f.idp.published.lock().unwrap() = Some(vec![fake_idp::key_jwk(), fake_idp::rotated_jwk("k2")]);
    f.forge(|iss, nonce, _| sign(&claims(iss, nonce), fake_idp::ROTATED_PEM, json!({"kid": "k2"})));
    f.accepted("login with k2 right after the rotation").await;
    *f.idp.published.lock().unwrap() = Some(vec![fake_idp::rotated_jwk("k2")]);
    f.accepted("login with k2 after k1 is withdrawn").await;
}

/// `oidcc-client-test-signing-key-rotation-just-before-signing`: the IdP
/// replaces its key at the moment it signs the ID token, after the
/// authorization request; the login succeeds.
#[tokio::test]
async fn id18_signing_key_rotation_just_before_signing_is_followed() {
    let f = fake().await;
    f.accepted("login with k1 (the JWKS is now cached)").await;
    let published = f.idp.published.clone();
    f.forge(move |iss, nonce, _| {
        *published.lock().unwrap() = Some(vec![fake_idp::rotated_jwk("k2")]);
        sign(&claims(iss, nonce), fake_idp::ROTATED_PEM, json!({"kid": "k2"}))
    });
    f.accepted("login signed by a key published as it signed").await;
}

#[tokio::test]
async fn idp01_an_id_token_iss_is_compared_with_the_configured_slash() {
    // An IdP that publishes `http://127.0.0.1:PORT/` (Auth0's form), and
    // cloakroom configured with it as published.
    let idp = FakeIdp::start(Box::new(|iss, nonce, _| {
        sign(&claims(&format!("{iss}/"), nonce), KEY_PEM, json!({"kid": "k1"}))
    }))
    .await;
    let published = format!("{}/", idp.issuer);
    idp.behaviour.lock().unwrap().announced_issuer = Some(published.clone());
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let yaml = format!(
        "public_url: {base}
log: {{level: error}}
oidc: {{issuer: '{published}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: '{u}'}}]
",
        u = up.url()
    );
    let clock = cloakroom::Clock::system();
    let f = Fake {
        _app: bound.start_with_clock(&yaml, clock.clone()),
        idp,
        base,
        clock,
    };
    f.accepted("iss with the slash, as configured").await;
    f.forge(with(|c| {
        let bare = c["iss"].as_str().unwrap().trim_end_matches('/').to_owned();
        c.insert("iss".into(), json!(bare));
    }));
    f.refused("iss without the configured slash").await;
}
