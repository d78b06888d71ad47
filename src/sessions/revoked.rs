//! Identity-provider sessions revoked by signals: a token whose `sid` claim names one is
//! refused (SPEC section 1, step 5), in one workspace or in all, until the revocation
//! expires (`sessions.revoked_sid_ttl_secs` after the signal).
//!
//! Keyed by `sid`, so the request path does one lookup, and almost always a miss.

use std::collections::HashMap;

use dashmap::DashMap;

use crate::store::{Record, Revoked};

/// Every revoked `sid` in force (expired ones are forgotten by `prune`).
#[derive(Debug, Default)]
pub struct RevokedSids {
    sids: DashMap<Box<str>, Revocations>,
}

/// The revocations of one `sid`: fleet-wide, and per workspace.
#[derive(Debug, Default)]
struct Revocations {
    everywhere: Option<Revoked>,
    workspaces: HashMap<Box<str>, Revoked>,
}

// === impl RevokedSids ===

impl RevokedSids {
    /// Whether `sid` is revoked in `workspace` at `now`.
    pub fn is_revoked(&self, sid: &str, workspace: &str, now: f64) -> bool {
        self.sids.get(sid).is_some_and(|revocations| {
            let in_force = |revoked: &Revoked| revoked.in_force(now);
            revocations.everywhere.as_ref().is_some_and(in_force)
                || revocations.workspaces.get(workspace).is_some_and(in_force)
        })
    }

    /// Installs a revocation unless the same or a newer version is there; returns whether
    /// it did.
    pub fn apply(&self, workspace: Option<&str>, sid: &str, revoked: Revoked) -> bool {
        match self.sids.get_mut(sid) {
            Some(mut revocations) => revocations.install(workspace, revoked),
            None => self
                .sids
                .entry(sid.into())
                .or_default()
                .install(workspace, revoked),
        }
    }

    /// The revocation of `sid` held for `workspace` (`None`: everywhere).
    pub fn get(&self, workspace: Option<&str>, sid: &str) -> Option<Revoked> {
        let revocations = self.sids.get(sid)?;
        match workspace {
            None => revocations.everywhere,
            Some(workspace) => revocations.workspaces.get(workspace).copied(),
        }
    }

    /// Hands every revocation held to `visit` (which must not call back into `self`).
    pub fn for_each(&self, mut visit: impl FnMut(Record)) {
        for entry in &self.sids {
            let sid = entry.key();
            let record = |workspace: Option<&str>, revoked: Revoked| Record::RevokedSid {
                workspace: workspace.map(str::to_string),
                sid: sid.to_string(),
                revoked,
            };
            if let Some(revoked) = entry.everywhere {
                visit(record(None, revoked));
            }
            for (workspace, revoked) in &entry.workspaces {
                visit(record(Some(workspace), *revoked));
            }
        }
    }

    /// Forgets revocations that expired before `now` (a background task; never the
    /// request path).
    pub fn prune(&self, now: f64) {
        self.sids.retain(|_, revocations| {
            revocations
                .workspaces
                .retain(|_, revoked| revoked.in_force(now));
            if revocations.everywhere.is_some_and(|r| !r.in_force(now)) {
                revocations.everywhere = None;
            }
            revocations.everywhere.is_some() || !revocations.workspaces.is_empty()
        });
    }
}

// === impl Revocations ===

impl Revocations {
    fn install(&mut self, workspace: Option<&str>, revoked: Revoked) -> bool {
        let slot = match workspace {
            None => &mut self.everywhere,
            Some(workspace) => match self.workspaces.get_mut(workspace) {
                Some(current) => return replace_if_older(current, revoked),
                None => {
                    self.workspaces.insert(workspace.into(), revoked);
                    return true;
                }
            },
        };
        match slot {
            Some(current) => replace_if_older(current, revoked),
            None => {
                *slot = Some(revoked);
                true
            }
        }
    }
}

/// Only a higher rank (value, then version) replaces: a stale update (out of order,
/// replayed, or from a store that lost data) changes nothing.
fn replace_if_older(current: &mut Revoked, candidate: Revoked) -> bool {
    let newer = candidate.rank() > current.rank();
    if newer {
        *current = candidate;
    }
    newer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(expires_at: i64, version: u64) -> Revoked {
        Revoked {
            expires_at,
            version,
        }
    }

    #[test]
    fn a_workspace_revocation_applies_there_only() {
        let sids = RevokedSids::default();
        sids.apply(Some("acme"), "s1", revoked(100, 1));
        assert!(sids.is_revoked("s1", "acme", 50.0));
        assert!(!sids.is_revoked("s1", "globex", 50.0));
        assert!(!sids.is_revoked("s2", "acme", 50.0));
        sids.apply(None, "s1", revoked(100, 1));
        assert!(sids.is_revoked("s1", "globex", 50.0));
    }

    #[test]
    fn revocations_expire_and_older_versions_change_nothing() {
        let sids = RevokedSids::default();
        assert!(sids.apply(None, "s1", revoked(100, 2)));
        assert!(!sids.apply(None, "s1", revoked(100, 1)));
        assert!(
            !sids.apply(None, "s1", revoked(50, 3)),
            "a lower expiry never wins"
        );
        assert!(sids.is_revoked("s1", "acme", 99.9));
        assert!(!sids.is_revoked("s1", "acme", 100.0));
        sids.prune(100.0);
        assert!(sids.sids.is_empty());
    }
}
