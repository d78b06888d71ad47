//! The one write path: whatever asked for it, a change is committed to the store with
//! its audit record, then applied to memory, counted and logged.

use crate::store::{AuditRecord, Category, Change, Committed, Store, StoreError};

use super::Sessions;

// === impl Sessions ===

impl Sessions {
    /// Commits `change` (its effects and audit record, atomically), then enforces the
    /// result here at once (other instances learn it from the store). Nothing changes
    /// when the store fails.
    pub async fn commit(&self, store: &Store, change: Change) -> Result<Committed, StoreError> {
        let action = change.audit.action;
        let committed = store
            .commit(change)
            .await
            .inspect_err(|error| match error {
                // Not failures: the signal it carries was committed before, or the
                // scheduled logout it is about was settled by another change.
                StoreError::Replayed | StoreError::NotPending => {}
                error => tracing::error!(%error, action = action.as_str(), "change not committed"),
            })?;
        committed
            .records
            .iter()
            .cloned()
            .for_each(|record| self.apply(record));
        self.metrics.committed(action);
        self.commits.send_modify(|count| *count += 1);
        log_audit(&committed.audit);
        Ok(committed)
    }
}

/// One `audit` event per committed change, with every field of the record.
fn log_audit(record: &AuditRecord) {
    tracing::info!(
        target: "audit",
        audit_id = record.id,
        at = record.at,
        workspace = record.workspace,
        action = record.action.as_str(),
        subject = record.subject,
        sid = record.sid,
        event = record.event,
        actor_subject = record.actor_subject,
        actor_session = record.actor_session,
        category = record.category.map(Category::as_str),
        ticket = record.ticket,
        reason = record.reason,
        client_ip = record.client_ip,
        user_agent = record.user_agent,
        sessions_valid_after = record.sessions_valid_after,
        scheduled_at = record.scheduled_at,
        "{} committed",
        record.action.as_str(),
    );
}
