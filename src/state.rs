//! `AppState`: the handles every room shares, built once at start.
//!
//! The proxy, the admin API and the ops listener hold it; it holds nothing of theirs, so
//! dependencies fall one way (`proxy`, `admin`, `ops` -> `state` -> `auth`, `sessions`,
//! `store`).

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthMetrics, KeyRing, Verifier};
use crate::config::Config;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::web::GatewayError;

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
    /// Cancelled at shutdown: tunnels and streams close, the accept loop stops.
    pub shutdown: CancellationToken,
}

// === impl AppState ===

impl AppState {
    /// State that is not ready until the store is loaded and every key source answered;
    /// its rooms' metrics go in `registry`.
    pub fn new(config: Config, keys: KeyRing, store: Store, registry: &mut Registry) -> Self {
        let verifier = Verifier::new(&config, keys.into(), AuthMetrics::register(registry));
        Self {
            verifier,
            sessions: Sessions::new(registry),
            store,
            config,
            shutdown: CancellationToken::new(),
        }
    }

    /// Whether cutoffs and keys are loaded (fail closed until then).
    pub fn is_ready(&self) -> bool {
        self.sessions.is_loaded() && self.verifier.keys().is_ready()
    }

    /// Fail closed: 503 until every cutoff is loaded, and while the cutoffs in memory are
    /// older than `store.max_staleness_secs` allows.
    pub fn open_gate(&self) -> Result<(), GatewayError> {
        if !self.is_ready() {
            return Err(GatewayError::NotReady);
        }
        if self.store.shared().is_some_and(|store| store.is_stale()) {
            return Err(GatewayError::StoreStale);
        }
        Ok(())
    }

    /// Where this instance stands with its store.
    pub fn store_status(&self) -> StoreStatus {
        if !self.sessions.is_loaded() {
            return StoreStatus::Loading;
        }
        match self.store.shared() {
            Some(store) if store.is_stale() => StoreStatus::Stale,
            Some(store) if !store.is_up() => StoreStatus::Degraded,
            _ => StoreStatus::Loaded,
        }
    }
}
