//! Prometheus metrics, encoded by prometheus-client for the ops listener.
//!
//! Each room registers its own metrics in the one registry at start (`AuthMetrics`,
//! `SessionMetrics`, `ProxyMetrics`) and resolves the series its hot path touches then,
//! so a request only does atomic adds (a `Family` lookup takes a lock).

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// Increments a gauge now and decrements it when dropped (an open connection or tunnel).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

/// The registry every metric goes in, named `sessiongate_*`.
pub fn registry() -> Registry {
    Registry::with_prefix("sessiongate")
}

/// `metric`, registered under `sessiongate_<name>`: the handle the room keeps.
pub fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The Prometheus text exposition of `registry`.
pub(super) fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

// === impl GaugeGuard ===

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
