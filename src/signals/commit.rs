//! What an accepted signal does: one `Change` through the sessions room's write path, with
//! its audit record (`actor_subject` = the issuer), committed before the answer.
//!
//! A cutoff set here preserves no session: it replaces the preserved session at its level
//! with none, so a session a thief kept with `logout-others` does not survive.

use http::HeaderMap;

use crate::clock;
use crate::sessions;
use crate::state::AppState;
use crate::store::{Action, AuditRecord, Category, Change, Effect, Scope, StoreError};
use crate::web::{self, ConnInfo};

/// What a signal asks for, once it passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// Acknowledged; nothing changes (SSF verification, events that revoke nothing).
    Nothing,
    /// The user's cutoff moves to now: `U` in `workspace`, else `U*`.
    User {
        workspace: Option<String>,
        user: String,
    },
    /// One identity-provider session ends; the user's other sessions stay.
    Session {
        workspace: Option<String>,
        sid: String,
        /// For the audit record only.
        user: Option<String>,
    },
    /// The whole workspace is logged out (an SSF tenant, with `allow_workspace_logout`).
    Workspace(String),
}

/// An accepted signal, ready to commit.
#[derive(Debug)]
pub(super) struct Accepted {
    pub(super) action: Action,
    /// The issuer (or `scim`), the audit record's actor.
    pub(super) actor: String,
    /// The signal's own identity in the audit record (`jti:<jti>`, or the SCIM resource).
    pub(super) actor_session: String,
    /// `(jti, forget after)` of a signed signal: a replay changes nothing.
    pub(super) once: Option<(String, i64)>,
    pub(super) event: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) category: Option<Category>,
    pub(super) target: Target,
}

/// Who sent it, for the audit record.
#[derive(Debug, Clone)]
pub(super) struct Sender {
    client_ip: String,
    user_agent: Option<String>,
}

/// How an accepted signal ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Committed,
    /// Accepted before: acknowledged again, nothing changed.
    Replayed,
}

/// Commits `accepted` (every effect and the audit record at once), then memory enforces
/// it; nothing changes when the store fails.
pub(super) async fn commit(
    state: &AppState,
    accepted: Accepted,
    sender: &Sender,
) -> Result<Outcome, StoreError> {
    let now = clock::now();
    let mut effects: Vec<Effect> = accepted
        .once
        .iter()
        .map(|(jti, expires_at)| Effect::SignalSeen {
            issuer: accepted.actor.clone(),
            jti: jti.clone(),
            expires_at: *expires_at,
        })
        .collect();
    effects.extend(effect(state, &accepted.target, now));
    let audit = audit_record(&accepted, sender, now);
    match state
        .sessions
        .commit(&state.store, Change { effects, audit })
        .await
    {
        Ok(_) => Ok(Outcome::Committed),
        Err(StoreError::Replayed) => Ok(Outcome::Replayed),
        Err(error) => Err(error),
    }
}

/// The store effect of `target` at `now`.
fn effect(state: &AppState, target: &Target, now: f64) -> Option<Effect> {
    let config = &state.config.sessions;
    let cutoff = |scope| Effect::Cutoff {
        scope,
        valid_after: sessions::cutoff_at(now, config.invalidation_margin_secs),
        preserved: None,
    };
    match target {
        Target::Nothing => None,
        Target::User { workspace, user } => Some(cutoff(match workspace {
            Some(workspace) => Scope::User {
                workspace: workspace.clone(),
                subject: user.clone(),
            },
            None => Scope::Subject(user.clone()),
        })),
        Target::Workspace(workspace) => Some(cutoff(Scope::Workspace(workspace.clone()))),
        Target::Session { workspace, sid, .. } => Some(Effect::RevokedSid {
            workspace: workspace.clone(),
            sid: sid.clone(),
            expires_at: now.floor() as i64 + config.revoked_sid_ttl_secs,
        }),
    }
}

fn audit_record(accepted: &Accepted, sender: &Sender, now: f64) -> AuditRecord {
    let (workspace, subject, sid) = match &accepted.target {
        Target::Nothing => (None, None, None),
        Target::User { workspace, user } => (workspace.clone(), Some(user.clone()), None),
        Target::Session {
            workspace,
            sid,
            user,
        } => (workspace.clone(), user.clone(), Some(sid.clone())),
        Target::Workspace(workspace) => (Some(workspace.clone()), None, None),
    };
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: clock::rfc3339(now),
        workspace,
        action: accepted.action,
        subject,
        sid,
        event: accepted.event.clone(),
        actor_subject: Some(accepted.actor.clone()),
        actor_session: accepted.actor_session.clone(),
        category: accepted.category,
        ticket: None,
        reason: accepted.reason.clone(),
        client_ip: sender.client_ip.clone(),
        user_agent: sender.user_agent.clone(),
        sessions_valid_after: None,
        scheduled_at: None,
        policy_before: None,
        policy_after: None,
    }
}

// === impl Accepted ===

impl Accepted {
    /// A signed signal of `issuer` named by its `jti`, remembered until `forget_after`
    /// (unix seconds); it changes nothing until a target is set.
    pub(super) fn signed(action: Action, issuer: &str, jti: &str, forget_after: i64) -> Self {
        Self {
            action,
            actor: issuer.to_string(),
            actor_session: format!("jti:{jti}"),
            once: Some((jti.to_string(), forget_after)),
            event: None,
            reason: None,
            category: None,
            target: Target::Nothing,
        }
    }
}

// === impl Sender ===

impl Sender {
    /// The client address (`server.trusted_proxies` rule) and user agent of a request.
    pub(super) fn of(state: &AppState, headers: &HeaderMap, conn: &ConnInfo) -> Self {
        let trusted = &state.config.server.trusted_proxies;
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Self {
            client_ip: web::client_ip(conn.peer, headers, trusted).to_string(),
            user_agent,
        }
    }
}
