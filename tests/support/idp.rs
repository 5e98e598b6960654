//! The real OpenID Provider (`oidc-provider`, started with node), and the
//! [`World`] around it: an echo upstream and cloakroom replicas that log in
//! through it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::json;

use super::{App, Browser, Page, Upstream, COOKIE_KEY};

/// A running `tests/idp/server.mjs`.
pub struct Idp {
    /// The issuer as the IdP publishes it (`issuer_path` included).
    pub issuer: String,
    /// `http://127.0.0.1:PORT`, where the test endpoints (`/__stats`, …) are.
    pub origin: String,
    child: Child,
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

impl Idp {
    /// Starts the IdP with `settings` (see server.mjs) and waits for its URL.
    pub fn start(settings: serde_json::Value) -> Self {
        super::npm::ci("tests/idp", "oidc-provider");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(settings.to_string())
            .current_dir(idp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed to run the IdP");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = loop {
            let line = lines.next().expect("IdP exited before printing its URL").unwrap();
            if line.starts_with("http://") {
                break line;
            }
        };
        // Keep draining stdout so the IdP never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url::Url::parse(&issuer).unwrap();
        let origin = format!("http://127.0.0.1:{}", url.port().unwrap());
        Self {
            issuer,
            origin,
            child,
        }
    }

    /// What one of the test IdP's own endpoints (`/__stats`, …) answers.
    async fn test_endpoint<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        super::net::client()
            .get(format!("{}{path}", self.origin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `path` under the issuer (its endpoints), without a double `/`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer.trim_end_matches('/'))
    }

    /// The query of every authorization request the IdP received, in order.
    pub async fn authorizations(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.test_endpoint("/__authorizations").await
    }

    /// The parameters of every pushed authorization request the IdP
    /// accepted (RFC 9126), in order.
    pub async fn pushed(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.test_endpoint("/__pushed").await
    }

