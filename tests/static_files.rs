//! `static:` routes: the built SPA served from disk, with the caching rules
//! a production deployment needs, and nothing outside the directory.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{client, raw, App, COOKIE_KEY};

/// A built SPA: an index, a hashed bundle with precompressed siblings, a
/// plain file, a dotfile, and a symlink that points out of the directory.
fn spa(outside: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("index.html"), "<!doctype html><title>spa</title>").unwrap();
    std::fs::create_dir(root.join("assets")).unwrap();
    std::fs::write(
        root.join("assets/app.3f9a1c2b.js"),
        "console.log('app');".repeat(20),
    )
    .unwrap();
    std::fs::write(root.join("assets/app.3f9a1c2b.js.br"), "BROTLI").unwrap();
    std::fs::write(root.join("assets/app.3f9a1c2b.js.gz"), "GZIP").unwrap();
    std::fs::write(root.join("favicon.ico"), "icon").unwrap();
    std::fs::write(root.join(".env"), "SECRET=dotfile").unwrap();
    std::fs::write(outside.join("passwd"), "SECRET=outside").unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), root.join("leak.txt")).unwrap();
    dir
}

async fn start(dir: &Path, route_extra: &str, extra: &str) -> App {
    App::start(&format!(
        "public_url: http://localhost:8080
log: {{level: warn}}
{extra}
routes:
  - {{path: /, static: {{dir: '{}'}}{route_extra}}}
",
        dir.display()
    ))
    .await
}

