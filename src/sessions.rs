//! Workspace and per-user cutoffs in memory: step 5 of the acceptance rule.
//!
//! The request path reads a `DashMap` shard and never waits on the store. Every change
//! carries the store's version number, so updates that arrive out of order (two admins
//! at once, or a later pub/sub message) can never move a cutoff back.

use std::collections::HashMap;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::token::{Claims, TokenError};

/// Cutoffs of every workspace, each with its users' cutoffs.
#[derive(Debug)]
pub struct Sessions {
    workspaces: DashMap<Box<str>, Workspace>,
    /// Bumped on every change, so open tunnels and streams can re-check their session.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Workspace {
    cutoff: Option<Cutoff>,
    users: HashMap<Box<str>, Cutoff>,
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

/// What a cutoff applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Workspace(String),
    User { workspace: String, subject: String },
}

// === impl Sessions ===

impl Default for Sessions {
    fn default() -> Self {
        Self {
            workspaces: DashMap::new(),
            changes: watch::Sender::new(0),
        }
    }
}

impl Sessions {
    /// Notified after every change to a cutoff.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Step 5 at time `now`: the workspace cutoff, then the user's, each unless this token
    /// is the preserved session (which ends with its token's `exp`).
    pub fn check(&self, claims: &Claims, now: f64) -> Result<(), TokenError> {
        let Some(workspace) = self.workspaces.get(claims.workspace.as_str()) else {
            return Ok(());
        };
        if workspace
            .cutoff
            .as_ref()
            .is_some_and(|c| !c.admits(claims, now))
        {
            return Err(TokenError::SessionInvalidated);
        }
        let user = claims
            .subject
            .as_deref()
            .and_then(|sub| workspace.users.get(sub));
        if user.is_some_and(|c| !c.admits(claims, now)) {
            return Err(TokenError::SessionRevoked);
        }
        Ok(())
    }

    /// Installs `cutoff` for `scope` unless the same or a newer version is already there.
    pub fn apply(&self, scope: &Scope, cutoff: Cutoff) {
        let workspace_name = match scope {
            Scope::Workspace(ws) | Scope::User { workspace: ws, .. } => ws.as_str(),
        };
        // Look up before inserting: `entry` would allocate the key on every call, and a
        // resync applies every stored cutoff again.
        let changed = match self.workspaces.get_mut(workspace_name) {
            Some(mut workspace) => workspace.install(scope, cutoff),
            None => self
                .workspaces
                .entry(workspace_name.into())
                .or_default()
                .install(scope, cutoff),
        };
        if changed {
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    /// The cutoff currently enforced for `scope`.
    pub fn get(&self, scope: &Scope) -> Option<Cutoff> {
        match scope {
            Scope::Workspace(ws) => self.workspaces.get(ws.as_str())?.cutoff.clone(),
            Scope::User { workspace, subject } => self
                .workspaces
                .get(workspace.as_str())?
                .users
                .get(subject.as_str())
                .cloned(),
        }
    }
}

// === impl Workspace ===

impl Workspace {
    /// Puts `cutoff` in its slot unless the slot holds the same or a newer version.
    fn install(&mut self, scope: &Scope, cutoff: Cutoff) -> bool {
        match scope {
            Scope::Workspace(_) => match &mut self.cutoff {
                Some(current) => current.replace_if_older(cutoff),
                slot @ None => {
                    *slot = Some(cutoff);
                    true
                }
            },
            Scope::User { subject, .. } => match self.users.get_mut(subject.as_str()) {
                Some(current) => current.replace_if_older(cutoff),
                None => {
                    self.users.insert(subject.as_str().into(), cutoff);
                    true
                }
            },
        }
    }
}

// === impl Cutoff ===

impl Cutoff {
    /// Versions only grow: a stale update (out of order, or replayed) changes nothing.
    fn replace_if_older(&mut self, candidate: Cutoff) -> bool {
        let newer = candidate.version > self.version;
        if newer {
            *self = candidate;
        }
        newer
    }

    /// Whether a token passes this cutoff; leeway never applies here.
    fn admits(&self, claims: &Claims, now: f64) -> bool {
        claims.session_time >= self.valid_after as f64
            || self
                .preserved_at(now)
                .is_some_and(|p| p.session_id == claims.session_id)
    }

    /// The preserved session, unless its token has expired by `now`.
    pub fn preserved_at(&self, now: f64) -> Option<&Preserved> {
        self.preserved.as_ref().filter(|p| now < p.expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(workspace: &str, sub: &str, session_time: f64, session_id: &str) -> Claims {
        Claims {
            workspace: workspace.into(),
            subject: Some(sub.into()),
            session_id: session_id.into(),
            session_time,
            expires_at: session_time + 3600.0,
            issued_at: session_time,
            not_before: None,
            roles: Vec::new(),
            identity: Default::default(),
        }
    }

    fn cutoff(valid_after: i64, preserved: Option<&str>, version: u64) -> Cutoff {
        let preserved = preserved.map(|id| Preserved {
            session_id: id.into(),
            expires_at: f64::MAX,
        });
        Cutoff {
            valid_after,
            preserved,
            version,
        }
    }

    #[test]
    fn workspace_cutoff_refuses_earlier_sessions_but_the_preserved_one() {
        let sessions = Sessions::default();
        sessions.apply(
            &Scope::Workspace("acme".into()),
            cutoff(1000, Some("jti:admin"), 1),
        );
        assert_eq!(
            sessions.check(&claims("acme", "u", 999.999, "jti:u"), 0.0),
            Err(TokenError::SessionInvalidated)
        );
        assert_eq!(
            sessions.check(&claims("acme", "u", 1000.0, "jti:u"), 0.0),
            Ok(())
        );
        assert_eq!(
            sessions.check(&claims("acme", "a", 10.0, "jti:admin"), 0.0),
            Ok(())
        );
        assert_eq!(
            sessions.check(&claims("other", "u", 10.0, "jti:u"), 0.0),
            Ok(())
        );
    }

    #[test]
    fn user_cutoff_is_checked_after_the_workspace_cutoff() {
        let sessions = Sessions::default();
        let user = Scope::User {
            workspace: "acme".into(),
            subject: "bob".into(),
        };
        sessions.apply(&user, cutoff(2000, None, 1));
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
            Err(TokenError::SessionRevoked)
        );
        assert_eq!(
            sessions.check(&claims("acme", "carol", 1500.0, "jti:c"), 0.0),
            Ok(())
        );
        sessions.apply(&Scope::Workspace("acme".into()), cutoff(1800, None, 1));
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
            Err(TokenError::SessionInvalidated)
        );
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1900.0, "jti:b"), 0.0),
            Err(TokenError::SessionRevoked)
        );
        assert_eq!(
            sessions.check(&claims("acme", "bob", 2000.0, "jti:b"), 0.0),
            Ok(())
        );
    }

    #[test]
    fn older_versions_never_replace_newer_ones() {
        let sessions = Sessions::default();
        let scope = Scope::Workspace("acme".into());
        sessions.apply(&scope, cutoff(3000, Some("jti:second"), 2));
        sessions.apply(&scope, cutoff(2000, Some("jti:first"), 1));
        assert_eq!(
            sessions.get(&scope),
            Some(cutoff(3000, Some("jti:second"), 2))
        );
        let user = Scope::User {
            workspace: "acme".into(),
            subject: "bob".into(),
        };
        sessions.apply(&user, cutoff(3000, None, 5));
        sessions.apply(&user, cutoff(1000, None, 4));
        assert_eq!(sessions.get(&user).map(|c| c.valid_after), Some(3000));
    }
}
