//! Hot reload: a changed config applied while connections stay open.
//!
//! A reload is asked for by SIGHUP (`main`), by a change of the config file
//! or of a `*_file` secret it reads (polled here), or through a [`Reloader`]
//! (tests). Reloads run one at a time, in one task.
//!
//! A reload reads the file as `serve` does at start. If it does not load,
//! every error is logged, with the messages `cloakroom check` prints, and
//! the running config keeps serving. If it loads, the keys that a running
//! process cannot change ([`RESTART_KEYS`]) keep their running values and
//! are each logged as needing a restart, and everything else applies at
//! once. Applying the rest rather than refusing the whole file means an
//! urgent change (a leaked cookie key removed, KR-02) is never held back by
//! an unrelated edit that waits for the next restart.
//!
//! What a reload swaps, for requests that start after it: the config, each
//! worker's router and route stacks, and `Auth` with its `Sessions` (cookie
//! key ring, timeouts), CSRF origins and `Refresher`; the log level. What it
//! keeps: the listeners and their connections (WebSocket tunnels included),
//! the worker threads and their upstream pools, the session store and its
//! connection, the refresh flights in progress (shared with the next
//! `Refresher`), and the `Idp` with its discovery and JWKS cache while the
//! `oidc` section is unchanged. A request in flight finishes with the state
//! it started with.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::admin::sessions::Api as AdminApi;
use crate::app::App;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{self, BoxError};
use crate::metrics::Metrics;
use crate::oidc::Idp;
use crate::session::SessionStore;
use crate::telemetry::{self, LevelChange};

mod file;
mod outcome;
mod restart;
mod trigger;

pub use self::file::{load, LoadError, Watched};
pub use self::outcome::Outcome;
pub use self::restart::RESTART_KEYS;
pub use self::trigger::{channel, Reloader, Requests, Triggers};

use self::outcome::record;
use self::restart::keep_running;

/// How often the config file and its secret files are read for changes.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

// === The running state ===

/// What one config decides process-wide: the config itself, `Auth`, and
/// the admin API.
pub struct Generation {
    pub config: Arc<Config>,
    pub auth: Option<Arc<Auth>>,
    pub api: Option<Arc<AdminApi>>,
}

/// Everything that serves, and what a reload replaces.
pub struct Live {
    store: Arc<dyn SessionStore>,
    clock: Clock,
    /// Process-wide: counts outlive every config.
    metrics: Arc<Metrics>,
    apps: Vec<App>,
    current: ArcSwap<Generation>,
}

// === impl Live ===

