//! Token exchange (RFC 8693): one of the session's tokens traded at the
//! token endpoint for an access token meant for one API, with the client
//! authentication of every other token call (`Idp::exchange`).

use crate::config::Exchange;
use crate::secret::{AccessToken, IdToken};

use super::error::IdpError;
use super::token::TokenResponse;

/// RFC 8693 §2.1.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the token identifiers of what is presented and asked for.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The session's token presented as the `subject_token`.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Access(&'a AccessToken),
    Id(&'a IdToken),
}

/// The form that exchanges `subject` for an access token for what
/// `exchange` names (RFC 8693 §2.1): its `audience`, `resource` and
/// `scope` (`exchange.scope()`, which the caller keeps).
pub fn form<'a>(
    subject: Subject<'a>,
    exchange: &'a Exchange,
    scope: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let (token, token_type) = match subject {
        Subject::Access(token) => (token.expose(), ACCESS_TOKEN_TYPE),
        Subject::Id(token) => (token.expose(), ID_TOKEN_TYPE),
    };
    let mut form = vec![
        ("grant_type", GRANT_TYPE),
        ("subject_token", token),
        ("subject_token_type", token_type),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
    ];
    if let Some(audience) = &exchange.audience {
        form.push(("audience", audience));
    }
    if let Some(resource) = &exchange.resource {
        form.push(("resource", resource.as_str()));
    }
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    form
}

/// What of the IdP's answer is kept: its access token, when it is one.
pub fn accept(mut tokens: TokenResponse) -> Result<TokenResponse, IdpError> {
    // §2.2.1: what was issued is named; anything but the access token
    // asked for must not be sent upstream as one.
    if tokens
        .issued_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(IdpError::BadResponse(
            "the exchange issued something other than an access token",
        ));
    }
    // An exchanged token is exchanged again when due, never refreshed,
    // and it names no user to the session: only its access token is kept.
    tokens.refresh_token = None;
    tokens.id_token = None;
    Ok(tokens)
}
