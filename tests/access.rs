//! Access rules, step-up and claim headers per route, on real logins
//! through the real IdP (oidc-provider): users, their groups and the `acr`
//! they can reach are set in the IdP (tests/idp/server.mjs `users`).

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::idp::{world_with, world_with_clock, World};
use support::{echoed, Browser, Page, Upstream};

const MFA: &str = "urn:cloakroom:test:mfa";

/// The IdP's users for these tests.
fn users() -> Value {
    json!({
        "users": {
            "alice": {"groups": ["staff", "admins"], "org": {"tier": "gold"}, "acr_allowed": [MFA]},
            "bob": {"groups": ["staff"]},
            "carol": {"email": "carol@example.test", "email_verified": false},
            "dave": {"email": "dave@elsewhere.test"},
            "eve": {"name": "Eve\r\nX-Injected: 1 Ñ", "groups": ["a,b", "c"]},
        }
    })
}

/// A world whose extra routes go to `up`; `routes` is YAML route entries
/// with `{u}` for its URL.
async fn world_for(up: &Upstream, routes: &str, settings: Value) -> World {
    world_with(&routes.replace("{u}", &up.url()), settings, 1).await
}

/// `GET url` as the SPA's `fetch()` sends it.
async fn fetch(browser: &Browser, url: &str, headers: &[(&str, &str)]) -> Page {
    let mut all = vec![("x-csrf", "1")];
    all.extend_from_slice(headers);
    browser.send(Method::GET, url, &all, None).await
}

