//! Scale: 1,000,000 workspace cutoffs and 1,000,000 per-user cutoffs (issue 15: at most
//! 150 MB RSS once loaded, ready within 2 s from either store, the session check within
//! 2x of an empty table).
//!
//! The same cutoffs are written to an embedded store file and to a Redis of its own (on a
//! free port, in the Redis store's key layout and value format; stopped at the end), then
//! for each store:
//! - in this process: the load into memory (its time) and the per-request session check
//!   against the loaded table and an empty one;
//! - through the real binary (`sessiongate serve`): time from spawn to `ready`, and VmRSS
//!   once `/readyz` answers 200 and again after it served 2000 requests, against an
//!   instance with no cutoffs; from Redis, the cost of a periodic resync too.
//!
//! The data: users spread over 10,000 workspaces; `PRESERVED=all` (the default, the worst
//! case) gives every cutoff a preserved session as a logout-all or a logout-others leaves
//! it; `PRESERVED=workspaces` only the workspace cutoffs (an admin logging a user out
//! preserves nothing: the realistic mix). `cargo bench --bench scale`; `SCALE=N` changes
//! the count. Without redis-server the Redis half is skipped with a loud line (a failure
//! under `CI=true`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use sessiongate::config::{Config, StoreConfig};
use sessiongate::sessions::{Session, Sessions};
use sessiongate::store::{Cutoff, Outbox, Preserved, Store};

/// The binary's allocator (src/main.rs), so RSS and load time are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Versions as the Redis commit script makes them: server microseconds.
const VERSION: u64 = 1_795_000_000_123_456;

/// What was written, for every figure.
#[derive(Clone, Copy)]
struct Data {
    count: usize,
    /// Whether user cutoffs carry a preserved session too.
    users_preserve: bool,
}

#[tokio::main]
async fn main() {
    let data = Data::from_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.redb");
    let written = Instant::now();
    let file = path.clone();
    tokio::task::spawn_blocking(move || write_store(&file, data))
        .await
        .unwrap();
    println!(
        "data: {} workspace + {} user cutoffs over {} workspaces; preserved session on {} (written in {:.1?})",
        data.count,
        data.count,
        support::bulk::USER_WORKSPACES,
        data.preserved(),
        written.elapsed()
    );
    embedded(&path, data).await;
    let redis = support::redis_server().start().await;
    if let Some(redis) = &redis {
        fill_redis(redis, data).await;
        in_process(data, "redis", redis_store(&redis.url())).await;
    }
    binary(&path, redis.as_ref(), data).await;
}

async fn embedded(path: &Path, data: Data) {
    let config = StoreConfig::Embedded {
        path: path.to_path_buf(),
    };
    let store = async { Store::open(&config, Outbox::default()).await.unwrap() };
    in_process(data, "embedded", store).await;
}

/// Loads `store` into a fresh table here and prints what it took.
async fn in_process(data: Data, name: &str, store: impl Future<Output = Store>) {
    let empty = Sessions::new(&mut sessiongate::ops::registry());
    let started = Instant::now();
    let store = store.await;
    let sessions = Sessions::new(&mut sessiongate::ops::registry());
    load(&sessions, &store).await;
    let load_time = started.elapsed();
    println!("{name}, in process:");
    println!("  load (open + read + into memory): {load_time:.2?}");
    // Growth here would count memory the bulk write (and an earlier run) freed and this
    // load reused: RSS per cutoff comes from the binary below.
    println!(
        "  RSS of this process once loaded: {} MiB",
        rss_kib() / 1024
    );
    let (empty_ns, loaded_ns) = (check_ns(&empty, data), check_ns(&sessions, data));
    println!(
        "  session check per request: empty table {empty_ns:.0} ns, loaded {loaded_ns:.0} ns ({:.2}x)",
        loaded_ns / empty_ns
    );
}

/// A local store loads once; a shared one loads through its sync task, as in `serve`.
async fn load(sessions: &Sessions, store: &Store) {
    let Some(shared) = store.shared() else {
        sessions.load(store).await.unwrap();
        return;
    };
    let sync = sessiongate::sessions::keep_in_sync(sessions, shared);
    let loaded = async {
        while !sessions.is_loaded() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        () = sync => unreachable!("the sync task runs until dropped"),
        () = loaded => {}
    }
}

