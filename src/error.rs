//! The error types every layer may return, and the stable codes answers
//! carry. A leaf: it names what failed; which response that becomes is
//! decided in one place above everything, [`crate::rescue`].

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Any error a layer may return.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A stable error `code` the SPA can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    LoginRequired,
    LoginFailed,
    LoginExpired,
    CsrfFailed,
    AccessDenied,
    StepUpRequired,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
    RequestTimeout,
    TooManyRequests,
    SessionStoreUnavailable,
    RefreshPending,
    IdpUnavailable,
    IdpBadResponse,
    /// The IdP answered a token exchange with an OAuth error (RFC 8693 §2.2.2).
    TokenExchangeRefused,
    /// A device-bound session's request without its bound cookie.
    DeviceProofRequired,
    /// `session.device_binding: require`, and the session was not bound.
    DeviceBindingRequired,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamRequestTooLarge,
    Internal,
}

/// A request cloakroom refuses by rule (not a failure of anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no route for this path")]
    NotFound,
    #[error("a session is required")]
    LoginRequired,
    /// A page route without a session: send the browser to log in, then back.
    #[error("a session is required; redirecting to login")]
    LoginRedirect(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: String },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Framing that another server could read differently (request
    /// smuggling): refused, and the connection closed (§3.1).
    #[error("ambiguous message framing: {0}")]
    BadFraming(&'static str),
    #[error("request body larger than the route allows")]
    BodyTooLarge,
    /// The client stopped sending its body (PX-34): answered, and the
    /// connection closed, so a trickle cannot hold it.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The client has too much under way at once (PX-35), or spends too many
    /// code exchanges (LG-28); a retry after this many seconds may pass.
    #[error("too many requests from this client")]
    TooManyRequests { retry_after_secs: u32 },
    #[error("request target too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("CSRF check failed: {0}")]
    Csrf(&'static str),
}

/// A session refused for its device (DBSC, `session::device`). Never a
/// logout: the session stays, for the device that holds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceRefusal {
    /// The session is bound to a device, and the request has no valid
    /// bound cookie: `device_proof_required`.
    #[error("the session is bound to a device, and its proof is missing")]
    ProofRequired,
    /// The session was not bound in time, and the config requires it:
    /// `device_binding_required`.
    #[error("the session is not bound to a device, and must be")]
    BindingRequired,
}

/// A signed-in user that a route's `access` or `step_up` does not admit.
/// Never a redirect: logging in again as the same user changes nothing for
/// a rule, and a step-up is the client's to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    /// The session's claims fail the route's `access` rule: `access_denied`.
    #[error("the route's access rule does not admit this user")]
    Denied,
    /// The login behind the session is too old or too weak for the route:
    /// `step_up_required`, with the login that would do.
    #[error("the route needs a more recent or stronger login")]
    StepUp(StepUp),
}

/// The login a step-up asks for: `/auth/login` with these parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// Where the login returns to: the refused request's path and query.
    pub return_to: String,
    /// Seconds the new login's `auth_time` may be old.
    pub max_age: Option<u64>,
    /// The `acr` values it must reach, one of them.
    pub acr_values: Vec<String>,
}

/// An upstream failure, named without its address.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream connection failed")]
    Unavailable(#[source] BoxError),
    #[error("request headers too large for the upstream")]
    RequestTooLarge,
}

/// Reading the client's request body failed (bad chunk framing, reset): the
/// client's fault, even when it surfaces as a failed upstream send.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body failed")]
pub struct ClientBodyError(#[source] pub BoxError);

/// Why a login (`/auth/login`, `/auth/callback`) did not complete. The
/// reason is for the log; the browser sees only the code (T20).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The request, the IdP's answer or this login's state is not
    /// acceptable: `login_failed`.
    #[error("login failed: {0}")]
    Refused(Cow<'static, str>),
    /// The login outlived `session.login_timeout`: `login_expired`.
    #[error("login failed: the transaction expired")]
    Expired,
    /// The IdP answered with something unusable; the IdP error decides.
    #[error("login failed")]
    IdpAnswer(#[source] BoxError),
    /// The client has spent its code exchanges for now (LG-28): the same
    /// callback may be retried as it is after this many seconds.
    #[error("login failed: too many code exchanges from this client")]
    Throttled { retry_after_secs: u32 },
    /// The IdP or the store is unavailable; its error decides the answer,
    /// and the same callback may be retried as it is.
    #[error("login failed")]
    Unavailable(#[source] BoxError),
    /// The IdP or the store failed after the code was exchanged; its error
    /// decides the answer, but the code is spent (LG-03): the user starts a
    /// new login.
    #[error("login failed after the code exchange")]
    Spent(#[source] BoxError),
}

/// An error whose answer, whatever it becomes, carries these headers too
/// (a pre-auth cookie to clear). Displays and chains as its error.
#[derive(Debug)]
pub struct WithHeaders {
    pub error: BoxError,
    pub headers: http::HeaderMap,
}

// === impl LoginError ===

impl LoginError {
    pub fn refused(reason: &'static str) -> Self {
        Self::Refused(Cow::Borrowed(reason))
    }

    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }
}

// === impl WithHeaders ===

impl WithHeaders {
    pub fn new(error: impl Into<BoxError>, headers: http::HeaderMap) -> Self {
        Self {
            error: error.into(),
            headers,
        }
    }
}

impl fmt::Display for WithHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl StdError for WithHeaders {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

// === impl Code ===

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::LoginRequired => "login_required",
            Code::LoginFailed => "login_failed",
            Code::LoginExpired => "login_expired",
            Code::CsrfFailed => "csrf_failed",
            Code::AccessDenied => "access_denied",
            Code::StepUpRequired => "step_up_required",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::BadRequest => "bad_request",
            Code::TooLarge => "too_large",
            Code::RequestTimeout => "request_timeout",
            Code::TooManyRequests => "too_many_requests",
            Code::SessionStoreUnavailable => "session_store_unavailable",
            Code::RefreshPending => "refresh_pending",
            Code::IdpUnavailable => "idp_unavailable",
            Code::IdpBadResponse => "idp_bad_response",
            Code::TokenExchangeRefused => "token_exchange_refused",
            Code::DeviceProofRequired => "device_proof_required",
            Code::DeviceBindingRequired => "device_binding_required",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::UpstreamUnavailable => "upstream_unavailable",
            Code::UpstreamRequestTooLarge => "upstream_request_too_large",
            Code::Internal => "internal_error",
        }
    }
}

/// The `Display` of an error and all its causes, for one log field.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}
