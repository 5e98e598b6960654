//! The audit trail: one info line on the `cloakroom::audit` log target for
//! each login, each refresh that failed, each session end (a logout is
//! the end with reason `logout`) and how the revocation of its refresh
//! tokens at the IdP ended, so a security team can follow a session from
//! its start to its end without a token or a cookie in any line.
//!
//! Each line names the event and, where known, the session (the hash
//! inside its store key, as the `cloakroom::anomaly` lines name it), its
//! subject (the hash inside the subject's index key,
//! `cloakroom:{<hash>}:idx`, never the `sub` itself) and the client (the
//! peer, or behind `trusted_proxies` the address they report). `-` stands
//! for what is not known where the event happens: a timeout found by the
//! watcher has no client, a session past its absolute timeout is ended
//! before its record (and so its subject) is read.
//!
//! Imports only the leaf `metrics`, for the reason words and the hash.

use std::net::IpAddr;

use crate::metrics::{self, EndReason, RefreshOutcome};

/// Whom an audit line is about; each part `None` where not known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    /// The session's store key: only the hash inside it is written.
    pub session_key: Option<&'a str>,
    /// The subject's index key: only the hash inside it is written.
    pub subject_index: Option<&'a str>,
    pub client: Option<IpAddr>,
}

/// How the revocation of an ended session's refresh tokens ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationEnd {
    /// The IdP revoked them.
    Revoked,
    /// Pushed out of a full queue (`session.revocation_queue_max`).
    QueueFull,
    /// The IdP kept failing; given up after the last retry.
    GaveUp,
    /// The IdP refused them for good (`unsupported_token_type`).
    Refused,
    /// The IdP names no revocation endpoint.
    NoEndpoint,
    /// Sealed with a cookie key no longer configured, or damaged.
    Unreadable,
    /// The store refused to queue it (down at the session's end).
    NotQueued,
}

impl RevocationEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::QueueFull => "queue_full",
            Self::GaveUp => "gave_up",
            Self::Refused => "refused",
            Self::NoEndpoint => "no_endpoint",
            Self::Unreadable => "unreadable",
            Self::NotQueued => "not_queued",
        }
    }
}

/// A session was created at a login.
pub fn login(who: Who<'_>) {
    write("login", "-", who);
}

/// A session ended, for `reason`.
pub fn session_ended(reason: EndReason, who: Who<'_>) {
    write("session_ended", reason.as_str(), who);
}

/// A refresh flight did not bring fresh tokens; `outcome` says why.
pub fn refresh_failed(outcome: RefreshOutcome, who: Who<'_>) {
    write("refresh_failed", outcome.as_str(), who);
}

/// The revocation of a session's refresh tokens ended; `who` names the
/// session only (a failed login's tokens have none).
pub fn revocation(end: RevocationEnd, who: Who<'_>) {
    write("revocation", end.as_str(), who);
}

fn write(event: &'static str, reason: &'static str, who: Who<'_>) {
    let client = who.client.map(|c| c.to_canonical().to_string());
    tracing::info!(
        target: "cloakroom::audit",
        event,
        reason,
        session = who.session_key.map_or("-", metrics::key_hash),
        subject = who.subject_index.map_or("-", metrics::key_hash),
        client = client.as_deref().unwrap_or("-"),
    );
}