impl Live {
    /// Builds the state for `config`: `Auth` and one [`App`] per worker.
    pub fn start(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        clock: Clock,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BoxError> {
        let auth = Auth::new(config.clone(), store.clone(), clock.clone(), metrics.clone())?;
        if let Some(auth) = &auth {
            auth.idp.discover_in_background();
        }
        let apps = (0..workers)
            .map(|_| App::new(config.clone(), store.clone(), auth.clone(), metrics.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            store,
            clock,
            metrics,
            apps,
            current: ArcSwap::from_pointee(Generation {
                api: AdminApi::new(&config, auth.as_ref()),
                config,
                auth,
            }),
        })
    }

    /// One [`App`] per worker thread.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The config serving now.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// The admin API serving now, if configured.
    pub fn admin_api(&self) -> Option<Arc<AdminApi>> {
        self.current.load().api.clone()
    }

    /// The IdP serving now, if login is configured.
    pub fn idp(&self) -> Option<Arc<Idp>> {
        self.current.load().auth.as_ref().map(|a| a.idp.clone())
    }

    /// Applies `config`: builds everything first, and swaps only when all
    /// of it was built, so a failure leaves the running state untouched.
    pub fn apply(&self, config: Config) -> Outcome {
        let running = self.current.load_full();
        let (config, needs_restart) = keep_running(&running.config, config);
        let config = Arc::new(config);
        let built = Auth::reloaded(
            config.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            running.auth.as_deref(),
        )
        .and_then(|auth| {
            let prepared = self
                .apps
                .iter()
                .map(|app| app.prepare(config.clone(), auth.clone()))
                .collect::<Result<Vec<_>, BoxError>>()?;
            Ok((auth, prepared))
        });
        let (auth, prepared) = match built {
            Ok(built) => built,
            Err(e) => {
                return Outcome::Refused {
                    errors: vec![error::chain(&*e)],
                }
            }
        };
        // Nothing below fails: the new config takes over as a whole.
        if telemetry::set_level(&config.log.level) == LevelChange::KeptRustLog
            && config.log.level != running.config.log.level
        {
            tracing::warn!(level = %config.log.level, "log.level changed, but RUST_LOG is set and decides");
        }
        if config.insecure_dev_mode && !running.config.insecure_dev_mode {
            warn_insecure_dev_mode(&config);
        }
        let new_idp = match (&auth, &running.auth) {
            (Some(new), Some(old)) => !Arc::ptr_eq(&new.idp, &old.idp),
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.current.store(Arc::new(Generation {
            api: AdminApi::new(&config, auth.as_ref()),
            config,
            auth: auth.clone(),
        }));
        for (app, prepared) in self.apps.iter().zip(prepared) {
            app.install(prepared);
        }
        if let (true, Some(auth)) = (new_idp, &auth) {
            auth.idp.discover_in_background();
        }
        Outcome::Applied { needs_restart }
    }
}

/// The warning logged whenever `insecure_dev_mode` comes on.
pub fn warn_insecure_dev_mode(config: &Config) {
    tracing::warn!(
        public_url = %config.public_url,
        "insecure_dev_mode is on: plain http is allowed for public_url and the issuer on any host name; never run production like this"
    );
}

// === The reload task ===

/// Serves reload requests and polls the config file until `stop`
/// resolves. A file change is applied once the file has read the same at
/// two polls in a row: a file written in several steps is not reloaded
/// half-written.
pub async fn run(live: Arc<Live>, triggers: Triggers, stop: impl std::future::Future<Output = ()>) {
    let Triggers {
        mut watched,
        requests: Requests(mut requests),
        poll,
    } = triggers;
    // Without polling the tick is never awaited; any period will do.
    let mut tick = tokio::time::interval(poll.unwrap_or(POLL_EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // A change seen at the last poll, waiting to read the same at the next.
    let mut settling: Option<Watched> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            request = requests.recv() => {
                let Some(reply) = request else {
                    // No requester left; the file may still be polled.
                    requests = mpsc::channel(1).1;
                    continue;
                };
                settling = None;
                let outcome = reload(&live, &mut watched).await;
                let _ = reply.send(outcome);
            }
            _ = tick.tick(), if poll.is_some() => {
                let before = watched.clone();
                let now = tokio::task::spawn_blocking(move || before.now()).await;
                let Ok(now) = now else { continue };
                if now == watched {
                    settling = None;
                } else if settling.as_ref() == Some(&now) {
                    settling = None;
                    tracing::info!(config = %watched.path().display(), "config file changed; reloading");
                    reload(&live, &mut watched).await;
                } else {
                    settling = Some(now);
                }
            }
        }
    }
}

/// One reload: read, apply, record. `watched` becomes what this reading
/// read, whether it applied or not, so a refused file is not retried until
/// it changes again.
async fn reload(live: &Live, watched: &mut Watched) -> Outcome {
    let path = watched.path().to_owned();
    let read = tokio::task::spawn_blocking({
        let path = path.clone();
        move || load(&path)
    })
    .await;
    let outcome = match read {
        Ok((config, read)) => {
            *watched = read;
            match config {
                Ok(config) => live.apply(config),
                Err(e) => Outcome::Refused { errors: e.lines() },
            }
        }
        Err(e) => Outcome::Refused {
            errors: vec![format!("reading the config failed: {e}")],
        },
    };
    record(&path, &outcome, &live.metrics);
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::MapEnv;

    const KEY: &str = "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY";

    /// How many times each file was read.
    fn reads(watched: &Watched) -> HashMap<PathBuf, usize> {
        let mut count = HashMap::new();
        for (path, _) in &watched.files {
            *count.entry(path.clone()).or_default() += 1;
        }
        count
    }

    fn config(extra: &str) -> Config {
        let yaml = format!(
            "public_url: http://localhost:8080\nroutes: [{{path: /, upstream: 'http://a', auth: none}}]\n{extra}"
        );
        Config::load(&yaml, &MapEnv::default()).unwrap()
    }

    #[test]
    fn restart_keys_keep_their_running_values_and_are_named() {
        let running = config("listen: 127.0.0.1:8080\nworkers: 2");
        let new = config(
            "listen: 127.0.0.1:9999\nworkers: 4\nlimits: {idle_timeout: 5s}\nsession: {idle_timeout: 10m}\nlog: {level: debug, format: json}",
        );
        let (kept, names) = keep_running(&running, new);
        assert_eq!(names, ["listen", "workers", "limits", "log.format"]);
        assert_eq!(kept.listen, running.listen);
        assert_eq!(kept.workers, 2);
        assert_eq!(kept.limits, running.limits);
        assert_eq!(kept.log.format, running.log.format);
        // The rest is the new file's.
        assert_eq!(kept.session.idle_timeout, Duration::from_secs(600));
        assert_eq!(kept.log.level, "debug");
    }

    #[test]
    fn an_unchanged_file_names_no_key() {
        let (_, names) = keep_running(&config(""), config(""));
        assert!(names.is_empty(), "{names:?}");
    }

    #[tokio::test]
    async fn the_idp_is_kept_while_the_oidc_section_is_unchanged() {
        let with = |secret: &str, level: &str| {
            config(&format!(
                "oidc: {{issuer: 'http://localhost:9', client_id: c, client_secret: {secret}}}\n\
                 cookie: {{keys: [{{id: '1', secret: {KEY}}}]}}\nlog: {{level: {level}}}"
            ))
        };
        let store: Arc<dyn SessionStore> = Arc::new(crate::session::MemoryStore::new());
        let live = Live::start(
            Arc::new(with("s1", "info")),
            store,
            Clock::manual(),
            2,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let first = live.idp().unwrap();

        let outcome = live.apply(with("s1", "debug"));
        assert_eq!(
            outcome,
            Outcome::Applied {
                needs_restart: vec![]
            }
        );
        assert_eq!(live.config().log.level, "debug");
        assert!(Arc::ptr_eq(&first, &live.idp().unwrap()), "same oidc: same Idp");

        live.apply(with("s2", "debug"));
        let second = live.idp().unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "a new client secret: a new Idp");
        assert_eq!(second.config.client_secret.as_ref().unwrap().expose(), "s2");

        live.apply(config(""));
        assert!(live.idp().is_none(), "no oidc section: no login");
    }

    #[test]
    fn outcome_labels_are_the_counters() {
        assert_eq!(
            Outcome::Applied {
                needs_restart: vec![]
            }
            .label(),
            "success"
        );
        assert_eq!(Outcome::Refused { errors: vec![] }.label(), "failure");
    }

    #[test]
    fn the_config_and_each_secret_file_are_watched_and_a_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, format!("{KEY}\n")).unwrap();
        let path = dir.path().join("cloakroom.yaml");
        std::fs::write(
            &path,
            format!(
                "public_url: http://localhost:8080\ncookie: {{keys: [{{id: '1', secret_file: {}}}]}}\nroutes: [{{path: /, upstream: 'http://a', auth: none}}]\n",
                key.display()
            ),
        )
        .unwrap();
        let (config, watched) = load(&path);
        assert_eq!(config.unwrap().cookie.keys.len(), 1);
        assert_eq!(
            reads(&watched),
            HashMap::from([(path.clone(), 1), (key.clone(), 1)])
        );
        assert_eq!(watched.now(), watched, "nothing changed");

        std::fs::write(&key, "another\n").unwrap();
        assert_ne!(watched.now(), watched, "a secret file changed");
    }

