//! Scale: 1,000,000 workspace cutoffs and 1,000,000 per-user cutoffs.
//!
//! Writes them to an embedded store file, then measures what start-up does (open + load
//! into memory), the memory it takes, and the per-request session check against an empty
//! table, in the same run. `cargo bench --bench scale` (SCALE=N to change the count).

use std::hint::black_box;
use std::time::Instant;

use redb::{Database, TableDefinition};
use sessiongate::config::StoreConfig;
use sessiongate::sessions::{Session, Sessions};
use sessiongate::store::{Cutoff, Outbox, Preserved, Scope, Store};

// The embedded store's table layout (src/store/embedded.rs), written here in bulk: the
// product only ever writes one logout per transaction.
const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_cutoffs");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_cutoffs");
/// Users are spread over this many workspaces.
const USER_WORKSPACES: usize = 10_000;

fn main() {
    let count: usize = std::env::var("SCALE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.redb");
    let written = Instant::now();
    write_store(&path, count);
    println!(
        "wrote {count} workspace + {count} user cutoffs in {:.1?}",
        written.elapsed()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let empty = Sessions::new(&mut sessiongate::ops::registry());
    // Resets VmHWM, so the peak below is the load's, not the bulk write's.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before_rss = rss_kib();
    let started = Instant::now();
    let sessions = runtime.block_on(load(&path));
    let load_time = started.elapsed();
    let grown = rss_kib() - before_rss;
    println!("start-up load (open + read + into memory): {load_time:.2?}");
    println!("peak RSS of the process (VmHWM): {} MiB", peak_kib() / 1024);
    println!(
        "memory for {} cutoffs: {} MiB ({} bytes each)",
        2 * count,
        grown / 1024,
        grown * 1024 / (2 * count) as i64
    );

    let (empty_ns, loaded_ns) = (check_ns(&empty, count), check_ns(&sessions, count));
    println!(
        "session check per request: empty table {empty_ns:.0} ns, loaded {loaded_ns:.0} ns ({:.2}x)",
        loaded_ns / empty_ns
    );
}

fn write_store(path: &std::path::Path, count: usize) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut workspaces = txn.open_table(WORKSPACES).unwrap();
        let mut users = txn.open_table(USERS).unwrap();
        for i in 0..count {
            let cutoff = serde_json::to_vec(&cutoff(i)).unwrap();
            workspaces
                .insert(format!("ws-{i}").as_str(), cutoff.as_slice())
                .unwrap();
            let workspace = format!("ws-{}", i % USER_WORKSPACES);
            users
                .insert(
                    (workspace.as_str(), format!("user-{i}").as_str()),
                    cutoff.as_slice(),
                )
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

fn cutoff(i: usize) -> Cutoff {
    let preserved = Preserved {
        session_id: format!("jti:admin-{i}"),
        expires_at: 2_000_000_000.0,
    };
    Cutoff {
        valid_after: 1_795_000_000 + i as i64 % 1000,
        preserved: Some(preserved),
        version: 1,
    }
}

async fn load(path: &std::path::Path) -> Sessions {
    let config = StoreConfig::Embedded {
        path: path.to_path_buf(),
    };
    let store = Store::open(&config, Outbox::default()).await.unwrap();
    let sessions = Sessions::new(&mut sessiongate::ops::registry());
    sessions.load(&store).await.unwrap();
    black_box(sessions.get(&Scope::Workspace("ws-1".into())));
    sessions
}

/// Median ns of `Sessions::check` for tokens spread over the workspaces and users.
fn check_ns(sessions: &Sessions, count: usize) -> f64 {
    let tokens: Vec<Token> = (0..1024).map(|i| token(i * 977 % count)).collect();
    let mut samples: Vec<f64> = (0..31)
        .map(|_| {
            let started = Instant::now();
            for token in &tokens {
                let _ = black_box(sessions.check(black_box(&token.session()), 1_900_000_000.0));
            }
            started.elapsed().as_nanos() as f64 / tokens.len() as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// What a verified token of user `i` tells the session rule.
struct Token {
    workspace: String,
    user: String,
    id: String,
}

impl Token {
    fn session(&self) -> Session<'_> {
        Session {
            workspace: &self.workspace,
            user: Some(&self.user),
            user_folded: None,
            sid: None,
            id: &self.id,
            time: 1_796_000_000.0,
        }
    }
}

fn token(i: usize) -> Token {
    Token {
        workspace: format!("ws-{}", i % USER_WORKSPACES),
        user: format!("user-{i}"),
        id: format!("jti:token-{i}"),
    }
}

fn peak_kib() -> i64 {
    status_kib("VmHWM:")
}

fn rss_kib() -> i64 {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
