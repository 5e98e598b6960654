//! The one place where failures become responses (the rescue).
//!
//! Layers and handlers return errors; [`classify`] walks an error's `source()`
//! chain once and picks the [`Problem`]: status and stable `code` from
//! threat-model §3.1; [`Problem::render`] writes it for its [`Reader`]: a
//! page for a person, problem+json for a program. No other module writes an
//! error body, and no body ever carries upstream hostnames, tokens or raw
//! IdP text. It sits above every module whose errors it knows; none of them
//! imports it.

mod page;

use std::error::Error as StdError;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::LoginPage;
use crate::error::{
    AccessRefusal, ClientBodyError, Code, DeviceRefusal, LoginError, Refusal, StepUp, UpstreamError,
    WithHeaders,
};
use crate::oidc::IdpError;
use crate::refresh::RefreshError;
use crate::session::StoreError;

/// An RFC 9457 problem, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub status: StatusCode,
    pub code: Code,
    /// Extra response headers (`Allow`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Extension members of the problem+json body (RFC 9457 §3.2), such as
    /// a step-up's `login_url`.
    pub members: Vec<(&'static str, serde_json::Value)>,
}

/// Who reads an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// A person, in a browser tab: the login endpoints, reached by
    /// navigation (from the SPA, or back from the IdP).
    Person,
    /// A program: the SPA's `fetch()`, an API client, a probe.
    Program,
}

// === impl Reader ===

