//! What is in force, in memory: every cutoff and preserved session of the store, the
//! identity-provider sessions signals revoked, and the scheduled logouts, loaded before the
//! gateway reports ready and kept in step with the store afterwards.
//!
//! The request path only reads here (step 5 of the acceptance rule) and never waits on the
//! store. Every change, whatever its trigger, goes through one write path (`commit`): the
//! store first, then memory, then the audit log line. It also counts who is active
//! (`activity`), for the console's "about N sessions will be signed out".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::clock;
use crate::store::{Cutoff, Record, Scope, Store, StoreError, StoredPolicy};

mod activity;
mod commit;
mod cutoffs;
mod heal;
mod metrics;
pub mod policy;
mod revoked;
mod scheduled_logout;
mod schedules;
mod share;
mod sync;

use activity::Activity;
use cutoffs::Cutoffs;
use metrics::SessionMetrics;
use policy::Policies;
use revoked::RevokedSids;
use schedules::Schedules;

pub use activity::{ActivityCount, WINDOW_SECS};
pub use cutoffs::{Refusal, Session};
pub use policy::{Policy, PolicyError, PolicyRefusal};
pub use scheduled_logout::apply_scheduled_logouts;
pub use share::share_activity;
pub use sync::keep_in_sync;

/// How often expired revocations are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Everything the session rule enforces, and whether it is complete yet.
#[derive(Debug)]
pub struct Sessions {
    cutoffs: Cutoffs,
    revoked: RevokedSids,
    /// Pending scheduled logouts, enforced from their time on (SPEC section 10).
    schedules: Schedules,
    policies: Policies,
    activity: Activity,
    /// Names this instance's activity shares in a shared store.
    instance: String,
    /// Bumped on every change, so open tunnels and streams can re-check their session.
    changes: watch::Sender<u64>,
    /// Set once every stored cutoff is in memory; until then requests get 503.
    loaded: AtomicBool,
    /// Bumped after every commit made here, so the events workers send its event at once.
    commits: watch::Sender<u64>,
    metrics: SessionMetrics,
}

/// The cutoff a logout sets at time `now` (SPEC section 1, step 5): every token issued
/// at or before `now` fails, even within the same second.
pub fn cutoff_at(now: f64, invalidation_margin_secs: i64) -> i64 {
    now.floor() as i64 + 1 + invalidation_margin_secs
}

// === impl Sessions ===

