//! cloakroom: a Backend-for-Frontend token-handler reverse proxy.
//!
//! [`run`] is what `main` and the tests call: it takes bound listeners, a
//! validated [`Config`] and a shutdown future. [`run_with`] also takes the
//! clock and what reloads the config ([`reload`]).

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub(crate) mod client_module;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod error;
pub mod metrics;
pub mod oidc;
pub mod path;
pub(crate) mod random;
pub(crate) mod refresh;
pub mod reload;
pub(crate) mod rescue;
pub(crate) mod revoker;
pub mod routes;
pub mod secret;
pub(crate) mod security_headers;
pub(crate) mod server;
pub mod session;
pub mod stack;
pub(crate) mod static_files;
pub mod telemetry;
pub(crate) mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use crate::clock::Clock;
pub use crate::config::Config;
use crate::config::StoreConfig;
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::session::{CachedStore, MeasuredStore, MemoryStore, RedisStore, SessionStore, TracedStore};

/// Runs cloakroom until `shutdown` resolves and in-flight requests drain.
pub async fn run(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    run_with_clock(listener, admin_listener, config, Clock::system(), shutdown).await
}

/// [`run`] with expiry judged by `clock`: tests move it forward to reach an
/// expiry without waiting for it.
pub async fn run_with_clock(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let options = Options { clock, reload: None };
    run_with(listener, admin_listener, config, options, shutdown).await
}

/// How [`run_with`] runs, besides its config. The default: the system
/// clock, no reloads.
#[derive(Default)]
pub struct Options {
    /// What every expiry is judged by.
    pub clock: Clock,
    /// The config file to reload from and what asks for reloads; `None`:
    /// the config never changes.
    pub reload: Option<reload::Triggers>,
}

/// [`run`] with [`Options`].
pub async fn run_with(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    // Process-wide, created before anything built from the config, so
    // counts survive a reload.
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(config);
    if config.insecure_dev_mode {
        reload::warn_insecure_dev_mode(&config);
    }
    // What `cloakroom check --strict` refuses (the dev switch said above).
    for finding in config::posture::warnings(&config) {
        if finding.key != "insecure_dev_mode" {
            tracing::warn!(key = %finding.key, source = finding.source, "{}", finding.reason);
        }
    }
    let store: Arc<dyn SessionStore> = match &config.session.store {
        StoreConfig::Memory => Arc::new(MemoryStore::new()),
        StoreConfig::Redis(redis) => {
            let store = RedisStore::connect(redis).await?;
            match redis.local_cache {
                Some(cache) => Arc::new(CachedStore::new(store, cache.max_entries)),
                None => Arc::new(store),
            }
        }
    };
    let store: Arc<dyn SessionStore> = match (telemetry::traces_on(), &config.session.store) {
        (false, _) => store,
        (true, StoreConfig::Memory) => Arc::new(TracedStore::new(store, "memory")),
        (true, StoreConfig::Redis(_)) => Arc::new(TracedStore::new(store, "redis")),
    };
    let store: Arc<dyn SessionStore> = Arc::new(MeasuredStore::new(store, metrics.clone()));
    // One App (and so one upstream connection pool) per worker thread.
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let live = Arc::new(reload::Live::start(
        config.clone(),
        store,
        options.clock,
        workers,
        metrics.clone(),
    )?);
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        routes = config.routes.len(),
        workers,
        "cloakroom started"
    );

    // One shutdown signal, seen by both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let reloads = options
        .reload
        .map(|triggers| tokio::spawn(reload::run(live.clone(), triggers, stopped(stop_rx.clone()))));

    // The admin listener outlives the public one's drain, so `/readyz`
    // answers 503 (draining) until the last in-flight request is done.
    let (drained, admin_stop) = tokio::sync::oneshot::channel::<()>();
    let limits = config.limits.clone();
    let admin = tokio::spawn({
        let limits = limits.clone();
        let draining = stop_rx.clone();
        let stop = async move {
            let _ = admin_stop.await;
        };
        let live = live.clone();
        async move {
            let handler = move |request, _peer| {
                admin::handle(
                    request,
                    live.store().clone(),
                    live.idp(),
                    live.admin_api(),
                    metrics.clone(),
                    *draining.borrow(),
                )
            };
            server::serve(admin_listener, &limits, &[], vec![handler], stop).await;
        }
    });
    let handlers = live
        .apps()
        .iter()
        .cloned()
        .map(|app| {
            move |request, peer| {
                let app = app.clone();
                // Boxed: the request future is large, and hyper moves the
                // service future around by value; a pointer moves cheaply.
                Box::pin(async move { app.handle(request, peer).await })
            }
        })
        .collect();
    server::serve(
        listener,
        &limits,
        &config.trusted_proxies,
        handlers,
        stopped(stop_rx),
    )
    .await;
    let _ = drained.send(());
    admin.await?;
    if let Some(reloads) = reloads {
        reloads.await?;
    }
    tracing::info!("cloakroom stopped");
    if telemetry::traces_on() {
        // The spans of the last requests, before the process ends.
        let _ = tokio::task::spawn_blocking(telemetry::flush).await;
    }
    Ok(())
}