impl Reader {
    /// The login endpoints answer a person unless the request asks for
    /// JSON only; everything else answers a program.
    pub(crate) fn of(path: &str, headers: &HeaderMap) -> Self {
        if !matches!(path, "/auth/login" | "/auth/callback") {
            return Reader::Program;
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("json") && !accept.contains("text/html") {
            Reader::Program
        } else {
            Reader::Person
        }
    }
}

// === impl Problem ===

impl Problem {
    pub(crate) fn new(status: StatusCode, code: Code) -> Self {
        Self {
            status,
            code,
            headers: Vec::new(),
            members: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn with_member(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.members.push((name, value));
        self
    }

    /// The answer for `reader`; either way it carries the code, the request
    /// id, and nothing a cache may keep. A person is sent to `login_page`
    /// (`errors.login_page`) when the SPA has one, else shown ours.
    pub(crate) fn render(
        self,
        request_id: &str,
        reader: Reader,
        login_page: Option<&LoginPage>,
    ) -> Response<Body> {
        if reader == Reader::Program {
            return self.into_response(request_id);
        }
        if let Some(login_page) = login_page {
            return page::redirect(login_page, self.code, request_id);
        }
        let mut response = page::render(self.status, self.code, request_id);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response.extensions_mut().insert(self.code);
        response
    }

    /// The `application/problem+json` response. `request_id` lets a user
    /// quote the failure to an operator, who finds the details in the logs.
    pub(crate) fn into_response(self, request_id: &str) -> Response<Body> {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut json = serde_json::json!({
            "type": format!("urn:cloakroom:problem:{}", self.code.as_str()),
            "title": title,
            "status": self.status.as_u16(),
            "code": self.code.as_str(),
            "request_id": request_id,
        });
        for (name, value) in self.members {
            json[name] = value;
        }
        let mut response = Response::new(body::full(Bytes::from(json.to_string())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response.extensions_mut().insert(self.code);
        response
    }
}

/// Picks the problem for an error by walking its cause chain once.
pub(crate) fn classify(error: &(dyn StdError + 'static)) -> Problem {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(problem) = known(e) {
            return problem;
        }
        cause = e.source();
    }
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal)
}

fn known(e: &(dyn StdError + 'static)) -> Option<Problem> {
    if let Some(w) = e.downcast_ref::<WithHeaders>() {
        return Some(classify(&*w.error));
    }
    if let Some(login) = e.downcast_ref::<LoginError>() {
        return match login {
            LoginError::Refused(_) => Some(Problem::new(StatusCode::BAD_REQUEST, Code::LoginFailed)),
            LoginError::Expired => Some(Problem::new(StatusCode::BAD_REQUEST, Code::LoginExpired)),
            &LoginError::Throttled { retry_after_secs } => {
                known(&Refusal::TooManyRequests { retry_after_secs })
            }
            // The cause underneath decides.
            LoginError::IdpAnswer(_) => None,
            // Whatever failed underneath, a retry may succeed: 503. Of a
            // spent code too: a new login may.
            LoginError::Unavailable(cause) | LoginError::Spent(cause) => match classify(&**cause) {
                p if p.status == StatusCode::SERVICE_UNAVAILABLE => Some(p),
                _ => Some(
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, Code::IdpUnavailable)
                        .with_header(header::RETRY_AFTER, HeaderValue::from_static("2")),
                ),
            },
        };
    }
    if let Some(r) = e.downcast_ref::<Refusal>() {
        return Some(match r {
            Refusal::NotFound => Problem::new(StatusCode::NOT_FOUND, Code::NotFound),
            Refusal::LoginRequired => Problem::new(StatusCode::UNAUTHORIZED, Code::LoginRequired),
            Refusal::LoginRedirect(return_to) => {
                let query: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", return_to)
                    .finish();
                Problem::new(StatusCode::FOUND, Code::LoginRequired).with_header(
                    header::LOCATION,
                    HeaderValue::from_str(&format!("/auth/login?{query}"))
                        .unwrap_or(HeaderValue::from_static("/auth/login")),
                )
            }
            Refusal::MethodNotAllowed { allow } => {
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, Code::MethodNotAllowed).with_header(
                    header::ALLOW,
                    HeaderValue::from_str(allow).unwrap_or(HeaderValue::from_static("")),
                )
            }
            Refusal::BadRequest(_) => Problem::new(StatusCode::BAD_REQUEST, Code::BadRequest),
            Refusal::BadFraming(_) => Problem::new(StatusCode::BAD_REQUEST, Code::BadRequest)
                .with_header(header::CONNECTION, HeaderValue::from_static("close")),
            Refusal::BodyTooLarge => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, Code::TooLarge),
            Refusal::BodyTimeout => Problem::new(StatusCode::REQUEST_TIMEOUT, Code::RequestTimeout)
                .with_header(header::CONNECTION, HeaderValue::from_static("close")),
            Refusal::TooManyRequests { retry_after_secs } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs))
            }
            Refusal::UriTooLong => Problem::new(StatusCode::URI_TOO_LONG, Code::TooLarge),
            Refusal::HeadersTooLarge => {
                Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Code::TooLarge)
            }
            Refusal::Csrf(_) => Problem::new(StatusCode::FORBIDDEN, Code::CsrfFailed),
        });
    }
    if let Some(refusal) = e.downcast_ref::<DeviceRefusal>() {
        // 401 without a cleared cookie: `app` clears it for
        // `login_required` only, and the session is the device's.
        return Some(match refusal {
            DeviceRefusal::ProofRequired => Problem::new(StatusCode::UNAUTHORIZED, Code::DeviceProofRequired),
            DeviceRefusal::BindingRequired => {
                Problem::new(StatusCode::UNAUTHORIZED, Code::DeviceBindingRequired)
            }
        });
    }
    if let Some(refusal) = e.downcast_ref::<AccessRefusal>() {
        return Some(match refusal {
            AccessRefusal::Denied => Problem::new(StatusCode::FORBIDDEN, Code::AccessDenied),
            AccessRefusal::StepUp(step_up) => step_up_problem(step_up),
        });
    }
    if let Some(u) = e.downcast_ref::<UpstreamError>() {
        // A request body that outgrew the route limit, or could not be read,
        // surfaces as an upstream send failure; the client is the real
        // cause, so look underneath first.
        // A body that stalled (PX-34): the client's 408, not a 502 or 504.
        let mut inner = e.source();
        while let Some(cause) = inner {
            if cause.downcast_ref::<Refusal>() == Some(&Refusal::BodyTimeout) {
                return known(cause);
            }
            inner = cause.source();
        }
        let mut inner = e.source();
        while let Some(cause) = inner {
            if cause.is::<http_body_util::LengthLimitError>() {
                return Some(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, Code::TooLarge));
            }
            if cause.is::<ClientBodyError>() {
                return Some(Problem::new(StatusCode::BAD_REQUEST, Code::BadRequest));
            }
            inner = cause.source();
        }
        return Some(match u {
            UpstreamError::Timeout(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT, Code::UpstreamTimeout),
            UpstreamError::Unavailable(_) => Problem::new(StatusCode::BAD_GATEWAY, Code::UpstreamUnavailable),
            UpstreamError::RequestTooLarge => {
                Problem::new(StatusCode::BAD_GATEWAY, Code::UpstreamRequestTooLarge)
            }
        });
    }
    if e.is::<http_body_util::LengthLimitError>() {
        return Some(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, Code::TooLarge));
    }
    let retry = |p: Problem| p.with_header(header::RETRY_AFTER, HeaderValue::from_static("2"));
    if let Some(StoreError::Unavailable(_)) = e.downcast_ref::<StoreError>() {
        return Some(retry(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::SessionStoreUnavailable,
        )));
    }
    if let Some(refresh) = e.downcast_ref::<RefreshError>() {
        let unavailable = |code| retry(Problem::new(StatusCode::SERVICE_UNAVAILABLE, code));
        return Some(match refresh {
            RefreshError::Ended => Problem::new(StatusCode::UNAUTHORIZED, Code::LoginRequired),
            RefreshError::IdpDown(_) => unavailable(Code::IdpUnavailable),
            RefreshError::StoreDown(_) => unavailable(Code::SessionStoreUnavailable),
            RefreshError::Pending => Problem::new(StatusCode::SERVICE_UNAVAILABLE, Code::RefreshPending)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            // A retry would be refused again: no Retry-After.
            RefreshError::ExchangeRefused(cause) => match cause.downcast_ref::<IdpError>() {
                Some(IdpError::Rejected(_)) => {
                    Problem::new(StatusCode::BAD_GATEWAY, Code::TokenExchangeRefused)
                }
                _ => Problem::new(StatusCode::BAD_GATEWAY, Code::IdpBadResponse),
            },
            RefreshError::IdpAnswer(_) => Problem::new(StatusCode::BAD_GATEWAY, Code::IdpBadResponse),
        });
    }
    if let Some(idp) = e.downcast_ref::<IdpError>() {
        return Some(match idp {
            IdpError::Unreachable(_) | IdpError::Busy(_) => retry(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::IdpUnavailable,
            )),
            IdpError::BadResponse(_) | IdpError::Rejected(_) | IdpError::Unbound { .. } => {
                Problem::new(StatusCode::BAD_GATEWAY, Code::IdpBadResponse)
            }
        });
    }
    None
}

