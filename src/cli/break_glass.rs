//! Break glass (SPEC section 7): an operator logs a workspace out, or clears its policy,
//! straight in the configured store, for the day no admin can reach the API (a hostile
//! allow-list set with a stolen admin token, lost admin access).
//!
//! The change goes through the same write path as the admin API's (`Sessions::commit`),
//! audited with `actor_subject` = `operator`, so its webhooks fire and a Redis fleet
//! enforces it at once. An embedded store is locked by a running gateway: the command
//! then says to stop it first.

use serde_json::{Value, json};

use crate::clock;
use crate::config::{Config, StoreConfig};
use crate::sessions::{self, Sessions};
use crate::store::{
    Action, AuditRecord, Change, Committed, Effect, Outbox, PolicyDocument, Scope, Store,
    StoreError,
};

/// Who the audit trail names for a break-glass change.
const OPERATOR: &str = "operator";

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `logout-all`: the workspace cutoff moves to now; no session is preserved.
    LogoutAll,
    /// `policy clear`: the workspace has no policy any more.
    ClearPolicy,
}

/// One break-glass command.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub operation: Operation,
    pub workspace: String,
    pub reason: Option<String>,
}

/// Why a break-glass command changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    #[error(
        "store.path: {0} is in use by a running gateway; stop it first, run this again, then start the gateway"
    )]
    StoreInUse(String),
    #[error(
        "store.backend = \"memory\" keeps nothing outside a running gateway: nothing to change"
    )]
    MemoryStore,
    #[error("--workspace: must not be empty")]
    NoWorkspace,
    #[error("--reason: at most 1024 characters")]
    ReasonTooLong,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Commits the operation to the configured store; answers what was committed, as JSON.
pub async fn break_glass(config: &Config, request: BreakGlass) -> Result<Value, BreakGlassError> {
    if request.workspace.is_empty() {
        return Err(BreakGlassError::NoWorkspace);
    }
    if request
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 1024)
    {
        return Err(BreakGlassError::ReasonTooLong);
    }
    let store = open(&config.store, Outbox::new(&config.events)).await?;
    // A scratch table of what is in force, so `policy_before` is the stored policy.
    let sessions = Sessions::new(&mut prometheus_client::registry::Registry::default());
    sessions.load(&store).await?;
    let change = change(config, &sessions, request);
    let committed = sessions.commit(&store, change).await?;
    Ok(report(&committed))
}

/// The configured store, connected (Redis) or opened (embedded; refused while a gateway
/// holds it).
async fn open(config: &StoreConfig, outbox: Outbox) -> Result<Store, BreakGlassError> {
    if matches!(config, StoreConfig::Memory) {
        return Err(BreakGlassError::MemoryStore);
    }
    let store = Store::open(config, outbox)
        .await
        .map_err(|error| match error {
            StoreError::Open {
                path,
                source: redb::DatabaseError::DatabaseAlreadyOpen,
            } => BreakGlassError::StoreInUse(path),
            error => BreakGlassError::Store(error),
        })?;
    if let Some(redis) = store.shared() {
        // The subscription is not needed: the commit publishes to the running fleet.
        drop(redis.connect().await?);
    }
    Ok(store)
}

fn change(config: &Config, sessions: &Sessions, request: BreakGlass) -> Change {
    let now = clock::now();
    let workspace = request.workspace;
    let action = match request.operation {
        Operation::LogoutAll => Action::LogoutAll,
        Operation::ClearPolicy => Action::PolicyUpdate,
    };
    let mut audit = operator_record(&workspace, action, request.reason, now);
    let effect = match request.operation {
        Operation::LogoutAll => Effect::Cutoff {
            scope: Scope::Workspace(workspace),
            valid_after: sessions::cutoff_at(now, config.sessions.invalidation_margin_secs),
            preserved: None,
        },
        Operation::ClearPolicy => {
            audit.policy_before = Some(sessions.policy(&workspace).document);
            audit.policy_after = Some(PolicyDocument::default());
            Effect::Policy {
                workspace,
                document: PolicyDocument::default(),
                updated_at: audit.at.clone(),
                updated_by: Some(OPERATOR.into()),
                if_version: None,
            }
        }
    };
    Change {
        effects: vec![effect],
        audit,
    }
}

/// The audit record of a change made at the operator's console, not through the API.
fn operator_record(
    workspace: &str,
    action: Action,
    reason: Option<String>,
    now: f64,
) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: clock::rfc3339(now),
        workspace: Some(workspace.to_string()),
        action,
        subject: None,
        sid: None,
        event: None,
        actor_subject: Some(OPERATOR.into()),
        actor_session: OPERATOR.into(),
        category: None,
        ticket: None,
        reason,
        client_ip: "cli".into(),
        user_agent: Some(concat!("sessiongate/", env!("CARGO_PKG_VERSION")).into()),
        policy_before: None,
        policy_after: None,
        scheduled_at: None,
        sessions_valid_after: None,
    }
}

fn report(committed: &Committed) -> Value {
    let audit = &committed.audit;
    let mut report = json!({
        "workspace": audit.workspace,
        "action": audit.action.as_str(),
        "audit_id": audit.id,
        "sessions_valid_after": audit.sessions_valid_after,
    });
    if let Some(notified) = committed.notified {
        report["instances_notified"] = json!(notified);
    }
    report
}
