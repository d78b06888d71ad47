//! The embedded store: redb, an ACID B-tree file with fsync on every commit.
//!
//! After an I/O error (a full disk, a file-size limit) redb refuses every later operation
//! until the database is opened again, so the store reopens its file then: once space is
//! back, the next operation works, with nothing lost that was committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::mpsc::Sender;

use super::outbox::{self as routing, Claimed, Delivery, Outbox};
use super::{AuditRecord, Change, Committed, Cutoff, Effect, Record, Scope, StoreError};

mod outbox;

use outbox::Claims;

const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_cutoffs");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_cutoffs");
/// Keyed by (workspace, sequence) so a workspace's records read newest-first in one range.
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// Counters: the audit sequence, the outbox sequence.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT_SEQUENCE: &str = "audit_sequence";

/// A redb database shared by the blocking tasks that use it.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` after an I/O error, until the file opens again. Operations share the lock;
    /// a reopen takes it alone, after they finish.
    db: RwLock<Option<Database>>,
    /// Bumped by every reopen, so concurrent failures reopen once.
    opened: AtomicU64,
    /// The file; `None` for the in-memory database, which has no I/O to fail.
    path: Option<PathBuf>,
    /// Which webhooks each commit's audit record is queued for.
    outbox: Outbox,
    claims: Claims,
}

// === impl EmbeddedStore ===

impl EmbeddedStore {
    /// Opens or creates the file at `path`, and its directory.
    pub fn open(path: &Path, outbox: Outbox) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Self::new(
            open_file(path)?,
            Some(path.to_path_buf()),
            outbox,
        ))
    }

    /// A database that lives only in this process.
    pub fn in_memory(outbox: Outbox) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open {
                path: "(memory)".into(),
                source,
            })?;
        Ok(Self::new(with_tables(db)?, None, outbox))
    }

    fn new(db: Database, path: Option<PathBuf>, outbox: Outbox) -> Self {
        let inner = Inner {
            db: RwLock::new(Some(db)),
            opened: AtomicU64::new(0),
            path,
            outbox,
            claims: Claims::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Starts `work` on the blocking pool now (redb waits for fsync), reopening the file
    /// after an I/O error so that the next operation can succeed.
    pub(super) fn blocking<T, F>(&self, work: F) -> impl Future<Output = Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let task = tokio::task::spawn_blocking(move || store.run(work));
        async move { task.await? }
    }

    fn run<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let opened = self.inner.opened.load(Ordering::Acquire);
        let result = match &*self
            .inner
            .db
            .read()
            .expect("the store lock is never poisoned")
        {
            Some(db) => work(db),
            None => Err(StoreError::Unavailable),
        };
        if result.as_ref().is_err_and(StoreError::needs_reopen) {
            self.reopen(opened);
        }
        result
    }

    /// Drops the failed database and opens the file again, unless another operation did
    /// since `seen`. A file that cannot be opened yet is tried again by the next operation.
    fn reopen(&self, seen: u64) {
        let Some(path) = &self.inner.path else { return };
        let mut db = self
            .inner
            .db
            .write()
            .expect("the store lock is never poisoned");
        if self.inner.opened.load(Ordering::Acquire) != seen {
            return;
        }
        // redb holds a lock on the file: the old handle must be gone before a new open.
        drop(db.take());
        match open_file(path) {
            Ok(reopened) => {
                *db = Some(reopened);
                self.inner.opened.fetch_add(1, Ordering::AcqRel);
                tracing::info!(path = %path.display(), "store file reopened after an I/O error");
            }
            Err(error) => tracing::warn!(%error, "store file cannot be reopened yet"),
        }
    }

    /// Sends every cutoff to `batches`, `batch` at a time. Runs on the blocking pool; a
    /// closed receiver ends the load early.
    pub(super) fn load(
        db: &Database,
        batch: usize,
        batches: &Sender<Vec<Record>>,
    ) -> Result<(), StoreError> {
        let txn = db.begin_read()?;
        let workspaces = txn.open_table(WORKSPACES)?;
        let workspaces = workspaces.iter()?.map(|entry| -> Result<_, StoreError> {
            let (key, value) = entry?;
            let scope = Scope::Workspace(key.value().to_string());
            let cutoff = serde_json::from_slice(value.value())?;
            Ok(Record::Cutoff { scope, cutoff })
        });
        let users = txn.open_table(USERS)?;
        let users = users.iter()?.map(|entry| -> Result<_, StoreError> {
            let (key, value) = entry?;
            let (workspace, subject) = key.value();
            let scope = Scope::User {
                workspace: workspace.to_string(),
                subject: subject.to_string(),
            };
            let cutoff = serde_json::from_slice(value.value())?;
            Ok(Record::Cutoff { scope, cutoff })
        });
        let mut pending = Vec::with_capacity(batch);
        for cutoff in workspaces.chain(users) {
            pending.push(cutoff?);
            if pending.len() == batch {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                if batches.blocking_send(full).is_err() {
                    return Ok(());
                }
            }
        }
        if !pending.is_empty() {
            let _ = batches.blocking_send(pending);
        }
        Ok(())
    }

    /// Commits `change` on the blocking pool, its audit record queued for the webhooks
    /// that want it.
    pub(super) fn commit(
        &self,
        change: Change,
    ) -> impl Future<Output = Result<Committed, StoreError>> {
        let webhooks = self.inner.outbox.routes(&change.audit);
        self.blocking(move |db| Self::commit_in(db, change, &webhooks))
    }

    /// One write transaction: every effect, the audit record, and its outbox entries.
    /// redb serialises writers, so two changes at once cannot both read the same old value.
    fn commit_in(
        db: &Database,
        change: Change,
        webhooks: &[String],
    ) -> Result<Committed, StoreError> {
        let Change { effects, mut audit } = change;
        let txn = db.begin_write()?;
        let records = effects
            .into_iter()
            .map(|effect| apply(&txn, effect))
            .collect::<Result<Vec<_>, _>>()?;
        audit.sessions_valid_after = Record::first_cutoff(&records).map(|c| c.valid_after);
        let record = append_audit(&txn, &audit)?;
        let group = routing::group(&audit)?;
        outbox::enqueue(&txn, webhooks, &group, &record, routing::now_ms())?;
        txn.commit()?;
        Ok(Committed {
            records,
            audit,
            notified: None,
        })
    }

    /// Claims up to `limit` due deliveries of `webhook`.
    pub(super) fn claim(
        &self,
        webhook: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Claimed, StoreError>> {
        let (store, webhook) = (self.clone(), webhook.to_string());
        self.blocking(move |db| {
            outbox::claim(db, &store.inner.claims, &webhook, limit, routing::now_ms())
        })
    }

    /// The delivery is done with (delivered or dropped); its group's next event falls due.
    pub(super) async fn finish(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let owned = delivery.clone();
        let result = self
            .blocking(move |db| outbox::finish(db, &owned, routing::now_ms()))
            .await;
        self.inner.claims.release(delivery);
        result
    }

    /// The delivery is tried again `after` from now.
    pub(super) async fn retry(
        &self,
        delivery: &Delivery,
        after: std::time::Duration,
    ) -> Result<(), StoreError> {
        let owned = delivery.clone();
        let due = routing::now_ms().saturating_add(routing::millis(after));
        let result = self
            .blocking(move |db| outbox::retry(db, &owned, due))
            .await;
        self.inner.claims.release(delivery);
        result
    }

    /// Undelivered events of `webhook`.
    pub(super) fn pending(&self, webhook: &str) -> impl Future<Output = Result<u64, StoreError>> {
        let webhook = webhook.to_string();
        self.blocking(move |db| outbox::pending(db, &webhook))
    }

    pub(super) fn audit(
        db: &Database,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let range = table.range((workspace, 0)..=(workspace, u64::MAX))?;
        range
            .rev()
            .take(limit)
            .map(|entry| Ok(serde_json::from_slice(entry?.1.value())?))
            .collect()
    }
}

