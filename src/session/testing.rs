//! Sessions for in-process tests: the memory store, a manual clock, and a
//! login without an IdP.

use std::sync::Arc;

use super::memory::MemoryStore;
use super::sessions::Sessions;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Sessions on the memory store, judged by a manual clock.
pub(crate) async fn sessions(max_per_user: usize) -> (Arc<Sessions>, Clock) {
    sessions_counted(max_per_user, Default::default()).await
}

/// [`sessions`], counting into `metrics`.
pub(crate) async fn sessions_counted(max_per_user: usize, metrics: Arc<Metrics>) -> (Arc<Sessions>, Clock) {
    let yaml = format!(
        "public_url: http://localhost:8080
oidc: {{issuer: 'http://127.0.0.1:9', client_id: c, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: q83vEjRWeJASNFZ4kKvN7xI0VniQq83vEjRWeJASNFY}}]}}
session: {{max_per_user: {max_per_user}}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:9'}}]"
    );
    let config = crate::config::Config::load(&yaml, &crate::config::MapEnv::default()).unwrap();
    let clock = Clock::manual();
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(&config, store, clock.clone(), metrics).unwrap();
    (Arc::new(sessions), clock)
}

/// Creates a session for `sub` (IdP session `sid`) and returns the request
/// headers carrying its cookie.
pub(crate) async fn login(sessions: &Sessions, sub: &str, sid: &str) -> http::HeaderMap {
    let tokens = serde_json::from_value(serde_json::json!({
        "access_token": "at", "token_type": "Bearer", "expires_in": 300,
    }))
    .unwrap();
    let claims = serde_json::json!({"iss": "https://idp", "sub": sub, "sid": sid});
    let cookie = sessions
        .create(
            tokens,
            claims.as_object().unwrap().clone(),
            Some("Firefox/1 X11"),
            None,
        )
        .await
        .unwrap()
        .cookie;
    let mut headers = http::HeaderMap::new();
    let value = format!("{}={cookie}", sessions.names.session);
    headers.insert("cookie", value.parse().unwrap());
    headers
}
