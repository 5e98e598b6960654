//! Login through the real IdP (oidc-provider), sessions, CSRF and logout.
//! Test names carry the threat-model case ids they check.

mod support;

use std::time::Duration;

use cloakroom::auth::pending::{BUDGET, MAX_PENDING};
use serde_json::{json, Value};
use support::idp::{world, world_full, world_with, Idp};
use support::wait::poll;
use support::{echoed, Browser, Upstream, COOKIE_KEY, SESSION_COOKIE};

const API: &str = "urn:cloakroom:test-api";

#[tokio::test]
async fn login_through_the_real_idp_puts_a_verified_bearer_jwt_on_upstream_calls() {
    let w = world("").await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/app/home"), "{}", page.url);

    let r = w.api_get(&browser).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store", "PX-21");
    let seen = r.json();
    let bearer = echoed(&seen, "authorization").expect("a bearer reached the upstream");
    let token = bearer.strip_prefix("Bearer ").expect("Bearer scheme");

    // Verified as the API would: the IdP's keys, its issuer, our audience.
    let jwks = w.idp.jwks().await;
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[API]);
    validation.set_issuer(&[&w.idp.issuer]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");

    // The upstream never sees cloakroom's cookies.
    assert!(echoed(&seen, "cookie").is_none_or(|c| !c.contains("cloakroom")));

    // /auth/user: claims and expiry, no token.
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 200);
    let info = user.json();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    assert!(info["expires_at"].as_u64().unwrap() > info["idle_expires_at"].as_u64().unwrap());

    // PX-25: nothing cloakroom itself answered carried the access token.
    for (_, text) in &browser.seen.lock().unwrap().responses {
        if !text.contains("\"body_len\"") {
            assert!(!text.contains(token), "access token leaked: {text}");
        }
    }
}

#[tokio::test]
async fn ck10_session_cookie_attributes_and_single_small_login_cookie() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let logins = browser.login_cookies(&w.base);
    assert_eq!(logins.len(), 1, "one login, one pre-auth cookie");
    assert!(logins[0].1.len() < 250, "a small pre-auth cookie");
    let page = browser.get(&callback, &[]).await;
    assert_eq!(page.status, 302);
    assert_eq!(page.headers["cache-control"], "no-store", "LG-14");
    assert_eq!(page.headers["referrer-policy"], "no-referrer", "LG-14");
    assert_eq!(page.headers["location"], "/", "LG-14: a clean URL");
    let set: Vec<&str> = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("cloakroom="))
        .expect("session cookie");
    assert!(
        session.ends_with("; Path=/; HttpOnly; SameSite=Strict"),
        "{session}"
    );
    assert!(session.len() < 4096);
}

#[tokio::test]
async fn lg20_twenty_logins_in_one_browser_keep_a_bounded_set_of_pre_auth_cookies() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let mut callbacks = Vec::new();
    for _ in 0..20 {
        callbacks.push(w.callback_url(&browser, "alice").await);
    }
    // The newest logins' cookies, few and small.
    let logins = browser.login_cookies(&w.base);
    assert_eq!(logins.len(), MAX_PENDING);
    let bytes: usize = logins.iter().map(|(n, v)| n.len() + 1 + v.len()).sum();
    assert!(bytes <= BUDGET, "{bytes} bytes of pre-auth cookies");
    let finished = futures_util::future::join_all(callbacks.iter().map(|c| {
        let b = browser.clone();
        async move { b.get(c, &[]).await.status }
    }))
    .await;
    let (oldest, newest) = finished.split_at(20 - MAX_PENDING);
    assert!(
        newest.iter().all(|s| *s == 302),
        "the newest complete: {finished:?}"
    );
    assert!(
        oldest.iter().all(|s| *s == 400),
        "older ones gave way: {finished:?}"
    );
}

