//! SPEC section 6, high availability, with faults injected into real processes: a Redis
//! primary killed right after a 200 (Sentinel promotes a replica, the fleet follows it
//! and loses no acknowledged logout), replicas that do not acknowledge
//! (`store.redis_min_replicas`: 503, never reported as done), and a Redis that lost its
//! data (the fleet writes back what it holds).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::ha::{Ha, online_replicas, replication_info};
use support::{Gateway, admin, gateway, now, redis_server, token, until, upstream};

/// Ten seconds before the first call (the tests' start): earlier than any cutoff a
/// logout in these tests sets, however long they take.
fn earlier() -> f64 {
    static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *START.get_or_init(|| now().floor() - 10.0)
}

/// A logout-all of `workspace` on `gw`: status and answer.
async fn logout_all(gw: &Gateway, workspace: &str) -> (u16, Value) {
    let root = admin("root", workspace).iat(now()).sign();
    let rsp = gw.logout_all(workspace, &root).await;
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap())
}

/// Whether `gw` refuses a token of `workspace` issued before every logout of these tests.
async fn refuses_old_sessions(gw: &Gateway, workspace: &str) -> bool {
    let alice = token()
        .sub("alice")
        .workspace(workspace)
        .iat(earlier())
        .sign();
    gw.status_with("/app", &alice).await == 401
}

async fn store_status(gw: &Gateway) -> String {
    let answer: Value = gw.ops_get("/readyz").await.json().await.unwrap();
    answer["store"].as_str().unwrap_or_default().to_string()
}

/// The cutoffs (`valid_after`) of every workspace in the Redis on `port`.
async fn stored_workspaces(port: u16) -> Option<Vec<(String, i64)>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let hash: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("sessiongate:workspaces")
        .query_async(&mut conn)
        .await
        .ok()?;
    let mut cutoffs: Vec<(String, i64)> = hash
        .into_iter()
        .map(|(workspace, cutoff)| {
            let cutoff: Value = serde_json::from_str(&cutoff).unwrap();
            (workspace, cutoff["valid_after"].as_i64().unwrap())
        })
        .collect();
    cutoffs.sort();
    Some(cutoffs)
}

/// Logs out `workspaces` alternately on each gateway; the cutoffs acknowledged, sorted.
async fn logouts(gws: &[Gateway], workspaces: &[String]) -> Vec<(String, i64)> {
    let mut acknowledged = Vec::new();
    for (i, workspace) in workspaces.iter().enumerate() {
        let (status, answer) = logout_all(&gws[i % gws.len()], workspace).await;
        assert_eq!(status, 200, "{answer}");
        let cutoff = answer["sessions_valid_after"].as_i64().unwrap();
        acknowledged.push((workspace.clone(), cutoff));
    }
    acknowledged.sort();
    acknowledged
}

/// Polls a logout on `gw` until it is answered 200 (the link may still be switching).
async fn until_logout_succeeds(gw: &Gateway, workspace: &str) -> Duration {
    until("a new logout succeeds", Duration::from_secs(30), || async {
        logout_all(gw, workspace).await.0 == 200
    })
    .await
}

// ============================================================================
// Sentinel failover
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_failover_loses_no_acknowledged_logout_and_the_fleet_follows() {
    let Some(mut ha) = Ha::start(2, 3).await else {
        return;
    };
    let upstream = upstream().await;
    let gws = ha.fleet(&upstream, 2).await;
    let workspaces: Vec<String> = (0..12).map(|i| format!("ws-{i}")).collect();
    let acknowledged = logouts(&gws, &workspaces).await;
    // The primary dies right after the last 200: replication may not have carried it.
    let old = ha.primary.port;
    ha.primary.kill();

    until(
        "degraded during the switch",
        Duration::from_secs(10),
        || async { store_status(&gws[0]).await == "degraded" },
    )
    .await;
    let promoted = until_promoted(&ha, old).await;
    for gw in &gws {
        until(
            "the new primary is followed",
            Duration::from_secs(30),
            || async { store_status(gw).await == "loaded" },
        )
        .await;
        // At least one: a loaded machine can make the Sentinels fail over once more.
        let changes = gw.metric("sessiongate_store_primary_changes_total").await;
        assert!(changes >= 1.0, "{}", gw.logs());
        for (workspace, _) in &acknowledged {
            assert!(refuses_old_sessions(gw, workspace).await, "{workspace}");
        }
    }
    // Whatever the promoted replica missed, the fleet wrote back.
    until(
        "every cutoff on the new primary",
        Duration::from_secs(10),
        || async {
            stored_workspaces(promoted).await.is_some_and(|stored| {
                acknowledged
                    .iter()
                    .all(|(ws, cutoff)| stored.iter().any(|(s, c)| s == ws && c >= cutoff))
            })
        },
    )
    .await;
    for (i, gw) in gws.iter().enumerate() {
        let workspace = format!("after-{i}");
        until_logout_succeeds(gw, &workspace).await;
        let other = &gws[1 - i];
        until(
            "the new logout reaches the other instance",
            Duration::from_secs(5),
            || refuses_old_sessions(other, &workspace),
        )
        .await;
    }
}

