//! Writing back records an instance holds that Redis lacks or holds lower
//! (`Effect::Restore`): the commit script's compare decides, record by record.

use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::{Keys, Published, RedisStore};
use crate::store::{Record, StoreError, pair_field};

/// Records written back per restore script: small enough not to hold Redis up.
const RESTORE_BATCH: usize = 500;

// === impl RedisStore ===

impl RedisStore {
    /// Writes back `records` where they outrank what Redis holds, `RESTORE_BATCH` per
    /// script, without audit records; returns those written (and published). Waits for
    /// replicas like a commit, but a restore fewer acknowledged still counts: the next
    /// resync restores again whatever a failover loses.
    pub async fn restore(&self, records: Vec<Record>) -> Result<Vec<Record>, StoreError> {
        let mut written = Vec::new();
        for batch in records.chunks(RESTORE_BATCH) {
            let effects = batch
                .iter()
                .map(|record| self.keys.restore(record))
                .collect::<Result<Vec<_>, _>>()?;
            let run = async |conn: &mut MultiplexedConnection| {
                self.run_script(conn, &effects, ["", "", ""]).await
            };
            let ((message, _, _), _) = self.replicated(run).await?;
            written.extend(Published::decode(message.as_bytes())?.0);
        }
        Ok(written)
    }
}

// === impl Keys ===

impl Keys {
    /// `Effect::Restore` of `record` for the script: where it goes, its rank, the value
    /// stored and the record published, both as text.
    pub(super) fn restore(&self, record: &Record) -> Result<serde_json::Value, StoreError> {
        let (value, version) = record.rank();
        let (key, field, rank, stored, index) = match record {
            Record::Cutoff { scope, cutoff } => {
                let (key, field) = self.cutoff_field(scope)?;
                let stored = serde_json::to_string(cutoff)?;
                (key, field, Some("valid_after"), stored, None)
            }
            Record::RevokedSid {
                workspace,
                sid,
                revoked,
            } => {
                let field = pair_field(workspace, sid)?;
                let stored = serde_json::to_string(revoked)?;
                let index = Some(&self.sids_expiry);
                (self.sids.as_str(), field, Some("expires_at"), stored, index)
            }
            Record::Schedule {
                workspace,
                schedule,
            } => {
                let stored = serde_json::to_string(schedule)?;
                let key = self.schedules.as_str();
                (key, workspace.clone(), None, stored, None)
            }
            Record::Policy { workspace, policy } => {
                let stored = serde_json::to_string(policy)?;
                (
                    self.policies.as_str(),
                    workspace.clone(),
                    None,
                    stored,
                    None,
                )
            }
        };
        let mut effect = json!({
            "kind": "restore",
            "key": key,
            "field": field,
            "value": value,
            "version": version,
            "stored": stored,
            "record": serde_json::to_string(record)?,
        });
        // Absent rather than null: cjson decodes null as a value Lua finds true.
        if let Some(rank) = rank {
            effect["rank"] = json!(rank);
        }
        if let Some(index) = index {
            effect["index"] = json!(index);
        }
        Ok(effect)
    }
}
