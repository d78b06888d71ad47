//! Benchmark (not a test) of the Redis store, against real processes:
//!
//! 1. propagation: 200 logout-alls spread over 3 gateway instances on one Redis; for each,
//!    the time from sending it until each of the two other instances refuses a token it
//!    invalidated (p50, p99, max);
//! 2. scale: 1,000,000 workspace cutoffs written to Redis by pipelined `HSET`s, then one
//!    instance started on them: time to `ready`, resident memory, and the CPU a full
//!    resync costs (with the per-call cost on the Redis side from `INFO commandstats`),
//!    and propagation to that instance while it resyncs back to back.
//!
//! `cargo bench --bench redis_propagation` (release build; needs redis-server).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Gateway, admin, gateway, now, redis_server, summary, token, upstream};

const LOGOUTS: usize = 200;
const INSTANCES: usize = 3;
const WORKSPACES: usize = 1_000_000;
/// Logout-alls sent while the 1M-cutoff instance resyncs back to back.
const DURING_RESYNC: usize = 50;

#[tokio::main]
async fn main() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    propagation(&redis).await;
    let Some(redis) = redis_server().start().await else {
        return;
    };
    scale(&redis).await;
}

async fn propagation(redis: &support::RedisServer) {
    let upstream = upstream().await;
    let mut gws = Vec::new();
    for _ in 0..INSTANCES {
        gws.push(gateway(&upstream).redis(redis).start().await);
    }
    let mut delays = Vec::new();
    let mut answers = Vec::new();
    let t0 = now().floor() - 10.0;
    for round in 0..LOGOUTS {
        let workspace = format!("bench-{round}");
        let root = admin("root", &workspace).iat(t0).sign();
        let user = token().sub("u").workspace(&workspace).iat(t0).sign();
        let origin = round % INSTANCES;
        let sent = Instant::now();
        let rsp = gws[origin].logout_all(&workspace, &root).await;
        assert_eq!(rsp.status(), 200);
        answers.push(sent.elapsed());
        let others = gws
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != origin)
            .map(|(_, gw)| refused_after(gw, &user, sent));
        delays.extend(futures_util::future::join_all(others).await);
    }
    println!("propagation: {LOGOUTS} logout-alls over {INSTANCES} instances");
    println!(
        "  logout-all answered (commit + publish): {}",
        summary(&mut answers)
    );
    println!(
        "  enforced by the other instances, from sending: {}",
        summary(&mut delays)
    );
}

/// Polls `gw` until it refuses `jwt`; the time since `sent`.
async fn refused_after(gw: &Gateway, jwt: &str, sent: Instant) -> Duration {
    while gw.status_with("/app", jwt).await != 401 {
        assert!(sent.elapsed() < Duration::from_secs(5), "never propagated");
    }
    sent.elapsed()
}

async fn scale(redis: &support::RedisServer) {
    let written = Instant::now();
    fill(redis).await;
    let mut conn = redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_human:"))
        .unwrap_or("?");
    println!(
        "scale: {WORKSPACES} workspace cutoffs written in {:.2?} (pipelined HSET); Redis used_memory {used}",
        written.elapsed()
    );

    let upstream = upstream().await;
    let empty = redis_server()
        .start()
        .await
        .expect("redis-server ran above");
    let baseline = gateway(&upstream).redis(&empty).start().await;
    let started = Instant::now();
    let gw = gateway(&upstream)
        .redis(redis)
        .set("store.resync_secs = 2")
        .start()
        .await;
    let ready = started.elapsed();
    assert!(gw.logs().contains(&format!("\"cutoffs\":{WORKSPACES}")));
    println!("  start to ready (process start + full load): {ready:.2?}");
    println!(
        "  RSS: {} MiB with {WORKSPACES} cutoffs (peak {} MiB); {} MiB with none",
        memory(&gw, "VmRSS"),
        memory(&gw, "VmHWM"),
        memory(&baseline, "VmRSS")
    );
    // resync_secs = 2: a resync starts every 2 s, or as soon as the previous one ends.
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (cpu_before, resyncs_before) = (cpu_seconds(&gw), resyncs(&gw).await);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let resyncs = resyncs(&gw).await - resyncs_before;
    let cpu = cpu_seconds(&gw) - cpu_before;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    // cmdstat_hscan:calls=N,usec=U,...
    let hscan_usec: f64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_hscan:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("usec=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "  full resyncs of {WORKSPACES} cutoffs: {resyncs} in {:.0?}; CPU per resync: gateway {:.2} s, Redis (HSCAN) {:.2} s",
        window.elapsed(),
        cpu / resyncs,
        hscan_usec / 1e6 / resyncs
    );

    // Changes published while that instance is busy resyncing still arrive at once.
    let origin = gateway(&upstream).redis(redis).start().await;
    let t0 = now().floor() - 10.0;
    let mut delays = Vec::new();
    for round in 0..DURING_RESYNC {
        let workspace = format!("ws-{round:07}");
        let root = admin("root", &workspace).iat(t0).sign();
        let user = token().sub("u").workspace(&workspace).iat(t0).sign();
        let sent = Instant::now();
        assert_eq!(origin.logout_all(&workspace, &root).await.status(), 200);
        delays.push(refused_after(&gw, &user, sent).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  {DURING_RESYNC} logout-alls enforced by the resyncing instance: {}",
        summary(&mut delays)
    );
}

/// `sessiongate_store_resyncs_total` so far.
async fn resyncs(gw: &Gateway) -> f64 {
    let text = gw.ops_get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sessiongate_store_resyncs_total "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// One `HSET` of 1000 fields per command, 100 commands per pipeline. Every cutoff keeps a
/// preserved session, as a logout-all leaves it.
async fn fill(redis: &support::RedisServer) {
    let mut conn = redis.connection().await;
    let valid_after = now() as i64;
    for batch in 0..WORKSPACES / 100_000 {
        let mut pipe = redis::pipe();
        for command in 0..100 {
            let mut hset = redis::cmd("HSET");
            hset.arg("sessiongate:workspaces");
            for field in 0..1000 {
                let n = batch * 100_000 + command * 1000 + field;
                hset.arg(format!("ws-{n:07}")).arg(format!(
                    r#"{{"valid_after":{valid_after},"preserved":{{"session_id":"jti:admin-{n:07}","expires_at":{}}},"version":1}}"#,
                    valid_after + 3600
                ));
            }
            pipe.add_command(hset).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
}

/// A `/proc/<pid>/status` memory line, in MiB.
fn memory(gw: &Gateway, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// User + system CPU time of the process so far.
fn cpu_seconds(gw: &Gateway) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", gw.pid())).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}
