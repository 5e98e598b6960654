//! `csrf: fetch-metadata` on a real session: reads a browser cannot add
//! headers to (`EventSource`, `<img>`, downloads) pass on the browser's own
//! `Sec-Fetch-Site: same-origin`, and nothing else changes.

mod support;

use reqwest::Method;
use support::idp::world;
use support::{echoed, Upstream};

#[tokio::test]
async fn same_origin_reads_pass_without_x_csrf_only_where_the_route_opts_in() {
    let events = Upstream::start().await;
    let w = world(&format!(
        "  - {{path: /events, upstream: '{}', csrf: fetch-metadata}}\n",
        events.url()
    ))
    .await;
    let (browser, _) = w.login("alice").await;
    let events_url = w.url("/events/feed");
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let browser = browser.clone();
        let url = events_url.clone();
        async move { browser.send(Method::GET, &url, headers, None).await }
    };

    // An EventSource or <img> from the SPA's own page: passes, with the bearer.
    let same = get(&[("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "no-cors")]).await;
    assert_eq!(same.status, 200, "{}", same.body);
    let seen = same.json();
    assert!(echoed(&seen, "authorization").is_some_and(|b| b.starts_with("Bearer ")));

    // No fetch metadata at all proves nothing: X-CSRF is still needed.
    assert_eq!(get(&[]).await.status, 403);
    assert_eq!(get(&[("x-csrf", "1")]).await.status, 200);
    // Another site, a sibling subdomain, a typed-in URL: refused.
    for site in ["cross-site", "same-site", "none"] {
        let headers: &'static [(&'static str, &'static str)] = match site {
            "cross-site" => &[("sec-fetch-site", "cross-site")],
            "same-site" => &[("sec-fetch-site", "same-site")],
            _ => &[("sec-fetch-site", "none")],
        };
        assert_eq!(get(headers).await.status, 403, "{site}");
    }
    // Unsafe methods still need X-CSRF and an allowed Origin.
    let post = browser
        .send(
            Method::POST,
            &events_url,
            &[("sec-fetch-site", "same-origin")],
            None,
        )
        .await;
    assert_eq!(post.status, 403);

    // Routes left at the default keep asking for X-CSRF on reads (CS-06).
    let api = w
        .api(&browser, Method::GET, &[("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(api.status, 403);
    assert_eq!(events.requests(), 2, "only the two accepted reads went upstream");
}
