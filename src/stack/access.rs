//! A route's `access` rule and `step_up`, after the session layer: the
//! signed-in user's ID-token claims (those the session keeps) must pass the
//! rule, else `403 access_denied`; the login behind the session must be
//! recent enough (`auth_time`) and strong enough (`acr`), else
//! `401 step_up_required` with the login that would do. Neither is ever a
//! redirect, so a page route cannot loop between login and a refusal. The
//! rule is judged first: a user it refuses is not sent to log in again for
//! nothing.
//!
//! Claims are those of the ID token at login, kept in the session; a
//! refresh does not change them, so a change at the IdP (a group removed)
//! shows with the next login.

use std::sync::Arc;

use http::Request;
use serde_json::{Map, Value};

use crate::auth::step_up::auth_time;
use crate::body::Body;
use crate::clock::Clock;
use crate::config::{RouteConfig, Rule, StepUp};
use crate::error::{self, AccessRefusal, BoxError, Refusal};
use crate::oidc::id_token::LEEWAY_SECS;

use super::step::{Next, ResponseFuture, Step};

/// Judges a route's `access` rule and `step_up`.
#[derive(Clone)]
pub struct AccessGuard {
    rule: Option<Arc<Rule>>,
    step_up: Option<Arc<StepUp>>,
    /// What `auth_time` is judged by.
    clock: Clock,
}

// === impl AccessGuard ===

impl AccessGuard {
    /// The guard `route` asks for, if any.
    pub fn for_route(route: &RouteConfig, clock: &Clock) -> Option<Self> {
        (route.access.is_some() || route.step_up.is_some()).then(|| Self {
            rule: route.access.clone().map(Arc::new),
            step_up: route.step_up.clone().map(Arc::new),
            clock: clock.clone(),
        })
    }

    fn judge(&self, request: &Request<Body>) -> Result<(), BoxError> {
        // The session layer above refuses requests without one.
        let loaded = super::session::loaded(request).ok_or(Refusal::LoginRequired)?;
        let claims = &loaded.record.claims;
        if self.rule.as_deref().is_some_and(|rule| !admits(rule, claims)) {
            return Err(AccessRefusal::Denied.into());
        }
        if let Some(step_up) = self.step_up.as_deref() {
            if !satisfies(step_up, claims, self.clock.now()) {
                let return_to = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
                return Err(AccessRefusal::StepUp(error::StepUp {
                    return_to: return_to.to_owned(),
                    max_age: step_up.max_age.map(|m| m.as_secs()),
                    acr_values: step_up.acr_values.clone(),
                })
                .into());
            }
        }
        Ok(())
    }
}

