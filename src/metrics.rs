//! Prometheus metrics, encoded by prometheus-client for the ops listener.
//!
//! Counters touched on every request are resolved once at start, so the request path
//! only does atomic adds (a `Family` lookup takes a lock).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::token::TokenError;

/// Every metric the gateway exports, registered once at start.
pub struct Metrics {
    registry: Registry,
    requests: [Counter; Outcome::ALL.len()],
    rejections: [Counter; TokenError::ALL.len()],
    /// Request to response headers, as the client sees it.
    pub request_duration: Histogram,
    /// The part of `request_duration` spent in the gateway (not waiting for the upstream).
    pub gateway_duration: Histogram,
    /// Upstream request to upstream response headers.
    pub upstream_duration: Histogram,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub logouts: Family<ActionLabels, Counter>,
    pub open_connections: Gauge,
    pub open_tunnels: Gauge,
    pub store_up: Gauge,
    pub cutoffs_loaded: Gauge,
    pub jwks_refreshes: Family<ResultLabels, Counter>,
    pub verify_cache_hits: Counter,
    pub verify_cache_misses: Counter,
    /// Shared store only: seconds since this instance was last known in step with it.
    pub store_sync_age: Gauge<f64, AtomicU64>,
    /// Shared store only: links to Redis lost (each is followed by reconnect and resync).
    pub store_disconnects: Counter,
    /// Shared store only: full resyncs completed (after each connect, every resync_secs).
    pub store_resyncs: Counter,
}

/// How a request on the main listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the upstream.
    Forwarded,
    /// A refused token (401 or login redirect).
    Rejected,
    /// Answered by the admin API.
    Admin,
    /// Anything else: bad path, not ready, upstream failure, ...
    Error,
}

/// `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// `reason`: a rejection reason of SPEC section 3.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `kind`: unreachable, connect_timeout or timeout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// `result`: ok / error (JWKS refreshes), hit / miss (verify cache).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
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
        registry.register(
            "requests",
            "Requests on the main listener by outcome",
            requests.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register("rejections", "Refused tokens by reason", rejections.clone());
        let latency = || Histogram::new(exponential_buckets(0.000_025, 2.0, 20));
        let (request_duration, gateway_duration, upstream_duration) =
            (latency(), latency(), latency());
        registry.register(
            "request_duration_seconds",
            "Request to response headers",
            request_duration.clone(),
        );
        registry.register(
            "gateway_duration_seconds",
            "Time added by the gateway",
            gateway_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Upstream response-header latency",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        let logouts = Family::<ActionLabels, Counter>::default();
        registry.register("logouts", "Committed logouts by action", logouts.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let open_connections = gauge(&mut registry, "open_connections", "Client connections open");
        let open_tunnels = gauge(&mut registry, "open_tunnels", "WebSocket tunnels open");
        let store_up = gauge(&mut registry, "store_up", "1 when the store answers");
        let cutoffs_loaded = gauge(
            &mut registry,
            "cutoffs_loaded",
            "Cutoffs loaded from the store (at start; shared store: at the last resync)",
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
        let jwks_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "jwks_refreshes",
            "Remote JWKS fetches by result",
            jwks_refreshes.clone(),
        );
        let verify_cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "verify_cache",
            "Verified-token cache lookups by result",
            verify_cache.clone(),
        );
        // One statement each: a `get_or_create` guard lives to the end of its statement, and a
        // second lookup in the same statement would wait for it forever.
        let verify_cache_hits = verify_cache
            .get_or_create(&ResultLabels { result: "hit" })
            .clone();
        let verify_cache_misses = verify_cache
            .get_or_create(&ResultLabels { result: "miss" })
            .clone();
        let requests = Outcome::ALL.map(|o| {
            requests
                .get_or_create(&OutcomeLabels {
                    outcome: o.as_str(),
                })
                .clone()
        });
        let rejections = TokenError::ALL.map(|r| {
            rejections
                .get_or_create(&ReasonLabels { reason: r.as_str() })
                .clone()
        });
        // Known label values start at 0, so a first event is an increase, not a new series.
        for kind in ["unreachable", "connect_timeout", "timeout"] {
            let _ = upstream_errors.get_or_create(&KindLabels { kind });
        }
        for action in ["logout_all", "user_logout", "logout_others"] {
            let _ = logouts.get_or_create(&ActionLabels { action });
        }
        for result in ["ok", "error"] {
            let _ = jwks_refreshes.get_or_create(&ResultLabels { result });
        }
        Self {
            registry,
            requests,
            rejections,
            request_duration,
            gateway_duration,
            upstream_duration,
            upstream_errors,
            logouts,
            open_connections,
            open_tunnels,
            store_up,
            cutoffs_loaded,
            jwks_refreshes,
            verify_cache_hits,
            verify_cache_misses,
            store_sync_age,
            store_disconnects,
            store_resyncs,
        }
    }

    /// Counts one request on the main listener.
    pub fn request(&self, outcome: Outcome) {
        self.requests[outcome as usize].inc();
    }

    /// Counts one refused token.
    pub fn rejection(&self, reason: TokenError) {
        self.rejections[reason as usize].inc();
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

// === impl Outcome ===

impl Outcome {
    /// Every outcome, in declaration order (the index of the counter array).
    pub const ALL: [Outcome; 4] = [Self::Forwarded, Self::Rejected, Self::Admin, Self::Error];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Rejected => "rejected",
            Self::Admin => "admin",
            Self::Error => "error",
        }
    }
}

/// Increments a gauge now and decrements it when dropped (an open connection or tunnel).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// `gauge + 1` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_order_matches_the_enums() {
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
        for (index, reason) in TokenError::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
    }

    #[test]
    fn counters_show_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.request(Outcome::Rejected);
        metrics.rejection(TokenError::SessionInvalidated);
        let text = metrics.encode();
        assert!(
            text.contains("sessiongate_requests_total{outcome=\"rejected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sessiongate_rejections_total{reason=\"session_invalidated\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sessiongate_requests_total{outcome=\"forwarded\"} 0"),
            "{text}"
        );
    }
}
