//! The verified-token cache: signature checks and claim parsing run once per token.
//!
//! A hit costs one keyed hash of the token (foldhash, seeded at random per process), a
//! shard's read lock and a full comparison of the token bytes: no SHA-256 and no
//! bookkeeping of a general-purpose cache (this replaced a moka cache keyed by SHA-256:
//! with the atomic histograms, 46.7 -> 43.3 µs of gateway CPU per HS256 cache-warm request
//! and +9 % req/s in one interleaved `benches/load.sh` run, docs/perf/issue-15.md). A 64-bit hash
//! collision never admits another token: entries keep their token and are compared in
//! full. Entries are ignored once the key set has changed, so a token verified by a key
//! that has since been removed does not stay accepted. Entries past `exp + leeway` (the
//! token can never pass after that) are dropped when their shard is swept. The time rules
//! and the session rule are not cached: they run on every request.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;
use prometheus_client::metrics::counter::Counter;

use super::token::Claims;

/// Shards, so concurrent hits and inserts on different tokens rarely meet on one lock.
const SHARDS: usize = 16;

/// `jwt.verify_cache_entries` verified tokens, counting hits and misses.
pub(super) struct VerifyCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: foldhash::fast::RandomState,
    /// Entries a shard holds before it is swept.
    per_shard: usize,
    leeway: f64,
    hits: Counter,
    misses: Counter,
}

/// A cache entry: the token, its claims, and the key set generation that verified them.
struct Verified {
    token: Box<str>,
    hash: u64,
    claims: Arc<Claims>,
    generation: u64,
    /// Hit since the last sweep: such entries survive it (second chance).
    used: AtomicBool,
}

#[derive(Default)]
struct Shard {
    entries: HashTable<Verified>,
}

// === impl VerifyCache ===

impl VerifyCache {
    /// A cache of about `capacity` tokens; `None` when the cache is off (0).
    pub(super) fn new(
        capacity: u64,
        leeway: f64,
        (hits, misses): (Counter, Counter),
    ) -> Option<Self> {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shards = SHARDS.min(capacity);
        (capacity > 0).then(|| Self {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            per_shard: capacity.div_ceil(shards),
            leeway,
            hits,
            misses,
        })
    }

    /// The claims of `token` verified under key set `generation`, if remembered.
    pub(super) fn get(&self, token: &str, generation: u64) -> Option<Arc<Claims>> {
        let hash = self.hasher.hash_one(token);
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let hit = shard
            .entries
            .find(hash, |entry| *entry.token == *token)
            .filter(|entry| entry.generation == generation);
        let Some(entry) = hit else {
            self.misses.inc();
            return None;
        };
        self.hits.inc();
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        Some(entry.claims.clone())
    }

    /// Remembers a token that passed steps 1-4 under key set `generation` at time `now`.
    pub(super) fn insert(&self, token: &str, claims: Arc<Claims>, generation: u64, now: f64) {
        let hash = self.hasher.hash_one(token);
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = shard.entries.find_mut(hash, |e| *e.token == *token) {
            (entry.claims, entry.generation) = (claims, generation);
            return;
        }
        if shard.entries.len() >= self.per_shard {
            shard.sweep(self.per_shard, now - self.leeway);
        }
        let entry = Verified {
            token: token.into(),
            hash,
            claims,
            generation,
            used: AtomicBool::new(false),
        };
        shard.entries.insert_unique(hash, entry, |e| e.hash);
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // The table uses the hash's low bits; the shard takes the high ones.
        let index = (hash >> 32) as usize % self.shards.len();
        &self.shards[index]
    }
}

// === impl Shard ===

impl Shard {
    /// Makes room in a full shard: drops the entries expired by `expired_before` and those
    /// not hit since the last sweep, then, if fewer than a quarter went, enough others to
    /// free that quarter. Every sweep frees a quarter, so it costs O(1) per insert
    /// amortized.
    fn sweep(&mut self, capacity: usize, expired_before: f64) {
        self.entries.retain(|entry| {
            let keep = entry.claims.expires_at > expired_before && *entry.used.get_mut();
            *entry.used.get_mut() = false;
            keep
        });
        let target = capacity.saturating_sub((capacity / 4).max(1));
        let mut excess = self.entries.len().saturating_sub(target);
        self.entries.retain(|_| {
            let keep = excess == 0;
            excess = excess.saturating_sub(1);
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: u64) -> VerifyCache {
        VerifyCache::new(capacity, 0.0, (Counter::default(), Counter::default())).unwrap()
    }

    fn claims(workspace: &str, expires_at: f64) -> Arc<Claims> {
        Arc::new(Claims {
            workspace: workspace.to_string(),
            subject: None,
            user: None,
            user_folded: None,
            sid: None,
            session_id: format!("jti:{workspace}"),
            session_time: 0.0,
            expires_at,
            issued_at: 0.0,
            not_before: None,
            roles: Vec::new(),
            payload: serde_json::Map::new(),
            identity: std::sync::OnceLock::new(),
        })
    }

    #[test]
    fn a_hit_needs_the_same_token_and_key_set() {
        let cache = cache(10);
        cache.insert("a.b.c", claims("acme", 100.0), 1, 0.0);
        assert_eq!(cache.get("a.b.c", 1).unwrap().workspace, "acme");
        assert!(cache.get("a.b.d", 1).is_none(), "another token");
        assert!(cache.get("a.b.", 1).is_none(), "a prefix of the token");
        assert!(cache.get("a.b.c", 2).is_none(), "the key set changed");
        assert_eq!((cache.hits.get(), cache.misses.get()), (1, 3));
    }

    #[test]
    fn entries_sharing_a_hash_are_told_apart_by_their_token() {
        let cache = cache(10);
        let mut shard = cache.shards[0].write().unwrap();
        for (token, workspace) in [("one", "first"), ("two", "second")] {
            let entry = Verified {
                token: token.into(),
                hash: 7,
                claims: claims(workspace, 100.0),
                generation: 1,
                used: AtomicBool::new(false),
            };
            shard.entries.insert_unique(7, entry, |e| e.hash);
        }
        let found = |token: &str| shard.entries.find(7, |e| *e.token == *token);
        assert_eq!(found("one").unwrap().claims.workspace, "first");
        assert_eq!(found("two").unwrap().claims.workspace, "second");
        assert!(found("three").is_none());
    }

    #[test]
    fn the_size_stays_bounded_and_used_entries_survive_a_sweep() {
        let cache = cache(64);
        cache.insert("kept", claims("acme", 1e12), 1, 0.0);
        for i in 0..10_000 {
            assert!(cache.get("kept", 1).is_some(), "lost after {i} inserts");
            cache.insert(&format!("token-{i}"), claims("acme", 1e12), 1, 0.0);
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.read().unwrap().entries.len())
            .sum();
        assert!(held <= 64, "{held} entries");
    }

    #[test]
    fn a_sweep_drops_expired_entries_first() {
        let cache = VerifyCache::new(1, 5.0, (Counter::default(), Counter::default())).unwrap();
        cache.insert("old", claims("acme", 100.0), 1, 0.0);
        let _ = cache.get("old", 1);
        cache.insert("new", claims("acme", 1e12), 1, 106.0);
        assert!(cache.get("old", 1).is_none(), "expired at exp + leeway");
        assert!(cache.get("new", 1).is_some());
    }
}
