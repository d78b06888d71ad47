//! Workspace, per-user and subject-wide cutoffs in memory: step 5 of the acceptance rule.
//!
//! The request path reads a `DashMap` shard and never waits on the store. Every change
//! carries the store's version number, so updates that arrive out of order (two admins
//! at once, or a later pub/sub message) can never move a cutoff back.

use std::collections::HashMap;

use dashmap::DashMap;

use crate::store::{Cutoff, Record, Scope};

/// Cutoffs of every workspace, each with its users' cutoffs, and the subject-wide ones.
#[derive(Debug, Default)]
pub struct Cutoffs {
    workspaces: DashMap<Box<str>, Workspace>,
    /// `U*` by user: set by identity-provider signals, in force in every workspace.
    subjects: DashMap<Box<str>, Cutoff>,
}

#[derive(Debug, Default)]
struct Workspace {
    cutoff: Option<Cutoff>,
    users: HashMap<Box<str>, Cutoff>,
}

/// What the session rule looks at in a verified token.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub workspace: &'a str,
    /// The value of `sessions.user_claim`, when the token has one.
    pub user: Option<&'a str>,
    /// The user in lower case, when it is an e-mail address with upper-case letters: an
    /// address named by a signal is compared without regard to case, and stored so.
    pub user_folded: Option<&'a str>,
    /// The identity provider's session (`sid` claim), which a signal may revoke.
    pub sid: Option<&'a str>,
    /// `jti:<jti>` or `sha256:<hex>`.
    pub id: &'a str,
    /// `T` of SPEC section 1: the session-time claim plus `sessions.iat_backdate_secs`.
    pub time: f64,
}

/// Why a session no longer passes (SPEC section 1, step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("session_invalidated")]
    Invalidated,
    #[error("session_revoked")]
    Revoked,
}

// === impl Cutoffs ===

impl Cutoffs {
    /// Step 5 at time `now`: the workspace cutoff, then the user's, each unless this token
    /// is the preserved session (which ends with its token's `exp`), then the user's
    /// subject-wide cutoff, which preserves none.
    pub fn check(&self, session: &Session<'_>, now: f64) -> Result<(), Refusal> {
        if let Some(workspace) = self.workspaces.get(session.workspace) {
            if workspace
                .cutoff
                .as_ref()
                .is_some_and(|c| !admits(c, session, now))
            {
                return Err(Refusal::Invalidated);
            }
            let mut users = session.users().filter_map(|user| workspace.users.get(user));
            if users.any(|c| !admits(c, session, now)) {
                return Err(Refusal::Revoked);
            }
        }
        let mut subjects = session.users().filter_map(|user| self.subjects.get(user));
        if subjects.any(|c| !admits(&c, session, now)) {
            return Err(Refusal::Revoked);
        }
        Ok(())
    }

    /// Installs `cutoff` for `scope` unless the same or a newer version is already there;
    /// returns whether it did.
    pub fn apply(&self, scope: &Scope, cutoff: Cutoff) -> bool {
        let (workspace_name, subject) = match scope {
            Scope::Subject(subject) => return install_subject(&self.subjects, subject, cutoff),
            Scope::Workspace(workspace) => (workspace, None),
            Scope::User { workspace, subject } => (workspace, Some(subject.as_str())),
        };
        // Look up before inserting: `entry` would allocate the key on every call, and a
        // resync applies every stored cutoff again.
        match self.workspaces.get_mut(workspace_name.as_str()) {
            Some(mut workspace) => workspace.install(subject, cutoff),
            None => self
                .workspaces
                .entry(workspace_name.as_str().into())
                .or_default()
                .install(subject, cutoff),
        }
    }

    /// The version of the workspace's cutoff in force (0: none).
    pub fn workspace_version(&self, workspace: &str) -> u64 {
        self.workspaces
            .get(workspace)
            .and_then(|ws| ws.cutoff.as_ref().map(|c| c.version))
            .unwrap_or(0)
    }

