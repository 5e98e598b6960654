//! `cloakroom check --online`: asks the IdP what a login will find, and
//! judges how its metadata fits the `oidc` section, before anyone signs in.
//!
//! Each [`Finding`] names what was looked at and what was found. An
//! [`Level::Error`] is something that stops every login (the issuer differs,
//! no S256, no usable key, a client authentication the IdP does not take);
//! a [`Level::Warning`] may (a scope the IdP does not list); a
//! [`Level::Note`] is a fact an operator should know (logout will not
//! revoke, no end-session endpoint). The same checks as discovery's are
//! applied ([`discovery::check`]), so `check --online` and `serve` agree.

use std::fmt;

use serde_json::Value;

use super::discovery::{self, DiscoveryError, Metadata};
use super::error::IdpError;
use super::{dpop, http, id_token, par, userinfo};
use crate::config::OidcConfig;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Note,
    Warning,
    Error,
}

/// One thing looked at, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// What was looked at: `discovery`, `issuer`, `pkce`, `jwks`, ….
    pub subject: &'static str,
    pub text: String,
}

// === impl Finding ===

impl Finding {
    fn new(level: Level, subject: &'static str, text: impl Into<String>) -> Self {
        Self {
            level,
            subject,
            text: text.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "{level:<7} {:<22} {}", self.subject, self.text)
    }
}

/// Asks the IdP of `oidc` for its metadata and keys, and judges them.
pub async fn inspect(oidc: &OidcConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::new(
                Level::Error,
                "discovery",
                format!("no HTTP client: {e}"),
            ));
            return out;
        }
    };
    let url = oidc.issuer.discovery_url();
    let document: Value = match http::json("discovery", client.get(&url)).await {
        Ok(document) => document,
        Err(e) => {
            let why = crate::error::chain(&e);
            out.push(Finding::new(Level::Error, "discovery", format!("{url}: {why}")));
            return out;
        }
    };
    out.push(Finding::new(Level::Ok, "discovery", url));
    let metadata: Metadata = match serde_json::from_value(document.clone()) {
        Ok(metadata) => metadata,
        Err(e) => {
            out.push(Finding::new(
                Level::Error,
                "discovery",
                format!("the metadata lacks what a login needs: {e}"),
            ));
            return out;
        }
    };
    let metadata = match discovery::check(metadata, oidc.issuer.as_str()) {
        Ok(metadata) => metadata,
        Err(e @ DiscoveryError::IssuerMismatch { .. }) => {
            out.push(Finding::new(Level::Error, "issuer", e.to_string()));
            return out;
        }
        Err(e) => {
            out.push(Finding::new(Level::Error, "pkce", e.to_string()));
            return out;
        }
    };
    out.push(Finding::new(
        Level::Ok,
        "issuer",
        format!("{:?}, as configured", metadata.issuer),
    ));
    out.push(match &metadata.code_challenge_methods_supported {
        Some(listed) => Finding::new(Level::Ok, "pkce", format!("S256 listed ({})", listed.join(", "))),
        None => Finding::new(
            Level::Note,
            "pkce",
            "code_challenge_methods_supported not listed; S256 is sent regardless",
        ),
    });
    out.push(jwks(&client, &metadata).await);
    out.push(signing_algs(&metadata));
    out.extend(listed_fit(oidc, &document));
    out.push(revocation(&client, oidc, &metadata).await);
    out.push(match &metadata.end_session_endpoint {
        Some(endpoint) => Finding::new(Level::Ok, "end_session_endpoint", endpoint.to_string()),
        None => Finding::new(
            Level::Note,
            "end_session_endpoint",
            "none listed: logout ends the session here, not the user's session at the IdP",
        ),
    });
    out.push(back_channel(&document));
    out.extend(userinfo_fit(oidc, &metadata));
    out.push(par_fit(oidc, &metadata));
    out.extend(dpop_fit(oidc, &metadata));
    out
}

