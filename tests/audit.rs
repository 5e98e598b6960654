//! The audit trail (`cloakroom::audit`): one line per login, per failed
//! refresh and per session end, for every reason a session ends, and one
//! per revocation of an ended session's refresh token, naming the session
//! and subject by hash and the client as `trusted_proxies` allow; never a
//! token, a cookie or a subject in clear. The access line carries the
//! client address too.
//!
//! One test: the log capture is process-wide.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::fake_idp::{claims, sign, subject_logout_token, FakeIdp, KEY_PEM};
use support::logs::Logs;
use support::{client, App, Browser, Upstream, COOKIE_KEY, SESSION_COOKIE};

const ADMIN_TOKEN: &str = "an-admin-token-of-forty-characters-000000";

struct Site {
    base: String,
    idp: FakeIdp,
    /// The subject the IdP's next ID token names.
    subject: Arc<Mutex<String>>,
    app: App,
}

impl Site {
    async fn login(&self, subject: &str) -> Browser {
        let browser = Browser::new(&self.base);
        self.login_again(&browser, subject).await;
        browser
    }

    async fn login_again(&self, browser: &Browser, subject: &str) {
        *self.subject.lock().unwrap() = subject.to_owned();
        let back = format!("{}/api/x", self.base);
        let login = format!("{}/auth/login?return_to=/api/x", self.base);
        browser.navigate_until(&login, subject, Some(&back)).await;
        assert!(
            browser.cookie(&self.base, SESSION_COOKIE).is_some(),
            "{subject} logged in"
        );
    }

    async fn api(&self, browser: &Browser) -> u16 {
        browser.fetch(&format!("{}/api/x", self.base)).await.status
    }
}

fn audit_lines(logs: &Logs) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "cloakroom::audit")
        .map(|l| l["fields"].clone())
        .collect()
}

