//! Where cutoffs, preserved sessions, revoked identity-provider sessions, scheduled
//! logouts, audit records and the events outbox are kept across restarts.
//!
//! The request path never calls the store: it is read once at start into
//! `crate::sessions` and written by the one write path there, which answers only after
//! the commit. Each commit also queues its audit record in the outbox for the webhooks
//! that want it, in the same transaction; `crate::events` claims and sends them. This room
//! knows nothing of memory, requests or HTTP.
//!
//! Two things are kept here and never loaded into memory, because no request reads them:
//! the signals already accepted (checked inside each commit, so a replay is refused
//! atomically across a fleet) and the SCIM id -> user mapping (read by a SCIM `DELETE`).

use std::time::Duration;

use crate::config::StoreConfig;

mod decode;
mod embedded;
mod outbox;
mod record;
mod redis;
mod schedule;

pub use embedded::EmbeddedStore;
pub use outbox::{Claimed, Delivery, Outbox};
pub use record::{
    Action, AuditRecord, Category, Change, ClaimRule, Cutoff, CutoffCounts, Effect, PolicyDocument,
    Preserved, Record, Revoked, Scope, StoredPolicy,
};
pub use redis::{Published, RedisStore, Subscription};
pub use schedule::{Schedule, ScheduledLogout, Scheduler};

/// Records handed from a blocking load to the task applying them, per message: a load
/// streams instead of collecting every record first.
const LOAD_BATCH: usize = 1024;

/// The configured store.
pub enum Store {
    /// redb, on a file (`embedded`) or in memory (`memory`, for tests).
    Embedded(EmbeddedStore),
    /// One Redis shared by a fleet; kept in step by `crate::sessions::keep_in_sync`. Boxed: it is large
    /// and there is one per process.
    Redis(Box<RedisStore>),
}

/// A SCIM resource and the user it names, remembered for a later `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScimUser {
    /// The template's `{workspace}` or `signals.scim.workspace`; `None`: subject-wide.
    pub workspace: Option<String>,
    /// The SCIM resource `id`.
    pub id: String,
    /// Its `signals.scim.subject_attribute`.
    pub user: String,
}

/// What a commit left in the store.
#[derive(Debug, Clone)]
pub struct Committed {
    /// One record per effect that memory enforces, in order: what memory applies and the
    /// fleet receives.
    pub records: Vec<Record>,
    /// The audit record as stored.
    pub audit: AuditRecord,
    /// Gateways that received the change (shared stores only), this one included.
    pub notified: Option<u64>,
}

/// The store could not do what was asked; nothing was changed (except `Unreplicated`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.path: {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("store.path: cannot create directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("store operation failed: {0}")]
    Redb(#[from] redb::Error),
    #[error("store holds an unreadable record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("store task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("store.redis_ca_file: {path}: {source}")]
    RedisCaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("store.redis_url: {0}")]
    RedisClient(#[source] ::redis::RedisError),
    #[error("not connected to Redis")]
    Unavailable,
    #[error("Redis closed the subscription")]
    Disconnected,
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A scan's own connection (not redis-rs's) failed, or read a reply it cannot take.
    #[error("redis scan: {0}")]
    RedisScan(String),
    #[error("store.redis_ca_file: {0}")]
    RedisRoots(#[source] crate::tls::RootsError),
    /// `ROLE` says the server is no longer the primary (Sentinel demoted it).
    #[error("the Redis server is no longer the primary")]
    Demoted,
    /// Committed on the primary, but fewer replicas than `store.redis_min_replicas`
    /// acknowledged it in time: it may be lost by a failover, so it is not reported as
    /// done. Memory enforces it anyway (never less than the store holds).
    #[error(
        "{acknowledged} of {wanted} replicas acknowledged the commit within store.redis_wait_timeout_ms"
    )]
    Unreplicated {
        committed: Box<Committed>,
        acknowledged: u64,
        wanted: u32,
    },
    /// Not a failure: the change carries a signal the store already accepted, so it was
    /// not written again.
    #[error("the signal was accepted before; nothing changed")]
    Replayed,
    /// Not a failure either: the scheduled logout a change is about is no longer pending
    /// (cancelled, replaced, or applied by another instance), so nothing was written.
    #[error("no such scheduled logout is pending; nothing changed")]
    NotPending,
    /// Not a failure of the store: the policy changed since the version the caller read
    /// (`If-Match`), so nothing was written.
    #[error("the policy changed since it was read; nothing changed")]
    PolicyChanged,
}

/// redb reports each kind of failure with its own type; all of them mean "not committed".
macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self::Redb(error.into())
            }
        })*
    };
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A JSON pair as one key: any two texts (or a missing first one) map to exactly one key,
/// in both stores.
fn pair_field(
    first: &impl serde::Serialize,
    second: &impl serde::Serialize,
) -> Result<String, StoreError> {
    Ok(serde_json::to_string(&(first, second))?)
}

// === impl Committed ===

impl Committed {
    /// The first cutoff the change left, if it moved one.
    pub fn cutoff(&self) -> Option<&Cutoff> {
        Record::first_cutoff(&self.records)
    }
}

// === impl StoreError ===

