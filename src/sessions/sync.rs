//! Keeps this instance in step with the store a fleet of gateways shares (Redis).
//!
//! One background task owns the link: connect (a command connection and a subscription
//! to the change channel), load every cutoff, then follow the channel, ping both
//! connections every second and resync every `store.resync_secs`. Any failure drops the
//! link; the task reconnects with backoff and resyncs at once, so a change published while
//! this instance was away is healed. Requests never wait for any of this: they are checked
//! against the cutoffs already in memory.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{MissedTickBehavior, interval_at};

use super::Sessions;
use super::heal::Heal;
use crate::store::{Published, RedisStore, StoreError, Subscription};

/// How often both connections are pinged: a silent network failure shows within ~2 s.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Reconnect delays double from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// The task's memory between attempts.
struct Link {
    retry: Duration,
    /// The current outage has been logged once already; later retries stay quiet.
    outage_logged: bool,
}

/// Keeps `sessions` in step with the shared `store` for as long as it is polled:
/// connect, load, follow, and after any failure reconnect with backoff and resync.
pub async fn keep_in_sync(sessions: &Sessions, store: &RedisStore) {
    let mut link = Link {
        retry: FIRST_RETRY,
        outage_logged: false,
    };
    loop {
        let error = match store.connect().await {
            Ok(subscription) => {
                link.connected(sessions, &subscription);
                follow(sessions, store, subscription, &mut link).await
            }
            Err(error) => error,
        };
        link.lost(sessions, store, &error);
        tokio::time::sleep(link.retry).await;
        link.retry = (link.retry * 2).min(LAST_RETRY);
    }
}

/// Applies changes as they are published while resyncing (first at once, then every
/// `store.resync_secs`); returns why the link ended. A resync of millions of cutoffs takes
/// seconds, so it runs beside the channel instead of holding its messages back.
async fn follow(
    sessions: &Sessions,
    store: &RedisStore,
    mut subscription: Subscription,
    link: &mut Link,
) -> StoreError {
    let mut running = Some(Box::pin(resync(sessions, store)));
    let mut loaded = false;
    let start = tokio::time::Instant::now();
    let mut heartbeat = interval_at(start + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let period = store.resync_interval();
    let mut resync_timer = interval_at(start + period, period);
    resync_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            message = subscription.messages.next() => match message {
                Some(message) => {
                    apply(sessions, message.get_payload_bytes());
                    Ok(())
                }
                None => Err(StoreError::Disconnected),
            },
            done = finish(&mut running) => done.map(|count| {
                running = None;
                match std::mem::replace(&mut loaded, true) {
                    false => link.synced(sessions, count),
                    true => sessions.loaded(count),
                }
            }),
            // Until the first resync is done this instance is not in step, however well
            // the connections answer.
            _ = heartbeat.tick(), if loaded => {
                store.ping(&mut subscription).await.map(|()| store.mark_synced())
            }
            _ = resync_timer.tick(), if running.is_none() => {
                running = Some(Box::pin(resync(sessions, store)));
                Ok(())
            }
        };
        if let Err(error) = step {
            return error;
        }
    }
}

/// The running resync's result; never, when none is running.
async fn finish<F: Future + Unpin>(running: &mut Option<F>) -> F::Output {
    match running {
        Some(resync) => resync.await,
        None => std::future::pending().await,
    }
}

/// Loads every cutoff into memory (ranks keep higher ones already there), then writes
/// back what the store lacks or holds lower.
async fn resync(sessions: &Sessions, store: &RedisStore) -> Result<usize, StoreError> {
    let started = std::time::Instant::now();
    // Room for the first load at once; later resyncs find it made.
    sessions.cutoffs.reserve(store.cutoff_counts().await?);
    let mut heal = Heal::new(sessions);
    let count = store
        .load_into(|record| heal.load(sessions, record))
        .await?;
    heal.restore(sessions, store).await?;
    store.mark_synced();
    sessions.metrics.store_resyncs.inc();
    tracing::debug!(
        cutoffs = count,
        seconds = started.elapsed().as_secs_f64(),
        "resynced"
    );
    Ok(count)
}

/// One published change. Versions make duplicates (this instance's own commits) and
/// out-of-order deliveries harmless.
fn apply(sessions: &Sessions, payload: &[u8]) {
    match Published::decode(payload) {
        Ok(published) => published
            .into_records()
            .into_iter()
            .for_each(|record| sessions.apply(record)),
        // Not ours to fail on: the periodic resync reads the stored cutoffs anyway.
        Err(error) => tracing::warn!(%error, "ignoring an unreadable change message"),
    }
}

// === impl Link ===

impl Link {
    fn connected(&self, sessions: &Sessions, subscription: &Subscription) {
        if let Some(previous) = &subscription.switched_from {
            sessions.metrics.store_primary_changes.inc();
            tracing::warn!(
                previous,
                "following a new Redis primary (Sentinel failover); resyncing"
            );
        }
    }

    fn synced(&mut self, sessions: &Sessions, count: usize) {
        sessions.loaded(count);
        if self.outage_logged {
            tracing::info!(cutoffs = count, "shared store reachable again; resynced");
        }
        self.retry = FIRST_RETRY;
        self.outage_logged = false;
    }

    fn lost(&mut self, sessions: &Sessions, store: &RedisStore, error: &StoreError) {
        let was_up = store.is_up();
        store.disconnect();
        sessions.metrics.store_up.set(0);
        if was_up {
            sessions.metrics.store_disconnects.inc();
        }
        if self.outage_logged {
            tracing::debug!(%error, "shared store still out of reach");
        } else if sessions.is_loaded() {
            tracing::warn!(
                %error,
                "shared store out of reach: enforcing the cutoffs in memory, logouts answer 503; reconnecting"
            );
        } else {
            tracing::warn!(%error, "cannot load the shared store: not ready; retrying");
        }
        self.outage_logged = true;
    }
}
