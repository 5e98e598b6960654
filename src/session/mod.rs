//! Server-side session state: the store contract and its implementations.

pub mod cache;
pub mod device;
pub mod ending;
pub mod index;
pub mod life;
pub mod lock;
pub mod measured;
pub mod memory;
pub mod record;
pub mod redis;
mod redis_link;
pub mod revocation;
mod sessions;
pub mod store;
#[cfg(test)]
mod testing;
pub mod traced;
mod watched;

pub use self::cache::CachedStore;
pub use self::index::{Indexes, Owner, SessionInfo};
pub use self::measured::MeasuredStore;
pub use self::memory::MemoryStore;
pub use self::record::DeviceKey;
pub use self::redis::RedisStore;
pub use self::sessions::{Created, Loaded, Sessions};
pub use self::store::{Announcements, Claimed, IndexEntry, SessionStore, StoreError, Versioned};
pub use self::traced::TracedStore;
pub use self::watched::{SessionEnd, SessionEnded};