#[tokio::test]
async fn index_fallback_and_hashed_assets_get_their_caching_rules() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let app = start(dir.path(), ", auth: none", "").await;
    let http = client();

    let index = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert!(index.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    let etag = index.headers()["etag"].clone();
    assert!(index.headers().contains_key("last-modified"));
    assert_eq!(index.text().await.unwrap(), "<!doctype html><title>spa</title>");

    // History fallback: a page path with no file is the index, not cached.
    let page = http.get(app.url("/orders/42")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert_eq!(page.text().await.unwrap(), "<!doctype html><title>spa</title>");
    // A missing asset stays a 404, not HTML the browser would run as script.
    let missing = http.get(app.url("/assets/app.00000000.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    // ...unless a browser navigates there, asking for HTML.
    let nav = http
        .get(app.url("/docs/v1.2"))
        .header("accept", "text/html,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), 200);

    // Revalidation with the ETag: 304, no body.
    let again = http
        .get(app.url("/"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.headers()["cache-control"], "no-cache");

    // Hashed bundle: cached for a year, precompressed when accepted.
    let js = http
        .get(app.url("/assets/app.3f9a1c2b.js"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(js.headers()["content-encoding"], "br");
    assert_eq!(js.headers()["vary"], "accept-encoding");
    assert_eq!(js.text().await.unwrap(), "BROTLI");
    let gz = http
        .get(app.url("/assets/app.3f9a1c2b.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let plain = http.get(app.url("/assets/app.3f9a1c2b.js")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));

    // Ranges.
    let part = http
        .get(app.url("/assets/app.3f9a1c2b.js"))
        .header("range", "bytes=0-6")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.text().await.unwrap(), "console");

    // An unhashed file is revalidated too; HEAD has the headers, no body.
    let icon = http.head(app.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["cache-control"], "no-cache");
    assert_eq!(icon.headers()["content-length"], "4");

    let post = http.post(app.url("/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn nothing_outside_the_directory_or_hidden_is_ever_served() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    // The fallback would answer any miss with the index: turn it off so a
    // refusal shows as 404 and a leak as the secret.
    let app = App::start(&format!(
        "public_url: http://localhost:8080\nlog: {{level: warn}}\nroutes:\n  - {{path: /, static: {{dir: '{}', fallback: false}}, auth: none}}\n",
        dir.path().display()
    ))
    .await;
    for target in [
        "/../passwd",
        "/..%2fpasswd",
        "/%2e%2e/passwd",
        "/assets/../../passwd",
        "/assets/%2E%2E/%2E%2E/passwd",
        "/..\\passwd",
        "/.env",
        "/%2eenv",
        "/leak.txt",
        "/index.html%00.js",
        "//etc/passwd",
    ] {
        let answer = raw(
            app.addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        let status = &answer[9..12];
        assert!(status == "404" || status == "400", "{target}: {answer}");
        assert!(!answer.contains("SECRET"), "{target} leaked: {answer}");
    }
}

#[tokio::test]
async fn px37_symlinks_to_hidden_files_and_escaping_precompressed_siblings_are_never_served() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let root = dir.path();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "SECRET=hidden-dir").unwrap();
    std::os::unix::fs::symlink(".env", root.join("env.txt")).unwrap();
    std::os::unix::fs::symlink(".git", root.join("conf")).unwrap();
    std::fs::write(root.join("pre.js"), "plain").unwrap();
    std::os::unix::fs::symlink(outside.path().join("passwd"), root.join("pre.js.gz")).unwrap();
    std::os::unix::fs::symlink(root.join(".env"), root.join("pre.js.br")).unwrap();
    let app = App::start(&format!(
        "public_url: http://localhost:8080\nlog: {{level: warn}}\nroutes:\n  - {{path: /, static: {{dir: '{}', fallback: false}}, auth: none}}\n",
        root.display()
    ))
    .await;
    let http = client();

    for path in ["/env.txt", "/conf/config", "/conf/"] {
        let r = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(!r.text().await.unwrap().contains("SECRET"), "{path} leaked");
    }
    // The file itself, never what its siblings point to.
    for encoding in ["gzip", "br", "gzip, br"] {
        let r = http
            .get(app.url("/pre.js"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{encoding}");
        assert!(r.headers().get("content-encoding").is_none(), "{encoding}");
        assert_eq!(r.text().await.unwrap(), "plain", "{encoding}");
    }
    // Siblings that pass the checks are still served.
    let br = http
        .get(app.url("/assets/app.3f9a1c2b.js"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(br.headers()["content-encoding"], "br");
    assert_eq!(br.text().await.unwrap(), "BROTLI");
}

#[tokio::test]
async fn a_static_route_behind_login_redirects_page_loads_and_is_private() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let app = start(
        dir.path(),
        ", auth: required, login_redirect: true",
        &format!(
            "oidc: {{issuer: 'http://127.0.0.1:9', client_id: c, client_secret: s}}\ncookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}"
        ),
    )
    .await;
    let page = client()
        .get(app.url("/orders"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 302);
    assert_eq!(page.headers()["location"], "/auth/login?return_to=%2Forders");
    let fetch = client()
        .get(app.url("/orders"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(fetch.status(), 401);
}

#[tokio::test]
async fn configured_headers_replace_the_defaults() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let app = App::start(&format!(
        "public_url: https://app.example.com\nlog: {{level: warn}}\nroutes:\n  - path: /\n    auth: none\n    static:\n      dir: '{}'\n      headers:\n        Content-Security-Policy: \"default-src 'self' https://cdn.example.com\"\n        Referrer-Policy: ''\n        Permissions-Policy: camera=()\n",
        dir.path().display()
    ))
    .await;
    let index = client().get(app.url("/")).send().await.unwrap();
    let h = index.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self' https://cdn.example.com"
    );
    assert_eq!(h["permissions-policy"], "camera=()");
    assert!(h.get("referrer-policy").is_none());
    assert!(h["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
}

/// The SPA's client module is served by cloakroom at a fixed path, with or
/// without login configured, before any route (even a `/` catch-all).
#[tokio::test]
async fn the_client_module_is_served_at_a_fixed_path() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let app = start(dir.path(), ", auth: none", "").await;
    let js = client().get(app.url("/auth/client.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(js.headers()["x-content-type-options"], "nosniff");
    assert!(js.text().await.unwrap().contains("'X-CSRF': '1'"));
    let types = client().get(app.url("/auth/client.d.ts")).send().await.unwrap();
    assert_eq!(types.status(), 200);
    assert!(types
        .text()
        .await
        .unwrap()
        .contains("export declare function api"));
}

#[tokio::test]
async fn px39_a_range_under_an_if_range_that_does_not_hold_is_the_whole_file() {
    let outside = tempfile::tempdir().unwrap();
    let dir = spa(outside.path());
    let app = start(dir.path(), ", auth: none", "").await;
    let http = client();
    let url = app.url("/favicon.ico");
    let whole = http.get(&url).send().await.unwrap();
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    let modified = whole.headers()["last-modified"].to_str().unwrap().to_owned();

    let ranged = |if_range: Option<&str>| {
        let mut request = http.get(&url).header("range", "bytes=0-1");
        if let Some(v) = if_range {
            request = request.header("if-range", v);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(ranged(None).await, (206, "ic".to_owned()));
    // The file's own date: the range stands.
    assert_eq!(ranged(Some(&modified)).await, (206, "ic".to_owned()));
    for stale in [
        "\"another-version\"",
        // A weak tag never validates a range (RFC 9110 §13.1.5), ours included.
        etag.as_str(),
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "not a validator",
    ] {
        assert_eq!(
            ranged(Some(stale)).await,
            (200, "icon".to_owned()),
            "If-Range: {stale}"
        );
    }
}
