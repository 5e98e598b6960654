//! The connection to Redis, whatever its shape: one server, a Cluster, or a
//! primary found through Sentinel; in plain TCP or TLS.
//!
//! Every shape is multiplexed (one connection per node carries every
//! request) and reconnects on its own. Behind Sentinel, a broken connection,
//! a `READONLY` reply (the primary was demoted) or silence past the command
//! timeout (a partition) drops the connection, and the next command asks
//! the sentinels for the current primary (RD-06).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionInfo, ErrorKind, FromRedisValue,
    IntoConnectionInfo, RedisError, RedisResult, ScriptInvocation, ServerErrorKind, TlsCertificates, TlsMode,
    Value,
};

use crate::config::{RedisConfig, RedisTopology};
use crate::error::BoxError;

#[derive(Clone)]
pub(super) enum Link {
    Single {
        manager: ConnectionManager,
        client: Arc<Client>,
    },
    Cluster {
        connection: ClusterConnection,
        /// Subscribers take the seeds in turn, so one dead seed is skipped.
        seeds: Arc<[Client]>,
        next_seed: Arc<AtomicUsize>,
    },
    Sentinel(Arc<SentinelPrimary>),
}

/// The primary named by the sentinels, and a connection to it while it lasts.
pub(super) struct SentinelPrimary {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    connection: Mutex<Option<MultiplexedConnection>>,
    options: AsyncConnectionConfig,
    /// A primary silent for this long is presumed gone (a partition).
    timeout: Duration,
}

// === impl Link ===

impl Link {
    pub(super) async fn connect(config: &RedisConfig) -> Result<Self, BoxError> {
        let certificates = certificates(config);
        Ok(match &config.topology {
            RedisTopology::Standalone(url) => {
                let client = client(data_node(url.expose(), config)?, certificates)?;
                // Few, quick retries: a refused certificate or password fails
                // the start at once, and every failing request tries again.
                let options = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1))
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.command_timeout));
                let manager = client.get_connection_manager_with_config(options).await?;
                Link::Single {
                    manager,
                    client: Arc::new(client),
                }
            }
            RedisTopology::Cluster(seeds) => {
                let seeds = seeds
                    .iter()
                    .map(|s| data_node(s.expose(), config))
                    .collect::<RedisResult<Vec<_>>>()?;
                let clients = seeds
                    .iter()
                    .map(|s| client(s.clone(), certificates.clone()))
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                let connection = builder.build()?.get_async_connection().await?;
                Link::Cluster {
                    connection,
                    seeds: clients.into(),
                    next_seed: Arc::default(),
                }
            }
            RedisTopology::Sentinel { master_name, nodes } => {
                let primary = SentinelPrimary::new(config, master_name, nodes, certificates)?;
                Link::Sentinel(Arc::new(primary))
            }
        })
    }

    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Link::Single { manager, .. } => cmd.query_async(&mut manager.clone()).await,
            Link::Cluster { connection, .. } => cmd.query_async(&mut connection.clone()).await,
            Link::Sentinel(primary) => {
                primary
                    .run(|mut c| async move { cmd.query_async(&mut c).await })
                    .await
            }
        }
    }

    /// Runs `cmd` on every primary: each node of a Cluster's own answer, or
    /// the one primary's.
    pub(super) async fn query_primaries<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<Vec<T>> {
        let Link::Cluster { connection, .. } = self else {
            return Ok(vec![self.query(cmd).await?]);
        };
        let every_primary = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        match connection
            .clone()
            .route_command(cmd.clone(), every_primary)
            .await?
        {
            Value::Map(answers) => answers
                .into_iter()
                .map(|(_, answer)| Ok(T::from_redis_value(answer)?))
                .collect(),
            answer => Ok(vec![T::from_redis_value(answer)?]),
        }
    }

    pub(super) async fn invoke<T: FromRedisValue>(&self, script: &ScriptInvocation<'_>) -> RedisResult<T> {
        match self {
            Link::Single { manager, .. } => script.invoke_async(&mut manager.clone()).await,
            Link::Cluster { connection, .. } => script.invoke_async(&mut connection.clone()).await,
            Link::Sentinel(primary) => {
                primary
                    .run(|mut c| async move { script.invoke_async(&mut c).await })
                    .await
            }
        }
    }

    /// A client for one data node, for a pub/sub subscription. In a
    /// Cluster, published messages reach every node, so any seed will do.
    pub(super) async fn subscriber(&self) -> RedisResult<Client> {
        match self {
            Link::Single { client, .. } => Ok(Client::clone(client)),
            Link::Cluster { seeds, next_seed, .. } => {
                Ok(seeds[next_seed.fetch_add(1, Ordering::Relaxed) % seeds.len()].clone())
            }
            Link::Sentinel(primary) => primary.sentinels.lock().await.async_get_client().await,
        }
    }
}

