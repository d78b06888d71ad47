//! Benchmark (not a test) of high availability, against real processes:
//!
//! 1. what `store.redis_min_replicas` costs: logout-all latency on one primary with one
//!    replica, with 0 (answer once the primary has it) and 1 (`WAIT` for the replica),
//!    interleaved (p50, p99, max);
//! 2. failover timings over a few runs (1 primary, 2 replicas, 3 Sentinels with
//!    down-after-milliseconds 1000, 2 gateways): primary SIGKILLed -> a replica promoted,
//!    and -> the first logout answered 200 by each gateway.
//!
//! `cargo bench --bench replication` (release build; needs redis-server).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::ha::{Ha, online_replicas, replication_info};
use support::{Gateway, admin, gateway, redis_server, summary, upstream};

const LOGOUTS: usize = 300;
const FAILOVERS: usize = 3;

#[tokio::main]
async fn main() {
    latency().await;
    failovers().await;
}

async fn logout(gw: &Gateway, workspace: &str) -> u16 {
    let root = admin("root", workspace).sign();
    gw.logout_all(workspace, &root).await.status().as_u16()
}

async fn latency() {
    let Some(primary) = redis_server().start().await else {
        return;
    };
    let _replica = redis_server().replica_of(primary.port).start().await;
    while replication_info(primary.port)
        .await
        .is_none_or(|info| online_replicas(&info) != 1)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upstream = upstream().await;
    let plain = gateway(&upstream).redis(&primary).start().await;
    let waiting = gateway(&upstream)
        .redis(&primary)
        .set("store.redis_min_replicas = 1")
        .start()
        .await;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..LOGOUTS {
        for (i, (gw, samples)) in [(&plain, &mut without), (&waiting, &mut with)]
            .into_iter()
            .enumerate()
        {
            // One workspace each: a second logout-all of it in the same second would
            // refuse the (new) admin token as issued before the first one's cutoff.
            let sent = Instant::now();
            assert_eq!(logout(gw, &format!("ws-{round}-{i}")).await, 200);
            samples.push(sent.elapsed());
        }
    }
    println!("logout-all latency, one primary and one replica on this machine:");
    println!("  redis_min_replicas = 0: {}", summary(&mut without));
    println!("  redis_min_replicas = 1: {}", summary(&mut with));
}

async fn failovers() {
    let (mut promotions, mut recoveries) = (Vec::new(), Vec::new());
    for run in 0..FAILOVERS {
        let Some(mut ha) = Ha::start(2, 3).await else {
            return;
        };
        let upstream = upstream().await;
        let gws = ha.fleet(&upstream, 2).await;
        assert_eq!(logout(&gws[0], "before").await, 200);
        let old = ha.primary.port;
        let killed = Instant::now();
        ha.primary.kill();
        while ha.primary_port().await.is_none_or(|port| port == old) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        promotions.push(killed.elapsed());
        for (i, gw) in gws.iter().enumerate() {
            while logout(gw, &format!("after-{run}-{i}")).await != 200 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            recoveries.push(killed.elapsed());
        }
    }
    println!("failover ({FAILOVERS} runs, down-after-milliseconds 1000):");
    println!(
        "  kill -9 -> replica promoted:  {}",
        summary(&mut promotions)
    );
    println!(
        "  kill -9 -> first logout 200:  {}",
        summary(&mut recoveries)
    );
}
