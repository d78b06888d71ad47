//! Prometheus metrics, encoded by prometheus-client for the ops listener.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric the gateway exports, registered once at start.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub rejections: Family<ReasonLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub logouts: Family<ActionLabels, Counter>,
    pub store_up: Gauge,
    pub cutoffs_loaded: Gauge,
    /// Shared store only: seconds since this instance was last known in step with it.
    pub store_sync_age: Gauge<f64, AtomicU64>,
    /// Shared store only: links to Redis lost (each is followed by reconnect and resync).
    pub store_disconnects: Counter,
    /// Shared store only: full resyncs completed (after each connect, every resync_secs).
    pub store_resyncs: Counter,
}

/// `outcome`: forwarded, rejected, admin, error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// `reason`: a rejection reason of SPEC section 3.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `kind`: unreachable or timeout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// `action`: logout_all, user_logout, logout_others.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

// === impl Metrics ===

impl Metrics {
    /// Registers every metric under the `sessiongate` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sessiongate");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register("requests", "Requests by outcome", requests.clone());
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register("rejections", "Refused tokens by reason", rejections.clone());
        let request_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers",
            request_duration.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        let logouts = Family::<ActionLabels, Counter>::default();
        registry.register("logouts", "Committed logouts by action", logouts.clone());
        let store_up = Gauge::default();
        registry.register("store_up", "1 when the store answers", store_up.clone());
        let cutoffs_loaded = Gauge::default();
        registry.register(
            "cutoffs_loaded",
            "Cutoffs loaded from the store (at start; shared store: at the last resync)",
            cutoffs_loaded.clone(),
        );
        let store_sync_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "store_sync_age_seconds",
            "Seconds since the last proof of sync with the shared store (0 for embedded)",
            store_sync_age.clone(),
        );
        let store_disconnects = Counter::default();
        registry.register(
            "store_disconnects",
            "Links to the shared store lost",
            store_disconnects.clone(),
        );
        let store_resyncs = Counter::default();
        registry.register(
            "store_resyncs",
            "Full resyncs from the shared store",
            store_resyncs.clone(),
        );
        Self {
            registry,
            requests,
            rejections,
            request_duration,
            upstream_errors,
            logouts,
            store_up,
            cutoffs_loaded,
            store_sync_age,
            store_disconnects,
            store_resyncs,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
