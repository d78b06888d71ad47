//! The outbox in the redb file: queued events, each group's head with its due time, and
//! the heads by due time.
//!
//! One process owns the file, so a claim is only remembered in memory: after a crash every
//! head is free again at once. Finishing a delivery is durable (fsync), so a delivered
//! event is not sent again after a restart; rescheduling a failed one is not (a crash
//! only means an earlier retry), which keeps a dead endpoint from costing an fsync per
//! attempt on the writer lock logouts use.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::META;
use crate::store::StoreError;
use crate::store::outbox::{Claimed, Delivery};

/// (webhook, group, sequence) -> the audit record: one undelivered event.
const EVENTS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("outbox_events");
/// (webhook, group) -> (due ms, failed attempts) of the group's oldest event, the only one tried.
const HEADS: TableDefinition<(&str, &str), (u64, u32)> = TableDefinition::new("outbox_heads");
/// (webhook, due ms, group): the heads in due order, to find what to try next.
const DUE: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("outbox_due");
/// webhook -> undelivered events.
const PENDING: TableDefinition<&str, u64> = TableDefinition::new("outbox_pending");
const SEQUENCE: &str = "outbox_sequence";

/// Groups being tried right now, per webhook: claimed, not yet finished or rescheduled.
#[derive(Debug, Default)]
pub(in crate::store) struct Claims(Mutex<HashMap<String, HashSet<String>>>);

/// Creates the outbox tables in `txn`.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(EVENTS)?;
    txn.open_table(HEADS)?;
    txn.open_table(DUE)?;
    txn.open_table(PENDING)?;
    Ok(())
}

/// Queues `record` for each of `webhooks` inside the commit's own transaction; a group that
/// had nothing queued falls due now.
pub(super) fn enqueue(
    txn: &WriteTransaction,
    webhooks: &[String],
    group: &str,
    record: &[u8],
    now: u64,
) -> Result<(), StoreError> {
    if webhooks.is_empty() {
        return Ok(());
    }
    let sequence = {
        let mut meta = txn.open_table(META)?;
        let sequence = meta.get(SEQUENCE)?.map_or(0, |v| v.value()) + 1;
        meta.insert(SEQUENCE, sequence)?;
        sequence
    };
    let mut events = txn.open_table(EVENTS)?;
    let mut heads = txn.open_table(HEADS)?;
    for webhook in webhooks {
        events.insert((webhook.as_str(), group, sequence), record)?;
        add_pending(txn, webhook, 1)?;
        if heads.get((webhook.as_str(), group))?.is_none() {
            heads.insert((webhook.as_str(), group), (now, 0))?;
            txn.open_table(DUE)?
                .insert((webhook.as_str(), now, group), ())?;
        }
    }
    Ok(())
}

/// Up to `limit` due heads of `webhook` that are not being tried already.
pub(super) fn claim(
    db: &Database,
    claims: &Claims,
    webhook: &str,
    limit: usize,
    now: u64,
) -> Result<Claimed, StoreError> {
    let txn = db.begin_read()?;
    let (events, heads) = (txn.open_table(EVENTS)?, txn.open_table(HEADS)?);
    let due = txn.open_table(DUE)?;
    let mut held = claims.lock();
    let held = held.entry(webhook.to_string()).or_default();
    let mut claimed = Claimed::default();
    for entry in due.range((webhook, 0, "")..(webhook, u64::MAX, ""))? {
        let key = entry?.0;
        let (_, due_at, group) = key.value();
        if held.contains(group) {
            continue;
        }
        if due_at > now || claimed.deliveries.len() == limit {
            claimed.next_due = Some(Duration::from_millis(due_at.saturating_sub(now)));
            break;
        }
        let mut queued = events.range((webhook, group, 0)..=(webhook, group, u64::MAX))?;
        let Some(head) = queued.next().transpose()? else {
            continue;
        };
        let failures = heads.get((webhook, group))?.map_or(0, |v| v.value().1);
        held.insert(group.to_string());
        claimed.deliveries.push(Delivery {
            webhook: webhook.to_string(),
            group: group.to_string(),
            sequence: head.0.value().2,
            record: Bytes::copy_from_slice(head.1.value()),
            failures,
            token: String::new(),
        });
    }
    Ok(claimed)
}

/// Removes the delivered (or dropped) head; the group's next event, if any, falls due now.
pub(super) fn finish(db: &Database, delivery: &Delivery, now: u64) -> Result<(), StoreError> {
    let (webhook, group) = (delivery.webhook.as_str(), delivery.group.as_str());
    let txn = db.begin_write()?;
    {
        let mut events = txn.open_table(EVENTS)?;
        if events
            .remove((webhook, group, delivery.sequence))?
            .is_some()
        {
            add_pending(&txn, webhook, -1)?;
        }
        let more = events
            .range((webhook, group, 0)..=(webhook, group, u64::MAX))?
            .next()
            .is_some();
        let next = more.then_some((now, 0));
        reschedule(&txn, webhook, group, next)?;
    }
    txn.commit()?;
    Ok(())
}

/// Tries the head again at `due` (not fsynced: see the module doc).
pub(super) fn retry(db: &Database, delivery: &Delivery, due: u64) -> Result<(), StoreError> {
    let (webhook, group) = (delivery.webhook.as_str(), delivery.group.as_str());
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)
        .map_err(|e| StoreError::Redb(e.into()))?;
    // A head already finished (never, with one claim per group) must not come back empty.
    if txn.open_table(HEADS)?.get((webhook, group))?.is_some() {
        let failures = delivery.failures.saturating_add(1);
        reschedule(&txn, webhook, group, Some((due, failures)))?;
    }
    txn.commit()?;
    Ok(())
}

