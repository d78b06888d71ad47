//! A compact table of cutoffs by key, in shards behind `RwLock`s.
//!
//! Each shard keeps its entries in chunks (24 bytes each, no per-entry allocation), a
//! `hashbrown::HashTable` of `u32` indices into it (about 8 bytes an entry at its load
//! factor, where a table of the entries themselves would waste up to half of 24), and
//! their keys and preserved sessions in an append-only `Arena`. Cutoffs are never deleted,
//! so an entry's index never changes: `(index, shard)` is the entry's id for as long as
//! the process runs, which is how a user cutoff names its workspace in 4 bytes.
//!
//! Keys are hashed with foldhash, seeded at random per process (names come from the
//! store, which admins and identity providers write). Before issue 15 (`DashMap`s of
//! `Box<str>` keys with SipHash, a `HashMap` per workspace) a 1M + 1M load took 4.8 s and
//! 421 bytes a cutoff; see `benches/scale.rs` for today's figures.

use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::arena::{Arena, Key, PreservedRef};
use crate::store::{Cutoff, Preserved};

/// 32 shards: requests on different keys rarely meet on one lock, and a shard's rehash
/// during a load blocks 1/32 of the lookups for its duration only.
const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
/// Entries per chunk (96 KiB).
const ENTRY_CHUNK: usize = 4096;
/// Entry indices fit beside the shard number in a `u32` id.
const MAX_ENTRIES: usize = 1 << (32 - SHARD_BITS);
/// `Entry::preserved` values at or above this one are not arena offsets.
pub(super) const FIRST_SENTINEL: u32 = NOT_PRESERVED;
/// The entry holds no cutoff: a workspace known only by its users' cutoffs.
const NO_CUTOFF: u32 = u32::MAX;
/// The cutoff spares no session.
const NOT_PRESERVED: u32 = u32::MAX - 1;

/// Cutoffs by key; `scoped` tables key them by (workspace id, name).
#[derive(Debug)]
pub(super) struct Table {
    shards: Box<[RwLock<Shard>]>,
    hasher: foldhash::fast::RandomState,
    scoped: bool,
}

#[derive(Debug, Default)]
struct Shard {
    /// Indices into `entries`, by the hash of their key.
    index: HashTable<u32>,
    entries: Entries,
    arena: Arena,
}

/// Entries in chunks of `ENTRY_CHUNK`: a growing `Vec` leaves a freed copy of itself
/// behind at every doubling, still resident after the load (with the arena's chunks too,
/// the binary's RSS after a 1M + 1M embedded load went from 300 to 211 MiB).
#[derive(Debug, Default)]
struct Entries {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

/// One key and its cutoff, in 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the key is in the arena.
    key: u32,
    /// Where the preserved session is in the arena, or `NO_CUTOFF` / `NOT_PRESERVED`.
    preserved: u32,
    valid_after: i64,
    version: u64,
}

/// An entry found, read under its shard's read lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held<'a> {
    /// Stable for the life of the process.
    pub(super) id: u32,
    entry: Entry,
    arena: &'a Arena,
}

// === impl Table ===

