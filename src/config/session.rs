//! The `session` section: how long a session lasts, what it keeps, and where it is
//! stored.

use std::time::Duration;

use serde_json::Value;

use super::node::{Cursor, Fields, FromNode, Reported};
use super::redis::RedisConfig;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreConfig,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// ID token claims kept in the session and shown by `/auth/user`.
    pub claims: Vec<String>,
    /// Refresh when the access token has less than this left.
    pub refresh_skew: Duration,
    /// How long a login may take, from `/auth/login` to the callback.
    pub login_timeout: Duration,
    /// Sessions one user may have at once; a new one ends the oldest.
    pub max_per_user: usize,
    /// `GET /auth/user` without a session answers 200
    /// `{"authenticated": false}` instead of 401 `login_required`.
    pub anonymous_user: bool,
    /// Keep each live session's refresh tokens also sealed to the cookie
    /// key ring beside its record, so that an end without the cookie (the
    /// user's other session, the admin API, the per-user bound,
    /// back-channel logout, a timeout) revokes them at the IdP too.
    pub revoke_on_end: bool,
    /// Revocations waiting for the IdP, at most; the oldest are dropped
    /// past it.
    pub revocation_queue_max: usize,
    /// Device-bound sessions (DBSC): whether a browser is offered to bind
    /// the session to a key it cannot export, and whether it must.
    pub device_binding: DeviceBinding,
    /// How long a bound cookie lives: the most a copied session cookie
    /// is worth without the device's key, and how often a bound browser
    /// proves it still holds it.
    pub bound_cookie_lifetime: Duration,
    /// How session records are written; every release reads both.
    pub record_format: RecordFormat,
}

/// `session.device_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceBinding {
    /// Never offered; a session bound before is served without its proof.
    Off,
    /// Offered at login; a browser without DBSC keeps an unbound session.
    Offer,
    /// Offered at login, and a session not bound in its first minutes is
    /// refused (managed fleets whose browsers all bind).
    Require,
}

/// `session.record_format`: the encoding a record is written in. Every
/// release reads both, so replicas of one release apart share sessions
/// whatever each writes, as long as none writes a format the other does
/// not read (threat-model N2, RD-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Format 1: JSON, the one earlier releases read.
    Json,
    /// Format 2: binary (postcard), each JWT kept as its decoded segments
    /// and only the claims the ID token does not hold; two thirds of the
    /// bytes of a JSON record.
    Compact,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store: one replica, sessions lost on restart.
    Memory,
    /// Redis, shared by every replica.
    Redis(Box<RedisConfig>),
}

/// The longest `absolute_timeout` accepted at all.
pub(crate) const MAX_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

// === impl SessionConfig ===

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::Memory,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            claims: ["sub", "name", "email"].map(String::from).to_vec(),
            refresh_skew: Duration::from_secs(60),
            login_timeout: Duration::from_secs(600),
            max_per_user: 10,
            anonymous_user: false,
            revoke_on_end: true,
            revocation_queue_max: 10_000,
            device_binding: DeviceBinding::Offer,
            bound_cookie_lifetime: Duration::from_secs(600),
            // The next release writes `compact` by default, once every
            // replica that may run beside it reads format 2.
            record_format: RecordFormat::Json,
        }
    }
}

impl FromNode for SessionConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let d = Self::default();
        let mut f = Fields::open(node, at)?;
        let store = f.or("store", d.store, at);
        let idle_timeout = f.or("idle_timeout", d.idle_timeout, at);
        let absolute_timeout = f.or("absolute_timeout", d.absolute_timeout, at);
        let claims = f.or("claims", d.claims, at);
        let refresh_skew = f.or("refresh_skew", d.refresh_skew, at);
        let login_timeout = f.or("login_timeout", d.login_timeout, at);
        let max_per_user = f.or::<u64>("max_per_user", d.max_per_user as u64, at);
        let anonymous_user = f.or("anonymous_user", d.anonymous_user, at);
        let revoke_on_end = f.or("revoke_on_end", d.revoke_on_end, at);
        let revocation_queue_max = f.or::<u64>("revocation_queue_max", d.revocation_queue_max as u64, at);
        let device_binding = f.or("device_binding", d.device_binding, at);
        let bound_cookie_lifetime = f.or("bound_cookie_lifetime", d.bound_cookie_lifetime, at);
        let record_format = f.or("record_format", d.record_format, at);
        f.finish(at);
        if bound_cookie_lifetime
            .is_some_and(|t| t < Duration::from_secs(30) || t > Duration::from_secs(86_400))
        {
            at.error_at("bound_cookie_lifetime", "must be between 30s and 24h");
        }
        if revocation_queue_max.is_some_and(|n| n == 0 || n > 1_000_000) {
            at.error_at("revocation_queue_max", "must be between 1 and 1000000");
        }
        if max_per_user.is_some_and(|n| n == 0 || n > 1000) {
            at.error_at("max_per_user", "must be between 1 and 1000");
        }
        if login_timeout.is_some_and(|t| t.is_zero() || t > Duration::from_secs(600)) {
            at.error_at("login_timeout", "must be between 1s and 10m");
        }
        if idle_timeout.is_some_and(|t| t.is_zero()) {
            at.error_at("idle_timeout", "must be longer than 0s");
        }
        if absolute_timeout.is_some_and(|t| t.is_zero() || t > MAX_ABSOLUTE_TIMEOUT) {
            // Beyond a year is a typo, not a policy; 7 days is already
            // warned about (config::posture).
            at.error_at("absolute_timeout", "must be between 1s and 365d");
        }
        if let (Some(idle), Some(abs)) = (idle_timeout, absolute_timeout) {
            if idle > abs {
                at.error_at("idle_timeout", "must not be longer than absolute_timeout");
            }
        }
        Ok(SessionConfig {
            store: store.ok_or(Reported)?,
            idle_timeout: idle_timeout.ok_or(Reported)?,
            absolute_timeout: absolute_timeout.ok_or(Reported)?,
            claims: claims.ok_or(Reported)?,
            refresh_skew: refresh_skew.ok_or(Reported)?,
            login_timeout: login_timeout.ok_or(Reported)?,
            max_per_user: max_per_user.ok_or(Reported)? as usize,
            anonymous_user: anonymous_user.ok_or(Reported)?,
            revoke_on_end: revoke_on_end.ok_or(Reported)?,
            revocation_queue_max: revocation_queue_max.ok_or(Reported)? as usize,
            device_binding: device_binding.ok_or(Reported)?,
            bound_cookie_lifetime: bound_cookie_lifetime.ok_or(Reported)?,
            record_format: record_format.ok_or(Reported)?,
        })
    }
}

