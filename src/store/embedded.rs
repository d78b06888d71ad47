//! The embedded store: redb, an ACID B-tree file with fsync on every commit.
//!
//! After an I/O error (a full disk, a file-size limit) redb refuses every later operation
//! until the database is opened again, so the store reopens its file then: once space is
//! back, the next operation works, with nothing lost that was committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tokio::sync::mpsc::Sender;

use super::outbox::{self as routing, Claimed, Delivery, Outbox};
use super::{
    AuditRecord, Change, Committed, Cutoff, CutoffCounts, Effect, Record, Revoked, ScimUser, Scope,
    StoreError, StoredPolicy, pair_field,
};
use crate::clock;

mod outbox;
mod schedule;

use outbox::Claims;

const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_cutoffs");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_cutoffs");
/// Subject-wide cutoffs (`U*`), by subject.
const SUBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("subject_cutoffs");
/// Revoked identity-provider sessions, by the JSON pair `[workspace or null, sid]`.
const SIDS: TableDefinition<&str, &[u8]> = TableDefinition::new("revoked_sids");
/// Accepted signals, by the JSON pair `[issuer, jti]`, with the time they may be forgotten.
const SEEN: TableDefinition<&str, &[u8]> = TableDefinition::new("signals_seen");
/// `(expires_at, key)` of `SIDS` and `SEEN`: each commit forgets a few expired entries.
const SIDS_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("revoked_sids_expiry");
const SEEN_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("signals_seen_expiry");
/// Workspace policies, by workspace.
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_policies");
/// SCIM resource -> user, by the JSON pair `[workspace or null, id]`.
const SCIM_USERS: TableDefinition<&str, &str> = TableDefinition::new("scim_users");
/// Keyed by (workspace, sequence) so a workspace's records read newest-first in one range.
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// Counters: the audit sequence, the outbox sequence.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT_SEQUENCE: &str = "audit_sequence";
/// Expired entries a commit forgets per table: more than it adds, so the tables stay
/// bounded while signals keep arriving, and a commit never does unbounded work.
const PRUNE_PER_COMMIT: usize = 16;

