//! A route's `auth`, `access` rule, `step_up` and `claim_headers`: whether
//! it needs a session, who may use it, how recent and how strong their
//! login must be, and which of their claims its upstream is told. The last
//! three read the ID-token claims the session keeps; `Config::kept_claims`
//! makes sure it keeps every claim they name.
//!
//! ```yaml
//! access:
//!   all:
//!     - groups: [admins]
//!     - email_domains: [example.com]
//!     - any:
//!         - claim: /org/tier
//!           in: [gold, platinum]
//!         - sub: [alice]
//! step_up: {max_age: 10m, acr_values: ['urn:mace:incommon:iap:silver']}
//! claim_headers: {X-User-Email: email, X-Org-Tier: /org/tier}
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use http::HeaderName;
use serde_json::Value;

use super::node::{from_text, kind, Cursor, Each, Fields, FromNode, Reported};

/// `auth`: whether a route's requests must have a session, may have one,
/// or never read one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

/// An `access` rule: a mapping with exactly one of [`RULE_KINDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `all`: every rule in the list holds.
    All(Vec<Rule>),
    /// `any`: at least one rule in the list holds.
    Any(Vec<Rule>),
    /// `claim` (with `equals` or `in`), and the shorthands `sub`, `groups`,
    /// `roles`, `acr`: the claim equals one of `values`; for a claim that is
    /// a list, one of its elements does. Types are compared too: `"1"` is
    /// not `1`, `"true"` is not `true`.
    Claim { claim: ClaimPath, values: Vec<Value> },
    /// `email_domains`: `email` is an address in one of these domains
    /// (lower case, compared without regard to case) and `email_verified`
    /// is `true`.
    EmailDomains(Vec<String>),
}

/// The keys that name a rule.
pub const RULE_KINDS: &[&str] = &[
    "all",
    "any",
    "claim",
    "sub",
    "groups",
    "roles",
    "acr",
    "email_domains",
];

/// Where a claim is: a top-level claim by its name (`email_verified`,
/// `https://example.com/roles`), or an RFC 6901 JSON pointer into the
/// claims when it starts with `/` (`/realm_access/roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// The top-level claim it is in.
    pub top: String,
    /// The JSON pointer inside that claim; empty for the claim itself.
    pub rest: String,
}

/// `step_up`: how recent and how strong the login behind a session must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// The ID token's `auth_time` is at most this old.
    pub max_age: Option<Duration>,
    /// The ID token's `acr` is one of these.
    pub acr_values: Vec<String>,
}

/// One `claim_headers` entry: a header the upstream receives, and the claim
/// its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub name: HeaderName,
    pub claim: ClaimPath,
}

/// The `claim_headers` mapping, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimHeaders(pub Vec<ClaimHeader>);

/// `step_up.max_age` bounds: below a minute a login could not finish in
/// time; `/auth/login` accepts `max_age` up to the same upper bound.
pub const MAX_AGE_MIN: Duration = Duration::from_secs(60);
pub const MAX_AGE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `acr_values` a step-up login may ask for, in bytes, spaces
/// included: it rides in the login's pre-auth cookie.
pub const ACR_VALUES_MAX_LEN: usize = 128;

/// Claims every session keeps, whatever `session.claims` says: who the user
/// is, and when and how they authenticated (for `step_up`).
pub const ALWAYS_KEPT: &[&str] = &["sub", "iss", "auth_time", "acr"];

/// Header names `claim_headers` may not use: cloakroom writes them itself,
/// they frame the message, or they would get around a route's rules.
const RESERVED_EXACT: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "x-original-method",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
];
const RESERVED_PREFIXES: &[&str] = &["x-forwarded-", "proxy-", "content-", "sec-"];

// === impl Rule ===

impl Rule {
    /// The top-level claims this rule reads.
    pub fn claims(&self, out: &mut BTreeSet<String>) {
        match self {
            Rule::All(rules) | Rule::Any(rules) => rules.iter().for_each(|r| r.claims(out)),
            Rule::Claim { claim, .. } => {
                out.insert(claim.top.clone());
            }
            Rule::EmailDomains(_) => {
                out.insert("email".into());
                out.insert("email_verified".into());
            }
        }
    }
}