impl FromNode for DeviceBinding {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            // YAML 1.1 reads a bare `off` as false.
            Value::Bool(false) => Ok(DeviceBinding::Off),
            Value::String(text) => match text.trim() {
                "off" => Ok(DeviceBinding::Off),
                "offer" => Ok(DeviceBinding::Offer),
                "require" => Ok(DeviceBinding::Require),
                text => Err(at.fail(format!("{text:?} is not one of off, offer, require"))),
            },
            _ => Err(at.fail("expected off, offer or require")),
        }
    }
}

impl FromNode for RecordFormat {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::String(text) => match text.trim() {
                "json" => Ok(RecordFormat::Json),
                "compact" => Ok(RecordFormat::Compact),
                text => Err(at.fail(format!("{text:?} is not one of json, compact"))),
            },
            _ => Err(at.fail("expected json or compact")),
        }
    }
}

// === impl RecordFormat ===

impl RecordFormat {
    /// The format's number, as `Record::format` holds it.
    pub fn number(self) -> u32 {
        match self {
            RecordFormat::Json => 1,
            RecordFormat::Compact => 2,
        }
    }

    /// The key's value, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Json => "json",
            RecordFormat::Compact => "compact",
        }
    }
}

impl FromNode for StoreConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::String(s) if s == "memory" => Ok(StoreConfig::Memory),
            Value::Object(_) => {
                let mut f = Fields::open(node, at)?;
                let memory = f.has("memory");
                let named_redis = f.has("redis");
                f.optional::<Value>("memory", at);
                let redis = f.optional::<RedisConfig>("redis", at);
                let chose_redis = redis.is_some();
                f.finish(at);
                match (memory, redis) {
                    (true, None) if !chose_redis => Ok(StoreConfig::Memory),
                    (false, Some(redis)) => Ok(StoreConfig::Redis(Box::new(redis))),
                    (true, _) => Err(at.fail("choose one store: memory or redis")),
                    // The redis section's own errors are already listed.
                    (false, None) if named_redis => Err(Reported),
                    (false, None) => Err(at.fail("choose one store: memory or redis")),
                }
            }
            _ => Err(at.fail("expected `memory` or a `redis:` mapping")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn the_revocation_queue_bound_names_its_key() {
        let base =
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";
        for max in ["0", "1000001"] {
            let got = errors(&format!("{base}session: {{revocation_queue_max: {max}}}"));
            assert_eq!(
                got,
                ["session.revocation_queue_max: must be between 1 and 1000000"],
                "{max}"
            );
        }
        let got = errors(&format!("{base}session: {{revoke_on_end: sometimes}}"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("session.revoke_on_end: "), "{got:?}");
    }

    #[test]
    fn device_binding_names_its_key() {
        let base =
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";
        assert_eq!(
            errors(&format!("{base}session: {{device_binding: always}}")),
            ["session.device_binding: \"always\" is not one of off, offer, require"]
        );
        assert_eq!(
            errors(&format!("{base}session: {{device_binding: true}}")),
            ["session.device_binding: expected off, offer or require"]
        );
        let off = crate::config::Config::load(
            &format!("{base}session: {{device_binding: off}}"),
            &crate::config::MapEnv::default(),
        )
        .unwrap();
        assert_eq!(
            off.session.device_binding,
            super::DeviceBinding::Off,
            "YAML's bare off"
        );
        for lifetime in ["10s", "2d"] {
            assert_eq!(
                errors(&format!("{base}session: {{bound_cookie_lifetime: {lifetime}}}")),
                ["session.bound_cookie_lifetime: must be between 30s and 24h"],
                "{lifetime}"
            );
        }
    }

    #[test]
    fn record_format_names_its_key() {
        let base =
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";
        assert_eq!(
            errors(&format!("{base}session: {{record_format: binary}}")),
            ["session.record_format: \"binary\" is not one of json, compact"]
        );
        assert_eq!(
            errors(&format!("{base}session: {{record_format: 2}}")),
            ["session.record_format: expected json or compact"]
        );
        let load = |extra: &str| {
            crate::config::Config::load(&format!("{base}{extra}"), &crate::config::MapEnv::default())
                .unwrap()
                .session
                .record_format
        };
        assert_eq!(load(""), super::RecordFormat::Json, "the default, this release");
        assert_eq!(
            load("session: {record_format: compact}"),
            super::RecordFormat::Compact
        );
    }

    #[test]
    fn a_store_section_naming_no_store_says_so_at_its_key() {
        let base =
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";
        for store in ["{}", "{memory: null}", "{redis: null}"] {
            let got = errors(&format!("{base}session: {{store: {store}}}"));
            assert_eq!(
                got,
                ["session.store: choose one store: memory or redis"],
                "{store}"
            );
        }
    }
}
