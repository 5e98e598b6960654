//! `session.store.redis`: where Redis is (one node, a cluster, or behind
//! sentinels), its credentials and TLS, and the `WAIT` after each write.

use std::time::Duration;

use serde_json::Value;

use super::node::{from_text, kind, Cursor, Fields, FromNode, Reported};
use crate::secret::Secret;

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: RedisTopology,
    /// ACL user and password for the data nodes; they override any in a URL.
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// Certificates for `rediss://`; the system roots when absent.
    pub tls: RedisTls,
    /// After each write, wait for this many replicas to acknowledge it.
    pub wait: Option<RedisWait>,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    /// Keep session records in each replica's memory, invalidated through
    /// Redis pub/sub, so most requests need no Redis round trip; `None`
    /// when turned off.
    pub local_cache: Option<LocalCache>,
}

/// `local_cache`: `true` (the default size), `false` (off), or
/// `{max_entries: N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCache {
    /// The most session records one replica keeps; past it the least used
    /// make room.
    pub max_entries: usize,
}

/// How cloakroom finds the Redis primary that takes its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// `redis[s]://[user:password@]host:port[/db]`.
    Standalone(Secret<String>),
    /// Cluster seed nodes.
    Cluster(Vec<Secret<String>>),
    /// Sentinels that name the current primary of `master_name`.
    Sentinel {
        master_name: String,
        nodes: Vec<Secret<String>>,
    },
}

/// PEM material for TLS to Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// Trust only this CA bundle.
    pub ca: Option<String>,
    /// A client certificate and its key, for Redis with `tls-auth-clients`.
    pub cert: Option<String>,
    pub key: Option<Secret<String>>,
}

/// `WAIT <replicas> <timeout>` after every write (threat-model §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisWait {
    pub replicas: u64,
    pub timeout: Duration,
}

// === impl RedisConfig ===

impl RedisConfig {
    /// A standalone Redis at `url` with every other setting at its default.
    pub fn standalone(url: &str) -> Self {
        Self {
            topology: RedisTopology::Standalone(Secret::new(url.to_owned())),
            username: None,
            password: None,
            tls: RedisTls::default(),
            wait: None,
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            local_cache: Some(LocalCache::default()),
        }
    }
}

// === impl LocalCache ===

impl LocalCache {
    /// Past this a typo, not a size: ten million records are about 20 GB.
    const MOST: u64 = 10_000_000;
}

impl Default for LocalCache {
    fn default() -> Self {
        Self { max_entries: 100_000 }
    }
}

/// `Some` when on: `local_cache` is a switch or a mapping.
struct LocalCacheSetting(Option<LocalCache>);

impl FromNode for LocalCacheSetting {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            // `${VAR}` substitution always yields text.
            Value::Bool(on) => return Ok(LocalCacheSetting(on.then(LocalCache::default))),
            Value::String(s) if s == "true" || s == "false" => {
                return Ok(LocalCacheSetting((s == "true").then(LocalCache::default)));
            }
            Value::Object(_) => {}
            other => {
                return Err(at.fail(format!(
                    "expected true, false or a mapping with max_entries, found {}",
                    kind(other)
                )));
            }
        }
        let mut f = Fields::open(node, at)?;
        let max_entries = f.or("max_entries", LocalCache::default().max_entries as u64, at);
        f.finish(at);
        let max_entries = max_entries.ok_or(Reported)?;
        if max_entries == 0 {
            at.error_at(
                "max_entries",
                "must be at least 1; `local_cache: false` turns the cache off",
            );
            return Err(Reported);
        }
        if max_entries > LocalCache::MOST {
            at.error_at("max_entries", format!("must be at most {}", LocalCache::MOST));
            return Err(Reported);
        }
        Ok(LocalCacheSetting(Some(LocalCache {
            max_entries: usize::try_from(max_entries).map_err(|_| Reported)?,
        })))
    }
}