impl Table {
    /// An empty table; `scoped`: keys carry a workspace id.
    pub(super) fn new(scoped: bool) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            scoped,
        }
    }

    /// Makes room for `entries` in all before a load. Without it each shard's index grows
    /// by doubling, and every doubling rehashes every key from the arena (two cache
    /// misses a key) and leaves the old index behind as freed memory.
    pub(super) fn reserve(&self, entries: usize) {
        let even = entries / SHARDS;
        // Keys spread over the shards unevenly: a standard deviation is about the square
        // root of `even`, far below this margin (a shard that gets more still grows).
        let per_shard = (even + even / 32 + 64).min(MAX_ENTRIES);
        for shard in &self.shards {
            write_lock(shard).reserve(per_shard, |key| self.hasher.hash_one(key), self.scoped);
        }
    }

    /// Reads the entry of `key`, if there is one, under its shard's read lock.
    pub(super) fn get<R>(&self, key: Key<'_>, read: impl FnOnce(Held<'_>) -> R) -> Option<R> {
        self.get_hashed(self.hasher.hash_one(key), key, read)
    }

    /// The id of `key`'s entry, made (holding no cutoff) if there is none.
    pub(super) fn intern(&self, key: Key<'_>) -> u32 {
        let hash = self.hasher.hash_one(key);
        if let Some(id) = self.get_hashed(hash, key, |held| held.id) {
            return id;
        }
        self.with_entry(hash, key, |_, _| false).0
    }

    /// Installs `cutoff` for `key` unless the entry holds the same or a higher rank;
    /// returns whether it did.
    pub(super) fn install(&self, key: Key<'_>, cutoff: &Cutoff) -> bool {
        let hash = self.hasher.hash_one(key);
        let rank = Some(cutoff.rank());
        if self.get_hashed(hash, key, |held| held.rank() >= rank) == Some(true) {
            // A resync applies every stored cutoff again: most change nothing, and take
            // the read lock only.
            return false;
        }
        let replace = |shard: &mut Shard, index| shard.replace(index, cutoff);
        self.with_entry(hash, key, replace).1
    }

    /// Hands every entry holding a cutoff, with its key, to `visit` (under each shard's
    /// read lock in turn).
    pub(super) fn for_each(&self, mut visit: impl FnMut(Key<'_>, Held<'_>)) {
        for (number, shard) in self.shards.iter().enumerate() {
            let shard = read_lock(shard);
            for index in 0..shard.entries.len {
                let held = shard.held(number, index);
                if held.valid_after().is_some() {
                    visit(shard.arena.key(held.entry.key, self.scoped), held);
                }
            }
        }
    }

    /// Reads the name of the entry `id` names, if it is one of this table's.
    pub(super) fn with_name<R>(&self, id: u32, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let shard = read_lock(self.shards.get(id as usize % SHARDS)?);
        let index = (id >> SHARD_BITS) as usize;
        let entry = (index < shard.entries.len).then(|| shard.entries.get(index))?;
        Some(read(shard.arena.key(entry.key, self.scoped).name))
    }

    /// Entries held (with or without a cutoff).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| read_lock(s).entries.len).sum()
    }

    /// Entries the shards' indices hold room for without growing.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| read_lock(s).index.capacity())
            .sum()
    }

    /// Runs `change` on `key`'s entry (made if missing) under the shard's write lock;
    /// returns the entry's id and what `change` returned.
    fn with_entry(
        &self,
        hash: u64,
        key: Key<'_>,
        change: impl FnOnce(&mut Shard, usize) -> bool,
    ) -> (u32, bool) {
        let (number, shard) = self.shard(hash);
        let mut shard = write_lock(shard);
        let index = match shard.find(hash, key, self.scoped) {
            Some(index) => index,
            None => shard.insert(hash, key, |key| self.hasher.hash_one(key), self.scoped),
        };
        let changed = change(&mut shard, index);
        (id(number, index), changed)
    }

    fn get_hashed<R>(
        &self,
        hash: u64,
        key: Key<'_>,
        read: impl FnOnce(Held<'_>) -> R,
    ) -> Option<R> {
        let (number, shard) = self.shard(hash);
        let shard = read_lock(shard);
        let index = shard.find(hash, key, self.scoped)?;
        Some(read(shard.held(number, index)))
    }

    /// The shard of `hash`, from the bits just below the 7 hashbrown keeps as its tag
    /// (its bucket comes from the low bits): each shard's table still sees well-spread
    /// hashes.
    fn shard(&self, hash: u64) -> (usize, &RwLock<Shard>) {
        let number = (hash >> (64 - 7 - SHARD_BITS)) as usize % SHARDS;
        (number, &self.shards[number])
    }
}

// === impl Shard ===

impl Shard {
    fn find(&self, hash: u64, key: Key<'_>, scoped: bool) -> Option<usize> {
        let matches = |index: &u32| self.key(*index as usize, scoped) == key;
        self.index.find(hash, matches).map(|index| *index as usize)
    }

