//! A latency histogram observed with atomic adds only.
//!
//! prometheus-client's `Histogram` takes a write lock per `observe`; the request path
//! observes three of them per request. This one adds to atomic counters (the bucket, the
//! sum in nanoseconds) and is exposed in the same text format. A scrape reads the buckets
//! one by one, so it may see a request in one bucket and not yet in the sum: harmless for
//! a latency histogram, and the count is derived from the buckets so it always agrees with
//! `+Inf`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Exponential buckets from 25 µs, doubling 20 times (to ~13 s), then `+Inf`.
#[derive(Clone)]
pub struct LatencyHistogram {
    inner: Arc<Inner>,
}

struct Inner {
    /// Upper bounds, in nanoseconds, of every bucket but `+Inf`.
    bounds: Vec<u64>,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

// === impl LatencyHistogram ===

impl LatencyHistogram {
    /// The request path's latency buckets.
    pub fn new() -> Self {
        let bounds: Vec<u64> = (0..20).map(|i| 25_000 << i).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.inner.bounds.partition_point(|&bound| bound < nanos);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").finish_non_exhaustive()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let upper = self.inner.bounds.iter().map(|&n| n as f64 / 1e9);
        let buckets: Vec<(f64, u64)> = upper
            .chain([f64::MAX])
            .zip(&self.inner.counts)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_their_bucket_in_the_exposition() {
        let mut registry = Registry::default();
        let histogram = LatencyHistogram::new();
        registry.register("latency_seconds", "test", histogram.clone());
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_micros(25));
        histogram.observe(Duration::from_micros(30));
        histogram.observe(Duration::from_secs(100));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE latency_seconds histogram",
            "latency_seconds_bucket{le=\"0.000025\"} 2",
            "latency_seconds_bucket{le=\"0.00005\"} 3",
            "latency_seconds_bucket{le=\"+Inf\"} 4",
            "latency_seconds_count 4",
            "latency_seconds_sum 100.000065",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
