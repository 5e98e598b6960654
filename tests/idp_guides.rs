//! The IdP guides in `docs/idps/`, each exercised as written: the config
//! block is taken from the guide file itself, its IdP's published host is
//! replaced by a test IdP (oidc-provider) set up with that IdP's metadata
//! shape and quirks, and a real login goes through it. So a guide cannot
//! drift from what works.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::idp::Idp;
use support::{echoed, App, Browser, Upstream, COOKIE_KEY, SESSION_COOKIE};

/// A guide's config running against its test IdP.
struct Guide {
    idp: Idp,
    /// The config as the test runs it.
    yaml: String,
    base: String,
    _up: Upstream,
    _app: App,
}

/// The first ```yaml block of `docs/idps/{file}`.
fn config_block(file: &str) -> String {
    let path = format!("{}/docs/idps/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let start = text
        .find("```yaml\n")
        .unwrap_or_else(|| panic!("{path} has no yaml block"))
        + 8;
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_owned()
}

/// The value of the first `key:` line of a YAML block, unquoted.
fn value_of(yaml: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    yaml.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| {
            v.split(" #")
                .next()
                .unwrap()
                .trim()
                .trim_matches(['\'', '"'])
                .to_owned()
        })
}

/// Starts the test IdP with `quirks` (see tests/idp/server.mjs) in the
/// shape of the guide's issuer, and cloakroom with the guide's config.
async fn start(file: &str, quirks: Value) -> Guide {
    let block = config_block(file);
    let issuer = value_of(&block, "issuer").expect("the guide sets oidc.issuer");
    // `scheme://host` as written (a URL parser would lower its case).
    let host_end = issuer.find("://").unwrap() + 3;
    let path_at = issuer[host_end..]
        .find('/')
        .map_or(issuer.len(), |p| host_end + p);
    let (published, issuer_path) = issuer.split_at(path_at);
    let published = published.to_owned();
    let client_id = value_of(&block, "client_id").expect("the guide sets oidc.client_id");
    let auth = value_of(&block, "token_endpoint_auth").unwrap_or("client_secret_basic".into());

    let up = Upstream::start().await;
    let bound = App::bind().await;
    let base = format!("http://127.0.0.1:{}", bound.addr.port());
    let mut settings = json!({
        "issuer_path": issuer_path,
        "client_id": client_id,
        "client_secret": "test-secret",
        "token_endpoint_auth_method": auth,
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
    });
    for (k, v) in quirks.as_object().unwrap() {
        settings[k] = v.clone();
    }
    if settings["backchannel_logout"] == true {
        settings["backchannel_logout_uri"] = json!(format!("{base}/auth/backchannel-logout"));
    }
    let idp = Idp::start(settings);
    assert_eq!(
        idp.issuer,
        issuer.replace(&published, &idp.origin),
        "the issuer's form"
    );
    let yaml = block
        .replace(&published, &idp.origin)
        .replace("https://app.example.com", &base)
        .replace("http://api:8000", &up.url())
        .replace("http://spa:3000", &up.url())
        .replace("${OIDC_CLIENT_SECRET}", "test-secret")
        .replace("${COOKIE_KEY}", COOKIE_KEY);
    let app = bound.start(&yaml);
    Guide {
        idp,
        yaml,
        base,
        _up: up,
        _app: app,
    }
}

impl Guide {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs `alice` in through `/auth/login?{query}`; the browser, and
    /// the bearer the API then gets.
    async fn login(&self, query: &str) -> (Browser, String) {
        let browser = Browser::new(&self.base);
        let (page, visited) = browser
            .navigate(
                &self.url(&format!("/auth/login?return_to=/home&{query}")),
                "alice",
            )
            .await;
        assert_eq!(page.status, 200, "{visited:?}\n{}", page.body);
        assert_eq!(visited.last().unwrap(), &self.url("/home"), "{visited:?}");
        assert!(browser.cookie(&self.base, SESSION_COOKIE).is_some());
        let api = browser.fetch(&self.url("/api/orders")).await;
        assert_eq!(api.status, 200, "{}", api.body);
        let bearer = echoed(&api.json(), "authorization").expect("a bearer reached the API");
        (browser, bearer.strip_prefix("Bearer ").unwrap().to_owned())
    }

    /// `cloakroom check --online` on the config as run: its stdout.
    fn check_online(&self) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &self.yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(["check", "--online", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// What the IdP received on its one authorization request.
    async fn asked(&self) -> serde_json::Map<String, Value> {
        let mut all = self.idp.authorizations().await;
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }
}

/// The claims of a JWT, unverified (the API verifies; here only its shape).
fn jwt_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// The `subject` line of `check --online`'s output.
fn finding<'a>(stdout: &'a str, subject: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(subject))
        .unwrap_or_else(|| panic!("no {subject} line in:\n{stdout}"))
}

