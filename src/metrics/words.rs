//! The words recordings are named by: what a caller says happened, and the
//! bounded label value (`as_str`) each is exposed as.

/// How one refresh flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The IdP granted new tokens and they were written.
    Rotated,
    /// Another replica's (or flight's) refresh supplied the tokens: found
    /// while waiting for its lease, after taking the lease, or explaining
    /// an `invalid_grant`.
    WaitedOnOtherReplica,
    /// Our tokens were granted, but another writer committed first while
    /// our lease was lost; its tokens were kept (RF-06).
    LostLease,
    /// The IdP answered `invalid_grant`: the session ended.
    InvalidGrant,
    IdpDown,
    StoreDown,
    /// The IdP would not exchange the session's token (an OAuth error or
    /// an unusable answer); the session goes on.
    Refused,
    /// Another refresh did not finish in time: `503 refresh_pending`.
    Pending,
    /// The session ended otherwise: no refresh token, the record gone, or
    /// a refreshed ID token refused.
    Ended,
}

/// What became of a refresh token revocation queued at a session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Put in the queue.
    Queued,
    /// The IdP revoked the tokens.
    Done,
    /// An attempt failed; it is retried later.
    Failed,
    /// Left undone: pushed out of a full queue, given up after its
    /// retries, refused for good by the IdP (or it names no revocation
    /// endpoint), sealed with a key no longer configured, or never queued
    /// (the store down).
    Dropped,
}

/// A per-client-address limit a request was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_requests_per_ip` requests already in flight (PX-35).
    RequestsPerIp,
    /// `limits.refused_code_exchanges_per_minute` spent at the callback (LG-28).
    CodeExchanges,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    /// Found past its idle timeout while its record was still stored (the
    /// store's TTL usually removes it first: then it is [`Self::Gone`]).
    Idle,
    /// Its cookie came back past the absolute timeout.
    Absolute,
    InvalidGrant,
    /// A refreshed ID token named another subject or issuer, or was refused.
    ForgedIdpAnswer,
    /// A login in the same browser replaced it (CK-11).
    Replaced,
    /// Its user ended it from another session (`DELETE /auth/sessions/{id}`).
    EndedByUser,
    /// The admin API ended its subject's sessions.
    Admin,
    /// The IdP's back-channel logout.
    BackchannelLogout,
    /// Its subject went over `session.max_per_user`: the oldest ends.
    PerUserLimit,
    /// Its cookie came back and the record was gone from the store: in
    /// practice the idle timeout, which the store's TTL enforces; also a
    /// session ended elsewhere whose cookie is replayed, or a store that
    /// lost its data. Counted when the cookie comes back, not when the
    /// record expires.
    Gone,
}

/// A store operation, as the [`crate::session::SessionStore`] contract
/// names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    GetLatest,
    Put,
    Delete,
    DeleteIf,
    Ping,
    IndexAdd,
    IndexTouch,
    IndexRemove,
    IndexList,
    AnnounceEnded,
    Take,
    QueuePush,
    QueueClaim,
    QueueRetry,
    QueueDone,
    QueueLen,
}

/// How a store operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Ok,
    /// No such key (`get`), or not the expected value (`delete_if`).
    Miss,
    /// Compare-and-set refused.
    Conflict,
    /// The store is unavailable.
    Error,
}

/// A token endpoint grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    /// The session's own token, or a route's own (`resource`, `scopes`).
    RefreshToken,
    /// A token of cloakroom's own client (`token: client`).
    ClientCredentials,
    /// A token exchanged for the session's (`token: exchange`, RFC 8693).
    Exchange,
}

/// How a token endpoint call ended, as the IdP's answer tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Tokens granted.
    Granted,
    /// An OAuth error (`invalid_grant`, `invalid_scope`, `invalid_target`…).
    Refused,
    /// No answer: unreachable, timed out.
    Unavailable,
    /// An answer that was not a usable token response.
    BadResponse,
}

/// What a failed grant says of its [`GrantOutcome`]; the error types of
/// the IdP client implement it, so this leaf imports none of them.
pub trait GrantFailure {
    fn outcome(&self) -> GrantOutcome;
}

/// How a config reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Success,
    Failure,
}

