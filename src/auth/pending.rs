//! Logins in progress, each kept by the browser that started it.
//!
//! A login transaction (PKCE verifier, nonce, `return_to`, start time, for
//! a step-up the `max_age` and `acr_values` asked, and with DPoP the key
//! its code is bound to) is
//! not stored server-side: anyone may call `/auth/login`, so stored
//! transactions would let anonymous traffic fill memory or Redis (LG-24).
//! Instead each login rides in a pre-auth cookie of its own, named after its
//! `state` (`cloakroom-login-1a2b3c4d`), sealed with AES-256-GCM under the
//! login key purpose with the cookie's name as associated data (HttpOnly,
//! `SameSite=Lax`, short-lived). Only the browser that started a login holds
//! its transaction, so a `state` seen elsewhere can neither finish nor cancel
//! it (T14, LG-25); logins started in parallel tabs never overwrite each
//! other; the callback clears its login's cookie (LG-26).
//!
//! Bounds (T10, LG-20): a new login clears the cookies of older ones beyond
//! [`MAX_PENDING`], or beyond [`BUDGET`] bytes of cookies together, so the
//! `Cookie` header stays small. Logins started at the same instant cannot see
//! each other; the next one trims them.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use sha2::Digest;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::state::Auth;
use super::step_up::Ask;
use crate::cookie::{CookieNames, Purpose};
use crate::random;
use crate::secret::Secret;

/// Logins one browser may have in flight at once (tabs).
pub const MAX_PENDING: usize = 8;
/// Bytes of pending-login cookies (names and values) one browser keeps:
/// with a session cookie beside them, the `Cookie` header stays far below
/// the limits of servers and proxies on the way.
pub const BUDGET: usize = 3_600;
/// A callback this long after its login's timeout is still told
/// "expired" rather than "unknown".
pub const LATE_GRACE: Duration = Duration::from_secs(300);

/// Format 5 adds the DPoP key, format 4 whether the login was silent,
/// format 3 the step-up ask; format 2 to 4 cookies, from before, still
/// open.
const FORMAT: u8 = 5;
const FORMAT_WITHOUT_DPOP: u8 = 4;
const FORMAT_WITHOUT_SILENT: u8 = 3;
const FORMAT_WITHOUT_STEP_UP: u8 = 2;
const STATE_HASH_LEN: usize = 16;
const SECRET_LEN: usize = 32;
/// State hash, verifier, nonce, start time, `return_to` length.
const FIXED_LEN: usize = STATE_HASH_LEN + 2 * SECRET_LEN + 8 + 2;
/// An RFC 7638 thumbprint: a SHA-256, base64url.
const JKT_LEN: usize = 43;

/// One login in progress.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Transaction {
    state_hash: [u8; STATE_HASH_LEN],
    verifier: [u8; SECRET_LEN],
    nonce: [u8; SECRET_LEN],
    /// When the login started, milliseconds since the epoch: logins a tab
    /// starts in the same second are still told apart by age.
    pub started_ms: u64,
    pub return_to: String,
    /// What a step-up login asked of the IdP, for the callback to check.
    #[zeroize(skip)]
    pub step_up: Ask,
    /// Whether the login asked `prompt=none`: the IdP's "interaction
    /// needed" then returns the browser to `return_to` (IDP-02).
    pub silent: bool,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10): the
    /// callback proves that one, whichever key is current by then.
    pub dpop_jkt: Option<String>,
}

// === impl Transaction ===

impl Transaction {
    /// A new login returning to `return_to`; also returns its `state`.
    pub fn start(return_to: String, now_ms: u64) -> (Self, String) {
        let state = URL_SAFE_NO_PAD.encode(random::bytes::<SECRET_LEN>());
        let transaction = Self {
            state_hash: state_hash(&state),
            verifier: random::bytes(),
            nonce: random::bytes(),
            started_ms: now_ms,
            return_to,
            step_up: Ask::default(),
            silent: false,
            dpop_jkt: None,
        };
        (transaction, state)
    }