async fn redis_store(url: &str) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "bench-secret-bench-secret-bench-secret").unwrap();
    let text = format!(
        "upstream.url = \"http://127.0.0.1:9\"\njwt.algorithms = [\"HS256\"]\n\
         store.backend = \"redis\"\nstore.redis_url = \"{url}\"\n\
         [[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
        secret.display()
    );
    let config = Config::from_toml(&text, &[]).unwrap();
    Store::open(&config.store, Outbox::default()).await.unwrap()
}

/// The real binary on each store: time to ready and VmRSS once ready, against an
/// instance without cutoffs.
async fn binary(path: &Path, redis: Option<&support::RedisServer>, data: Data) {
    let upstream = support::upstream().await;
    let (empty, _) = serve(support::gateway(&upstream)).await;
    let empty_kib = status_kib(empty.pid(), "VmRSS:");
    println!(
        "binary (sessiongate serve): {} MiB RSS with no cutoffs",
        empty_kib / 1024
    );
    let embedded = support::gateway(&upstream);
    std::fs::hard_link(path, embedded.dir().join("store.redb")).unwrap();
    run_binary("embedded", embedded, None, empty_kib, data).await;
    if let Some(redis) = redis {
        let resync = format!("store.resync_secs = {RESYNC_SECS}");
        let gateway = support::gateway(&upstream).redis(redis).set(&resync);
        run_binary("redis", gateway, Some(redis), empty_kib, data).await;
    }
}

/// Starts `gateway` (on `redis`, if given) and prints what it took to be ready, and after.
async fn run_binary(
    name: &str,
    gateway: support::GatewayBuilder,
    redis: Option<&support::RedisServer>,
    empty_kib: i64,
    data: Data,
) {
    let redis_before = match redis {
        Some(redis) => redis_cpu_secs(redis).await,
        None => 0.0,
    };
    let (gw, ready) = serve(gateway).await;
    let kib = status_kib(gw.pid(), "VmRSS:");
    println!(
        "  {name}: ready {ready:.2?} after spawn; RSS {} MiB once ready ({} bytes per cutoff over the empty instance)",
        kib / 1024,
        (kib - empty_kib) * 1024 / (2 * data.count) as i64
    );
    // Where a load's time goes: with 2 cores, a Redis load is bound by both processes'
    // CPU, not by the wall clock of either.
    let mut cpu = format!("gateway {:.2}s (all threads)", cpu_secs(gw.pid()));
    if let Some(redis) = redis {
        let spent = redis_cpu_secs(redis).await - redis_before;
        cpu.push_str(&format!(", redis-server {spent:.2}s"));
    }
    println!("    CPU until ready: {cpu}");
    println!(
        "    RSS after {SERVED} requests: {} MiB",
        served_rss_kib(&gw).await / 1024
    );
    if let Some(redis) = redis {
        resync_cost(&gw, redis).await;
    }
}

/// Waits for `gw`'s first periodic resync and prints what it cost.
async fn resync_cost(gw: &support::Gateway, redis: &support::RedisServer) {
    let (gateway_cpu, redis_cpu) = (cpu_secs(gw.pid()), redis_cpu_secs(redis).await);
    while gw.metric("sessiongate_store_resyncs_total").await < 2.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "    its first periodic resync: CPU gateway {:.2}s, redis-server {:.2}s; RSS {} MiB after it",
        cpu_secs(gw.pid()) - gateway_cpu,
        redis_cpu_secs(redis).await - redis_cpu,
        status_kib(gw.pid(), "VmRSS:") / 1024
    );
}

/// Long enough for the load and `SERVED` requests to end before the first periodic
/// resync starts.
const RESYNC_SECS: u64 = 15;

/// Requests served before the second RSS reading.
const SERVED: usize = 2000;

/// RSS once the instance has served `SERVED` requests. mimalloc returns a freed page to
/// the OS on a later allocation by the thread that owns it: what a load freed stays
/// resident until that thread allocates again, which serving usually (not always) makes
/// it do.
async fn served_rss_kib(gw: &support::Gateway) -> i64 {
    for _ in 0..SERVED {
        assert_eq!(gw.ops_get("/metrics").await.status(), 200);
    }
    status_kib(gw.pid(), "VmRSS:")
}

