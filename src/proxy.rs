//! The request path: accept and TLS (`server`), the pipeline every request goes through
//! (`gateway`), forwarding to the product (`forward`), and the long-lived exchanges that
//! end with their session (`guard` for streams, `tunnel` for WebSockets). Signal endpoints
//! and SCIM paths are handed to the signals room.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use crate::signals::Signals;
use crate::state::AppState;

mod access;
mod forward;
mod gateway;
mod guard;
mod login;
mod metrics;
mod server;
mod tunnel;

pub use forward::{Upstream, UpstreamSetupError};
pub use server::serve;

use metrics::ProxyMetrics;

/// The proxy's own handles, beside the state it shares with the other rooms.
pub struct Proxy {
    state: Arc<AppState>,
    upstream: Upstream,
    /// Identity-provider signals and the SCIM observer.
    signals: Signals,
    /// WebSocket tunnels, which outlive the HTTP connection that opened them.
    tunnels: TaskTracker,
    metrics: ProxyMetrics,
}

// === impl Proxy ===

impl Proxy {
    /// The request path in front of `upstream`, its metrics registered in `registry`.
    pub fn new(
        state: Arc<AppState>,
        upstream: Upstream,
        signals: Signals,
        registry: &mut Registry,
    ) -> Self {
        Self {
            state,
            upstream,
            signals,
            tunnels: TaskTracker::new(),
            metrics: ProxyMetrics::register(registry),
        }
    }
}