// === impl SentinelPrimary ===

impl SentinelPrimary {
    fn new(
        config: &RedisConfig,
        master_name: &str,
        nodes: &[crate::secret::Secret<String>],
        certificates: Option<TlsCertificates>,
    ) -> RedisResult<Self> {
        let nodes = nodes
            .iter()
            .map(|n| n.expose().as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let tls = nodes
            .iter()
            .any(|n| matches!(n.addr(), redis::ConnectionAddr::TcpTls { .. }));
        let mut builder = SentinelClientBuilder::new(
            nodes.iter().map(|n| n.addr().clone()),
            master_name,
            SentinelServerType::Master,
        )?;
        // The sentinels' own credentials come from their URLs.
        if let Some(node) = nodes.iter().find(|n| n.redis_settings().password().is_some()) {
            let settings = node.redis_settings();
            if let Some(user) = settings.username() {
                builder = builder.set_client_to_sentinel_username(user);
            }
            builder = builder.set_client_to_sentinel_password(settings.password().unwrap_or_default());
        }
        if let Some(user) = &config.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &config.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if tls {
            // TLS to the sentinels means TLS to the primary they name.
            builder = builder
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_certificates(certificates);
            }
        }
        Ok(Self {
            sentinels: tokio::sync::Mutex::new(builder.build()?),
            connection: Mutex::new(None),
            options: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout)),
            timeout: config.command_timeout,
        })
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The connection to the current primary, asking the sentinels for it
    /// if there is none (one caller asks; the others wait and share it).
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let mut sentinels = self.sentinels.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let primary = sentinels.async_get_client().await?;
        let connection = primary
            .get_multiplexed_async_connection_with_config(&self.options)
            .await?;
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the primary. A reply that says the connection no
    /// longer leads to a working primary, or silence beyond the command
    /// timeout, drops the connection: the next command asks the sentinels.
    async fn run<T, F, Fut>(&self, command: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async { command(self.connection().await?).await };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))),
        };
        if let Err(e) = &result {
            if primary_lost(e) {
                tracing::debug!(error = %e, "Redis primary lost; asking the sentinels again");
                *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        result
    }
}

fn primary_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// A data node's address with the configured credentials, which win over
/// any in the URL.
fn data_node(url: &str, config: &RedisConfig) -> RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    Ok(info.set_redis_settings(settings))
}

fn client(info: ConnectionInfo, certificates: Option<TlsCertificates>) -> RedisResult<Client> {
    match certificates {
        Some(certificates) if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) => {
            Client::build_with_tls(info, certificates)
        }
        _ => Client::open(info),
    }
}

/// The configured CA and client certificate; `None` trusts the system roots.
fn certificates(config: &RedisConfig) -> Option<TlsCertificates> {
    let tls = &config.tls;
    if tls.ca.is_none() && tls.cert.is_none() {
        return None;
    }
    let client_tls = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: cert.clone().into_bytes(),
            client_key: key.expose().clone().into_bytes(),
        }),
        _ => None,
    };
    Some(TlsCertificates {
        client_tls,
        root_cert: tls.ca.clone().map(String::into_bytes),
    })
}
