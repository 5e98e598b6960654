//! Anomalies ([`Anomaly`]): what should not happen in honest traffic,
//! each counted in `cloakroom_anomalies_total` and written as one warning
//! on the `cloakroom::anomaly` log target ([`log`]), with the session's
//! hashed id and the client address where they are known: never a cookie
//! or a token. A burst of failures from one client is one.

use std::net::IpAddr;
use std::time::Duration;

/// How failures from one client make a burst: this many within a minute.
pub const BURST_THRESHOLD: u32 = 10;
pub const BURST_WINDOW: Duration = Duration::from_secs(60);
/// How many client addresses each burst detector tracks at most.
pub(super) const BURST_CAPACITY: usize = 10_000;

/// Something that should not happen in honest traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// A refresh presented a refresh token that had already been rotated:
    /// the IdP answered `invalid_grant`, and the session record, read again,
    /// holds another refresh token than the one presented.
    RefreshTokenReuse,
    /// A refreshed ID token names another subject or issuer than the
    /// session's.
    IdentityChanged,
    /// A refreshed ID token failed validation (signature, issuer,
    /// audience, expiry, …): the IdP's answer cannot be trusted.
    RefusedIdToken,
    /// [`BURST_THRESHOLD`] session cookies that do not open, from one
    /// client, within [`BURST_WINDOW`].
    UnsealBurst,
    /// [`BURST_THRESHOLD`] CSRF refusals, from one client, within
    /// [`BURST_WINDOW`].
    CsrfBurst,
    /// A device-bound session's cookie came without its bound cookie, and
    /// the browser did not say it skipped a refresh: most likely a copied
    /// cookie jar used on another machine.
    SessionCookieWithoutDevice,
    /// A DBSC proof was refused: a signature that does not verify with
    /// the session's key, or a challenge replayed or not the session's.
    DeviceProofRefused,
}

impl Anomaly {
    pub(super) const ALL: [Self; 7] = [
        Self::RefreshTokenReuse,
        Self::IdentityChanged,
        Self::RefusedIdToken,
        Self::UnsealBurst,
        Self::CsrfBurst,
        Self::SessionCookieWithoutDevice,
        Self::DeviceProofRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::IdentityChanged => "identity_changed",
            Self::RefusedIdToken => "refused_id_token",
            Self::UnsealBurst => "unseal_burst",
            Self::CsrfBurst => "csrf_burst",
            Self::SessionCookieWithoutDevice => "session_cookie_without_device",
            Self::DeviceProofRefused => "device_proof_refused",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse => "a refresh token was presented after it had been rotated",
            Self::IdentityChanged => "a refreshed ID token names another subject or issuer",
            Self::RefusedIdToken => "a refreshed ID token failed validation",
            Self::UnsealBurst => "a burst of session cookies that do not open, from one client",
            Self::CsrfBurst => "a burst of CSRF refusals, from one client",
            Self::SessionCookieWithoutDevice => {
                "a device-bound session's cookie came without its bound cookie"
            }
            Self::DeviceProofRefused => "a device-bound session's proof was refused",
        }
    }
}

/// The hash inside a store key (`cloakroom:{<hash>}:s` for a session: the
/// keyed hash of its id, never the id itself, T08, T43; `…:idx` for a
/// subject's index).
pub fn key_hash(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or("-", |(hash, _)| hash)
}

/// Writes the one log line of an anomaly. `session_key` is the session's
/// store key: only the hash inside it is logged.
pub(super) fn log(kind: Anomaly, session_key: Option<&str>, client: Option<IpAddr>, count: Option<u32>) {
    let client = client.map(|c| c.to_canonical().to_string());
    tracing::warn!(
        target: "cloakroom::anomaly",
        kind = kind.as_str(),
        session = session_key.map_or("-", key_hash),
        client = client.as_deref().unwrap_or("-"),
        count,
        window_s = count.map(|_| BURST_WINDOW.as_secs()),
        "{}",
        kind.describe(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hash_of_a_store_key_is_logged() {
        assert_eq!(key_hash("cloakroom:{0a1b2c}:s"), "0a1b2c");
        assert_eq!(key_hash("no braces"), "-");
    }
}
