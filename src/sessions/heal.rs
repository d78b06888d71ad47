//! A resync never lowers what this instance holds, and heals the store: records memory
//! holds that the store lacks (it lost data: a failover that lost the last writes, a
//! restart without persistence, a flush) or holds lower are written back, through the
//! commit script's compare, so the rest of the fleet and later instances get them too.

use std::collections::HashSet;

use super::Sessions;
use crate::store::{Record, RedisStore, Scope, StoreError};

/// What one resync saw of the store, against what memory holds.
#[derive(Debug, Default)]
pub(super) struct Heal {
    /// Every key the store holds. Transient: as large as the store's key set.
    seen: HashSet<Key>,
    /// Records memory holds higher than the store's copy.
    higher: Vec<Record>,
}

/// A record's key: the same in the store and in memory.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Cutoff(Scope),
    Sid(Option<String>, String),
}

// === impl Heal ===

impl Heal {
    /// One record read from the store: applied, unless memory holds it higher.
    pub(super) fn load(&mut self, sessions: &Sessions, record: Record) {
        self.seen.insert(Key::of(&record));
        match sessions.held(&record) {
            Some(held) if held.rank() > record.rank() => self.higher.push(held),
            _ => sessions.apply(record),
        }
    }

    /// After the whole store was read: writes back what it lacks or holds lower; returns
    /// how many records it took.
    pub(super) async fn restore(
        mut self,
        sessions: &Sessions,
        store: &RedisStore,
    ) -> Result<usize, StoreError> {
        let now = crate::clock::now();
        sessions.for_each_record(|record| {
            if record.in_force(now) && !self.seen.contains(&Key::of(&record)) {
                self.higher.push(record);
            }
        });
        if self.higher.is_empty() {
            return Ok(0);
        }
        // Written only where they still outrank the store: another instance may have
        // restored them first, or a newer change landed meanwhile.
        let written = store.restore(self.higher).await?;
        let count = written.len();
        written
            .into_iter()
            .for_each(|record| sessions.apply(record));
        if count > 0 {
            sessions.metrics.store_restored_records.inc_by(count as u64);
            tracing::warn!(
                records = count,
                "the shared store lacked records this instance holds (or held them lower); written back"
            );
        }
        Ok(count)
    }
}

// === impl Key ===

impl Key {
    fn of(record: &Record) -> Self {
        match record {
            Record::Cutoff { scope, .. } => Self::Cutoff(scope.clone()),
            Record::RevokedSid { workspace, sid, .. } => Self::Sid(workspace.clone(), sid.clone()),
        }
    }
}
