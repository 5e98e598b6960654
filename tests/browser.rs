//! The demo in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/demo.mjs`), against the demo's own pieces: its IdP and
//! sign-in page (`deploy/demo/idp.mjs`), its API verifying JWTs with the
//! IdP's JWKS (`deploy/demo/api.mjs`), and cloakroom on the demo's config
//! (`deploy/demo/cloakroom.yaml`) serving the demo SPA, with Redis.
//! Access tokens live 5 seconds, so the session outlives several.
//!
//! Screenshots of the key screens are kept in `<target>/browser-artifacts/`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;
use support::redis::RedisServer;
use support::{App, COOKIE_KEY};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `npm ci` where the packages are missing, as `.ci/run` does up front.
fn npm_ci() {
    support::npm::ci("deploy/demo", "oidc-provider");
    support::npm::ci("tests/browser", "playwright-core");
}

/// A node process that prints its URL first; killed on drop.
struct Node {
    url: String,
    child: Child,
}

impl Node {
    fn start(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new("node")
            .arg(repo(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next().expect("no URL printed").unwrap();
        assert!(url.starts_with("http://"), "{script} printed {url}");
        std::thread::spawn(move || for _ in lines {});
        Self { url, child }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo's config with the test's values in place of `${DEMO_*}`.
fn demo_config(vars: &[(&str, &str)], redis: &str) -> String {
    let mut yaml = std::fs::read_to_string(repo("deploy/demo/cloakroom.yaml")).unwrap();
    for (name, value) in vars {
        yaml = yaml.replace(&format!("${{{name}}}"), value);
    }
    let store = format!("  store: {{ redis: {{ url: '{redis}' }} }}");
    yaml.replace("  store: memory", &store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_signs_in_calls_the_api_renews_and_signs_out_in_chromium() {
    let chromium = support::playwright::chromium();
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does)"
    );
    npm_ci();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let issued = artifacts.join("issued-tokens.txt");

    let bound = App::bind().await;
    let port = bound.addr.port().to_string();
    let public = format!("http://localhost:{port}");
    let idp = Node::start(
        "tests/browser/idp.mjs",
        &[
            &json!({
                "client_secret": "browser-test-secret",
                "access_token_ttl": 5,
                "redirect_uris": [format!("{public}/auth/callback")],
                "post_logout_redirect_uris": [format!("{public}/")],
            })
            .to_string(),
            issued.to_str().unwrap(),
        ],
    );
    let api = Node::start(
        "deploy/demo/api.mjs",
        &[&json!({ "issuer": idp.url }).to_string()],
    );
    let redis = RedisServer::start();
    let spa = repo("deploy/demo/spa");
    let yaml = demo_config(
        &[
            ("DEMO_PORT", &port),
            ("DEMO_ADMIN_PORT", "0"),
            ("DEMO_ISSUER", &idp.url),
            ("DEMO_API", &api.url),
            ("DEMO_CLIENT_SECRET", "browser-test-secret"),
            ("DEMO_COOKIE_KEY", COOKIE_KEY),
            ("DEMO_SPA_DIR", spa.to_str().unwrap()),
            ("DEMO_LOG_LEVEL", "warn"),
        ],
        &redis.url(),
    );
    let _app = bound.start(&yaml);

    let settings = json!({ "base": public, "artifacts": artifacts });
    let r = support::playwright::run("demo.mjs", settings).await;
    assert_eq!(
        r["ok"],
        true,
        "{}\nnavigations: {}\nscreenshots: {}",
        r["error"],
        r["navigations"],
        artifacts.display()
    );

    // Signed in through the IdP's own pages, on the IdP's origin.
    assert_eq!(r["idp_login_url"], idp.url.as_str());
    assert!(r["user"].as_str().unwrap().contains("Dana Demo"), "{r}");
    // The API verified a token for the demo user, with the API scope.
    let api_result = r["api_result"].as_str().unwrap();
    assert!(
        api_result.contains("demo") && api_result.contains("api"),
        "{api_result}"
    );

    // The page holds no token: nothing readable by script carries one.
    assert_eq!(r["document_cookie"], "", "the session cookie is HttpOnly");
    assert_eq!(r["storage"], "{}{}");
    for cookie in r["cookies"].as_array().unwrap() {
        if cookie["domain"] == "localhost" {
            assert_eq!(cookie["httpOnly"], true, "{cookie}");
        }
    }
    assert_eq!(r["jwt_in_readable"], false);
    let readable = std::fs::read_to_string(artifacts.join("readable.json")).unwrap();
    let tokens = std::fs::read_to_string(&issued).unwrap();
    let tokens: Vec<&str> = tokens.lines().filter(|t| !t.is_empty()).collect();
    assert!(tokens.len() >= 4, "the IdP issued {} tokens", tokens.len());
    for token in &tokens {
        assert!(!readable.contains(token), "an issued token reached the page");
    }

    // 5-second tokens: every call succeeded across several expiries, and
    // the SPA saw them renewed.
    let renewal = &r["renewal"];
    assert_eq!(renewal["statuses"], json!([200]), "{renewal}");
    assert!(renewal["tokens"].as_u64().unwrap() >= 3, "{renewal}");
    assert!(renewal["renewals_shown"].as_u64().unwrap() >= 2, "{renewal}");
    assert_eq!(renewal["failures_shown"], 0, "{renewal}");

    // Another origin got nothing: its requests carried no session cookie and
    // none was answered 200; its script could read nothing.
    let cross = &r["cross_origin"];
    for request in cross["requests"].as_array().unwrap() {
        assert_ne!(request["cookie"], true, "{cross}");
        assert_ne!(request["status"], 200, "{cross}");
    }
    assert!(
        cross["script_saw"]["cors"]
            .as_str()
            .unwrap()
            .starts_with("rejected"),
        "{cross}"
    );
    assert_eq!(cross["script_saw"]["no_cors"], "opaque 0", "{cross}");
    assert_eq!(r["still_signed_in"], 200);

    // Signed out here and at the IdP.
    assert_eq!(
        r["after_logout"],
        json!({"status": 401, "code": "login_required"})
    );
    assert_eq!(r["idp_asks_again"], true);
    for shot in [
        "01-signed-out",
        "02-idp-login",
        "03-signed-in",
        "04-renewed",
        "06-signed-out-again",
    ] {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "{shot}");
    }
}
