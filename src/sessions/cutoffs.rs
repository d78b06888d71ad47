//! Workspace, per-user and subject-wide cutoffs in memory: step 5 of the acceptance rule.
//!
//! The request path reads a shard of a compact table (`table`) under its read lock and
//! never waits on the store. Every change carries the store's version number, so updates
//! that arrive out of order (two admins at once, or a later pub/sub message) can never
//! move a cutoff back.
//!
//! Workspaces are interned: a user cutoff is keyed by its workspace's 4-byte id and the
//! subject, in one table for all workspaces (before issue 15: a `HashMap` per workspace
//! inside a `DashMap`, 421 bytes per cutoff once 1M + 1M were loaded).

use crate::store::{Cutoff, CutoffCounts, Record, Scope};

mod arena;
mod marks;
mod table;

use arena::Key;
pub use marks::Marks;
use marks::Which;
use table::{Held, Table, text};

/// Cutoffs of every workspace, its users' cutoffs, and the subject-wide ones.
#[derive(Debug)]
pub struct Cutoffs {
    /// By workspace name; an entry without a cutoff names a workspace whose users have
    /// cutoffs. Its id is what `users` keys by.
    workspaces: Table,
    /// By (workspace id, subject).
    users: Table,
    /// `U*` by user: set by identity-provider signals, in force in every workspace.
    subjects: Table,
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

impl Default for Cutoffs {
    fn default() -> Self {
        Self {
            workspaces: Table::new(false),
            users: Table::new(true),
            subjects: Table::new(false),
        }
    }
}

impl Cutoffs {
    /// Step 5 at time `now`: the workspace cutoff, then the user's, each unless this token
    /// is the preserved session (which ends with its token's `exp`), then the user's
    /// subject-wide cutoff, which preserves none.
    pub fn check(&self, session: &Session<'_>, now: f64) -> Result<(), Refusal> {
        let workspace = self.workspaces.get(name(session.workspace), |ws| {
            (ws.id, admits(&ws, session, now))
        });
        if let Some((id, admitted)) = workspace {
            if !admitted {
                return Err(Refusal::Invalidated);
            }
            if !admits_user(&self.users, |name| user(id, name), session, now) {
                return Err(Refusal::Revoked);
            }
        }
        if !admits_user(&self.subjects, name, session, now) {
            return Err(Refusal::Revoked);
        }
        Ok(())
    }

    /// Makes room for the cutoffs a store holds, before loading them.
    pub fn reserve(&self, counts: CutoffCounts) {
        self.workspaces.reserve(counts.workspaces);
        self.users.reserve(counts.users);
        self.subjects.reserve(counts.subjects);
    }

    /// Installs `cutoff` for `scope` unless the same or a newer version is already there;
    /// returns whether it did.
    pub fn apply(&self, scope: &Scope, cutoff: Cutoff) -> bool {
        match scope {
            Scope::Workspace(workspace) => self.workspaces.install(name(workspace), &cutoff),
            Scope::User { workspace, subject } => {
                let id = self.workspaces.intern(name(workspace));
                self.users.install(user(id, subject), &cutoff)
            }
            Scope::Subject(subject) => self.subjects.install(name(subject), &cutoff),
        }
    }

    /// The version of the workspace's cutoff in force (0: none).
    pub fn workspace_version(&self, workspace: &str) -> u64 {
        let rank = self.workspaces.get(name(workspace), |ws| ws.rank());
        rank.flatten().map_or(0, |(_, version)| version)
    }

    /// Hands every cutoff held to `visit` (which must not call back into `self`).
    pub fn for_each(&self, visit: impl FnMut(Record)) {
        // No entry is marked in an empty `Marks`.
        self.for_each_unmarked(&Marks::default(), visit);
    }

    /// Marks `scope`'s entry in `marks` (a resync found it in the store), made (holding
    /// no cutoff) if there is none: the store's record is installed next.
    pub fn mark(&self, scope: &Scope, marks: &mut Marks) {
        let id = match scope {
            Scope::Workspace(workspace) => self.workspaces.intern(name(workspace)),
            Scope::User { workspace, subject } => {
                let id = self.workspaces.intern(name(workspace));
                self.users.intern(user(id, subject))
            }
            Scope::Subject(subject) => self.subjects.intern(name(subject)),
        };
        marks.mark(Which::of(scope), id);
    }

