//! Pushed authorization requests (RFC 9126), `oidc.par`.
//!
//! With PAR, `/auth/login` posts the authorization request's parameters to
//! the IdP's `pushed_authorization_request_endpoint`, authenticated as the
//! client, and sends the browser with only `client_id` and the
//! `request_uri` it got back: the parameters never pass through the
//! browser, where they could be read or changed, and the IdP knows they
//! come from this client.
//!
//! `auto` pushes when the metadata names the endpoint; `required` and an
//! IdP that says `require_pushed_authorization_requests` with `off` are
//! checked with the metadata, so `/readyz` and `check --online` name the
//! key rather than every login failing.
//!
//! The cost (LG-24): without PAR an anonymous `GET /auth/login` costs no
//! IdP call; with it, one authenticated POST. That is one call for one
//! request, no more than the browser's own visit to the authorization
//! endpoint would be, and nothing is stored; but it is cloakroom's client
//! that calls, and many IdPs rate-limit per client. So the calls in flight
//! are bounded per process ([`MAX_IN_FLIGHT`]): a login beyond the bound
//! is answered 503 `idp_unavailable` at once, without waiting, so a flood
//! of anonymous logins holds a fixed number of connections and sockets,
//! and signed-in users, who never need a login, keep working. Limiting
//! the rate of `/auth/login` per client is left to the edge in front.

use serde::Deserialize;
use url::Url;

use super::discovery::{DiscoveryError, Metadata};
use crate::config::{OidcConfig, Par};

/// Pushed authorization requests one process has in flight at most.
pub const MAX_IN_FLIGHT: usize = 32;

/// The PAR endpoint's answer (RFC 9126 §2.2). `expires_in` is the IdP's
/// to enforce: the browser is sent on at once.
#[derive(Debug, Deserialize)]
pub struct Pushed {
    pub request_uri: String,
}

/// Refuses metadata that does not fit `oidc.par`.
pub fn fits(config: &OidcConfig, metadata: Metadata) -> Result<Metadata, DiscoveryError> {
    match config.par {
        Par::Off if metadata.require_pushed_authorization_requests => Err(DiscoveryError::ParRequired),
        Par::Required if metadata.pushed_authorization_request_endpoint.is_none() => {
            Err(DiscoveryError::NoParEndpoint)
        }
        _ => Ok(metadata),
    }
}

/// Where authorization requests are pushed, or `None` when they are not.
pub fn endpoint<'a>(config: &OidcConfig, metadata: &'a Metadata) -> Option<&'a Url> {
    match config.par {
        Par::Off => None,
        Par::Auto | Par::Required => metadata.pushed_authorization_request_endpoint.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(par: &str) -> OidcConfig {
        let yaml = format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s, par: {par}}}
cookie: {{keys: [{{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}}]}}
routes: [{{path: /api, upstream: 'http://a'}}]"
        );
        crate::Config::load(&yaml, &crate::config::MapEnv::default())
            .unwrap()
            .oidc
            .unwrap()
    }

    fn metadata(endpoint: bool, required: bool) -> Metadata {
        let mut m = serde_json::json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
        });
        if endpoint {
            m["pushed_authorization_request_endpoint"] = "https://idp.example.com/par".into();
        }
        if required {
            m["require_pushed_authorization_requests"] = true.into();
        }
        serde_json::from_value(m).unwrap()
    }

    #[test]
    fn auto_pushes_when_advertised_and_the_metadata_decides_what_fits() {
        let auto = oidc("auto");
        assert!(endpoint(&auto, &metadata(true, false)).is_some());
        assert!(endpoint(&auto, &metadata(false, false)).is_none());
        assert!(fits(&auto, metadata(false, false)).is_ok());
        let off = oidc("off");
        assert!(endpoint(&off, &metadata(true, false)).is_none());
        assert!(matches!(
            fits(&off, metadata(true, true)),
            Err(DiscoveryError::ParRequired)
        ));
        let required = oidc("required");
        assert!(matches!(
            fits(&required, metadata(false, false)),
            Err(DiscoveryError::NoParEndpoint)
        ));
        assert!(fits(&required, metadata(true, true)).is_ok());
    }
}
