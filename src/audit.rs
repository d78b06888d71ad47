//! The audit record of a logout: who, what, why, and the resulting cutoff.

use serde::{Deserialize, Serialize};

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

// === impl Action ===

impl Action {
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