impl FromNode for Rule {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let Value::Object(map) = node else {
            return Err(at.fail(format!(
                "expected a rule (a mapping with one of {}), found {}",
                RULE_KINDS.join(", "),
                kind(node)
            )));
        };
        let named: Vec<&str> = RULE_KINDS
            .iter()
            .copied()
            .filter(|k| map.contains_key(*k))
            .collect();
        let rule_kind = match named.as_slice() {
            [one] => *one,
            [] => return Err(at.fail(format!("name one rule: {}", RULE_KINDS.join(", ")))),
            [a, b, ..] => {
                return Err(at.fail(format!(
                    "one rule per mapping, found {a} and {b}: combine rules with all or any"
                )))
            }
        };
        let mut f = Fields::open(node, at)?;
        let rule = match rule_kind {
            "all" | "any" => {
                let rules = f.required::<Each<Rule>>(rule_kind, at);
                if rules.as_ref().is_some_and(|r| r.0.is_empty()) {
                    at.error_at(rule_kind, "list at least one rule");
                }
                rules.and_then(Each::complete).map(|rules| match rule_kind {
                    "all" => Rule::All(rules),
                    _ => Rule::Any(rules),
                })
            }
            "claim" => claim_rule(&mut f, at),
            "email_domains" => {
                let domains = f.required::<Vec<EmailDomain>>(rule_kind, at);
                non_empty(domains, rule_kind, at)
                    .map(|d| Rule::EmailDomains(d.into_iter().map(|d| d.0).collect()))
            }
            // sub, groups, roles, acr: the claim of that name.
            _ => {
                let values = f.required::<Vec<String>>(rule_kind, at);
                non_empty(values, rule_kind, at).map(|values| Rule::Claim {
                    claim: ClaimPath::named(rule_kind),
                    values: values.into_iter().map(Value::String).collect(),
                })
            }
        };
        f.finish(at);
        rule.ok_or(Reported)
    }
}

/// `claim: <name or /pointer>`, with `equals: <value>` or `in: [values]`;
/// with neither, the claim must be `true`.
fn claim_rule(f: &mut Fields<'_>, at: &mut Cursor<'_>) -> Option<Rule> {
    let claim = f.required::<ClaimPath>("claim", at);
    let equals = f.optional::<Scalar>("equals", at);
    let listed = f.optional::<Vec<Scalar>>("in", at);
    let values = match (equals, listed) {
        (Some(_), Some(_)) => {
            at.error_at("in", "set equals or in, not both");
            None
        }
        (Some(one), None) => Some(vec![one.0]),
        (None, Some(list)) => non_empty(Some(list), "in", at).map(|l| l.into_iter().map(|s| s.0).collect()),
        (None, None) => Some(vec![Value::Bool(true)]),
    };
    Some(Rule::Claim {
        claim: claim?,
        values: values?,
    })
}

/// `list`, unless it is empty (recorded at `key`).
fn non_empty<T>(list: Option<Vec<T>>, key: &str, at: &mut Cursor<'_>) -> Option<Vec<T>> {
    match list {
        Some(list) if list.is_empty() => {
            at.error_at(key, "list at least one value");
            None
        }
        other => other,
    }
}

/// A value a claim is compared with: a string, a number or a boolean.
struct Scalar(Value);

impl FromNode for Scalar {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(Scalar(node.clone())),
            other => Err(at.fail(format!(
                "expected a string, number or boolean, found {}",
                kind(other)
            ))),
        }
    }
}

/// An `email_domains` entry, kept in lower case.
struct EmailDomain(String);

from_text!(EmailDomain, |text| {
    let domain = text.to_ascii_lowercase();
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if domain.split('.').all(label) {
        Ok(EmailDomain(domain))
    } else {
        Err(format!(
            "{text:?} is not a domain name (write it as it follows the @, e.g. example.com)"
        ))
    }
});

// === impl ClaimPath ===

impl ClaimPath {
    /// The top-level claim `name`.
    pub fn named(name: &str) -> Self {
        Self {
            top: name.to_owned(),
            rest: String::new(),
        }
    }

    /// The value at this path in `claims`, if there is one.
    pub fn find<'c>(&self, claims: &'c serde_json::Map<String, Value>) -> Option<&'c Value> {
        let top = claims.get(&self.top)?;
        if self.rest.is_empty() {
            Some(top)
        } else {
            top.pointer(&self.rest)
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("name a claim, or a JSON pointer starting with /".into());
        }
        let Some(pointer) = text.strip_prefix('/') else {
            return Ok(Self::named(text));
        };
        let (first, rest) = match pointer.find('/') {
            Some(i) => (&pointer[..i], &pointer[i..]),
            None => (pointer, ""),
        };
        // RFC 6901 §3: `~` only as `~0` (`~`) or `~1` (`/`).
        let bad_escape = pointer
            .split('~')
            .skip(1)
            .any(|after| !after.starts_with(['0', '1']));
        if first.is_empty() || bad_escape {
            return Err(format!(
                "{text:?} is not a JSON pointer to a claim (/claim/member; write ~1 for / and ~0 for ~ in a name)"
            ));
        }
        Ok(Self {
            top: first.replace("~1", "/").replace("~0", "~"),
            rest: rest.to_owned(),
        })
    }
}

