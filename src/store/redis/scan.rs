//! Reading every record a Redis store holds (a load or a resync): every hash scanned at
//! once, each by a task of its own on a connection of its own, so decoding runs beside
//! Redis's next page.

use tokio::sync::mpsc::Sender;

use super::reply::Page;
use super::wire::{Dial, Wire};
use super::{Keys, RedisStore};
use crate::store::{CutoffCounts, Record, StoreError};

/// Cutoffs read per `HSCAN` round trip during a resync: a page costs Redis a few
/// milliseconds, in which it serves nobody else.
const SCAN_PAGE: usize = 10_000;

// === impl RedisStore ===

impl RedisStore {
    /// Reads every record memory enforces page by page, handing each to `apply`; returns
    /// how many. Revoked sessions that have expired are skipped.
    ///
    /// Every hash is scanned at once, each by its own task on its own connection (the
    /// connects run at once too) that decodes its pages while Redis works on the next
    /// one: this task only applies.
    pub async fn load_into(&self, mut apply: impl FnMut(Record)) -> Result<usize, StoreError> {
        let keys = &self.keys;
        let hashes = [&keys.workspaces, &keys.users, &keys.subjects, &keys.sids];
        let (pages, mut received) = tokio::sync::mpsc::channel(2 * hashes.len());
        // Dropped with this future (a resync cut short): the scans stop with it.
        let mut scans = tokio::task::JoinSet::new();
        let dial = Dial {
            info: self.primary.client()?.get_connection_info().clone(),
            tls: self.scan_tls.clone(),
        };
        for hash in hashes.into_iter().chain([&keys.schedules, &keys.policies]) {
            let scan = Scan {
                dial: dial.clone(),
                keys: keys.clone(),
                hash: hash.clone(),
                now: crate::clock::now(),
            };
            scans.spawn(scan.run(pages.clone()));
        }
        drop(pages);
        let mut count = 0;
        while let Some(page) = received.recv().await {
            let records = page?;
            count += records.len();
            records.into_iter().for_each(&mut apply);
        }
        Ok(count)
    }

    /// See `Store::cutoff_counts` (`HLEN` is constant-time).
    pub async fn cutoff_counts(&self) -> Result<CutoffCounts, StoreError> {
        let mut conn = self.command_connection()?;
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        for hash in [&keys.workspaces, &keys.users, &keys.subjects] {
            pipe.cmd("HLEN").arg(hash);
        }
        let (workspaces, users, subjects) = pipe.query_async(&mut conn).await?;
        Ok(CutoffCounts {
            workspaces,
            users,
            subjects,
        })
    }
}

/// One hash read page by page, by a task of its own.
struct Scan {
    /// Where the scan opens a connection of its own, closed when it ends: replies are read
    /// in place there (`reply`), and each scan parses its own (a multiplexed connection
    /// parses every reply in one task: shared by all scans, 1M + 1M cutoffs were ready
    /// from Redis 0.45-0.9 s later in A/B runs).
    dial: Dial,
    keys: Keys,
    hash: String,
    /// Revoked sessions that expired by then are skipped.
    now: f64,
}

/// The records of one `HSCAN` page.
type Records = Result<Vec<Record>, StoreError>;

// === impl Scan ===

impl Scan {
    /// Sends every page of the hash, decoded, to `pages`, asking for the next one before
    /// decoding the last (Redis works meanwhile). Stops at the first error (sent on) or
    /// when nobody receives any more.
    async fn run(self, pages: Sender<Records>) {
        if let Err(error) = self.scan(&pages).await {
            let _ = pages.send(Err(error)).await;
        }
    }

    async fn scan(&self, pages: &Sender<Records>) -> Result<(), StoreError> {
        let mut wire = Wire::open(&self.dial).await?;
        let mut page = Page::default();
        wire.send_hscan(&self.hash, 0, SCAN_PAGE).await?;
        loop {
            let next = wire.page(&mut page).await?;
            if next != 0 {
                wire.send_hscan(&self.hash, next, SCAN_PAGE).await?;
            }
            if pages.send(self.decode(&page)).await.is_err() || next == 0 {
                return Ok(());
            }
        }
    }

    fn decode(&self, page: &Page) -> Records {
        let mut records = Vec::with_capacity(page.len());
        for (field, value) in page.pairs() {
            // Values are JSON, which the decoders check for UTF-8 themselves.
            let record = self.keys.record(&self.hash, name(field)?, value)?;
            records.extend(record.filter(|r| r.in_force(self.now)));
        }
        Ok(records)
    }
}

/// A field: a name, or a JSON pair of names.
fn name(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes)
        .map_err(|_| StoreError::RedisScan("a field that is not UTF-8".into()))
}
