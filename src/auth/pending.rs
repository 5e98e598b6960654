//! Logins in progress, kept by the browser that started them.
//!
//! A login transaction (PKCE verifier, nonce, `return_to`, start time) is
//! not stored server-side: anyone may call `/auth/login`, so stored
//! transactions would let anonymous traffic fill memory or Redis (LG-24).
//! Instead a browser's pending logins ride in its pre-auth cookie, sealed
//! with AES-256-GCM under the login key purpose (HttpOnly, `SameSite=Lax`,
//! short-lived). Only the browser that started a login holds its
//! transaction, so a `state` seen elsewhere can neither finish nor cancel it
//! (T14, LG-25); the callback takes its entry out, and the cookie is
//! cleared once none is left (LG-26).
//!
//! Bounds: at most [`MAX_PENDING`] logins per browser, newest kept (LG-20),
//! and the sealed cookie stays under 4 KiB: older entries give way when
//! long `return_to` values would not fit.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use sha2::Digest;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::Auth;
use crate::cookie::{CookieNames, Purpose};
use crate::random;

/// Logins one browser may have in flight at once (tabs).
pub const MAX_PENDING: usize = 8;
/// Plaintext bytes of all entries: sealed and base64url-encoded, with the
/// cookie's name, this stays below the 4096 bytes browsers keep.
const BUDGET: usize = 2_600;
/// A callback this long after its login's timeout is still told
/// "expired" rather than "unknown".
pub const LATE_GRACE: Duration = Duration::from_secs(300);

const FORMAT: u8 = 1;
const STATE_HASH_LEN: usize = 16;
const SECRET_LEN: usize = 32;
/// State hash, verifier, nonce, start time, `return_to` length.
const FIXED_LEN: usize = STATE_HASH_LEN + 2 * SECRET_LEN + 8 + 2;

/// One login in progress.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Transaction {
    state_hash: [u8; STATE_HASH_LEN],
    verifier: [u8; SECRET_LEN],
    nonce: [u8; SECRET_LEN],
    pub created_at: u64,
    pub return_to: String,
}

/// The logins in progress in one browser, newest last.
#[derive(Default)]
pub struct Pending {
    logins: Vec<Transaction>,
}

// === impl Transaction ===

impl Transaction {
    /// A new login returning to `return_to`; also returns its `state`.
    pub fn start(return_to: String, now: u64) -> (Self, String) {
        let state = URL_SAFE_NO_PAD.encode(random::bytes::<SECRET_LEN>());
        let transaction = Self {
            state_hash: state_hash(&state),
            verifier: random::bytes(),
            nonce: random::bytes(),
            created_at: now,
            return_to,
        };
        (transaction, state)
    }

    /// The PKCE code verifier: 256 random bits, base64url (RFC 7636 §4.1).
    pub fn verifier(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.verifier)
    }

    /// The PKCE S256 challenge sent with the authorization request.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(self.verifier().as_bytes()))
    }

    /// The OpenID Connect nonce: 256 random bits, base64url.
    pub fn nonce(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.nonce)
    }

    fn encoded_len(&self) -> usize {
        FIXED_LEN + self.return_to.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.state_hash);
        out.extend_from_slice(&self.verifier);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.created_at.to_be_bytes());
        // `return_to` is at most 1 KiB (return_to::MAX_LEN).
        out.extend_from_slice(&(self.return_to.len() as u16).to_be_bytes());
        out.extend_from_slice(self.return_to.as_bytes());
    }

    fn decode(input: &mut &[u8]) -> Option<Self> {
        let mut transaction = Self {
            state_hash: take(input)?,
            verifier: take(input)?,
            nonce: take(input)?,
            created_at: u64::from_be_bytes(take(input)?),
            return_to: String::new(),
        };
        let len = usize::from(u16::from_be_bytes(take(input)?));
        let (text, rest) = input.split_at_checked(len)?;
        transaction.return_to = std::str::from_utf8(text).ok()?.to_owned();
        *input = rest;
        Some(transaction)
    }
}

/// The next `N` bytes of `input`, advancing it.
fn take<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>()?;
    *input = rest;
    Some(*head)
}

/// What the cookie keeps of a `state`: enough to match it, nothing to
/// replay it with.
fn state_hash(state: &str) -> [u8; STATE_HASH_LEN] {
    let digest = sha2::Sha256::digest(state.as_bytes());
    let mut out = [0u8; STATE_HASH_LEN];
    out.copy_from_slice(&digest[..STATE_HASH_LEN]);
    out
}

// === impl Pending ===

impl Pending {
    /// This request's pending logins: none if its pre-auth cookie is absent,
    /// does not open, or was sealed with a retired key. Logins past their
    /// timeout and the grace after it are dropped.
    pub fn from_request(auth: &Auth, headers: &HeaderMap) -> Self {
        let Some(value) = CookieNames::find(headers, &auth.names.login) else {
            return Self::default();
        };
        let Ok(opened) = auth.ring.unseal(Purpose::Login, &auth.names.login, value) else {
            return Self::default();
        };
        let mut pending = Self::decode(&opened.plaintext).unwrap_or_default();
        let oldest = auth
            .clock
            .now()
            .saturating_sub((auth.config.session.login_timeout + LATE_GRACE).as_secs());
        pending.logins.retain(|t| t.created_at >= oldest);
        pending
    }

