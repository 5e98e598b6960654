//! The `admin` section: what the admin listener offers beyond health.

use serde_json::Value;

use super::node::{Cursor, Fields, FromNode, Reported};
use crate::secret::Secret;

/// The admin listener's API.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The bearer token the admin API asks for; `None` (the default)
    /// leaves the API off.
    pub api_token: Option<Secret<String>>,
}

/// A shorter token could be guessed.
const MIN_TOKEN_LEN: usize = 32;

// === impl AdminConfig ===

impl FromNode for AdminConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let api_token = f.optional::<String>("api_token", at);
        f.finish(at);
        if api_token.as_ref().is_some_and(|t| t.trim().len() < MIN_TOKEN_LEN) {
            at.error_at(
                "api_token",
                format!("must be at least {MIN_TOKEN_LEN} characters (e.g. `cloakroom keygen`)"),
            );
        }
        Ok(AdminConfig {
            api_token: api_token.map(|t| Secret::new(t.trim().to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{errors, load};

    const BASE: &str =
        "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://a', auth: none}]\n";

    #[test]
    fn the_admin_api_is_off_unless_a_token_is_given() {
        assert!(load(BASE).unwrap().admin.api_token.is_none());
        let got = load(&format!("{BASE}admin: {{api_token: '${{KEY}}'}}")).unwrap();
        assert_eq!(got.admin.api_token.unwrap().expose().len(), 43);
        assert_eq!(
            errors(&format!("{BASE}admin: {{api_token: short}}")),
            ["admin.api_token: must be at least 32 characters (e.g. `cloakroom keygen`)"]
        );
    }
}
