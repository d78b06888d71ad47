//! A highly available Redis for tests: one primary, its replicas and Redis Sentinels,
//! each a real process on a free loopback port, stopped by PID (SIGKILL) on drop.
//! Sentinel notices a dead primary within ~1 s and fails over within a few.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    Gateway, GatewayBuilder, RedisServer, Upstream, free_port, gateway, redis_server, until,
};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "mymaster";

/// A `redis-server --sentinel` on a free loopback port.
pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// A primary, its replicas and the Sentinels watching them.
pub struct Ha {
    pub primary: RedisServer,
    pub replicas: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl Ha {
    /// Starts the primary, `replicas` replicas and `sentinels` Sentinels (quorum: a
    /// majority), and waits until every Sentinel sees every replica and the other
    /// Sentinels (before that a failover cannot happen). `None` without redis-server.
    pub async fn start(replicas: usize, sentinels: usize) -> Option<Ha> {
        let primary = redis_server().start().await?;
        let mut ha = Ha {
            replicas: Vec::new(),
            sentinels: Vec::new(),
            primary,
        };
        for _ in 0..replicas {
            let replica = redis_server().replica_of(ha.primary.port).start().await?;
            ha.replicas.push(replica);
        }
        for _ in 0..sentinels {
            ha.sentinels
                .push(Sentinel::start(ha.primary.port, sentinels / 2 + 1).await);
        }
        ha.until_replicas_linked(replicas).await;
        for sentinel in &ha.sentinels {
            until(
                "Sentinels see the topology",
                Duration::from_secs(30),
                || sentinel.sees(replicas, sentinels - 1),
            )
            .await;
        }
        Some(ha)
    }

    /// Waits until the current primary has `count` replicas online.
    pub async fn until_replicas_linked(&self, count: usize) {
        let port = self.primary.port;
        until("replicas linked", Duration::from_secs(20), || async move {
            replication_info(port)
                .await
                .is_some_and(|info| online_replicas(&info) == count)
        })
        .await;
    }

    /// `n` gateways in front of `upstream`, finding the primary through the Sentinels.
    pub async fn fleet(&self, upstream: &Upstream, n: usize) -> Vec<Gateway> {
        let mut gateways = Vec::new();
        for _ in 0..n {
            gateways.push(gateway(upstream).sentinels(self).start().await);
        }
        gateways
    }

    /// `store.redis_sentinels` for a gateway: every Sentinel.
    pub fn sentinel_list(&self) -> String {
        let entries: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("\"127.0.0.1:{}\"", s.port))
            .collect();
        format!("[{}]", entries.join(", "))
    }

    /// The port of the primary the Sentinels name now (first answering Sentinel).
    pub async fn primary_port(&self) -> Option<u16> {
        for sentinel in &self.sentinels {
            if let Some(port) = sentinel.primary_port().await {
                return Some(port);
            }
        }
        None
    }
}

impl GatewayBuilder {
    /// `store.backend = "redis"` through `ha`'s Sentinels. The URL's host names nothing
    /// that exists: only its scheme and database are used.
    pub fn sentinels(self, ha: &Ha) -> Self {
        self.redis_url("redis://no-such-host.invalid:1/0")
            .set(&format!("store.redis_sentinels = {}", ha.sentinel_list()))
            .set(&format!("store.redis_master_name = \"{MASTER_NAME}\""))
    }
}

impl Sentinel {
    async fn start(primary: u16, quorum: usize) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} {quorum}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                dir.path().display(),
                dir.path().join("sentinel.log").display(),
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let sentinel = Sentinel {
            child: Some(child),
            port,
            _dir: dir,
        };
        until("Sentinel listens", Duration::from_secs(10), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        sentinel
    }

    /// A connection to this Sentinel, if it answers.
    pub async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).ok()?;
        client.get_multiplexed_async_connection().await.ok()
    }

    /// Whether this Sentinel knows `replicas` replicas and `others` other Sentinels.
    async fn sees(&self, replicas: usize, others: usize) -> bool {
        let Some(conn) = self.connection().await else {
            return false;
        };
        let count = |what: &'static str| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("SENTINEL")
                    .arg(what)
                    .arg(MASTER_NAME)
                    .query_async::<Vec<redis::Value>>(&mut conn)
                    .await
                    .map_or(0, |list| list.len())
            }
        };
        count("replicas").await == replicas && count("sentinels").await == others
    }

    async fn primary_port(&self) -> Option<u16> {
        let mut conn = self.connection().await?;
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .ok()?;
        port.parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `INFO replication` of the server on `port`, if it answers.
pub async fn replication_info(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()
}

/// Replicas in state `online` (done with their initial sync) in `INFO replication`.
pub fn online_replicas(info: &str) -> usize {
    info.lines()
        .filter(|line| line.starts_with("slave") && line.contains("state=online"))
        .count()
}
