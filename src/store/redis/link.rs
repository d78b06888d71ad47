//! Where the primary is, and the connections to it.
//!
//! The primary is the server `store.redis_url` names, or the one Redis Sentinel names
//! (`store.redis_sentinels`), looked up again on every connect so a failover is followed.
//! Commits that `WAIT` for replicas each run on a connection of their own: `WAIT` blocks
//! the connection it is sent on, and counts the writes made on it (`replicated`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, TlsMode};

use super::super::StoreError;
use super::{COMMAND_TIMEOUT, RedisStore, connection_config};
use crate::config::{RedisConfig, Replication, SentinelConfig};

/// Idle commit connections kept for the next commits; more are opened when needed.
const IDLE_COMMIT_CONNECTIONS: usize = 16;

/// How the primary is found.
pub(super) enum Target {
    /// The server of `store.redis_url`.
    Direct(Client),
    /// Asked of the Sentinels on every connect; the lock: the client caches its
    /// connections to them.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// The primary of the current link and the commit connections opened to it.
pub(super) struct Primary {
    /// `None` while disconnected. The generation tells connections of an earlier link
    /// (perhaps to a demoted primary) from current ones.
    current: ArcSwapOption<(u64, Client)>,
    generations: AtomicU64,
    idle: Mutex<Vec<(u64, MultiplexedConnection)>>,
    /// The address of the last primary connected to.
    last_address: Mutex<Option<String>>,
}

/// A commit connection, handed back after a successful commit.
pub(super) struct Lease {
    generation: u64,
    pub(super) conn: MultiplexedConnection,
}

// === impl Target ===

impl Target {
    /// A client for the URL's server, or one asking `sentinel` for the primary (the URL
    /// then supplies only scheme, credentials and database).
    pub(super) fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        let certificates = certificates(config)?;
        let Some(sentinel) = &config.sentinel else {
            let url = config.url.expose();
            let client = match certificates {
                Some(certificates) => Client::build_with_tls(url, certificates),
                None => Client::open(url),
            };
            return Ok(Self::Direct(client.map_err(StoreError::RedisClient)?));
        };
        let client = sentinel_client(config, sentinel, certificates)?;
        Ok(Self::Sentinel(tokio::sync::Mutex::new(client)))
    }

    /// Whether the primary can change under this instance (and so is checked with `ROLE`).
    pub(super) fn follows_failovers(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }

    /// A client for the current primary.
    pub(super) async fn primary(&self) -> redis::RedisResult<Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

/// The rustls roots for `rediss://`: the system's, or `store.redis_ca_file`'s.
fn certificates(config: &RedisConfig) -> Result<Option<redis::TlsCertificates>, StoreError> {
    if !config.url.is_tls() {
        return Ok(None);
    }
    // redis builds its rustls config from the process-wide provider: make that the
    // aws-lc-rs every other TLS config of the gateway uses. Already set is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root_cert = config
        .ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| StoreError::RedisCaFile {
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert,
    }))
}

/// The URL's credentials and database go to the primary; TLS, when the URL asks for it,
/// to the Sentinels too.
fn sentinel_client(
    config: &RedisConfig,
    sentinel: &SentinelConfig,
    certificates: Option<redis::TlsCertificates>,
) -> Result<SentinelClient, StoreError> {
    let url = config.url.expose().into_connection_info();
    let info = url.map_err(StoreError::RedisClient)?;
    let settings = info.redis_settings();
    let tls = certificates.is_some();
    let addresses = sentinel.sentinels.iter().map(|(host, port)| match tls {
        true => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        false => ConnectionAddr::Tcp(host.clone(), *port),
    });
    let mut builder =
        SentinelClientBuilder::new(addresses, &sentinel.master_name, SentinelServerType::Master)
            .map_err(StoreError::RedisClient)?
            .set_client_to_redis_db(settings.db());
    if let Some(username) = settings.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = settings.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates);
    }
    builder.build().map_err(StoreError::RedisClient)
}

// === impl Primary ===

impl Primary {
    pub(super) fn new() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            generations: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            last_address: Mutex::new(None),
        }
    }

    /// Makes `client` the primary of the new link; returns the previous primary's address
    /// when this is another one (a failover was followed).
    pub(super) fn connected(&self, client: Client) -> Option<String> {
        let address = client.get_connection_info().addr().to_string();
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        self.current.store(Some((generation, client).into()));
        self.idle_connections().clear();
        let mut last = self.last_address.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.replace(address.clone());
        previous.filter(|previous| *previous != address)
    }

    /// Drops every commit connection: the next link may lead elsewhere.
    pub(super) fn disconnected(&self) {
        self.current.store(None);
        self.idle_connections().clear();
    }

    /// An idle commit connection of the current link, or a new one.
    pub(super) async fn lease(&self, config: &AsyncConnectionConfig) -> Result<Lease, StoreError> {
        let current = self.current.load_full().ok_or(StoreError::Unavailable)?;
        let (generation, client) = &*current;
        let idle = self.idle_connections().pop();
        if let Some((held, conn)) = idle.filter(|(held, _)| held == generation) {
            return Ok(Lease {
                generation: held,
                conn,
            });
        }
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        Ok(Lease {
            generation: *generation,
            conn,
        })
    }

    /// A client for the current primary, for connections outside the commit pool.
    pub(super) fn client(&self) -> Result<Client, StoreError> {
        let current = self.current.load();
        let (_, client) = current.as_deref().ok_or(StoreError::Unavailable)?;
        Ok(client.clone())
    }

    /// Keeps a connection that just served a commit, unless its link is gone.
    pub(super) fn give_back(&self, lease: Lease) {
        let current = self.current.load();
        let same_link = current
            .as_deref()
            .is_some_and(|(g, _)| *g == lease.generation);
        let mut idle = self.idle_connections();
        if same_link && idle.len() < IDLE_COMMIT_CONNECTIONS {
            idle.push((lease.generation, lease.conn));
        }
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<(u64, MultiplexedConnection)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// `write` on the command connection; or, with `store.redis_min_replicas`, on a
    /// connection of its own followed by `WAIT`, with how many replicas acknowledged.
    pub(super) async fn replicated<T>(
        &self,
        write: impl AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, StoreError>,
    ) -> Result<(T, Option<u64>), StoreError> {
        let Replication {
            min_replicas,
            wait_timeout,
        } = self.replication;
        if min_replicas == 0 {
            return Ok((write(&mut self.command_connection()?).await?, None));
        }
        let config = connection_config(COMMAND_TIMEOUT + wait_timeout);
        let mut lease = self.primary.lease(&config).await?;
        let written = write(&mut lease.conn).await?;
        let acknowledged = redis::cmd("WAIT")
            .arg(min_replicas)
            .arg(u64::try_from(wait_timeout.as_millis()).unwrap_or(u64::MAX))
            .query_async::<u64>(&mut lease.conn)
            .await;
        // The write is in: a `WAIT` that fails counts as no replica, not as no commit.
        let acknowledged = match acknowledged {
            Ok(acknowledged) => {
                self.primary.give_back(lease);
                acknowledged
            }
            Err(error) => {
                tracing::warn!(%error, "WAIT failed after a commit");
                0
            }
        };
        Ok((written, Some(acknowledged)))
    }
}
