//! Scheduled logouts in memory (SPEC section 10): each workspace's pending one, enforced
//! from here once its time has come, whether or not the store could be told yet.
//!
//! Versions only grow, as for cutoffs: a cancellation or an application is a newer
//! version with nothing pending, so an old schedule never comes back.

use dashmap::DashMap;
use tokio::sync::watch;

use crate::store::{Schedule, ScheduledLogout};

/// Every workspace's schedule, and a signal for the task that applies them.
#[derive(Debug)]
pub struct Schedules {
    workspaces: DashMap<Box<str>, Schedule>,
    /// Bumped whenever a schedule changes, so the applying task looks again.
    changed: watch::Sender<u64>,
}

/// A pending logout whose time has come, with the version that names it in the store.
#[derive(Debug, Clone)]
pub struct Due {
    pub workspace: String,
    pub version: u64,
    pub logout: ScheduledLogout,
}

// === impl Schedules ===

impl Default for Schedules {
    fn default() -> Self {
        Self {
            workspaces: DashMap::new(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Schedules {
    /// Installs `schedule` unless the same or a newer version is here; returns whether it did.
    pub fn apply(&self, workspace: &str, schedule: Schedule) -> bool {
        let installed = match self.workspaces.get_mut(workspace) {
            Some(mut current) if current.version < schedule.version => {
                *current = schedule;
                true
            }
            Some(_) => false,
            None => {
                self.workspaces.insert(workspace.into(), schedule);
                true
            }
        };
        if installed {
            self.changed.send_modify(|count| *count += 1);
        }
        installed
    }

    /// Notified whenever a schedule changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The workspace's pending logout.
    pub fn pending(&self, workspace: &str) -> Option<ScheduledLogout> {
        self.workspaces.get(workspace)?.pending().cloned()
    }

    /// `X-Auth-Logout-At` for a request of `workspace` at `now`: the pending logout's time,
    /// until it comes.
    pub fn logout_at(&self, workspace: &str, now: f64) -> Option<i64> {
        let schedule = self.workspaces.get(workspace)?;
        let pending = schedule.pending().filter(|p| now < p.at)?;
        Some(pending.at_secs())
    }

    /// Runs `check` on the workspace's pending logout once its time has come by `now`.
    pub fn with_due<T>(
        &self,
        workspace: &str,
        now: f64,
        check: impl FnOnce(&ScheduledLogout) -> T,
    ) -> Option<T> {
        let schedule = self.workspaces.get(workspace)?;
        schedule.pending().filter(|p| p.at <= now).map(check)
    }

    /// The pending logouts due by `now`, and the time of the next one after that. Walks
    /// every workspace: the applying task's work, never a request's.
    pub fn due(&self, now: f64) -> (Vec<Due>, Option<f64>) {
        let mut due = Vec::new();
        let mut next: Option<f64> = None;
        for entry in &self.workspaces {
            let Some(logout) = entry.pending() else {
                continue;
            };
            if logout.at <= now {
                due.push(Due {
                    workspace: entry.key().to_string(),
                    version: entry.version,
                    logout: logout.clone(),
                });
            } else {
                next = Some(next.map_or(logout.at, |n| n.min(logout.at)));
            }
        }
        (due, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Scheduler;

    fn schedule(at: Option<f64>, version: u64) -> Schedule {
        let pending = at.map(|at| {
            Box::new(ScheduledLogout {
                at,
                valid_after: at.floor() as i64 + 1,
                audit_id: "a".into(),
                scheduler: Scheduler {
                    subject: Some("ada".into()),
                    session_id: "jti:ada".into(),
                    actor_session: "jti:ada".into(),
                    expires_at: f64::MAX,
                    time: 0.0,
                    user: Some("ada".into()),
                    user_folded: None,
                    sid: None,
                    client_ip: "127.0.0.1".into(),
                    user_agent: None,
                    claims: serde_json::Map::new(),
                },
                category: None,
                ticket: None,
                reason: None,
            })
        });
        Schedule { pending, version }
    }

    #[test]
    fn an_older_version_never_brings_a_schedule_back() {
        let schedules = Schedules::default();
        assert!(schedules.apply("acme", schedule(Some(100.5), 1)));
        assert!(schedules.apply("acme", schedule(None, 2)), "cancelled");
        assert!(
            !schedules.apply("acme", schedule(Some(100.5), 1)),
            "a late copy"
        );
        assert!(!schedules.apply("acme", schedule(Some(300.0), 2)));
        assert_eq!(schedules.pending("acme"), None);
        assert!(schedules.apply("acme", schedule(Some(200.0), 3)));
        assert_eq!(schedules.pending("acme").map(|p| p.at), Some(200.0));
    }

    #[test]
    fn the_notice_lasts_until_the_time_and_then_it_is_due() {
        let schedules = Schedules::default();
        schedules.apply("acme", schedule(Some(100.5), 1));
        schedules.apply("globex", schedule(Some(50.0), 1));
        schedules.apply("initech", schedule(None, 4));
        assert_eq!(schedules.logout_at("acme", 100.4), Some(100));
        assert_eq!(schedules.logout_at("acme", 100.5), None);
        assert_eq!(schedules.logout_at("initech", 0.0), None);
        assert_eq!(schedules.with_due("acme", 100.4, |_| ()), None);
        assert_eq!(
            schedules.with_due("acme", 100.5, |p| p.valid_after),
            Some(101)
        );
        let (due, next) = schedules.due(60.0);
        let due: Vec<&str> = due.iter().map(|d| d.workspace.as_str()).collect();
        assert_eq!((due, next), (vec!["globex"], Some(100.5)));
    }
}