/// redb's page cache. Its default (1 GiB) kept every page a load read: after a 1M + 1M
/// load, ~300 MiB of the file stayed resident in the process. A commit touches a few
/// pages of each table it writes and the load reads each page once, so a few MiB cost
/// neither (9/10 of it caches reads, 1/10 buffers a transaction's writes).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// A table of JSON values by text key.
type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;
/// An expiring table and its expiry index.
type Expiring = (JsonTable, TableDefinition<'static, (i64, &'static str), ()>);

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

    /// See `Store::cutoff_counts`: redb keeps each table's length in its header.
    pub(super) fn cutoff_counts(db: &Database) -> Result<CutoffCounts, StoreError> {
        let txn = db.begin_read()?;
        let len = |length: u64| usize::try_from(length).unwrap_or(usize::MAX);
        Ok(CutoffCounts {
            workspaces: len(txn.open_table(WORKSPACES)?.len()?),
            users: len(txn.open_table(USERS)?.len()?),
            subjects: len(txn.open_table(SUBJECTS)?.len()?),
        })
    }

    /// Sends every record memory enforces (cutoffs, revoked sessions not yet expired) to
    /// `batches`, `batch` at a time. Runs on the blocking pool; a closed receiver ends the
    /// load early.
    pub(super) fn load(
        db: &Database,
        batch: usize,
        batches: &Sender<Vec<Record>>,
    ) -> Result<(), StoreError> {
        let txn = db.begin_read()?;
        let now = clock::now();
        let (workspaces, users) = (txn.open_table(WORKSPACES)?, txn.open_table(USERS)?);
        let (subjects, sids) = (txn.open_table(SUBJECTS)?, txn.open_table(SIDS)?);
        let schedules = txn.open_table(schedule::SCHEDULES)?;
        let policies = txn.open_table(POLICIES)?;
        let users = users.iter()?.map(|entry| {
            let (key, value) = entry?;
            let (workspace, subject) = key.value();
            let scope = Scope::User {
                workspace: workspace.to_string(),
                subject: subject.to_string(),
            };
            cutoff_record(scope, value.value())
        });
        let records = by_text(&workspaces, |key, value| {
            cutoff_record(Scope::Workspace(key.to_string()), value)
        })?
        .chain(users)
        .chain(by_text(&subjects, |key, value| {
            cutoff_record(Scope::Subject(key.to_string()), value)
        })?)
        .chain(by_text(&sids, |key, value| {
            revoked_record(key, value, now)
        })?)
        .chain(by_text(&schedules, schedule::record)?)
        .chain(by_text(&policies, policy_record)?);
        send_in_batches(records.filter_map(Result::transpose), batch, batches)
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
    /// redb serialises writers, so two changes at once cannot both read the same old value,
    /// and a signal accepted twice at once is written once.
    fn commit_in(
        db: &Database,
        change: Change,
        webhooks: &[String],
    ) -> Result<Committed, StoreError> {
        let Change { effects, mut audit } = change;
        let now = clock::now();
        let txn = db.begin_write()?;
        if replayed(&txn, &effects, now)? {
            txn.abort()?;
            return Err(StoreError::Replayed);
        }
        if !schedule::still_pending(&txn, &effects)? {
            txn.abort()?;
            return Err(StoreError::NotPending);
        }
        let mut records = Vec::with_capacity(effects.len());
        for effect in effects {
            records.extend(apply(&txn, effect, now)?);
        }
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

    pub(super) fn remember_scim_users(db: &Database, users: &[ScimUser]) -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(SCIM_USERS)?;
            for user in users {
                let field = pair_field(&user.workspace, &user.id)?;
                table.insert(field.as_str(), user.user.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn scim_user(
        db: &Database,
        workspace: Option<&str>,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let field = pair_field(&workspace, &id)?;
        let txn = db.begin_read()?;
        let table = txn.open_table(SCIM_USERS)?;
        Ok(table
            .get(field.as_str())?
            .map(|user| user.value().to_string()))
    }
}

/// A record read at load: `None` for one that no longer means anything.
type Loaded = Result<Option<Record>, StoreError>;

/// Every entry of a text-keyed table, decoded.
fn by_text<'a>(
    table: &'a ReadOnlyTable<&'static str, &'static [u8]>,
    decode: impl Fn(&str, &[u8]) -> Loaded + 'a,
) -> Result<impl Iterator<Item = Loaded> + 'a, StoreError> {
    Ok(table.iter()?.map(move |entry| {
        let (key, value) = entry?;
        decode(key.value(), value.value())
    }))
}

fn cutoff_record(scope: Scope, bytes: &[u8]) -> Loaded {
    let cutoff = super::decode::cutoff(bytes)?;
    Ok(Some(Record::Cutoff { scope, cutoff }))
}

fn policy_record(workspace: &str, bytes: &[u8]) -> Loaded {
    let policy = serde_json::from_slice(bytes)?;
    let workspace = workspace.to_string();
    Ok(Some(Record::Policy { workspace, policy }))
}

/// A revoked session, unless it expired by `now`.
fn revoked_record(key: &str, bytes: &[u8], now: f64) -> Loaded {
    let revoked: Revoked = serde_json::from_slice(bytes)?;
    let (workspace, sid) = serde_json::from_str(key)?;
    let record = Record::RevokedSid {
        workspace,
        sid,
        revoked,
    };
    Ok(revoked.in_force(now).then_some(record))
}

/// Sends `records` `batch` at a time; a closed receiver ends it early, and the first
/// unreadable record ends it with its error.
fn send_in_batches(
    records: impl Iterator<Item = Result<Record, StoreError>>,
    batch: usize,
    batches: &Sender<Vec<Record>>,
) -> Result<(), StoreError> {
    let mut pending = Vec::with_capacity(batch);
    for record in records {
        pending.push(record?);
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

/// Opens (or creates) the file with every table in place.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|source| StoreError::Open {
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
    txn.open_table(SUBJECTS)?;
    txn.open_table(SIDS)?;
    txn.open_table(SEEN)?;
    txn.open_table(SIDS_EXPIRY)?;
    txn.open_table(SEEN_EXPIRY)?;
    txn.open_table(SCIM_USERS)?;
    txn.open_table(schedule::SCHEDULES)?;
    txn.open_table(POLICIES)?;
    txn.commit()?;
    Ok(db)
}

/// Whether `effects` carry a signal the store accepted before (and has not forgotten).
fn replayed(txn: &WriteTransaction, effects: &[Effect], now: f64) -> Result<bool, StoreError> {
    let seen = txn.open_table(SEEN)?;
    for effect in effects {
        let Effect::SignalSeen { issuer, jti, .. } = effect else {
            continue;
        };
        if let Some(until) = seen.get(pair_field(issuer, jti)?.as_str())? {
            let until: i64 = serde_json::from_slice(until.value())?;
            if now < until as f64 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One effect inside the write transaction, and the records it leaves for memory.
fn apply(txn: &WriteTransaction, effect: Effect, now: f64) -> Result<Vec<Record>, StoreError> {
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
            Ok(vec![Record::Cutoff { scope, cutoff }])
        }
        Effect::RevokedSid {
            workspace,
            sid,
            expires_at,
        } => {
            let record = revoke_sid(txn, workspace, sid, expires_at)?;
            prune(txn, (SIDS, SIDS_EXPIRY), now)?;
            Ok(vec![record])
        }
        Effect::SignalSeen {
            issuer,
            jti,
            expires_at,
        } => {
            let key = pair_field(&issuer, &jti)?;
            let old_expiry: Option<i64> = read_json(txn, SEEN, &key)?;
            let seen = (SEEN, SEEN_EXPIRY);
            write_expiring(txn, seen, &key, (expires_at, old_expiry), &expires_at)?;
            prune(txn, seen, now)?;
            Ok(Vec::new())
        }
        Effect::Restore { record } => Ok(restore(txn, record)?.into_iter().collect()),
        Effect::Schedule { workspace, pending } => {
            Ok(vec![schedule::replace(txn, workspace, pending)?])
        }
        Effect::FireSchedule {
            workspace,
            valid_after,
            preserved,
            ..
        } => schedule::fire(txn, workspace, valid_after, preserved),
        Effect::Policy {
            workspace,
            document,
            updated_at,
            updated_by,
            if_version,
        } => {
            let policy = StoredPolicy {
                document,
                updated_at: Some(updated_at),
                updated_by,
                version: 0,
            };
            replace_policy(txn, workspace, policy, if_version).map(|record| vec![record])
        }
    }
}

/// Writes `record` as it is where it outranks what the file holds.
fn restore(txn: &WriteTransaction, record: Record) -> Result<Option<Record>, StoreError> {
    match &record {
        Record::Cutoff { scope, cutoff } => {
            let current = read_cutoff(txn, scope)?;
            if current.is_some_and(|current| current.rank() >= cutoff.rank()) {
                return Ok(None);
            }
            write_cutoff(txn, scope, cutoff)?;
        }
        Record::RevokedSid {
            workspace,
            sid,
            revoked,
        } => {
            let key = pair_field(workspace, sid)?;
            let current: Option<Revoked> = read_json(txn, SIDS, &key)?;
            if current.is_some_and(|current| current.rank() >= revoked.rank()) {
                return Ok(None);
            }
            let expiry = (revoked.expires_at, current.map(|c| c.expires_at));
            write_expiring(txn, (SIDS, SIDS_EXPIRY), &key, expiry, revoked)?;
        }
        Record::Policy { workspace, policy } => {
            let version = |p: &StoredPolicy| p.version;
            if !write_if_newer(txn, POLICIES, workspace, policy, version)? {
                return Ok(None);
            }
        }
        Record::Schedule {
            workspace,
            schedule,
        } => {
            let version = |s: &super::Schedule| s.version;
            if !write_if_newer(txn, schedule::SCHEDULES, workspace, schedule, version)? {
                return Ok(None);
            }
        }
    }
    Ok(Some(record))
}

/// Writes `value` under `key` unless what is there has the same or a newer version.
fn write_if_newer<T: serde::Serialize + serde::de::DeserializeOwned>(
    txn: &WriteTransaction,
    table: JsonTable,
    key: &str,
    value: &T,
    version: impl Fn(&T) -> u64,
) -> Result<bool, StoreError> {
    let current: Option<T> = read_json(txn, table, key)?;
    if current.is_some_and(|current| version(&current) >= version(value)) {
        return Ok(false);
    }
    let bytes = serde_json::to_vec(value)?;
    txn.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(true)
}

/// Stores `policy` as the workspace's next version, unless `if_version` names another
/// version than the stored one.
fn replace_policy(
    txn: &WriteTransaction,
    workspace: String,
    mut policy: StoredPolicy,
    if_version: Option<u64>,
) -> Result<Record, StoreError> {
    let current: Option<StoredPolicy> = read_json(txn, POLICIES, &workspace)?;
    let version = current.map_or(0, |c| c.version);
    if if_version.is_some_and(|expected| expected != version) {
        // Dropping the transaction aborts it: nothing of the change is written.
        return Err(StoreError::PolicyChanged);
    }
    policy.version = version + 1;
    let bytes = serde_json::to_vec(&policy)?;
    txn.open_table(POLICIES)?
        .insert(workspace.as_str(), bytes.as_slice())?;
    Ok(Record::Policy { workspace, policy })
}

/// Revokes `sid` until at least `expires_at` (an expiry never moves back).
fn revoke_sid(
    txn: &WriteTransaction,
    workspace: Option<String>,
    sid: String,
    expires_at: i64,
) -> Result<Record, StoreError> {
    let key = pair_field(&workspace, &sid)?;
    let current: Option<Revoked> = read_json(txn, SIDS, &key)?;
    let revoked = Revoked {
        expires_at: current.map_or(expires_at, |c| c.expires_at.max(expires_at)),
        version: current.map_or(1, |c| c.version + 1),
    };
    let expiry = (revoked.expires_at, current.map(|c| c.expires_at));
    write_expiring(txn, (SIDS, SIDS_EXPIRY), &key, expiry, &revoked)?;
    Ok(Record::RevokedSid {
        workspace,
        sid,
        revoked,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(
    txn: &WriteTransaction,
    table: JsonTable,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let table = txn.open_table(table)?;
    let bytes = table.get(key)?.map(|v| v.value().to_vec());
    Ok(bytes
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()?)
}

/// Writes `value` under `key`, indexed by `expires_at` (replacing the index entry of the
/// old expiry, if any).
fn write_expiring(
    txn: &WriteTransaction,
    (data, index): Expiring,
    key: &str,
    (expires_at, old_expiry): (i64, Option<i64>),
    value: &impl serde::Serialize,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value)?;
    txn.open_table(data)?.insert(key, bytes.as_slice())?;
    let mut index = txn.open_table(index)?;
    if let Some(old) = old_expiry.filter(|old| *old != expires_at) {
        index.remove((old, key))?;
    }
    index.insert((expires_at, key), ())?;
    Ok(())
}

/// Forgets up to `PRUNE_PER_COMMIT` entries that expired before `now`.
fn prune(txn: &WriteTransaction, (data, index): Expiring, now: f64) -> Result<(), StoreError> {
    let mut index = txn.open_table(index)?;
    let mut data = txn.open_table(data)?;
    let now = now.floor() as i64;
    let expired: Vec<(i64, String)> = index
        .range((i64::MIN, "")..(now, ""))?
        .take(PRUNE_PER_COMMIT)
        .map(|entry| {
            let (key, _) = entry?;
            let (at, key) = key.value();
            Ok((at, key.to_string()))
        })
        .collect::<Result<_, StoreError>>()?;
    for (at, key) in expired {
        index.remove((at, key.as_str()))?;
        data.remove(key.as_str())?;
    }
    Ok(())
}

fn read_cutoff(txn: &WriteTransaction, scope: &Scope) -> Result<Option<Cutoff>, StoreError> {
    let bytes = match scope {
        Scope::Workspace(ws) => return read_json(txn, WORKSPACES, ws),
        Scope::Subject(subject) => return read_json(txn, SUBJECTS, subject),
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
        Scope::Subject(subject) => {
            txn.open_table(SUBJECTS)?
                .insert(subject.as_str(), bytes.as_slice())?;
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
    // Subject-wide records go under "", which no workspace's trail reads (a workspace name
    // is never empty).
    let workspace = audit.workspace.as_deref().unwrap_or("");
    txn.open_table(AUDIT)?
        .insert((workspace, sequence), record.as_slice())?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::store::{Action, AuditRecord, Change, CutoffCounts, Outbox, Scope, Store};

    #[tokio::test]
    async fn cutoff_counts_count_each_table() {
        let text = "upstream.url = \"http://127.0.0.1:3000\"\njwt.algorithms = [\"HS256\"]\n\
                    store.backend = \"memory\"\n[[jwt.keys]]\nhmac_secret_env = \"S\"\n";
        let config = Config::from_toml(text, &[]).unwrap();
        let store = Store::open(&config.store, Outbox::new(&config.events))
            .await
            .unwrap();
        assert_eq!(
            store.cutoff_counts().await.unwrap(),
            CutoffCounts::default()
        );
        let user = |workspace: &str, subject: &str| Scope::User {
            workspace: workspace.into(),
            subject: subject.into(),
        };
        for (at, scope) in [
            Scope::Workspace("acme".into()),
            Scope::Workspace("globex".into()),
            user("acme", "bob"),
            Scope::Subject("carol@example.com".into()),
            // Raised again: still one cutoff.
            Scope::Workspace("acme".into()),
        ]
        .into_iter()
        .enumerate()
        {
            let audit = AuditRecord::example("acme", Action::LogoutAll);
            let change = Change::cutoff(scope, 1000 + at as i64, None, audit);
            store.commit(change).await.unwrap();
        }
        let counts = CutoffCounts {
            workspaces: 2,
            users: 1,
            subjects: 1,
        };
        assert_eq!(store.cutoff_counts().await.unwrap(), counts);
    }
}
