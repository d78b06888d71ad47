//! Which cutoffs a resync found in the store, by entry id: a bit per entry. A set of the
//! keys' hashes took ~16 bytes a key (38 MiB for a 1M + 1M resync, resident afterwards as
//! freed memory); a bit per entry takes 256 KiB for the same.

use crate::store::Scope;

/// The tables of `Cutoffs`, each with its own ids.
#[derive(Debug, Clone, Copy)]
pub(super) enum Which {
    Workspaces,
    Users,
    Subjects,
}

/// Entries marked, per table.
#[derive(Debug, Default)]
pub struct Marks {
    tables: [Bits; 3],
}

/// Entry ids are dense (an index in its shard beside the shard's number), so a bit vector
/// as long as the largest id marked is as small as any set.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

// === impl Which ===

impl Which {
    pub(super) fn of(scope: &Scope) -> Self {
        match scope {
            Scope::Workspace(_) => Self::Workspaces,
            Scope::User { .. } => Self::Users,
            Scope::Subject(_) => Self::Subjects,
        }
    }
}

// === impl Marks ===

impl Marks {
    pub(super) fn mark(&mut self, table: Which, id: u32) {
        self.tables[table as usize].set(id);
    }

    pub(super) fn has(&self, table: Which, id: u32) -> bool {
        self.tables[table as usize].get(id)
    }
}

// === impl Bits ===

impl Bits {
    fn set(&mut self, id: u32) {
        let (word, bit) = place(id);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= bit;
    }

    fn get(&self, id: u32) -> bool {
        let (word, bit) = place(id);
        self.0.get(word).is_some_and(|w| w & bit != 0)
    }
}

fn place(id: u32) -> (usize, u64) {
    (id as usize / 64, 1 << (id % 64))
}
