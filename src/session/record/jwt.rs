//! A token as the compact record (format 2) holds it: a JWT (a JWS in
//! compact serialization, RFC 7515 §7.1) as its three segments decoded
//! from base64url, a quarter smaller; any other token as it came.
//!
//! A token is split only if it reads back byte for byte: three segments,
//! each canonical unpadded base64url, checked by encoding it again at
//! seal time, so [`text`] gives back exactly the token that was stored
//! (a lenient decoder would take `…Q` and `…R` for the same bytes).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A token on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Token<'a> {
    /// Not a JWT that reads back exactly: kept as it came.
    Text(&'a str),
    /// A JWT's header, payload and signature, each decoded.
    Jwt(&'a [u8], &'a [u8], &'a [u8]),
}

/// A token made ready for the wire: decoded, if it is a JWT.
pub(super) struct Split<'a> {
    text: &'a str,
    /// The three segments decoded, one after another, and where the
    /// second and the third start; zeroized on drop, as the token is.
    decoded: Option<(Zeroizing<Vec<u8>>, usize, usize)>,
}

/// The token `token` stands for, as it was given: one allocation, of its
/// exact length.
pub(super) fn text(token: &Token<'_>) -> String {
    match *token {
        Token::Text(text) => text.to_owned(),
        Token::Jwt(header, payload, signature) => {
            let len = [header, payload, signature]
                .iter()
                .map(|s| base64::encoded_len(s.len(), false).unwrap_or(0))
                .sum::<usize>();
            let mut out = String::with_capacity(len + 2);
            URL_SAFE_NO_PAD.encode_string(header, &mut out);
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(payload, &mut out);
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(signature, &mut out);
            out
        }
    }
}

// === impl Token ===

impl<'a> Token<'a> {
    /// A JWT's payload, decoded: for an ID token, its claims as JSON.
    pub(super) fn payload(&self) -> Option<&'a [u8]> {
        match *self {
            Token::Jwt(_, payload, _) => Some(payload),
            Token::Text(_) => None,
        }
    }
}

// === impl Split ===

impl<'a> Split<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let decoded = decode(text).filter(|(bytes, second, third)| {
            let token = Token::Jwt(&bytes[..*second], &bytes[*second..*third], &bytes[*third..]);
            Zeroizing::new(self::text(&token)).as_str() == text
        });
        Self { text, decoded }
    }

    pub(super) fn token(&self) -> Token<'_> {
        match &self.decoded {
            Some((bytes, second, third)) => {
                Token::Jwt(&bytes[..*second], &bytes[*second..*third], &bytes[*third..])
            }
            None => Token::Text(self.text),
        }
    }
}

/// The three segments of `text` decoded into one buffer, if it has three
/// that each decode.
fn decode(text: &str) -> Option<(Zeroizing<Vec<u8>>, usize, usize)> {
    let mut segments = text.split('.');
    let parts = [segments.next()?, segments.next()?, segments.next()?];
    if segments.next().is_some() {
        return None;
    }
    // Decoded, each segment is shorter than its text: the buffer never
    // grows, so no copy of the token is left behind unzeroized.
    let mut out = Zeroizing::new(vec![0u8; text.len()]);
    let mut at = [0usize; 3];
    let mut written = 0;
    for (i, part) in parts.iter().enumerate() {
        at[i] = written;
        written += URL_SAFE_NO_PAD.decode_slice(part, &mut out[written..]).ok()?;
    }
    out.truncate(written);
    Some((out, at[1], at[2]))
}