/// Waits until the Sentinels name a primary other than `old`; its port.
async fn until_promoted(ha: &Ha, old: u16) -> u16 {
    until("a replica promoted", Duration::from_secs(30), || async {
        ha.primary_port().await.is_some_and(|port| port != old)
    })
    .await;
    ha.primary_port().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_demoted_under_the_fleet_is_noticed_and_left() {
    let Some(ha) = Ha::start(1, 3).await else {
        return;
    };
    let upstream = upstream().await;
    let gw = gateway(&upstream).sentinels(&ha).start().await;
    assert_eq!(logout_all(&gw, "before").await.0, 200);
    // A graceful switch: the old primary lives on as a replica and still answers.
    let mut sentinel = ha.sentinels[0].connection().await.unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(support::ha::MASTER_NAME)
        .query_async(&mut sentinel)
        .await
        .unwrap();
    let promoted = until_promoted(&ha, ha.primary.port).await;
    // Sentinel demotes the old primary a moment after the promotion; `ROLE` tells.
    until("the demotion noticed", Duration::from_secs(30), || async {
        gw.metric("sessiongate_store_primary_changes_total").await >= 1.0
    })
    .await;
    until_logout_succeeds(&gw, "after").await;
    let stored = stored_workspaces(promoted).await.unwrap();
    assert!(stored.iter().any(|(ws, _)| ws == "after"), "{stored:?}");
    assert!(refuses_old_sessions(&gw, "before").await);
}

// ============================================================================
// redis_min_replicas
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn min_replicas_answers_503_while_no_replica_acknowledges() {
    let Some(primary) = redis_server().start().await else {
        return;
    };
    let Some(mut replica) = redis_server().replica_of(primary.port).start().await else {
        return;
    };
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .redis(&primary)
        .set("store.redis_min_replicas = 1")
        .set("store.redis_wait_timeout_ms = 200")
        .start()
        .await;
    until_linked(primary.port, 1).await;
    let (status, answer) = logout_all(&gw, "acked").await;
    assert_eq!(status, 200, "{answer}\n{}", gw.logs());

    replica.kill();
    until_linked(primary.port, 0).await;
    let (status, answer) = logout_all(&gw, "unacked").await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    assert!(
        answer.get("audit_id").is_none(),
        "not reported as done: {answer}"
    );
    assert_eq!(
        gw.metric("sessiongate_store_unreplicated_commits_total")
            .await,
        1.0
    );
    // It may be in force already (SPEC section 6): memory never holds less than the store.
    assert!(refuses_old_sessions(&gw, "unacked").await);

    assert!(replica.restart().await);
    until_linked(primary.port, 1).await;
    until_logout_succeeds(&gw, "again").await;
    assert_eq!(
        gw.metric("sessiongate_store_unreplicated_commits_total")
            .await,
        1.0
    );
}

async fn until_linked(primary: u16, replicas: usize) {
    until("replicas linked", Duration::from_secs(20), || async move {
        replication_info(primary)
            .await
            .is_some_and(|info| online_replicas(&info) == replicas)
    })
    .await;
}

// ============================================================================
// A Redis that lost its data
// ============================================================================

/// Subject-wide cutoffs and revoked sids come from identity-provider signals; written
/// here straight into Redis, as a commit would have left them.
async fn write_signal_records(redis: &support::RedisServer, cutoff: i64) {
    let mut conn = redis.connection().await;
    let expires = cutoff + 3600;
    let _: () = redis::pipe()
        .hset(
            "sessiongate:subjects",
            "bob@example.com",
            format!(r#"{{"valid_after":{cutoff},"preserved":null,"version":7}}"#),
        )
        .hset(
            "sessiongate:sids",
            r#"[null,"sid-1"]"#,
            format!(r#"{{"expires_at":{expires},"version":3}}"#),
        )
        .zadd("sessiongate:sids:expiry", r#"[null,"sid-1"]"#, expires)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn hash_fields(redis: &support::RedisServer, hash: &str) -> Vec<String> {
    let mut conn = redis.connection().await;
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(hash)
        .query_async(&mut conn)
        .await
        .unwrap();
    fields.sort();
    fields
}

/// What a fresh instance refuses: old sessions of each workspace, bob everywhere, sid-1.
async fn enforces_everything(gw: &Gateway, acknowledged: &[(String, i64)]) -> bool {
    let bob = token()
        .sub("bob@example.com")
        .workspace("elsewhere")
        .iat(earlier())
        .sign();
    let sid = token()
        .sub("carol")
        .workspace("elsewhere")
        .claim("sid", "sid-1".into())
        .sign();
    for (workspace, _) in acknowledged {
        if !refuses_old_sessions(gw, workspace).await {
            return false;
        }
    }
    gw.status_with("/app", &bob).await == 401 && gw.status_with("/app", &sid).await == 401
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flushed_redis_heals_from_the_running_fleet() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let start = || {
        gateway(&upstream)
            .redis(&redis)
            .set("store.resync_secs = 1")
            .start()
    };
    let gws = [start().await, start().await];
    let workspaces: Vec<String> = (0..6).map(|i| format!("team-{i}")).collect();
    let acknowledged = logouts(&gws, &workspaces).await;
    // A user cutoff too: a resync marks each table's entries apart.
    let root = admin("root", "staff").iat(now()).sign();
    let rsp = gws[1]
        .admin_post("workspaces/staff/users/dave/logout", &root)
        .await;
    assert_eq!(rsp.status(), 200);
    let carol = admin("carol", "policied").sign();
    let policy = serde_json::json!({"max_session_age_secs": 3600});
    let rsp = gws[1]
        .put_policy("policied", &carol, &policy)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    write_signal_records(&redis, now().floor() as i64).await;
    for gw in &gws {
        until("signal records loaded", Duration::from_secs(5), || {
            enforces_everything(gw, &acknowledged)
        })
        .await;
    }
    // A resync of a store that lacks nothing writes nothing back.
    for gw in &gws {
        let resyncs = gw.metric("sessiongate_store_resyncs_total").await;
        until(
            "a resync after everything loaded",
            Duration::from_secs(5),
            || async { gw.metric("sessiongate_store_resyncs_total").await > resyncs },
        )
        .await;
        let restored = gw.metric("sessiongate_store_restored_records_total");
        assert_eq!(restored.await, 0.0);
    }

    let mut conn = redis.connection().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    until(
        "every cutoff back in Redis",
        Duration::from_secs(10),
        || async {
            stored_workspaces(redis.port)
                .await
                .is_some_and(|stored| stored == acknowledged)
        },
    )
    .await;
    until(
        "the user cutoff back in Redis",
        Duration::from_secs(5),
        || async { hash_fields(&redis, "sessiongate:users").await == [r#"["staff","dave"]"#] },
    )
    .await;
    assert_eq!(
        hash_fields(&redis, "sessiongate:subjects").await,
        ["bob@example.com"]
    );
    assert_eq!(
        hash_fields(&redis, "sessiongate:sids").await,
        [r#"[null,"sid-1"]"#]
    );
    let policies = hash_fields(&redis, "sessiongate:policies").await;
    assert_eq!(policies, ["policied"]);
    let restored: f64 = gws[0]
        .metric("sessiongate_store_restored_records_total")
        .await
        + gws[1]
            .metric("sessiongate_store_restored_records_total")
            .await;
    assert!(restored >= 9.0, "{restored}");

    let fresh = start().await;
    assert!(enforces_everything(&fresh, &acknowledged).await);
    let policy = fresh.admin_get("workspaces/policied/policy", &carol).await;
    assert_eq!(policy["max_session_age_secs"], 3600, "{policy}");
    assert_eq!(
        fresh
            .metric("sessiongate_store_restored_records_total")
            .await,
        0.0
    );
}
