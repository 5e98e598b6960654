//! The real OpenID Provider (`oidc-provider`, started with node) and a
//! browser that logs in through it by following redirects and posting the
//! login and consent forms.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use super::{App, Upstream};

/// A running `tests/idp/server.mjs`.
pub struct Idp {
    pub issuer: String,
    child: Child,
}

static NPM: Once = Once::new();

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

impl Idp {
    /// Starts the IdP with `settings` (see server.mjs) and waits for its URL.
    pub fn start(settings: serde_json::Value) -> Self {
        NPM.call_once(|| {
            if !idp_dir().join("node_modules/oidc-provider").exists() {
                let ok = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(idp_dir())
                    .status();
                assert!(
                    ok.is_ok_and(|s| s.success()),
                    "npm ci in tests/idp failed (is node installed?)"
                );
            }
        });
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
        Self { issuer, child }
    }

    /// Stops the IdP for good (its state is in memory): an IdP outage.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the IdP counted: grants by type, revocations.
    pub async fn stats(&self) -> serde_json::Value {
        super::client()
            .get(format!("{}/__stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every token the IdP issued (access, refresh, ID).
    pub async fn issued(&self) -> Vec<String> {
        super::client()
            .get(format!("{}/__issued", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The IdP's public keys, to verify tokens as an API would.
    pub async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        super::client()
            .get(format!("{}/jwks", self.issuer))
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

/// Everything a browser saw from one origin, for leak checks (PX-25).
#[derive(Default, Clone)]
pub struct Seen {
    /// (request URL, "status headers body") of each response.
    pub responses: Vec<(String, String)>,
}

/// A minimal browser: a cookie jar per host:port, no JavaScript.
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<std::sync::Mutex<HashMap<String, HashMap<String, String>>>>,
    /// Every response from `watch` (cloakroom's origin): status, headers, body.
    pub seen: Arc<std::sync::Mutex<Seen>>,
    watch: String,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Whether the response deletes a cookie (`Max-Age=0`).
    pub fn clears_a_cookie(&self) -> bool {
        self.headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("Max-Age=0"))
    }
}

impl Browser {
    /// A browser that records what `watch` (an origin like
    /// `http://127.0.0.1:1234`) sends it.
    pub fn new(watch: &str) -> Self {
        Self {
            http: super::client(),
            jar: Default::default(),
            seen: Default::default(),
            watch: watch.to_owned(),
        }
    }

    fn origin(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port_or_known_default().unwrap())
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .get(&Self::origin(url))
            .and_then(|c| c.get(name).cloned())
    }

    /// The pre-auth cookies of the logins in progress, as (name, value).
    pub fn login_cookies(&self, url: &str) -> Vec<(String, String)> {
        let jar = self.jar.lock().unwrap();
        let mut found: Vec<(String, String)> = jar
            .get(&Self::origin(url))
            .into_iter()
            .flatten()
            .filter(|(name, _)| name.starts_with("cloakroom-login-"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        found.sort();
        found
    }

    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .entry(Self::origin(url))
            .or_default()
            .insert(name.into(), value.into());
    }

    /// One request, cookies attached and stored; no redirect followed.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<Vec<(String, String)>>,
    ) -> Page {
        let origin = Self::origin(url);
        let mut request = self.http.request(method, url);
        let cookies = self.jar.lock().unwrap().get(&origin).cloned().unwrap_or_default();
        if !cookies.is_empty() {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(form) = form {
            request = request.form(&form);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        {
            let mut jar = self.jar.lock().unwrap();
            let cookies = jar.entry(origin).or_default();
            for value in headers.get_all(SET_COOKIE) {
                let text = value.to_str().unwrap();
                let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
                let (name, value) = pair.split_once('=').unwrap();
                if attrs.to_ascii_lowercase().contains("max-age=0") {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
        }
        if url.starts_with(&self.watch) {
            let mut seen = self.seen.lock().unwrap();
            seen.responses
                .push((url.to_owned(), format!("{status} {headers:?} {body}")));
        }
        Page {
            status,
            url: url.to_owned(),
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        self.send(reqwest::Method::GET, url, headers, None).await
    }

    /// Follows redirects and submits the IdP's forms (login as `user`,
    /// then consent) until a page that is neither; returns it and every
    /// URL visited.
    pub async fn navigate(&self, start: &str, user: &str) -> (Page, Vec<String>) {
        self.navigate_until(start, user, None).await
    }

    /// Like [`Browser::navigate`], but stops before fetching a URL that
    /// starts with `stop_at` (returned last in the visited list).
    pub async fn navigate_until(
        &self,
        start: &str,
        user: &str,
        stop_at: Option<&str>,
    ) -> (Page, Vec<String>) {
        let mut url = start.to_owned();
        let mut visited = vec![url.clone()];
        let mut page = self.get(&url, &[]).await;
        for _ in 0..30 {
            if (300..400).contains(&page.status) {
                let location = page.headers[LOCATION].to_str().unwrap();
                url = url::Url::parse(&url).unwrap().join(location).unwrap().to_string();
                visited.push(url.clone());
                if stop_at.is_some_and(|s| url.starts_with(s)) {
                    break;
                }
                page = self.get(&url, &[]).await;
                continue;
            }
            let Some((action, mut fields)) = form(&page.body) else {
                break;
            };
            if fields.iter().any(|(k, _)| k == "login") {
                fields.retain(|(k, _)| k != "login" && k != "password");
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any".into()));
            }
            url = url::Url::parse(&page.url)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            visited.push(url.clone());
            page = self.send(reqwest::Method::POST, &url, &[], Some(fields)).await;
        }
        (page, visited)
    }
}

/// The first form of an HTML page: its action and named inputs.
fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>").map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..at + tag[at..].find('"')?].to_owned())
    };
    let head = &form[..form.find('>')?];
    let action = attr(head, "action")?;
    let mut fields = Vec::new();
    for piece in form.split("<input").skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
    }
    Some((action, fields))
}

const KEY: &str = "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY";

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
    let idp = Idp::start(idp_settings);
    let yaml = format!(
        "public_url: {base}
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {KEY}}}]}}
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

    pub async fn api(&self, browser: &Browser, method: reqwest::Method, headers: &[(&str, &str)]) -> Page {
        browser
            .send(method, &self.url("/api/orders"), headers, None)
            .await
    }
}