from_text!(ClaimPath, ClaimPath::parse);

// === impl StepUp ===

impl FromNode for StepUp {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let (has_max_age, has_acr_values) = (f.has("max_age"), f.has("acr_values"));
        let max_age = f.optional::<Duration>("max_age", at);
        let acr_values = f.optional::<Vec<AcrValue>>("acr_values", at);
        f.finish(at);
        if !has_max_age && !has_acr_values {
            return Err(at.fail("set max_age, acr_values or both"));
        }
        if max_age.is_some_and(|m| !(MAX_AGE_MIN..=MAX_AGE_MAX).contains(&m)) {
            at.error_at("max_age", "must be between 1m and 30d");
        }
        let acr_values: Option<Vec<String>> = acr_values.map(|list| list.into_iter().map(|a| a.0).collect());
        let acr_values = non_empty(acr_values, "acr_values", at);
        if acr_values
            .as_ref()
            .is_some_and(|a| a.join(" ").len() > ACR_VALUES_MAX_LEN)
        {
            at.error_at(
                "acr_values",
                format!(
                    "at most {ACR_VALUES_MAX_LEN} characters together (they travel in the login's cookie)"
                ),
            );
        }
        // A key given but not read has its error recorded already.
        if (has_max_age && max_age.is_none()) || (has_acr_values && acr_values.is_none()) {
            return Err(Reported);
        }
        Ok(StepUp {
            max_age,
            acr_values: acr_values.unwrap_or_default(),
        })
    }
}

/// An `acr` value: printable ASCII without spaces (the separator in
/// `acr_values`), quotes or backslashes.
struct AcrValue(String);

from_text!(AcrValue, |text| {
    let fine = !text.is_empty()
        && text
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if fine {
        Ok(AcrValue(text.to_owned()))
    } else {
        Err(format!(
            "{text:?} is not an acr value (printable ASCII, no spaces, quotes or backslashes)"
        ))
    }
});

// === impl ClaimHeaders ===

impl FromNode for ClaimHeaders {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let Value::Object(map) = node else {
            return Err(at.fail(format!(
                "expected a mapping of header name to claim, found {}",
                kind(node)
            )));
        };
        let mut out = Vec::new();
        let mut failed = false;
        for (key, value) in map {
            let name = header_name(key);
            if let Err(reason) = &name {
                at.error_at(key, reason.clone());
            }
            let claim = at.nested(key, |at| at.read::<ClaimPath>(value));
            match (name, claim) {
                (Ok(name), Some(claim)) => {
                    if out.iter().any(|h: &ClaimHeader| h.name == name) {
                        at.error_at(key, format!("{name} is already listed"));
                        failed = true;
                    }
                    out.push(ClaimHeader { name, claim });
                }
                _ => failed = true,
            }
        }
        if failed {
            return Err(Reported);
        }
        Ok(ClaimHeaders(out))
    }
}

/// A `claim_headers` name: a header name without `_` (which some servers
/// read as `-`), not one cloakroom writes or strips for its own reasons.
fn header_name(text: &str) -> Result<HeaderName, String> {
    let name =
        HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a header name"))?;
    let lower = name.as_str();
    if lower.contains('_') {
        return Err("write - instead of _ (some servers read one as the other)".into());
    }
    if RESERVED_EXACT.contains(&lower) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Err(format!(
            "{text} is set or removed by cloakroom itself; choose another name"
        ));
    }
    Ok(name)
}

from_text!(AuthMode, |text| match text {
    "required" => Ok(AuthMode::Required),
    "optional" => Ok(AuthMode::Optional),
    "none" => Ok(AuthMode::None),
    _ => Err(format!("{text:?} is not one of required, optional, none")),
});