/// With `oidc.dpop`, whether the IdP says it takes the proofs cloakroom
/// signs (ES256): the same rule serving applies ([`dpop::fits`]). Without
/// it, a note when the IdP could bind tokens.
fn dpop_fit(oidc: &OidcConfig, metadata: &Metadata) -> Option<Finding> {
    let listed = metadata.dpop_signing_alg_values_supported.as_ref();
    let Some(ring) = &oidc.dpop else {
        return listed.map(|algs| {
            Finding::new(
                Level::Note,
                "dpop",
                format!(
                    "the IdP takes DPoP proofs ({}); tokens stay bearer tokens without oidc.dpop",
                    algs.join(", ")
                ),
            )
        });
    };
    let current = ring.current();
    Some(match (dpop::fits(oidc, metadata.clone()), listed) {
        (Err(e), _) => Finding::new(Level::Error, "dpop", e.to_string()),
        (Ok(_), Some(algs)) => Finding::new(
            Level::Ok,
            "dpop",
            format!(
                "ES256 listed ({}); new tokens bound to key {:?} (jkt {})",
                algs.join(", "),
                current.id(),
                current.jkt()
            ),
        ),
        (Ok(_), None) => Finding::new(
            Level::Warning,
            "dpop",
            "dpop_signing_alg_values_supported not listed: the IdP may not bind tokens to the key, \
             and a login it answers with bearer tokens fails (idp_bad_response)",
        ),
    })
}

/// Whether authorization requests will be pushed (`oidc.par`): the same
/// rule serving applies ([`par::fits`]).
fn par_fit(oidc: &OidcConfig, metadata: &Metadata) -> Finding {
    if let Err(e) = par::fits(oidc, metadata.clone()) {
        return Finding::new(Level::Error, "par", e.to_string());
    }
    match (
        par::endpoint(oidc, metadata),
        &metadata.pushed_authorization_request_endpoint,
    ) {
        (Some(endpoint), _) => Finding::new(Level::Ok, "par", format!("pushed to {endpoint}")),
        (None, Some(_)) => Finding::new(Level::Note, "par", "advertised, not used (oidc.par: off)"),
        (None, None) => Finding::new(
            Level::Note,
            "par",
            "no pushed_authorization_request_endpoint: the authorization request rides on the redirect",
        ),
    }
}

/// With `oidc.userinfo: true`, the metadata must name the endpoint: the
/// same rule serving applies ([`userinfo::fits`]).
fn userinfo_fit(oidc: &OidcConfig, metadata: &Metadata) -> Option<Finding> {
    if !oidc.userinfo {
        return None;
    }
    Some(match userinfo::fits(oidc, metadata.clone()) {
        Ok(m) => Finding::new(
            Level::Ok,
            "userinfo_endpoint",
            m.userinfo_endpoint.map(|u| u.to_string()).unwrap_or_default(),
        ),
        Err(e) => Finding::new(Level::Error, "userinfo_endpoint", e.to_string()),
    })
}

/// Whether the keys can be fetched and hold at least one signing key.
async fn jwks(client: &reqwest::Client, metadata: &Metadata) -> Finding {
    let uri = &metadata.jwks_uri;
    let document: Result<Value, IdpError> = http::json("jwks", client.get(uri.clone())).await;
    let document = match document {
        Ok(d) => d,
        Err(e) => {
            return Finding::new(
                Level::Error,
                "jwks",
                format!("{uri}: {}", crate::error::chain(&e)),
            )
        }
    };
    let keys = document.get("keys").and_then(Value::as_array);
    let signing = keys
        .into_iter()
        .flatten()
        .filter(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>((*k).clone()).is_ok())
        .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
        .count();
    if signing == 0 {
        return Finding::new(
            Level::Error,
            "jwks",
            format!("{uri}: no signing key cloakroom can read"),
        );
    }
    Finding::new(Level::Ok, "jwks", format!("{uri}: {signing} signing key(s)"))
}

/// Whether the ID tokens will be signed with an algorithm cloakroom takes.
fn signing_algs(metadata: &Metadata) -> Finding {
    let listed = &metadata.id_token_signing_alg_values_supported;
    if listed.is_empty() {
        return Finding::new(
            Level::Ok,
            "id_token_signing_alg",
            "not listed: RS256 (the default)",
        );
    }
    let usable: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|a| id_token::is_allowed(a))
        .collect();
    if usable.is_empty() {
        return Finding::new(
            Level::Error,
            "id_token_signing_alg",
            format!("none of {listed:?} is an asymmetric algorithm cloakroom accepts"),
        );
    }
    Finding::new(Level::Ok, "id_token_signing_alg", usable.join(", "))
}