/// Undelivered events of `webhook`.
pub(super) fn pending(db: &Database, webhook: &str) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(PENDING)?;
    Ok(table.get(webhook)?.map_or(0, |v| v.value()))
}

/// Replaces the group's head state (and its place in the due order) with `next`, or
/// removes it when nothing is left.
fn reschedule(
    txn: &WriteTransaction,
    webhook: &str,
    group: &str,
    next: Option<(u64, u32)>,
) -> Result<(), StoreError> {
    let mut heads = txn.open_table(HEADS)?;
    let mut due = txn.open_table(DUE)?;
    if let Some(old) = heads.remove((webhook, group))? {
        due.remove((webhook, old.value().0, group))?;
    }
    if let Some((at, failures)) = next {
        heads.insert((webhook, group), (at, failures))?;
        due.insert((webhook, at, group), ())?;
    }
    Ok(())
}

fn add_pending(txn: &WriteTransaction, webhook: &str, delta: i64) -> Result<(), StoreError> {
    let mut table = txn.open_table(PENDING)?;
    let count = table.get(webhook)?.map_or(0, |v| v.value());
    table.insert(webhook, count.saturating_add_signed(delta))?;
    Ok(())
}

// === impl Claims ===

impl Claims {
    /// Forgets the claim of `delivery`'s group, whatever became of the attempt.
    pub(in crate::store) fn release(&self, delivery: &Delivery) {
        if let Some(groups) = self.lock().get_mut(&delivery.webhook) {
            groups.remove(&delivery.group);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.0.lock().expect("the claims lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::store::{Action, AuditRecord, Change, Outbox, Scope, Store};

    /// A memory store whose commits are queued for webhook `w` (user logouts only when
    /// `only_logout_all`).
    async fn store(only_logout_all: bool) -> (Store, String) {
        let actions = match only_logout_all {
            true => "actions = [\"logout_all\"]",
            false => "",
        };
        let text = format!(
            "upstream.url = \"http://127.0.0.1:3000\"\njwt.algorithms = [\"HS256\"]\n\
             store.backend = \"memory\"\n[[jwt.keys]]\nhmac_secret_env = \"S\"\n\
             [[events.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"H\"\n{actions}"
        );
        let config = Config::from_toml(&text, &[]).unwrap();
        let store = Store::open(&config.store, Outbox::new(&config.events))
            .await
            .unwrap();
        (store, config.events.webhooks[0].id.clone())
    }

    async fn logout(store: &Store, workspace: &str, action: Action) -> String {
        let audit = AuditRecord::example(workspace, action);
        let id = audit.id.clone();
        let scope = Scope::Workspace(workspace.into());
        store
            .commit(Change::cutoff(scope, 1, None, audit))
            .await
            .unwrap();
        id
    }

    /// The audit ids of what a claim returns, in order.
    async fn claim(store: &Store, webhook: &str) -> Vec<(String, crate::store::Delivery)> {
        let claimed = store
            .claim_deliveries(webhook, 16, Duration::from_secs(10))
            .await
            .unwrap();
        claimed
            .deliveries
            .into_iter()
            .map(|d| {
                let record: serde_json::Value = serde_json::from_slice(&d.record).unwrap();
                (record["id"].as_str().unwrap().to_string(), d)
            })
            .collect()
    }

    #[tokio::test]
    async fn only_the_oldest_event_of_each_workspace_is_tried() {
        let (store, webhook) = store(false).await;
        let a1 = logout(&store, "acme", Action::LogoutAll).await;
        let a2 = logout(&store, "acme", Action::UserLogout).await;
        let g1 = logout(&store, "globex", Action::LogoutAll).await;
        assert_eq!(store.pending_deliveries(&webhook).await.unwrap(), 3);

        let first = claim(&store, &webhook).await;
        let ids: Vec<&str> = first.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [a1.as_str(), g1.as_str()]);
        assert!(
            claim(&store, &webhook).await.is_empty(),
            "claimed heads are not claimed twice"
        );

        store.finish_delivery(&first[0].1).await.unwrap();
        let next = claim(&store, &webhook).await;
        assert_eq!(
            next[0].0, a2,
            "the next event of acme falls due once the first is done"
        );
        assert_eq!(next[0].1.failures, 0);
        assert_eq!(store.pending_deliveries(&webhook).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_retried_event_waits_and_counts_its_failures() {
        let (store, webhook) = store(false).await;
        let a1 = logout(&store, "acme", Action::LogoutAll).await;
        let (_, delivery) = claim(&store, &webhook).await.remove(0);
        store
            .retry_delivery(&delivery, Duration::from_secs(60))
            .await
            .unwrap();
        let claimed = store
            .claim_deliveries(&webhook, 16, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(claimed.deliveries.is_empty(), "not due for a minute");
        let next_due = claimed.next_due.expect("a queued event has a due time");
        assert!(next_due > Duration::from_secs(55), "{next_due:?}");

        store
            .retry_delivery(&delivery, Duration::ZERO)
            .await
            .unwrap();
        let (id, again) = claim(&store, &webhook).await.remove(0);
        assert_eq!((id, again.failures), (a1, 1));
        store.finish_delivery(&again).await.unwrap();
        assert_eq!(store.pending_deliveries(&webhook).await.unwrap(), 0);
        let empty = store
            .claim_deliveries(&webhook, 16, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(empty.deliveries.is_empty() && empty.next_due.is_none());
    }

    #[tokio::test]
    async fn only_wanted_actions_are_queued() {
        let (store, webhook) = store(true).await;
        logout(&store, "acme", Action::UserLogout).await;
        assert_eq!(store.pending_deliveries(&webhook).await.unwrap(), 0);
        let wanted = logout(&store, "acme", Action::LogoutAll).await;
        assert_eq!(claim(&store, &webhook).await[0].0, wanted);
    }
}
