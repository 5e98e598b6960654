//! The claims a session keeps, as the compact record (format 2) holds
//! them: relative to its ID token.
//!
//! Most kept claims are the ID token's own (`sub`, `iss`, `name`, …), and
//! the record holds that token anyway. A claim the token's payload holds
//! with the same value is written as the position of that entry in the
//! payload; any other (one UserInfo added, or one kept from an earlier ID
//! token after a refresh brought a new one) as its name and its value as
//! JSON text. Opening reads the payload again and gives back the same
//! claims, in the same order.
//!
//! Written as one `Claim` after another, each in postcard, so opening
//! walks them twice without collecting them.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// One kept claim on the wire.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Claim<'a> {
    /// The entry at this position of the ID token's payload (0 the first),
    /// name and value.
    IdToken(u32),
    /// A claim of its own: its name, and its value as JSON text.
    Own(&'a str, &'a str),
}

/// Claims that do not read back: a position the payload does not have,
/// no payload at all, or bytes that are no claims.
#[derive(Debug)]
pub(super) struct Malformed;

/// `claims` as written, relative to the ID token `payload` (its decoded
/// JSON), if the record has one that is a JWT.
pub(super) fn encode(claims: &Map<String, Value>, payload: Option<&[u8]>) -> Zeroizing<Vec<u8>> {
    let mut entries = Vec::new();
    if let Some(payload) = payload {
        // A payload that is no JSON object, or breaks off: every claim is
        // written whole, since opening could not read it either.
        if walk(payload, &mut All(&mut entries)).is_err() {
            entries.clear();
        }
    }
    let mut out = Zeroizing::new(Vec::new());
    for (name, value) in claims {
        let found = entries
            .iter()
            .position(|(key, held)| key == name && held == value)
            .and_then(|at| u32::try_from(at).ok());
        match found {
            Some(at) => push(&Claim::IdToken(at), &mut out),
            None => {
                let json = Zeroizing::new(value.to_string());
                push(&Claim::Own(name, &json), &mut out);
            }
        }
    }
    out
}

/// The claims `bytes` hold, read against the ID token `payload`.
pub(super) fn decode(bytes: &[u8], payload: Option<&[u8]>) -> Result<Map<String, Value>, Malformed> {
    // First pass: how many, and whether the ID token's come first and in
    // the payload's order, as a login writes them (the payload's claims,
    // then UserInfo's).
    let (mut count, mut from_token, mut in_order) = (0, 0, true);
    let (mut last, mut own_seen) = (None, false);
    for claim in claims(bytes) {
        count += 1;
        match claim? {
            Claim::IdToken(at) => {
                from_token += 1;
                in_order &= !own_seen && last.is_none_or(|l| l < at);
                last = Some(at);
            }
            Claim::Own(..) => own_seen = true,
        }
    }
    let mut map = Map::with_capacity(count);
    if from_token == 0 {
        append_own(bytes, &mut map)?;
        return Ok(map);
    }
    let payload = payload.ok_or(Malformed)?;
    if in_order {
        // Straight into the map, then the others after them.
        let mut wanted = claims(bytes).map_while(|c| match c {
            Ok(Claim::IdToken(at)) => Some(at),
            _ => None,
        });
        let mut sink = InOrder {
            next: wanted.next(),
            wanted,
            map: &mut map,
            taken: 0,
        };
        walk(payload, &mut sink).map_err(|_| Malformed)?;
        if sink.taken != from_token {
            return Err(Malformed);
        }
        append_own(bytes, &mut map)?;
        return Ok(map);
    }
    // Any other order: the payload's entries first, then each claim in turn.
    let positions: Vec<u32> = claims(bytes)
        .filter_map(|c| match c {
            Ok(Claim::IdToken(at)) => Some(at),
            _ => None,
        })
        .collect();
    let mut found = Vec::with_capacity(positions.len());
    walk(
        payload,
        &mut Picked {
            positions: &positions,
            found: &mut found,
        },
    )
    .map_err(|_| Malformed)?;
    for claim in claims(bytes) {
        match claim? {
            Claim::IdToken(at) => {
                let i = found.iter().position(|(p, ..)| *p == at).ok_or(Malformed)?;
                let (_, name, value) = found.swap_remove(i);
                map.insert(name, value);
            }
            Claim::Own(name, json) => {
                map.insert(
                    name.to_owned(),
                    serde_json::from_str(json).map_err(|_| Malformed)?,
                );
            }
        }
    }
    Ok(map)
}

fn push(claim: &Claim<'_>, out: &mut Vec<u8>) {
    // Never fails: every claim has a size, and the buffer is made for it.
    let Ok(size) = postcard::serialize_with_flavor(claim, postcard::ser_flavors::Size::default()) else {
        return;
    };
    let at = out.len();
    out.resize(at + size, 0);
    let _ = postcard::to_slice(claim, &mut out[at..]);
}

/// The claims in `bytes`, one after another.
fn claims(mut bytes: &[u8]) -> impl Iterator<Item = Result<Claim<'_>, Malformed>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        match postcard::take_from_bytes::<Claim<'_>>(bytes) {
            Ok((claim, rest)) => {
                bytes = rest;
                Some(Ok(claim))
            }
            Err(_) => {
                bytes = &[];
                Some(Err(Malformed))
            }
        }
    })
}

/// Adds the claims of their own in `bytes` to `map`, in order.
fn append_own(bytes: &[u8], map: &mut Map<String, Value>) -> Result<(), Malformed> {
    for claim in claims(bytes) {
        if let Claim::Own(name, json) = claim? {
            map.insert(
                name.to_owned(),
                serde_json::from_str(json).map_err(|_| Malformed)?,
            );
        }
    }
    Ok(())
}