#[tokio::test]
async fn idp_guide_keycloak() {
    let g = start("keycloak.md", json!({"backchannel_logout": true})).await;
    let (browser, token) = g
        .login("login_hint=alice%40example.test&kc_idp_hint=github")
        .await;
    let asked = g.asked().await;
    assert_eq!(asked["login_hint"], "alice@example.test");
    assert_eq!(asked["kc_idp_hint"], "github");
    assert_eq!(jwt_claims(&token).unwrap()["iss"], g.idp.issuer.as_str());
    // A logout at the IdP ends the session here (back-channel logout).
    let end = g.idp.endpoint(&format!(
        "/session/end?client_id={}",
        value_of(&g.yaml, "client_id").unwrap()
    ));
    browser.navigate(&end, "").await;
    assert_eq!(g.idp.stats().await["backchannel"]["success"], 1);
    assert_eq!(browser.fetch(&g.url("/auth/user")).await.status, 401);
    let stdout = g.check_online();
    assert!(
        finding(&stdout, "backchannel_logout").contains("supported, with sid"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idp_guide_auth0() {
    let g = start(
        "auth0.md",
        json!({
            "audience_param": true,
            // Auth0 lists no back-channel fields unless it is set up.
            "metadata_omit": ["backchannel_logout_supported", "backchannel_logout_session_supported"],
        }),
    )
    .await;
    assert!(g.idp.issuer.ends_with('/'), "Auth0's issuer ends in /");
    let (_, token) = g
        .login("login_hint=alice%40example.test&screen_hint=signup")
        .await;
    let asked = g.asked().await;
    let audience = value_of(&g.yaml, "audience").unwrap();
    assert_eq!(asked["audience"], audience.as_str());
    assert_eq!(asked["screen_hint"], "signup");
    // With the audience, the API gets a JWT it can verify, for itself.
    let claims = jwt_claims(&token).expect("a JWT access token");
    assert_eq!(claims["aud"], audience.as_str());
    assert_eq!(claims["iss"], g.idp.issuer.as_str());
    let stdout = g.check_online();
    assert!(
        finding(&stdout, "issuer").contains(&format!("{:?}", g.idp.issuer)),
        "{stdout}"
    );
}

#[tokio::test]
async fn idp_guide_entra_id() {
    let g = start(
        "entra-id.md",
        json!({
            "metadata_omit": [
                "code_challenge_methods_supported",
                "revocation_endpoint",
                "backchannel_logout_supported",
                "backchannel_logout_session_supported",
            ],
            "revocation_listed_in": "nowhere",
        }),
    )
    .await;
    let (_, _) = g
        .login("login_hint=alice%40example.test&domain_hint=example.test")
        .await;
    let asked = g.asked().await;
    assert_eq!(asked["code_challenge_method"], "S256", "sent though not listed");
    assert_eq!(asked["domain_hint"], "example.test");
    let stdout = g.check_online();
    assert!(finding(&stdout, "pkce").starts_with("  note"), "{stdout}");
    assert!(
        finding(&stdout, "revocation_endpoint").starts_with("  note"),
        "{stdout}"
    );
    assert!(
        finding(&stdout, "backchannel_logout").starts_with("  note"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idp_guide_okta() {
    let g = start(
        "okta.md",
        json!({"metadata_omit": ["backchannel_logout_supported", "backchannel_logout_session_supported"]}),
    )
    .await;
    let (_, token) = g.login("login_hint=alice%40example.test&idp=0oa-social").await;
    let asked = g.asked().await;
    assert_eq!(asked["idp"], "0oa-social");
    assert_eq!(jwt_claims(&token).unwrap()["iss"], g.idp.issuer.as_str());
    let stdout = g.check_online();
    assert!(
        finding(&stdout, "end_session_endpoint").starts_with("  ok"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idp_guide_google() {
    let g = start(
        "google.md",
        json!({
            "metadata_omit": [
                "end_session_endpoint",
                "backchannel_logout_supported",
                "backchannel_logout_session_supported",
            ],
            "refuse_scopes": ["offline_access"],
            "offline_access_type": true,
            "rotate_refresh": false,
        }),
    )
    .await;
    let (browser, _) = g.login("login_hint=alice%40example.test&hd=example.test").await;
    let asked = g.asked().await;
    assert_eq!(asked["access_type"], "offline");
    assert_eq!(asked["prompt"], "consent");
    assert!(
        !asked["scope"].as_str().unwrap().contains("offline_access"),
        "{asked:?}"
    );
    // access_type=offline with prompt=consent: a refresh token was issued.
    assert_eq!(g.idp.issued().await.len(), 3, "access, refresh and ID token");
    // No end-session endpoint: logout ends the session here, and says so.
    let out = browser.logout(&g.base).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(browser.fetch(&g.url("/auth/user")).await.status, 401);
    let stdout = g.check_online();
    assert!(
        finding(&stdout, "end_session_endpoint").starts_with("  note"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idp_guide_google_test_idp_refuses_offline_access_as_google_does() {
    // The quirk the Google guide works around, shown on the test IdP: the
    // default scopes (with offline_access) are refused at the IdP.
    let idp = Idp::start(json!({"refuse_scopes": ["offline_access"]}));
    let answer = support::client()
        .get(idp.endpoint(
            "/auth?client_id=cloakroom&response_type=code&scope=openid%20offline_access\
             &redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fauth%2Fcallback",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("invalid_scope"));
}

#[tokio::test]
async fn idp_guide_auth0_test_idp_gives_an_opaque_token_without_audience() {
    // The quirk the Auth0 guide's `audience` is for, shown on the test IdP:
    // without it, the API gets an access token it cannot verify.
    let w = support::idp::world_with("", json!({"audience_param": true}), 1).await;
    let (browser, page) = w.login("alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let api = w.api_get(&browser).await;
    let bearer = echoed(&api.json(), "authorization").expect("a bearer reached the API");
    assert!(
        jwt_claims(bearer.strip_prefix("Bearer ").unwrap()).is_none(),
        "opaque: {bearer}"
    );
}