    #[cfg(unix)]
    #[test]
    fn a_kubernetes_style_symlink_swap_is_seen() {
        // <dir>/cloakroom.yaml -> ..data/cloakroom.yaml, ..data -> ..v1;
        // an update writes ..v2 and renames a new ..data link over the old.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (version, level) in [("..v1", "info"), ("..v2", "debug")] {
            std::fs::create_dir(d.join(version)).unwrap();
            std::fs::write(
                d.join(version).join("cloakroom.yaml"),
                format!("public_url: http://localhost:8080\nlog: {{level: {level}}}\nroutes: [{{path: /, upstream: 'http://a', auth: none}}]\n"),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/cloakroom.yaml", d.join("cloakroom.yaml")).unwrap();
        let path = d.join("cloakroom.yaml");
        let (config, watched) = load(&path);
        assert_eq!(config.unwrap().log.level, "info");

        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        let now = watched.now();
        assert_ne!(now, watched);
        assert_eq!(load(&path).0.unwrap().log.level, "debug");
    }

    #[test]
    fn a_file_that_does_not_load_lists_what_check_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            "public_url: http://localhost:8080\nroutes: [{path: /, upstream: nope, auth: none, timeuot: 1s}]\n",
        )
        .unwrap();
        let (config, watched) = load(&path);
        let lines = config.unwrap_err().lines();
        assert_eq!(
            lines,
            [
                "routes[0].upstream: not an absolute http(s) URL",
                "routes[0].timeuot: unknown key",
            ]
        );
        assert_eq!(reads(&watched).len(), 1);
        let (missing, _) = load(&dir.path().join("gone.yaml"));
        assert!(missing.unwrap_err().lines()[0].starts_with("cannot read "));
    }
}
