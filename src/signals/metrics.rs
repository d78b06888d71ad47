//! The signals room's metrics: signals accepted, acknowledged again (replays), refused by
//! reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::refusal::Refusal;
use crate::ops::registered;

/// Registered once at start; every known series starts at 0.
pub(super) struct SignalMetrics {
    accepted: Family<SignalLabels, Counter>,
    replayed: Family<SignalLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

/// `signal`: backchannel_logout, ssf or scim.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

/// `signal` and `reason` (a `Refusal`, or `unknown_user` for SCIM).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    signal: &'static str,
    reason: &'static str,
}

// === impl SignalMetrics ===

impl SignalMetrics {
    pub(super) const BACKCHANNEL: &'static str = "backchannel_logout";
    pub(super) const SSF: &'static str = "ssf";
    pub(super) const SCIM: &'static str = "scim";

    pub(super) fn register(registry: &mut Registry) -> Self {
        let [accepted, replayed] = [(); 2].map(|()| Family::<SignalLabels, Counter>::default());
        let refused = Family::<ReasonLabels, Counter>::default();
        for signal in [Self::BACKCHANNEL, Self::SSF, Self::SCIM] {
            let _ = accepted.get_or_create(&SignalLabels { signal });
            let _ = replayed.get_or_create(&SignalLabels { signal });
        }
        for signal in [Self::BACKCHANNEL, Self::SSF] {
            for reason in Refusal::REASONS {
                let _ = refused.get_or_create(&ReasonLabels { signal, reason });
            }
        }
        let _ = refused.get_or_create(&Self::unknown_user());
        Self {
            accepted: registered(
                registry,
                "signals_accepted",
                "Identity-provider signals committed, by signal",
                accepted,
            ),
            replayed: registered(
                registry,
                "signals_replayed",
                "Signals accepted before, acknowledged again without a change",
                replayed,
            ),
            refused: registered(
                registry,
                "signals_refused",
                "Signals refused (or SCIM deactivations not acted on), by reason",
                refused,
            ),
        }
    }

    pub(super) fn accepted(&self, signal: &'static str) {
        self.accepted.get_or_create(&SignalLabels { signal }).inc();
    }

    pub(super) fn replayed(&self, signal: &'static str) {
        self.replayed.get_or_create(&SignalLabels { signal }).inc();
    }

    pub(super) fn refused(&self, signal: &'static str, refusal: Refusal) {
        let reason = refusal.reason();
        self.refused
            .get_or_create(&ReasonLabels { signal, reason })
            .inc();
    }

    /// A SCIM deactivation the product accepted whose user the gateway cannot name.
    pub(super) fn scim_unknown_user(&self) {
        self.refused.get_or_create(&Self::unknown_user()).inc();
    }

    fn unknown_user() -> ReasonLabels {
        ReasonLabels {
            signal: Self::SCIM,
            reason: "unknown_user",
        }
    }
}
