//! How a reload ended, and the one place it is logged and counted.

use std::path::Path;

use crate::metrics::{Metrics, Reload};

/// How one reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new config serves. `needs_restart` names the changed keys that
    /// kept their running values.
    Applied { needs_restart: Vec<&'static str> },
    /// The new config was refused, for `errors`; the running one serves.
    Refused { errors: Vec<String> },
}

// === impl Outcome ===

impl Outcome {
    /// The `outcome` label of `cloakroom_config_reloads_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "success",
            Outcome::Refused { .. } => "failure",
        }
    }
}

/// Logs a reload's outcome: the one place every reload ends, whatever
/// asked for it.
pub(super) fn record(path: &Path, outcome: &Outcome, metrics: &Metrics) {
    metrics.config_reload(match outcome {
        Outcome::Applied { .. } => Reload::Success,
        Outcome::Refused { .. } => Reload::Failure,
    });
    match outcome {
        Outcome::Applied { needs_restart } => {
            for key in needs_restart {
                tracing::warn!(
                    config = %path.display(),
                    key,
                    "{key} changed but needs a restart; the running value is kept"
                );
            }
            tracing::info!(
                config = %path.display(),
                outcome = outcome.label(),
                "config reloaded"
            );
        }
        Outcome::Refused { errors } => {
            for e in errors {
                tracing::error!(config = %path.display(), error = %e, "config reload refused");
            }
            tracing::error!(
                config = %path.display(),
                outcome = outcome.label(),
                errors = errors.len(),
                "config reload failed; the running config keeps serving"
            );
        }
    }
}