impl RefreshOutcome {
    pub(super) const ALL: [Self; 9] = [
        Self::Rotated,
        Self::WaitedOnOtherReplica,
        Self::LostLease,
        Self::InvalidGrant,
        Self::IdpDown,
        Self::StoreDown,
        Self::Refused,
        Self::Pending,
        Self::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::WaitedOnOtherReplica => "waited_on_other_replica",
            Self::LostLease => "lost_lease",
            Self::InvalidGrant => "invalid_grant",
            Self::IdpDown => "idp_down",
            Self::StoreDown => "store_down",
            Self::Refused => "refused",
            Self::Pending => "pending",
            Self::Ended => "ended",
        }
    }
}

/// What happened to a device-bound session (DBSC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Registration was offered to a browser (a challenge handed out).
    Offered,
    /// A browser bound a session to its key.
    Registered,
    /// A bound cookie was renewed with a proof of the key.
    Refreshed,
    /// The refresh endpoint asked the browser to sign a challenge.
    Challenged,
    /// A registration or refresh proof was refused.
    Refused,
    /// The refresh endpoint told the browser the session is over.
    Ended,
    /// A request came without its bound cookie, and the browser said it
    /// skipped the refresh (`Secure-Session-Skipped`).
    Skipped,
    /// `device_binding: require` refused a session that was not bound.
    Unbound,
}

impl DeviceEvent {
    pub(super) const ALL: [Self; 8] = [
        Self::Offered,
        Self::Registered,
        Self::Refreshed,
        Self::Challenged,
        Self::Refused,
        Self::Ended,
        Self::Skipped,
        Self::Unbound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Registered => "registered",
            Self::Refreshed => "refreshed",
            Self::Challenged => "challenged",
            Self::Refused => "refused",
            Self::Ended => "ended",
            Self::Skipped => "skipped",
            Self::Unbound => "unbound",
        }
    }
}

impl Revocation {
    pub(super) const ALL: [Self; 4] = [Self::Queued, Self::Done, Self::Failed, Self::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

impl Limit {
    pub(super) const ALL: [Self; 2] = [Self::RequestsPerIp, Self::CodeExchanges];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestsPerIp => "requests_per_ip",
            Self::CodeExchanges => "code_exchanges",
        }
    }
}

impl EndReason {
    pub(super) const ALL: [Self; 7] = [
        Self::Logout,
        Self::Idle,
        Self::Absolute,
        Self::InvalidGrant,
        Self::ForgedIdpAnswer,
        Self::Replaced,
        Self::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::EndedByUser => "ended_by_user",
            Self::Admin => "admin",
            Self::BackchannelLogout => "backchannel_logout",
            Self::PerUserLimit => "per_user_limit",
            Self::Idle => "idle",
            Self::Absolute => "absolute",
            Self::InvalidGrant => "invalid_grant",
            Self::ForgedIdpAnswer => "forged_idp_answer",
            Self::Replaced => "replaced",
            Self::Gone => "gone",
        }
    }
}

impl StoreOp {
    pub(super) const COUNT: usize = 17;
    /// Every operation, in declaration order (the index of its series).
    #[cfg(test)]
    pub(super) const ALL: [Self; Self::COUNT] = [
        Self::Get,
        Self::GetLatest,
        Self::Put,
        Self::Delete,
        Self::DeleteIf,
        Self::Ping,
        Self::IndexAdd,
        Self::IndexTouch,
        Self::IndexRemove,
        Self::IndexList,
        Self::AnnounceEnded,
        Self::Take,
        Self::QueuePush,
        Self::QueueClaim,
        Self::QueueRetry,
        Self::QueueDone,
        Self::QueueLen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetLatest => "get_latest",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::DeleteIf => "delete_if",
            Self::Ping => "ping",
            Self::IndexAdd => "index_add",
            Self::IndexTouch => "index_touch",
            Self::IndexRemove => "index_remove",
            Self::IndexList => "index_list",
            Self::AnnounceEnded => "announce_ended",
            Self::Take => "take",
            Self::QueuePush => "queue_push",
            Self::QueueClaim => "queue_claim",
            Self::QueueRetry => "queue_retry",
            Self::QueueDone => "queue_done",
            Self::QueueLen => "queue_len",
        }
    }
}

impl StoreOutcome {
    pub(super) const COUNT: usize = 4;
    #[cfg(test)]
    pub(super) const ALL: [Self; Self::COUNT] = [Self::Ok, Self::Miss, Self::Conflict, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Miss => "miss",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Exchange => "exchange",
        }
    }
}

impl GrantOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::BadResponse => "bad_response",
        }
    }
}

impl Reload {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}
