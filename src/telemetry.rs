//! Logging: human-readable on a terminal, JSON lines otherwise.
//!
//! `RUST_LOG`, when set at start, overrides the configured level, and keeps
//! overriding it across config reloads: [`set_level`] leaves it in place.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// The installed filter, swapped by a reload of `log.level`.
struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter came from `RUST_LOG`: a reload does not replace it.
    from_env: bool,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `RUST_LOG` was set at start; it still decides.
    KeptRustLog,
    /// No subscriber of ours is installed (a test running the library).
    NotInstalled,
}

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) => (
            EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    let installed = if json {
        registry
            .with(fmt.json().flatten_event(true).with_current_span(false))
            .try_init()
    } else {
        registry.with(fmt).try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(Filter { handle, from_env });
    }
}

/// Replaces the level filter with `level` (already checked by the config
/// loader), unless `RUST_LOG` chose the filter at start.
pub fn set_level(level: &str) -> LevelChange {
    let Some(filter) = FILTER.get() else {
        return LevelChange::NotInstalled;
    };
    if filter.from_env {
        return LevelChange::KeptRustLog;
    }
    let Ok(new) = EnvFilter::try_new(level) else {
        // Unreachable for a loaded config: `log_filter::check` parses it too.
        return LevelChange::NotInstalled;
    };
    match filter.handle.reload(new) {
        Ok(()) => LevelChange::Applied,
        Err(_) => LevelChange::NotInstalled,
    }
}
