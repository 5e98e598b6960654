//! Which sessions a user has. Every session is found by its subject (`iss`
//! and `sub`) and by the IdP session it came from (the ID token's `sid`),
//! so that a back-channel logout, the user or an operator can end it.
//!
//! Two store indexes, each one key (one slot in a Cluster):
//!
//! - `cloakroom:{<hash of iss, sub>}:idx`: every session of a subject, with
//!   when it started, when it was last seen, and a coarse description of
//!   its device ("Firefox on Linux"). At most `session.max_per_user`: a new
//!   session pushes out the oldest, which ends. Its TTL follows the
//!   sessions': each touch keeps it alive as long as the touched session.
//! - `cloakroom:{<hash of iss, sid>}:sid`: the sessions one IdP session
//!   started, each naming its subject's index.
//!
//! An index names session store keys; it never holds a session. A record
//! stays under its own key, in its own slot, and ending a session is a
//! delete of that one key: no operation ever spans two slots. A session
//! that ends without a word (idle or absolute timeout, its TTL) leaves its
//! entries behind until they are read: readers check that each record
//! still exists and prune the entries of those that do not.

use std::net::IpAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

use super::sessions::Sessions;
use super::store::{IndexEntry, StoreError};
use crate::metrics::EndReason;

/// Whom a session belongs to, from its ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub iss: String,
    pub sub: String,
    /// The IdP session the login belonged to, if the IdP names one.
    pub sid: Option<String>,
}

/// The index keys a session is listed under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    pub subject: Option<String>,
    pub sid: Option<String>,
}

/// One live session of a subject, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The store key: never shown to anyone.
    pub key: String,
    /// An opaque name for the session, safe to show its owner.
    pub handle: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub last_seen: u64,
    pub device: String,
    /// Where it is listed, to end it with.
    pub indexes: Indexes,
}

/// What the subject index keeps of a session beside its times.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Listing {
    device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// What the sid index keeps of a session: its subject's index.
#[derive(Debug, Serialize, Deserialize)]
struct FromSid {
    subject: String,
}

// === impl Owner ===

impl Owner {
    /// The owner the claims name; `None` without a string `iss` and `sub`.
    pub fn of(claims: &Map<String, Value>) -> Option<Self> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        Some(Self {
            iss: text("iss")?.to_owned(),
            sub: text("sub")?.to_owned(),
            sid: text("sid").map(str::to_owned),
        })
    }

    /// The indexes a session is listed under.
    pub fn indexes(&self) -> Indexes {
        Indexes {
            subject: Some(subject_index(&self.iss, &self.sub)),
            sid: self.sid.as_deref().map(|sid| sid_index(&self.iss, sid)),
        }
    }
}

// === impl Indexes ===

impl Indexes {
    /// The indexes of the session whose record keeps `claims`.
    pub fn of(claims: &Map<String, Value>) -> Self {
        Owner::of(claims).map(|o| o.indexes()).unwrap_or_default()
    }
}

/// The index of a subject's sessions.
pub fn subject_index(iss: &str, sub: &str) -> String {
    format!("cloakroom:{{{}}}:idx", digest("subject", &[iss, sub]))
}

/// The index of the sessions an IdP session started.
pub fn sid_index(iss: &str, sid: &str) -> String {
    format!("cloakroom:{{{}}}:sid", digest("sid", &[iss, sid]))
}

/// The name a session goes by in listings: a hash of its store key, which
/// tells nothing of the key or the cookie.
pub fn handle(key: &str) -> String {
    digest("handle", &[key])
}

/// 128 bits of SHA-256 over a label and length-prefixed parts, in hex: no
/// two different (iss, sub) pairs hash alike by moving a separator.
fn digest(label: &str, parts: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(b"cloakroom ");
    hash.update(label.as_bytes());
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

/// A coarse description of the device a `User-Agent` names, such as
/// "Firefox on Linux": enough for a person to recognise a session, not
/// enough to fingerprint anyone.
pub fn device(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("");
    let has = |s: &str| ua.contains(s);
    // Order matters: Edge and Opera also say Chrome; Chrome also says Safari.
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("Chromium/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else {
        "Unknown browser"
    };
    let os = if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Macintosh") || has("Mac OS X") {
        "macOS"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        "an unknown system"
    };
    format!("{browser} on {os}")
}

// === impl Sessions ===