    /// Hands every cutoff held to `visit` (which must not call back into `self`).
    pub fn for_each(&self, mut visit: impl FnMut(Record)) {
        for workspace in &self.workspaces {
            let name = workspace.key();
            if let Some(cutoff) = &workspace.cutoff {
                let scope = Scope::Workspace(name.to_string());
                visit(Record::Cutoff {
                    scope,
                    cutoff: cutoff.clone(),
                });
            }
            for (subject, cutoff) in &workspace.users {
                let scope = Scope::User {
                    workspace: name.to_string(),
                    subject: subject.to_string(),
                };
                visit(Record::Cutoff {
                    scope,
                    cutoff: cutoff.clone(),
                });
            }
        }
        for subject in &self.subjects {
            let scope = Scope::Subject(subject.key().to_string());
            let cutoff = subject.value().clone();
            visit(Record::Cutoff { scope, cutoff });
        }
    }

    /// The rank of the cutoff enforced for `scope` (no copy of it).
    pub fn rank(&self, scope: &Scope) -> Option<(i64, u64)> {
        match scope {
            Scope::Workspace(ws) => Some(self.workspaces.get(ws.as_str())?.cutoff.as_ref()?.rank()),
            Scope::User { workspace, subject } => Some(
                self.workspaces
                    .get(workspace.as_str())?
                    .users
                    .get(subject.as_str())?
                    .rank(),
            ),
            Scope::Subject(subject) => Some(self.subjects.get(subject.as_str())?.rank()),
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
            Scope::Subject(subject) => self.subjects.get(subject.as_str()).map(|c| c.clone()),
        }
    }
}

// === impl Session ===

impl Session<'_> {
    /// The names user cutoffs are looked up by: the user, and its folded form.
    fn users(&self) -> impl Iterator<Item = &str> {
        self.user.into_iter().chain(self.user_folded)
    }
}

// === impl Workspace ===

impl Workspace {
    /// Puts `cutoff` in its slot (the workspace's, or `subject`'s) unless the slot holds
    /// the same or a newer version.
    fn install(&mut self, subject: Option<&str>, cutoff: Cutoff) -> bool {
        match subject {
            None => match &mut self.cutoff {
                Some(current) => replace_if_older(current, cutoff),
                slot @ None => {
                    *slot = Some(cutoff);
                    true
                }
            },
            Some(subject) => match self.users.get_mut(subject) {
                Some(current) => replace_if_older(current, cutoff),
                None => {
                    self.users.insert(subject.into(), cutoff);
                    true
                }
            },
        }
    }
}

fn install_subject(subjects: &DashMap<Box<str>, Cutoff>, subject: &str, cutoff: Cutoff) -> bool {
    match subjects.get_mut(subject) {
        Some(mut current) => replace_if_older(&mut current, cutoff),
        None => {
            subjects.insert(subject.into(), cutoff);
            true
        }
    }
}

/// Only a higher rank (value, then version) replaces: a stale update (out of order,
/// replayed, or from a store that lost data) changes nothing.
fn replace_if_older(current: &mut Cutoff, candidate: Cutoff) -> bool {
    let newer = candidate.rank() > current.rank();
    if newer {
        *current = candidate;
    }
    newer
}