/// Opens (or creates) the file with every table in place.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    with_tables(db)
}

/// Creates the tables up front so readers never meet a missing table.
fn with_tables(db: Database) -> Result<Database, StoreError> {
    let txn = db.begin_write()?;
    txn.open_table(WORKSPACES)?;
    txn.open_table(USERS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(META)?;
    outbox::create_tables(&txn)?;
    txn.commit()?;
    Ok(db)
}

/// One effect inside the write transaction, and the record it leaves.
fn apply(txn: &WriteTransaction, effect: Effect) -> Result<Record, StoreError> {
    match effect {
        Effect::Cutoff {
            scope,
            valid_after,
            preserved,
        } => {
            let current = read_cutoff(txn, &scope)?;
            let cutoff = Cutoff {
                valid_after: current
                    .as_ref()
                    .map_or(valid_after, |c| c.valid_after.max(valid_after)),
                preserved,
                version: current.map_or(1, |c| c.version + 1),
            };
            write_cutoff(txn, &scope, &cutoff)?;
            Ok(Record::Cutoff { scope, cutoff })
        }
    }
}

fn read_cutoff(txn: &WriteTransaction, scope: &Scope) -> Result<Option<Cutoff>, StoreError> {
    let bytes = match scope {
        Scope::Workspace(ws) => txn
            .open_table(WORKSPACES)?
            .get(ws.as_str())?
            .map(|v| v.value().to_vec()),
        Scope::User { workspace, subject } => txn
            .open_table(USERS)?
            .get((workspace.as_str(), subject.as_str()))?
            .map(|v| v.value().to_vec()),
    };
    Ok(bytes
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()?)
}

fn write_cutoff(txn: &WriteTransaction, scope: &Scope, cutoff: &Cutoff) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(cutoff)?;
    match scope {
        Scope::Workspace(ws) => {
            txn.open_table(WORKSPACES)?
                .insert(ws.as_str(), bytes.as_slice())?;
        }
        Scope::User { workspace, subject } => {
            txn.open_table(USERS)?
                .insert((workspace.as_str(), subject.as_str()), bytes.as_slice())?;
        }
    }
    Ok(())
}

/// Appends `audit` to its workspace's trail; returns the record as stored.
fn append_audit(txn: &WriteTransaction, audit: &AuditRecord) -> Result<Vec<u8>, StoreError> {
    let mut meta = txn.open_table(META)?;
    let sequence = meta.get(AUDIT_SEQUENCE)?.map_or(0, |v| v.value()) + 1;
    meta.insert(AUDIT_SEQUENCE, sequence)?;
    let record = serde_json::to_vec(audit)?;
    txn.open_table(AUDIT)?
        .insert((audit.workspace.as_str(), sequence), record.as_slice())?;
    Ok(record)
}