    /// The node process's id, to read its resource use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the IdP for good (its state is in memory): an IdP outage.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts (`down`: 503 to everything; `hang`: nothing answered) or
    /// ends (`up`) an outage of the whole provider, its state kept.
    pub async fn outage(&self, mode: &str) {
        let answer = super::net::client()
            .get(format!("{}/__outage?mode={mode}", self.origin))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// Every refresh token the IdP issued, in order: the issued tokens
    /// that are not JWTs.
    pub async fn refresh_tokens(&self) -> Vec<String> {
        let issued = self.issued().await;
        issued
            .into_iter()
            .filter(|t| t.matches('.').count() != 2)
            .collect()
    }

    /// Whether `token` is active, as the IdP's introspection (RFC 7662)
    /// says to the test client; spends nothing.
    pub async fn active(&self, token: &str) -> bool {
        let answer: serde_json::Value = super::net::client()
            .post(self.endpoint("/token/introspection"))
            .basic_auth("cloakroom", Some("test-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["active"] == true
    }

    /// A refresh token grant with `token` as the test client; the OAuth
    /// `error` of a refusal, `None` when it was granted.
    pub async fn refresh_error(&self, token: &str) -> Option<String> {
        let answer: serde_json::Value = super::net::client()
            .post(self.endpoint("/token"))
            .basic_auth("cloakroom", Some("test-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["error"].as_str().map(str::to_owned)
    }

    /// What the IdP counted: grants by type, revocations.
    pub async fn stats(&self) -> serde_json::Value {
        self.test_endpoint("/__stats").await
    }

    /// What the IdP counted once `done` holds of it (or after ten
    /// seconds, for the caller to assert on): for what cloakroom does in
    /// the background, such as the revocations it queues.
    pub async fn stats_when(&self, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let (limit, every) = (
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(50),
        );
        super::wait::poll(limit, every, async || self.stats().await, done).await
    }

    /// Every token the IdP issued (access, refresh, ID).
    pub async fn issued(&self) -> Vec<String> {
        self.test_endpoint("/__issued").await
    }

    /// Moves the IdP's clock forward, as a test moves cloakroom's.
    pub async fn advance(&self, by: std::time::Duration) {
        let answer = super::net::client()
            .get(format!("{}/__advance?seconds={}", self.origin, by.as_secs()))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// The IdP's public keys, to verify tokens as an API would.
    pub async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        super::net::client()
            .get(self.endpoint("/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct World {
    pub idp: Idp,
    pub up: Upstream,
    pub app: App,
    pub base: String,
    /// Further replicas: (base URL, app).
    pub others: Vec<(String, App)>,
    /// The configuration every replica runs.
    pub yaml: String,
    /// The clock every replica judges expiry by; a test may move it forward.
    pub clock: cloakroom::Clock,
}

/// cloakroom in front of an echo upstream, logging in through the real IdP.
/// Routes: `/api` (API, token), `/app` (pages), `/` (anonymous).
pub async fn world(extra: &str) -> World {
    world_with(extra, json!({}), 1).await
}

/// `replicas` cloakroom instances with one config (`public_url` is the
/// first's), the IdP started with `settings` merged into the defaults.
pub async fn world_with(extra: &str, settings: serde_json::Value, replicas: usize) -> World {
    world_with_clock(extra, settings, replicas, cloakroom::Clock::system()).await
}

/// [`world_with`], every replica judging expiry by `clock`.
pub async fn world_with_clock(
    extra: &str,
    settings: serde_json::Value,
    replicas: usize,
    clock: cloakroom::Clock,
) -> World {
    world_full(extra, "", settings, replicas, clock).await
}

/// One replica with `oidc_extra` added to the `oidc` section (flow
/// mapping entries, e.g. `login_params: [login_hint]`), the IdP started
/// with `settings`.
pub async fn world_oidc(oidc_extra: &str, settings: serde_json::Value) -> World {
    world_full("", oidc_extra, settings, 1, cloakroom::Clock::system()).await
}

pub async fn world_full(
    extra: &str,
    oidc_extra: &str,
    settings: serde_json::Value,
    replicas: usize,
    clock: cloakroom::Clock,
) -> World {
    let oidc_extra = if oidc_extra.is_empty() {
        String::new()
    } else {
        format!(", {oidc_extra}")
    };
    let up = Upstream::start().await;
    let mut bound = Vec::new();
    for _ in 0..replicas {
        bound.push(App::bind().await);
    }
    let base = format!("http://127.0.0.1:{}", bound[0].addr.port());
    let mut idp_settings = json!({
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
    });
    for (k, v) in settings.as_object().unwrap() {
        idp_settings[k] = v.clone();
    }
    // `"backchannel_logout": true` registers the first replica's endpoint.
    if settings["backchannel_logout"] == true {
        idp_settings["backchannel_logout_uri"] = json!(format!("{base}/auth/backchannel-logout"));
    }
    let idp = Idp::start(idp_settings);
    // A client that signs its assertions has no secret (config refuses one).
    let secret = if oidc_extra.contains("private_key_jwt") {
        ""
    } else {
        ", client_secret: test-secret"
    };
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom{secret}{oidc_extra}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /app, upstream: '{u}', login_redirect: true}}
  - {{path: /live, upstream: '{u}', websocket: true, strip_prefix: true}}
  - {{path: /, upstream: '{u}', auth: none}}
{extra}",
        iss = idp.issuer,
        u = up.url()
    );
    let others: Vec<(String, App)> = bound
        .drain(1..)
        .map(|b| {
            let base = format!("http://127.0.0.1:{}", b.addr.port());
            (base, b.start_with_clock(&yaml, clock.clone()))
        })
        .collect();
    let app = bound.pop().unwrap().start_with_clock(&yaml, clock.clone());
    World {
        idp,
        up,
        app,
        base,
        others,
        yaml,
        clock,
    }
}

impl World {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs `user` in; returns the browser and the page it ended on.
    pub async fn login(&self, user: &str) -> (Browser, Page) {
        let browser = Browser::new(&self.base);
        let (page, _) = browser
            .navigate(&self.url("/auth/login?return_to=/app/home"), user)
            .await;
        (browser, page)
    }

    /// Runs a login up to the IdP's redirect back; returns the callback URL
    /// without fetching it.
    pub async fn callback_url(&self, browser: &Browser, user: &str) -> String {
        let (_, visited) = browser
            .navigate_until(&self.url("/auth/login"), user, Some(&self.url("/auth/callback")))
            .await;
        visited.last().unwrap().clone()
    }

    /// Every replica's base URL, the first one's first.
    pub fn bases(&self) -> Vec<String> {
        let others = self.others.iter().map(|(base, _)| base.clone());
        std::iter::once(self.base.clone()).chain(others).collect()
    }

    /// Logs `user` in on the first replica and gives the browser the
    /// session cookie on every other one.
    pub async fn login_everywhere(&self, user: &str) -> Browser {
        let (browser, _) = self.login(user).await;
        for (base, _) in &self.others {
            browser.carry_session(&self.base, base);
        }
        browser
    }

    /// The sum of one metrics series (`name{labels}`, as exposed) over
    /// every replica's `/metrics`: counted wherever it happened.
    pub async fn counted(&self, series: &str) -> u64 {
        let admins = std::iter::once(self.app.admin).chain(self.others.iter().map(|(_, a)| a.admin));
        let mut total = 0;
        for admin in admins {
            let text = super::net::client()
                .get(format!("http://{admin}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += text
                .lines()
                .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .map(|n| n.parse::<u64>().unwrap())
                .sum::<u64>();
        }
        total
    }

    /// `/api/orders` with `method` and `headers`, from `browser`.
    pub async fn api(&self, browser: &Browser, method: reqwest::Method, headers: &[(&str, &str)]) -> Page {
        browser
            .send(method, &self.url("/api/orders"), headers, None)
            .await
    }

    /// `GET /api/orders` as the SPA sends it (`X-CSRF: 1`).
    pub async fn api_get(&self, browser: &Browser) -> Page {
        browser.fetch(&self.url("/api/orders")).await
    }

    /// Logs the browser's user out at the IdP itself (its end-session
    /// page and form), as a user would on another application: with
    /// back-channel logout registered, the IdP posts its logout token to
    /// cloakroom before this returns.
    pub async fn logout_at_idp(&self, browser: &Browser) -> Page {
        let url = self.idp.endpoint("/session/end?client_id=cloakroom");
        browser.navigate(&url, "").await.0
    }

    /// `POST /auth/logout` on the first replica as the SPA sends it.
    pub async fn logout(&self, browser: &Browser) -> Page {
        browser.logout(&self.base).await
    }
}
