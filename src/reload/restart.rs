//! The keys a reload cannot apply, and a new config with their running
//! values put back.

use crate::config::Config;

/// The keys a reload cannot apply: what they configure is set up once, at
/// start. A changed one keeps its running value until a restart.
pub const RESTART_KEYS: &[&str] = &[
    // The bound sockets.
    "listen",
    "admin_listen",
    // The worker threads.
    "workers",
    // Read by the accept loop and the HTTP server settings at start
    // (connection caps, connection timeouts, the drain's grace).
    "limits",
    // The accept loop's exemption from the per-address cap; kept whole so
    // the app and the accept loop trust the same peers.
    "trusted_proxies",
    // The store connection, which every session lives in.
    "session.store",
    // The log subscriber's format, installed once.
    "log.format",
    // The trace exporter and the subscriber's layers, installed once.
    "telemetry",
];

/// `new` with each of [`RESTART_KEYS`] set back to its running value, and
/// the names of those that differed.
pub(super) fn keep_running(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $key:literal) => {
            if new.$($field).+ != running.$($field).+ {
                new.$($field).+ = running.$($field).+.clone();
                kept.push($key);
            }
        };
    }
    keep!(listen, "listen");
    keep!(admin_listen, "admin_listen");
    keep!(workers, "workers");
    keep!(limits, "limits");
    keep!(trusted_proxies, "trusted_proxies");
    keep!(session.store, "session.store");
    keep!(log.format, "log.format");
    keep!(telemetry, "telemetry");
    debug_assert!(kept.iter().all(|k| RESTART_KEYS.contains(k)));
    (new, kept)
}
