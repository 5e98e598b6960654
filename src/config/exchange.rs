//! A route's `exchange` (`token: exchange`, RFC 8693): the session's token
//! traded at the IdP for one meant for the route's API alone, so the
//! upstream never holds the token the session's other routes send.
//!
//! The IdP issues the new token for the `audience` (a logical name of the
//! API), the `resource` (an RFC 8707 indicator) or both, narrowed to the
//! `scopes`. The token presented is the session's access token or its ID
//! token (`subject_token`).

use std::collections::BTreeSet;

use url::Url;

use super::audience::{Resource, Scope};
use super::node::{from_text, Cursor, Fields, FromNode, Reported};

/// What a route's token is exchanged for, and with which of the session's
/// tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exchange {
    /// `audience` (RFC 8693 §2.1): the API, by the name the IdP knows it by.
    pub audience: Option<String>,
    /// `resource` (RFC 8693 §2.1, RFC 8707).
    pub resource: Option<Url>,
    /// Sorted and without duplicates: two routes naming the same scopes in
    /// another order share one token.
    pub scopes: Vec<String>,
    /// Which of the session's tokens is presented.
    pub subject: SubjectToken,
}

/// The session's token presented as the `subject_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectToken {
    /// Its access token, refreshed first when due.
    AccessToken,
    /// Its ID token, as the login (or the latest refresh) brought it.
    IdToken,
}

/// An `audience` value: printable ASCII without spaces, as an RFC 6749
/// scope token is, so it reads the same in every IdP's form parser.
struct AudienceName(String);

// === impl Exchange ===

impl Exchange {
    /// The name the session record keeps this token under. No part but the
    /// last (the scopes) may contain a space, so two exchanges share a name
    /// only when they ask for the same token.
    pub fn key(&self) -> String {
        format!(
            "{} {} {} {}",
            self.subject.as_str(),
            self.audience.as_deref().unwrap_or(""),
            self.resource.as_ref().map_or("", Url::as_str),
            self.scopes.join(" ")
        )
    }

    /// `scope` for the exchange request, if the route narrows it.
    pub fn scope(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }
}

impl FromNode for Exchange {
    fn from_node(node: &serde_json::Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        // An exchange names what it is for; without either, the IdP would
        // hand back a token as broad as the one presented.
        let names_target = f.has("audience") || f.has("resource");
        let audience = f.optional::<AudienceName>("audience", at).map(|a| a.0);
        let resource = f.optional::<Resource>("resource", at).map(|r| r.0);
        let scopes = f.optional::<Vec<Scope>>("scopes", at);
        let subject = f.or("subject_token", SubjectToken::AccessToken, at);
        f.finish(at);
        if !names_target {
            return Err(at.fail("name an audience, a resource or both: what the token is exchanged for"));
        }
        let scopes: BTreeSet<String> = scopes.into_iter().flatten().map(|s| s.0).collect();
        Ok(Self {
            audience,
            resource,
            scopes: scopes.into_iter().collect(),
            subject: subject.ok_or(Reported)?,
        })
    }
}

// === impl SubjectToken ===

impl SubjectToken {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::IdToken => "id_token",
        }
    }
}

from_text!(SubjectToken, |text| match text {
    "access_token" => Ok(SubjectToken::AccessToken),
    "id_token" => Ok(SubjectToken::IdToken),
    _ => Err(format!("{text:?} is not one of access_token, id_token")),
});

from_text!(AudienceName, |text| {
    if text.is_empty() || !text.chars().all(|c| ('!'..='~').contains(&c)) {
        return Err(format!(
            "{text:?} is not an audience (printable ASCII, no spaces)"
        ));
    }
    Ok(AudienceName(text.to_owned()))
});

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;
    use crate::config::{Config, MapEnv, TokenKind};

    const HEAD: &str = "public_url: https://app.example.com
oidc: {issuer: 'https://idp.example.com', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
";

    #[test]
    fn an_exchange_is_read_with_its_defaults_and_keyed_by_what_it_asks_for() {
        let config = Config::load(
            &format!(
                "{HEAD}routes:
  - {{path: /a, upstream: 'http://a', token: exchange, exchange: {{audience: ledger, scopes: [write, read, read]}}}}
  - {{path: /b, upstream: 'http://a', auth: optional, token: exchange,
      exchange: {{resource: 'https://ledger.example/', subject_token: id_token}}}}
"
            ),
            &MapEnv::default(),
        )
        .unwrap();
        let (a, b) = (&config.routes[0], &config.routes[1]);
        assert_eq!(a.token, TokenKind::Exchange);
        let a = a.exchange.as_ref().unwrap();
        assert_eq!(a.scopes, ["read", "write"]);
        assert_eq!(a.key(), "access_token ledger  read write");
        assert_eq!(a.scope().as_deref(), Some("read write"));
        let b = b.exchange.as_ref().unwrap();
        assert_eq!(b.key(), "id_token  https://ledger.example/ ");
        assert_eq!(b.scope(), None);
        // No login asks for what an exchange is for.
        assert!(config.login_resources().is_empty());
    }

    #[test]
    fn exchange_rules_are_checked_by_key_path() {
        let got = errors(&format!(
            "{HEAD}routes:
  - {{path: /a, upstream: 'http://a', token: exchange}}
  - {{path: /b, upstream: 'http://a', exchange: {{audience: x}}}}
  - {{path: /c, upstream: 'http://a', auth: none, token: exchange, exchange: {{audience: x}}}}
  - {{path: /d, upstream: 'http://a', token: exchange, exchange: {{scopes: [read]}}}}
  - {{path: /e, upstream: 'http://a', token: exchange, exchange: {{audience: 'a b', subject_token: refresh_token, actor: x}}}}
  - {{path: /f, upstream: 'http://a', token: exchange, resource: 'https://f.example/', exchange: {{audience: x}}}}
  - {{path: /g, upstream: 'http://a', token: exchange, exchange: {{resource: 'https://g.example/#x'}}}}
"
        ));
        assert_eq!(
            got,
            [
                "routes[0].exchange: required with token: exchange (its audience, resource, scopes, subject_token)",
                "routes[1].exchange: only meaningful with token: exchange",
                "routes[2].token: `exchange` needs a session; set auth to required or optional",
                "routes[3].exchange: name an audience, a resource or both: what the token is exchanged for",
                "routes[4].exchange.audience: \"a b\" is not an audience (printable ASCII, no spaces)",
                "routes[4].exchange.subject_token: \"refresh_token\" is not one of access_token, id_token",
                "routes[4].exchange.actor: unknown key",
                "routes[5].resource: with token: exchange, set exchange.resource instead",
                "routes[6].exchange.resource: must not have a #fragment (RFC 8707)",
            ]
        );
    }
}
