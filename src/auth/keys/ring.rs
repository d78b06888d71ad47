//! The `KeyRing`: fixed keys from files plus remote JWKS, published as one `KeySet`.
//!
//! Refreshes run in background tasks. A token with an unknown key may ask for one extra
//! refetch; those are single-flight and at most one per `UNKNOWN_KEY_REFETCH` for the
//! whole gateway, so a flood of made-up `kid`s cannot hammer the identity provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::jwks::RemoteJwks;
use super::{KeyError, KeySet, VerifyKey};
use crate::auth::AuthMetrics;
use crate::config::{KeyConfig, KeySource};

/// At most one refetch for unknown keys per this interval.
const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(30);
/// Retry delays before the first good answer (the gateway is not ready until then).
const FIRST_FETCH_RETRY: [u64; 6] = [1, 1, 2, 4, 8, 15];
/// After a failed scheduled refresh, try again after at most this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Every verification key, fixed and remote.
pub struct KeyRing {
    fixed: Vec<VerifyKey>,
    remotes: Vec<RemoteJwks>,
    current: ArcSwap<KeySet>,
    generation: AtomicU64,
    /// When the last unknown-key refetch started; the lock makes it single-flight.
    unknown_key_refetch: tokio::sync::Mutex<Option<Instant>>,
}

// === impl KeyRing ===

impl KeyRing {
    /// Loads the fixed keys now; remote JWKS start empty until `spawn_refreshers`.
    pub fn load(entries: &[KeyConfig]) -> Result<Self, KeyError> {
        let fixed = KeySet::load(entries)?.keys;
        let remotes = entries
            .iter()
            .filter_map(|entry| match &entry.source {
                KeySource::JwksUrl(remote) => Some(RemoteJwks::new(&entry.key_name, remote)),
                _ => None,
            })
            .collect::<Result<Vec<_>, _>>()?;
        let current = ArcSwap::from_pointee(KeySet::new(fixed.clone(), 0, remotes.is_empty()));
        Ok(Self {
            fixed,
            remotes,
            current,
            generation: AtomicU64::new(0),
            unknown_key_refetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The keys in force now (lock-free).
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Whether the keys in force include every remote JWKS and some key is loaded.
    pub fn is_ready(&self) -> bool {
        let current = self.current();
        current.complete && !current.is_empty()
    }

    /// How many `jwks_url` entries there are.
    pub fn remote_count(&self) -> usize {
        self.remotes.len()
    }

    /// Starts one refresh task per remote JWKS; they stop at `shutdown`.
    pub fn spawn_refreshers(self: &Arc<Self>, metrics: AuthMetrics, shutdown: CancellationToken) {
        for index in 0..self.remotes.len() {
            let (ring, metrics, shutdown) = (self.clone(), metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = ring.refresh_forever(index, &metrics) => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }

    async fn refresh_forever(&self, index: usize, metrics: &AuthMetrics) {
        let remote = &self.remotes[index];
        let mut failures = 0usize;
        loop {
            let wait = match remote.refresh().await {
                Ok(fetched) => {
                    failures = 0;
                    metrics.jwks_fetch(true);
                    if fetched.changed {
                        self.publish();
                    }
                    tracing::debug!(
                        key = remote.name,
                        keys = fetched.key_count,
                        changed = fetched.changed,
                        "JWKS refreshed"
                    );
                    remote.refresh_after(fetched.max_age)
                }
                Err(error) => {
                    failures += 1;
                    metrics.jwks_fetch(false);
                    tracing::warn!(key = remote.name, %error, "JWKS refresh failed; keeping the last good keys");
                    match remote.keys() {
                        Some(_) => remote.refresh_interval().min(RETRY_AFTER_FAILURE),
                        None => Duration::from_secs(
                            FIRST_FETCH_RETRY[failures.min(FIRST_FETCH_RETRY.len()) - 1],
                        ),
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// For a token whose key is unknown: refetch every remote JWKS, unless that was done
    /// less than `UNKNOWN_KEY_REFETCH` ago. Concurrent callers share one refetch. `seen` is
    /// the key-set generation the caller verified with; returns whether the keys changed
    /// since then (worth verifying again).
    pub async fn refetch_for_unknown_key(&self, seen: u64, metrics: &AuthMetrics) -> bool {
        if self.remotes.is_empty() {
            return false;
        }
        let mut last = self.unknown_key_refetch.lock().await;
        if self.current().generation() != seen {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KEY_REFETCH) {
            return false;
        }
        *last = Some(Instant::now());
        let mut changed = false;
        for remote in &self.remotes {
            match remote.refresh().await {
                Ok(fetched) => {
                    metrics.jwks_fetch(true);
                    changed |= fetched.changed;
                }
                Err(error) => {
                    metrics.jwks_fetch(false);
                    tracing::warn!(key = remote.name, %error, "JWKS refetch for an unknown key failed")
                }
            }
        }
        if changed {
            self.publish();
        }
        changed
    }

    /// Rebuilds the combined set from the fixed keys and each remote's last good keys.
    fn publish(&self) {
        let mut keys = self.fixed.clone();
        for remote in &self.remotes {
            keys.extend(
                remote
                    .keys()
                    .iter()
                    .flat_map(|remote_keys| remote_keys.iter().cloned()),
            );
        }
        let complete = self.remotes.iter().all(|remote| remote.keys().is_some());
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.current
            .store(Arc::new(KeySet::new(keys, generation, complete)));
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.current().len())
            .field("remotes", &self.remotes.len())
            .finish()
    }
}
