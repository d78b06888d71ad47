//! A resync never lowers what this instance holds, and heals the store: records memory
//! holds that the store lacks (it lost data: a failover that lost the last writes, a
//! restart without persistence, a flush) or holds lower are written back, through the
//! commit script's compare, so the rest of the fleet and later instances get them too.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::Sessions;
use super::cutoffs::Marks;
use crate::store::{Record, RedisStore, StoreError};

/// What one resync saw of the store, against what memory holds.
#[derive(Debug)]
pub(super) struct Heal {
    /// Off for the first load: until then memory holds only what came from the store
    /// (its channel, this instance's commits), so there is nothing to write back.
    heals: bool,
    /// The cutoffs the store holds, as a bit per entry of memory's tables (the bulk of
    /// a store: a set of hashes was 38 MiB at 1M + 1M).
    cutoffs: Marks,
    /// A hash of every other key the store holds: ~16 bytes a key rather than the key
    /// itself. A collision hides a missing record for one resync only: each resync
    /// hashes with new random keys. The hash is its own hash in the table, and foldhash
    /// makes it (SipHash, twice per record, was ~15 % of the applying task in a profile).
    seen: HashTable<u64>,
    keys: foldhash::quality::RandomState,
    /// Records memory holds higher than the store's copy.
    higher: Vec<Record>,
    /// Whether a record read changed what memory holds (watchers are told once, after
    /// the load: a notification per record was ~2 % of the applying task in a 1M + 1M
    /// resync).
    changed: bool,
}

// === impl Heal ===

impl Heal {
    /// A resync of `sessions`: the first load heals nothing.
    pub(super) fn new(sessions: &Sessions) -> Self {
        Self {
            heals: sessions.is_loaded(),
            cutoffs: Marks::default(),
            seen: HashTable::new(),
            keys: foldhash::quality::RandomState::default(),
            higher: Vec::new(),
            changed: false,
        }
    }

    /// One record read from the store: applied, unless memory holds it higher.
    pub(super) fn load(&mut self, sessions: &Sessions, record: Record) {
        if !self.heals {
            // An install keeps a higher rank held: no lookup of it first.
            self.changed |= sessions.install(record);
            return;
        }
        if let Record::Cutoff { scope, .. } = &record {
            sessions.cutoffs.mark(scope, &mut self.cutoffs);
        } else {
            let key = self.key(&record);
            if !self.saw(key) {
                self.seen.insert_unique(key, key, |key| *key);
            }
        }
        match sessions.held_rank(&record) {
            Some(rank) if rank > record.rank() => self.higher.extend(sessions.held(&record)),
            _ => self.changed |= sessions.install(record),
        }
    }

    fn saw(&self, key: u64) -> bool {
        self.seen.find(key, |seen| *seen == key).is_some()
    }

    /// The hash of `record`'s key (its scope; workspace and sid; workspace and kind): the
    /// same in the store and in memory. Cutoffs are marked in `cutoffs` instead; their arm
    /// keeps this a function of any record.
    fn key(&self, record: &Record) -> u64 {
        match record {
            Record::Cutoff { scope, .. } => self.keys.hash_one((0u8, scope)),
            Record::RevokedSid { workspace, sid, .. } => {
                self.keys
                    .hash_one((1u8, workspace.as_deref(), sid.as_str()))
            }
            Record::Schedule { workspace, .. } => self.keys.hash_one((2u8, workspace)),
            Record::Policy { workspace, .. } => self.keys.hash_one((3u8, workspace)),
        }
    }

    /// After the whole store was read: writes back what it lacks or holds lower; returns
    /// how many records it took.
    pub(super) async fn restore(
        mut self,
        sessions: &Sessions,
        store: &RedisStore,
    ) -> Result<usize, StoreError> {
        if self.changed {
            sessions.notify_changed();
        }
        if !self.heals {
            return Ok(0);
        }
        let now = crate::clock::now();
        let higher = &mut self.higher;
        sessions
            .cutoffs
            .for_each_unmarked(&self.cutoffs, |record| higher.push(record));
        let mut others = Vec::new();
        sessions.for_each_record_but_cutoffs(|record| {
            if record.in_force(now) && !self.saw(self.key(&record)) {
                others.push(record);
            }
        });
        self.higher.extend(others);
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
