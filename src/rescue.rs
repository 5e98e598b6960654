//! The one place where failures become responses (the rescue).
//!
//! Layers and handlers return errors; [`classify`] walks an error's `source()`
//! chain once and picks the [`Problem`]: status and stable `code` from
//! threat-model §3.1. No other module writes an error body, and no body ever
//! carries upstream hostnames, tokens or raw IdP text. It sits above every
//! module whose errors it knows; none of them imports it.

use std::error::Error as StdError;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::{ClientBodyError, Code, Refusal, UpstreamError};
use crate::oidc::IdpError;
use crate::refresh::RefreshError;
use crate::session::StoreError;

/// An RFC 9457 problem, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Code,
    /// Extra response headers (`Allow`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

// === impl Problem ===

impl Problem {
    pub fn new(status: StatusCode, code: Code) -> Self {
        Self {
            status,
            code,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The `application/problem+json` response. `request_id` lets a user
    /// quote the failure to an operator, who finds the details in the logs.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let json = serde_json::json!({
            "type": format!("urn:cloakroom:problem:{}", self.code.as_str()),
            "title": title,
            "status": self.status.as_u16(),
            "code": self.code.as_str(),
            "request_id": request_id,
        });
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
pub fn classify(error: &(dyn StdError + 'static)) -> Problem {
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
            Refusal::UriTooLong => Problem::new(StatusCode::URI_TOO_LONG, Code::TooLarge),
            Refusal::HeadersTooLarge => {
                Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Code::TooLarge)
            }
            Refusal::Csrf(_) => Problem::new(StatusCode::FORBIDDEN, Code::CsrfFailed),
        });
    }
    if let Some(u) = e.downcast_ref::<UpstreamError>() {
        // A request body that outgrew the route limit, or could not be read,
        // surfaces as an upstream send failure; the client is the real
        // cause, so look underneath first.
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
            RefreshError::IdpDown => unavailable(Code::IdpUnavailable),
            RefreshError::StoreDown => unavailable(Code::SessionStoreUnavailable),
            RefreshError::Pending => Problem::new(StatusCode::SERVICE_UNAVAILABLE, Code::RefreshPending)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        });
    }
    if let Some(idp) = e.downcast_ref::<IdpError>() {
        return Some(match idp {
            IdpError::Unreachable(_) => retry(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::IdpUnavailable,
            )),
            IdpError::BadResponse(_) | IdpError::Rejected(_) => {
                Problem::new(StatusCode::BAD_GATEWAY, Code::IdpBadResponse)
            }
        });
    }
    None
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
