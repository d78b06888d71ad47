//! Scheduled logouts in the redb file: one `Schedule` per workspace, and the checks a
//! commit makes before writing anything.

use redb::{TableDefinition, WriteTransaction};

use super::{JsonTable, Loaded, read_cutoff, read_json, write_cutoff};
use crate::store::{
    Cutoff, Effect, Preserved, Record, Schedule, ScheduledLogout, Scope, StoreError,
};

/// Each workspace's scheduled logout (or its cancellation), by workspace.
pub(super) const SCHEDULES: JsonTable = TableDefinition::new("scheduled_logouts");

/// Whether every schedule `effects` depend on is still as they expect: a cancel needs
/// one pending, an application needs that very version pending.
pub(super) fn still_pending(
    txn: &WriteTransaction,
    effects: &[Effect],
) -> Result<bool, StoreError> {
    for effect in effects {
        let (workspace, wanted) = match effect {
            Effect::Schedule {
                workspace,
                pending: None,
            } => (workspace, None),
            Effect::FireSchedule {
                workspace, version, ..
            } => (workspace, Some(*version)),
            _ => continue,
        };
        let current: Option<Schedule> = read_json(txn, SCHEDULES, workspace)?;
        let pending = current.filter(|s| s.pending.is_some());
        if pending.is_none_or(|s| wanted.is_some_and(|version| version != s.version)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the workspace's new schedule (`None`: cancelled) at the next version.
pub(super) fn replace(
    txn: &WriteTransaction,
    workspace: String,
    pending: Option<Box<ScheduledLogout>>,
) -> Result<Record, StoreError> {
    let current: Option<Schedule> = read_json(txn, SCHEDULES, &workspace)?;
    let schedule = Schedule {
        pending,
        version: current.map_or(1, |c| c.version + 1),
    };
    let bytes = serde_json::to_vec(&schedule)?;
    txn.open_table(SCHEDULES)?
        .insert(workspace.as_str(), bytes.as_slice())?;
    Ok(Record::Schedule {
        workspace,
        schedule,
    })
}

/// Applies the pending logout (`still_pending` checked it): the cutoff, raised unless it
/// already is at least `valid_after`, then the schedule cleared. The cutoff record comes
/// first, so memory enforces it before it forgets the schedule.
pub(super) fn fire(
    txn: &WriteTransaction,
    workspace: String,
    valid_after: i64,
    preserved: Option<Preserved>,
) -> Result<Vec<Record>, StoreError> {
    let scope = Scope::Workspace(workspace.clone());
    let cutoff = match read_cutoff(txn, &scope)? {
        // Set at or after `at`: that later logout's preserved session stands.
        Some(current) if current.valid_after >= valid_after => current,
        current => {
            let cutoff = Cutoff {
                valid_after,
                preserved,
                version: current.map_or(1, |c| c.version + 1),
            };
            write_cutoff(txn, &scope, &cutoff)?;
            cutoff
        }
    };
    let cleared = replace(txn, workspace, None)?;
    Ok(vec![Record::Cutoff { scope, cutoff }, cleared])
}

/// A stored schedule, for a load.
pub(super) fn record(workspace: &str, bytes: &[u8]) -> Loaded {
    Ok(Some(Record::Schedule {
        workspace: workspace.to_string(),
        schedule: serde_json::from_slice(bytes)?,
    }))
}
