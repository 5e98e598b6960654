//! Where discovery stands: kept for `/readyz`, logged once per change (LG-27).
//!
//! While discovery fails it is retried in the background and on every login
//! attempt. Logging each attempt would bury the one line an operator needs,
//! so the cause is logged when it first appears or changes, and recovery
//! once; `/readyz` always shows the latest.

use std::sync::Mutex;

use serde::Serialize;

/// The outcome of the latest discovery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DiscoveryState {
    /// No attempt has finished yet.
    Pending,
    Ready,
    /// The latest attempt failed. `cause` is for operators: the error chain,
    /// which names URLs and reasons but never a token or the client secret.
    Failed {
        cause: String,
    },
}

/// Causes longer than this are cut: the text may quote the IdP's answer.
const MAX_CAUSE: usize = 500;

/// The shared state, updated by every discovery attempt.
#[derive(Debug)]
pub struct Tracker {
    state: Mutex<DiscoveryState>,
}

// === impl Tracker ===

impl Default for Tracker {
    fn default() -> Self {
        Self {
            state: Mutex::new(DiscoveryState::Pending),
        }
    }
}

impl Tracker {
    pub fn get(&self) -> DiscoveryState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(DiscoveryState::Pending)
    }

    /// Records a success; logs it if the state was anything else.
    pub fn ready(&self, issuer: &str) {
        match self.replace(DiscoveryState::Ready) {
            Some(DiscoveryState::Ready) => {}
            Some(DiscoveryState::Failed { .. }) => {
                tracing::info!(issuer, "IdP discovery succeeded again; logins are back")
            }
            Some(DiscoveryState::Pending) | None => tracing::info!(issuer, "IdP discovered"),
        }
    }

    /// Records a failure; logs its cause unless it is the one already
    /// recorded. `transient` failures (network, TLS, 5xx) are warnings;
    /// metadata that is refused (issuer mismatch, no S256) is an error.
    pub fn failed(&self, issuer: &str, cause: &str, transient: bool) {
        let cause = truncate(cause);
        let now = DiscoveryState::Failed {
            cause: cause.to_owned(),
        };
        if self.replace(now.clone()).as_ref() == Some(&now) {
            return;
        }
        if transient {
            tracing::warn!(
                issuer,
                cause,
                "IdP discovery failed; logins wait until it succeeds"
            );
        } else {
            tracing::error!(
                issuer,
                cause,
                "IdP discovery failed; logins are refused until it is fixed"
            );
        }
    }

    /// Sets the state; the previous one, `None` if the lock is poisoned.
    fn replace(&self, state: DiscoveryState) -> Option<DiscoveryState> {
        let mut slot = self.state.lock().ok()?;
        Some(std::mem::replace(&mut *slot, state))
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(MAX_CAUSE) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_outcome_is_kept_with_its_cause() {
        let t = Tracker::default();
        assert_eq!(t.get(), DiscoveryState::Pending);
        t.failed("https://idp", "no S256", false);
        assert_eq!(
            t.get(),
            DiscoveryState::Failed {
                cause: "no S256".into()
            }
        );
        t.ready("https://idp");
        assert_eq!(t.get(), DiscoveryState::Ready);
        let json = serde_json::to_value(DiscoveryState::Failed { cause: "x".into() }).unwrap();
        assert_eq!(json, serde_json::json!({"state": "failed", "cause": "x"}));
    }

    #[test]
    fn long_causes_are_cut_on_a_character_boundary() {
        let t = Tracker::default();
        t.failed("https://idp", &"é".repeat(2 * MAX_CAUSE), true);
        let DiscoveryState::Failed { cause } = t.get() else {
            panic!("not failed")
        };
        assert_eq!(cause.chars().count(), MAX_CAUSE);
    }
}