    /// The PKCE code verifier: 256 random bits, base64url (RFC 7636 §4.1).
    /// Secret until the code is exchanged: it never prints and is wiped on
    /// drop, like the transaction that holds it.
    pub fn verifier(&self) -> Secret<String> {
        Secret::new(URL_SAFE_NO_PAD.encode(self.verifier))
    }

    /// The PKCE S256 challenge sent with the authorization request.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(self.verifier().expose().as_bytes()))
    }

    /// The OpenID Connect nonce: 256 random bits, base64url.
    pub fn nonce(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.nonce)
    }

    fn encoded_len(&self) -> usize {
        FIXED_LEN + self.return_to.len() + 6 + self.step_up.acr_values.len() + 2 + JKT_LEN
    }

    /// The sealed cookie's plaintext: a format byte, then the fields.
    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(1 + self.encoded_len()));
        out.push(FORMAT);
        out.extend_from_slice(&self.state_hash);
        out.extend_from_slice(&self.verifier);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.started_ms.to_be_bytes());
        // `return_to` is at most 1 KiB (return_to::MAX_LEN).
        out.extend_from_slice(&(self.return_to.len() as u16).to_be_bytes());
        out.extend_from_slice(self.return_to.as_bytes());
        // The step-up ask: whether max_age was asked, max_age, then
        // `acr_values` (at most ACR_VALUES_MAX_LEN bytes, checked at login).
        out.push(u8::from(self.step_up.max_age.is_some()));
        out.extend_from_slice(&self.step_up.max_age.unwrap_or(0).to_be_bytes());
        let acr = self.step_up.acr_values.as_bytes();
        let acr = &acr[..acr.len().min(usize::from(u8::MAX))];
        out.push(acr.len() as u8);
        out.extend_from_slice(acr);
        out.push(u8::from(self.silent));
        // The thumbprint is always 43 characters; anything else is left out.
        match self.dpop_jkt.as_deref().filter(|jkt| jkt.len() == JKT_LEN) {
            Some(jkt) => {
                out.push(1);
                out.extend_from_slice(jkt.as_bytes());
            }
            None => out.push(0),
        }
        out
    }

    fn decode(input: &mut &[u8], format: u8) -> Option<Self> {
        let mut transaction = Self {
            state_hash: take(input)?,
            verifier: take(input)?,
            nonce: take(input)?,
            started_ms: u64::from_be_bytes(take(input)?),
            return_to: String::new(),
            step_up: Ask::default(),
            silent: false,
            dpop_jkt: None,
        };
        let len = usize::from(u16::from_be_bytes(take(input)?));
        let (text, rest) = input.split_at_checked(len)?;
        transaction.return_to = std::str::from_utf8(text).ok()?.to_owned();
        *input = rest;
        if format == FORMAT_WITHOUT_STEP_UP {
            return Some(transaction);
        }
        let [has_max_age] = take(input)?;
        let max_age = u32::from_be_bytes(take(input)?);
        transaction.step_up.max_age = match has_max_age {
            0 => None,
            1 => Some(max_age),
            _ => return None,
        };
        let [len] = take(input)?;
        let (text, rest) = input.split_at_checked(usize::from(len))?;
        transaction.step_up.acr_values = std::str::from_utf8(text).ok()?.to_owned();
        *input = rest;
        if format == FORMAT_WITHOUT_SILENT {
            return Some(transaction);
        }
        transaction.silent = match take(input)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        if format == FORMAT_WITHOUT_DPOP {
            return Some(transaction);
        }
        transaction.dpop_jkt = match take(input)? {
            [0] => None,
            [1] => Some(std::str::from_utf8(&take::<JKT_LEN>(input)?).ok()?.to_owned()),
            _ => return None,
        };
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

// === pending logins ===

/// The `Set-Cookie`s that keep `transaction` for `state` in this browser,
/// and clear the cookies of the logins it displaces: the oldest beyond
/// [`MAX_PENDING`] or [`BUDGET`], and any that no longer open or have
/// expired.
pub fn keep(auth: &Auth, headers: &HeaderMap, state: &str, transaction: &Transaction) -> Vec<HeaderValue> {
    let name = cookie_name(&auth.sessions.names.login, state);
    let value = auth
        .sessions
        .ring
        .seal(Purpose::Login, &name, &transaction.encode());
    let mut out = vec![auth.sessions.names.set_login(&name, &value, lifetime(auth))];
    let oldest = oldest_allowed(auth);
    let mut live = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (other, value) in login_cookies(auth, headers) {
        if other == name || !seen.insert(other) {
            continue;
        }
        match open(auth, other, value) {
            Some(t) if t.started_ms >= oldest => live.push((t.started_ms, other, other.len() + value.len())),
            _ => out.push(auth.sessions.names.clear_login(other)),
        }
    }
    // Newest first: they are the ones a user is still looking at.
    live.sort_by_key(|l| std::cmp::Reverse(l.0));
    let mut used = name.len() + value.len();
    let mut kept = 1;
    for (_, other, size) in live {
        if kept < MAX_PENDING && used + size <= BUDGET {
            kept += 1;
            used += size;
        } else {
            out.push(auth.sessions.names.clear_login(other));
        }
    }
    out
}

/// The login that `state` belongs to, if this browser started it. Its age
/// is the caller's to judge.
/// A login started under the previous cookie prefix is still found.
pub fn find(auth: &Auth, headers: &HeaderMap, state: &str) -> Option<Transaction> {
    let names = &auth.sessions.names;
    std::iter::once(&names.login)
        .chain(&names.previous_login)
        .find_map(|base| {
            let name = cookie_name(base, state);
            let transaction = open(auth, &name, CookieNames::find(headers, &name)?)?;
            (transaction.state_hash == state_hash(state)).then_some(transaction)
        })
}

/// The `Set-Cookie` that clears the cookie of the login for `state`.
pub fn forget(auth: &Auth, state: &str) -> HeaderValue {
    auth.sessions
        .names
        .clear_login(&cookie_name(&auth.sessions.names.login, state))
}

/// One login's cookie name: the pre-auth cookie's (`base`), and 32 bits of
/// its state's hash, enough to tell a browser's few logins apart.
fn cookie_name(base: &str, state: &str) -> String {
    format!("{base}-{}", hex::encode(&state_hash(state)[..4]))
}

/// The request's pending-login cookies, as (name, value).
fn login_cookies<'a>(auth: &'a Auth, headers: &'a HeaderMap) -> impl Iterator<Item = (&'a str, &'a str)> {
    let prefix = auth.sessions.names.login.len();
    CookieNames::pairs(headers).filter(move |(name, _)| {
        name.len() == prefix + 9
            && name.starts_with(auth.sessions.names.login.as_str())
            && name.as_bytes()[prefix] == b'-'
    })
}

