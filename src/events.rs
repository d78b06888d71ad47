//! Events out (SPEC section 14): every audit record, as committed, sent to each
//! `[[events.webhooks]]` endpoint that wants its action, signed the Standard Webhooks way.
//!
//! The store queues each record in a durable outbox in the same transaction as the change
//! it records (`crate::store::Outbox`), so an event exists exactly when its change does.
//! Here one worker per webhook claims due events through the store (a lease, in a fleet),
//! sends each, and records the outcome: delivered, retried later, or dropped after
//! `retry_for_secs`. Delivery is at least once and in commit order per (webhook,
//! workspace). None of it is on the request path, and none of it holds back `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::state::AppState;

mod client;
mod metrics;
mod signature;
mod webhook;
mod worker;

pub use webhook::{Webhook, WebhookError, load};

use metrics::EventMetrics;
use worker::Worker;

/// After shutdown, attempts already sent may finish this long, so they are not sent
/// again after the restart.
const DRAIN: Duration = Duration::from_secs(5);

/// The running workers, one per webhook.
pub struct Events {
    workers: Vec<JoinHandle<()>>,
}

/// Starts a worker for each of `webhooks`; their metrics go in `registry`.
pub fn spawn(webhooks: Vec<Webhook>, state: &Arc<AppState>, registry: &mut Registry) -> Events {
    let metrics = EventMetrics::register(registry);
    let workers = webhooks
        .into_iter()
        .map(|webhook| {
            let series = metrics.endpoint(&webhook.endpoint);
            let worker = Arc::new(Worker::new(webhook, state.clone(), series));
            tokio::spawn(worker.run())
        })
        .collect();
    Events { workers }
}

// === impl Events ===

impl Events {
    /// Waits (at most `DRAIN`) for the workers, which stop claiming at shutdown, to record
    /// the outcome of what they already sent; the rest is sent again after a restart.
    pub async fn stopped(self) {
        let all = async {
            for worker in self.workers {
                let _ = worker.await;
            }
        };
        if tokio::time::timeout(DRAIN, all).await.is_err() {
            tracing::info!("events still in flight at shutdown will be sent again");
        }
    }
}
