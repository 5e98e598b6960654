//! The one rescue: an error on a request's way becomes its answer here,
//! classified once ([`rescue::classify`]), logged once when the fault is
//! the server's or a login failed, and rendered for its reader.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response};

use crate::body::Body;
use crate::config::LoginPage;
use crate::error::{self, BoxError, Code, WithHeaders};
use crate::rescue::{self, Reader};

/// What the answer to a failed request depends on besides the error.
pub(super) struct Failure<'a> {
    pub request_id: &'a str,
    pub reader: Reader,
    pub login_page: Option<&'a LoginPage>,
    pub https: bool,
    /// The route's upstream, for the operator's log line; never in the body.
    pub upstream: Option<String>,
    /// The `Set-Cookie` that drops the request's session cookie when the
    /// answer says it names no usable session (§3.1); `None` without one.
    pub clear_session: Option<HeaderValue>,
}

impl Failure<'_> {
    /// The answer to `e`. Its [`Code`] is in the answer's extensions.
    pub(super) fn answer(self, e: BoxError) -> Response<Body> {
        // Headers the answer carries whatever it becomes.
        let (e, extra) = match e.downcast::<WithHeaders>() {
            Ok(with) => (with.error, with.headers),
            Err(e) => (e, HeaderMap::new()),
        };
        let problem = rescue::classify(&*e);
        let login_failed = matches!(problem.code, Code::LoginFailed | Code::LoginExpired);
        if problem.status.is_server_error() || login_failed {
            tracing::warn!(
                request_id = %self.request_id,
                upstream = self.upstream.as_deref().unwrap_or("-"),
                error = %error::chain(&*e),
                "request failed"
            );
        }
        let ends_session = problem.code == Code::LoginRequired;
        let mut response = problem.render(self.request_id, self.reader, self.login_page);
        crate::security_headers::apply(response.headers_mut(), self.https);
        for (name, value) in &extra {
            response.headers_mut().append(name, value.clone());
        }
        if let (true, Some(clear)) = (ends_session, self.clear_session) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        response
    }
}