/// Whether a session passes `cutoff`; leeway never applies here.
fn admits(cutoff: &Cutoff, session: &Session<'_>, now: f64) -> bool {
    session.time >= cutoff.valid_after as f64
        || cutoff
            .preserved_at(now)
            .is_some_and(|p| p.session_id == session.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Preserved;

    fn claims<'a>(workspace: &'a str, sub: &'a str, time: f64, id: &'a str) -> Session<'a> {
        Session {
            workspace,
            user: Some(sub),
            user_folded: None,
            sid: None,
            id,
            time,
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
        let sessions = Cutoffs::default();
        sessions.apply(
            &Scope::Workspace("acme".into()),
            cutoff(1000, Some("jti:admin"), 1),
        );
        assert_eq!(
            sessions.check(&claims("acme", "u", 999.999, "jti:u"), 0.0),
            Err(Refusal::Invalidated)
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
        let sessions = Cutoffs::default();
        let user = Scope::User {
            workspace: "acme".into(),
            subject: "bob".into(),
        };
        sessions.apply(&user, cutoff(2000, None, 1));
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
            Err(Refusal::Revoked)
        );
        assert_eq!(
            sessions.check(&claims("acme", "carol", 1500.0, "jti:c"), 0.0),
            Ok(())
        );
        sessions.apply(&Scope::Workspace("acme".into()), cutoff(1800, None, 1));
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
            Err(Refusal::Invalidated)
        );
        assert_eq!(
            sessions.check(&claims("acme", "bob", 1900.0, "jti:b"), 0.0),
            Err(Refusal::Revoked)
        );
        assert_eq!(
            sessions.check(&claims("acme", "bob", 2000.0, "jti:b"), 0.0),
            Ok(())
        );
    }

    #[test]
    fn older_versions_never_replace_newer_ones() {
        let sessions = Cutoffs::default();
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
        let everywhere = Scope::Subject("bob".into());
        assert!(sessions.apply(&everywhere, cutoff(3000, None, 7)));
        assert!(!sessions.apply(&everywhere, cutoff(3000, None, 6)));
        assert_eq!(sessions.get(&everywhere).map(|c| c.version), Some(7));
    }

    #[test]
    fn every_cutoff_held_is_visited_with_its_rank() {
        let sessions = Cutoffs::default();
        let scopes = [
            Scope::Workspace("acme".into()),
            Scope::User {
                workspace: "acme".into(),
                subject: "bob".into(),
            },
            Scope::Subject("carol".into()),
        ];
        for (i, scope) in scopes.iter().enumerate() {
            sessions.apply(scope, cutoff(1000 + i as i64, None, 3));
        }
        let mut visited = Vec::new();
        sessions.for_each(|record| visited.push(record));
        assert_eq!(visited.len(), 3);
        for record in visited {
            let Record::Cutoff { scope, cutoff } = record else {
                panic!("a cutoff: {record:?}");
            };
            assert_eq!(sessions.rank(&scope), Some(cutoff.rank()));
        }
        assert_eq!(sessions.rank(&Scope::Workspace("other".into())), None);
    }

    #[test]
    fn a_newer_version_of_a_lower_cutoff_never_lowers_it() {
        // A store that lost data assigns new versions to lower values.
        let sessions = Cutoffs::default();
        let scope = Scope::Workspace("acme".into());
        assert!(sessions.apply(&scope, cutoff(3000, None, 5)));
        assert!(!sessions.apply(&scope, cutoff(2000, None, 9)));
        assert!(sessions.apply(&scope, cutoff(3000, Some("jti:later"), 6)));
        assert_eq!(
            sessions.get(&scope),
            Some(cutoff(3000, Some("jti:later"), 6))
        );
    }

    #[test]
    fn subject_wide_cutoff_applies_in_every_workspace_and_spares_no_session() {
        let sessions = Cutoffs::default();
        sessions.apply(&Scope::Subject("bob".into()), cutoff(2000, None, 1));
        for workspace in ["acme", "globex"] {
            assert_eq!(
                sessions.check(&claims(workspace, "bob", 1999.0, "jti:b"), 0.0),
                Err(Refusal::Revoked)
            );
            assert_eq!(
                sessions.check(&claims(workspace, "bob", 2000.0, "jti:b"), 0.0),
                Ok(())
            );
        }
        assert_eq!(
            sessions.check(&claims("acme", "carol", 10.0, "jti:c"), 0.0),
            Ok(())
        );
    }

    #[test]
    fn an_address_is_found_by_its_folded_form() {
        let sessions = Cutoffs::default();
        sessions.apply(
            &Scope::Subject("bob@example.com".into()),
            cutoff(2000, None, 1),
        );
        let mut session = claims("acme", "Bob@Example.com", 1500.0, "jti:b");
        assert_eq!(sessions.check(&session, 0.0), Ok(()), "exact names differ");
        session.user_folded = Some("bob@example.com");
        assert_eq!(sessions.check(&session, 0.0), Err(Refusal::Revoked));
    }
}
