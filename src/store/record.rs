//! What the store keeps: cutoffs with their preserved sessions, revoked identity-provider
//! sessions, the signals already accepted, and audit records; and the vocabulary of
//! changing them (`Change` of `Effect`s in, `Record`s out).
//!
//! These are the durable facts; `crate::sessions` holds the enforced ones in memory.

use serde::{Deserialize, Serialize};

use super::schedule::{Schedule, ScheduledLogout};

/// What a cutoff applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ScopeKey", into = "ScopeKey")]
pub enum Scope {
    Workspace(String),
    User {
        workspace: String,
        subject: String,
    },
    /// A user in every workspace (`U*`): set by identity-provider signals, and never
    /// preserving a session.
    Subject(String),
}

/// A scope as it travels in records: `{"workspace": ..., "subject": ...}`, either of them
/// absent but not both.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScopeKey {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    subject: Option<String>,
}

/// A scope record that names neither a workspace nor a subject.
#[derive(Debug, thiserror::Error)]
#[error("a scope names a workspace, a subject or both")]
struct EmptyScope;

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
    /// Refuses tokens whose `sid` claim names this identity-provider session, in one
    /// workspace or (`None`) in all, until `expires_at` (which never moves back).
    RevokedSid {
        workspace: Option<String>,
        sid: String,
        expires_at: i64,
    },
    /// Remembers an accepted signal until `expires_at`. When the store already holds it,
    /// the whole change is refused as `StoreError::Replayed` and nothing is written: a
    /// replayed signal changes nothing.
    SignalSeen {
        issuer: String,
        jti: String,
        expires_at: i64,
    },
    /// Writes back a record an instance holds that the store lacks or holds lower (a
    /// store that lost data heals from the fleet): written as it is, version included,
    /// only where it outranks the stored one (`Record::rank`). Never audited.
    Restore { record: Record },
    /// Sets the workspace's scheduled logout (`Some`, replacing any pending one) or cancels
    /// it (`None`). A cancel with nothing pending refuses the whole change as
    /// `StoreError::NotPending`.
    Schedule {
        workspace: String,
        pending: Option<Box<ScheduledLogout>>,
    },
    /// Applies the scheduled logout of `version`: refuses the whole change as
    /// `StoreError::NotPending` unless that very schedule is still pending (so a fleet
    /// writes its `logout_all` once); else raises the cutoff to `valid_after` with
    /// `preserved` (a cutoff already there or higher is kept as it is: it was set at or
    /// after `at`), and clears the schedule.
    FireSchedule {
        workspace: String,
        version: u64,
        valid_after: i64,
        preserved: Option<Preserved>,
    },
    /// Replaces a workspace's whole policy (an empty document clears it), unless
    /// `if_version` is set and the stored policy's version differs: then the change is
    /// refused as `StoreError::PolicyChanged` and nothing is written.
    Policy {
        workspace: String,
        document: PolicyDocument,
        updated_at: String,
        updated_by: Option<String>,
        if_version: Option<u64>,
    },
}

/// How many cutoffs the store holds, by table: read before a load so memory makes room
/// for them at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutoffCounts {
    pub workspaces: usize,
    pub users: usize,
    pub subjects: usize,
}

/// What a change left in the store that memory enforces: applied to memory here,
/// published to the fleet, and read back by every (re)load. Versions make applying one
/// twice, or late, harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The cutoff of `scope`, as the store now holds it.
    Cutoff { scope: Scope, cutoff: Cutoff },
    /// An identity-provider session refused (in `workspace`, or everywhere) until it expires.
    RevokedSid {
        workspace: Option<String>,
        sid: String,
        revoked: Revoked,
    },
    /// The workspace's scheduled logout (or none), as the store now holds it.
    Schedule {
        workspace: String,
        schedule: Schedule,
    },
    /// The policy of `workspace`, as the store now holds it.
    Policy {
        workspace: String,
        policy: StoredPolicy,
    },
}

/// A workspace policy as an admin wrote it (SPEC section 9), already validated; the
/// document `GET .../policy` answers. The default, empty document is "no policy".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// CIDRs, each in canonical form; `None`: no IP rule.
    pub ip_allowlist: Option<Vec<String>>,
    pub require_claims: Vec<ClaimRule>,
    pub max_session_age_secs: Option<i64>,
}

/// One `require_claims` entry: the claim at `claim` (a dotted path) must be one of
/// `any_of`, or an array holding one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRule {
    pub claim: String,
    pub any_of: Vec<String>,
}

/// A policy with who wrote it and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub document: PolicyDocument,
    /// RFC 3339 UTC; `None` for a workspace that never had one.
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// Monotonic per workspace, assigned by the store on commit (0: never written).
    pub version: u64,
}

