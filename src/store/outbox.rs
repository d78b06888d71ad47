//! The outbox: every audit record, queued for each webhook that wants its action, in the
//! same transaction as the change it records (SPEC section 14).
//!
//! A webhook's events form one queue per ordering group (the record's workspace; records
//! of subject-wide changes, whose workspace is `null`, form a group of their own). Only a
//! group's oldest event is ever tried, so later ones wait for it; groups are independent.
//! A delivery is claimed before it is tried: in a fleet the claim is a lease another
//! instance takes over once it runs out, so a dead holder's events are still sent.

use std::time::Duration;

use bytes::Bytes;

use super::{AuditRecord, StoreError};
use crate::config::{EventsConfig, WebhookConfig};

/// Which webhooks get which records: the store routes each commit's audit record with it.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    webhooks: Vec<WebhookConfig>,
}

/// One event claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook's id (`WebhookConfig::id`).
    pub webhook: String,
    /// The ordering group (see `group`).
    pub group: String,
    /// Commit order, store-wide.
    pub sequence: u64,
    /// The audit record as stored: the body, byte for byte.
    pub record: Bytes,
    /// Attempts of this event that failed so far.
    pub failures: u32,
    /// What proves the claim is still this instance's (Redis; empty for the embedded store).
    pub(super) token: String,
}

/// What a claim found.
#[derive(Debug, Default)]
pub struct Claimed {
    pub deliveries: Vec<Delivery>,
    /// How soon the next unclaimed event falls due, when one is queued.
    pub next_due: Option<Duration>,
}

// === impl Outbox ===

impl Outbox {
    /// Routes for every configured webhook.
    pub fn new(events: &EventsConfig) -> Self {
        Self {
            webhooks: events.webhooks.clone(),
        }
    }

    /// The ids of the webhooks that get `audit`.
    pub(super) fn routes(&self, audit: &AuditRecord) -> Vec<String> {
        let action = audit.action.as_str();
        self.webhooks
            .iter()
            .filter(|webhook| webhook.wants(action))
            .map(|webhook| webhook.id.clone())
            .collect()
    }
}

/// The ordering group of `audit`: its workspace as JSON, `"acme"`, or `null` for a
/// subject-wide change, which can never collide with a workspace's name.
pub(super) fn group(audit: &AuditRecord) -> Result<String, StoreError> {
    Ok(serde_json::to_string(&audit.workspace)?)
}

/// Milliseconds since the epoch, the embedded store's due times.
pub(super) fn now_ms() -> u64 {
    (crate::clock::now() * 1000.0) as u64
}

/// A duration in whole milliseconds, for due times.
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
