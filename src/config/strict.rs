//! `cloakroom check --strict`: what a production config must not contain,
//! though it loads. Each finding names its key, like a load error.

use super::{Config, ConfigError};

/// The settings a production deployment must not run with.
pub fn findings(config: &Config) -> Vec<ConfigError> {
    let mut found = Vec::new();
    if config.insecure_dev_mode {
        found.push(ConfigError::new(
            "insecure_dev_mode",
            "a development switch (plain http on real host names); not allowed with --strict",
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::load(yaml, &MapEnv::default()).map_err(|e| e.to_string())
    }

    const ROUTES: &str = "routes: [{path: /, upstream: 'http://spa:3000', auth: none}]";
    const OIDC: &str = "oidc: {issuer: 'http://idp.lan:9000', client_id: c, client_secret: s}";

    #[test]
    fn plain_http_on_real_host_names_needs_the_dev_switch() {
        let yaml = format!("public_url: http://app.lan:8080\n{OIDC}\n{ROUTES}");
        assert_eq!(
            load(&yaml).unwrap_err(),
            "public_url: must be https (plain http is allowed only for localhost development)\noidc.issuer: must be https"
        );
        let config = load(&format!("insecure_dev_mode: true\n{yaml}")).unwrap();
        assert!(config.insecure_dev_mode);
        assert_eq!(findings(&config)[0].path, "insecure_dev_mode");
    }

    #[test]
    fn a_production_config_has_no_findings() {
        let config = load(&format!("public_url: https://app.example.com\n{ROUTES}")).unwrap();
        assert!(findings(&config).is_empty());
    }
}
