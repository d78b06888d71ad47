//! One worker per webhook: claim the due events, attempt each, record the outcome.
//!
//! ```text
//! wake (a commit here, an attempt done, the next due time, the poll tick)
//!   -> claim up to the free slots (each its group's oldest event)
//!   -> attempt: POST signed now -> 2xx       finish (the group's next event is due now)
//!                               -> anything  retry in 1 s, 2 s, 4 s ... 10 min
//!                                            or, past retry_for, drop (finish, logged)
//! ```
//!
//! Nothing here is on the request path: a slow endpoint only fills this worker's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio::task::JoinSet;

use super::client::AttemptError;
use super::metrics::EndpointMetrics;
use super::webhook::Webhook;
use crate::ops::GaugeGuard;
use crate::state::AppState;
use crate::store::{Delivery, StoreError};

/// How often the store is asked for due events when nothing wakes the worker sooner
/// (another instance's commit, the worker's own pending-count refresh).
const POLL: Duration = Duration::from_secs(1);
/// Attempts in flight per webhook, at most.
const SLOTS: usize = 16;
/// A claim outlives the attempt's timeout by this much, room for recording the outcome;
/// only after it may another instance take the event over.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Until the store is first loaded (a shared one connected) there is nothing to ask.
const LOAD_WAIT: Duration = Duration::from_millis(50);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(600);

/// What the worker of one webhook shares with its attempts.
pub(super) struct Worker {
    pub(super) webhook: Webhook,
    pub(super) state: Arc<AppState>,
    pub(super) metrics: EndpointMetrics,
    /// The store failed the last claim: said once per outage.
    troubled: AtomicBool,
}

/// The fields of an audit record the worker needs; every other one is just sent.
#[derive(Deserialize)]
struct Stamped {
    id: String,
    at: String,
}

/// An event about to be attempted.
struct Event {
    /// The audit id: `webhook-id`, the same on every attempt.
    id: String,
    /// When the change was made: its retry time starts here.
    at: SystemTime,
}