fn open(auth: &Auth, name: &str, value: &str) -> Option<Transaction> {
    let opened = auth.sessions.ring.unseal(Purpose::Login, name, value).ok()?;
    let mut input: &[u8] = &opened.plaintext;
    let [format] = take(&mut input)?;
    if ![
        FORMAT,
        FORMAT_WITHOUT_DPOP,
        FORMAT_WITHOUT_SILENT,
        FORMAT_WITHOUT_STEP_UP,
    ]
    .contains(&format)
    {
        return None;
    }
    let transaction = Transaction::decode(&mut input, format)?;
    input.is_empty().then_some(transaction)
}

/// How long a login's cookie lives: its timeout, and the grace to say
/// "expired" after it.
fn lifetime(auth: &Auth) -> Duration {
    auth.config.session.login_timeout + LATE_GRACE
}

/// The oldest start, in milliseconds, of a login still worth keeping.
fn oldest_allowed(auth: &Auth) -> u64 {
    auth.sessions
        .clock
        .now_ms()
        .saturating_sub(lifetime(auth).as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(return_to: &str) -> (Transaction, String) {
        Transaction::start(return_to.to_owned(), 1_000_000)
    }

    fn decode(bytes: &[u8]) -> Option<Transaction> {
        let mut input = bytes.get(1..)?;
        let t = Transaction::decode(&mut input, *bytes.first()?)?;
        input.is_empty().then_some(t)
    }

    #[test]
    fn a_transaction_round_trips_and_matches_its_state_only() {
        let (t, state) = login("/a?b=c");
        let back = decode(&t.encode()).unwrap();
        assert_eq!(back.return_to, "/a?b=c");
        assert_eq!((back.verifier(), back.nonce()), (t.verifier(), t.nonce()));
        assert_eq!(format!("{:?}", t.verifier()), "[redacted]");
        assert_eq!(back.state_hash, state_hash(&state));
        assert_ne!(back.state_hash, state_hash("another state"));
    }

    #[test]
    fn a_step_up_ask_round_trips_and_a_format_2_login_still_opens() {
        let (mut t, _) = login("/admin");
        t.step_up = Ask {
            max_age: Some(600),
            acr_values: "urn:a:silver gold".into(),
        };
        let back = decode(&t.encode()).unwrap();
        assert_eq!(back.step_up, t.step_up);
        let (plain, _) = login("/x");
        assert_eq!(decode(&plain.encode()).unwrap().step_up, Ask::default());

        // A login started before the upgrade: format 2, no step-up fields
        // (nor the silent flag and DPoP key of later formats).
        let mut old = plain.encode().to_vec();
        old[0] = FORMAT_WITHOUT_STEP_UP;
        old.truncate(old.len() - 8);
        let back = decode(&old).unwrap();
        assert_eq!((back.return_to.as_str(), &back.step_up), ("/x", &Ask::default()));
    }

    #[test]
    fn idp02_a_silent_login_round_trips_and_a_format_3_login_still_opens() {
        let (mut t, _) = login("/app");
        t.silent = true;
        assert!(decode(&t.encode()).unwrap().silent);
        let mut old = t.encode().to_vec();
        old[0] = FORMAT_WITHOUT_SILENT;
        old.truncate(old.len() - 2);
        let back = decode(&old).unwrap();
        assert!(!back.silent);
    }

    #[test]
    fn dpop_the_codes_key_round_trips_and_a_format_4_login_still_opens() {
        let (mut t, _) = login("/app");
        let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        t.dpop_jkt = Some(jkt.into());
        let encoded = t.encode().to_vec();
        assert_eq!(decode(&encoded).unwrap().dpop_jkt.as_deref(), Some(jkt));
        let mut old = encoded;
        old[0] = FORMAT_WITHOUT_DPOP;
        old.truncate(old.len() - 1 - jkt.len());
        assert_eq!(decode(&old).unwrap().dpop_jkt, None);
        let (plain, _) = login("/app");
        assert_eq!(decode(&plain.encode()).unwrap().dpop_jkt, None);
    }

    #[test]
    fn lg06_secrets_are_256_bits_and_the_challenge_is_s256() {
        let (t, state) = login("/");
        assert_eq!(state.len(), 43);
        assert_eq!(t.verifier().expose().len(), 43, "RFC 7636: 43 to 128 characters");
        assert_eq!(t.nonce().len(), 43);
        let expected = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.verifier().expose().as_bytes()));
        assert_eq!(t.challenge(), expected);
        assert_ne!(t.verifier().expose(), &t.nonce());
    }

    #[test]
    fn the_longest_login_fits_a_cookie_and_two_fit_the_budget() {
        let (mut t, _) = login(&format!("/{}", "x".repeat(crate::auth::return_to::MAX_LEN - 1)));
        t.step_up = Ask {
            max_age: Some(u32::MAX),
            acr_values: "a".repeat(crate::config::access::ACR_VALUES_MAX_LEN),
        };
        let plaintext = t.encode().len();
        // Sealed: version, key id (≤ 64), nonce, tag; then base64url.
        let sealed = (plaintext + 2 + 64 + 12 + 16).div_ceil(3) * 4;
        assert!(sealed + "__Host-cloakroom-login-01234567=".len() < 4096);
        assert!(2 * sealed < BUDGET);
    }

    #[test]
    fn malformed_plaintext_is_no_login() {
        let (mut t, _) = login("/x");
        t.step_up.acr_values = "gold".into();
        let good = t.encode();
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut extra = good.to_vec();
        extra.push(0);
        assert!(decode(&extra).is_none());
    }
}
