//! What the store keeps: cutoffs with their preserved sessions, and audit records; and
//! the vocabulary of changing them (`Change` of `Effect`s in, `Record`s out).
//!
//! These are the durable facts; `crate::sessions` holds them in memory and enforces them.

use serde::{Deserialize, Serialize};

/// What a cutoff applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "ScopeKey", into = "ScopeKey")]
pub enum Scope {
    Workspace(String),
    User { workspace: String, subject: String },
}

/// A scope as it travels in records: `{"workspace": ..., "subject": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScopeKey {
    workspace: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    subject: Option<String>,
}

/// One change to commit: every effect and the audit record together, or nothing.
#[derive(Debug, Clone)]
pub struct Change {
    pub effects: Vec<Effect>,
    /// Written in the same transaction; its `sessions_valid_after` is filled in from the
    /// first cutoff the change leaves.
    pub audit: AuditRecord,
}

/// One thing a change does to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Moves a cutoff up (never down) and replaces its preserved session.
    Cutoff {
        scope: Scope,
        valid_after: i64,
        preserved: Option<Preserved>,
    },
}

/// What a change left in the store: applied to memory here, published to the fleet, and
/// read back by every (re)load. Versions make applying one twice, or late, harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Cutoff { scope: Scope, cutoff: Cutoff },
}

/// A sessions-valid-after cutoff and the one session it spares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cutoff {
    /// Unix seconds; tokens whose session time is earlier fail.
    pub valid_after: i64,
    pub preserved: Option<Preserved>,
    /// Monotonic per scope, assigned by the store on commit.
    pub version: u64,
}

/// The session that survives a logout: the caller's own token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preserved {
    pub session_id: String,
    /// The caller token's `exp`: after it the entry means nothing.
    pub expires_at: f64,
}

/// One logout, as stored and as `GET .../audit` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    /// RFC 3339 UTC.
    pub at: String,
    pub workspace: String,
    pub action: Action,
    /// The user logged out (user actions only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    pub actor_subject: Option<String>,
    pub actor_session: String,
    pub category: Option<Category>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub client_ip: String,
    pub user_agent: Option<String>,
    /// The cutoff after this action, as committed (`None` for actions that move none).
    #[serde(default)]
    pub sessions_valid_after: Option<i64>,
}

/// What kind of logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    LogoutAll,
    UserLogout,
    LogoutOthers,
}

/// Why the logout happened, for later review (SPEC section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    SecurityIncident,
    PolicyChange,
    PersonnelChange,
    RoutineMaintenance,
    Other,
}

// === impl Scope ===

impl From<ScopeKey> for Scope {
    fn from(key: ScopeKey) -> Self {
        match key.subject {
            None => Self::Workspace(key.workspace),
            Some(subject) => Self::User {
                workspace: key.workspace,
                subject,
            },
        }
    }
}

impl From<Scope> for ScopeKey {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Workspace(workspace) => Self {
                workspace,
                subject: None,
            },
            Scope::User { workspace, subject } => Self {
                workspace,
                subject: Some(subject),
            },
        }
    }
}

impl Scope {
    /// The workspace the cutoff belongs to.
    pub fn workspace(&self) -> &str {
        match self {
            Self::Workspace(workspace) | Self::User { workspace, .. } => workspace,
        }
    }
}

// === impl Change ===

impl Change {
    /// A change that moves one cutoff.
    pub fn cutoff(
        scope: Scope,
        valid_after: i64,
        preserved: Option<Preserved>,
        audit: AuditRecord,
    ) -> Self {
        let cutoff = Effect::Cutoff {
            scope,
            valid_after,
            preserved,
        };
        Self {
            effects: vec![cutoff],
            audit,
        }
    }
}

// === impl Record ===

impl Record {
    /// The first cutoff among `records`: the one an audit record reports.
    pub fn first_cutoff(records: &[Record]) -> Option<&Cutoff> {
        records.iter().find_map(Record::as_cutoff)
    }

    /// The cutoff, when this record is one.
    pub fn as_cutoff(&self) -> Option<&Cutoff> {
        match self {
            Record::Cutoff { cutoff, .. } => Some(cutoff),
        }
    }
}

// === impl Cutoff ===

impl Cutoff {
    /// The preserved session, unless its token has expired by `now`.
    pub fn preserved_at(&self, now: f64) -> Option<&Preserved> {
        self.preserved.as_ref().filter(|p| now < p.expires_at)
    }
}

// === impl Action ===

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 3] = [Self::LogoutAll, Self::UserLogout, Self::LogoutOthers];

    /// The action whose wire name is `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// The wire name, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogoutAll => "logout_all",
            Self::UserLogout => "user_logout",
            Self::LogoutOthers => "logout_others",
        }
    }
}

#[cfg(test)]
impl AuditRecord {
    /// A record of `action` in `workspace` by ada, now, for the store's tests.
    pub(crate) fn example(workspace: &str, action: Action) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            at: crate::clock::rfc3339(crate::clock::now()),
            workspace: workspace.into(),
            action,
            subject: None,
            actor_subject: Some("ada".into()),
            actor_session: "jti:x".into(),
            category: None,
            ticket: None,
            reason: None,
            client_ip: "127.0.0.1".into(),
            user_agent: None,
            sessions_valid_after: None,
        }
    }
}

// === impl Category ===

impl Category {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecurityIncident => "security_incident",
            Self::PolicyChange => "policy_change",
            Self::PersonnelChange => "personnel_change",
            Self::RoutineMaintenance => "routine_maintenance",
            Self::Other => "other",
        }
    }
}
