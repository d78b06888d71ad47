//! The auth room's metrics: remote key fetches and the verified-token cache.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::ops::registered;

/// Registered once at start; clones share the same series.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    pub(super) jwks_refreshes: Family<ResultLabels, Counter>,
    pub(super) cache_hits: Counter,
    pub(super) cache_misses: Counter,
}

/// `result`: ok / error (JWKS refreshes), hit / miss (verify cache).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

// === impl AuthMetrics ===

impl AuthMetrics {
    /// Registers the families; known label values start at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let jwks_refreshes = Family::<ResultLabels, Counter>::default();
        for result in ["ok", "error"] {
            let _ = jwks_refreshes.get_or_create(&ResultLabels { result });
        }
        let jwks_refreshes = registered(
            registry,
            "jwks_refreshes",
            "Remote JWKS fetches by result",
            jwks_refreshes,
        );
        let help = "Verified-token cache lookups by result";
        let verify_cache = registered(
            registry,
            "verify_cache",
            help,
            Family::<ResultLabels, Counter>::default(),
        );
        // Resolved now: the request path then only does atomic adds. One statement each: a
        // `get_or_create` guard lives to the end of its statement.
        let cache_hits = verify_cache
            .get_or_create(&ResultLabels { result: "hit" })
            .clone();
        let cache_misses = verify_cache
            .get_or_create(&ResultLabels { result: "miss" })
            .clone();
        Self {
            jwks_refreshes,
            cache_hits,
            cache_misses,
        }
    }

    /// Counts one JWKS fetch.
    pub(super) fn jwks_fetch(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_refreshes
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}
