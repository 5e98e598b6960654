//! Step-up logins: `/auth/login?max_age=…&acr_values=…`, as a route's
//! `401 step_up_required` names it.
//!
//! The login asks the IdP for a fresh authentication (`prompt=login`) with
//! `max_age` and `acr_values`; its pre-auth cookie records what was asked,
//! and the callback grants a session only if the new ID token shows it:
//! `auth_time` within `max_age`, `acr` one of `acr_values`. The parameters
//! are bounded so that no caller can make cloakroom send arbitrary requests
//! to the IdP: `max_age` is a number of seconds up to 30 days, and every
//! `acr` value must be one some route's `step_up` lists.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::config::access::{ACR_VALUES_MAX_LEN, MAX_AGE_MAX};
use crate::error::LoginError;
use crate::oidc::id_token::LEEWAY_SECS;

/// What a login asks of the IdP beyond a plain login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    /// Seconds the new authentication may be old.
    pub max_age: Option<u32>,
    /// Space-separated `acr` values, one of which the login must reach;
    /// empty for none.
    pub acr_values: String,
}

// === impl Ask ===

impl Ask {
    /// The step-up parameters of a `/auth/login` query; `configured` are the
    /// `acr` values routes list. Anything out of bounds refuses the login.
    pub fn from_query(query: &str, configured: &BTreeSet<&str>) -> Result<Self, LoginError> {
        let mut ask = Ask::default();
        let (mut seen_max_age, mut seen_acr) = (false, false);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "max_age" => {
                    if std::mem::replace(&mut seen_max_age, true) {
                        return Err(LoginError::refused("max_age given twice"));
                    }
                    ask.max_age = Some(max_age(&value)?);
                }
                "acr_values" => {
                    if std::mem::replace(&mut seen_acr, true) {
                        return Err(LoginError::refused("acr_values given twice"));
                    }
                    ask.acr_values = acr_values(&value, configured)?;
                }
                _ => {}
            }
        }
        Ok(ask)
    }

    /// Whether this is a step-up login at all.
    pub fn is_step_up(&self) -> bool {
        self.max_age.is_some() || !self.acr_values.is_empty()
    }

    /// The authorization request's parameters for this ask: a step-up
    /// always asks for a new authentication, whatever session the user has
    /// at the IdP.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.is_step_up() {
            out.push(("prompt", "login".to_owned()));
        }
        if let Some(max_age) = self.max_age {
            out.push(("max_age", max_age.to_string()));
        }
        if !self.acr_values.is_empty() {
            out.push(("acr_values", self.acr_values.clone()));
        }
        out
    }

    /// Whether the new ID token's `claims`, at `now`, show what was asked
    /// (OIDC Core §3.1.2.1, §3.1.3.7 items 11 and 12).
    pub fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<(), LoginError> {
        if let Some(max_age) = self.max_age {
            let Some(at) = auth_time(claims) else {
                return Err(LoginError::refused(
                    "max_age asked, and the ID token has no auth_time",
                ));
            };
            if now > at.saturating_add(u64::from(max_age) + LEEWAY_SECS) {
                return Err(LoginError::refused(
                    "ID token auth_time older than the max_age asked",
                ));
            }
        }
        if !self.acr_values.is_empty() {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|acr| self.acr_values.split(' ').any(|v| v == acr)) {
                return Err(LoginError::refused(
                    "ID token acr is not one of the acr_values asked",
                ));
            }
        }
        Ok(())
    }
}

/// `max_age`: whole seconds, up to [`MAX_AGE_MAX`].
fn max_age(text: &str) -> Result<u32, LoginError> {
    let bad = || LoginError::refused("max_age out of bounds");
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: u32 = text.parse().map_err(|_| bad())?;
    if u64::from(seconds) > MAX_AGE_MAX.as_secs() {
        return Err(bad());
    }
    Ok(seconds)
}

/// `acr_values`: space-separated, each one a route lists.
fn acr_values(text: &str, configured: &BTreeSet<&str>) -> Result<String, LoginError> {
    if text.is_empty() || text.len() > ACR_VALUES_MAX_LEN {
        return Err(LoginError::refused("acr_values out of bounds"));
    }
    if !text.split(' ').all(|v| configured.contains(v)) {
        return Err(LoginError::refused("acr_values names a value no route lists"));
    }
    Ok(text.to_owned())
}

/// The `auth_time` claim, in seconds since the epoch (a number; some IdPs
/// write it with a fraction).
pub fn auth_time(claims: &Map<String, Value>) -> Option<u64> {
    let value = claims.get("auth_time")?;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| t as u64)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn configured() -> BTreeSet<&'static str> {
        ["silver", "urn:gold"].into_iter().collect()
    }

    fn ask(query: &str) -> Result<Ask, String> {
        Ask::from_query(query, &configured()).map_err(|e| e.to_string())
    }

    #[test]
    fn step_up_parameters_are_bounded_and_acr_values_come_from_routes() {
        assert_eq!(ask("return_to=/x"), Ok(Ask::default()));
        let got = ask("return_to=/x&max_age=600&acr_values=silver+urn%3Agold").unwrap();
        assert_eq!(
            got,
            Ask {
                max_age: Some(600),
                acr_values: "silver urn:gold".into()
            }
        );
        assert_eq!(
            got.parameters(),
            [
                ("prompt", "login".to_owned()),
                ("max_age", "600".to_owned()),
                ("acr_values", "silver urn:gold".to_owned())
            ]
        );
        assert_eq!(ask("max_age=0").unwrap().max_age, Some(0));
        assert_eq!(ask("max_age=2592000").unwrap().max_age, Some(2_592_000));
        for (case, query) in [
            ("past 30 days", "max_age=2592001"),
            ("negative", "max_age=-1"),
            ("signed", "max_age=%2B5"),
            ("not a number", "max_age=10m"),
            ("empty", "max_age="),
            ("huge", "max_age=99999999999999999999"),
            ("twice", "max_age=5&max_age=6"),
            ("unknown acr", "acr_values=platinum"),
            ("one unknown among known", "acr_values=silver+platinum"),
            ("double space", "acr_values=silver++urn%3Agold"),
            ("empty acr", "acr_values="),
            ("acr twice", "acr_values=silver&acr_values=silver"),
        ] {
            assert!(ask(query).is_err(), "{case}");
        }
        let none = BTreeSet::new();
        assert!(
            Ask::from_query("acr_values=silver", &none).is_err(),
            "no route lists any acr"
        );
    }

    #[test]
    fn the_new_id_token_must_show_what_was_asked() {
        let asked = Ask {
            max_age: Some(300),
            acr_values: "silver urn:gold".into(),
        };
        let claims = |v: Value| v.as_object().unwrap().clone();
        let now = 10_000;
        assert!(asked
            .check(&claims(json!({"auth_time": now - 10, "acr": "urn:gold"})), now)
            .is_ok());
        for (case, c) in [
            ("no auth_time", json!({"acr": "silver"})),
            (
                "too old",
                json!({"auth_time": now - 300 - LEEWAY_SECS - 1, "acr": "silver"}),
            ),
            ("no acr", json!({"auth_time": now})),
            ("another acr", json!({"auth_time": now, "acr": "bronze"})),
            ("a prefix of one", json!({"auth_time": now, "acr": "urn"})),
        ] {
            assert!(asked.check(&claims(c), now).is_err(), "{case}");
        }
        assert!(Ask::default().check(&Map::new(), now).is_ok(), "a plain login");
    }
}
