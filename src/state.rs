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
    /// State that is not ready until `mark_ready`.
    pub fn new(config: Config, keys: Arc<KeyRing>, store: Store, upstream: Upstream) -> Self {
        let metrics = Metrics::new();
        Self {
            verifier: Verifier::new(
                config.jwt.clone(),
                config.sessions,
                keys,
                (
                    metrics.verify_cache_hits.clone(),
                    metrics.verify_cache_misses.clone(),
                ),
            ),
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
        self.metrics.cutoffs_loaded.set(count as i64);
        self.metrics.store_up.set(1);
        self.store_loaded.store(true, Ordering::Release);
        Ok(count)
    }
}
