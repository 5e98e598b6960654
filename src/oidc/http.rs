//! The HTTP client for IdP calls: redirects off, bounded time and size.
//!
//! An IdP endpoint that answers with a redirect is refused rather than
//! followed, so a code, verifier, refresh token or client secret is never
//! re-sent to a host the metadata did not name (threat-model T21, LG-15).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::error::{IdpError, OAuthError};

/// IdP answers larger than this are refused (T39).
const MAX_BODY: usize = 1 << 20;

/// Builds the IdP client. TLS is always verified.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider; use ring, as the
    // upstream connector does. A second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        // A whole call, answer included; the token endpoint's calls are
        // given longer ([`super::TOKEN_CALL_TIMEOUT`]). No read timeout of
        // its own: it would cut a token call short at the first silence.
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("cloakroom/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` and reads a JSON answer of at most `MAX_BODY` bytes.
/// Status and content type are checked before parsing; OAuth error bodies
/// become [`IdpError::Rejected`].
///
/// Inside a request, the call is a child span named `idp <operation>`.
pub async fn json<T: DeserializeOwned>(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<T, IdpError> {
    json_noting(operation, request, |_| {}).await
}

/// [`json`], showing `note` the answer's headers first, whatever its
/// status (the DPoP nonce an IdP sends with an answer or a refusal).
pub async fn json_noting<T: DeserializeOwned>(
    operation: &'static str,
    request: reqwest::RequestBuilder,
    note: impl FnOnce(&reqwest::header::HeaderMap),
) -> Result<T, IdpError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| IdpError::Unreachable(Box::new(e)))?;
    let span = span(operation, &request);
    let result = read_json(client, request, &span, note)
        .instrument(span.clone())
        .await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// Sends `request` and gives back the response; inside a request, as a
/// child span named `idp <operation>`.
pub async fn send(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, IdpError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| IdpError::Unreachable(Box::new(e)))?;
    let span = span(operation, &request);
    let response = client
        .execute(request)
        .instrument(span.clone())
        .await
        .map_err(|e| IdpError::Unreachable(Box::new(e)));
    match &response {
        Ok(r) => {
            span.record("http.response.status_code", r.status().as_u16());
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
    response
}

/// Sends `request` to an endpoint whose success needs no body (RFC 7009
/// revocation): a 2xx is success; 429 and 5xx are [`IdpError::Unreachable`]
/// (worth trying again); a JSON OAuth error is [`IdpError::Rejected`];
/// anything else (a redirect too) is [`IdpError::BadResponse`].
pub async fn acknowledged(operation: &'static str, request: reqwest::RequestBuilder) -> Result<(), IdpError> {
    let response = send(operation, request).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(IdpError::Unreachable(format!("IdP answered {status}").into()));
    }
    if status.is_client_error() {
        let body = read_capped(response).await?;
        if let Ok(oauth) = serde_json::from_slice::<OAuthError>(&body) {
            return Err(IdpError::Rejected(oauth));
        }
    }
    Err(IdpError::BadResponse("unexpected IdP status"))
}

/// The client span of one IdP call: method, host, path and status. Never
/// the query or body (a code, verifier, refresh token or client secret).
/// None outside a request: discovery at start starts no trace.
fn span(operation: &'static str, request: &reqwest::Request) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: "cloakroom::trace",
        "idp",
        otel.name = format_args!("idp {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
        url.path = request.url().path(),
        http.response.status_code = tracing::field::Empty,
    )
}

async fn read_json<T: DeserializeOwned>(
    client: reqwest::Client,
    request: reqwest::Request,
    span: &tracing::Span,
    note: impl FnOnce(&reqwest::header::HeaderMap),
) -> Result<T, IdpError> {
    let response = client
        .execute(request)
        .await
        .map_err(|e| IdpError::Unreachable(Box::new(e)))?;
    note(response.headers());
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_redirection() {
        return Err(IdpError::BadResponse("the IdP answered with a redirect"));
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(IdpError::Unreachable(format!("IdP answered {status}").into()));
    }
    let media = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok()?.parse::<mime::Mime>().ok());
    let media = media.as_ref().map_or("", |m| m.essence_str());
    // A signed answer (a userinfo JWT, OIDC Core §5.3.2) would need its own
    // checks (signature, iss, aud); none is accepted, and it is said so.
    if status.is_success() && media == "application/jwt" {
        return Err(IdpError::BadResponse(
            "the IdP answered a signed JWT (application/jwt), which is not supported",
        ));
    }
    // `application/json`, or a JSON subtype such as `application/jwk-set+json`.
    let is_json =
        media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"));
    let body = read_capped(response).await?;
    if !is_json {
        return Err(IdpError::BadResponse("the IdP answer is not JSON"));
    }
    if status.is_client_error() {
        let oauth: OAuthError =
            serde_json::from_slice(&body).map_err(|_| IdpError::BadResponse("unreadable IdP error"))?;
        return Err(IdpError::Rejected(oauth));
    }
    if !status.is_success() {
        return Err(IdpError::BadResponse("unexpected IdP status"));
    }
    serde_json::from_slice(&body).map_err(|_| IdpError::BadResponse("unreadable IdP answer"))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, IdpError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| IdpError::Unreachable(Box::new(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(IdpError::BadResponse("the IdP answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