/// User + system CPU of `pid` so far, all threads (`/proc/<pid>/stat`, in USER_HZ ticks:
/// 100 a second on Linux).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces, in its parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// redis-server's own CPU so far (`INFO cpu`).
async fn redis_cpu_secs(redis: &support::RedisServer) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    let field = |name: &str| -> f64 {
        let line = info.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_once(':').unwrap().1.trim().parse().unwrap()
    };
    field("used_cpu_sys:") + field("used_cpu_user:")
}

/// Starts `gateway`; returns it once `/readyz` answers 200, and the time that took.
async fn serve(gateway: support::GatewayBuilder) -> (support::Gateway, Duration) {
    let started = Instant::now();
    let gw = gateway.start().await;
    while gw.ops_get("/readyz").await.status() != 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (gw, started.elapsed())
}

fn write_store(path: &Path, data: Data) {
    support::bulk::write_store(path, data.count, |i| {
        let (workspace, user) = data.cutoffs(i);
        let json = |cutoff| serde_json::to_vec(&cutoff).unwrap();
        (json(workspace), json(user))
    });
}

/// `HSET`s of 1000 fields, 20 to a pipeline, in the Redis store's layout
/// (src/store/redis.rs): `P workspaces` by name, `P users` by the JSON pair.
async fn fill_redis(redis: &support::RedisServer, data: Data) {
    let started = Instant::now();
    let mut conn = redis.connection().await;
    for first in (0..data.count).step_by(10_000) {
        let mut pipe = redis::pipe();
        for start in (first..data.count.min(first + 10_000)).step_by(1000) {
            let (mut workspaces, mut users) = (redis::cmd("HSET"), redis::cmd("HSET"));
            workspaces.arg("sessiongate:workspaces");
            users.arg("sessiongate:users");
            for i in start..data.count.min(start + 1000) {
                let (workspace, user) = data.cutoffs(i);
                let json = |cutoff| serde_json::to_string(&cutoff).unwrap();
                workspaces.arg(format!("ws-{i}")).arg(json(workspace));
                let field = serde_json::to_string(&support::bulk::names(i)).unwrap();
                users.arg(field).arg(json(user));
            }
            pipe.add_command(workspaces).ignore();
            pipe.add_command(users).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    println!(
        "redis: the same cutoffs written in {:.1?} (pipelined HSET)",
        started.elapsed()
    );
}

/// Median ns of `Sessions::check` for tokens spread over the workspaces and users.
fn check_ns(sessions: &Sessions, data: Data) -> f64 {
    let tokens: Vec<Token> = (0..1024).map(|i| token(i * 977 % data.count)).collect();
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

// === impl Data ===

impl Data {
    fn from_env() -> Self {
        let count = std::env::var("SCALE")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let users_preserve = match std::env::var("PRESERVED").as_deref() {
            Ok("workspaces") => false,
            Ok("all") | Err(_) => true,
            Ok(other) => panic!("PRESERVED={other}: all or workspaces"),
        };
        Self {
            count,
            users_preserve,
        }
    }

    fn preserved(&self) -> &'static str {
        match self.users_preserve {
            true => "every cutoff (worst case)",
            false => "workspace cutoffs only (realistic mix)",
        }
    }

    /// Cutoff `i` of the workspaces and of the users.
    fn cutoffs(&self, i: usize) -> (Cutoff, Cutoff) {
        let preserved = Preserved {
            session_id: format!("jti:admin-{i}"),
            expires_at: 2_000_000_000.0,
        };
        let workspace = Cutoff {
            valid_after: 1_795_000_000 + i as i64 % 1000,
            preserved: Some(preserved),
            version: VERSION,
        };
        let mut user = workspace.clone();
        if !self.users_preserve {
            user.preserved = None;
        }
        (workspace, user)
    }
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
    let (workspace, user) = support::bulk::names(i);
    Token {
        workspace,
        user,
        id: format!("jti:token-{i}"),
    }
}

fn rss_kib() -> i64 {
    status_kib(std::process::id(), "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
