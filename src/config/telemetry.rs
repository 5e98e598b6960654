//! The `telemetry` section: traces over OTLP. Absent, or without `otlp`:
//! no exporter, and the request's spans are never built.

use serde_json::Value;
use url::Url;

use super::node::{from_text, Cursor, Fields, FromNode, Reported};
use super::values::UrlWithoutQuery;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are exported; `None`: traces are off.
    pub otlp: Option<OtlpConfig>,
}

/// An OTLP/HTTP (protobuf) trace exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL; spans go to `<endpoint>/v1/traces`.
    pub endpoint: Url,
    /// `service.name` of every span.
    pub service_name: String,
    /// The share of new traces kept, 0.0 to 1.0. A trace started by a
    /// trusted proxy keeps its own decision (the `traceparent` flag).
    pub sample_ratio: f64,
}

/// A share between 0 and 1.
struct Ratio(f64);

// === impl TelemetryConfig ===

impl FromNode for TelemetryConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let otlp = f.optional::<OtlpConfig>("otlp", at);
        let given = f.has("otlp");
        f.finish(at);
        if given && otlp.is_none() {
            return Err(Reported);
        }
        Ok(TelemetryConfig { otlp })
    }
}

// === impl OtlpConfig ===

impl OtlpConfig {
    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.as_str().trim_end_matches('/'))
    }
}

impl FromNode for OtlpConfig {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let mut f = Fields::open(node, at)?;
        let endpoint = f.required::<UrlWithoutQuery>("endpoint", at);
        let service_name = f.or("service_name", "cloakroom".to_owned(), at);
        let sample_ratio = f.or("sample_ratio", Ratio(1.0), at);
        f.finish(at);
        if service_name.as_ref().is_some_and(|s| s.trim().is_empty()) {
            at.error_at("service_name", "must not be empty");
        }
        Ok(OtlpConfig {
            endpoint: endpoint.ok_or(Reported)?.0,
            service_name: service_name.ok_or(Reported)?,
            sample_ratio: sample_ratio.ok_or(Reported)?.0,
        })
    }
}

from_text!(Ratio, |text| match text.parse::<f64>() {
    Ok(r) if (0.0..=1.0).contains(&r) => Ok(Ratio(r)),
    _ => Err(format!("expected a number from 0.0 to 1.0, found {text:?}")),
});

#[cfg(test)]
mod tests {
    use crate::config::{Config, MapEnv};

    const BASE: &str = "public_url: http://localhost:8080\nroutes: [{path: /, upstream: 'http://127.0.0.1:9000', auth: none}]\n";

    fn load(extra: &str) -> Result<Config, Vec<String>> {
        Config::load(&format!("{BASE}{extra}"), &MapEnv::default())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn off_unless_an_otlp_endpoint_is_given() {
        assert_eq!(load("").unwrap().telemetry.otlp, None);
        assert_eq!(load("telemetry: {}\n").unwrap().telemetry.otlp, None);
    }

    #[test]
    fn otlp_with_defaults() {
        let config = load("telemetry: {otlp: {endpoint: 'http://collector:4318'}}\n").unwrap();
        let otlp = config.telemetry.otlp.unwrap();
        assert_eq!(otlp.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(otlp.service_name, "cloakroom");
        assert_eq!(otlp.sample_ratio, 1.0);
    }

    #[test]
    fn errors_name_their_key() {
        let errors =
            load("telemetry: {otlp: {endpoint: 'ftp://x', sample_ratio: 2, service_name: ' ', port: 1}}\n")
                .unwrap_err();
        let has = |key: &str| errors.iter().any(|e| e.starts_with(key));
        assert!(has("telemetry.otlp.endpoint"), "{errors:?}");
        assert!(has("telemetry.otlp.sample_ratio"), "{errors:?}");
        assert!(has("telemetry.otlp.service_name"), "{errors:?}");
        assert!(has("telemetry.otlp.port"), "{errors:?}");
        let missing = load("telemetry: {otlp: {service_name: x}}\n").unwrap_err();
        assert!(
            missing.iter().any(|e| e.starts_with("telemetry.otlp.endpoint")),
            "{missing:?}"
        );
    }
}