impl Sessions {
    /// An empty table, not loaded yet, with its metrics registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        Self {
            cutoffs: Cutoffs::default(),
            revoked: RevokedSids::default(),
            schedules: Schedules::default(),
            policies: Policies::default(),
            activity: Activity::default(),
            instance: uuid::Uuid::now_v7().to_string(),
            changes: watch::Sender::new(0),
            loaded: AtomicBool::new(false),
            commits: watch::Sender::new(0),
            metrics: SessionMetrics::register(registry),
        }
    }

    /// Step 5 at time `now`: the workspace cutoff, then the user's, each unless this
    /// session is the preserved one (which ends with its token's `exp`); then the user's
    /// subject-wide cutoff and the identity provider's revoked sessions; then a scheduled
    /// logout whose time has come (before the store has it as a cutoff).
    pub fn check(&self, session: &Session<'_>, now: f64) -> Result<(), Refusal> {
        self.cutoffs.check(session, now)?;
        if let Some(sid) = session.sid
            && self.revoked.is_revoked(sid, session.workspace, now)
        {
            return Err(Refusal::Revoked);
        }
        self.check_scheduled(session, now)
    }

    /// Step 6 at time `now`: the policy of the request's workspace, when it has one (one
    /// map lookup when it has none).
    pub fn check_policy(
        &self,
        request: &policy::Request<'_>,
        now: f64,
    ) -> Result<(), PolicyRefusal> {
        self.policies.check(request, now)
    }

    /// The policy of `workspace` in force (empty, version 0: none).
    pub fn policy(&self, workspace: &str) -> StoredPolicy {
        self.policies.get(workspace)
    }

    /// Counts a session whose request passed at `now`, for `GET .../activity`.
    pub fn seen(&self, session: &Session<'_>, now: f64) {
        let since = || self.cutoffs.workspace_version(session.workspace);
        self.activity.seen(session, now, since);
    }

    /// Notified after every change, so open tunnels and streams re-check their session.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Notified after every commit this instance makes.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The cutoff currently enforced for `scope`.
    pub fn get(&self, scope: &Scope) -> Option<Cutoff> {
        self.cutoffs.get(scope)
    }

    /// Installs a record of the store (committed here, published by another instance,
    /// or read by a load); versions keep newer ones already here.
    pub fn apply(&self, record: Record) {
        if self.install(record) {
            self.notify_changed();
        }
    }

    /// Tells open tunnels and streams to re-check their session.
    fn notify_changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Installs a record without telling the watchers; returns whether it changed
    /// anything.
    fn install(&self, record: Record) -> bool {
        match record {
            Record::Cutoff { scope, cutoff } => {
                let version = cutoff.version;
                let changed = self.cutoffs.apply(&scope, cutoff);
                if changed && let Scope::Workspace(workspace) = &scope {
                    // SPEC section 11: sessions seen before a logout-all no longer count.
                    self.activity.reset(workspace, version);
                }
                changed
            }
            Record::RevokedSid {
                workspace,
                sid,
                revoked,
            } => self.revoked.apply(workspace.as_deref(), &sid, revoked),
            Record::Schedule {
                workspace,
                schedule,
            } => self.schedules.apply(&workspace, schedule),
            Record::Policy { workspace, policy } => self.policies.apply(&workspace, policy),
        }
    }

    /// The record memory holds for the key of `record` (the same scope, or sid).
    pub fn held(&self, record: &Record) -> Option<Record> {
        match record {
            Record::Cutoff { scope, .. } => self.cutoffs.get(scope).map(|cutoff| Record::Cutoff {
                scope: scope.clone(),
                cutoff,
            }),
            Record::RevokedSid { workspace, sid, .. } => self
                .revoked
                .get(workspace.as_deref(), sid)
                .map(|revoked| Record::RevokedSid {
                    workspace: workspace.clone(),
                    sid: sid.clone(),
                    revoked,
                }),
            Record::Schedule { workspace, .. } => {
                self.schedules
                    .get(workspace)
                    .map(|schedule| Record::Schedule {
                        workspace: workspace.clone(),
                        schedule,
                    })
            }
            Record::Policy { workspace, .. } => {
                self.policies.version(workspace)?;
                Some(Record::Policy {
                    workspace: workspace.clone(),
                    policy: self.policies.get(workspace),
                })
            }
        }
    }

    /// The rank of the record memory holds for the key of `record` (no copy of it).
    pub fn held_rank(&self, record: &Record) -> Option<(i64, u64)> {
        match record {
            Record::Cutoff { scope, .. } => self.cutoffs.rank(scope),
            Record::RevokedSid { workspace, sid, .. } => self
                .revoked
                .get(workspace.as_deref(), sid)
                .map(|revoked| revoked.rank()),
            Record::Schedule { workspace, .. } => self.schedules.version(workspace).map(|v| (0, v)),
            Record::Policy { workspace, .. } => self.policies.version(workspace).map(|v| (0, v)),
        }
    }

    /// Hands every record memory holds to `visit` (which must not call back into `self`).
    pub fn for_each_record(&self, mut visit: impl FnMut(Record)) {
        self.cutoffs.for_each(&mut visit);
        self.for_each_record_but_cutoffs(visit);
    }

    /// `for_each_record` of every record but the cutoffs.
    fn for_each_record_but_cutoffs(&self, mut visit: impl FnMut(Record)) {
        self.revoked.for_each(&mut visit);
        self.schedules.for_each(&mut visit);
        self.policies.for_each(visit);
    }

    /// Forgets expired revocations every minute, for as long as it is polled. Nothing to
    /// notify: an expiry only lets tokens pass again.
    pub async fn forget_expired(&self) {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            self.revoked.prune(clock::now());
        }
    }

    /// Loads every stored record (streaming), then opens the gate.
    pub async fn load(&self, store: &Store) -> Result<usize, StoreError> {
        // Watchers are told once, after the whole load: a watch notification per record
        // showed in the profile of a 1M + 1M load (~1 % of its samples).
        self.cutoffs.reserve(store.cutoff_counts().await?);
        let count = store.load_into(|record| _ = self.install(record)).await?;
        self.notify_changed();
        self.loaded(count);
        Ok(count)
    }

    /// Every stored cutoff is in memory (`count` of them): after the first load and after
    /// each resync of a shared store.
    pub fn loaded(&self, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.metrics.cutoffs_loaded.set(count);
        self.metrics.store_up.set(1);
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether every stored cutoff is in memory.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// How many cutoffs the last (re)load read, for the `ready` line.
    pub fn loaded_count(&self) -> i64 {
        self.metrics.cutoffs_loaded.get()
    }

    /// Sets the gauges that depend on the time of the scrape.
    pub fn observe(&self, store: &Store) {
        if let Some(store) = store.shared() {
            self.metrics
                .store_sync_age
                .set(store.since_sync().as_secs_f64());
        }
    }
}
