//! Forward-auth end to end: a real nginx in front (`auth_request` to
//! cloakroom's check endpoint, the bearer copied onto the request nginx
//! forwards to the echo upstream), logging in through the real IdP.
//!
//! Cases besides the threat model's PX-/CS- ids:
//!
//! - **FA-01** Login through the ingress, then an API call: the upstream
//!   gets the route's bearer and claim headers from the check's answer,
//!   and the browser never sees a token; after logout the check says 401.
//! - **FA-02** The access token expired: the check refreshes it, as a
//!   proxied route would, and the ingress forwards the new one.
//! - **FA-03** The check's answer carries the token, so it is for the
//!   ingress alone: a browser asking the check endpoint itself through
//!   the ingress (with its own `X-Original-URI`), or asking cloakroom for
//!   a forward-auth route directly, or the path below the endpoint while
//!   `forward_auth.uri_in_path` is off, gets a 404 and no token.
//! - **FA-04** An access rule that refuses the user: 403 from the check,
//!   passed on by the ingress, nothing forwarded.
//! - **FA-05** A route's `step_up` rule: the check's 401 reaches the
//!   browser with its `WWW-Authenticate` (nginx passes that header on),
//!   and after the step-up login the same call passes.
//! - **FA-06** A session ended elsewhere (the admin API, LO-12): the next
//!   check is a 401, nothing forwarded.

mod support;

use std::time::Duration;

use serde_json::json;
use support::idp::Idp;
use support::nginx::Nginx;
use support::{echoed, App, Browser, Upstream, COOKIE_KEY};

/// The admin API's token in every test config.
const ADMIN_TOKEN: &str = "an-admin-token-of-forty-characters-000000";

/// cloakroom beside nginx: the browser talks to nginx only.
struct Front {
    idp: Idp,
    up: Upstream,
    /// cloakroom, running while this lives.
    app: App,
    nginx: Nginx,
    /// cloakroom's own address, which only nginx should use.
    cloakroom: String,
    clock: cloakroom::Clock,
}

