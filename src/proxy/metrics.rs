//! The request path's metrics: outcomes, refusals, latencies, upstream failures, open
//! connections and tunnels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::TokenError;
use crate::ops::{LatencyHistogram, registered};
use crate::web::UpstreamError;

/// Registered once at start; the per-request series are resolved then.
pub(super) struct ProxyMetrics {
    requests: [Counter; Outcome::ALL.len()],
    rejections: [Counter; TokenError::ALL.len()],
    /// Request to response headers, as the client sees it.
    pub(super) request_duration: LatencyHistogram,
    /// The part of `request_duration` spent in the gateway (not waiting for the upstream).
    pub(super) gateway_duration: LatencyHistogram,
    /// Upstream request to upstream response headers.
    pub(super) upstream_duration: LatencyHistogram,
    upstream_errors: Family<KindLabels, Counter>,
    pub(super) open_connections: Gauge,
    pub(super) open_tunnels: Gauge,
}

/// How a request on the main listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
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
struct OutcomeLabels {
    outcome: &'static str,
}

/// `reason`: a rejection reason of SPEC section 3.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `kind`: unreachable, connect_timeout or timeout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

// === impl ProxyMetrics ===

impl ProxyMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let outcomes = Outcome::ALL.map(|o| OutcomeLabels {
            outcome: o.as_str(),
        });
        let reasons = TokenError::ALL.map(|r| ReasonLabels { reason: r.as_str() });
        let upstream_errors = Family::<KindLabels, Counter>::default();
        for kind in UpstreamError::KINDS {
            let _ = upstream_errors.get_or_create(&KindLabels { kind });
        }
        let [request_duration, gateway_duration, upstream_duration] = [
            ("request_duration_seconds", "Request to response headers"),
            ("gateway_duration_seconds", "Time added by the gateway"),
            (
                "upstream_duration_seconds",
                "Upstream response-header latency",
            ),
        ]
        .map(|(name, help)| registered(registry, name, help, LatencyHistogram::new()));
        let [open_connections, open_tunnels] = [
            ("open_connections", "Client connections open"),
            ("open_tunnels", "WebSocket tunnels open"),
        ]
        .map(|(name, help)| registered(registry, name, help, Gauge::default()));
        let help = "Upstream failures by kind";
        Self {
            requests: counters(
                registry,
                "requests",
                "Requests on the main listener by outcome",
                outcomes,
            ),
            rejections: counters(registry, "rejections", "Refused tokens by reason", reasons),
            upstream_errors: registered(registry, "upstream_errors", help, upstream_errors),
            request_duration,
            gateway_duration,
            upstream_duration,
            open_connections,
            open_tunnels,
        }
    }

    /// Counts one request on the main listener.
    pub(super) fn request(&self, outcome: Outcome) {
        self.requests[outcome as usize].inc();
    }

    /// Counts one refused token.
    pub(super) fn rejection(&self, reason: TokenError) {
        self.rejections[reason as usize].inc();
    }

    /// Counts one upstream failure.
    pub(super) fn upstream_error(&self, error: &UpstreamError) {
        self.upstream_errors
            .get_or_create(&KindLabels { kind: error.kind() })
            .inc();
    }
}

/// A counter family registered with every label value of `labels` at 0, resolved now.
fn counters<L, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: [L; N],
) -> [Counter; N]
where
    L: prometheus_client::encoding::EncodeLabelSet
        + Clone
        + std::hash::Hash
        + Eq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = registered(registry, name, help, Family::<L, Counter>::default());
    labels.map(|label| family.get_or_create(&label).clone())
}

// === impl Outcome ===

impl Outcome {
    /// Every outcome, in declaration order (the index of the counter array).
    pub(super) const ALL: [Outcome; 4] =
        [Self::Forwarded, Self::Rejected, Self::Admin, Self::Error];

    /// The label value.
    fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Rejected => "rejected",
            Self::Admin => "admin",
            Self::Error => "error",
        }
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
        let mut registry = crate::ops::registry();
        let metrics = ProxyMetrics::register(&mut registry);
        metrics.request(Outcome::Rejected);
        metrics.rejection(TokenError::SessionInvalidated);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
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