impl Step for AccessGuard {
    fn call(&self, request: Request<Body>, next: Next) -> ResponseFuture {
        match self.judge(&request) {
            Ok(()) => next.run(request),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// Whether `claims` pass `rule`. A claim that is missing, or of another
/// type than the values it is compared with, fails.
pub fn admits(rule: &Rule, claims: &Map<String, Value>) -> bool {
    match rule {
        Rule::All(rules) => rules.iter().all(|r| admits(r, claims)),
        Rule::Any(rules) => rules.iter().any(|r| admits(r, claims)),
        Rule::Claim { claim, values } => match claim.find(claims) {
            Some(Value::Array(items)) => items.iter().any(|item| values.contains(item)),
            Some(value) => values.contains(value),
            None => false,
        },
        Rule::EmailDomains(domains) => {
            // An address the IdP has not verified proves nothing about
            // its domain.
            let verified = claims.get("email_verified") == Some(&Value::Bool(true));
            let domain = claims
                .get("email")
                .and_then(Value::as_str)
                .and_then(|email| email.rsplit_once('@'))
                .map(|(_, domain)| domain.to_ascii_lowercase());
            verified && domain.is_some_and(|d| domains.contains(&d))
        }
    }
}

/// Whether the login behind `claims` is recent and strong enough for
/// `step_up` at `now`. A session without `auth_time` (or `acr`) is judged
/// too old (or too weak): the step-up login asks the IdP for it.
///
/// `auth_time` is the IdP's clock: it gets the leeway ID tokens get, the
/// same the callback allows a step-up login, so a session that login just
/// granted is never refused again on arrival (no step-up loop).
pub fn satisfies(step_up: &StepUp, claims: &Map<String, Value>, now: u64) -> bool {
    let recent = step_up.max_age.is_none_or(|max_age| {
        auth_time(claims).is_some_and(|at| now <= at.saturating_add(max_age.as_secs() + LEEWAY_SECS))
    });
    let strong = step_up.acr_values.is_empty()
        || claims
            .get("acr")
            .and_then(Value::as_str)
            .is_some_and(|acr| step_up.acr_values.iter().any(|v| v == acr));
    recent && strong
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::ClaimPath;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn claim(path: ClaimPath, values: Vec<Value>) -> Rule {
        Rule::Claim { claim: path, values }
    }

    #[test]
    fn list_claims_match_any_element_and_types_must_agree() {
        let groups = claim(ClaimPath::named("groups"), vec![json!("admins")]);
        assert!(admits(&groups, &claims(json!({"groups": ["staff", "admins"]}))));
        assert!(admits(&groups, &claims(json!({"groups": "admins"}))));
        assert!(!admits(&groups, &claims(json!({"groups": ["staff"]}))));
        assert!(!admits(&groups, &claims(json!({}))), "a missing claim fails");
        let verified = claim(ClaimPath::named("email_verified"), vec![json!(true)]);
        assert!(!admits(&verified, &claims(json!({"email_verified": "true"}))));
        assert!(admits(&verified, &claims(json!({"email_verified": true}))));
        let tier = claim(
            ClaimPath {
                top: "org".into(),
                rest: "/tier".into(),
            },
            vec![json!("gold"), json!(3)],
        );
        assert!(admits(&tier, &claims(json!({"org": {"tier": 3}}))));
        assert!(!admits(&tier, &claims(json!({"org": {"tier": "3"}}))));
        assert!(!admits(&tier, &claims(json!({"org": "gold"}))));
    }

    #[test]
    fn all_and_any_combine() {
        let sub = |s: &str| claim(ClaimPath::named("sub"), vec![json!(s)]);
        let any = Rule::Any(vec![sub("alice"), sub("bob")]);
        let all = Rule::All(vec![any.clone(), claim(ClaimPath::named("x"), vec![json!(true)])]);
        assert!(admits(&any, &claims(json!({"sub": "bob"}))));
        assert!(!admits(&all, &claims(json!({"sub": "bob"}))));
        assert!(admits(&all, &claims(json!({"sub": "bob", "x": true}))));
    }

    #[test]
    fn an_email_domain_needs_a_verified_address() {
        let rule = Rule::EmailDomains(vec!["example.com".into()]);
        let ok = claims(json!({"email": "Ann@Example.COM", "email_verified": true}));
        assert!(admits(&rule, &ok));
        for (case, c) in [
            (
                "unverified",
                json!({"email": "ann@example.com", "email_verified": false}),
            ),
            ("no verification claim", json!({"email": "ann@example.com"})),
            (
                "verified as text",
                json!({"email": "ann@example.com", "email_verified": "true"}),
            ),
            (
                "a subdomain",
                json!({"email": "ann@evil.example.com", "email_verified": true}),
            ),
            (
                "a suffix",
                json!({"email": "ann@evilexample.com", "email_verified": true}),
            ),
            (
                "quoted @",
                json!({"email": "\"x@example.com\"@evil.test", "email_verified": true}),
            ),
        ] {
            assert!(!admits(&rule, &claims(c)), "{case}");
        }
    }

    #[test]
    fn step_up_judges_auth_time_and_acr() {
        let step_up = StepUp {
            max_age: Some(Duration::from_secs(600)),
            acr_values: vec!["silver".into(), "gold".into()],
        };
        let c = claims(json!({"auth_time": 1_000, "acr": "gold"}));
        let last = 1_000 + 600 + LEEWAY_SECS;
        assert!(satisfies(&step_up, &c, last), "max_age and the clock leeway");
        assert!(!satisfies(&step_up, &c, last + 1), "too old");
        let weak = claims(json!({"auth_time": 1_000, "acr": "bronze"}));
        assert!(!satisfies(&step_up, &weak, 1_000), "too weak");
        assert!(
            !satisfies(&step_up, &claims(json!({"acr": "gold"})), 0),
            "no auth_time"
        );
        let fraction = claims(json!({"auth_time": 1_000.5, "acr": "silver"}));
        assert!(satisfies(&step_up, &fraction, 1_600));
        let acr_only = StepUp {
            max_age: None,
            acr_values: vec!["gold".into()],
        };
        assert!(satisfies(&acr_only, &claims(json!({"acr": "gold"})), u64::MAX));
    }
}