/// nginx's locations: cloakroom's endpoints passed through (with nginx's
/// own `X-Original-URI`, never the client's), an internal check location,
/// and protected locations that ask it and copy its headers upstream; the
/// pages (`/`, everything else) send the browser to log in on a 401.
const LOCATIONS: &str = r#"
        location /auth/ {
            proxy_pass http://127.0.0.1:{cloakroom};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-URI $request_uri;
        }
        location = /_cloakroom_check {
            internal;
            proxy_pass http://127.0.0.1:{cloakroom}/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }
        location /api/ {
            auth_request /_cloakroom_check;
            auth_request_set $auth $upstream_http_authorization;
            auth_request_set $user $upstream_http_x_user;
            proxy_set_header Authorization $auth;
            proxy_set_header X-User $user;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location /admin/ {
            auth_request /_cloakroom_check;
            auth_request_set $auth $upstream_http_authorization;
            proxy_set_header Authorization $auth;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location /sudo/ {
            auth_request /_cloakroom_check;
            auth_request_set $auth $upstream_http_authorization;
            proxy_set_header Authorization $auth;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location / {
            auth_request /_cloakroom_check;
            auth_request_set $auth $upstream_http_authorization;
            proxy_set_header Authorization $auth;
            error_page 401 = @login;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location @login {
            return 302 /auth/login?return_to=$uri;
        }
"#;

/// Access tokens live 5 s (refreshed 2 s before); cloakroom's clock stands
/// still but for what a test moves.
async fn front() -> Front {
    let up = Upstream::start().await;
    let bound = App::bind().await;
    let cloakroom = format!("http://127.0.0.1:{}", bound.addr.port());
    let locations = LOCATIONS
        .replace("{cloakroom}", &bound.addr.port().to_string())
        .replace("{upstream}", &up.addr.port().to_string());
    let nginx = Nginx::start(&locations);
    let base = nginx.url("");
    let idp = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
        "access_token_ttl": 5,
    }));
    let yaml = format!(
        "public_url: {base}
trusted_proxies: [127.0.0.1/32]
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
session: {{refresh_skew: 2s}}
admin: {{api_token: '{ADMIN_TOKEN}'}}
routes:
  - {{path: /api, forward_auth: true, claim_headers: {{X-User: sub}}}}
  - {{path: /admin, forward_auth: true, access: {{sub: [bob]}}}}
  - {{path: /sudo, forward_auth: true, step_up: {{max_age: 10m}}}}
  - {{path: /, forward_auth: true, login_redirect: true}}
",
        iss = idp.issuer,
    );
    let clock = cloakroom::Clock::manual();
    let app = bound.start_with_clock(&yaml, clock.clone());
    Front {
        idp,
        up,
        app,
        nginx,
        cloakroom,
        clock,
    }
}

impl Front {
    /// Logs `user` in through nginx: a page load without a session is sent
    /// to `/auth/login` by nginx, and ends on the page, served.
    async fn login(&self, user: &str) -> Browser {
        let browser = Browser::new(&self.nginx.url(""));
        let (page, visited) = browser.navigate(&self.nginx.url("/app/home"), user).await;
        assert_eq!(page.status, 200, "{visited:?}\n{}", page.body);
        assert!(
            visited
                .iter()
                .any(|u| u.contains("/auth/login?return_to=/app/home")),
            "nginx sent the browser to log in: {visited:?}"
        );
        assert_eq!(page.url, self.nginx.url("/app/home"));
        browser
    }

    /// `GET /api/orders` through nginx as the SPA sends it: the status, and
    /// the `Authorization` and `X-User` the upstream got.
    async fn api(&self, browser: &Browser) -> (u16, Option<String>, Option<String>) {
        let page = browser.fetch(&self.nginx.url("/api/orders")).await;
        if page.status != 200 {
            return (page.status, None, None);
        }
        let seen = page.json();
        (
            page.status,
            echoed(&seen, "authorization"),
            echoed(&seen, "x-user"),
        )
    }

    /// What cloakroom itself answered the browser (through nginx): every
    /// response to an `/auth/` URL.
    fn cloakroom_answers(&self, browser: &Browser) -> Vec<String> {
        let seen = browser.seen.lock().unwrap();
        let answers = seen.responses.iter().filter(|(url, _)| url.contains("/auth/"));
        answers.map(|(_, text)| text.clone()).collect()
    }
}

#[tokio::test]
async fn fa01_login_through_nginx_then_the_upstream_gets_the_bearer_and_logout_is_a_401() {
    let f = front().await;
    let browser = f.login("alice").await;
    let (status, bearer, user) = f.api(&browser).await;
    assert_eq!(status, 200);
    let bearer = bearer.expect("nginx forwarded the bearer from the check's answer");
    let token = bearer.strip_prefix("Bearer ").expect("a bearer");
    assert!(
        f.idp.issued().await.iter().any(|t| t == token),
        "an access token the IdP issued"
    );
    assert_eq!(user.as_deref(), Some("alice"), "the route's claim header");
    // The token went to the upstream only: nothing cloakroom answered the
    // browser carries one.
    for token in f.idp.issued().await {
        for answer in f.cloakroom_answers(&browser) {
            assert!(!answer.contains(&token), "a token reached the browser: {answer}");
        }
    }

    let logout = browser.logout(&f.nginx.url("")).await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    let before = f.up.requests();
    let (status, _, _) = f.api(&browser).await;
    assert_eq!(status, 401, "no session after logout");
    assert_eq!(f.up.requests(), before, "nothing forwarded without a session");
}

#[tokio::test]
async fn fa02_an_expired_access_token_is_refreshed_by_the_check() {
    let f = front().await;
    let browser = f.login("alice").await;
    let (_, first, _) = f.api(&browser).await;
    // Past the 5 s token's expiry, not only its refresh point.
    f.clock.advance(Duration::from_secs(6));
    let (status, second, _) = f.api(&browser).await;
    assert_eq!(status, 200);
    assert!(second.is_some());
    assert_ne!(first, second, "nginx forwarded the refreshed token");
    let stats = f.idp.stats().await;
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats}");
    let (_, third, _) = f.api(&browser).await;
    assert_eq!(second, third, "the new token is kept and served");
}

#[tokio::test]
async fn fa03_a_browser_asking_the_check_endpoint_itself_gets_no_token() {
    let f = front().await;
    let browser = f.login("alice").await;
    let asks = [
        (
            f.nginx.url("/auth/check"),
            vec![("x-original-uri", "/api/orders"), ("x-original-method", "GET")],
        ),
        (
            f.nginx.url("/auth/check"),
            vec![("x-forwarded-uri", "/api/orders")],
        ),
        (f.nginx.url("/auth/check/api/orders"), vec![]),
        // Around nginx, straight to cloakroom: a forward-auth route is
        // never served there.
        (format!("{}/api/orders", f.cloakroom), vec![]),
        // The path-below form (Envoy's) is off unless configured.
        (format!("{}/auth/check/api/orders", f.cloakroom), vec![]),
    ];
    for (url, mut headers) in asks {
        headers.push(("x-csrf", "1"));
        if url.starts_with(&f.cloakroom) {
            browser.carry_session(&f.nginx.url(""), &f.cloakroom);
        }
        let page = browser.get(&url, &headers).await;
        assert_eq!(page.status, 404, "{url} {headers:?}: {}", page.body);
        assert!(page.headers.get("authorization").is_none(), "{url}");
        for token in f.idp.issued().await {
            assert!(!page.body.contains(&token) && !format!("{:?}", page.headers).contains(&token));
        }
    }
}

#[tokio::test]
async fn cs01_an_api_call_through_nginx_without_x_csrf_is_refused_by_the_check() {
    let f = front().await;
    let browser = f.login("alice").await;
    let before = f.up.requests();
    let page = browser.get(&f.nginx.url("/api/orders"), &[]).await;
    assert_eq!(page.status, 403);
    assert_eq!(f.up.requests(), before, "nothing forwarded");
    let (status, bearer, _) = f.api(&browser).await;
    assert_eq!(
        (status, bearer.is_some()),
        (200, true),
        "the same call with X-CSRF passes"
    );
}

#[tokio::test]
async fn fa04_an_access_rule_refusal_is_a_403_nginx_passes_on() {
    let f = front().await;
    let browser = f.login("alice").await;
    let before = f.up.requests();
    let page = browser.fetch(&f.nginx.url("/admin/users")).await;
    assert_eq!(page.status, 403, "alice is not bob");
    assert_eq!(f.up.requests(), before, "nothing forwarded");
}

#[tokio::test]
async fn fa05_step_up_is_asked_for_through_nginx_and_the_new_login_passes() {
    let f = front().await;
    // A plain login's ID token has no auth_time: its age cannot be shown.
    let browser = f.login("alice").await;
    let before = f.up.requests();
    let refused = browser.fetch(&f.nginx.url("/sudo/keys")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer error=\"insufficient_user_authentication\", max_age=\"600\""
    );
    assert_eq!(f.up.requests(), before, "nothing forwarded");

    let login = f.nginx.url("/auth/login?return_to=%2Fsudo%2Fkeys&max_age=600");
    let (_, visited) = browser.navigate(&login, "alice").await;
    let authorize = visited.iter().find(|u| u.contains("code_challenge=")).unwrap();
    assert!(authorize.contains("max_age=600"), "{authorize}");
    let page = browser.fetch(&f.nginx.url("/sudo/keys")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(echoed(&page.json(), "authorization").is_some());
}

#[tokio::test]
async fn fa06_a_session_ended_by_the_admin_api_is_a_401_at_the_next_check() {
    let f = front().await;
    let browser = f.login("alice").await;
    assert_eq!(f.api(&browser).await.0, 200);
    let ended = support::client()
        .delete(format!("http://{}/admin/sessions?sub=alice", f.app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let before = f.up.requests();
    assert_eq!(f.api(&browser).await.0, 401);
    assert_eq!(f.up.requests(), before, "nothing forwarded");
}
