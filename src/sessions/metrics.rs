//! The sessions room's metrics: what was loaded, the link to a shared store, logouts.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ops::registered;
use crate::store::Action;

/// Registered once at start; cloned handles share the same series.
#[derive(Debug)]
pub(super) struct SessionMetrics {
    pub(super) logouts: Family<ActionLabels, Counter>,
    pub(super) store_up: Gauge,
    pub(super) cutoffs_loaded: Gauge,
    /// Shared store only: seconds since this instance was last known in step with it.
    pub(super) store_sync_age: Gauge<f64, AtomicU64>,
    /// Shared store only: links lost (each is followed by reconnect and resync).
    pub(super) store_disconnects: Counter,
    /// Shared store only: full resyncs completed (after each connect, every resync_secs).
    pub(super) store_resyncs: Counter,
    /// Sentinel only: connections made to another primary than the last one.
    pub(super) store_primary_changes: Counter,
    /// Commits fewer replicas acknowledged than `store.redis_min_replicas` (answered 503).
    pub(super) store_unreplicated_commits: Counter,
    /// Records this instance wrote back to a store that lacked them or held them lower.
    pub(super) store_restored_records: Counter,
    /// Workspaces with an activity window in memory (each at most 7 x 2 sketches).
    pub(super) activity_windows: Gauge,
}

/// `action`: logout_all, user_logout, logout_others.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) action: &'static str,
}

// === impl SessionMetrics ===

impl SessionMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let logouts = Family::<ActionLabels, Counter>::default();
        // Known label values start at 0, so a first event is an increase, not a new series.
        for action in Action::ALL {
            let _ = logouts.get_or_create(&ActionLabels {
                action: action.as_str(),
            });
        }
        let [store_up, cutoffs_loaded, activity_windows] = [
            ("store_up", "1 when the store answers"),
            (
                "cutoffs_loaded",
                "Cutoffs loaded from the store (at start; shared store: at the last resync)",
            ),
            (
                "activity_windows",
                "Workspaces whose activity of the last hour is counted in memory",
            ),
        ]
        .map(|(name, help)| registered(registry, name, help, Gauge::default()));
        let [
            store_disconnects,
            store_resyncs,
            store_primary_changes,
            store_unreplicated_commits,
            store_restored_records,
        ] = [
            ("store_disconnects", "Links to the shared store lost"),
            ("store_resyncs", "Full resyncs from the shared store"),
            (
                "store_primary_changes",
                "Redis Sentinel: connections made to a new primary (failovers followed)",
            ),
            (
                "store_unreplicated_commits",
                "Commits fewer replicas acknowledged than store.redis_min_replicas (answered 503)",
            ),
            (
                "store_restored_records",
                "Records written back to a shared store that lacked them or held them lower",
            ),
        ]
        .map(|(name, help)| registered(registry, name, help, Counter::default()));
        let age = "Seconds since the last proof of sync with the shared store (0 for embedded)";
        Self {
            logouts: registered(registry, "logouts", "Committed logouts by action", logouts),
            store_sync_age: registered(registry, "store_sync_age_seconds", age, Gauge::default()),
            store_up,
            cutoffs_loaded,
            activity_windows,
            store_disconnects,
            store_resyncs,
            store_primary_changes,
            store_unreplicated_commits,
            store_restored_records,
        }
    }

    /// Counts one committed change.
    pub(super) fn committed(&self, action: Action) {
        self.logouts
            .get_or_create(&ActionLabels {
                action: action.as_str(),
            })
            .inc();
    }
}
