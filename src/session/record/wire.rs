//! Record format 2, compact: its fields on the wire.
//!
//! A tag byte (`2`, where a JSON record, format 1, starts with `{`), then
//! the fields in postcard (<https://postcard.jamesmunns.com/wire-format>):
//! no names, integers as varints, strings and bytes as a length and their
//! bytes. postcard because its wire format is specified and stable since
//! 1.0 (what one release writes, the next reads), it is maintained and
//! widely used, reads borrowed `&str` and `&[u8]` straight from the opened
//! bytes (no copy on the path every request takes), and is built on serde
//! as the rest of the record is. Not bincode (unmaintained), nor a
//! self-describing format (CBOR, MessagePack): field names or type tags
//! would cost bytes the fixed layout does not need.
//!
//! Fields are by position: a new field is a new format (3), written only
//! once the releases beside it read it, as format 2 is
//! (`session.record_format`). Values of free shape (the claims' values,
//! a device's JWK) are JSON text inside it.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::jwt::Token;

/// The first byte of a compact record.
pub(super) const TAG: u8 = 2;

/// Every field of a record, borrowed from it when written and from the
/// opened bytes when read.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Compact<'a> {
    #[serde(borrow)]
    pub(super) access_token: Token<'a>,
    pub(super) access_expires_at: u64,
    pub(super) access_issued_ms: Option<u64>,
    pub(super) access_lifetime: Option<u64>,
    #[serde(borrow)]
    pub(super) access_jkt: Option<&'a str>,
    #[serde(borrow)]
    pub(super) refresh_token: Option<Token<'a>>,
    #[serde(borrow)]
    pub(super) id_token: Option<Token<'a>>,
    /// The kept claims, relative to the ID token (`claims.rs`).
    pub(super) claims: &'a [u8],
    pub(super) created_at: u64,
    pub(super) last_seen: u64,
    #[serde(borrow)]
    pub(super) resource_tokens: Vec<Kept<'a>>,
    #[serde(borrow)]
    pub(super) exchanged_tokens: Vec<Kept<'a>>,
    #[serde(borrow)]
    pub(super) device: Option<Device<'a>>,
}

/// A route's own token, or one exchanged for a route, with its key.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Kept<'a> {
    pub(super) key: &'a str,
    #[serde(borrow)]
    pub(super) access_token: Token<'a>,
    pub(super) expires_at: u64,
    pub(super) issued_ms: u64,
    pub(super) lifetime: u64,
    #[serde(borrow)]
    pub(super) jkt: Option<&'a str>,
}

/// The device a session is bound to.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Device<'a> {
    pub(super) id: &'a str,
    pub(super) alg: &'a str,
    /// Its public key, as JSON text.
    pub(super) jwk: &'a str,
    pub(super) bound_at: u64,
}

/// `record`, tag first, in a buffer made to its size: it never grows, so
/// no copy of a token is left behind unzeroized.
pub(super) fn encode(record: &Compact<'_>) -> Zeroizing<Vec<u8>> {
    let size = postcard::serialize_with_flavor(record, postcard::ser_flavors::Size::default()).unwrap_or(0);
    let mut out = Zeroizing::new(vec![0u8; 1 + size]);
    out[0] = TAG;
    if postcard::to_slice(record, &mut out[1..]).is_err() {
        out.truncate(1);
    }
    out
}

/// The record in `bytes` (after the tag), every byte of them read.
pub(super) fn decode(bytes: &[u8]) -> Option<Compact<'_>> {
    match postcard::take_from_bytes(bytes) {
        Ok((record, [])) => Some(record),
        _ => None,
    }
}
