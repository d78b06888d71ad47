//! The events room's metrics, by endpoint: pending, delivered, retried, dropped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ops::registered;

/// The families, registered once at start.
pub(super) struct EventMetrics {
    pending: Family<EndpointLabels, Gauge>,
    delivered: Family<EndpointLabels, Counter>,
    retried: Family<EndpointLabels, Counter>,
    dropped: Family<EndpointLabels, Counter>,
}

/// One endpoint's series, resolved at start.
#[derive(Debug, Clone)]
pub(super) struct EndpointMetrics {
    /// Undelivered events in the store (fleet-wide with a shared store).
    pub(super) pending: Gauge,
    pub(super) delivered: Counter,
    /// Failed attempts that will be tried again.
    pub(super) retried: Counter,
    /// Events given up after `retry_for_secs` (or unreadable).
    pub(super) dropped: Counter,
}

/// `endpoint`: the URL without credentials or query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

// === impl EventMetrics ===

impl EventMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            registered(registry, name, help, Family::default())
        };
        Self {
            pending: registered(
                registry,
                "events_pending",
                "Events not yet delivered to the endpoint, in the store",
                Family::default(),
            ),
            delivered: counter(
                registry,
                "events_delivered",
                "Events the endpoint answered 2xx",
            ),
            retried: counter(
                registry,
                "events_retried",
                "Failed attempts (non-2xx, timeout, no connection) to be retried",
            ),
            dropped: counter(
                registry,
                "events_dropped",
                "Events given up: not delivered within retry_for_secs",
            ),
        }
    }

    /// The series of `endpoint`, at 0 from the start.
    pub(super) fn endpoint(&self, endpoint: &str) -> EndpointMetrics {
        let labels = EndpointLabels {
            endpoint: endpoint.to_string(),
        };
        EndpointMetrics {
            pending: self.pending.get_or_create(&labels).clone(),
            delivered: self.delivered.get_or_create(&labels).clone(),
            retried: self.retried.get_or_create(&labels).clone(),
            dropped: self.dropped.get_or_create(&labels).clone(),
        }
    }
}