impl FromNode for RedisConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let given = ["url", "cluster", "sentinel"].iter().filter(|k| f.has(k)).count();
        let url = f.optional::<RedisUrl>("url", at).map(|u| u.0);
        let cluster = f.optional::<Vec<RedisUrl>>("cluster", at);
        let sentinel = f.optional::<SentinelConfig>("sentinel", at);
        let username = f.optional::<String>("username", at);
        let password = f.optional::<String>("password", at).map(Secret::new);
        let tls = f.or("tls", RedisTls::default(), at);
        let wait = f.optional::<RedisWait>("wait", at);
        let defaults = RedisConfig::standalone("");
        let command_timeout = f.or("command_timeout", defaults.command_timeout, at);
        let connect_timeout = f.or("connect_timeout", defaults.connect_timeout, at);
        let local_cache = f.or("local_cache", LocalCacheSetting(defaults.local_cache), at);
        f.finish(at);
        let topology = match (url, cluster, sentinel) {
            (Some(url), None, None) => RedisTopology::Standalone(url),
            (None, Some(seeds), None) if !seeds.is_empty() => {
                RedisTopology::Cluster(seeds.into_iter().map(|u| u.0).collect())
            }
            (None, Some(_), None) => {
                at.error_at("cluster", "name at least one seed node");
                return Err(Reported);
            }
            (None, None, Some(SentinelConfig(topology))) => topology,
            // Already reported where it was given.
            (None, None, None) if given > 0 => return Err(Reported),
            (None, None, None) => {
                return Err(at.fail("set one of `url` (standalone), `cluster` (seed nodes) or `sentinel`"));
            }
            _ => return Err(at.fail("set only one of `url`, `cluster` and `sentinel`")),
        };
        let tls = tls.ok_or(Reported)?;
        let command_timeout = command_timeout.ok_or(Reported)?;
        if tls != RedisTls::default() && !topology.uses_tls() {
            at.error_at("tls", "certificates are set but no URL uses rediss://");
        }
        if let Some(wait) = wait.filter(|w| w.timeout >= command_timeout) {
            at.error_at(
                "wait.timeout",
                format!(
                    "must be shorter than command_timeout ({command_timeout:?}), not {:?}",
                    wait.timeout
                ),
            );
        }
        Ok(RedisConfig {
            topology,
            username,
            password,
            tls,
            wait,
            command_timeout,
            connect_timeout: connect_timeout.ok_or(Reported)?,
            local_cache: local_cache.ok_or(Reported)?.0,
        })
    }
}

// === impl RedisTopology ===

impl RedisTopology {
    fn uses_tls(&self) -> bool {
        let urls = match self {
            RedisTopology::Standalone(url) => std::slice::from_ref(url),
            RedisTopology::Cluster(urls) | RedisTopology::Sentinel { nodes: urls, .. } => urls,
        };
        urls.iter().any(is_tls)
    }
}

fn is_tls(url: &Secret<String>) -> bool {
    url.expose().starts_with("rediss://")
}

/// `sentinel: {master_name, nodes}`, read into a [`RedisTopology`].
struct SentinelConfig(RedisTopology);

impl FromNode for SentinelConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let master_name = f.required::<String>("master_name", at);
        let nodes = f.required::<Vec<RedisUrl>>("nodes", at);
        f.finish(at);
        let nodes = nodes.ok_or(Reported)?;
        if nodes.is_empty() {
            at.error_at("nodes", "name at least one sentinel");
            return Err(Reported);
        }
        let tls = nodes.iter().filter(|n| is_tls(&n.0)).count();
        if tls != 0 && tls != nodes.len() {
            // One TLS setting covers the sentinels and the primary they name.
            at.error_at("nodes", "use rediss:// for every sentinel or for none");
            return Err(Reported);
        }
        Ok(SentinelConfig(RedisTopology::Sentinel {
            master_name: master_name.ok_or(Reported)?,
            nodes: nodes.into_iter().map(|u| u.0).collect(),
        }))
    }
}

impl FromNode for RedisTls {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let ca = f.optional::<Pem>("ca", at).map(|p| p.0);
        let cert = f.optional::<Pem>("cert", at).map(|p| p.0);
        let key = f.optional::<Pem>("key", at).map(|p| Secret::new(p.0));
        f.finish(at);
        if cert.is_some() != key.is_some() {
            return Err(at.fail("a client certificate needs both `cert` and `key`"));
        }
        Ok(RedisTls { ca, cert, key })
    }
}

/// PEM text, usually read from `<key>_file`.
struct Pem(String);

from_text!(Pem, |text| {
    if text.contains("-----BEGIN ") {
        Ok(Pem(text.to_owned()))
    } else {
        // Never echo the value: it may be a private key.
        Err("expected PEM text (-----BEGIN …); use `<key>_file` for a path".into())
    }
});

impl FromNode for RedisWait {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let replicas = f.or("replicas", 1u64, at);
        let timeout = f.or("timeout", Duration::from_millis(100), at);
        f.finish(at);
        let (replicas, timeout) = (replicas.ok_or(Reported)?, timeout.ok_or(Reported)?);
        if replicas == 0 {
            at.error_at("replicas", "must be at least 1");
            return Err(Reported);
        }
        if timeout.is_zero() {
            // WAIT with 0 blocks until the replicas answer, forever.
            at.error_at("timeout", "must be more than 0");
            return Err(Reported);
        }
        Ok(RedisWait { replicas, timeout })
    }
}

/// A Redis URL; kept secret because it may carry a password.
struct RedisUrl(Secret<String>);

