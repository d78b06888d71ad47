//! SPEC section 6, `store.backend = "redis"`: a fleet of real gateway processes sharing
//! real `redis-server` processes (started here on free ports, killed at the end).
//!
//! Changes reach every instance by pub/sub within a second; a lost link is healed by
//! reconnect and resync; Redis going away leaves enforcement on the cutoffs in memory while
//! logouts answer 503; an instance that never loaded fails closed.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessiongate::config::Config;
use sessiongate::store::{CutoffCounts, Outbox, Store};
use support::{
    Gateway, Relay, Upstream, admin, gateway, now, redis_server, token, until, upstream,
};

// ============================================================================
// Helpers
// ============================================================================

/// The cutoffs `redis` holds, by table, as a load reads them.
async fn stored_counts(redis: &support::RedisServer) -> CutoffCounts {
    let text = format!(
        "upstream.url = \"http://127.0.0.1:9\"\njwt.algorithms = [\"HS256\"]\n\
         store.backend = \"redis\"\nstore.redis_url = \"{}\"\n\
         [[jwt.keys]]\nhmac_secret_env = \"S\"\n",
        redis.url()
    );
    let config = Config::from_toml(&text, &[]).unwrap();
    let store = Store::open(&config.store, Outbox::default()).await.unwrap();
    let shared = store.shared().expect("a Redis store");
    shared.connect().await.unwrap();
    store.cutoff_counts().await.unwrap()
}

/// Logs workspace `acme` out through `gw` as its admin `root`: returns root's token (the
/// preserved session) and a token of alice's from before the cutoff.
async fn acme_logged_out_by_root(gw: &Gateway) -> (String, String) {
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    assert_eq!(logout(gw, "workspaces/acme/logout-all", &root).await.0, 200);
    (root, alice)
}

/// Ten seconds ago: earlier than any cutoff a logout in these tests sets.
fn earlier() -> f64 {
    now().floor() - 10.0
}

/// `n` gateways in front of `upstream`, all on `redis`.
async fn fleet(upstream: &Upstream, redis: &support::RedisServer, n: usize) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(gateway(upstream).redis(redis).start().await);
    }
    gateways
}

/// Status and JSON body of `GET /app` with `jwt`.
async fn outcome(gw: &Gateway, jwt: &str) -> (u16, Value) {
    let rsp = gw.get("/app").bearer_auth(jwt).send().await.unwrap();
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap())
}

/// A logout `POST` under `/_sessiongate/v1/`: status and JSON answer.
async fn logout(gw: &Gateway, path: &str, jwt: &str) -> (u16, Value) {
    let rsp = gw.admin_post(path, jwt).await;
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap())
}

async fn readyz(gw: &Gateway) -> (u16, Value) {
    let rsp = gw.ops_get("/readyz").await;
    (rsp.status().as_u16(), rsp.json().await.unwrap())
}

/// Waits until `gw`'s `/readyz` says `"store": store`.
async fn store_becomes(gw: &Gateway, store: &str, limit: Duration) {
    until(&format!("store {store}"), limit, || async {
        readyz(gw).await.1["store"] == store
    })
    .await;
}

async fn refuses(gw: &Gateway, jwt: &str) -> bool {
    gw.status_with("/app", jwt).await == 401
}

fn refused(reason: &str) -> (u16, Value) {
    (401, json!({"error": "invalid_token", "reason": reason}))
}