    fn key(&self, index: usize, scoped: bool) -> Key<'_> {
        self.arena.key(self.entries.get(index).key, scoped)
    }

    /// Room for `entries` in all (those held included).
    fn reserve(&mut self, entries: usize, hash_key: impl Fn(Key<'_>) -> u64, scoped: bool) {
        let more = entries.saturating_sub(self.entries.len);
        let Shard {
            index,
            entries,
            arena,
        } = self;
        index.reserve(more, rehasher(entries, arena, hash_key, scoped));
    }

    /// Adds `key`, holding no cutoff yet; returns its index.
    fn insert(
        &mut self,
        hash: u64,
        key: Key<'_>,
        hash_key: impl Fn(Key<'_>) -> u64,
        scoped: bool,
    ) -> usize {
        let index = self.entries.len;
        assert!(
            index < MAX_ENTRIES,
            "a shard holds fewer than 2^27 entries: memory runs out long before"
        );
        let key = self.arena.push_key(&key);
        self.entries.push(Entry {
            key,
            preserved: NO_CUTOFF,
            valid_after: 0,
            version: 0,
        });
        let Shard {
            index: table,
            entries,
            arena,
        } = self;
        table.insert_unique(
            hash,
            index as u32,
            rehasher(entries, arena, hash_key, scoped),
        );
        index
    }

    /// Puts `cutoff` in the entry unless it holds the same or a higher rank.
    fn replace(&mut self, index: usize, cutoff: &Cutoff) -> bool {
        if self.entries.get(index).rank() >= Some(cutoff.rank()) {
            return false;
        }
        let preserved = match &cutoff.preserved {
            Some(Preserved {
                session_id,
                expires_at,
            }) => self
                .arena
                .push_preserved(*expires_at, session_id.as_bytes()),
            None => NOT_PRESERVED,
        };
        let entry = self.entries.get_mut(index);
        entry.preserved = preserved;
        entry.valid_after = cutoff.valid_after;
        entry.version = cutoff.version;
        true
    }

    fn held(&self, number: usize, index: usize) -> Held<'_> {
        Held {
            id: id(number, index),
            entry: *self.entries.get(index),
            arena: &self.arena,
        }
    }
}

// === impl Entries ===

impl Entries {
    fn push(&mut self, entry: Entry) {
        if self.len.is_multiple_of(ENTRY_CHUNK) {
            self.chunks.push(Vec::with_capacity(ENTRY_CHUNK));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(entry);
        self.len += 1;
    }

    fn get(&self, index: usize) -> &Entry {
        &self.chunks[index / ENTRY_CHUNK][index % ENTRY_CHUNK]
    }

    fn get_mut(&mut self, index: usize) -> &mut Entry {
        &mut self.chunks[index / ENTRY_CHUNK][index % ENTRY_CHUNK]
    }
}

// === impl Entry ===

impl Entry {
    fn valid_after(&self) -> Option<i64> {
        (self.preserved != NO_CUTOFF).then_some(self.valid_after)
    }

    fn rank(&self) -> Option<(i64, u64)> {
        Some((self.valid_after()?, self.version))
    }
}

// === impl Held ===

impl<'a> Held<'a> {
    /// `None`: the entry holds no cutoff.
    pub(super) fn valid_after(&self) -> Option<i64> {
        self.entry.valid_after()
    }

    /// See `Cutoff::rank`.
    pub(super) fn rank(&self) -> Option<(i64, u64)> {
        self.entry.rank()
    }

    pub(super) fn preserved(&self) -> Option<PreservedRef<'a>> {
        let at = self.entry.preserved;
        (at < FIRST_SENTINEL).then(|| self.arena.preserved(at))
    }

    /// A copy of the cutoff held.
    pub(super) fn cutoff(&self) -> Option<Cutoff> {
        let preserved = self.preserved().map(|p| Preserved {
            session_id: text(p.session_id).into_owned(),
            expires_at: p.expires_at,
        });
        Some(Cutoff {
            valid_after: self.valid_after()?,
            preserved,
            version: self.entry.version,
        })
    }
}

/// The hash of the key an index slot points to, for a growing index to move it by.
fn rehasher<'a>(
    entries: &'a Entries,
    arena: &'a Arena,
    hash_key: impl Fn(Key<'_>) -> u64 + 'a,
    scoped: bool,
) -> impl Fn(&u32) -> u64 + 'a {
    move |index| hash_key(arena.key(entries.get(*index as usize).key, scoped))
}

fn id(shard: usize, index: usize) -> u32 {
    ((index << SHARD_BITS) | shard) as u32
}

/// Keys and session ids are written from `&str` only: this borrows them.
pub(super) fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A panic under a write lock cannot leave a shard half-changed (an entry is pushed
/// before it is indexed, and both stay valid), so a poisoned lock is used as it is.
fn read_lock(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}
