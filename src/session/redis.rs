//! The Redis store: standalone, Sentinel or Cluster, shared by every replica.
//!
//! A value is a hash `{v: version, d: data}` with a TTL on every key. Writes
//! are compare-and-set in one Lua script, so two replicas can never both
//! win a write to the same version (threat-model T27). Keys arrive
//! hash-tagged (`cloakroom:{…}:s`), so a session's keys share a Cluster slot
//! and scripts never touch two slots.
//!
//! Every command is bounded by `command_timeout`; a slow or absent Redis is
//! a `StoreError::Unavailable` (503, session kept), never "no session"
//! (RD-04, RD-05). Connections are multiplexed and reconnect on their own
//! (`redis_link`). With `wait`, writes wait for replicas (RD-06).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use redis::{Cmd, FromRedisValue, Script};

use super::redis_link::Link;
use super::store::{SessionStore, StoreError, Versioned};
use crate::config::{posture, RedisConfig, RedisWait};
use crate::error::BoxError;

/// Compare-and-set: writes `d` if the stored version is ARGV[1] (0: absent).
const PUT: &str = r"
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then return -1 end
local next = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'v', next, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return next
";

/// Delete only if the value is still ARGV[1].
const DELETE_IF: &str = r"
if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// A handle to Redis; clones share the multiplexed connections.
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    put: Script,
    delete_if: Script,
    timeout: Duration,
    wait: Option<Replication>,
}

/// `WAIT` after writes, paused for a while once replicas fall behind: a
/// blocked `WAIT` holds up every command queued on the shared connection.
#[derive(Clone)]
struct Replication {
    config: RedisWait,
    paused_until: Arc<Mutex<Option<Instant>>>,
}

impl Replication {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.paused_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paused(&self) -> bool {
        matches!(*self.lock(), Some(until) if Instant::now() < until)
    }
}

/// How much later than the connection's timeout the backstop fires.
const BACKSTOP_MARGIN: Duration = Duration::from_millis(100);

/// How long writes skip `WAIT` after replicas failed to acknowledge one.
const WAIT_PAUSE: Duration = Duration::from_secs(5);

// === impl RedisStore ===

impl RedisStore {
    /// Connects, and checks credentials, before serving: a wrong password or
    /// ACL user fails the start (RD-11) instead of every request.
    pub async fn connect(config: &RedisConfig) -> Result<Self, BoxError> {
        let store = Self {
            link: Link::connect(config).await?,
            put: Script::new(PUT),
            delete_if: Script::new(DELETE_IF),
            timeout: config.command_timeout,
            wait: config.wait.map(|config| Replication {
                config,
                paused_until: Arc::default(),
            }),
        };
        store.ping().await?;
        store.warn_about_eviction().await;
        Ok(store)
    }

    /// A client for one data node, for the invalidation subscription.
    pub(super) async fn subscriber(&self) -> redis::RedisResult<redis::Client> {
        self.link.subscriber().await
    }

    /// Waits until replicas hold the writes made so far (threat-model
    /// §3.2): a failover then keeps them. A shortfall is logged, not an
    /// error: the write itself is done on the primary.
    async fn replicate(&self) {
        let Some(wait) = &self.wait else { return };
        if wait.paused() {
            return;
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wait.config.replicas)
            .arg(wait.config.timeout.as_millis() as u64);
        let acknowledged = self.query::<u64>(&cmd).await;
        if !matches!(acknowledged, Ok(n) if n >= wait.config.replicas) {
            tracing::warn!(
                acknowledged = acknowledged.as_ref().ok(),
                wanted = wait.config.replicas,
                "Redis replicas did not acknowledge a write in time; not waiting for them for {WAIT_PAUSE:?}"
            );
            *wait.lock() = Some(Instant::now() + WAIT_PAUSE);
        }
    }

    /// `allkeys-*` eviction silently drops live sessions: users see random
    /// logouts (RD-08). Say so at start, or that it could not be checked.
    async fn warn_about_eviction(&self) {
        // Boxed: the Cluster's routed command nests deep, and this future
        // sits inside every start-up future above it.
        match Box::pin(self.eviction_policies()).await {
            Ok(policies) => {
                for finding in policies.iter().filter_map(|p| posture::eviction(p)) {
                    tracing::warn!(key = %finding.key, source = finding.source, "{}", finding.reason);
                }
            }
            // Managed Redis often refuses CONFIG; nothing is wrong with that.
            Err(e) => tracing::info!(
                error = %e,
                "could not read the Redis maxmemory-policy; make sure it is noeviction"
            ),
        }
    }

    /// Each primary's `maxmemory-policy` (one for a single server or
    /// Sentinel, one per primary for a Cluster).
    pub async fn eviction_policies(&self) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let answers: Vec<Vec<String>> = bounded(self.timeout, self.link.query_primaries(&cmd)).await?;
        answers
            .into_iter()
            .map(|reply| match reply.get(1) {
                Some(policy) => Ok(policy.clone()),
                None => Err(StoreError::Unavailable(
                    "CONFIG GET maxmemory-policy answered nothing".into(),
                )),
            })
            .collect()
    }

    /// Connects as [`RedisStore::connect`] does, within `bound`, and reads
    /// [`RedisStore::eviction_policies`]: for `cloakroom check`, which must
    /// not hang on a Redis it cannot reach.
    pub async fn probe_eviction(config: &RedisConfig, bound: Duration) -> Result<Vec<String>, BoxError> {
        let probe = async {
            let store = Self {
                link: Link::connect(config).await?,
                put: Script::new(PUT),
                delete_if: Script::new(DELETE_IF),
                timeout: config.command_timeout,
                wait: None,
            };
            Ok::<_, BoxError>(store.eviction_policies().await?)
        };
        tokio::time::timeout(bound, probe)
            .await
            .map_err(|_| format!("no answer within {bound:?}"))?
    }

    async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        bounded(self.timeout, self.link.query(cmd)).await
    }

    async fn script<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(*arg);
        }
        bounded(self.timeout, self.link.invoke(&invocation)).await
    }
}

impl RedisStore {
    /// Publishes `message` on `channel` (cache invalidation).
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(message);
        self.query::<i64>(&cmd).await.map(|_| ())
    }
}

/// Maps Redis errors to store errors, with a backstop timeout: the
/// connection's own timeout (`timeout`) fires first, so that Sentinel can
/// drop a silent primary; this one bounds whatever else might hang.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout + BACKSTOP_MARGIN, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StoreError::Unavailable(Box::new(e))),
        Err(_) => Err(StoreError::Unavailable(
            format!("Redis did not answer within {timeout:?}").into(),
        )),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key).arg("v").arg("d");
        let (version, data): (Option<u64>, Option<Vec<u8>>) = self.query(&cmd).await?;
        Ok(match (version, data) {
            (Some(version), Some(data)) => Some(Versioned {
                value: Bytes::from(data),
                version,
            }),
            _ => None,
        })
    }

    async fn put(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64, StoreError> {
        let expected = expected.to_string();
        let ttl = ttl.as_millis().max(1).to_string();
        let version: i64 = self
            .script(&self.put, key, &[expected.as_bytes(), &value, ttl.as_bytes()])
            .await?;
        let version = u64::try_from(version).map_err(|_| StoreError::Conflict)?;
        self.replicate().await;
        Ok(version)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        self.query::<i64>(&cmd).await?;
        self.replicate().await;
        Ok(())
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let deleted: i64 = self.script(&self.delete_if, key, &[value]).await?;
        if deleted == 1 {
            self.replicate().await;
        }
        Ok(deleted == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}