#[tokio::test]
async fn cs01_to_cs06_api_calls_need_the_csrf_header_and_an_allowed_origin() {
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    let before = w.up.requests();
    let post = reqwest::Method::POST;
    let base = w.base.clone();
    for (case, headers) in [
        ("CS-01 no X-CSRF", vec![("origin", base.as_str())]),
        (
            "CS-02 foreign origin",
            vec![("x-csrf", "1"), ("origin", "https://evil.example")],
        ),
        ("CS-03 null origin", vec![("x-csrf", "1"), ("origin", "null")]),
        (
            "CS-04 simple request",
            vec![("content-type", "text/plain"), ("origin", base.as_str())],
        ),
        (
            "CS-05 cross-site",
            vec![("x-csrf", "1"), ("sec-fetch-site", "cross-site")],
        ),
        (
            "CS-05 same-site sibling",
            vec![("x-csrf", "1"), ("sec-fetch-site", "same-site")],
        ),
        ("CS-05 no origin at all", vec![("x-csrf", "1")]),
    ] {
        let r = w.api(&browser, post.clone(), &headers).await;
        assert_eq!(r.status, 403, "{case}: {}", r.body);
        assert!(r.body.contains("csrf_failed"), "{case}");
    }
    let r = w.api(&browser, reqwest::Method::GET, &[]).await;
    assert_eq!(r.status, 403, "CS-06: GET needs the header too");
    assert_eq!(w.up.requests(), before, "no refused call reached the upstream");
    let r = w
        .api(&browser, post.clone(), &[("x-csrf", "1"), ("origin", &base)])
        .await;
    assert_eq!(r.status, 200, "same origin");
    let r = w
        .api(
            &browser,
            post,
            &[("x-csrf", "1"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, 200, "CS-05 same-origin");
}

#[tokio::test]
async fn cs12_page_routes_take_navigations_without_x_csrf_but_unsafe_methods_need_an_allowed_origin() {
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    let page = w.url("/app/orders");
    let base = w.base.clone();
    let before = w.up.requests();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        for (case, headers) in [
            ("foreign origin", vec![("origin", "https://evil.example")]),
            ("null origin", vec![("origin", "null")]),
            ("no origin", vec![]),
            ("same-site sibling", vec![("sec-fetch-site", "same-site")]),
            (
                "same-site sibling with its origin",
                vec![
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://sibling.127.0.0.1"),
                ],
            ),
            (
                "cross-site",
                vec![("sec-fetch-site", "cross-site"), ("origin", base.as_str())],
            ),
            (
                "cross-site form navigation",
                vec![("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")],
            ),
        ] {
            let r = browser.send(method.clone(), &page, &headers, None).await;
            assert_eq!(r.status, 403, "{method} {case}: {}", r.body);
            assert!(r.body.contains("csrf_failed"), "{method} {case}");
        }
    }
    assert_eq!(w.up.requests(), before, "no refused call reached the upstream");
    // A form on the app's own pages posts with its origin, without X-CSRF.
    let r = browser
        .send(reqwest::Method::POST, &page, &[("origin", base.as_str())], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Navigations still need no header, from anywhere (a link in an e-mail).
    let r = browser
        .get(
            &page,
            &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // And without a session, a page load still goes to the login.
    let r = Browser::new(&w.base)
        .get(&page, &[("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(r.status, 302);
}

#[tokio::test]
async fn cs09_auth_user_needs_the_csrf_header() {
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    assert_eq!(browser.get(&w.url("/auth/user"), &[]).await.status, 403);
    assert_eq!(browser.fetch(&w.url("/auth/user")).await.status, 200);
}

#[tokio::test]
async fn lg01_lg02_lg03_lg08_lg10_callback_parameters_are_checked() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let good = w.callback_url(&browser, "alice").await;
    let url = url::Url::parse(&good).unwrap();
    let params: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    let with = |pairs: &[(String, String)]| {
        let mut u = url.clone();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    let without_state: Vec<_> = params.iter().filter(|(k, _)| k != "state").cloned().collect();
    let mut wrong_state = params.clone();
    wrong_state
        .iter_mut()
        .filter(|(k, _)| k == "state")
        .for_each(|(_, v)| v.push('x'));
    let mut wrong_iss = params.clone();
    wrong_iss
        .iter_mut()
        .filter(|(k, _)| k == "iss")
        .for_each(|(_, v)| *v = "https://evil.example".into());
    let mut duplicated = params.clone();
    duplicated.push(("code".into(), "other".into()));
    for (case, target) in [
        ("LG-01", with(&without_state)),
        ("LG-02", with(&wrong_state)),
        ("LG-10", with(&duplicated)),
    ] {
        let page = browser.get(&target, &[]).await;
        assert_eq!(page.status, 400, "{case}");
        assert!(page.body.contains("login_failed"), "{case}");
    }
    // LG-08: the issuer parameter is checked (the transaction is consumed).
    let second = w.callback_url(&browser, "alice").await;
    let mut u = url::Url::parse(&second).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "iss" {
                    "https://evil.example".to_string()
                } else {
                    v.to_string()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_eq!(browser.get(u.as_str(), &[]).await.status, 400, "LG-08");
    let _ = wrong_iss;

    // The untouched callback works once, and a replay fails (LG-03).
    assert_eq!(browser.get(&good, &[]).await.status, 302);
    assert_eq!(browser.get(&good, &[]).await.status, 400, "LG-03");
    let stats = w.idp.stats().await;
    assert_eq!(
        stats["grants"]["authorization_code"], 1,
        "no token request for refused callbacks: {stats}"
    );
}

#[tokio::test]
async fn t14_a_callback_from_another_browser_is_refused() {
    let w = world("").await;
    let victim = Browser::new(&w.base);
    let stolen = w.callback_url(&victim, "alice").await;
    let attacker = Browser::new(&w.base);
    let page = attacker.get(&stolen, &[]).await;
    assert_eq!(page.status, 400);
    assert!(attacker.cookie(&w.base, SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn lg11_a_failed_login_answers_a_page_to_a_person_and_problem_json_to_a_program() {
    let w = world("").await;
    let victim = Browser::new(&w.base);
    let stolen = w.callback_url(&victim, "alice").await;
    let other = Browser::new(&w.base);
    let page = other.get(&stolen, &[("x-request-id", "ignored-untrusted")]).await;
    assert_eq!(page.status, 400);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let id = page.headers["x-request-id"].to_str().unwrap();
    assert!(page.body.contains(&format!("request: {id}")), "{}", page.body);
    assert!(page.body.contains("code: login_failed"), "{}", page.body);

    let fetched = other.get(&stolen, &[("accept", "application/json")]).await;
    assert_eq!(fetched.status, 400);
    assert_eq!(fetched.headers["content-type"], "application/problem+json");
    let problem = fetched.json();
    assert_eq!(problem["code"], "login_failed");
    assert_eq!(
        problem["request_id"],
        fetched.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(fetched.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn lg25_a_callback_from_another_browser_does_not_cancel_the_victims_login() {
    let w = world("").await;
    let victim = Browser::new(&w.base);
    let stolen = w.callback_url(&victim, "alice").await;
    let attacker = Browser::new(&w.base);
    assert_eq!(attacker.get(&stolen, &[]).await.status, 400);
    // The attacker's attempt took nothing from the victim's browser.
    let page = victim.get(&stolen, &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(victim.cookie(&w.base, SESSION_COOKIE).is_some());
}

#[tokio::test]
async fn lg20_logins_started_in_parallel_tabs_all_complete() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    // Five /auth/login answers at once, each setting its login's cookie.
    let login = w.url("/auth/login");
    let started = futures_util::future::join_all((0..5).map(|_| browser.get(&login, &[]))).await;
    assert_eq!(browser.login_cookies(&w.base).len(), 5, "none overwrote another");
    // Then the user signs in at the IdP in each tab, one after the other.
    let mut callbacks = Vec::new();
    for page in &started {
        let authorize = page.headers["location"].to_str().unwrap().to_owned();
        let (_, visited) = browser
            .navigate_until(&authorize, "alice", Some(&w.url("/auth/callback")))
            .await;
        callbacks.push(visited.last().unwrap().clone());
    }
    for callback in &callbacks {
        assert_eq!(browser.get(callback, &[]).await.status, 302, "{callback}");
    }
    assert!(browser.login_cookies(&w.base).is_empty());
}

#[tokio::test]
async fn lg26_a_logins_pre_auth_cookie_is_cleared_once_it_is_used() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let first = w.callback_url(&browser, "alice").await;
    let second = w.callback_url(&browser, "alice").await;
    let both = browser.login_cookies(&w.base);
    assert_eq!(both.len(), 2);
    assert_eq!(browser.get(&first, &[]).await.status, 302);
    let left = browser.login_cookies(&w.base);
    assert_eq!(left.len(), 1, "the other login is still pending");
    assert!(both.contains(&left[0]));
    assert_eq!(browser.get(&second, &[]).await.status, 302);
    assert!(browser.login_cookies(&w.base).is_empty(), "no login left");
    // A callback with another state takes nothing from the real login...
    let third = w.callback_url(&browser, "alice").await;
    let page = browser.get(&third.replace("state=", "state=x"), &[]).await;
    assert_eq!(page.status, 400);
    assert_eq!(browser.login_cookies(&w.base).len(), 1);
    // ...and a login long past its timeout is refused and cleared.
    w.clock.advance(Duration::from_secs(16 * 60));
    let page = browser.get(&third, &[]).await;
    assert_eq!(page.status, 400);
    assert!(page.clears_a_cookie());
    assert!(browser.login_cookies(&w.base).is_empty());
}

#[tokio::test]
async fn lg03_a_callback_replayed_with_a_copy_of_the_old_pre_auth_cookie_is_refused() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let (name, copy) = browser.login_cookies(&w.base).remove(0);
    assert_eq!(browser.get(&callback, &[]).await.status, 302);
    let replayer = Browser::new(&w.base);
    replayer.set_cookie(&w.base, &name, &copy);
    let page = replayer.get(&callback, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_failed"));
    assert!(replayer.cookie(&w.base, SESSION_COOKIE).is_none());
    let stats = w.idp.stats().await;
    assert_eq!(stats["token_requests"], 1, "no second code exchange: {stats}");
}

#[tokio::test]
async fn lg11_idp_errors_are_shown_escaped() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let good = w.callback_url(&browser, "alice").await;
    let url = url::Url::parse(&good).unwrap();
    let mut u = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "code")
        .map(|(k, v)| (k.into(), v.into()))
        .chain([
            ("error".into(), "access_denied".into()),
            ("error_description".into(), "<script>alert(1)</script>".into()),
        ])
        .collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    let page = browser.get(u.as_str(), &[]).await;
    assert_eq!(page.status, 400);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(page.body.contains("login_failed"));
    assert!(page.body.contains("/auth/login"), "a way to sign in again");
}

#[tokio::test]
async fn lg12_login_never_returns_off_origin() {
    let w = world("").await;
    for evil in [
        "//evil.example",
        "https://evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let browser = Browser::new(&w.base);
        let start = format!("{}?return_to={}", w.url("/auth/login"), urlencode(evil));
        let (_, visited) = browser.navigate(&start, "alice").await;
        let last = visited.last().unwrap();
        assert_eq!(last, &w.url("/"), "{evil} ended at {last}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn ck01_a_tampered_session_cookie_is_401_and_cleared() {
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    let value = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    let mut bytes = value.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    browser.set_cookie(&w.base, SESSION_COOKIE, std::str::from_utf8(&bytes).unwrap());
    let before = w.up.requests();
    let r = w.api_get(&browser).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("login_required"));
    assert!(r.clears_a_cookie(), "cookie cleared");
    assert_eq!(w.up.requests(), before);
}

#[tokio::test]
async fn ck11_a_planted_session_is_replaced_at_login_and_ended() {
    let w = world("").await;
    let (mallory, _) = w.login("mallory").await;
    let planted = mallory.cookie(&w.base, SESSION_COOKIE).unwrap();
    let victim = Browser::new(&w.base);
    victim.set_cookie(&w.base, SESSION_COOKIE, &planted);
    let (page, _) = victim
        .navigate(&w.url("/auth/login?return_to=/app/home"), "alice")
        .await;
    assert_eq!(page.status, 200);
    let fresh = victim.cookie(&w.base, SESSION_COOKIE).unwrap();
    assert_ne!(fresh, planted);
    let me = victim.fetch(&w.url("/auth/user")).await.json();
    assert_eq!(me["sub"], "alice");
    // The planted session was deleted, not promoted.
    assert_eq!(mallory.fetch(&w.url("/auth/user")).await.status, 401);
}

#[tokio::test]
async fn lo_logout_ends_the_session_revokes_the_refresh_token_and_names_the_idp_logout() {
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    let refused = browser
        .send(reqwest::Method::POST, &w.url("/auth/logout"), &[], None)
        .await;
    assert_eq!(refused.status, 403, "CS-08: logout needs the CSRF header");
    let get = browser.fetch(&w.url("/auth/logout")).await;
    assert_eq!(get.status, 405, "CS-08: no logout by GET");

    let r = w.logout(&browser).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let clear = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("cloakroom="));
    assert_eq!(
        clear.as_deref(),
        Some("cloakroom=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        "CK-15"
    );
    let body = r.json();
    let logout_url = url::Url::parse(body["logout_url"].as_str().unwrap()).unwrap();
    assert!(logout_url
        .as_str()
        .starts_with(&format!("{}/session/end", w.idp.issuer)));
    let q: std::collections::HashMap<_, _> = logout_url.query_pairs().collect();
    assert_eq!(q["client_id"], "cloakroom");
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/", w.base));
    assert!(!q.contains_key("id_token_hint"), "no token reaches the browser");
    // Revoked by the queue, right after the answer (LO-05).
    let stats = w.idp.stats_when(|s| s["revocations"] == 1).await;
    assert_eq!(stats["revocations"], 1, "refresh token revoked (RFC 7009)");
    // LO-02: the old cookie, replayed, finds no session.
    browser.set_cookie(&w.base, SESSION_COOKIE, &cookie);
    assert_eq!(w.api_get(&browser).await.status, 401);
}

#[tokio::test]
async fn lg06_every_authorization_request_has_fresh_pkce_state_and_nonce() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        // LG-22: request parameters other than return_to are never passed on.
        let page = browser
            .get(
                &w.url("/auth/login?scope=admin&prompt=none&redirect_uri=https://evil.example"),
                &[],
            )
            .await;
        assert_eq!(page.status, 302);
        let location = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<String, String> = location
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "openid profile email offline_access", "LG-22");
        assert_eq!(q["redirect_uri"], w.url("/auth/callback"), "LG-22/LG-23");
        assert!(!q.contains_key("prompt"), "LG-22");
        assert_eq!(q["response_type"], "code");
        for name in ["state", "nonce", "code_challenge"] {
            assert!(q[name].len() >= 43, "{name} carries at least 256 bits");
            assert!(seen.insert(q[name].clone()), "{name} repeated");
        }
    }
    assert_eq!(browser.login_cookies(&w.base).len(), MAX_PENDING);
}

#[tokio::test]
async fn lg09_lg13_missing_iss_is_refused_and_return_to_comes_only_from_the_transaction() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_eq!(
        browser.get(u.as_str(), &[]).await.status,
        400,
        "LG-09: the IdP advertises iss"
    );

    let callback = w.callback_url(&browser, "alice").await;
    let page = browser
        .get(&format!("{callback}&return_to=https%3A%2F%2Fevil.example"), &[])
        .await;
    assert_eq!(page.status, 302);
    assert_eq!(page.headers["location"], "/", "LG-13");
}

#[tokio::test]
async fn ck08_ck09_idle_and_absolute_timeouts_are_enforced_server_side() {
    // Both timeouts are judged by cloakroom's clock, moved here instead of
    // waited for; the store's own TTL (real time) has not run out by then.
    let w = world("session: {idle_timeout: 3s, absolute_timeout: 6s}").await;
    // Idle: no activity for longer than the idle timeout.
    let (idle, _) = w.login("alice").await;
    w.clock.advance(Duration::from_millis(4200));
    assert_eq!(w.api_get(&idle).await.status, 401, "CK-09 idle");

    // Absolute: steady activity keeps the idle timer fresh but cannot pass
    // the absolute end.
    let (busy, _) = w.login("bob").await;
    let mut statuses = Vec::new();
    for _ in 0..9 {
        w.clock.advance(Duration::from_secs(1));
        statuses.push(w.api_get(&busy).await.status);
    }
    assert!(
        statuses[..4].iter().all(|s| *s == 200),
        "activity extends idle expiry: {statuses:?}"
    );
    let first_401 = statuses
        .iter()
        .position(|s| *s == 401)
        .expect("the absolute timeout ends the session");
    assert!(
        statuses[first_401..].iter().all(|s| *s == 401),
        "CK-08 stays ended: {statuses:?}"
    );
}

#[tokio::test]
async fn cs10_px24_websocket_needs_an_allowed_origin_and_a_session() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let w = world("").await;
    let (browser, _) = w.login("alice").await;
    let cookie = format!("cloakroom={}", browser.cookie(&w.base, "cloakroom").unwrap());
    let ws_url = w.url("/live/ws").replace("http://", "ws://");
    let handshake = |origin: &str, cookie: &str| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        if !cookie.is_empty() {
            request.headers_mut().insert("cookie", cookie.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Ok((_, response)) => {
            let response: tokio_tungstenite::tungstenite::handshake::client::Response = response;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    let before = w.up.requests();
    assert_eq!(
        status(handshake("https://evil.example", &cookie).await),
        403,
        "CS-10"
    );
    assert_eq!(status(handshake(&w.base, "").await), 401, "no session");
    assert_eq!(
        w.up.requests(),
        before,
        "no upstream connection for refused handshakes"
    );
    assert_eq!(status(handshake(&w.base, &cookie).await), 101, "PX-24");
}

#[tokio::test]
async fn lo05_logout_completes_locally_when_the_idp_is_down() {
    let mut w = world("").await;
    let (browser, _) = w.login("alice").await;
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    w.idp.kill();
    let r = w.logout(&browser).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.clears_a_cookie());
    let body = r.json();
    assert!(body.get("logout_url").is_some());
    // Replaying the old cookie finds no session: it was deleted.
    browser.set_cookie(&w.base, SESSION_COOKIE, &cookie);
    assert_eq!(w.api_get(&browser).await.status, 401, "the session is gone");
}

#[tokio::test]
async fn lg05_an_injected_code_fails_against_the_victims_pkce_verifier() {
    let w = world("").await;
    // The attacker runs a login of their own and keeps the code.
    let attacker = Browser::new(&w.base);
    let theirs = url::Url::parse(&w.callback_url(&attacker, "mallory").await).unwrap();
    let code = theirs
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // The victim's browser arrives at the callback with its own state but
    // the attacker's code.
    let victim = Browser::new(&w.base);
    let mine = url::Url::parse(&w.callback_url(&victim, "alice").await).unwrap();
    let pairs: Vec<(String, String)> = mine
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "code" { code.clone() } else { v.to_string() },
            )
        })
        .collect();
    let mut injected = mine.clone();
    injected.query_pairs_mut().clear().extend_pairs(&pairs);
    let page = victim.get(injected.as_str(), &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_failed"));
    assert!(
        victim.cookie(&w.base, SESSION_COOKIE).is_none(),
        "no session for the victim"
    );
}

#[tokio::test]
async fn lg04_a_callback_after_the_login_timeout_is_login_expired() {
    let w = world("session: {login_timeout: 1s}").await;
    let browser = Browser::new(&w.base);
    let callback = w.callback_url(&browser, "alice").await;
    w.clock.advance(Duration::from_secs(2));
    let page = browser.get(&callback, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_expired"), "{}", page.body);
    assert!(page.body.contains("/auth/login"), "a way to sign in again");
    assert!(browser.cookie(&w.base, SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn lg21_only_page_loads_are_redirected_to_the_idp_and_fetches_get_401() {
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let page = |headers: &'static [(&'static str, &'static str)]| {
        let (browser, url) = (browser.clone(), w.url("/app/orders"));
        async move { browser.get(&url, headers).await }
    };
    for headers in [
        &[("sec-fetch-mode", "navigate"), ("accept", "text/html,*/*;q=0.8")][..],
        &[("accept", "text/html")][..],
        &[][..],
    ] {
        let r = page(headers).await;
        assert_eq!(r.status, 302, "a page load: {headers:?}");
        assert!(r.headers["location"].to_str().unwrap().contains("/auth/login"));
    }
    for headers in [
        &[("sec-fetch-mode", "cors"), ("accept", "*/*")][..],
        &[("accept", "application/json")][..],
        &[("x-requested-with", "XMLHttpRequest")][..],
    ] {
        let r = page(headers).await;
        assert_eq!(r.status, 401, "a fetch: {headers:?}");
        assert!(r.body.contains("login_required"), "{}", r.body);
        assert!(r.headers.get("location").is_none());
    }
}

// === LO-13: revocation endpoints the OIDC metadata does not name ===

#[tokio::test]
async fn lo13_logout_revokes_through_an_endpoint_listed_only_in_rfc8414_metadata() {
    let w = world_with("", json!({"revocation_listed_in": "rfc8414"}), 1).await;
    let discovery: Value = support::client()
        .get(format!("{}/.well-known/openid-configuration", w.idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery.get("revocation_endpoint").is_none(), "{discovery}");
    let (browser, _) = w.login("alice").await;
    assert_eq!(w.logout(&browser).await.status, 200);
    let stats = w.idp.stats_when(|s| s["revocations"] == 1).await;
    assert_eq!(stats["revocation_requests"], 1, "{stats}");
    assert_eq!(stats["revocations"], 1, "the refresh token is revoked at the IdP");
}

/// An IdP whose metadata names no revocation endpoint (it has one, at
/// `/token/revocation`) and cloakroom as a process on a free port, with
/// `oidc_extra` added to its `oidc` section and its logs kept.
fn unlisted_revocation(up: &Upstream, oidc_extra: &str) -> (Idp, support::Process) {
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!({
        "revocation_listed_in": "nowhere",
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
    }));
    let extra = oidc_extra.replace("{issuer}", &idp.issuer);
    let app = support::Process::start_logged_at(
        port,
        &format!(
            "public_url: {base}
log: {{format: json, level: info}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret{extra}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /, upstream: '{u}', auth: none}}]",
            iss = idp.issuer,
            u = up.url()
        ),
    );
    app.wait_ready();
    (idp, app)
}

/// The start-up lines that say logout cannot revoke.
fn cannot_revoke_warnings(app: &support::Process) -> Vec<Value> {
    app.logs()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("logout cannot revoke refresh tokens"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lo13_a_start_up_warning_when_logout_cannot_revoke() {
    let up = Upstream::start().await;
    let (idp, app) = unlisted_revocation(&up, "");
    // Logged before readiness; give the log reader a moment to catch up.
    let (limit, every) = (Duration::from_secs(5), Duration::from_millis(50));
    let warnings = poll(
        limit,
        every,
        async || cannot_revoke_warnings(&app),
        |w| !w.is_empty(),
    )
    .await;
    assert_eq!(warnings.len(), 1, "{:?}", app.logs());
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["issuer"], idp.issuer.as_str());
    assert_eq!(warnings[0]["rfc8414"], "it lists none");
}

#[tokio::test(flavor = "multi_thread")]
async fn lo13_a_configured_revocation_endpoint_revokes_at_logout() {
    let up = Upstream::start().await;
    let (idp, app) = unlisted_revocation(&up, ", revocation_endpoint: '{issuer}/token/revocation'");
    let browser = Browser::new(&app.base);
    let (page, _) = browser
        .navigate(&format!("{}/auth/login", app.base), "alice")
        .await;
    assert_eq!(page.status, 200, "logged in and back at the SPA: {}", page.body);
    assert!(browser.cookie(&app.base, SESSION_COOKIE).is_some());
    assert_eq!(browser.logout(&app.base).await.status, 200);
    let stats = idp.stats_when(|s| s["revocations"] == 1).await;
    assert_eq!(stats["revocation_requests"], 1, "{stats}");
    assert_eq!(stats["revocations"], 1, "the refresh token is revoked at the IdP");
    assert!(
        app.logs().iter().any(|l| l["message"] == "IdP discovered"),
        "logs were read"
    );
    assert!(cannot_revoke_warnings(&app).is_empty(), "{:?}", app.logs());
}

/// The payload of the ID token among `issued`: the one with a `nonce`.
fn id_token_claims(issued: &[String]) -> Value {
    use base64::Engine;
    issued
        .iter()
        .filter_map(|t| t.split('.').nth(1))
        .filter_map(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .filter_map(|p| serde_json::from_slice::<Value>(&p).ok())
        .find(|c| c.get("nonce").is_some())
        .expect("an ID token was issued")
}

/// `oidc.userinfo: true` against the real IdP, whose ID tokens are thin
/// here (only `sub`): the claims come from its UserInfo endpoint, are kept
/// as ID-token claims are (`session.claims`, access rules), and decide
/// access. Without the key, the same IdP's session lacks them.
#[tokio::test]
async fn userinfo_claims_join_a_thin_id_token_at_login() {
    let settings = json!({"userinfo_tokens": true, "users": {"alice": {"groups": ["ops"]}}});
    // `groups` is kept because a rule reads it, not because it is shown.
    let extra = "  - {path: /ops, upstream: 'http://127.0.0.1:9', access: {groups: [ops]}}
session: {claims: [sub, name, email]}";
    for userinfo in [true, false] {
        let oidc = if userinfo { "userinfo: true" } else { "" };
        let w = world_full(extra, oidc, settings.clone(), 1, cloakroom::Clock::system()).await;
        let (browser, page) = w.login("alice").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let thin = id_token_claims(&w.idp.issued().await);
        assert!(
            thin.get("groups").is_none() && thin.get("email").is_none(),
            "{thin}"
        );
        let user = browser.fetch(&w.url("/auth/user")).await.json();
        assert_eq!(user["sub"], "alice", "{user}");
        assert!(user.get("groups").is_none(), "not in session.claims: {user}");
        // Admitted: on to the (absent) upstream; refused: 403.
        let ops = browser.fetch(&w.url("/ops/x")).await;
        if userinfo {
            assert_eq!(user["email"], "alice@example.test", "{user}");
            assert_eq!(user["name"], "User alice", "{user}");
            assert_eq!(ops.status, 502, "{}", ops.body);
        } else {
            assert!(user.get("email").is_none(), "{user}");
            assert_eq!(ops.status, 403, "{}", ops.body);
        }
    }
}

/// The callback URL of `browser`'s login with the IdP's answer turned into
/// `error=access_denied` (a user who declined, say).
async fn declined_callback(w: &support::idp::World, browser: &Browser) -> String {
    let good = w.callback_url(browser, "alice").await;
    let url = url::Url::parse(&good).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "code")
        .map(|(k, v)| (k.into(), v.into()))
        .chain([("error".into(), "access_denied".into())])
        .collect();
    let mut declined = url.clone();
    declined.query_pairs_mut().clear().extend_pairs(&pairs);
    declined.to_string()
}

/// `errors.login_page`: a failed login sends a person to the SPA's page
/// with the stable code and the request id; the login's pre-auth cookie is
/// still cleared, and a program still gets problem+json.
#[tokio::test]
async fn a_failed_login_goes_to_the_spas_login_page_with_code_and_request_id() {
    let mut w = world("errors: {login_page: '/signin-error?from=login'}").await;
    let browser = Browser::new(&w.base);
    let declined = declined_callback(&w, &browser).await;
    let page = browser.get(&declined, &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let id = page.headers["x-request-id"].to_str().unwrap();
    assert_eq!(
        page.headers["location"].to_str().unwrap(),
        format!("/signin-error?from=login&error=login_failed&request_id={id}")
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert!(page.clears_a_cookie(), "the used login is forgotten");
    assert!(browser.login_cookies(&w.base).is_empty());
    assert!(browser.cookie(&w.base, SESSION_COOKIE).is_none());
    // The SPA serves the page (here the echo upstream on `/`).
    let spa = browser
        .get(&w.url("/signin-error?from=login&error=login_failed"), &[])
        .await;
    assert_eq!(spa.status, 200);

    // The IdP down during the code exchange: the same page, with that
    // code; the login stays pending, so the same callback may be retried.
    let later = Browser::new(&w.base);
    let pending = w.callback_url(&later, "alice").await;
    w.idp.kill();
    let page = later.get(&pending, &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let location = page.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("/signin-error?from=login&error=idp_unavailable&request_id="),
        "{location}"
    );
    assert_eq!(later.login_cookies(&w.base).len(), 1);

    // A program asking for JSON gets problem+json, not a redirect.
    let fetched = later.get(&pending, &[("accept", "application/json")]).await;
    assert_eq!(fetched.status, 503);
    assert_eq!(fetched.headers["content-type"], "application/problem+json");
    assert_eq!(fetched.json()["code"], "idp_unavailable");
}

/// Without `errors.login_page`: cloakroom's page, styled within its CSP
/// (one inline stylesheet allowed by hash, no script, no style attribute),
/// with the code, the request id and a "Try again" link to `/auth/login`.
#[tokio::test]
async fn lg11_the_built_in_login_failure_page_shows_code_request_id_and_try_again() {
    use base64::Engine;
    use sha2::Digest;
    let w = world("").await;
    let browser = Browser::new(&w.base);
    let declined = declined_callback(&w, &browser).await;
    let page = browser.get(&declined, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    let id = page.headers["x-request-id"].to_str().unwrap();
    let body = &page.body;
    assert!(body.contains(&format!("request: {id}<")), "{body}");
    assert!(body.contains("code: login_failed"), "{body}");
    assert!(body.contains("<a href=\"/auth/login\">Try again</a>"), "{body}");
    assert!(body.contains("prefers-color-scheme:dark"), "{body}");
    assert!(!body.contains("<script") && !body.contains("style=") && !body.contains("<link"));
    let style = body
        .split("<style>")
        .nth(1)
        .unwrap()
        .split("</style>")
        .next()
        .unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
}

/// `session.anonymous_user`: `GET /auth/user` without a session is a 200
/// `{"authenticated": false}` (a cookie naming no session is cleared);
/// still CSRF-checked (CS-09); signed in, `"authenticated": true`. The
/// default stays 401. `client.js`'s `user()` reads both as signed out.
#[tokio::test]
async fn anonymous_user_answers_authenticated_false_without_a_session() {
    let w = world("session: {anonymous_user: true}").await;
    let anonymous = Browser::new(&w.base);
    let page = anonymous.fetch(&w.url("/auth/user")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json(), json!({"authenticated": false}));
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(!page.clears_a_cookie(), "no cookie to clear");
    assert_eq!(
        anonymous.get(&w.url("/auth/user"), &[]).await.status,
        403,
        "CS-09"
    );

    let (browser, _) = w.login("alice").await;
    let user = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(user.status, 200);
    assert_eq!(user.json()["authenticated"], true);
    assert_eq!(user.json()["sub"], "alice");
    let cookie = browser.cookie(&w.base, SESSION_COOKIE).unwrap();
    assert_eq!(client_js_user(&w.base, "").await, json!(null));
    assert_eq!(client_js_user(&w.base, &cookie).await["sub"], "alice");

    // A tampered cookie: signed out, and the cookie cleared.
    let mut bytes = cookie.into_bytes();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    browser.set_cookie(&w.base, SESSION_COOKIE, std::str::from_utf8(&bytes).unwrap());
    let page = browser.fetch(&w.url("/auth/user")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json(), json!({"authenticated": false}));
    assert!(page.clears_a_cookie());

    // Off by default: 401 login_required, which client.js reads as null too.
    let w = world("").await;
    let page = Browser::new(&w.base).fetch(&w.url("/auth/user")).await;
    assert_eq!(page.status, 401);
    assert_eq!(page.json()["code"], "login_required");
    assert_eq!(client_js_user(&w.base, "").await, json!(null));
}

/// What `user()` of the served `/auth/client.js` resolves to, run in node
/// against cloakroom at `base` with `cookie` as the session cookie (node's
/// fetch keeps no cookies; `credentials` means nothing there).
async fn client_js_user(base: &str, cookie: &str) -> Value {
    let module = reqwest::get(format!("{base}/auth/client.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client.mjs"), module).unwrap();
    let script = format!(
        "const base = {base:?}; const cookie = {cookie:?};
const plain = globalThis.fetch;
globalThis.fetch = (path, init = {{}}) => {{
  const headers = new Headers(init.headers);
  if (cookie) headers.set('cookie', '{SESSION_COOKIE}=' + cookie);
  return plain(base + path, {{ ...init, headers }});
}};
const {{ user }} = await import('./client.mjs');
console.log(JSON.stringify(await user()));"
    );
    std::fs::write(dir.path().join("run.mjs"), script).unwrap();
    let at = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg("run.mjs")
            .current_dir(at)
            .output()
            .expect("node must be installed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

// === IDP-01, IDP-02: the IdPs teams really use ===

/// The payload of the JWT bearer the upstream got for `browser`'s session.
async fn bearer_claims(w: &support::idp::World, browser: &Browser) -> Value {
    let r = w.api_get(browser).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bearer = echoed(&r.json(), "authorization").expect("a bearer reached the upstream");
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let payload = token.split('.').nth(1).expect("a JWT access token");
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn idp01_a_login_through_an_issuer_published_with_a_trailing_slash() {
    // Auth0's form: `https://TENANT.auth0.com/`, configured as published.
    let w = world_with("", json!({"issuer_path": "/"}), 1).await;
    assert!(w.idp.issuer.ends_with('/'), "{}", w.idp.issuer);
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/app/home"), "{}", page.url);
    // The ID token's `iss` was compared with the slash too; so is the
    // access token's, as an API would.
    assert_eq!(bearer_claims(&w, &browser).await["iss"], w.idp.issuer.as_str());
    let ready: Value = support::client()
        .get(format!("http://{}/readyz", w.app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["idp"]["issuer"], w.idp.issuer.as_str(), "{ready}");
    assert_eq!(ready["idp"]["state"], "ready", "{ready}");
}

#[tokio::test]
async fn idp01_metadata_without_pkce_methods_still_gets_s256_and_signs_in() {
    // Entra ID's form: no code_challenge_methods_supported in the metadata.
    let w = world_with(
        "",
        json!({"metadata_omit": ["code_challenge_methods_supported"]}),
        1,
    )
    .await;
    let discovery: Value = support::client()
        .get(w.idp.endpoint("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery.get("code_challenge_methods_supported").is_none());
    let (_, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/app/home"), "{}", page.url);
    let asked = w.idp.authorizations().await;
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["code_challenge_method"], "S256");
    assert_eq!(asked[0]["code_challenge"].as_str().unwrap().len(), 43);
}

#[tokio::test]
async fn idp01_an_issuer_one_character_off_is_refused_naming_both() {
    // The IdP publishes `http://127.0.0.1:PORT/`; the config drops the slash.
    let idp = Idp::start(json!({"issuer_path": "/"}));
    let up = Upstream::start().await;
    let configured = idp.issuer.trim_end_matches('/').to_owned();
    let app = support::App::start(&format!(
        "public_url: http://localhost:8080
log: {{level: error}}
oidc: {{issuer: '{configured}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: '{}'}}]",
        up.url()
    ))
    .await;
    let login = support::client()
        .get(format!("http://{}/auth/login", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503, "no login against the wrong issuer");
    let ready: Value = support::client()
        .get(format!("http://{}/readyz", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cause = ready["idp"]["cause"].as_str().unwrap_or_default().to_owned();
    assert_eq!(ready["idp"]["state"], "failed", "{ready}");
    assert!(
        cause.contains(&format!("{:?}", idp.issuer)) && cause.contains(&format!("{configured:?}")),
        "both strings named: {cause}"
    );
}

#[tokio::test]
async fn idp02_authorize_params_and_allowed_login_params_reach_the_idp_and_nothing_else() {
    let audience = "https://api.example.com";
    let w = support::idp::world_oidc(
        &format!("authorize_params: {{audience: '{audience}'}}, login_params: [login_hint, ui_locales]"),
        json!({"audience_param": true}),
    )
    .await;
    let browser = Browser::new(&w.base);
    let query = "return_to=/app/home&login_hint=alice%40example.test\
        &kc_idp_hint=evil&scope=admin&redirect_uri=https://evil.example/cb\
        &state=forged&prompt=none&audience=urn:other";
    let (page, _) = browser
        .navigate(&w.url(&format!("/auth/login?{query}")), "alice")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/app/home"), "{}", page.url);

    let asked = w.idp.authorizations().await;
    assert_eq!(asked.len(), 1);
    let asked = &asked[0];
    let mut names: Vec<&str> = asked.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "audience",
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "login_hint",
            "nonce",
            "redirect_uri",
            "response_type",
            "scope",
            "state"
        ],
        "{asked:?}"
    );
    assert_eq!(
        asked["audience"], audience,
        "the configured value, not the caller's"
    );
    assert_eq!(asked["login_hint"], "alice@example.test");
    assert_eq!(asked["redirect_uri"], w.url("/auth/callback"));
    assert_eq!(asked["scope"], "openid profile email offline_access");
    assert_ne!(asked["state"], "forged");
    // The IdP issued the JWT access token for that audience.
    assert_eq!(bearer_claims(&w, &browser).await["aud"], audience);
}

#[tokio::test]
async fn idp02_a_silent_login_that_needs_the_user_returns_to_the_spa_with_the_error() {
    let w = support::idp::world_oidc("login_params: [prompt]", json!({})).await;
    let browser = Browser::new(&w.base);
    let (page, visited) = browser
        .navigate(
            &w.url("/auth/login?prompt=none&return_to=/welcome%3Ftab%3D2"),
            "alice",
        )
        .await;
    assert_eq!(w.idp.authorizations().await[0]["prompt"], "none");
    assert_eq!(
        page.status, 200,
        "the SPA's page, not an error page: {}",
        page.body
    );
    assert_eq!(
        visited.last().unwrap(),
        &w.url("/welcome?tab=2&error=login_required"),
        "{visited:?}"
    );
    assert!(browser.login_cookies(&w.base).is_empty(), "the login is consumed");
    assert!(browser.cookie(&w.base, SESSION_COOKIE).is_none(), "no session");
    // Counted apart, not as a failed login an alert would fire on.
    let metrics = support::client()
        .get(format!("http://{}/metrics", w.app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logins: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("cloakroom_logins_total{"))
        .collect();
    assert!(
        logins
            .iter()
            .any(|l| l.contains("outcome=\"silent_refused\"") && l.ends_with(" 1")),
        "{logins:?}"
    );
    assert!(
        !logins.iter().any(|l| l.contains("outcome=\"failed\"")),
        "{logins:?}"
    );
    // The same callback again finds no login: an ordinary failure.
    let callback = visited.iter().find(|u| u.contains("/auth/callback")).unwrap();
    assert_eq!(browser.get(callback, &[]).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn idp01_one_start_up_line_says_the_metadata_lists_no_pkce_methods() {
    let up = Upstream::start().await;
    let idp = Idp::start(json!({"metadata_omit": ["code_challenge_methods_supported"]}));
    let app = support::Process::start_logged_at(
        support::free_port(),
        &format!(
            "public_url: http://localhost:8080
log: {{format: json, level: info}}
oidc: {{issuer: '{}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /, upstream: '{}', auth: none}}]",
            idp.issuer,
            up.url()
        ),
    );
    app.wait_ready();
    let unlisted = || {
        app.logs()
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("lists no code_challenge_methods_supported"))
            })
            .collect::<Vec<_>>()
    };
    let (limit, every) = (Duration::from_secs(5), Duration::from_millis(50));
    let lines = poll(limit, every, async || unlisted(), |l| !l.is_empty()).await;
    // A few logins later, still the one line of the start.
    for _ in 0..3 {
        let r = support::client()
            .get(format!("{}/auth/login", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    assert_eq!(lines.len(), 1, "{:?}", app.logs());
    assert_eq!(unlisted().len(), 1, "{:?}", app.logs());
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["issuer"], idp.issuer.as_str());
}

/// Starts a login in `browser` without going to the IdP: the `state` of
/// the authorization request `/auth/login` redirects to.
async fn started_login(w: &support::idp::World, browser: &Browser) -> String {
    let page = browser.get(&w.url("/auth/login"), &[]).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let location = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

#[tokio::test]
async fn lg28_forged_callbacks_spend_the_client_secret_a_bounded_number_of_times() {
    let w = world("limits: {refused_code_exchanges_per_minute: 5}\n").await;
    let forged = |state: &str, code: &str| {
        let mut url = url::Url::parse(&w.url("/auth/callback")).unwrap();
        url.query_pairs_mut()
            .append_pair("code", code)
            .append_pair("state", state)
            .append_pair("iss", &w.idp.issuer);
        url.to_string()
    };
    let token_requests = async || w.idp.stats().await["token_requests"].as_u64().unwrap();

    // One real pre-auth cookie, kept whatever the answers say, and twenty
    // invented codes: its state spends one exchange.
    let forger = Browser::new(&w.base);
    let state = started_login(&w, &forger).await;
    let (name, cookie) = forger.login_cookies(&w.base).remove(0);
    for i in 0..20 {
        let replay = Browser::new(&w.base);
        replay.set_cookie(&w.base, &name, &cookie);
        let page = replay.get(&forged(&state, &format!("invented-{i}")), &[]).await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains("login_failed"), "{}", page.body);
    }
    assert_eq!(token_requests().await, 1, "one exchange per pre-auth cookie");

    // A fresh login per forged callback: the address spends at most
    // `refused_code_exchanges_per_minute`; the rest are 429 before the IdP is asked,
    // and keep their pre-auth cookie so the same callback can be retried.
    let mut throttled = 0;
    for i in 0..20 {
        let forger = Browser::new(&w.base);
        let state = started_login(&w, &forger).await;
        let page = forger.get(&forged(&state, &format!("fresh-{i}")), &[]).await;
        match page.status {
            400 => assert!(page.body.contains("login_failed"), "{}", page.body),
            429 => {
                throttled += 1;
                assert!(page.body.contains("too_many_requests"), "{}", page.body);
                assert_eq!(page.headers["retry-after"], "12");
                assert!(!page.clears_a_cookie());
            }
            other => panic!("{other}: {}", page.body),
        }
    }
    assert_eq!(throttled, 16);
    assert_eq!(
        token_requests().await,
        5,
        "at most five exchanges a minute from one address"
    );
}

/// LG-28's bound is on codes the IdP refuses: real logins from one address
/// (a whole office behind one NAT) are never throttled by each other.
#[tokio::test]
async fn lg28_accepted_codes_are_not_held_against_their_address() {
    let w = world("limits: {refused_code_exchanges_per_minute: 2}\n").await;
    for i in 0..5 {
        let (_, page) = w.login("alice").await;
        assert_eq!(page.status, 200, "login {i}: {}", page.body);
    }
    assert_eq!(w.idp.stats().await["token_requests"], 5);
}

/// LG-28 counts codes the IdP refused, not exchanges in flight: while a
/// slow IdP holds more of one address's logins than the bound, every one
/// of them completes (an office behind one NAT at nine in the morning).
#[tokio::test]
async fn lg28_logins_in_flight_together_are_not_throttled_by_each_other() {
    let w = world("limits: {refused_code_exchanges_per_minute: 2}\n").await;
    let mut prepared = Vec::new();
    for i in 0..5 {
        let browser = Browser::new(&w.base);
        let callback = w.callback_url(&browser, &format!("office-{i}")).await;
        prepared.push((browser, callback));
    }
    // The IdP holds every token request: all five exchanges are in flight
    // at once, as many as are let through.
    w.idp.outage("hang").await;
    let callbacks: Vec<_> = prepared
        .into_iter()
        .map(|(browser, callback)| tokio::spawn(async move { browser.get(&callback, &[]).await }))
        .collect();
    let stats = w.idp.stats_when(|s| s["held"] == 5).await;
    w.idp.outage("up").await;
    for (i, callback) in callbacks.into_iter().enumerate() {
        let page = callback.await.unwrap();
        assert_eq!(
            page.status, 302,
            "login {i}: {} (IdP held {})",
            page.body, stats["held"]
        );
    }
    assert_eq!(w.idp.stats().await["token_requests"], 5);
}