/// What a walk through the payload keeps: the entries at the positions it
/// wants, read whole; the others are skipped without a copy.
trait Sink {
    fn wants(&mut self, at: u32) -> bool;
    fn take(&mut self, at: u32, name: String, value: Value);
}

/// Walks the entries of the JSON object `payload` in order, duplicates
/// included, so a position names the same entry at every reading.
fn walk(payload: &[u8], sink: &mut dyn Sink) -> Result<(), serde_json::Error> {
    let mut json = serde_json::Deserializer::from_slice(payload);
    Walk(sink).deserialize(&mut json)?;
    json.end()
}

struct Walk<'s>(&'s mut dyn Sink);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut at = 0u32;
        loop {
            if self.0.wants(at) {
                let Some(name) = map.next_key::<String>()? else {
                    return Ok(());
                };
                let value = map.next_value::<Value>()?;
                self.0.take(at, name, value);
            } else {
                if map.next_key::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                map.next_value::<IgnoredAny>()?;
            }
            at = at.saturating_add(1);
        }
    }
}

/// Every entry: what a claim is compared with when written.
struct All<'v>(&'v mut Vec<(String, Value)>);

impl Sink for All<'_> {
    fn wants(&mut self, _: u32) -> bool {
        true
    }

    fn take(&mut self, _: u32, name: String, value: Value) {
        self.0.push((name, value));
    }
}

/// The entries at increasing positions, straight into the claims.
struct InOrder<'m, I> {
    next: Option<u32>,
    wanted: I,
    map: &'m mut Map<String, Value>,
    taken: usize,
}

impl<I: Iterator<Item = u32>> Sink for InOrder<'_, I> {
    fn wants(&mut self, at: u32) -> bool {
        self.next == Some(at)
    }

    fn take(&mut self, _: u32, name: String, value: Value) {
        self.map.insert(name, value);
        self.taken += 1;
        self.next = self.wanted.next();
    }
}

/// The entries at the given positions, in any order.
struct Picked<'p, 'f> {
    positions: &'p [u32],
    found: &'f mut Vec<(u32, String, Value)>,
}

impl Sink for Picked<'_, '_> {
    fn wants(&mut self, at: u32) -> bool {
        self.positions.contains(&at)
    }

    fn take(&mut self, at: u32, name: String, value: Value) {
        self.found.push((at, name, value));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn names(map: &Map<String, Value>) -> Vec<&str> {
        map.keys().map(String::as_str).collect()
    }

    const PAYLOAD: &[u8] = br#"{"iss":"https://idp","sub":"alice","aud":"c","exp":2,"iat":1,"auth_time":1,"name":"Alice","email":"a@x","nonce":"n"}"#;

    #[test]
    fn claims_the_id_token_holds_are_written_as_their_position() {
        let claims = map(
            json!({"iss": "https://idp", "sub": "alice", "auth_time": 1, "name": "Alice", "email": "a@x"}),
        );
        let bytes = encode(&claims, Some(PAYLOAD));
        assert_eq!(bytes.len(), 2 * 5, "two bytes a claim: {:?}", *bytes);
        let opened = decode(&bytes, Some(PAYLOAD)).unwrap();
        assert_eq!(opened, claims);
        assert_eq!(names(&opened), names(&claims));
    }

    #[test]
    fn claims_of_their_own_keep_their_place_and_value() {
        // UserInfo's after the ID token's, as a login writes them; one
        // whose value differs (a refreshed ID token); one before the others.
        for claims in [
            json!({"sub": "alice", "name": "Alice", "groups": ["a", "b"], "email_verified": true}),
            json!({"sub": "alice", "name": "Alice B.", "email": "a@x"}),
            json!({"email": "a@x", "zone": 1.5, "sub": "alice", "iss": "https://idp"}),
            json!({"name": "Alice", "sub": "alice"}),
            json!({"n": null, "o": {"nested": [1, {"x": "y"}]}, "u": "\u{e9}\"\\"}),
            json!({}),
        ] {
            let claims = map(claims);
            let bytes = encode(&claims, Some(PAYLOAD));
            let opened = decode(&bytes, Some(PAYLOAD)).unwrap();
            assert_eq!(names(&opened), names(&claims), "{claims:?}");
            assert_eq!(opened, claims);
            assert_eq!(
                Value::Object(opened).to_string(),
                Value::Object(claims).to_string()
            );
        }
    }

    #[test]
    fn without_a_readable_payload_every_claim_is_its_own() {
        let claims = map(json!({"sub": "alice", "name": "Alice"}));
        for payload in [
            None,
            Some(&b"not json"[..]),
            Some(b"[1,2]"),
            Some(b"{\"sub\":\"alice\""),
        ] {
            let bytes = encode(&claims, payload);
            assert_eq!(decode(&bytes, payload).unwrap(), claims, "{payload:?}");
            assert_eq!(decode(&bytes, None).unwrap(), claims, "{payload:?}");
        }
    }

    #[test]
    fn a_payload_with_a_repeated_name_reads_back_the_entry_written() {
        let payload = br#"{"sub":"alice","sub":"bob","name":"Alice"}"#;
        for sub in ["alice", "bob"] {
            let claims = map(json!({"sub": sub, "name": "Alice"}));
            let opened = decode(&encode(&claims, Some(payload)), Some(payload)).unwrap();
            assert_eq!(opened, claims);
        }
    }

    #[test]
    fn a_position_the_payload_lacks_is_malformed() {
        let claims = map(json!({"name": "Alice"}));
        let bytes = encode(&claims, Some(PAYLOAD));
        assert!(decode(&bytes, Some(br#"{"sub":"alice"}"#)).is_err());
        assert!(decode(&bytes, None).is_err());
        assert!(decode(&[0xff, 0xff], Some(PAYLOAD)).is_err());
    }
}
