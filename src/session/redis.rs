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
//!
//! What is kept beside a value is the field `b` of its hash, written by the
//! same compare-and-set script; `get` reads only `v` and `d`, so a release
//! that knows nothing of `b` reads and writes records as before.
//!
//! A queue `Q` is four keys under one hash tag: `Q:items` (a hash of id to
//! `"<retries> <item>"`), `Q:due` (a sorted set of ids by when each is
//! due, in milliseconds since the epoch), `Q:age` (ids by id, which is
//! push order) and `Q:seq` (the last id). Each operation is one script.
//! Due times are this replica's wall clock: clocks that agree within a
//! second or two only move a retry by as much.
//!
//! An index is a hash, one field per session key, valued
//! `"<created> <last_seen> <data>"`; every index operation is one command
//! or script on that one key. Ending announcements travel on the
//! [`ENDED_CHANNEL`] pub/sub channel, which in a Cluster reaches every node.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use redis::{Cmd, FromRedisValue, Script};

use super::redis_link::Link;
use super::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};
use crate::config::{posture, RedisConfig, RedisWait};
use crate::error::BoxError;

/// Compare-and-set: writes `d` if the stored version is ARGV[1] (0: absent),
/// and `b` (ARGV[5]) beside it when ARGV[4] is '1', else none.
const PUT: &str = r"
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then return -1 end
local next = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'v', next, 'd', ARGV[2])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'b', ARGV[5])
else
  redis.call('HDEL', KEYS[1], 'b')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return next
";

/// Deletes the key; returns what was beside its value.
const TAKE: &str = r"
local beside = redis.call('HGET', KEYS[1], 'b')
redis.call('DEL', KEYS[1])
return beside
";

/// Pushes ARGV[2] due at ARGV[1]; past ARGV[3] items drops the oldest and
/// returns them; keeps every key ARGV[4] ms at least.
/// KEYS: due, age, items, seq.
const QUEUE_PUSH: &str = r"
local id = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], id, '0 ' .. ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], id)
redis.call('ZADD', KEYS[2], id, id)
local max = math.max(tonumber(ARGV[3]), 1)
local dropped = {}
while redis.call('ZCARD', KEYS[2]) > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  local value = redis.call('HGET', KEYS[3], oldest)
  if value then table.insert(dropped, string.match(value, '^%d+ (.*)$')) end
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('ZREM', KEYS[1], oldest)
  redis.call('HDEL', KEYS[3], oldest)
end
local ttl = tonumber(ARGV[4])
for i = 1, 4 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return dropped
";

/// Claims the item due first if it is due at ARGV[1]: due again at
/// ARGV[2]. Returns its id and `"<retries> <item>"`, or nil.
/// KEYS: due, age, items.
const QUEUE_CLAIM: &str = r"
for _ = 1, 16 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #due == 0 then return false end
  local id = due[1]
  local value = redis.call('HGET', KEYS[3], id)
  if value then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    return {id, value}
  end
  -- An id whose item is gone: forget it.
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return false
";

/// Puts item ARGV[1] back, due at ARGV[2], one more retry counted; nothing
/// if it is gone. KEYS: due, items.
const QUEUE_RETRY: &str = r"
local value = redis.call('HGET', KEYS[2], ARGV[1])
if not value then return 0 end
local retries, item = string.match(value, '^(%d+) (.*)$')
redis.call('HSET', KEYS[2], ARGV[1], (tonumber(retries) + 1) .. ' ' .. item)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
";

/// Removes item ARGV[1]. KEYS: due, age, items.
const QUEUE_DONE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[3], ARGV[1])
";

/// Delete only if the value is still ARGV[1].
const DELETE_IF: &str = r"
if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Adds an index entry (ARGV[1] its field, ARGV[2] its value), keeps the
/// index ARGV[3] ms at least, and removes the oldest other entries past
/// ARGV[4]: returns them as field, value pairs.
const INDEX_ADD: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
local max = math.max(tonumber(ARGV[4]), 1)
local out = {}
while redis.call('HLEN', KEYS[1]) > max do
  local all = redis.call('HGETALL', KEYS[1])
  local oldest, oldest_at
  for i = 1, #all, 2 do
    local at = tonumber(string.match(all[i + 1], '^(%d+) '))
    local older = oldest == nil or at < oldest_at or (at == oldest_at and all[i] < oldest)
    if all[i] ~= ARGV[1] and older then
      oldest, oldest_at = all[i], at
    end
  end
  table.insert(out, oldest)
  table.insert(out, redis.call('HGET', KEYS[1], oldest))
  redis.call('HDEL', KEYS[1], oldest)
end
return out
";