/// How long an identity-provider session stays revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// Unix seconds; the `sid` passes again from then on.
    pub expires_at: i64,
    /// Monotonic per (workspace, sid), assigned by the store on commit.
    pub version: u64,
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
    /// `None` for subject-wide changes (identity-provider signals): stored, logged, and in
    /// no workspace's trail.
    pub workspace: Option<String>,
    pub action: Action,
    /// The user logged out (user actions only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    /// The identity-provider session a signal revoked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    /// The event type URI of a Shared Signals event (`ssf_event`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event: Option<String>,
    pub actor_subject: Option<String>,
    pub actor_session: String,
    pub category: Option<Category>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub client_ip: String,
    pub user_agent: Option<String>,
    /// The policy replaced by a `policy_update`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_before: Option<PolicyDocument>,
    /// The policy a `policy_update` put in force.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_after: Option<PolicyDocument>,
    /// When the scheduled logout this record is about applies (RFC 3339 UTC).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scheduled_at: Option<String>,
    /// The cutoff after this action, as committed (`None` for actions that move none).
    /// Serialized last: the Redis commit script fills it in as text.
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
    /// OIDC Back-Channel Logout from an identity provider.
    BackchannelLogout,
    /// A Shared Signals (CAEP/RISC) event.
    SsfEvent,
    /// A SCIM deactivation the product accepted.
    ScimDeprovision,
    /// A logout-all set for a later time (SPEC section 10).
    LogoutScheduled,
    /// A scheduled logout cancelled before it applied.
    LogoutCancelled,
    /// A workspace policy replaced (by an admin, or cleared by an operator).
    PolicyUpdate,
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

impl TryFrom<ScopeKey> for Scope {
    type Error = EmptyScope;

    fn try_from(key: ScopeKey) -> Result<Self, EmptyScope> {
        match (key.workspace, key.subject) {
            (Some(workspace), None) => Ok(Self::Workspace(workspace)),
            (Some(workspace), Some(subject)) => Ok(Self::User { workspace, subject }),
            (None, Some(subject)) => Ok(Self::Subject(subject)),
            (None, None) => Err(EmptyScope),
        }
    }
}

impl From<Scope> for ScopeKey {
    fn from(scope: Scope) -> Self {
        let (workspace, subject) = match scope {
            Scope::Workspace(workspace) => (Some(workspace), None),
            Scope::User { workspace, subject } => (Some(workspace), Some(subject)),
            Scope::Subject(subject) => (None, Some(subject)),
        };
        Self { workspace, subject }
    }
}

impl Scope {
    /// The scope of `workspace` and `subject` (the inverse of `workspace()` and
    /// `subject()`); `None` when both are missing.
    pub fn from_parts(workspace: Option<&str>, subject: Option<&str>) -> Option<Self> {
        let (workspace, subject) = (workspace.map(str::to_string), subject.map(str::to_string));
        Self::try_from(ScopeKey { workspace, subject }).ok()
    }

    /// The workspace the cutoff belongs to; `None` for a subject-wide one.
    pub fn workspace(&self) -> Option<&str> {
        match self {
            Self::Workspace(workspace) | Self::User { workspace, .. } => Some(workspace),
            Self::Subject(_) => None,
        }
    }

    /// The user the cutoff belongs to; `None` for a workspace's.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Workspace(_) => None,
            Self::User { subject, .. } | Self::Subject(subject) => Some(subject),
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

    /// Whether the record still means something at `now` (revoked sessions expire).
    pub fn in_force(&self, now: f64) -> bool {
        match self {
            Record::Cutoff { .. } | Record::Schedule { .. } => true,
            Record::RevokedSid { revoked, .. } => revoked.in_force(now),
            Record::Policy { .. } => true,
        }
    }

    /// How records of one key are ordered: the higher one wins everywhere (store, memory,
    /// resync). Cutoffs: `valid_after`, then version; revoked sids: `expires_at`, then
    /// version; scheduled logouts and policies: the version. The value comes first so that a record written
    /// after the store lost data (a new version for a lower value) never lowers what an
    /// instance holds.
    pub fn rank(&self) -> (i64, u64) {
        match self {
            Record::Cutoff { cutoff, .. } => cutoff.rank(),
            Record::RevokedSid { revoked, .. } => revoked.rank(),
            Record::Schedule { schedule, .. } => (0, schedule.version),
            Record::Policy { policy, .. } => (0, policy.version),
        }
    }

    /// The cutoff, when this record is one.
    pub fn as_cutoff(&self) -> Option<&Cutoff> {
        match self {
            Record::Cutoff { cutoff, .. } => Some(cutoff),
            Record::RevokedSid { .. } | Record::Schedule { .. } | Record::Policy { .. } => None,
        }
    }
}

// === impl Revoked ===

impl Revoked {
    /// See `Record::rank`.
    pub fn rank(&self) -> (i64, u64) {
        (self.expires_at, self.version)
    }

    /// Whether the session is still refused at `now`.
    pub fn in_force(&self, now: f64) -> bool {
        now < self.expires_at as f64
    }
}

// === impl Cutoff ===

impl Cutoff {
    /// See `Record::rank`.
    pub fn rank(&self) -> (i64, u64) {
        (self.valid_after, self.version)
    }

    /// The preserved session, unless its token has expired by `now`.
    pub fn preserved_at(&self, now: f64) -> Option<&Preserved> {
        self.preserved.as_ref().filter(|p| now < p.expires_at)
    }
}

// === impl Action ===

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 9] = [
        Self::LogoutAll,
        Self::UserLogout,
        Self::LogoutOthers,
        Self::BackchannelLogout,
        Self::SsfEvent,
        Self::ScimDeprovision,
        Self::LogoutScheduled,
        Self::LogoutCancelled,
        Self::PolicyUpdate,
    ];

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
            Self::BackchannelLogout => "backchannel_logout",
            Self::SsfEvent => "ssf_event",
            Self::ScimDeprovision => "scim_deprovision",
            Self::LogoutScheduled => "logout_scheduled",
            Self::LogoutCancelled => "logout_cancelled",
            Self::PolicyUpdate => "policy_update",
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
            workspace: Some(workspace.into()),
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
            sid: None,
            event: None,
            scheduled_at: None,
            policy_before: None,
            policy_after: None,
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
