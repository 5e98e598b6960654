//! The browser's half of a session: the sealed ticket and cookie attributes.

pub mod attrs;
pub mod seal;
pub mod ticket;

pub use self::attrs::CookieNames;
pub use self::seal::{KeyRing, Purpose, SealError};
pub use self::ticket::Ticket;