#[tokio::test]
async fn a_group_member_passes_and_anyone_else_gets_403_access_denied_never_a_redirect() {
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        "  - {path: /admin, upstream: '{u}', login_redirect: true, access: {groups: [admins]}}\n",
        users(),
    )
    .await;
    let (alice, _) = w.login("alice").await;
    let page = fetch(&alice, &w.url("/admin/users"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(up.requests(), 1);

    let (bob, _) = w.login("bob").await;
    let refused = fetch(&bob, &w.url("/admin/users"), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["code"], "access_denied");
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    // A page load on a login_redirect route: still 403, no trip to login
    // and back for a user who is signed in.
    let navigation = bob
        .get(
            &w.url("/admin/users"),
            &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
        )
        .await;
    assert_eq!(navigation.status, 403, "{}", navigation.body);
    assert!(navigation.headers.get("location").is_none());
    assert!(
        !refused.clears_a_cookie() && !navigation.clears_a_cookie(),
        "the session stays"
    );
    assert_eq!(up.requests(), 1, "nothing refused reached the upstream");
    assert_eq!(w.api_get(&bob).await.status, 200, "bob's other routes still work");

    // Without a session a page load is still sent to log in.
    let anonymous = Browser::new(&w.base)
        .get(&w.url("/admin/users"), &[("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(anonymous.status, 302);
}

#[tokio::test]
async fn rules_read_claims_the_session_keeps_for_them_and_nest() {
    // `session.claims` is left at its default (sub, name, email): the
    // session keeps `groups` and `org` because the rule names them.
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        "  - path: /gold
    upstream: '{u}'
    access:
      any:
        - all: [{groups: [admins]}, {claim: /org/tier, in: [gold, platinum]}]
        - sub: [dave]
",
        users(),
    )
    .await;
    for (user, status) in [("alice", 200), ("bob", 403), ("dave", 200), ("carol", 403)] {
        let (browser, _) = w.login(user).await;
        let page = fetch(&browser, &w.url("/gold"), &[]).await;
        assert_eq!(page.status, status, "{user}: {}", page.body);
    }
}

#[tokio::test]
async fn an_email_domain_rule_needs_a_verified_address_in_the_domain() {
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        "  - {path: /corp, upstream: '{u}', access: {email_domains: [Example.Test]}}\n",
        users(),
    )
    .await;
    for (user, status, case) in [
        ("alice", 200, "verified, in the domain"),
        ("carol", 403, "in the domain, not verified"),
        ("dave", 403, "verified, another domain"),
    ] {
        let (browser, _) = w.login(user).await;
        let page = fetch(&browser, &w.url("/corp"), &[]).await;
        assert_eq!(page.status, status, "{case}: {}", page.body);
        if status == 403 {
            assert_eq!(page.json()["code"], "access_denied", "{case}");
        }
    }
}

#[tokio::test]
async fn px29_claim_headers_reach_the_upstream_and_client_copies_never_do() {
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        "  - path: /who
    upstream: '{u}'
    claim_headers: {X-User-Email: email, X-User-Groups: groups, X-Org-Tier: /org/tier, X-User-Name: name}
",
        users(),
    )
    .await;
    let forged = [
        ("x-user-email", "admin@example.test"),
        ("x_user_email", "admin@example.test"),
        ("X-Org-Tier", "platinum"),
        ("x-user-groups", "admins"),
    ];
    let (alice, _) = w.login("alice").await;
    let seen = fetch(&alice, &w.url("/who"), &forged).await.json();
    assert_eq!(
        echoed(&seen, "x-user-email").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(echoed(&seen, "x-user-groups").as_deref(), Some("staff,admins"));
    assert_eq!(echoed(&seen, "x-org-tier").as_deref(), Some("gold"));
    assert_eq!(echoed(&seen, "x-user-name").as_deref(), Some("User%20alice"));
    assert!(
        echoed(&seen, "x_user_email").is_none(),
        "the underscore spelling too"
    );

    // A claim the user lacks: the header is absent, not the client's.
    let (bob, _) = w.login("bob").await;
    let seen = fetch(&bob, &w.url("/who"), &forged).await.json();
    assert!(echoed(&seen, "x-org-tier").is_none());
    assert_eq!(echoed(&seen, "x-user-groups").as_deref(), Some("staff"));

    // CR, LF, commas and non-ASCII in a claim arrive encoded.
    let (eve, _) = w.login("eve").await;
    let seen = fetch(&eve, &w.url("/who"), &[]).await.json();
    assert_eq!(
        echoed(&seen, "x-user-name").as_deref(),
        Some("Eve%0D%0AX-Injected:%201%20%C3%91")
    );
    assert!(echoed(&seen, "x-injected").is_none());
    assert_eq!(echoed(&seen, "x-user-groups").as_deref(), Some("a%2Cb,c"));

    // On a route without claim headers, client copies are stripped too.
    let seen = fetch(&alice, &w.url("/api/orders"), &forged).await.json();
    for (name, _) in forged {
        assert!(echoed(&seen, &name.to_ascii_lowercase()).is_none(), "{name}");
    }
    let anonymous = Browser::new(&w.base);
    let seen = anonymous.get(&w.url("/public"), &forged).await.json();
    assert!(echoed(&seen, "x-org-tier").is_none(), "and on anonymous routes");
}

/// The step-up login a `401 step_up_required` names, and the answer.
fn step_up_login(page: &Page) -> String {
    assert_eq!(page.status, 401, "{}", page.body);
    let problem = page.json();
    assert_eq!(problem["code"], "step_up_required");
    assert!(!page.clears_a_cookie(), "the session stays for other routes");
    problem["login_url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_past_max_age_must_step_up_and_the_new_login_passes() {
    let up = Upstream::start().await;
    let clock = cloakroom::Clock::manual();
    let mut settings = users();
    settings["require_auth_time"] = json!(true);
    let w = world_with_clock(
        &"  - {path: /sudo, upstream: '{u}', step_up: {max_age: 10m}}\n".replace("{u}", &up.url()),
        settings,
        1,
        clock.clone(),
    )
    .await;
    let (alice, _) = w.login("alice").await;
    assert_eq!(fetch(&alice, &w.url("/sudo/keys"), &[]).await.status, 200);

    // Twelve minutes later (past max_age and the minute of clock leeway),
    // by cloakroom's clock and the IdP's.
    clock.advance(Duration::from_secs(12 * 60));
    w.idp.advance(Duration::from_secs(12 * 60)).await;
    let refused = fetch(&alice, &w.url("/sudo/keys?x=1"), &[]).await;
    let login_url = step_up_login(&refused);
    assert_eq!(
        login_url,
        "/auth/login?return_to=%2Fsudo%2Fkeys%3Fx%3D1&max_age=600"
    );
    assert_eq!(refused.json()["max_age"], 600);
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer error=\"insufficient_user_authentication\", max_age=\"600\""
    );
    assert_eq!(w.api_get(&alice).await.status, 200, "other routes are unaffected");

    // Following it: the IdP is asked for a new authentication.
    let (page, visited) = alice.navigate(&w.url(&login_url), "alice").await;
    let authorize = visited.iter().find(|u| u.contains("code_challenge=")).unwrap();
    assert!(
        authorize.contains("prompt=login") && authorize.contains("max_age=600"),
        "{authorize}"
    );
    assert_eq!(page.url, w.url("/sudo/keys?x=1"), "back where the step-up began");
    assert_eq!(fetch(&alice, &w.url("/sudo/keys"), &[]).await.status, 200);
}

#[tokio::test]
async fn a_session_without_auth_time_must_step_up_first() {
    // The IdP puts auth_time in ID tokens only when asked (max_age,
    // prompt=login): a plain login's session cannot show its age.
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        "  - {path: /sudo, upstream: '{u}', step_up: {max_age: 10m}}\n",
        users(),
    )
    .await;
    let (alice, _) = w.login("alice").await;
    let login_url = step_up_login(&fetch(&alice, &w.url("/sudo"), &[]).await);
    alice.navigate(&w.url(&login_url), "alice").await;
    assert_eq!(fetch(&alice, &w.url("/sudo"), &[]).await.status, 200);
}

#[tokio::test]
async fn a_max_age_login_whose_id_token_is_older_fails_and_keeps_the_old_session() {
    let up = Upstream::start().await;
    let clock = cloakroom::Clock::manual();
    let w = world_with_clock(
        &"  - {path: /sudo, upstream: '{u}', step_up: {max_age: 10m}}\n".replace("{u}", &up.url()),
        users(),
        1,
        clock.clone(),
    )
    .await;
    let (alice, _) = w.login("alice").await;
    let login_url = step_up_login(&fetch(&alice, &w.url("/sudo"), &[]).await);
    // cloakroom's clock runs a quarter of an hour ahead of the IdP's: the
    // new authentication's auth_time looks that old when it arrives, past
    // max_age and the clock leeway.
    clock.advance(Duration::from_secs(15 * 60));
    let (page, _) = alice.navigate(&w.url(&login_url), "alice").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_failed"), "{}", page.body);
    assert_eq!(w.api_get(&alice).await.status, 200, "the session it had is kept");
    assert_eq!(fetch(&alice, &w.url("/sudo"), &[]).await.status, 401);
}

#[tokio::test]
async fn acr_values_are_asked_of_the_idp_and_checked_in_the_new_id_token() {
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        &format!("  - {{path: /vault, upstream: '{{u}}', step_up: {{acr_values: ['{MFA}']}}}}\n"),
        users(),
    )
    .await;
    // A plain login reaches the password acr only.
    let (alice, _) = w.login("alice").await;
    let refused = fetch(&alice, &w.url("/vault"), &[]).await;
    let login_url = step_up_login(&refused);
    assert_eq!(
        login_url,
        "/auth/login?return_to=%2Fvault&acr_values=urn%3Acloakroom%3Atest%3Amfa"
    );
    assert_eq!(
        refused.headers["www-authenticate"],
        format!("Bearer error=\"insufficient_user_authentication\", acr_values=\"{MFA}\"")
    );
    let (page, visited) = alice.navigate(&w.url(&login_url), "alice").await;
    let authorize = visited.iter().find(|u| u.contains("code_challenge=")).unwrap();
    assert!(
        authorize.contains("prompt=login") && authorize.contains("acr_values=urn%3Acloakroom%3Atest%3Amfa")
    );
    assert_eq!(page.url, w.url("/vault"));
    assert_eq!(fetch(&alice, &w.url("/vault"), &[]).await.status, 200);

    // bob cannot reach it: the IdP answers with another acr, and the
    // callback refuses to grant it.
    let (bob, _) = w.login("bob").await;
    let login_url = step_up_login(&fetch(&bob, &w.url("/vault"), &[]).await);
    let (page, _) = bob.navigate(&w.url(&login_url), "bob").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("login_failed"));
    assert_eq!(w.api_get(&bob).await.status, 200, "bob keeps his session");
    assert_eq!(fetch(&bob, &w.url("/vault"), &[]).await.status, 401);
}