    /// Adds a login, making room by dropping the oldest.
    pub fn push(&mut self, transaction: Transaction) {
        self.logins.push(transaction);
        let mut used = 0;
        let keep = self
            .logins
            .iter()
            .rev()
            .take(MAX_PENDING)
            .take_while(|t| {
                used += t.encoded_len();
                used <= BUDGET
            })
            .count();
        let excess = self.logins.len() - keep;
        self.logins.drain(..excess);
    }

    /// Takes out the login that `state` belongs to, if this browser has it.
    pub fn take(&mut self, state: &str) -> Option<Transaction> {
        let hash = state_hash(state);
        let at = self.logins.iter().position(|t| t.state_hash == hash)?;
        Some(self.logins.remove(at))
    }

    pub fn len(&self) -> usize {
        self.logins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
    }

    /// The `Set-Cookie` that stores these logins, or clears the cookie when
    /// there are none left.
    pub fn set_cookie(&self, auth: &Auth) -> HeaderValue {
        if self.logins.is_empty() {
            return auth.names.clear_login();
        }
        let sealed = auth.ring.seal(Purpose::Login, &auth.names.login, &self.encode());
        auth.names
            .set_login(&sealed, auth.config.session.login_timeout + LATE_GRACE)
    }

    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let len = 2 + self.logins.iter().map(Transaction::encoded_len).sum::<usize>();
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(len));
        out.push(FORMAT);
        out.push(self.logins.len() as u8);
        for login in &self.logins {
            login.encode(&mut out);
        }
        out
    }

    fn decode(mut input: &[u8]) -> Option<Self> {
        let [format, count] = take(&mut input)?;
        if format != FORMAT || usize::from(count) > MAX_PENDING {
            return None;
        }
        let logins = (0..count)
            .map(|_| Transaction::decode(&mut input))
            .collect::<Option<Vec<_>>>()?;
        input.is_empty().then_some(Self { logins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(return_to: &str) -> (Transaction, String) {
        Transaction::start(return_to.to_owned(), 1_000)
    }

    #[test]
    fn pending_logins_round_trip_and_are_found_by_state_only() {
        let mut pending = Pending::default();
        let (first, first_state) = login("/a?b=c");
        let (first_verifier, first_nonce) = (first.verifier(), first.nonce());
        pending.push(first);
        let (second, second_state) = login("/");
        pending.push(second);
        let mut back = Pending::decode(&pending.encode()).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.take("not-a-state").is_none());
        let found = back.take(&first_state).unwrap();
        assert_eq!(found.return_to, "/a?b=c");
        assert_eq!((found.verifier(), found.nonce()), (first_verifier, first_nonce));
        assert!(back.take(&first_state).is_none(), "taken once");
        assert!(back.take(&second_state).is_some());
        assert!(back.is_empty());
    }

    #[test]
    fn lg06_secrets_are_256_bits_and_the_challenge_is_s256() {
        let (t, state) = login("/");
        assert_eq!(state.len(), 43);
        assert_eq!(t.verifier().len(), 43, "RFC 7636: 43 to 128 characters");
        assert_eq!(t.nonce().len(), 43);
        let expected = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.verifier().as_bytes()));
        assert_eq!(t.challenge(), expected);
        assert_ne!(t.verifier(), t.nonce());
    }

    #[test]
    fn lg20_the_newest_logins_are_kept_within_count_and_size() {
        let mut pending = Pending::default();
        let mut states = Vec::new();
        for _ in 0..20 {
            let (t, state) = login("/orders/42");
            pending.push(t);
            states.push(state);
        }
        assert_eq!(pending.len(), MAX_PENDING);
        for (i, state) in states.iter().enumerate().rev() {
            assert_eq!(pending.take(state).is_some(), i >= 20 - MAX_PENDING, "login {i}");
        }
        // Long return_to values: fewer fit, the newest always does.
        let long = format!("/{}", "x".repeat(1023));
        for _ in 0..5 {
            pending.push(login(&long).0);
        }
        assert!(pending.encode().len() <= BUDGET + 2);
        assert_eq!(pending.len(), BUDGET / (FIXED_LEN + long.len()));
    }

    #[test]
    fn malformed_plaintext_is_no_pending_login() {
        let mut pending = Pending::default();
        pending.push(login("/x").0);
        let good = pending.encode();
        for cut in 0..good.len() {
            assert!(Pending::decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut extra = good.to_vec();
        extra.push(0);
        assert!(Pending::decode(&extra).is_none());
        let mut too_many = good.to_vec();
        too_many[1] = MAX_PENDING as u8 + 1;
        assert!(Pending::decode(&too_many).is_none());
    }
}