/// Why an event cannot be sent at all.
#[derive(Debug, thiserror::Error)]
enum Unsendable {
    #[error("unreadable audit record: {0}")]
    Record(#[from] serde_json::Error),
    #[error("audit record time: {0}")]
    Time(#[from] humantime::TimestampError),
}

// === impl Worker ===

impl Worker {
    pub(super) fn new(webhook: Webhook, state: Arc<AppState>, metrics: EndpointMetrics) -> Self {
        Self {
            webhook,
            state,
            metrics,
            troubled: AtomicBool::new(false),
        }
    }

    /// Runs until shutdown, then lets the attempts in flight finish (the caller bounds
    /// how long), so their outcome is recorded instead of sent again.
    pub(super) async fn run(self: Arc<Self>) {
        while !self.state.sessions.is_loaded() && !self.state.shutdown.is_cancelled() {
            tokio::time::sleep(LOAD_WAIT).await;
        }
        let mut in_flight = JoinSet::new();
        let mut commits = self.state.sessions.subscribe_commits();
        let mut wait = Duration::ZERO;
        let mut counted: Option<Instant> = None;
        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => break,
                Some(_) = in_flight.join_next() => {}
                Ok(()) = commits.changed() => {}
                () = tokio::time::sleep(wait), if in_flight.len() < SLOTS => {}
            }
            self.count_pending(&mut counted).await;
            wait = self.claim_into(&mut in_flight).await;
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Claims due events for the free slots and starts their attempts; returns how long
    /// to wait before the next claim.
    async fn claim_into(self: &Arc<Self>, in_flight: &mut JoinSet<()>) -> Duration {
        let room = SLOTS.saturating_sub(in_flight.len());
        if room == 0 {
            return POLL;
        }
        let lease = self.webhook.config.timeout + LEASE_MARGIN;
        let id = &self.webhook.config.id;
        let claimed = match self.state.store.claim_deliveries(id, room, lease).await {
            Ok(claimed) => claimed,
            Err(error) => {
                self.store_trouble(&error);
                return POLL;
            }
        };
        self.troubled.store(false, Ordering::Relaxed);
        for delivery in claimed.deliveries {
            let worker = self.clone();
            in_flight.spawn(async move { worker.deliver(delivery).await });
        }
        claimed.next_due.map_or(POLL, |due| due.min(POLL))
    }

    /// One attempt and its outcome, recorded in the store.
    async fn deliver(&self, delivery: Delivery) {
        let result = match Event::read(&delivery.record) {
            Ok(event) => match self.attempt(&event, &delivery).await {
                Ok(()) => {
                    self.metrics.delivered.inc();
                    self.state.store.finish_delivery(&delivery).await
                }
                Err(failure) => self.failed(&delivery, &event, &failure).await,
            },
            Err(error) => {
                tracing::error!(endpoint = %self.webhook.endpoint, %error, "event dropped: it cannot be sent");
                self.metrics.dropped.inc();
                self.state.store.finish_delivery(&delivery).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(endpoint = %self.webhook.endpoint, %error, "event outcome not recorded: it may be sent again");
        }
    }

    async fn attempt(&self, event: &Event, delivery: &Delivery) -> Result<(), AttemptError> {
        let _in_flight = GaugeGuard::new(&self.metrics.in_flight);
        self.webhook.send(&event.id, &delivery.record).await
    }

    /// A failed attempt: try again after the backoff, unless that is past `retry_for`.
    async fn failed(
        &self,
        delivery: &Delivery,
        event: &Event,
        failure: &AttemptError,
    ) -> Result<(), StoreError> {
        let failures = delivery.failures.saturating_add(1);
        let delay = backoff(failures);
        let endpoint = &self.webhook.endpoint;
        let audit_id = event.id.as_str();
        if !event.may_retry(self.webhook.config.retry_for, delay) {
            tracing::error!(%endpoint, audit_id, failures, error = %failure, "event dropped: not delivered within retry_for_secs");
            self.metrics.dropped.inc();
            return self.state.store.finish_delivery(delivery).await;
        }
        let retry_in_secs = delay.as_secs();
        tracing::warn!(%endpoint, audit_id, failures, retry_in_secs, error = %failure, "event not delivered; retrying");
        self.metrics.retried.inc();
        self.state.store.retry_delivery(delivery, delay).await
    }

    /// Refreshes the pending gauge, at most once per `POLL`.
    async fn count_pending(&self, counted: &mut Option<Instant>) {
        if counted.is_some_and(|at| at.elapsed() < POLL) {
            return;
        }
        *counted = Some(Instant::now());
        if let Ok(count) = self
            .state
            .store
            .pending_deliveries(&self.webhook.config.id)
            .await
        {
            self.metrics
                .pending
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// A store that cannot be asked (Redis away): said once, then quietly retried.
    fn store_trouble(&self, error: &StoreError) {
        let endpoint = &self.webhook.endpoint;
        match self.troubled.swap(true, Ordering::Relaxed) {
            false => tracing::warn!(%endpoint, %error, "cannot read the events outbox; retrying"),
            true => tracing::debug!(%endpoint, %error, "events outbox still out of reach"),
        }
    }
}

/// The wait after the `failures`-th failed attempt: 1 s, doubling, at most 10 min.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(LAST_RETRY)
}

// === impl Event ===

impl Event {
    fn read(record: &[u8]) -> Result<Self, Unsendable> {
        let Stamped { id, at } = serde_json::from_slice(record)?;
        let at = humantime::parse_rfc3339(&at)?;
        Ok(Self { id, at })
    }

    /// Whether a retry `delay` from now still falls within `retry_for` of the change.
    fn may_retry(&self, retry_for: Duration, delay: Duration) -> bool {
        SystemTime::now() + delay <= self.at + retry_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(u32::MAX), LAST_RETRY);
    }

    #[test]
    fn events_are_read_from_the_stored_record() {
        let event = Event::read(br#"{"id":"01a","at":"2026-11-29T01:33:20.417Z","x":1}"#).unwrap();
        assert_eq!(event.id, "01a");
        assert!(Event::read(br#"{"id":"01a","at":"yesterday"}"#).is_err());
        assert!(Event::read(b"").is_err());
    }

    #[test]
    fn retries_stop_at_retry_for_after_the_change() {
        let at = |ago: u64| Event {
            id: "a".into(),
            at: SystemTime::now() - Duration::from_secs(ago),
        };
        let day = Duration::from_secs(86400);
        assert!(at(10).may_retry(day, Duration::from_secs(600)));
        assert!(!at(86000).may_retry(day, Duration::from_secs(600)));
        assert!(!at(0).may_retry(Duration::ZERO, FIRST_RETRY));
    }
}