#[tokio::test]
async fn login_takes_only_bounded_step_up_parameters_and_acr_values_some_route_lists() {
    let up = Upstream::start().await;
    let w = world_for(
        &up,
        &format!("  - {{path: /vault, upstream: '{{u}}', step_up: {{acr_values: ['{MFA}', silver]}}}}\n"),
        users(),
    )
    .await;
    let browser = Browser::new(&w.base);
    for query in [
        "acr_values=urn%3Aanything%3Aelse",
        "acr_values=silver+gold",
        "max_age=99999999",
        "max_age=-5",
        "max_age=1&max_age=2",
    ] {
        let page = browser.get(&w.url(&format!("/auth/login?{query}")), &[]).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.body.contains("login_failed"), "{query}");
        assert!(
            browser.login_cookies(&w.base).is_empty(),
            "{query}: no login started"
        );
    }
    let page = browser
        .get(
            &w.url("/auth/login?return_to=/vault&max_age=300&acr_values=silver"),
            &[],
        )
        .await;
    assert_eq!(page.status, 302);
    let to_idp = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
    let params: Vec<(String, String)> = to_idp.query_pairs().into_owned().collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("prompt"), Some("login"));
    assert_eq!(get("max_age"), Some("300"));
    assert_eq!(get("acr_values"), Some("silver"));
    // A plain login asks for nothing more.
    let page = browser.get(&w.url("/auth/login"), &[]).await;
    let plain = page.headers["location"].to_str().unwrap();
    assert!(!plain.contains("prompt=") && !plain.contains("max_age") && !plain.contains("acr_values"));
}