    /// Hands every cutoff held whose entry `marks` lacks to `visit` (which must not call
    /// back into `self`): a resync writes back what the store lacks, and copying every
    /// cutoff to find them was its largest cost (~12 % of a 1M + 1M Redis load in a
    /// profile of the binary).
    pub fn for_each_unmarked(&self, marks: &Marks, mut visit: impl FnMut(Record)) {
        self.for_each_held(|table, workspace, subject, held| {
            if marks.has(table, held.id) {
                return;
            }
            let scope = Scope::from_parts(workspace, subject);
            if let (Some(scope), Some(cutoff)) = (scope, held.cutoff()) {
                visit(Record::Cutoff { scope, cutoff });
            }
        });
    }

    fn for_each_held(&self, mut visit: impl FnMut(Which, Option<&str>, Option<&str>, Held<'_>)) {
        self.workspaces.for_each(|key, held| {
            visit(Which::Workspaces, Some(&text(key.name)), None, held);
        });
        self.users.for_each(|key, held| {
            let id = key
                .workspace
                .expect("a user cutoff names an interned workspace");
            let subject = text(key.name);
            let visited = self.workspaces.with_name(id, |workspace| {
                visit(Which::Users, Some(&text(workspace)), Some(&subject), held);
            });
            visited.expect("a user cutoff's workspace id names an entry of `workspaces`");
        });
        self.subjects.for_each(|key, held| {
            visit(Which::Subjects, None, Some(&text(key.name)), held);
        });
    }

    /// The rank of the cutoff enforced for `scope` (no copy of it).
    pub fn rank(&self, scope: &Scope) -> Option<(i64, u64)> {
        self.read(scope, |held| held.rank())
    }

    /// The cutoff currently enforced for `scope`.
    pub fn get(&self, scope: &Scope) -> Option<Cutoff> {
        self.read(scope, |held| held.cutoff())
    }

    /// Reads the entry of `scope` (an entry holding no cutoff reads as `None` there).
    fn read<R>(&self, scope: &Scope, read: impl FnOnce(Held<'_>) -> Option<R>) -> Option<R> {
        match scope {
            Scope::Workspace(workspace) => self.workspaces.get(name(workspace), read)?,
            Scope::User { workspace, subject } => {
                let id = self.workspaces.get(name(workspace), |ws| ws.id)?;
                self.users.get(user(id, subject), read)?
            }
            Scope::Subject(subject) => self.subjects.get(name(subject), read)?,
        }
    }
}

// === impl Session ===

impl<'a> Session<'a> {
    /// The names user cutoffs are looked up by: the user, and its folded form.
    fn users(&self) -> impl Iterator<Item = &'a str> {
        self.user.into_iter().chain(self.user_folded)
    }
}

fn name(name: &str) -> Key<'_> {
    Key {
        workspace: None,
        name: name.as_bytes(),
    }
}

fn user(workspace: u32, subject: &str) -> Key<'_> {
    Key {
        workspace: Some(workspace),
        name: subject.as_bytes(),
    }
}

/// Whether every cutoff `table` holds for the session's user names admits it.
fn admits_user<'s>(
    table: &Table,
    key: impl Fn(&'s str) -> Key<'s>,
    session: &Session<'s>,
    now: f64,
) -> bool {
    session.users().all(|user| {
        let admitted = table.get(key(user), |held| admits(&held, session, now));
        admitted.unwrap_or(true)
    })
}

/// Whether a session passes the cutoff held (if any); leeway never applies here. The
/// preserved session is compared only for a session older than the cutoff.
fn admits(held: &Held<'_>, session: &Session<'_>, now: f64) -> bool {
    let Some(valid_after) = held.valid_after() else {
        return true;
    };
    session.time >= valid_after as f64
        || held
            .preserved()
            .is_some_and(|p| now < p.expires_at && p.session_id == session.id.as_bytes())
}

#[cfg(test)]
mod tests;
