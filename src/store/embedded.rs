//! The embedded store: redb, an ACID B-tree file with fsync on every commit.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use tokio::sync::mpsc::Sender;

use super::{AuditRecord, Change, Cutoff, Scope, StoreError};

const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_cutoffs");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_cutoffs");
/// Keyed by (workspace, sequence) so a workspace's records read newest-first in one range.
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT_SEQUENCE: &str = "audit_sequence";

/// A redb database shared by the blocking tasks that use it.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

// === impl EmbeddedStore ===

impl EmbeddedStore {
    /// Opens or creates the file at `path`, and its directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::with_tables(db)
    }

    /// A database that lives only in this process.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open {
                path: "(memory)".into(),
                source,
            })?;
        Self::with_tables(db)
    }

    /// Creates the tables up front so readers never meet a missing table.
    fn with_tables(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(WORKSPACES)?;
        txn.open_table(USERS)?;
        txn.open_table(AUDIT)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `work` on the blocking pool: redb waits for fsync.
    pub(super) async fn blocking<T, F>(self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || work(&self)).await?
    }

    /// Sends every cutoff to `batches`, `batch` at a time. Runs on the blocking pool; a
    /// closed receiver ends the load early.
    pub(super) fn load(
        &self,
        batch: usize,
        batches: &Sender<Vec<(Scope, Cutoff)>>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let workspaces = txn.open_table(WORKSPACES)?;
        let workspaces = workspaces.iter()?.map(|entry| -> Result<_, StoreError> {
            let (key, value) = entry?;
            let scope = Scope::Workspace(key.value().to_string());
            Ok((scope, serde_json::from_slice(value.value())?))
        });
        let users = txn.open_table(USERS)?;
        let users = users.iter()?.map(|entry| -> Result<_, StoreError> {
            let (key, value) = entry?;
            let (workspace, subject) = key.value();
            let scope = Scope::User {
                workspace: workspace.to_string(),
                subject: subject.to_string(),
            };
            Ok((scope, serde_json::from_slice(value.value())?))
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

    /// One write transaction: read the current cutoff, keep the higher one, bump the
    /// version, append the audit record. redb serialises writers, so two logouts at once
    /// cannot both read the same old value.
    pub(super) fn commit(
        &self,
        change: &Change,
        mut audit: AuditRecord,
    ) -> Result<(Cutoff, AuditRecord), StoreError> {
        let txn = self.db.begin_write()?;
        let current = read_cutoff(&txn, &change.scope)?;
        let cutoff = Cutoff {
            valid_after: current.as_ref().map_or(change.valid_after, |c| {
                c.valid_after.max(change.valid_after)
            }),
            preserved: change.preserved.clone(),
            version: current.map_or(1, |c| c.version + 1),
        };
        write_cutoff(&txn, &change.scope, &cutoff)?;
        audit.sessions_valid_after = cutoff.valid_after;
        append_audit(&txn, &audit)?;
        txn.commit()?;
        Ok((cutoff, audit))
    }

    pub(super) fn audit(
        &self,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let range = table.range((workspace, 0)..=(workspace, u64::MAX))?;
        range
            .rev()
            .take(limit)
            .map(|entry| Ok(serde_json::from_slice(entry?.1.value())?))
            .collect()
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

fn append_audit(txn: &WriteTransaction, audit: &AuditRecord) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let sequence = meta.get(AUDIT_SEQUENCE)?.map_or(0, |v| v.value()) + 1;
    meta.insert(AUDIT_SEQUENCE, sequence)?;
    let record = serde_json::to_vec(audit)?;
    txn.open_table(AUDIT)?
        .insert((audit.workspace.as_str(), sequence), record.as_slice())?;
    Ok(())
}