impl StoreError {
    /// An I/O failure of the embedded file: redb refuses every later operation until the
    /// file is opened again.
    fn needs_reopen(&self) -> bool {
        matches!(
            self,
            Self::Redb(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

// === impl Store ===

impl Store {
    /// Opens (creating if needed) the configured store, whose commits queue their audit
    /// records for `outbox`'s webhooks. A Redis store is not connected yet:
    /// `crate::sessions::keep_in_sync` does that, and keeps retrying.
    pub async fn open(config: &StoreConfig, outbox: Outbox) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Embedded { path } => {
                let path = path.clone();
                let open = move || EmbeddedStore::open(&path, outbox);
                Ok(Self::Embedded(tokio::task::spawn_blocking(open).await??))
            }
            StoreConfig::Memory => {
                tracing::warn!(
                    "store.backend = \"memory\": cutoffs and audit are lost on restart; for tests only"
                );
                Ok(Self::Embedded(EmbeddedStore::in_memory(outbox)?))
            }
            StoreConfig::Redis(config) => {
                Ok(Self::Redis(Box::new(RedisStore::open(config, outbox)?)))
            }
        }
    }

    /// The store shared by a fleet, if this is one.
    pub fn shared(&self) -> Option<&RedisStore> {
        match self {
            Self::Embedded(_) => None,
            Self::Redis(store) => Some(store),
        }
    }

    /// How many cutoffs each table holds (a constant-time read in both stores).
    pub async fn cutoff_counts(&self) -> Result<CutoffCounts, StoreError> {
        match self {
            Self::Embedded(store) => store.blocking(EmbeddedStore::cutoff_counts).await,
            Self::Redis(store) => store.cutoff_counts().await,
        }
    }

    /// Hands every stored cutoff to `apply`, streaming (never all in memory at once);
    /// returns how many there were.
    pub async fn load_into(&self, mut apply: impl FnMut(Record)) -> Result<usize, StoreError> {
        let store = match self {
            Self::Embedded(store) => store,
            Self::Redis(store) => return store.load_into(apply).await,
        };
        let (batches, mut received) = tokio::sync::mpsc::channel(4);
        let reader = store.blocking(move |db| EmbeddedStore::load(db, LOAD_BATCH, &batches));
        let mut count = 0;
        while let Some(batch) = received.recv().await {
            count += batch.len();
            batch.into_iter().for_each(&mut apply);
        }
        reader.await?;
        Ok(count)
    }

    /// Commits every effect of `change`, its audit record and the record's outbox entries
    /// atomically.
    pub async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        match self {
            Self::Embedded(store) => store.commit(change).await,
            Self::Redis(store) => store.commit(&change).await,
        }
    }

    /// Claims up to `limit` of `webhook`'s events that are due: each its group's oldest.
    /// In a fleet the claim is a lease of `lease`, after which another instance may take
    /// the event over.
    pub async fn claim_deliveries(
        &self,
        webhook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        match self {
            Self::Embedded(store) => store.claim(webhook, limit).await,
            Self::Redis(store) => store.claim(webhook, limit, lease).await,
        }
    }

    /// Removes a delivered (or dropped) event; the next one of its group falls due now.
    pub async fn finish_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        match self {
            Self::Embedded(store) => store.finish(delivery).await,
            Self::Redis(store) => store.finish(delivery).await,
        }
    }

    /// Releases a failed event, to be tried again `after` from now.
    pub async fn retry_delivery(
        &self,
        delivery: &Delivery,
        after: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Embedded(store) => store.retry(delivery, after).await,
            Self::Redis(store) => store.retry(delivery, after).await,
        }
    }

    /// Events of `webhook` not delivered (nor dropped) yet.
    pub async fn pending_deliveries(&self, webhook: &str) -> Result<u64, StoreError> {
        match self {
            Self::Embedded(store) => store.pending(webhook).await,
            Self::Redis(store) => store.pending(webhook).await,
        }
    }

    /// Remembers which user each SCIM resource is (idempotent: the newest answer wins).
    pub async fn remember_scim_users(&self, users: Vec<ScimUser>) -> Result<(), StoreError> {
        match self {
            Self::Embedded(store) => {
                store
                    .blocking(move |db| EmbeddedStore::remember_scim_users(db, &users))
                    .await
            }
            Self::Redis(store) => store.remember_scim_users(&users).await,
        }
    }

    /// The user remembered for SCIM resource `id` of `workspace`.
    pub async fn scim_user(
        &self,
        workspace: Option<&str>,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Self::Embedded(store) => {
                let (workspace, id) = (workspace.map(str::to_string), id.to_string());
                store
                    .blocking(move |db| EmbeddedStore::scim_user(db, workspace.as_deref(), &id))
                    .await
            }
            Self::Redis(store) => store.scim_user(workspace, id).await,
        }
    }

    /// The newest `limit` audit records of `workspace`, newest first.
    pub async fn audit(
        &self,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let workspace = workspace.to_string();
        match self {
            Self::Embedded(store) => {
                store
                    .blocking(move |db| EmbeddedStore::audit(db, &workspace, limit))
                    .await
            }
            Self::Redis(store) => store.audit(&workspace, limit).await,
        }
    }
}