fn accepted() -> (u16, Value) {
    (200, json!({"ok": true, "body_len": 0}))
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = gw.ops_get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Every key in the Redis database.
async fn redis_keys(redis: &support::RedisServer) -> Vec<String> {
    let mut conn = redis.connection().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

// ============================================================================
// Propagation
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_on_one_instance_is_enforced_by_the_others_within_a_second() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let gws = fleet(&upstream, &redis, 3).await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    for gw in &gws {
        assert_eq!(outcome(gw, &alice).await, accepted());
    }

    let sent = Instant::now();
    let (status, answer) = logout(&gws[0], "workspaces/acme/logout-all", &root).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["instances_notified"], 3, "{answer}");
    for (i, gw) in gws.iter().enumerate().skip(1) {
        until("cutoff propagated", Duration::from_secs(5), || {
            refuses(gw, &alice)
        })
        .await;
        let delay = sent.elapsed();
        println!("instance {i} enforces the logout-all {delay:?} after it was sent");
        assert!(delay < Duration::from_secs(1), "instance {i}: {delay:?}");
        assert_eq!(outcome(gw, &alice).await, refused("session_invalidated"));
        assert_eq!(outcome(gw, &root).await, accepted(), "caller kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_on_another_instance_is_cut_within_a_second_of_logout_all() {
    const ENDLESS: usize = 1 << 40;
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let gws = fleet(&upstream, &redis, 2).await;
    let root = admin("root", "acme").sign();
    let mut download = gws[1]
        .get(&format!("/download/{ENDLESS}"))
        .bearer_auth(token().sub("alice").workspace("acme").sign())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut received = download.chunk().await.unwrap().unwrap().len();

    assert_eq!(
        logout(&gws[0], "workspaces/acme/logout-all", &root).await.0,
        200
    );
    let answered = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = download.chunk().await {
            received += chunk.len();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        answered.elapsed()
    })
    .await
    .expect("the download of a logged-out session still runs 5 s later");
    println!("download on the other instance cut {cut:?} after the logout-all's 200");
    assert!(cut < Duration::from_secs(1), "{cut:?}");
    assert!(received < ENDLESS);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_notified_counts_the_running_instances() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let boss = admin("boss", "acme").sign();
    let mut gws = Vec::new();
    for running in 1..=3u64 {
        gws.push(gateway(&upstream).redis(&redis).start().await);
        let (status, answer) = logout(&gws[0], "workspaces/acme/logout-all", &boss).await;
        assert_eq!(
            (status, &answer["instances_notified"]),
            (200, &json!(running))
        );
    }
    let (_, answer) = logout(&gws[1], "workspaces/acme/users/bob/logout", &boss).await;
    assert_eq!(answer["instances_notified"], 3, "user logout: {answer}");
    let (_, answer) = logout(&gws[2], "me/logout-others", &boss).await;
    assert_eq!(answer["instances_notified"], 3, "logout-others: {answer}");

    gws.pop().unwrap().kill9();
    let (_, answer) = logout(&gws[0], "workspaces/acme/logout-all", &boss).await;
    assert_eq!(
        answer["instances_notified"], 2,
        "after one stopped: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_logout_alls_end_with_the_same_highest_cutoff_everywhere() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    // The first instance proposes cutoffs two minutes ahead: the others' later, lower
    // proposals must not pull the stored cutoff back. The admins' tokens are issued
    // further ahead still (a generous leeway allows it), so no logout-all locks the other
    // admins out before they call.
    let mut gws = Vec::new();
    for margin in [120, 0, 0] {
        let gw = gateway(&upstream)
            .redis(&redis)
            .set(&format!("sessions.invalidation_margin_secs = {margin}"))
            .set("jwt.leeway_secs = 600")
            .start()
            .await;
        gws.push(gw);
    }
    let ahead = now().floor() + 300.0;
    let admins: Vec<String> = (0..30)
        .map(|i| admin(&format!("admin-{i}"), "acme").iat(ahead).sign())
        .collect();

    let calls = admins.iter().enumerate().map(|(i, jwt)| {
        let gw = &gws[i % gws.len()];
        async move { logout(gw, "workspaces/acme/logout-all", jwt).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let highest = answers
        .iter()
        .map(|(_, a)| a["sessions_valid_after"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(
        highest as f64 > now() + 100.0,
        "the margin instance's cutoff"
    );
    // One more, proposing now + 1, keeps the higher stored cutoff.
    let (status, answer) = logout(&gws[1], "workspaces/acme/logout-all", &admins[1]).await;
    assert_eq!(
        (status, &answer["sessions_valid_after"]),
        (200, &json!(highest))
    );

    // Newest first: in commit order the cutoff never went down.
    let audit = gws[1]
        .admin_get("workspaces/acme/audit?limit=1000", &admins[0])
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 31);
    let cutoffs: Vec<i64> = events
        .iter()
        .map(|e| e["sessions_valid_after"].as_i64().unwrap())
        .collect();
    assert!(cutoffs.windows(2).all(|w| w[0] >= w[1]), "{cutoffs:?}");
    assert_eq!(cutoffs[0], highest);

    // Every instance ends on the highest cutoff and the last committer's session.
    let last = events[0]["actor_session"].clone();
    let expected = json!({
        "workspace": "acme",
        "sessions_valid_after": highest,
        "preserved_session": last,
        "scheduled_logout": null,
    });
    for gw in &gws {
        until("same final cutoff", Duration::from_secs(2), || async {
            gw.admin_get("workspaces/acme/sessions", &admins[0]).await == expected
        })
        .await;
    }
}

// ============================================================================
// Restarts: the instance, and Redis
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_instance_loses_nothing_and_loads_before_ready() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let mut gws = fleet(&upstream, &redis, 2).await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let boss = admin("boss", "beta").iat(t0).sign();
    let bob = token().sub("bob").workspace("beta").iat(t0).sign();
    let carol_here = token().sub("carol").workspace("beta").iat(t0).sign();
    let carol_phone = token().sub("carol").workspace("beta").iat(t0).sign();
    for (path, jwt) in [
        ("workspaces/acme/logout-all", &root),
        ("workspaces/beta/users/bob/logout", &boss),
        ("me/logout-others", &carol_here),
    ] {
        assert_eq!(logout(&gws[0], path, jwt).await.0, 200, "{path}");
    }

    let restarted = gws.pop().unwrap().crash_and_restart().await;
    let newcomer = gateway(&upstream).redis(&redis).start().await;
    // No polling: `ready` means every cutoff is already in memory.
    for gw in [&restarted, &newcomer] {
        assert_eq!(outcome(gw, &alice).await, refused("session_invalidated"));
        assert_eq!(outcome(gw, &bob).await, refused("session_revoked"));
        assert_eq!(outcome(gw, &carol_phone).await, refused("session_revoked"));
        assert_eq!(outcome(gw, &root).await, accepted());
        assert_eq!(outcome(gw, &carol_here).await, accepted());
        assert_eq!(outcome(gw, &boss).await, accepted());
    }
    for (workspace, jwt) in [("acme", &root), ("beta", &boss)] {
        for path in ["sessions", "audit"] {
            let path = format!("workspaces/{workspace}/{path}");
            assert_eq!(
                restarted.admin_get(&path, jwt).await,
                gws[0].admin_get(&path, jwt).await,
                "{path}"
            );
        }
    }
    // What a load reserves room by: one workspace cutoff, two user cutoffs.
    let counts = CutoffCounts {
        workspaces: 1,
        users: 2,
        subjects: 0,
    };
    assert_eq!(stored_counts(&redis).await, counts);
}

/// Redis is killed and restarted mid-test. While it is down both instances enforce what
/// they have and refuse logouts; when it is back, one of them is still cut off (by a relay)
/// while the other commits a logout, and catches up by resync when it reconnects.
#[tokio::test(flavor = "multi_thread")]
async fn instances_ride_out_a_redis_restart_and_heal_a_missed_change_by_resync() {
    let Some(mut redis) = redis_server().persistent().start().await else {
        return;
    };
    let upstream = upstream().await;
    let relay = Relay::start(redis.port).await;
    let direct = gateway(&upstream).redis(&redis).start().await;
    let relayed = gateway(&upstream)
        .redis_url(&format!("redis://127.0.0.1:{}/0", relay.port))
        .start()
        .await;
    let gws = [&direct, &relayed];
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let boss = admin("boss", "beta").iat(t0).sign();
    let bob = token().sub("bob").workspace("beta").iat(t0).sign();
    assert_eq!(
        logout(&direct, "workspaces/acme/logout-all", &root).await.0,
        200
    );
    until("propagated", Duration::from_secs(1), || {
        refuses(&relayed, &alice)
    })
    .await;

    redis.kill();
    for gw in gws {
        store_becomes(gw, "degraded", Duration::from_secs(5)).await;
        let (status, body) = readyz(gw).await;
        assert_eq!(status, 200, "still ready while degraded: {body}");
        // Enforcement goes on from memory.
        assert_eq!(outcome(gw, &alice).await, refused("session_invalidated"));
        assert_eq!(outcome(gw, &bob).await, accepted());
        assert_eq!(metric(gw, "sessiongate_store_up").await, 0.0);
        let age = metric(gw, "sessiongate_store_sync_age_seconds").await;
        assert!(age > 0.0, "sync age {age}");
        let (status, body) = logout(gw, "workspaces/beta/logout-all", &boss).await;
        assert_eq!((status, body), (503, json!({"error": "store_unavailable"})));
        assert_eq!(outcome(gw, &bob).await, accepted(), "nothing changed");
        let audit = gw
            .get("/_sessiongate/v1/workspaces/beta/audit")
            .bearer_auth(&boss)
            .send()
            .await
            .unwrap();
        assert_eq!(audit.status(), 503, "the audit trail lives in Redis");
    }

    relay.cut();
    assert!(redis.restart().await);
    store_becomes(&direct, "loaded", Duration::from_secs(5)).await;
    assert_eq!(metric(&direct, "sessiongate_store_up").await, 1.0);
    assert_eq!(
        outcome(&direct, &alice).await,
        refused("session_invalidated")
    );
    let beta = direct.admin_get("workspaces/beta/sessions", &boss).await;
    assert_eq!(
        beta["sessions_valid_after"],
        Value::Null,
        "the 503s left no trace"
    );
    let (status, answer) = logout(&direct, "workspaces/beta/logout-all", &boss).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["instances_notified"], 1,
        "the relayed instance is still away"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outcome(&relayed, &bob).await, accepted(), "not heard yet");

    relay.restore();
    let healed = until("healed by resync", Duration::from_secs(5), || {
        refuses(&relayed, &bob)
    })
    .await;
    println!("the relayed instance enforced the missed logout {healed:?} after its link returned");
    assert_eq!(
        outcome(&relayed, &bob).await,
        refused("session_invalidated")
    );
    assert_eq!(
        outcome(&relayed, &alice).await,
        refused("session_invalidated")
    );
    // The resync's records are enforced as they arrive; the link is reported loaded once
    // the write-back of what the store lacked is done too.
    store_becomes(&relayed, "loaded", Duration::from_secs(5)).await;
    // Healthy links stay up: heartbeats (every second) do not flap them.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for gw in gws {
        assert_eq!(metric(gw, "sessiongate_store_disconnects_total").await, 1.0);
    }
}

/// A change that never went through the channel (written by hand, or a message lost on a
/// link that looked healthy) is picked up by the periodic full resync.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_resync_picks_up_a_change_that_was_never_published() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .redis(&redis)
        .set("store.resync_secs = 1")
        .start()
        .await;
    let alice = token().sub("alice").workspace("acme").iat(earlier()).sign();
    assert_eq!(outcome(&gw, &alice).await, accepted());

    let cutoff = json!({"valid_after": now() as i64, "preserved": null, "version": 1});
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("HSET")
        .arg("sessiongate:workspaces")
        .arg("acme")
        .arg(cutoff.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let picked_up = until("resynced", Duration::from_secs(3), || refuses(&gw, &alice)).await;
    println!("unpublished cutoff enforced {picked_up:?} after it was written");
    assert_eq!(outcome(&gw, &alice).await, refused("session_invalidated"));
}

// ============================================================================
// Failing closed
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_started_while_redis_is_down_fails_closed_until_it_loads() {
    let Some(mut redis) = redis_server().persistent().start().await else {
        return;
    };
    let upstream = upstream().await;
    let first = gateway(&upstream).redis(&redis).start().await;
    let (root, alice) = acme_logged_out_by_root(&first).await;
    redis.kill();

    let late = gateway(&upstream).redis(&redis).start_unready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outcome(&late, &alice).await,
        (503, json!({"error": "not_ready"}))
    );
    assert_eq!(outcome(&late, &root).await.0, 503);
    let (status, body) = readyz(&late).await;
    assert_eq!((status, &body["store"]), (503, &json!("loading")), "{body}");

    assert!(redis.restart().await);
    store_becomes(&late, "loaded", Duration::from_secs(5)).await;
    assert_eq!(outcome(&late, &alice).await, refused("session_invalidated"));
    assert_eq!(outcome(&late, &root).await, accepted());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_staleness_turns_requests_away_once_out_of_sync_too_long() {
    let Some(mut redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .redis(&redis)
        .set("store.max_staleness_secs = 2")
        .start()
        .await;
    let alice = token().sub("alice").workspace("acme").sign();
    assert_eq!(outcome(&gw, &alice).await, accepted());

    redis.kill();
    let stale = until("503 once stale", Duration::from_secs(6), || async {
        match outcome(&gw, &alice).await {
            (200, _) => false,
            (503, body) => body == json!({"error": "store_stale"}),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    println!("max_staleness_secs = 2: requests refused {stale:?} after Redis was killed");
    // The last proof of sync is at most one heartbeat (1 s) before the kill.
    assert!(stale >= Duration::from_millis(900), "{stale:?}");
    assert!(stale < Duration::from_secs(4), "{stale:?}");
    let (status, body) = readyz(&gw).await;
    assert_eq!((status, &body["store"]), (503, &json!("stale")), "{body}");

    assert!(redis.restart().await);
    until("serving again", Duration::from_secs(5), || async {
        outcome(&gw, &alice).await == accepted()
    })
    .await;
}

// ============================================================================
// Keys, passwords, TLS
// ============================================================================

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_channel_live_under_the_configured_prefix() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let tenant = gateway(&upstream)
        .redis(&redis)
        .set("store.redis_key_prefix = \"tenant-a:sg:\"")
        .start()
        .await;
    let other = gateway(&upstream).redis(&redis).start().await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();

    let (status, answer) = logout(&tenant, "workspaces/acme/logout-all", &root).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["instances_notified"], 1,
        "only its own prefix's channel"
    );
    assert_eq!(
        logout(&tenant, "workspaces/acme/users/bob/logout", &root)
            .await
            .0,
        200
    );
    assert_eq!(
        redis_keys(&redis).await,
        [
            "tenant-a:sg:audit:acme",
            "tenant-a:sg:users",
            "tenant-a:sg:workspaces"
        ]
    );
    let mut conn = redis.connection().await;
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut conn)
        .await
        .unwrap();
    channels.sort();
    assert_eq!(channels, ["sessiongate:changes", "tenant-a:sg:changes"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        outcome(&other, &alice).await,
        accepted(),
        "another prefix, another fleet"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_protected_redis_works_with_the_password_and_fails_closed_without() {
    let password = "s3cret-redis-pass";
    let Some(redis) = redis_server().password(password).start().await else {
        return;
    };
    let upstream = upstream().await;
    let root = admin("root", "acme").sign();
    let gw = gateway(&upstream).redis(&redis).start().await;
    let (status, answer) = logout(&gw, "workspaces/acme/logout-all", &root).await;
    assert_eq!((status, &answer["instances_notified"]), (200, &json!(1)));

    for url in [redis.url_with(None), redis.url_with(Some("wrong-pass"))] {
        let gw = gateway(&upstream).redis_url(&url).start_unready().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            outcome(&gw, &root).await,
            (503, json!({"error": "not_ready"}))
        );
        assert_eq!(readyz(&gw).await.0, 503);
        assert!(!gw.logs().contains("wrong-pass"), "{}", gw.logs());
    }
    assert!(!gw.logs().contains(password), "{}", gw.logs());
}

/// What a load cannot read keeps the instance unready: an error reply to a scan (the
/// policies hash, which a load scans without counting it first, made a string) or a
/// record that does not decode.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_a_load_cannot_read_leaves_the_instance_unready() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let mut conn = redis.connection().await;
    let unreadable: [(&str, &[&str], &str); 2] = [
        (
            "sessiongate:policies",
            &["SET", "not a hash"],
            "redis scan: WRONGTYPE",
        ),
        (
            "sessiongate:workspaces",
            &["HSET", "acme", "{\"valid_after\":"],
            "unreadable record",
        ),
    ];
    for (key, command, logged) in unreadable {
        redis::cmd(command[0])
            .arg(key)
            .arg(&command[1..])
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let gw = gateway(&upstream).redis(&redis).start_unready().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let root = admin("root", "acme").sign();
        let not_ready = (503, json!({"error": "not_ready"}));
        assert_eq!(outcome(&gw, &root).await, not_ready, "{key}");
        assert_eq!(readyz(&gw).await.0, 503, "{key}");
        let logs = gw.logs();
        assert!(
            logs.contains("cannot load the shared store") && logs.contains(logged),
            "{key}: {logs}"
        );
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let healed = gateway(&upstream).redis(&redis).start().await;
    assert_eq!(readyz(&healed).await.0, 200);
}

/// A load reads on connections of its own (not redis-rs's): they authenticate as the URL's
/// user and read the URL's database, like every other connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_named_user_on_another_database_loads_what_it_wrote() {
    let Some(redis) = redis_server().password("default-pass").start().await else {
        return;
    };
    let mut conn = redis.connection().await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "gate", "on", ">gate-pass", "~*", "&*", "+@all"][..])
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let upstream = upstream().await;
    let db3 = redis
        .url()
        .replace(":default-pass@", "gate:gate-pass@")
        .replace("/0", "/3");
    let first = gateway(&upstream).redis_url(&db3).start().await;
    let (root, alice) = acme_logged_out_by_root(&first).await;

    let loaded = gateway(&upstream).redis_url(&db3).start().await;
    assert_eq!(
        outcome(&loaded, &alice).await,
        refused("session_invalidated")
    );
    assert_eq!(outcome(&loaded, &root).await, accepted());
    // Database 0 holds no cutoff: an instance there admits the session.
    let elsewhere = gateway(&upstream).redis(&redis).start().await;
    assert_eq!(outcome(&elsewhere, &alice).await, accepted());
    let wrong = db3.replace("gate-pass", "not-the-pass");
    let refused_login = gateway(&upstream).redis_url(&wrong).start_unready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readyz(&refused_login).await.0, 503);
    assert!(
        !refused_login.logs().contains("not-the-pass"),
        "{}",
        refused_login.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_a_private_ca_propagates_and_fails_closed_without_the_ca() {
    let Some(redis) = redis_server().tls().password("tls-pass").start().await else {
        return;
    };
    let upstream = upstream().await;
    let gws = fleet(&upstream, &redis, 2).await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let (status, answer) = logout(&gws[0], "workspaces/acme/logout-all", &root).await;
    assert_eq!((status, &answer["instances_notified"]), (200, &json!(2)));
    until("propagated over TLS", Duration::from_secs(1), || {
        refuses(&gws[1], &alice)
    })
    .await;

    // The system roots do not know the development CA: never ready, never open.
    let untrusting = gateway(&upstream)
        .redis_url(&redis.url())
        .start_unready()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(outcome(&untrusting, &alice).await.0, 503);
    assert_eq!(readyz(&untrusting).await.0, 503);
}
