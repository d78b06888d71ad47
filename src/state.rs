//! `AppState`: every shared handle, built once at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::forward::Upstream;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::token::Verifier;

/// What `/readyz` says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// Not every cutoff is in memory yet: fail closed.
    Loading,
    /// In step with the store.
    Loaded,
    /// The shared store is out of reach: enforcing the last loaded cutoffs.
    Degraded,
    /// Out of reach for longer than `store.max_staleness_secs`: proxied requests get 503.
    Stale,
}

/// Shared by every connection and task.
pub struct AppState {
    pub config: Config,
    pub verifier: Verifier,
    pub sessions: Sessions,
    pub store: Store,
    pub upstream: Upstream,
    pub metrics: Metrics,
    /// Cancelled at shutdown: tunnels and streams close, the accept loop stops.
    pub shutdown: CancellationToken,
    /// WebSocket tunnels, which outlive the HTTP connection that opened them.
    pub tunnels: TaskTracker,
    /// Set once the store's cutoffs are in `sessions`; until then requests get 503.
    store_loaded: AtomicBool,
}

// === impl AppState ===

impl AppState {
    /// State that is not ready until the store is loaded and every key source answered.
    pub fn new(config: Config, keys: Arc<KeyRing>, store: Store, upstream: Upstream) -> Self {
        let metrics = Metrics::new();
        let cache_counters = (
            metrics.verify_cache_hits.clone(),
            metrics.verify_cache_misses.clone(),
        );
        Self {
            verifier: Verifier::new(config.jwt.clone(), config.sessions, keys, cache_counters),
            upstream,
            shutdown: CancellationToken::new(),
            tunnels: TaskTracker::new(),
            sessions: Sessions::default(),
            metrics,
            store,
            config,
            store_loaded: AtomicBool::new(false),
        }
    }

    /// Whether cutoffs and keys are loaded (fail closed until then).
    pub fn is_ready(&self) -> bool {
        self.store_is_loaded() && self.verifier.keys().is_ready()
    }

    /// Whether every stored cutoff is in memory.
    pub fn store_is_loaded(&self) -> bool {
        self.store_loaded.load(Ordering::Acquire)
    }

    /// Loads every stored cutoff into memory, then opens the gate.
    pub async fn load(&self) -> Result<usize, crate::store::StoreError> {
        let cutoffs = self.store.load().await?;
        let count = cutoffs.len();
        for (scope, cutoff) in cutoffs {
            self.sessions.apply(&scope, cutoff);
        }
        self.loaded(count);
        Ok(count)
    }

    /// Every stored cutoff is in `sessions` (`count` of them). The fleet task calls this
    /// after each resync of a shared store.
    pub fn loaded(&self, count: usize) {
        self.metrics
            .cutoffs_loaded
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.metrics.store_up.set(1);
        self.store_loaded.store(true, Ordering::Release);
    }

    /// Where this instance stands with its store.
    pub fn store_status(&self) -> StoreStatus {
        if !self.store_is_loaded() {
            return StoreStatus::Loading;
        }
        match self.store.shared() {
            Some(store) if store.is_stale() => StoreStatus::Stale,
            Some(store) if !store.is_up() => StoreStatus::Degraded,
            _ => StoreStatus::Loaded,
        }
    }

    /// Sets the store gauges that depend on the time of the scrape.
    pub fn observe_store(&self) {
        if let Some(store) = self.store.shared() {
            let age = store.since_sync().as_secs_f64();
            self.metrics.store_sync_age.set(age);
        }
    }
}
