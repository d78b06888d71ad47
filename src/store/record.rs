//! What the store keeps: cutoffs with their preserved sessions, and audit records.
//!
//! These are the durable facts; `crate::sessions` holds them in memory and enforces them.

use serde::{Deserialize, Serialize};

/// What a cutoff applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Workspace(String),
    User { workspace: String, subject: String },
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
    /// The cutoff after this action, as committed.
    pub sessions_valid_after: i64,
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

impl Scope {
    /// The workspace the cutoff belongs to.
    pub fn workspace(&self) -> &str {
        match self {
            Self::Workspace(workspace) | Self::User { workspace, .. } => workspace,
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

    /// The wire name, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogoutAll => "logout_all",
            Self::UserLogout => "user_logout",
            Self::LogoutOthers => "logout_others",
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