#[tokio::test]
async fn every_session_end_is_one_audit_line_without_a_token() {
    let logs = Logs::capture("warn,cloakroom::audit=info,cloakroom::access=info");
    let subject = Arc::new(Mutex::new(String::new()));
    let sids = Arc::new(Mutex::new(0u64));
    let idp = FakeIdp::start(Box::new({
        let (subject, sids) = (subject.clone(), sids.clone());
        move |iss, nonce, _| {
            let mut c = claims(iss, nonce);
            let mut n = sids.lock().unwrap();
            *n += 1;
            c.insert("sub".into(), json!(subject.lock().unwrap().clone()));
            c.insert("sid".into(), json!(format!("sid-{n}")));
            sign(&c, KEY_PEM, json!({"kid": "k1"}))
        }
    }))
    .await;
    idp.behaviour.lock().unwrap().revocation_listed = true;
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
trusted_proxies: ['127.0.0.1/32']
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
session: {{max_per_user: 2, absolute_timeout: 1h, refresh_skew: 2s}}
admin: {{api_token: '{ADMIN_TOKEN}'}}
routes: [{{path: /api, upstream: '{u}'}}]
",
        iss = idp.issuer,
        u = up.url()
    );
    let clock = cloakroom::Clock::manual();
    let app = bound.start_with_clock(&yaml, clock.clone());
    let site = Site {
        base: base.clone(),
        idp,
        subject,
        app,
    };

    // Every login first: the ID tokens are judged by the clock moved later.
    let leaving = site.login("u-logout").await;
    let laptop = site.login("u-user").await;
    let phone = site.login("u-user").await;
    let _pushed_out = site.login("u-many").await;
    let _second = site.login("u-many").await;
    let _third = site.login("u-many").await; // pushes the first out
    let _managed = site.login("u-admin").await;
    let _at_idp = site.login("u-bcl").await;
    let idle = site.login("u-idle").await;
    let lasting = site.login("u-abs").await;
    site.idp.behaviour.lock().unwrap().expires_in = Some(3);
    let revoked = site.login("u-grant").await;
    let forged = site.login("u-forged").await;
    site.login_again(&laptop, "u-user").await; // replaces its session

    // Logout through a trusted proxy that names the client; then the old
    // cookie comes back and finds its record gone.
    let cookie = leaving.cookie(&base, SESSION_COOKIE).unwrap();
    let headers = [
        ("x-csrf", "1"),
        ("origin", base.as_str()),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let url = format!("{base}/auth/logout");
    assert_eq!(
        leaving
            .send(reqwest::Method::POST, &url, &headers, None)
            .await
            .status,
        200
    );
    leaving.set_cookie(&base, SESSION_COOKIE, &cookie);
    assert_eq!(site.api(&leaving).await, 401);

    // The user ends their phone's session from the laptop.
    let listing = laptop.fetch(&format!("{base}/auth/sessions")).await.json();
    let phones = listing["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ours = [("x-csrf", "1"), ("origin", base.as_str())];
    let url = format!("{base}/auth/sessions/{phones}");
    assert_eq!(
        laptop
            .send(reqwest::Method::DELETE, &url, &ours, None)
            .await
            .status,
        204
    );
    assert_eq!(site.api(&phone).await, 401);

    // The admin API; the IdP's back-channel logout.
    let ended = client()
        .delete(format!("http://{}/admin/sessions?sub=u-admin", site.app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let token = subject_logout_token(&site.idp.issuer, "u-bcl");
    let ended = client()
        .post(format!("{base}/auth/backchannel-logout"))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);

    // Refreshes: the IdP refuses one grant, and answers another with an
    // ID token for someone else.
    site.idp.behaviour.lock().unwrap().refresh_error = Some((400, "invalid_grant".into()));
    clock.advance(Duration::from_secs(2));
    assert_eq!(site.api(&revoked).await, 401);
    {
        let mut behaviour = site.idp.behaviour.lock().unwrap();
        behaviour.refresh_error = None;
        behaviour.refresh_forge = Some(Box::new(|iss, _, _| {
            let mut c = claims(iss, "");
            c.remove("nonce");
            c.insert("sub".into(), json!("mallory"));
            sign(&c, KEY_PEM, json!({"kid": "k1"}))
        }));
    }
    assert_eq!(site.api(&forged).await, 401);
    site.idp.behaviour.lock().unwrap().refresh_forge = None;

    // Timeouts: idle after 30 min without a request; absolute after an
    // hour of steady use.
    clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(site.api(&lasting).await, 200);
    clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(site.api(&lasting).await, 200);
    assert_eq!(site.api(&idle).await, 401);
    clock.advance(Duration::from_secs(21 * 60));
    assert_eq!(site.api(&lasting).await, 401);

    let lines = audit_lines(&logs);
    let of = |event: &str, reason: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["event"] == event && l["reason"] == reason)
            .cloned()
            .collect()
    };
    assert_eq!(of("login", "-").len(), 13, "{lines:#?}");
    for reason in [
        "logout",
        "gone",
        "replaced",
        "ended_by_user",
        "per_user_limit",
        "admin",
        "backchannel_logout",
        "invalid_grant",
        "forged_idp_answer",
        "idle",
        "absolute",
    ] {
        let ended = of("session_ended", reason);
        // `gone`: the logged-out cookie replayed, and the phone's cookie
        // after its session was ended from the laptop.
        let expected = if reason == "gone" { 2 } else { 1 };
        assert_eq!(ended.len(), expected, "lines for {reason}: {lines:#?}");
        let line = &ended[0];
        let session = line["session"].as_str().unwrap();
        assert_eq!(session.len(), 32, "{reason}: the session by its hash: {line}");
        let client = line["client"].as_str().unwrap();
        match reason {
            "logout" => assert_eq!(client, "203.0.113.7", "the client a trusted proxy names"),
            "admin" | "backchannel_logout" => assert_eq!(client, "-", "nobody's browser: {line}"),
            _ => assert_eq!(client, "127.0.0.1", "{reason}: {line}"),
        }
        let subject = line["subject"].as_str().unwrap();
        match reason {
            // Found gone or past its absolute end: no record was read.
            "gone" | "absolute" => assert_eq!(subject, "-"),
            _ => assert_eq!(subject.len(), 32, "{reason}: {line}"),
        }
    }
    // A session's lines name it alike from its login to its end.
    let logout = &of("session_ended", "logout")[0];
    let logins = of("login", "-");
    assert!(
        logins
            .iter()
            .any(|l| l["session"] == logout["session"] && l["subject"] == logout["subject"]),
        "the logout's session and subject match its login's"
    );
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "refresh_failed")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["invalid_grant", "ended"], "{lines:#?}");

    // Nothing a browser or the IdP holds, nor a subject in clear.
    let text = logs.text();
    let audit_text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let audit_text = audit_text.join("\n");
    for secret in [cookie.as_str(), "eyJ", "u-logout", "u-user", "mallory", "Bearer"] {
        assert!(!audit_text.contains(secret), "{secret} in an audit line");
    }
    for browser in [&laptop, &lasting] {
        if let Some(cookie) = browser.cookie(&base, SESSION_COOKIE) {
            assert!(!text.contains(&cookie), "a session cookie in the logs");
        }
    }

    // The access line names the client: the peer, or the address a trusted
    // proxy reports.
    let access: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "cloakroom::access")
        .map(|l| l["fields"].clone())
        .collect();
    assert!(access
        .iter()
        .any(|l| l["path"] == "/auth/logout" && l["client"] == "203.0.113.7"));
    assert!(access
        .iter()
        .any(|l| l["path"] == "/api/x" && l["client"] == "127.0.0.1"));

    // Every end but the gone, the replaced and the invalid_grant ones has
    // its refresh token revoked in the background: one line each, naming
    // the ended session, and no client (no request revokes).
    let revoking = 8;
    let revocations = support::wait::poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let lines = audit_lines(&logs);
            lines
                .into_iter()
                .filter(|l| l["event"] == "revocation")
                .collect::<Vec<_>>()
        },
        |r| r.len() >= revoking,
    )
    .await;
    assert_eq!(revocations.len(), revoking, "{revocations:#?}");
    let ended: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "session_ended")
        .map(|l| &l["session"])
        .collect();
    for line in &revocations {
        assert_eq!(line["reason"], "revoked", "{line}");
        assert!(ended.contains(&&line["session"]), "an ended session's: {line}");
        assert_eq!(line["client"], "-", "{line}");
    }
    assert_eq!(site.idp.revocations.lock().unwrap().len(), revoking);
}
