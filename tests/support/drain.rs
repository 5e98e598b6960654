//! A replica asked to stop while a request is still in flight.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::app::{config, App};
use super::net::client;
use super::upstream::Upstream;
use super::wait::until;

const BOUND: Duration = Duration::from_secs(10);

pub struct Draining {
    pub app: App,
    /// `GET /slow`: the upstream sent its first half and holds the second
    /// until [`Draining::finish`].
    in_flight: JoinHandle<reqwest::Result<reqwest::Response>>,
    /// Resolves once the app has stopped.
    stopped: JoinHandle<()>,
}

impl Draining {
    /// Starts an app in front of `up`, sends `GET /slow`, and once the
    /// upstream has it asks the app to shut down.
    pub async fn start(up: &Upstream) -> Self {
        let mut app = App::start(&config(&[("/", &up.url(), "")])).await;
        let in_flight = tokio::spawn(client().get(app.url("/slow")).send());
        until(
            BOUND,
            Duration::from_millis(5),
            "the request reached the upstream",
            async || up.requests() > 0,
        )
        .await;
        let stopped = app.begin_shutdown();
        Self {
            app,
            in_flight,
            stopped,
        }
    }

    /// Lets the upstream finish: the request in flight gets its whole
    /// answer, then the app stops. Returns the stopped app.
    pub async fn finish(self, up: &Upstream) -> App {
        up.seen.release.notify_one();
        let r = self.in_flight.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "firstsecond", "the answer arrived whole");
        tokio::time::timeout(BOUND, self.stopped).await.unwrap().unwrap();
        self.app
    }
}
