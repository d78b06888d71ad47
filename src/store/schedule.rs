//! A workspace's scheduled logout (SPEC section 10), as the store keeps it: the one
//! pending logout-all of a workspace, and the version that orders its changes.
//!
//! A cancellation, and the logout once applied, are newer versions with nothing pending,
//! so a resync or a late message can never bring an old schedule back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Action, AuditRecord, Category};
use crate::clock;

/// The scheduled logout of a workspace, or the absence of one, at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Boxed: records travel by value, most of them cutoffs.
    pub pending: Option<Box<ScheduledLogout>>,
    /// Monotonic per workspace, assigned by the store on commit.
    pub version: u64,
}

/// A logout-all to apply at `at`, as if its scheduler had called logout-all then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledLogout {
    /// Unix seconds (fractional): when it applies.
    pub at: f64,
    /// The cutoff it sets: `floor(at) + 1 + sessions.invalidation_margin_secs`.
    pub valid_after: i64,
    /// The `logout_scheduled` audit record.
    pub audit_id: String,
    pub scheduler: Scheduler,
    pub category: Option<Category>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
}

/// Who scheduled it: enough of the token and its request to re-check its session just
/// before `at` (SPEC section 10 preserves it only if it still passes steps 5 and 6 then),
/// and the request's origin for the `logout_all` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduler {
    pub subject: Option<String>,
    /// The full session id (`jti:...` or `sha256:...`).
    pub session_id: String,
    /// The session id as audit records show it (a hash cut to 16 hex digits).
    pub actor_session: String,
    /// The token's `exp`: the preserved session ends with it.
    pub expires_at: f64,
    /// `T` of SPEC section 1, step 5.
    pub time: f64,
    pub user: Option<String>,
    pub user_folded: Option<String>,
    pub sid: Option<String>,
    /// The caller's address, which the workspace's IP allow-list is checked against.
    pub client_ip: String,
    pub user_agent: Option<String>,
    /// Every claim of the token, which the workspace's `require_claims` are checked
    /// against just before `at`.
    pub claims: Map<String, Value>,
}

// === impl Schedule ===

impl Schedule {
    /// The pending logout, if any.
    pub fn pending(&self) -> Option<&ScheduledLogout> {
        self.pending.as_deref()
    }
}

// === impl ScheduledLogout ===

impl ScheduledLogout {
    /// The `logout_all` record written when it applies: the scheduler is its actor, and
    /// its time is `at` (when it took effect, even on an instance that applies it late).
    pub fn applied_record(&self, workspace: &str) -> AuditRecord {
        let scheduler = &self.scheduler;
        AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: clock::rfc3339_exact_millis(self.at),
            workspace: Some(workspace.to_string()),
            action: Action::LogoutAll,
            subject: None,
            sid: None,
            event: None,
            actor_subject: scheduler.subject.clone(),
            actor_session: scheduler.actor_session.clone(),
            category: self.category,
            ticket: self.ticket.clone(),
            reason: self.reason.clone(),
            client_ip: scheduler.client_ip.clone(),
            user_agent: scheduler.user_agent.clone(),
            policy_before: None,
            policy_after: None,
            scheduled_at: Some(clock::rfc3339_exact_millis(self.at)),
            sessions_valid_after: None,
        }
    }

    /// `X-Auth-Logout-At`: whole unix seconds.
    pub fn at_secs(&self) -> i64 {
        self.at.floor() as i64
    }
}