/// Sets the last-seen time (ARGV[2]) of field ARGV[1], if present, and
/// keeps the index ARGV[3] ms at least.
const INDEX_TOUCH: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local created, data = string.match(value, '^(%d+) %d+ (.*)$')
redis.call('HSET', KEYS[1], ARGV[1], created .. ' ' .. ARGV[2] .. ' ' .. data)
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
";

/// The channel ending announcements travel on.
pub const ENDED_CHANNEL: &str = "cloakroom:ended";

/// How often an announcement subscription is checked, and how long its
/// server may take to answer.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Announcements a subscriber may fall behind by before it is dropped.
const ANNOUNCEMENT_BACKLOG: usize = 1024;

/// A handle to Redis; clones share the multiplexed connections.
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    scripts: Arc<Scripts>,
    timeout: Duration,
    wait: Option<Replication>,
}

/// Every script, loaded once (by its SHA) per server.
struct Scripts {
    put: Script,
    take: Script,
    delete_if: Script,
    index_add: Script,
    index_touch: Script,
    queue_push: Script,
    queue_claim: Script,
    queue_retry: Script,
    queue_done: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            put: Script::new(PUT),
            take: Script::new(TAKE),
            delete_if: Script::new(DELETE_IF),
            index_add: Script::new(INDEX_ADD),
            index_touch: Script::new(INDEX_TOUCH),
            queue_push: Script::new(QUEUE_PUSH),
            queue_claim: Script::new(QUEUE_CLAIM),
            queue_retry: Script::new(QUEUE_RETRY),
            queue_done: Script::new(QUEUE_DONE),
        }
    }
}

/// The keys of queue `name`: due, age, items, seq.
fn queue_keys(name: &str) -> [String; 4] {
    ["due", "age", "items", "seq"].map(|part| format!("{name}:{part}"))
}

