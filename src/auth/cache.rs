//! The verified-token cache: signature checks and claim parsing run once per token.
//!
//! Keyed by the token's SHA-256. Entries leave at `exp + leeway` (the token can never pass
//! after that) and are ignored once the key set has changed, so a token verified by a key
//! that has since been removed does not stay accepted. The time rules and the session rule
//! are not cached: they run on every request.

use std::sync::Arc;
use std::time::Duration;

use moka::Expiry;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;

use super::token::Claims;

/// `jwt.verify_cache_entries` verified tokens, counting hits and misses.
pub(super) struct VerifyCache {
    entries: Cache<[u8; 32], Verified>,
    hits: Counter,
    misses: Counter,
}

/// A cache entry: the claims, and the key set generation that verified them.
#[derive(Clone)]
struct Verified {
    claims: Arc<Claims>,
    generation: u64,
}

/// Cache entries leave at `exp + leeway`.
struct UntilExpiry {
    leeway: f64,
}

// === impl VerifyCache ===

impl VerifyCache {
    /// A cache of `capacity` tokens; `None` when the cache is off (0).
    pub(super) fn new(
        capacity: u64,
        leeway: f64,
        (hits, misses): (Counter, Counter),
    ) -> Option<Self> {
        let entries = Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExpiry { leeway })
            .build();
        (capacity > 0).then_some(Self {
            entries,
            hits,
            misses,
        })
    }

    /// The claims of a token verified under key set `generation`, if remembered.
    pub(super) fn get(&self, digest: &[u8; 32], generation: u64) -> Option<Arc<Claims>> {
        let hit = self
            .entries
            .get(digest)
            .filter(|verified| verified.generation == generation);
        match &hit {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        hit.map(|verified| verified.claims)
    }

    /// Remembers a token that passed steps 1-4 under key set `generation`.
    pub(super) fn insert(&self, digest: [u8; 32], claims: Arc<Claims>, generation: u64) {
        let verified = Verified { claims, generation };
        self.entries.insert(digest, verified);
    }
}

// === impl UntilExpiry ===

impl Expiry<[u8; 32], Verified> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Verified,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let remaining = value.claims.expires_at + self.leeway - crate::clock::now();
        Some(Duration::from_secs_f64(remaining.clamp(0.0, 1e9)))
    }
}