/// Where `access`, `step_up` and `claim_headers` make sense: the first two
/// judge a signed-in user, the last needs a session and an upstream.
pub(super) fn check_route(
    auth: Option<AuthMode>,
    is_static: bool,
    [access, step_up]: [bool; 2],
    claim_headers: bool,
    at: &mut Cursor<'_>,
) {
    if auth.is_some_and(|a| a != AuthMode::Required) {
        for (given, key) in [(access, "access"), (step_up, "step_up")] {
            if given {
                at.error_at(key, "needs a signed-in user; set auth: required");
            }
        }
    }
    if claim_headers && auth == Some(AuthMode::None) {
        at.error_at(
            "claim_headers",
            "needs a session; set auth to required or optional",
        );
    } else if claim_headers && is_static {
        at.error_at(
            "claim_headers",
            "a static route has no upstream to send headers to",
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::tests::{errors, load};

    const HEAD: &str = "public_url: https://app.example.com
oidc: {issuer: 'https://idp.example.com', client_id: spa, client_secret: s}
cookie: {keys: [{id: '1', secret: '${KEY}'}]}
routes:
";

    fn route_errors(route: &str) -> Vec<String> {
        errors(&format!("{HEAD}  - {route}\n"))
    }

    #[test]
    fn rules_nest_and_shorthands_read_their_claim() {
        let c = load(&format!(
            "{HEAD}  - path: /admin
    upstream: 'http://a'
    access:
      all:
        - groups: [admins]
        - email_domains: [Example.COM]
        - any:
            - claim: /org/tier
              in: [gold, 3, true]
            - claim: email_verified
            - {{claim: 'https://example.com/roles', equals: auditor}}
"
        ))
        .unwrap();
        let rule = c.routes[0].access.clone().unwrap();
        assert_eq!(
            rule,
            Rule::All(vec![
                Rule::Claim {
                    claim: ClaimPath::named("groups"),
                    values: vec![json!("admins")]
                },
                Rule::EmailDomains(vec!["example.com".into()]),
                Rule::Any(vec![
                    Rule::Claim {
                        claim: ClaimPath {
                            top: "org".into(),
                            rest: "/tier".into()
                        },
                        values: vec![json!("gold"), json!(3), json!(true)]
                    },
                    Rule::Claim {
                        claim: ClaimPath::named("email_verified"),
                        values: vec![json!(true)]
                    },
                    Rule::Claim {
                        claim: ClaimPath::named("https://example.com/roles"),
                        values: vec![json!("auditor")]
                    },
                ]),
            ])
        );
        let kept = c.kept_claims();
        for claim in [
            "groups",
            "email",
            "email_verified",
            "org",
            "https://example.com/roles",
            "sub",
            "auth_time",
            "acr",
            "name",
        ] {
            assert!(kept.contains(claim), "{claim}: {kept:?}");
        }
    }

    #[test]
    fn a_bad_rule_is_named_by_its_key_path() {
        let got = route_errors(
            "path: /admin
    upstream: 'http://a'
    access:
      all:
        - groups: []
        - {groups: [a], roles: [b]}
        - any:
            - claim: /org/~2tier
            - {claim: x, equals: 1, in: [2]}
            - {claim: x, in: [{a: 1}]}
            - email_domains: ['@example.com']
            - {sub: [alice], equals: bob}
            - {}
        - nothing_here
        - any: []",
        );
        assert_eq!(
            got,
            [
                "routes[0].access.all[0].groups: list at least one value",
                "routes[0].access.all[1]: one rule per mapping, found groups and roles: combine rules with all or any",
                "routes[0].access.all[2].any[0].claim: \"/org/~2tier\" is not a JSON pointer to a claim (/claim/member; write ~1 for / and ~0 for ~ in a name)",
                "routes[0].access.all[2].any[1].in: set equals or in, not both",
                "routes[0].access.all[2].any[2].in[0]: expected a string, number or boolean, found a mapping",
                "routes[0].access.all[2].any[3].email_domains[0]: \"@example.com\" is not a domain name (write it as it follows the @, e.g. example.com)",
                "routes[0].access.all[2].any[4].equals: unknown key",
                "routes[0].access.all[2].any[5]: name one rule: all, any, claim, sub, groups, roles, acr, email_domains",
                "routes[0].access.all[3]: expected a rule (a mapping with one of all, any, claim, sub, groups, roles, acr, email_domains), found a string",
                "routes[0].access.all[4].any: list at least one rule",
            ]
        );
    }

    #[test]
    fn access_and_step_up_need_a_signed_in_user() {
        let got = errors(&format!(
            "{HEAD}  - {{path: /a, upstream: 'http://a', auth: optional, access: {{sub: [alice]}}, step_up: {{max_age: 5m}}}}
  - {{path: /b, upstream: 'http://a', auth: none, claim_headers: {{X-User: sub}}}}
  - {{path: /c, auth: required, static: {{dir: /srv}}, claim_headers: {{X-User: sub}}}}
"
        ));
        assert_eq!(
            got,
            [
                "routes[0].access: needs a signed-in user; set auth: required",
                "routes[0].step_up: needs a signed-in user; set auth: required",
                "routes[1].claim_headers: needs a session; set auth to required or optional",
                "routes[2].claim_headers: a static route has no upstream to send headers to",
            ]
        );
    }

    #[test]
    fn step_up_is_bounded_and_its_acr_values_are_tokens() {
        let long = format!("urn:{}", "x".repeat(ACR_VALUES_MAX_LEN));
        let got = errors(&format!(
            "{HEAD}  - {{path: /a, upstream: 'http://a', step_up: {{max_age: 10s}}}}
  - {{path: /b, upstream: 'http://a', step_up: {{}}}}
  - {{path: /c, upstream: 'http://a', step_up: {{acr_values: ['a b', 'q\"']}}}}
  - {{path: /d, upstream: 'http://a', step_up: {{acr_values: ['{long}']}}}}
  - {{path: /e, upstream: 'http://a', step_up: {{acr_values: []}}}}
  - {{path: /f, upstream: 'http://a', step_up: {{max_age: 31d, maxage: 1m}}}}
"
        ));
        assert_eq!(
            got,
            [
                "routes[0].step_up.max_age: must be between 1m and 30d",
                "routes[1].step_up: set max_age, acr_values or both",
                "routes[2].step_up.acr_values[0]: \"a b\" is not an acr value (printable ASCII, no spaces, quotes or backslashes)",
                "routes[2].step_up.acr_values[1]: \"q\\\"\" is not an acr value (printable ASCII, no spaces, quotes or backslashes)",
                "routes[3].step_up.acr_values: at most 128 characters together (they travel in the login's cookie)",
                "routes[4].step_up.acr_values: list at least one value",
                "routes[5].step_up.maxage: unknown key",
                "routes[5].step_up.max_age: must be between 1m and 30d",
            ]
        );
        let c = load(&format!(
            "{HEAD}  - {{path: /a, upstream: 'http://a', step_up: {{max_age: 10m, acr_values: [silver, gold]}}}}
  - {{path: /b, upstream: 'http://a', step_up: {{acr_values: [gold, platinum]}}}}
"
        ))
        .unwrap();
        assert_eq!(
            c.routes[0].step_up,
            Some(StepUp {
                max_age: Some(Duration::from_secs(600)),
                acr_values: vec!["silver".into(), "gold".into()]
            })
        );
        assert_eq!(
            c.step_up_acr_values().into_iter().collect::<Vec<_>>(),
            ["gold", "platinum", "silver"]
        );
    }

    #[test]
    fn claim_headers_name_headers_cloakroom_does_not_own_and_are_stripped_everywhere() {
        let got = route_errors(
            "path: /a
    upstream: 'http://a'
    claim_headers:
      X-User: sub
      X_Email: email
      Authorization: sub
      X-Forwarded-User: sub
      'bad name': sub
      X-Tier: '/'
      x-user: email",
        );
        assert_eq!(
            got,
            [
                "routes[0].claim_headers.X_Email: write - instead of _ (some servers read one as the other)",
                "routes[0].claim_headers.Authorization: Authorization is set or removed by cloakroom itself; choose another name",
                "routes[0].claim_headers.X-Forwarded-User: X-Forwarded-User is set or removed by cloakroom itself; choose another name",
                "routes[0].claim_headers.bad name: \"bad name\" is not a header name",
                "routes[0].claim_headers.X-Tier: \"/\" is not a JSON pointer to a claim (/claim/member; write ~1 for / and ~0 for ~ in a name)",
                "routes[0].claim_headers.x-user: x-user is already listed",
            ]
        );
        let c = load(&format!(
            "{HEAD}  - {{path: /a, upstream: 'http://a', claim_headers: {{X-Tenant: /org/id, X-User-Id: sub}}}}
  - {{path: /b, upstream: 'http://a'}}
"
        ))
        .unwrap();
        let stripped = c.stripped_identity_headers();
        assert!(stripped.iter().any(|r| r.matches("x-tenant")));
        assert!(stripped.iter().any(|r| r.matches("x_tenant")), "either spelling");
        assert_eq!(
            stripped.len(),
            c.identity_headers.len() + 1,
            "x-user-id was already listed"
        );
        assert!(c.kept_claims().contains("org"));
    }
}