/// Milliseconds since the epoch, `after` from now, by this replica's clock.
fn wall_ms(after: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now + after).as_millis().to_string()
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
            scripts: Arc::default(),
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
                scripts: Arc::default(),
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
        self.script_on(script, &[key], args).await
    }

    /// [`RedisStore::script`] on several keys, all in one slot.
    async fn script_on<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
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

    async fn put_beside(
        &self,
        key: &str,
        value: Bytes,
        beside: Option<Bytes>,
        expected: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let expected = expected.to_string();
        let ttl = ttl.as_millis().max(1).to_string();
        let (flag, beside): (&[u8], &[u8]) = match &beside {
            Some(beside) => (b"1", beside),
            None => (b"0", b""),
        };
        let args = [expected.as_bytes(), &value, ttl.as_bytes(), flag, beside];
        let version: i64 = self.script(&self.scripts.put, key, &args).await?;
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

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let beside: Option<Vec<u8>> = self.script(&self.scripts.take, key, &[]).await?;
        self.replicate().await;
        Ok(beside.map(Bytes::from))
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let deleted: i64 = self.script(&self.scripts.delete_if, key, &[value]).await?;
        if deleted == 1 {
            self.replicate().await;
        }
        Ok(deleted == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    async fn index_add(
        &self,
        index: &str,
        entry: IndexEntry,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let value = pack(&entry);
        let ttl = ttl.as_millis().max(1).to_string();
        let max = max.to_string();
        let args: [&[u8]; 4] = [entry.key.as_bytes(), &value, ttl.as_bytes(), max.as_bytes()];
        let out: Vec<Vec<u8>> = self.script(&self.scripts.index_add, index, &args).await?;
        self.replicate().await;
        Ok(out
            .chunks_exact(2)
            .filter_map(|pair| unpack(&pair[0], &pair[1]))
            .collect())
    }

    async fn index_touch(
        &self,
        index: &str,
        key: &str,
        last_seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let last_seen = last_seen.to_string();
        let ttl = ttl.as_millis().max(1).to_string();
        let args: [&[u8]; 3] = [key.as_bytes(), last_seen.as_bytes(), ttl.as_bytes()];
        let touched: i64 = self.script(&self.scripts.index_touch, index, &args).await?;
        Ok(touched == 1)
    }

    async fn index_remove(&self, index: &str, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(index).arg(keys);
        self.query::<i64>(&cmd).await?;
        self.replicate().await;
        Ok(())
    }

    async fn index_list(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(index);
        let all: Vec<(Vec<u8>, Vec<u8>)> = self.query(&cmd).await?;
        let mut entries: Vec<IndexEntry> = all.iter().filter_map(|(k, v)| unpack(k, v)).collect();
        entries.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        Ok(entries)
    }

    async fn announce_ended(&self, key: &str) -> Result<(), StoreError> {
        self.publish(ENDED_CHANNEL, key).await
    }

    async fn ended_announcements(&self) -> Result<Announcements, StoreError> {
        let subscribed = async {
            let client = self.link.subscriber().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(ENDED_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = bounded(self.timeout, subscribed).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(ANNOUNCEMENT_BACKLOG);
        tokio::spawn(relay(pubsub, tx));
        Ok(rx)
    }

    async fn queue_push(
        &self,
        queue: &str,
        item: Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<Bytes>, StoreError> {
        let [due, age, items, seq] = queue_keys(queue);
        let (now, max) = (wall_ms(Duration::ZERO), max.to_string());
        let ttl = ttl.as_millis().max(1).to_string();
        let args: [&[u8]; 4] = [now.as_bytes(), &item, max.as_bytes(), ttl.as_bytes()];
        let keys = [due.as_str(), &age, &items, &seq];
        let dropped: Vec<Vec<u8>> = self.script_on(&self.scripts.queue_push, &keys, &args).await?;
        self.replicate().await;
        Ok(dropped.into_iter().map(Bytes::from).collect())
    }

    async fn queue_claim(&self, queue: &str, hold: Duration) -> Result<Option<Claimed>, StoreError> {
        let [due, age, items, _] = queue_keys(queue);
        let (now, until) = (wall_ms(Duration::ZERO), wall_ms(hold));
        let args: [&[u8]; 2] = [now.as_bytes(), until.as_bytes()];
        let keys = [due.as_str(), &age, &items];
        let claimed: Option<(String, Vec<u8>)> =
            self.script_on(&self.scripts.queue_claim, &keys, &args).await?;
        Ok(claimed.and_then(|(id, value)| {
            let (retries, item) = unpack_queued(&value)?;
            Some(Claimed { id, item, retries })
        }))
    }

    async fn queue_retry(&self, queue: &str, id: &str, after: Duration) -> Result<(), StoreError> {
        let [due, _, items, _] = queue_keys(queue);
        let at = wall_ms(after);
        let args: [&[u8]; 2] = [id.as_bytes(), at.as_bytes()];
        let keys = [due.as_str(), &items];
        self.script_on::<i64>(&self.scripts.queue_retry, &keys, &args)
            .await
            .map(|_| ())
    }

    async fn queue_done(&self, queue: &str, id: &str) -> Result<(), StoreError> {
        let [due, age, items, _] = queue_keys(queue);
        let keys = [due.as_str(), &age, &items];
        self.script_on::<i64>(&self.scripts.queue_done, &keys, &[id.as_bytes()])
            .await
            .map(|_| ())
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        let [_, age, _, _] = queue_keys(queue);
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(age);
        self.query(&cmd).await
    }
}

/// A queue item's hash value, `"<retries> <item>"`, read back.
fn unpack_queued(value: &[u8]) -> Option<(u32, Bytes)> {
    let space = value.iter().position(|b| *b == b' ')?;
    let retries = std::str::from_utf8(&value[..space]).ok()?.parse().ok()?;
    Some((retries, Bytes::copy_from_slice(&value[space + 1..])))
}

/// Passes announcements on until the subscription fails, goes silent, or
/// nobody listens; then closes the channel.
async fn relay(pubsub: redis::aio::PubSub, tx: tokio::sync::mpsc::Sender<String>) {
    use futures_util::StreamExt;
    let (mut sink, mut messages) = pubsub.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) else { continue };
                // Full: the listener is too far behind; closing tells it so.
                if tx.try_send(key.to_owned()).is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                // A server cut off by a partition closes nothing: only
                // asking it tells that messages stopped.
                let pong = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) || tx.is_closed() {
                    return;
                }
            }
        }
    }
}

/// An index entry as its hash field's value: `"<created> <last_seen> <data>"`.
fn pack(entry: &IndexEntry) -> Vec<u8> {
    let mut value = format!("{} {} ", entry.created, entry.last_seen).into_bytes();
    value.extend_from_slice(&entry.data);
    value
}

/// The entry a hash field holds; `None` for a value not written by [`pack`].
fn unpack(field: &[u8], value: &[u8]) -> Option<IndexEntry> {
    let key = std::str::from_utf8(field).ok()?.to_owned();
    let mut parts = value.splitn(3, |b| *b == b' ');
    let mut number = || std::str::from_utf8(parts.next()?).ok()?.parse::<u64>().ok();
    let (created, last_seen) = (number()?, number()?);
    let data = Bytes::copy_from_slice(parts.next()?);
    Some(IndexEntry {
        key,
        created,
        last_seen,
        data,
    })
}
