//! Scheduled logouts applied (SPEC section 10): enforced from memory from their time on,
//! and committed once across a fleet by the task here.
//!
//! Every instance runs the task. At a schedule's time it wakes the open tunnels and
//! streams (the rule in `check_scheduled` already refuses what the logout refuses), then
//! commits the logout on condition that this very schedule is still pending: the first
//! instance to commit writes the `logout_all` record and its event, the others are
//! refused and learn the result like any other change. An instance cut off from the store
//! keeps enforcing from memory and retries; one that was down applies it on load.

use std::collections::HashMap;
use std::time::Duration;

use super::schedules::Due;
use super::{Refusal, Session, Sessions, policy};
use crate::clock;
use crate::store::{Change, Effect, Preserved, ScheduledLogout, Store, StoreError};

/// A failed commit is tried again after this long.
const RETRY: Duration = Duration::from_secs(1);
/// The longest sleep between looks, so a wall clock that jumps is noticed.
const LOOK_AGAIN: Duration = Duration::from_secs(30);

/// Applies every workspace's scheduled logout at its time, for as long as it is polled.
pub async fn apply_scheduled_logouts(sessions: &Sessions, store: &Store) {
    let mut changed = sessions.schedules.subscribe();
    // Versions another change settled first: this instance waits to hear the result.
    let mut settled: HashMap<String, u64> = HashMap::new();
    loop {
        let wait = match sessions.is_loaded() {
            true => sessions.apply_due(store, &mut settled).await,
            false => RETRY,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = changed.changed() => {}
        }
    }
}

// === impl Sessions ===

impl Sessions {
    /// The workspace's pending scheduled logout.
    pub fn scheduled_logout(&self, workspace: &str) -> Option<ScheduledLogout> {
        self.schedules.pending(workspace)
    }

    /// `X-Auth-Logout-At` (unix seconds) for a request of `workspace` at `now`.
    pub fn logout_at(&self, workspace: &str, now: f64) -> Option<i64> {
        self.schedules.logout_at(workspace, now)
    }

    /// Step 5 for a scheduled logout whose time has come, before any instance committed
    /// it: the cutoff it sets, sparing the scheduler's session when that one qualifies.
    pub(super) fn check_scheduled(&self, session: &Session<'_>, now: f64) -> Result<(), Refusal> {
        let refused = self.schedules.with_due(session.workspace, now, |logout| {
            session.time < logout.valid_after as f64 && !self.spares(session, logout, now)
        });
        match refused {
            Some(true) => Err(Refusal::Invalidated),
            _ => Ok(()),
        }
    }

    /// Whether `session` is the scheduler's, unexpired, and preserved by the logout.
    fn spares(&self, session: &Session<'_>, logout: &ScheduledLogout, now: f64) -> bool {
        let scheduler = &logout.scheduler;
        session.id == scheduler.session_id
            && now < scheduler.expires_at
            && self.scheduler_passes(session.workspace, logout)
    }

    /// Whether the scheduler's session would still pass just before `at` (SPEC section
    /// 10): a session logged out since it scheduled is not brought back.
    fn scheduler_passes(&self, workspace: &str, logout: &ScheduledLogout) -> bool {
        let scheduler = &logout.scheduler;
        let session = Session {
            workspace,
            user: scheduler.user.as_deref(),
            user_folded: scheduler.user_folded.as_deref(),
            sid: scheduler.sid.as_deref(),
            id: &scheduler.session_id,
            time: scheduler.time,
        };
        let step5 = self.cutoffs.check(&session, logout.at).is_ok()
            && !session
                .sid
                .is_some_and(|sid| self.revoked.is_revoked(sid, workspace, logout.at));
        step5 && self.scheduler_meets_policy(workspace, logout)
    }

    /// Step 6 for the scheduler's request just before `at`, with the policy this instance
    /// holds now: a policy the scheduler's token fails means no session is preserved.
    fn scheduler_meets_policy(&self, workspace: &str, logout: &ScheduledLogout) -> bool {
        let scheduler = &logout.scheduler;
        // Written from a parsed address, so it always parses; if not, nothing is spared.
        let Ok(client_ip) = scheduler.client_ip.parse() else {
            return false;
        };
        let request = policy::Request {
            workspace,
            client_ip,
            claims: &scheduler.claims,
            session_time: scheduler.time,
        };
        self.policies.check(&request, logout.at).is_ok()
    }

    /// Commits every logout due now that no other change settled; returns how long to
    /// wait before looking again.
    async fn apply_due(&self, store: &Store, settled: &mut HashMap<String, u64>) -> Duration {
        let (due, next) = self.schedules.due(clock::now());
        let due: Vec<Due> = due
            .into_iter()
            .filter(|due| settled.get(&due.workspace) != Some(&due.version))
            .collect();
        if !due.is_empty() {
            // Their time has come: open tunnels and streams re-check now, committed or not.
            self.changes.send_modify(|generation| *generation += 1);
        }
        let mut failed = false;
        for due in due {
            match self.commit_due(store, &due).await {
                Ok(()) => {}
                Err(StoreError::NotPending) => {
                    settled.insert(due.workspace, due.version);
                }
                Err(_) => failed = true,
            }
        }
        match (failed, next) {
            (true, _) => RETRY,
            (false, None) => LOOK_AGAIN,
            // A millisecond late rather than early: woken early, it would only sleep again.
            (false, Some(at)) => {
                Duration::from_secs_f64((at - clock::now()).max(0.0) + 0.001).min(LOOK_AGAIN)
            }
        }
    }

    /// One due logout, committed on condition that it is still pending.
    async fn commit_due(&self, store: &Store, due: &Due) -> Result<(), StoreError> {
        let logout = &due.logout;
        let scheduler = &logout.scheduler;
        let preserved = self
            .scheduler_passes(&due.workspace, logout)
            .then(|| Preserved {
                session_id: scheduler.session_id.clone(),
                expires_at: scheduler.expires_at,
            });
        let change = Change {
            effects: vec![Effect::FireSchedule {
                workspace: due.workspace.clone(),
                version: due.version,
                valid_after: logout.valid_after,
                preserved,
            }],
            audit: logout.applied_record(&due.workspace),
        };
        self.commit(store, change).await.map(drop)
    }
}
