//! A route's `claim_headers`: the upstream is told who the user is, in
//! headers valued from the session's claims. Client copies of every such
//! name were already removed, on every route (`upstream::hygiene`, fed by
//! [`crate::config::Config::stripped_identity_headers`]), so the upstream
//! sees cloakroom's value or none (T35).
//!
//! Values: a string as it is, a number or boolean as JSON writes it, a list
//! of those joined with `,`. Every byte outside printable ASCII, and space,
//! `"`, `%`, `+`, `,` and `\`, is percent-encoded (UTF-8), so CR, LF and
//! other control characters can never reach a header, non-ASCII text
//! arrives intact, and a list splits unambiguously. A claim that is
//! missing, empty, an object (or a list holding one), or longer than
//! [`MAX_VALUE_LEN`] once encoded sends no header.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};
use serde_json::{Map, Value};

use super::step::{Next, ResponseFuture, Step};
use crate::body::Body;
use crate::config::{ClaimHeader, RouteConfig};

/// The longest header value sent, encoded.
pub const MAX_VALUE_LEN: usize = 4096;

/// The headers the leaf sets upstream, after the client's are gone.
#[derive(Clone, Debug, Default)]
pub struct IdentityHeaders(pub Vec<(HeaderName, HeaderValue)>);

/// Values a route's `claim_headers` from the session's claims.
#[derive(Clone)]
pub struct ClaimHeaders {
    headers: Arc<[ClaimHeader]>,
}

// === impl ClaimHeaders ===

impl ClaimHeaders {
    /// The step `route` asks for, if any.
    pub fn for_route(route: &RouteConfig) -> Option<Self> {
        (!route.claim_headers.0.is_empty()).then(|| Self {
            headers: route.claim_headers.0.clone().into(),
        })
    }
}

impl Step for ClaimHeaders {
    fn call(&self, mut request: Request<Body>, next: Next) -> ResponseFuture {
        // Without a session (an `optional` route), the upstream gets none.
        if let Some(loaded) = super::session::loaded(&request) {
            let headers = identity_headers(&self.headers, &loaded.record.claims);
            request.extensions_mut().insert(IdentityHeaders(headers));
        }
        next.run(request)
    }
}

/// The headers `wanted` makes of `claims`.
pub fn identity_headers(
    wanted: &[ClaimHeader],
    claims: &Map<String, Value>,
) -> Vec<(HeaderName, HeaderValue)> {
    wanted
        .iter()
        .filter_map(|h| {
            let claim = h.claim.find(claims)?;
            let Some(value) = header_value(claim) else {
                // The header's name only: the value is the user's.
                tracing::debug!(header = %h.name, "claim not sent: empty, an object, or too long");
                return None;
            };
            Some((h.name.clone(), value))
        })
        .collect()
}

/// A claim's value as a header value, or `None` when it cannot be one.
pub fn header_value(claim: &Value) -> Option<HeaderValue> {
    let mut out = String::new();
    match claim {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_scalar(item, &mut out)?;
            }
        }
        other => encode_scalar(other, &mut out)?,
    }
    if out.is_empty() || out.len() > MAX_VALUE_LEN {
        return None;
    }
    let mut value = HeaderValue::from_str(&out).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn encode_scalar(value: &Value, out: &mut String) -> Option<()> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    for byte in text.bytes() {
        let plain = (0x21..0x7f).contains(&byte) && !matches!(byte, b'"' | b'%' | b'+' | b',' | b'\\');
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        if out.len() > MAX_VALUE_LEN {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::ClaimPath;

    fn value(v: Value) -> Option<String> {
        header_value(&v).map(|h| h.to_str().unwrap().to_owned())
    }

    #[test]
    fn values_are_encoded_so_no_control_character_or_list_separator_gets_through() {
        assert_eq!(
            value(json!("alice@example.com")).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            value(json!("x\r\nSet-Cookie: a=b")).as_deref(),
            Some("x%0D%0ASet-Cookie:%20a=b")
        );
        assert_eq!(value(json!("José Ñ")).as_deref(), Some("Jos%C3%A9%20%C3%91"));
        assert_eq!(value(json!("100%,+\"\\")).as_deref(), Some("100%25%2C%2B%22%5C"));
        assert_eq!(
            value(json!(["admins", "a,b", 7, true])).as_deref(),
            Some("admins,a%2Cb,7,true")
        );
        assert_eq!(value(json!(1.5)).as_deref(), Some("1.5"));
        for refused in [
            json!({"a": 1}),
            json!([["nested"]]),
            json!(null),
            json!(""),
            json!([]),
            json!("x".repeat(MAX_VALUE_LEN + 1)),
        ] {
            assert_eq!(value(refused.clone()), None, "{refused}");
        }
    }

    #[test]
    fn headers_come_from_their_claims_and_a_missing_claim_sends_none() {
        let wanted = [
            ClaimHeader {
                name: HeaderName::from_static("x-user"),
                claim: ClaimPath::named("sub"),
            },
            ClaimHeader {
                name: HeaderName::from_static("x-tier"),
                claim: ClaimPath {
                    top: "org".into(),
                    rest: "/tier".into(),
                },
            },
            ClaimHeader {
                name: HeaderName::from_static("x-missing"),
                claim: ClaimPath::named("nope"),
            },
        ];
        let claims = json!({"sub": "alice", "org": {"tier": "gold"}});
        let got = identity_headers(&wanted, claims.as_object().unwrap());
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(got, [("x-user", "alice"), ("x-tier", "gold")]);
    }
}
