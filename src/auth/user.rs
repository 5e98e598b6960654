//! `GET /auth/user`: the session's configured claims and expiry, no token.

use serde_json::{json, Map, Value};

use crate::session::{Loaded, Sessions};

pub fn user_info(sessions: &Sessions, loaded: &Loaded) -> Value {
    let config = &sessions.config;
    let mut out = Map::new();
    for name in &config.claims {
        if let Some(v) = loaded.record.claims.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    out.insert(
        "expires_at".into(),
        json!(loaded.ticket.issued_at + config.absolute_timeout.as_secs()),
    );
    out.insert(
        "idle_expires_at".into(),
        json!(loaded.record.last_seen + config.idle_timeout.as_secs()),
    );
    Value::Object(out)
}