from_text!(RedisUrl, |text| {
    match text.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() && !rest.contains('#') => {
            Ok(RedisUrl(Secret::new(text.to_owned())))
        }
        // `#insecure` would turn off certificate checks.
        Some(("redis" | "rediss", _)) => {
            Err("expected redis[s]://host:port[/db], without a #fragment".into())
        }
        // Never echo the value: it may hold a password.
        _ => Err("not a redis://host:port or rediss://host:port URL".into()),
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors, MapEnv, StoreConfig};

    fn redis(yaml: &str) -> Result<Config, ConfigErrors> {
        let env = MapEnv::default()
            .with_file(
                "/ca.pem",
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            )
            .with_file("/pw", "hunter2\n");
        Config::load(
            &format!("public_url: http://localhost:8080\nroutes: [{{path: /, upstream: 'http://a', auth: none}}]\nsession: {{store: {{redis: {yaml}}}}}"),
            &env,
        )
    }

    #[test]
    fn redis_topologies_credentials_tls_and_wait_are_read() {
        let c = redis(
            "{sentinel: {master_name: main, nodes: ['rediss://s1:26379', 'rediss://s2:26379']},
              username: app, password_file: /pw, tls: {ca_file: /ca.pem}, wait: {replicas: 2}}",
        )
        .unwrap();
        let StoreConfig::Redis(r) = c.session.store else {
            panic!("not redis")
        };
        let RedisTopology::Sentinel { master_name, nodes } = &r.topology else {
            panic!("{:?}", r.topology)
        };
        assert_eq!((master_name.as_str(), nodes.len()), ("main", 2));
        assert_eq!(r.username.as_deref(), Some("app"));
        assert_eq!(r.password.as_ref().map(|p| p.expose().as_str()), Some("hunter2"));
        assert!(r
            .tls
            .ca
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            r.wait,
            Some(RedisWait {
                replicas: 2,
                timeout: Duration::from_millis(100)
            })
        );

        let c = redis("{cluster: ['redis://a:7000', 'redis://b:7000']}").unwrap();
        let StoreConfig::Redis(r) = c.session.store else {
            panic!("not redis")
        };
        assert!(matches!(&r.topology, RedisTopology::Cluster(seeds) if seeds.len() == 2));
    }

    #[test]
    fn local_cache_is_a_switch_or_a_size() {
        let cache = |yaml: &str| {
            let StoreConfig::Redis(r) = redis(yaml).unwrap().session.store else {
                panic!("not redis")
            };
            r.local_cache
        };
        let default = Some(LocalCache { max_entries: 100_000 });
        assert_eq!(cache("{url: 'redis://a'}"), default);
        assert_eq!(cache("{url: 'redis://a', local_cache: true}"), default);
        assert_eq!(cache("{url: 'redis://a', local_cache: 'true'}"), default);
        assert_eq!(cache("{url: 'redis://a', local_cache: {}}"), default);
        assert_eq!(cache("{url: 'redis://a', local_cache: false}"), None);
        assert_eq!(
            cache("{url: 'redis://a', local_cache: {max_entries: 5000}}"),
            Some(LocalCache { max_entries: 5000 })
        );
    }

    #[test]
    fn redis_mistakes_name_their_key() {
        let got = |yaml: &str| {
            redis(yaml)
                .unwrap_err()
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got("{url: 'redis://a', cluster: ['redis://b']}"),
            ["session.store.redis: set only one of `url`, `cluster` and `sentinel`"]
        );
        assert_eq!(
            got("{sentinel: {nodes: []}}"),
            [
                "session.store.redis.sentinel.master_name: required key is missing",
                "session.store.redis.sentinel.nodes: name at least one sentinel"
            ]
        );
        assert_eq!(
            got("{sentinel: {master_name: m, nodes: ['rediss://a', 'redis://b']}}"),
            ["session.store.redis.sentinel.nodes: use rediss:// for every sentinel or for none"]
        );
        assert_eq!(
            got("{url: 'redis://a', tls: {ca_file: /ca.pem}}"),
            ["session.store.redis.tls: certificates are set but no URL uses rediss://"]
        );
        assert_eq!(
            got("{url: 'rediss://a', tls: {cert: '-----BEGIN CERTIFICATE-----'}}"),
            ["session.store.redis.tls: a client certificate needs both `cert` and `key`"]
        );
        assert_eq!(
            got("{url: 'rediss://a/#insecure'}"),
            ["session.store.redis.url: expected redis[s]://host:port[/db], without a #fragment"]
        );
        assert_eq!(
            got("{url: 'redis://a', wait: {replicas: 0, timeout: 1s}}"),
            ["session.store.redis.wait.replicas: must be at least 1"]
        );
        assert_eq!(
            got("{url: 'redis://a', wait: {timeout: 1s}}"),
            ["session.store.redis.wait.timeout: must be shorter than command_timeout (500ms), not 1s"]
        );
        assert_eq!(
            got("{url: 'redis://a', local_cache: {max_entries: 0}}"),
            ["session.store.redis.local_cache.max_entries: must be at least 1; `local_cache: false` turns the cache off"]
        );
        assert_eq!(
            got("{url: 'redis://a', local_cache: {max_entries: 20000000}}"),
            ["session.store.redis.local_cache.max_entries: must be at most 10000000"]
        );
        assert_eq!(
            got("{url: 'redis://a', local_cache: {entries: 10}}"),
            ["session.store.redis.local_cache.entries: unknown key"]
        );
        assert_eq!(
            got("{url: 'redis://a', local_cache: 5000}"),
            ["session.store.redis.local_cache: expected true, false or a mapping with max_entries, found a number"]
        );
        let leaked = got("{url: 'http://user:pw@a', tls: {key: 'secret-key-text'}}");
        assert!(
            !leaked
                .iter()
                .any(|e| e.contains("pw@") || e.contains("secret-key-text")),
            "{leaked:?}"
        );
    }
}
