//! Signals on every store (SPEC section 6): enforced, durable, loaded before ready; a
//! revoked `sid` expires; a Redis fleet enforces a signal one instance received within 1 s.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::idp::{self, CAEP, PASSES, Signal, api, backchannel, later, push, revoked, until, user};
use crate::support::{self, Gateway, GatewayBuilder, Upstream, redis_server, upstream};

/// The three kinds of signal, then what every store must enforce.
struct Scenario {
    alice: String,
    phone: String,
    bob: String,
    carol: String,
    logout: String,
}

fn opaque(id: &str) -> Value {
    json!({"format": "opaque", "id": id})
}

impl Scenario {
    fn new() -> Self {
        Self {
            alice: user("alice", "acme").sign(),
            phone: user("dave", "acme").claim("sid", json!("s-phone")).sign(),
            bob: user("bob", "globex").sign(),
            carol: user("carol", "acme").sign(),
            logout: Signal::logout("alice").sign(),
        }
    }

    /// A logout by `sub`, a logout by `sid`, a CAEP session-revoked.
    async fn send(&self, gw: &Gateway) {
        assert_eq!(backchannel(gw, &self.logout).await.status, 200);
        let sid = Signal::logout("dave").claim("sid", json!("s-phone")).sign();
        assert_eq!(backchannel(gw, &sid).await.status, 200);
        let set = Signal::event(&format!("{CAEP}session-revoked"), opaque("bob")).sign();
        assert_eq!(push(gw, &set, None).await.status, 202);
    }

    async fn enforced(&self, gw: &Gateway) -> bool {
        api(gw, &self.alice).await == revoked()
            && api(gw, &self.phone).await == revoked()
            && api(gw, &self.bob).await == revoked()
            && api(gw, &self.carol).await == PASSES
    }

    async fn assert_enforced(&self, gw: &Gateway, what: &str) {
        assert!(self.enforced(gw).await, "{what}:\n{}", gw.logs());
    }
}

fn trusting(builder: GatewayBuilder) -> GatewayBuilder {
    idp::trusting(builder, &[idp::issuer("")])
}

#[tokio::test]
async fn signals_are_enforced_and_kept_by_the_embedded_store() {
    let upstream = upstream().await;
    let gw = trusting(support::gateway(&upstream)).start().await;
    let scenario = Scenario::new();
    scenario.send(&gw).await;
    scenario.assert_enforced(&gw, "embedded").await;
    let fresh = user("alice", "acme").iat(later()).sign();
    let gw = gw.crash_and_restart().await;
    scenario
        .assert_enforced(&gw, "after kill -9 and restart")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(backchannel(&gw, &scenario.logout).await.status, 200);
    assert_eq!(
        api(&gw, &fresh).await,
        PASSES,
        "a replay after a restart changes nothing"
    );
}

#[tokio::test]
async fn signals_are_enforced_by_the_memory_store() {
    let upstream = upstream().await;
    let gw = trusting(support::gateway(&upstream))
        .set("store.backend = \"memory\"")
        .start()
        .await;
    let scenario = Scenario::new();
    scenario.send(&gw).await;
    scenario.assert_enforced(&gw, "memory").await;
}

#[tokio::test]
async fn signals_are_enforced_and_kept_by_the_redis_store() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let gw = trusting(support::gateway(&upstream))
        .redis(&redis)
        .start()
        .await;
    let scenario = Scenario::new();
    scenario.send(&gw).await;
    scenario.assert_enforced(&gw, "redis").await;
    let fresh = user("alice", "acme").iat(later()).sign();
    drop(gw);
    let gw = trusting(support::gateway(&upstream))
        .redis(&redis)
        .start()
        .await;
    scenario
        .assert_enforced(&gw, "a new instance loads them before ready")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        backchannel(&gw, &scenario.logout).await.status,
        200,
        "{}",
        gw.logs()
    );
    assert_eq!(
        api(&gw, &fresh).await,
        PASSES,
        "the replay is known to the store"
    );
}

async fn fleet(upstream: &Upstream, redis: &support::RedisServer) -> (Gateway, Gateway) {
    let one = trusting(support::gateway(upstream))
        .redis(redis)
        .start()
        .await;
    let two = trusting(support::gateway(upstream))
        .redis(redis)
        .start()
        .await;
    (one, two)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_received_by_one_instance_is_enforced_by_another_within_a_second() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let (one, two) = fleet(&upstream, &redis).await;
    let scenario = Scenario::new();
    assert!(!scenario.enforced(&two).await);
    let sent = Instant::now();
    scenario.send(&one).await;
    until(
        "the other instance enforces every signal",
        Duration::from_secs(5),
        || scenario.enforced(&two),
    )
    .await;
    let delay = sent.elapsed();
    println!("the other instance enforces the signals {delay:?} after they were sent");
    assert!(delay < Duration::from_secs(1), "{delay:?}");
    // One instance remembers the other's signals: a replay there changes nothing.
    let fresh = user("alice", "acme").iat(later()).sign();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(backchannel(&two, &scenario.logout).await.status, 200);
    assert_eq!(api(&one, &fresh).await, PASSES);
    assert_eq!(
        idp::signals(&two, "replayed", "backchannel_logout").await,
        1.0
    );
}

#[tokio::test]
async fn a_revoked_sid_passes_again_after_sessions_revoked_sid_ttl_secs() {
    let upstream = upstream().await;
    let gw = trusting(support::gateway(&upstream))
        .set("sessions.revoked_sid_ttl_secs = 2")
        .start()
        .await;
    let phone = user("alice", "acme").claim("sid", json!("s-phone")).sign();
    let sid = Signal::logout("alice")
        .claim("sid", json!("s-phone"))
        .sign();
    assert_eq!(backchannel(&gw, &sid).await.status, 200);
    let revoked_at = Instant::now();
    assert_eq!(api(&gw, &phone).await, revoked());
    let waited = until(
        "the revocation expired",
        Duration::from_secs(10),
        || async { api(&gw, &phone).await == PASSES },
    )
    .await;
    assert!(revoked_at.elapsed() >= Duration::from_secs(1), "{waited:?}");
}