impl Sessions {
    /// Lists a session created at `created` under its owner, ending the
    /// subject's oldest sessions past `session.max_per_user`.
    pub(super) async fn index_new(
        &self,
        key: &str,
        owner: &Owner,
        device: String,
        created: u64,
        ttl: std::time::Duration,
        client: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let indexes = owner.indexes();
        let max = self.config.max_per_user;
        if let Some(sid_index) = &indexes.sid {
            let data = serde_json::to_vec(&FromSid {
                subject: subject_index(&owner.iss, &owner.sub),
            })
            .unwrap_or_default();
            let entry = self.index_entry(key, created, data);
            // A session never outlives its absolute timeout, nor this entry.
            let lifetime = self.config.absolute_timeout;
            self.store.index_add(sid_index, entry, lifetime, max).await?;
        }
        let Some(subject_index) = &indexes.subject else {
            return Ok(());
        };
        // Sessions that ended quietly must not count against the bound.
        self.live_entries(subject_index).await?;
        let data = serde_json::to_vec(&Listing {
            device,
            sid: owner.sid.clone(),
        })
        .unwrap_or_default();
        let entry = self.index_entry(key, created, data);
        let pushed_out = self.store.index_add(subject_index, entry, ttl, max).await?;
        for old in pushed_out {
            tracing::info!(max, "a subject's oldest session ended: over session.max_per_user");
            let listing = listing(&old);
            // Its subject entry is gone with the push; named for the
            // audit line (a second removal is a no-op).
            let indexes = Indexes {
                subject: Some(subject_index.clone()),
                sid: listing.sid.map(|sid| sid_index(&owner.iss, &sid)),
            };
            self.end(&old.key, &indexes, EndReason::PerUserLimit, client)
                .await?;
        }
        Ok(())
    }

    /// The live sessions of a subject, oldest first.
    pub async fn sessions_of(&self, iss: &str, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let subject = subject_index(iss, sub);
        let entries = self.live_entries(&subject).await?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let listing = listing(&entry);
                SessionInfo {
                    handle: handle(&entry.key),
                    device: listing.device,
                    created: entry.created,
                    last_seen: entry.last_seen,
                    indexes: Indexes {
                        subject: Some(subject.clone()),
                        sid: listing.sid.map(|sid| sid_index(iss, &sid)),
                    },
                    key: entry.key,
                }
            })
            .collect())
    }

    /// Ends every session of a subject; returns how many were live.
    pub async fn end_subject(&self, iss: &str, sub: &str, reason: EndReason) -> Result<usize, StoreError> {
        let live = self.sessions_of(iss, sub).await?;
        for session in &live {
            self.end(&session.key, &session.indexes, reason, None).await?;
        }
        Ok(live.len())
    }

    /// Ends the sessions an IdP session started; with `sub`, only those of
    /// that subject. Returns how many were live.
    pub async fn end_sid(&self, iss: &str, sid: &str, sub: Option<&str>) -> Result<usize, StoreError> {
        let index = sid_index(iss, sid);
        let live = self.live_entries(&index).await?;
        let expected = sub.map(|sub| subject_index(iss, sub));
        let mut ended = 0;
        for entry in &live {
            let subject = serde_json::from_slice::<FromSid>(&entry.data)
                .ok()
                .map(|f| f.subject);
            if expected.is_some() && subject != expected {
                // A logout token naming both must match both.
                continue;
            }
            let indexes = Indexes {
                subject,
                sid: Some(index.clone()),
            };
            self.end(&entry.key, &indexes, EndReason::BackchannelLogout, None)
                .await?;
            ended += 1;
        }
        Ok(ended)
    }

    /// Keeps a touched session's entry (and its subject's index) alive.
    /// A session without one (created before sessions were indexed) is
    /// listed now, its device unknown.
    pub(super) async fn index_touch(
        &self,
        key: &str,
        owner: &Owner,
        created: u64,
        now: u64,
        ttl: std::time::Duration,
    ) {
        let index = subject_index(&owner.iss, &owner.sub);
        let touched = match self.store.index_touch(&index, key, now, ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => self.index_new(key, owner, device(None), created, ttl, None).await,
            Err(e) => Err(e),
        };
        if let Err(e) = touched {
            // The session itself is fine; its listing lags behind.
            tracing::debug!(error = %e, "session index not touched");
        }
    }

    /// An entry for a session created at `created` and seen now.
    fn index_entry(&self, key: &str, created: u64, data: Vec<u8>) -> IndexEntry {
        IndexEntry {
            key: key.to_owned(),
            created,
            last_seen: self.clock.now().max(created),
            data: Bytes::from(data),
        }
    }

    /// The entries of `index` whose sessions still exist, read from the
    /// source of truth; the others are pruned.
    async fn live_entries(&self, index: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for entry in self.store.index_list(index).await? {
            match self.store.get_latest(&entry.key).await? {
                Some(_) => live.push(entry),
                None => gone.push(entry.key),
            }
        }
        if !gone.is_empty() {
            self.store.index_remove(index, &gone).await?;
        }
        Ok(live)
    }
}

