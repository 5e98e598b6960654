//! PX-26: every answer cloakroom writes itself carries the security
//! headers: each `/auth/*` answer of a real login through the IdP, the
//! problems (404, 405, 403, 401, the login error page), the client module,
//! and the admin listener.

mod support;

use reqwest::header::HeaderMap;
use reqwest::Method;
use support::idp::world;
use support::{client, App, Browser, COOKIE_KEY};

/// The headers every answer of cloakroom's own has; HSTS only over https.
fn assert_protected(what: &str, headers: &HeaderMap, https: bool) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(
        get("x-content-type-options"),
        Some("nosniff"),
        "{what}: {headers:?}"
    );
    let csp = get("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP: {headers:?}"));
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(get("referrer-policy"), Some("no-referrer"), "{what}: {headers:?}");
    let hsts = get("strict-transport-security");
    if https {
        let hsts = hsts.unwrap_or_else(|| panic!("{what}: no HSTS: {headers:?}"));
        assert!(hsts.starts_with("max-age=31536000"), "{what}: {hsts}");
    } else {
        assert_eq!(hsts, None, "{what}: HSTS over plain http");
    }
}

/// [`assert_protected`], and no cache may keep it.
fn assert_private(what: &str, headers: &HeaderMap, https: bool) {
    assert_protected(what, headers, https);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{what}: {headers:?}"
    );
}

#[tokio::test]
async fn px26_every_auth_answer_of_a_real_login_carries_the_security_headers() {
    let w = world("").await;
    let browser = Browser::new(&w.base);

    // /auth/login: the redirect to the IdP.
    let login = browser.get(&w.url("/auth/login?return_to=/app/home"), &[]).await;
    assert_eq!(login.status, 302, "{}", login.body);
    assert_private("/auth/login", &login.headers, false);

    // Through the IdP's pages, up to its redirect back.
    let authorize = login.headers["location"].to_str().unwrap().to_owned();
    let (_, visited) = browser
        .navigate_until(&authorize, "alice", Some(&w.url("/auth/callback")))
        .await;
    let callback_url = visited.last().unwrap().clone();
    assert!(callback_url.starts_with(&w.url("/auth/callback")), "{visited:?}");

    // /auth/callback: the redirect into the app, with the session cookie.
    let callback = browser.get(&callback_url, &[]).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert!(callback.headers.contains_key("set-cookie"));
    assert_private("/auth/callback", &callback.headers, false);

    // The same callback again: the login error page.
    let replay = browser.get(&callback_url, &[]).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("Try again"), "{}", replay.body);
    assert_private("/auth/callback replayed", &replay.headers, false);

    // /auth/user with the session.
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.json()["sub"], "alice");
    assert_private("/auth/user", &user.headers, false);

    // Refusals on /auth/*: no X-CSRF, a wrong method, no such endpoint.
    for (method, path, headers, status) in [
        (Method::GET, "/auth/user", vec![], 403),
        (Method::POST, "/auth/user", vec![("x-csrf", "1")], 405),
        (Method::GET, "/auth/logout", vec![("x-csrf", "1")], 405),
        (Method::GET, "/auth/nothing", vec![], 404),
    ] {
        let page = browser.send(method.clone(), &w.url(path), &headers, None).await;
        assert_eq!(page.status, status, "{method} {path}: {}", page.body);
        assert_private(&format!("{method} {path}"), &page.headers, false);
    }

    // The client module: protected, revalidated rather than never stored.
    let module = browser.get(&w.url("/auth/client.js"), &[]).await;
    assert_eq!(module.status, 200);
    assert_protected("/auth/client.js", &module.headers, false);
    assert_eq!(module.headers["cache-control"], "no-cache");

    // /auth/logout, and /auth/user once the session is gone.
    let logout = w.logout(&browser).await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert!(logout.clears_a_cookie());
    assert_private("/auth/logout", &logout.headers, false);
    let gone = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(gone.status, 401, "{}", gone.body);
    assert_private("/auth/user without a session", &gone.headers, false);

    // Problems outside /auth/: a protected route without a session, a page
    // route's redirect to login, a method nobody may use.
    for (method, path, headers, status) in [
        (Method::GET, "/api/orders", vec![("x-csrf", "1")], 401),
        (
            Method::GET,
            "/app/home",
            vec![("sec-fetch-mode", "navigate")],
            302,
        ),
        (Method::TRACE, "/", vec![], 405),
    ] {
        let page = browser.send(method.clone(), &w.url(path), &headers, None).await;
        assert_eq!(page.status, status, "{method} {path}: {}", page.body);
        assert_private(&format!("{method} {path}"), &page.headers, false);
    }
}

#[tokio::test]
async fn px26_over_https_the_answers_add_hsts() {
    // The IdP is never reached: discovery of an unresolvable issuer fails,
    // which /auth/login answers with its error page.
    let app = App::start(&format!(
        "public_url: https://app.example.com
log: {{level: error}}
oidc: {{issuer: 'https://idp.invalid', client_id: c, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes:
  - {{path: /api, upstream: 'http://127.0.0.1:9'}}
"
    ))
    .await;
    let base = format!("http://{}", app.addr);
    for (method, path, headers, status) in [
        (Method::GET, "/auth/login", vec![], 503),
        (Method::GET, "/auth/user", vec![("x-csrf", "1")], 401),
        (Method::DELETE, "/auth/logout", vec![], 405),
        (Method::GET, "/api/x", vec![("x-csrf", "1")], 401),
        (Method::GET, "/nowhere", vec![], 404),
    ] {
        let r = client()
            .request(method.clone(), format!("{base}{path}"))
            .headers(
                headers
                    .iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert_private(&format!("{method} {path}"), r.headers(), true);
    }
    let module = client()
        .get(format!("{base}/auth/client.js"))
        .send()
        .await
        .unwrap();
    assert_protected("/auth/client.js", module.headers(), true);
}

#[tokio::test]
async fn px26_the_admin_listener_answers_with_the_security_headers() {
    let app = App::start(&support::config(&[("/", "http://127.0.0.1:9", "")])).await;
    let admin = format!("http://{}", app.admin);
    for (method, path, status) in [
        (Method::GET, "/healthz", 200),
        (Method::GET, "/readyz", 200),
        (Method::GET, "/metrics-or-anything", 404),
        (Method::POST, "/healthz", 405),
    ] {
        let r = client()
            .request(method.clone(), format!("{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        // Plain http inside the cluster: never HSTS there.
        assert_private(&format!("admin {method} {path}"), r.headers(), false);
    }
}