/// `401 step_up_required`: the login that would satisfy the route, as a
/// URL in the body (`login_url`, with `max_age` and `acr_values` beside it
/// for a client that builds its own), and as an RFC 9470 challenge.
fn step_up_problem(step_up: &StepUp) -> Problem {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("return_to", &step_up.return_to);
    let mut challenge = String::from("Bearer error=\"insufficient_user_authentication\"");
    let mut problem = Problem::new(StatusCode::UNAUTHORIZED, Code::StepUpRequired);
    if let Some(max_age) = step_up.max_age {
        query.append_pair("max_age", &max_age.to_string());
        challenge.push_str(&format!(", max_age=\"{max_age}\""));
        problem = problem.with_member("max_age", max_age.into());
    }
    if !step_up.acr_values.is_empty() {
        let acr_values = step_up.acr_values.join(" ");
        query.append_pair("acr_values", &acr_values);
        // Configured values have no quote or backslash (config::access).
        challenge.push_str(&format!(", acr_values=\"{acr_values}\""));
        problem = problem.with_member("acr_values", acr_values.into());
    }
    let login_url = format!("/auth/login?{}", query.finish());
    let mut problem = problem.with_member("login_url", login_url.into());
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        problem = problem.with_header(header::WWW_AUTHENTICATE, value);
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn causes_are_found_through_the_chain() {
        let e = UpstreamError::Unavailable(Box::new(std::io::Error::other("refused")));
        assert_eq!(classify(&e).code, Code::UpstreamUnavailable);
        let limited =
            http_body_util::Limited::new(http_body_util::Full::new(Bytes::from_static(b"0123456789")), 4);
        let too_long = limited.collect().await.unwrap_err();
        let wrapped = UpstreamError::Unavailable(too_long);
        assert_eq!(classify(&wrapped).status, StatusCode::PAYLOAD_TOO_LARGE);
        let unknown = std::io::Error::other("boom");
        assert_eq!(classify(&unknown).code, Code::Internal);
    }

    #[test]
    fn px34_a_stalled_body_under_an_upstream_failure_is_the_clients_408() {
        let stalled = ClientBodyError(Box::new(Refusal::BodyTimeout));
        let problem = classify(&UpstreamError::Unavailable(Box::new(stalled)));
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::REQUEST_TIMEOUT, Code::RequestTimeout)
        );
        assert!(problem
            .headers
            .contains(&(header::CONNECTION, HeaderValue::from_static("close"))));
    }

    #[test]
    fn lg28_a_throttled_callback_is_a_429_with_retry_after() {
        let problem = classify(&LoginError::Throttled { retry_after_secs: 6 });
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests)
        );
        assert!(problem
            .headers
            .contains(&(header::RETRY_AFTER, HeaderValue::from_static("6"))));
    }

    #[test]
    fn login_errors_are_classified_by_kind_and_cause() {
        let refused = LoginError::refused("no state");
        assert_eq!(classify(&refused).code, Code::LoginFailed);
        assert_eq!(classify(&refused).status, StatusCode::BAD_REQUEST);
        assert_eq!(classify(&LoginError::Expired).code, Code::LoginExpired);
        // An IdP answer decides by the IdP error underneath.
        let bad = LoginError::IdpAnswer(Box::new(IdpError::BadResponse("redirect")));
        assert_eq!(classify(&bad).code, Code::IdpBadResponse);
        // Anything unavailable is a 503 a retry may cure.
        let store = LoginError::unavailable(StoreError::Unavailable("down".into()));
        assert_eq!(classify(&store).code, Code::SessionStoreUnavailable);
        let discovery = LoginError::unavailable(IdpError::BadResponse("no issuer"));
        let problem = classify(&discovery);
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::SERVICE_UNAVAILABLE, Code::IdpUnavailable)
        );
        // A pushed authorization request held back by its bound (LG-24).
        let busy = LoginError::unavailable(IdpError::Busy("bound"));
        assert_eq!(classify(&busy).status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(classify(&busy).code, Code::IdpUnavailable);
        // Headers attached to an error do not change what it becomes.
        let with = WithHeaders::new(LoginError::Expired, HeaderMap::new());
        assert_eq!(classify(&with).code, Code::LoginExpired);
    }

    #[test]
    fn a_refresh_error_keeps_its_cause() {
        let down = RefreshError::IdpDown(std::sync::Arc::new(IdpError::Unreachable(
            "connection refused".into(),
        )));
        assert_eq!(classify(&down).code, Code::IdpUnavailable);
        assert_eq!(
            crate::error::chain(&down),
            "the IdP is unavailable for refresh: IdP unreachable: connection refused"
        );
    }

    #[test]
    fn an_exchange_the_idp_refuses_is_a_502_with_its_own_code_or_a_bad_response() {
        let refused =
            RefreshError::ExchangeRefused(std::sync::Arc::new(IdpError::Rejected(crate::oidc::OAuthError {
                error: "invalid_target".into(),
                error_description: Some("the IdP's words".into()),
            })));
        let problem = classify(&refused);
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::BAD_GATEWAY, Code::TokenExchangeRefused)
        );
        assert!(problem.headers.is_empty(), "no Retry-After: {problem:?}");
        let unusable = RefreshError::ExchangeRefused(std::sync::Arc::new(IdpError::BadResponse("not JSON")));
        let problem = classify(&unusable);
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::BAD_GATEWAY, Code::IdpBadResponse)
        );
    }

    #[tokio::test]
    async fn a_person_gets_a_page_and_a_program_problem_json() {
        let html = HeaderMap::from_iter([(header::ACCEPT, HeaderValue::from_static("text/html,*/*"))]);
        let json = HeaderMap::from_iter([(header::ACCEPT, HeaderValue::from_static("application/json"))]);
        assert_eq!(Reader::of("/auth/callback", &html), Reader::Person);
        assert_eq!(Reader::of("/auth/login", &HeaderMap::new()), Reader::Person);
        assert_eq!(Reader::of("/auth/login", &json), Reader::Program);
        assert_eq!(Reader::of("/api/orders", &html), Reader::Program);

        let problem = || Problem::new(StatusCode::BAD_REQUEST, Code::LoginFailed);
        let page = problem().render("rid-7", Reader::Person, None);
        assert!(page.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(page.extensions().get::<Code>(), Some(&Code::LoginFailed));
        let text = page.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("code: login_failed") && text.contains("request: rid-7"),
            "{text}"
        );
        let api = problem().render("rid-7", Reader::Program, None);
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/problem+json");
    }

    #[tokio::test]
    async fn a_step_up_names_the_login_that_would_do_in_the_body_and_a_challenge() {
        let denied = classify(&AccessRefusal::Denied);
        assert_eq!(
            (denied.status, denied.code),
            (StatusCode::FORBIDDEN, Code::AccessDenied)
        );
        let step_up = AccessRefusal::StepUp(StepUp {
            return_to: "/admin/x?a=1&b=2".into(),
            max_age: Some(600),
            acr_values: vec!["urn:a:silver".into(), "gold".into()],
        });
        let problem = classify(&step_up);
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::UNAUTHORIZED, Code::StepUpRequired)
        );
        let response = problem.into_response("rid-2");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_user_authentication\", max_age=\"600\", acr_values=\"urn:a:silver gold\""
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["code"], "step_up_required");
        assert_eq!(
            json["login_url"],
            "/auth/login?return_to=%2Fadmin%2Fx%3Fa%3D1%26b%3D2&max_age=600&acr_values=urn%3Aa%3Asilver+gold"
        );
        assert_eq!(json["max_age"], 600);
        assert_eq!(json["acr_values"], "urn:a:silver gold");
    }

    #[tokio::test]
    async fn problem_body_is_rfc9457_json_with_the_stable_code() {
        let response = Problem::new(StatusCode::NOT_FOUND, Code::NotFound).into_response("rid-1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["status"], 404);
        assert_eq!(json["request_id"], "rid-1");
    }
}
