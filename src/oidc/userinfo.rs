//! The UserInfo endpoint (OIDC Core §5.3), asked once at login when
//! `oidc.userinfo` is on: the claims an IdP leaves out of thin ID tokens
//! (Entra ID groups, Okta custom claims).
//!
//! The answer's `sub` must equal the ID token's (§5.3.2: "if they do not
//! match, the UserInfo Response values MUST NOT be used"), else the login
//! fails (ID-21). The answer only adds claims: one the ID token has keeps
//! the ID token's value, which was signed and checked, and the claims that
//! say who issued the login, for whom and how the user authenticated
//! ([`ID_TOKEN_ONLY`]) are never taken from it. Signed answers
//! (`application/jwt`) are refused by `http.rs`; the request
//! (`Idp::userinfo`) asks for JSON.

use serde_json::{Map, Value};

use super::discovery::{DiscoveryError, Metadata};
use super::error::IdpError;
use crate::config::OidcConfig;

/// Claims only the ID token may set: they describe the authentication
/// itself (`step_up` reads `acr` and `auth_time`; back-channel logout finds
/// sessions by `sid`), not the user.
pub const ID_TOKEN_ONLY: &[&str] = &[
    "iss",
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "c_hash",
];

/// Why the UserInfo answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    #[error("userinfo: {0}")]
    Idp(#[from] IdpError),
    /// §5.3.2: the answer describes someone else, or no one.
    #[error("userinfo names another subject than the ID token")]
    SubjectMismatch,
}

/// Refuses metadata without a `userinfo_endpoint` when the config asks for
/// userinfo: the IdP is then not ready, and `/readyz` and the log name the
/// key, instead of every login failing.
pub fn fits(config: &OidcConfig, metadata: Metadata) -> Result<Metadata, DiscoveryError> {
    if config.userinfo && metadata.userinfo_endpoint.is_none() {
        return Err(DiscoveryError::NoUserinfoEndpoint);
    }
    Ok(metadata)
}

/// Adds the UserInfo `answer` to the ID token's `claims` after checking it
/// describes the same subject. Nothing is changed when it does not.
pub fn merge(claims: &mut Map<String, Value>, answer: Map<String, Value>) -> Result<(), UserinfoError> {
    let same = match (claims.get("sub"), answer.get("sub")) {
        (Some(Value::String(ours)), Some(Value::String(theirs))) => ours == theirs,
        _ => false,
    };
    if !same {
        return Err(UserinfoError::SubjectMismatch);
    }
    for (name, value) in answer {
        if !ID_TOKEN_ONLY.contains(&name.as_str()) {
            claims.entry(name).or_insert(value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn id21_userinfo_adds_claims_and_never_replaces_the_id_tokens() {
        let mut claims = map(json!({"sub": "alice", "iss": "https://idp", "email": "a@id.token"}));
        let answer = json!({
            "sub": "alice", "email": "a@userinfo", "groups": ["admins"],
            "iss": "https://evil", "acr": "gold", "auth_time": 1, "sid": "planted",
        });
        merge(&mut claims, map(answer)).unwrap();
        assert_eq!(
            Value::Object(claims),
            json!({"sub": "alice", "iss": "https://idp", "email": "a@id.token", "groups": ["admins"]})
        );
    }

    #[test]
    fn id21_another_or_no_subject_is_refused_and_changes_nothing() {
        let before = map(json!({"sub": "alice"}));
        for answer in [
            json!({"sub": "mallory", "groups": ["admins"]}),
            json!({"groups": ["admins"]}),
            json!({"sub": ["alice"]}),
            json!({"sub": "Alice"}),
        ] {
            let mut claims = before.clone();
            let got = merge(&mut claims, map(answer.clone()));
            assert!(matches!(got, Err(UserinfoError::SubjectMismatch)), "{answer}");
            assert_eq!(claims, before, "{answer}");
        }
    }
}
