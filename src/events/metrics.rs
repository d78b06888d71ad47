//! The events room's metrics, by endpoint: pending, in flight, delivered, retried, dropped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::ops::registered;

/// The families, registered once at start.
pub(super) struct EventMetrics {
    pending: Family<EndpointLabels, Gauge>,
    in_flight: Family<EndpointLabels, Gauge>,
    delivered: Family<EndpointLabels, Counter>,
    retried: Family<EndpointLabels, Counter>,
    dropped: Family<EndpointLabels, Counter>,
}

/// One endpoint's series, resolved at start.
#[derive(Debug, Clone)]
pub(super) struct EndpointMetrics {
    /// Undelivered events in the store (fleet-wide with a shared store).
    pub(super) pending: Gauge,
    /// Attempts sent and not answered yet, by this instance.
    pub(super) in_flight: Gauge,
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
        Self {
            pending: family(
                registry,
                "events_pending",
                "Events not yet delivered to the endpoint, in the store",
            ),
            in_flight: family(
                registry,
                "events_in_flight",
                "Attempts this instance has sent to the endpoint and not seen answered",
            ),
            delivered: family(
                registry,
                "events_delivered",
                "Events the endpoint answered 2xx",
            ),
            retried: family(
                registry,
                "events_retried",
                "Failed attempts (non-2xx, timeout, no connection) to be retried",
            ),
            dropped: family(
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
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            delivered: self.delivered.get_or_create(&labels).clone(),
            retried: self.retried.get_or_create(&labels).clone(),
            dropped: self.dropped.get_or_create(&labels).clone(),
        }
    }
}

/// A family by endpoint, registered under `sessiongate_<name>`.
fn family<M>(registry: &mut Registry, name: &str, help: &str) -> Family<EndpointLabels, M>
where
    Family<EndpointLabels, M>: Metric + Default,
{
    registered(registry, name, help, Family::default())
}
