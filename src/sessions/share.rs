//! Activity across a fleet: every instance shares its windows through the store, and an
//! answer merges the local window with the other instances' latest shares.
//!
//! Sharing runs in its own task every `SHARE_EVERY`; requests never wait for it. A share
//! lives in the store for `SHARE_TTL`, so an instance that stops counts for no longer.

use std::time::Duration;

use super::Sessions;
use super::activity::{ActivityCount, Share};
use crate::clock;
use crate::store::{RedisStore, Store, StoreError};

/// How often windows are shared (and empty ones dropped).
const SHARE_EVERY: Duration = Duration::from_secs(2);
/// How long a share counts: a few missed shares, not more.
const SHARE_TTL: Duration = Duration::from_secs(10);

// === impl Sessions ===

impl Sessions {
    /// Distinct sessions and users of `workspace` over the last hour, on every instance
    /// sharing `store`, counted from the workspace's current cutoff.
    pub async fn activity(
        &self,
        store: &Store,
        workspace: &str,
    ) -> Result<ActivityCount, StoreError> {
        let since = self.cutoffs.workspace_version(workspace);
        let mut total = self.activity.local(workspace, since, clock::now());
        let Some(shared) = store.shared() else {
            return Ok(total.count());
        };
        let shares = shared
            .activity(workspace, &self.instance, SHARE_TTL)
            .await?;
        for text in shares {
            match serde_json::from_str::<Share>(&text) {
                // Taken before the cutoff in force: those sessions were signed out.
                Ok(share) if share.since < since => {}
                Ok(share) => total.merge(&share.sketches),
                Err(error) => tracing::warn!(%error, "ignoring an unreadable activity share"),
            }
        }
        Ok(total.count())
    }
}

/// Drops windows that have emptied (counting the rest) and, with a shared store, shares
/// the changed ones, every `SHARE_EVERY` for as long as it is polled.
pub async fn share_activity(sessions: &Sessions, store: &Store) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock::now();
        let windows = sessions.activity.prune(now);
        sessions
            .metrics
            .activity_windows
            .set(i64::try_from(windows).unwrap_or(i64::MAX));
        if let Some(shared) = store.shared() {
            share(sessions, shared, sessions.activity.to_share(now)).await;
        }
    }
}

async fn share(sessions: &Sessions, store: &RedisStore, due: Vec<(String, Share)>) {
    if due.is_empty() {
        return;
    }
    let encoded: Result<Vec<(String, String)>, _> = due
        .into_iter()
        .map(|(workspace, share)| serde_json::to_string(&share).map(|text| (workspace, text)))
        .collect();
    let result = match encoded {
        Ok(encoded) => {
            store
                .share_activity(&sessions.instance, &encoded, SHARE_TTL)
                .await
        }
        Err(error) => Err(error.into()),
    };
    // The sync task reports an unreachable store; a missed share is re-sent soon.
    if let Err(error) = result {
        tracing::debug!(%error, "activity not shared");
    }
}
