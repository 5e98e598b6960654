//! A minimal browser: a cookie jar per origin, no JavaScript. It follows
//! redirects and posts the IdP's login and consent forms when asked to, and
//! keeps what one origin sent it for leak checks.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// The session cookie's name: tests run cloakroom on plain http (development
/// mode), so without the `__Host-` prefix.
pub const SESSION_COOKIE: &str = "cloakroom";

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

/// One response, as the browser got it.
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

    /// The body, parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Browser {
    /// A browser that records what `watch` (an origin like
    /// `http://127.0.0.1:1234`) sends it.
    pub fn new(watch: &str) -> Self {
        Self::with_client(watch, super::net::client())
    }

    /// A browser that says it is `user_agent`.
    pub fn new_as(watch: &str, user_agent: &str) -> Self {
        let http = super::net::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .build()
            .unwrap();
        Self::with_client(watch, http)
    }

    fn with_client(watch: &str, http: reqwest::Client) -> Self {
        Self {
            http,
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

    /// `GET url` as the SPA's client module sends it: with `X-CSRF: 1`.
    pub async fn fetch(&self, url: &str) -> Page {
        self.get(url, &[("x-csrf", "1")]).await
    }

    /// `POST /auth/logout` on `base` as the SPA sends it: with `X-CSRF: 1`
    /// and its own origin.
    pub async fn logout(&self, base: &str) -> Page {
        let headers = [("x-csrf", "1"), ("origin", base)];
        let url = format!("{base}/auth/logout");
        self.send(reqwest::Method::POST, &url, &headers, None).await
    }

    /// Gives `to` the session cookie `from` set: one browser behind a load
    /// balancer reaches every replica with the same cookie.
    pub fn carry_session(&self, from: &str, to: &str) {
        let session = self.cookie(from, SESSION_COOKIE).expect("a session cookie");
        self.set_cookie(to, SESSION_COOKIE, &session);
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
