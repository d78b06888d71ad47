//! Reading every record a Redis store holds (a load or a resync): every hash scanned at
//! once, each by a task of its own, so decoding runs beside Redis's next page.

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc::Sender;

use super::{COMMAND_TIMEOUT, Keys, RedisStore, connection_config};
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
        let primary = self.primary.client()?;
        for hash in hashes.into_iter().chain([&keys.schedules, &keys.policies]) {
            let scan = Scan {
                primary: primary.clone(),
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
    /// Where the scan opens a connection of its own, closed when it ends. A multiplexed
    /// connection parses every reply in one task: with one connection for all scans,
    /// 1M + 1M cutoffs were ready from Redis 0.45-0.9 s later in A/B runs. Not from the
    /// commit pool, whose connections carry the commits' longer timeout.
    primary: redis::Client,
    keys: Keys,
    hash: String,
    /// Revoked sessions that expired by then are skipped.
    now: f64,
}

/// The records of one `HSCAN` page.
type Page = Result<Vec<Record>, StoreError>;

// === impl Scan ===

impl Scan {
    /// Sends every page of the hash, decoded, to `pages`, asking for the next one before
    /// decoding the last (Redis works meanwhile; decoding here leaves the receiver only
    /// the applying). Stops at the first error (sent on) or when nobody receives any more.
    async fn run(self, pages: Sender<Page>) {
        if let Err(error) = self.scan(&pages).await {
            let _ = pages.send(Err(error)).await;
        }
    }

    async fn scan(&self, pages: &Sender<Page>) -> Result<(), StoreError> {
        let config = connection_config(COMMAND_TIMEOUT);
        let conn = self
            .primary
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut reply = self.hscan(&conn, 0).await?;
        loop {
            let (next, fields) = reply;
            // `join!` polls the request first: it is on its way before decoding starts.
            let following = (next != 0).then(|| self.hscan(&conn, next));
            let following = async {
                match following {
                    Some(request) => Some(request.await),
                    None => None,
                }
            };
            let (following, page) = tokio::join!(following, async { self.decode(&fields) });
            if pages.send(page).await.is_err() {
                return Ok(());
            }
            match following {
                Some(following) => reply = following?,
                None => return Ok(()),
            }
        }
    }

    /// One `HSCAN` of the hash from `cursor`: the next cursor and the fields.
    fn hscan(
        &self,
        conn: &MultiplexedConnection,
        cursor: u64,
    ) -> impl Future<Output = Result<(u64, Vec<(String, String)>), StoreError>> + use<> {
        let mut conn = conn.clone();
        let mut command = redis::cmd("HSCAN");
        command
            .arg(&self.hash)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_PAGE);
        async move { Ok(command.query_async(&mut conn).await?) }
    }

    fn decode(&self, fields: &[(String, String)]) -> Page {
        let mut records = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            let record = self.keys.record(&self.hash, field, value)?;
            records.extend(record.filter(|r| r.in_force(self.now)));
        }
        Ok(records)
    }
}