/// What the metadata lists against what the config asks for: the code
/// flow, the client authentication, the scopes.
fn listed_fit(oidc: &OidcConfig, document: &Value) -> Vec<Finding> {
    let listed = |field: &str| -> Option<Vec<String>> {
        let items = document.get(field)?.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )
    };
    let mut out = Vec::new();
    if let Some(types) = listed("response_types_supported") {
        if !types.iter().any(|t| t == "code") {
            out.push(Finding::new(
                Level::Error,
                "response_types",
                format!("{types:?} has no \"code\": the code flow is not offered"),
            ));
        }
    }
    if let Some(grants) = listed("grant_types_supported") {
        if !grants.iter().any(|g| g == "authorization_code") {
            out.push(Finding::new(
                Level::Error,
                "grant_types",
                format!("{grants:?} has no authorization_code"),
            ));
        } else if !grants.iter().any(|g| g == "refresh_token") {
            out.push(Finding::new(
                Level::Warning,
                "grant_types",
                format!("{grants:?} has no refresh_token: sessions last as long as their first access token"),
            ));
        }
    }
    let auth = oidc.token_endpoint_auth.as_str();
    out.push(match listed("token_endpoint_auth_methods_supported") {
        Some(methods) if methods.iter().any(|m| m == auth) => {
            Finding::new(Level::Ok, "token_endpoint_auth", format!("{auth} listed"))
        }
        Some(methods) => Finding::new(
            Level::Error,
            "token_endpoint_auth",
            format!("oidc.token_endpoint_auth is {auth}; the IdP lists {methods:?}"),
        ),
        // Absent means client_secret_basic (OIDC Discovery §3).
        None if auth == "client_secret_basic" => Finding::new(
            Level::Ok,
            "token_endpoint_auth",
            "not listed: client_secret_basic (the default)",
        ),
        None => Finding::new(
            Level::Warning,
            "token_endpoint_auth",
            format!("not listed, so only client_secret_basic is certain; oidc.token_endpoint_auth is {auth}"),
        ),
    });
    if let Some(key) = &oidc.client_key {
        let alg = format!("{:?}", key.alg().algorithm());
        out.push(match listed("token_endpoint_auth_signing_alg_values_supported") {
            Some(algs) if algs.contains(&alg) => Finding::new(
                Level::Ok,
                "client_key",
                format!("{alg} listed; assertions name kid {:?}", key.kid()),
            ),
            Some(algs) => Finding::new(
                Level::Error,
                "client_key",
                format!("client assertions are signed {alg}; the IdP lists {algs:?}"),
            ),
            None => Finding::new(
                Level::Note,
                "client_key",
                format!(
                    "no signing algorithms listed; assertions are signed {alg}, kid {:?}",
                    key.kid()
                ),
            ),
        });
    }
    out.push(match listed("scopes_supported") {
        Some(scopes) => {
            let missing: Vec<&str> = oidc
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| !scopes.iter().any(|l| l == s))
                .collect();
            if missing.is_empty() {
                Finding::new(Level::Ok, "scopes", format!("{} listed", oidc.scopes.join(" ")))
            } else {
                Finding::new(
                    Level::Warning,
                    "scopes",
                    format!(
                        "oidc.scopes asks for {} the IdP does not list in scopes_supported; \
                         some IdPs refuse such a login (invalid_scope)",
                        missing.join(" ")
                    ),
                )
            }
        }
        None => Finding::new(Level::Note, "scopes", "scopes_supported not listed"),
    });
    out
}

/// Where logout revokes refresh tokens, found as `serve` finds it.
async fn revocation(client: &reqwest::Client, oidc: &OidcConfig, metadata: &Metadata) -> Finding {
    if let Some(configured) = &oidc.revocation_endpoint {
        return Finding::new(
            Level::Ok,
            "revocation_endpoint",
            format!("{configured} (oidc.revocation_endpoint)"),
        );
    }
    if let Some(listed) = &metadata.revocation_endpoint {
        return Finding::new(Level::Ok, "revocation_endpoint", listed.to_string());
    }
    match discovery::rfc8414_revocation_endpoint(client, oidc.issuer.as_str()).await {
        Ok(Some(endpoint)) => Finding::new(
            Level::Ok,
            "revocation_endpoint",
            format!("{endpoint} (RFC 8414 metadata)"),
        ),
        _ => Finding::new(
            Level::Note,
            "revocation_endpoint",
            "none listed: logout cannot revoke refresh tokens (set oidc.revocation_endpoint if the IdP has one)",
        ),
    }
}

/// Whether the IdP can tell cloakroom of logouts elsewhere.
fn back_channel(document: &Value) -> Finding {
    let flag = |field: &str| document.get(field).and_then(Value::as_bool).unwrap_or(false);
    match (
        flag("backchannel_logout_supported"),
        flag("backchannel_logout_session_supported"),
    ) {
        (true, true) => Finding::new(Level::Ok, "backchannel_logout", "supported, with sid"),
        (true, false) => Finding::new(
            Level::Ok,
            "backchannel_logout",
            "supported, without sid: a logout ends all of the user's sessions",
        ),
        (false, _) => Finding::new(
            Level::Note,
            "backchannel_logout",
            "not supported: a logout at the IdP leaves sessions here until they time out",
        ),
    }
}
