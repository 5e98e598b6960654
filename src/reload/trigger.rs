//! Asking a running cloakroom for a reload: a [`Reloader`] and the
//! [`Requests`] it sends, and what reloads come from ([`Triggers`]).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::file::Watched;
use super::outcome::Outcome;

pub(super) type Request = oneshot::Sender<Outcome>;

/// Asks the reload task of a running cloakroom to reload its config file.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<Request>);

/// The receiving end of a [`Reloader`], handed to [`crate::run_with`].
pub struct Requests(pub(super) mpsc::Receiver<Request>);

/// A [`Reloader`] and the [`Requests`] it sends to.
pub fn channel() -> (Reloader, Requests) {
    let (tx, rx) = mpsc::channel(8);
    (Reloader(tx), Requests(rx))
}

// === impl Reloader ===

impl Reloader {
    /// Reloads the config file and waits for the outcome.
    pub async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let stopped = || Outcome::Refused {
            errors: vec!["cloakroom is not running with a config file".into()],
        };
        if self.0.send(tx).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

/// What reloads come from: the file (and what it read), requests, and how
/// often the file is polled (`None`: only on request).
pub struct Triggers {
    pub watched: Watched,
    pub requests: Requests,
    pub poll: Option<Duration>,
}