fn listing(entry: &IndexEntry) -> Listing {
    serde_json::from_slice(&entry.data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::testing::{login, sessions};

    #[test]
    fn devices_are_named_coarsely() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
            ),
            ("curl/8.5.0", "Unknown browser on an unknown system"),
        ];
        for (ua, expected) in cases {
            assert_eq!(device(Some(ua)), expected, "{ua}");
        }
        assert_eq!(device(None), "Unknown browser on an unknown system");
    }

    #[test]
    fn index_keys_are_hash_tagged_and_unambiguous() {
        let a = subject_index("https://idp", "alice");
        assert!(a.starts_with("cloakroom:{") && a.ends_with("}:idx"), "{a}");
        assert!(!a.contains("alice"));
        // Moving the boundary between issuer and subject changes the key.
        assert_ne!(subject_index("https://idpa", "lice"), a);
        assert_ne!(sid_index("https://idp", "alice"), a);
        assert_ne!(handle("cloakroom:{x}:s"), "cloakroom:{x}:s");
        assert_eq!(handle("k").len(), 32);
    }

    #[tokio::test]
    async fn sessions_are_found_by_subject_and_sid_and_ended_there() {
        let (sessions, _) = sessions(10).await;
        let first = login(&sessions, "alice", "sid-1").await;
        let second = login(&sessions, "alice", "sid-2").await;
        let bob = login(&sessions, "bob", "sid-1").await;
        let listed = sessions.sessions_of("https://idp", "alice").await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|s| s.device == "Firefox on Linux"));

        // A sid names one IdP session; with a sub, only that subject's.
        assert_eq!(
            sessions
                .end_sid("https://idp", "sid-1", Some("alice"))
                .await
                .unwrap(),
            1
        );
        assert!(sessions.open(&first, None).await.is_err());
        assert!(
            sessions.open(&bob, None).await.is_ok(),
            "bob's sid-1 is another subject's"
        );
        assert_eq!(
            sessions
                .end_subject("https://idp", "alice", EndReason::Admin)
                .await
                .unwrap(),
            1
        );
        assert!(sessions.open(&second, None).await.is_err());
        assert!(sessions
            .sessions_of("https://idp", "alice")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(sessions.end_sid("https://idp", "sid-1", None).await.unwrap(), 1);
        assert!(sessions.open(&bob, None).await.is_err());
    }

    #[tokio::test]
    async fn a_session_missing_from_its_index_is_listed_again_when_touched() {
        let (sessions, clock) = sessions(10).await;
        let headers = login(&sessions, "alice", "sid-1").await;
        let index = subject_index("https://idp", "alice");
        let key = sessions.open(&headers, None).await.unwrap().key;
        // As a session created before sessions were indexed.
        sessions.store.index_remove(&index, &[key]).await.unwrap();
        assert!(sessions
            .sessions_of("https://idp", "alice")
            .await
            .unwrap()
            .is_empty());
        clock.advance(std::time::Duration::from_secs(120));
        sessions
            .load(&headers, std::net::Ipv4Addr::LOCALHOST.into())
            .await
            .unwrap();
        let listed = sessions.sessions_of("https://idp", "alice").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].device, "Unknown browser on an unknown system");
        assert_eq!(listed[0].last_seen, listed[0].created + 120);
    }

    #[tokio::test]
    async fn past_the_bound_the_oldest_session_ends() {
        let (sessions, clock) = sessions(2).await;
        let oldest = login(&sessions, "alice", "a").await;
        let watched = sessions.open(&oldest, None).await.unwrap();
        let end = sessions.watch(&watched);
        clock.advance(std::time::Duration::from_secs(1));
        let middle = login(&sessions, "alice", "b").await;
        clock.advance(std::time::Duration::from_secs(1));
        let newest = login(&sessions, "alice", "c").await;
        tokio::time::timeout(std::time::Duration::from_secs(1), end.ended())
            .await
            .expect("what depended on the oldest session was told");
        assert!(sessions.open(&oldest, None).await.is_err());
        assert!(sessions.open(&middle, None).await.is_ok());
        assert!(sessions.open(&newest, None).await.is_ok());
    }

    #[test]
    fn an_owner_needs_a_string_iss_and_sub() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let owner = Owner::of(&claims(serde_json::json!({"iss": "i", "sub": "s", "sid": "x"}))).unwrap();
        assert_eq!(owner.sid.as_deref(), Some("x"));
        assert!(Owner::of(&claims(serde_json::json!({"sub": "s"}))).is_none());
        assert!(Owner::of(&claims(serde_json::json!({"iss": "i", "sub": 1}))).is_none());
    }
}
