//! SPEC section 10, scheduled logout with advance notice, through the real binary on
//! every store: `"at"` on logout-all, its application at that time (from memory, by every
//! instance, written once), cancellation, `X-Auth-Logout-At`, and durability.
//!
//! Schedules that must apply are set a second or two ahead and the tests poll until they
//! have; the ones that must not apply are set an hour ahead.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Gateway, GatewayBuilder, Upstream, admin, gateway, now, redis_server, rfc3339, token, until,
    upstream,
};

const API: &str = "/_sessiongate/v1";
/// Long enough for a schedule a couple of seconds ahead to apply on a loaded machine.
const APPLIES_WITHIN: Duration = Duration::from_secs(15);

// ============================================================================
// Helpers
// ============================================================================

/// The stores a single gateway can use; Redis only where `redis-server` is installed.
enum Backend {
    Embedded,
    Memory,
    Redis(support::RedisServer),
}

async fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Embedded, Backend::Memory];
    if let Some(redis) = redis_server().start().await {
        backends.push(Backend::Redis(redis));
    }
    backends
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Memory => "memory",
            Self::Redis(_) => "redis",
        }
    }

    fn configure(&self, builder: GatewayBuilder) -> GatewayBuilder {
        match self {
            Self::Embedded => builder,
            Self::Memory => builder.set("store.backend = \"memory\""),
            Self::Redis(redis) => builder.redis(redis),
        }
    }
}

/// Status and JSON body of a response.
async fn answer(rsp: reqwest::Response) -> (u16, Value) {
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

/// Schedules a logout of `workspace` at `at` (unix seconds); the 202 body.
async fn schedule(gw: &Gateway, workspace: &str, jwt: &str, at: f64) -> Value {
    let (status, body) = answer(gw.schedule_logout(workspace, jwt, &rfc3339(at)).await).await;
    assert_eq!(status, 202, "scheduling answered {body}");
    body
}

async fn sessions(gw: &Gateway, workspace: &str, jwt: &str) -> Value {
    gw.admin_get(&format!("workspaces/{workspace}/sessions"), jwt)
        .await
}

/// The audit actions of `workspace`, newest first.
async fn actions(gw: &Gateway, workspace: &str, jwt: &str) -> Vec<String> {
    let audit = gw
        .admin_get(&format!("workspaces/{workspace}/audit"), jwt)
        .await;
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["action"].as_str().unwrap().to_string())
        .collect()
}

async fn count_of(gw: &Gateway, workspace: &str, jwt: &str, action: &str) -> usize {
    let actions = actions(gw, workspace, jwt).await;
    actions.iter().filter(|a| *a == action).count()
}

/// A time `secs` or up to a second more from now, on a whole second. The API holds times to
/// the millisecond, so a time with more digits is held a little earlier than the test's own
/// copy of it, and a request in that gap was refused "before its time" (CI, 2026-12-03).
fn in_about(secs: f64) -> f64 {
    (now() + secs).ceil()
}

async fn passes(gw: &Gateway, jwt: &str) -> bool {
    gw.status_with("/app", jwt).await == 200
}

/// Polls until `jwt` is refused as `session_invalidated`.
async fn until_refused(gw: &Gateway, jwt: &str, what: &str) {
    until(what, APPLIES_WITHIN, || async {
        let (status, body) = answer(gw.get("/app").bearer_auth(jwt).send().await.unwrap()).await;
        (status, body)
            == (
                401,
                json!({"error": "invalid_token", "reason": "session_invalidated"}),
            )
    })
    .await;
}

/// A token of `workspace` issued at `iat` (within the leeway of now): one that passes the
/// cutoff a scheduled logout leaves.
fn issued_at(workspace: &str, iat: f64) -> String {
    admin("fresh", workspace).iat(iat).sign()
}

/// Waits until the wall clock has passed `unix`.
async fn wait_past(unix: f64) {
    until(
        "the wall clock to pass",
        Duration::from_secs(120),
        || async { now() > unix },
    )
    .await;
}

/// The `X-Auth-Logout-At` values the upstream got with its last request.
fn notice(upstream: &Upstream) -> Vec<String> {
    upstream
        .last()
        .headers
        .get_all("x-auth-logout-at")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

// ============================================================================
// Scheduling
// ============================================================================

#[tokio::test]
async fn scheduling_answers_202_and_changes_nothing_until_then_on_every_store() {
    for backend in backends().await {
        let upstream = upstream().await;
        let gw = backend.configure(gateway(&upstream)).start().await;
        let (ada, bob) = (admin("ada", "acme").sign(), token().sign());
        let at = now().floor() + 3600.5;
        let body = schedule(&gw, "acme", &ada, at).await;
        let name = backend.name();
        assert_eq!(body["workspace"], "acme", "{name}");
        assert_eq!(body["status"], "scheduled", "{name}");
        assert_eq!(body["scheduled_at"], rfc3339(at), "{name}");
        let audit_id = body["audit_id"].as_str().unwrap().to_string();
        assert_eq!(body.as_object().unwrap().len(), 4, "{name}: {body}");

        assert!(passes(&gw, &bob).await, "{name}: nothing changes yet");
        let state = sessions(&gw, "acme", &ada).await;
        assert_eq!(state["sessions_valid_after"], Value::Null, "{name}");
        assert_eq!(
            state["scheduled_logout"],
            json!({"at": rfc3339(at), "audit_id": audit_id, "actor_subject": "ada"}),
            "{name}"
        );
        let audit = gw.admin_get("workspaces/acme/audit", &ada).await;
        let record = &audit["events"][0];
        assert_eq!(record["action"], "logout_scheduled", "{name}");
        assert_eq!(record["id"], audit_id.as_str(), "{name}");
        assert_eq!(record["scheduled_at"], rfc3339(at), "{name}");
        assert_eq!(record["sessions_valid_after"], Value::Null, "{name}");
        let other = sessions(&gw, "globex", &admin("gus", "globex").sign()).await;
        assert_eq!(other["scheduled_logout"], Value::Null, "{name}");
    }
}

#[tokio::test]
async fn bad_at_values_are_400_naming_at_and_change_nothing() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ada = admin("ada", "acme").sign();
    let now = now();
    let too_far = rfc3339(now + 90.0 * 86_400.0 + 60.0);
    let bodies = [
        json!({"at": rfc3339(now - 1.0)}),
        json!({"at": rfc3339(now - 86_400.0)}),
        json!({"at": too_far}),
        json!({"at": "tomorrow"}),
        json!({"at": "2026-02-30T10:00:00Z"}),
        json!({"at": "2099-01-01T00:00:00"}),
        json!({"at": "2099-01-01 00:00:00Z"}),
        json!({"at": ""}),
        json!({"at": "x".repeat(10_000)}),
        json!({"at": null}),
        json!({"at": 1_999_999_999}),
        json!({"at": ["2099-01-01T00:00:00Z"]}),
        json!({"at": {"unix": 1}}),
        json!({"at": true}),
    ];
    for body in bodies {
        let path = format!("{API}/workspaces/acme/logout-all");
        let rsp = gw.post(&path).bearer_auth(&ada).json(&body).send().await;
        let (status, answer) = answer(rsp.unwrap()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains("at"), "{body}: {message}");
    }
    let state = sessions(&gw, "acme", &ada).await;
    assert_eq!(state["scheduled_logout"], Value::Null);
    assert_eq!(state["sessions_valid_after"], Value::Null);
    assert!(actions(&gw, "acme", &ada).await.is_empty());
}

#[tokio::test]
async fn at_on_any_other_logout_is_400() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ada = admin("ada", "acme").sign();
    let at = rfc3339(now() + 3600.0);
    let calls = [
        ("workspaces/acme/users/bob/logout", json!({"at": at})),
        (
            "workspaces/acme/users/logout",
            json!({"subject": "bob", "at": at}),
        ),
        ("me/logout-others", json!({"at": at})),
    ];
    for (path, body) in calls {
        let rsp = gw
            .post(&format!("{API}/{path}"))
            .bearer_auth(&ada)
            .json(&body);
        let (status, answer) = answer(rsp.send().await.unwrap()).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("at"),
            "{answer}"
        );
    }
    let cancel = gw
        .delete(&format!("{API}/workspaces/acme/scheduled-logout"))
        .bearer_auth(&ada)
        .json(&json!({"at": at}));
    assert_eq!(answer(cancel.send().await.unwrap()).await.0, 400);
    assert!(actions(&gw, "acme", &ada).await.is_empty());
}

#[tokio::test]
async fn scheduling_needs_an_admin_of_the_workspace() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let at = rfc3339(now() + 3600.0);
    let user = gw.schedule_logout("acme", &token().sign(), &at).await;
    assert_eq!(user.status(), 403);
    let other = gw
        .schedule_logout("acme", &admin("gus", "globex").sign(), &at)
        .await;
    assert_eq!(other.status(), 403);
    let cancel = gw.cancel_scheduled_logout("acme", &token().sign()).await;
    assert_eq!(cancel.status(), 403);
    let none = gw.post(&format!("{API}/workspaces/acme/logout-all"));
    assert_eq!(none.send().await.unwrap().status(), 401);
}

// ============================================================================
// Applying
// ============================================================================

#[tokio::test]
async fn the_logout_applies_at_its_time_sparing_the_scheduler_on_every_store() {
    for backend in backends().await {
        let upstream = upstream().await;
        let gw = backend.configure(gateway(&upstream)).start().await;
        let name = backend.name();
        let (ada, bob) = (admin("ada", "acme").sign(), token().sign());
        let at = in_about(2.0);
        schedule(&gw, "acme", &ada, at).await;
        assert!(passes(&gw, &bob).await, "{name}: before its time");
        until_refused(&gw, &bob, &format!("{name}: bob signed out at `at`")).await;
        assert!(now() >= at, "{name}: refused before its time");
        assert!(
            passes(&gw, &ada).await,
            "{name}: the scheduler's session is kept"
        );
        let cutoff = at.floor() as i64 + 1;
        assert!(
            passes(&gw, &issued_at("acme", cutoff as f64)).await,
            "{name}"
        );
        assert!(
            passes(&gw, &token().workspace("globex").sign()).await,
            "{name}"
        );

        until_settled(&gw, &ada).await;
        let state = sessions(&gw, "acme", &ada).await;
        assert_eq!(state["sessions_valid_after"], cutoff, "{name}");
        assert!(
            state["preserved_session"]
                .as_str()
                .unwrap()
                .starts_with("jti:")
        );
        let audit = gw.admin_get("workspaces/acme/audit", &ada).await;
        let applied = &audit["events"][0];
        assert_eq!(applied["action"], "logout_all", "{name}");
        assert_eq!(applied["actor_subject"], "ada", "{name}");
        assert_eq!(applied["sessions_valid_after"], cutoff, "{name}");
        assert_eq!(applied["at"], rfc3339(at), "{name}");
        assert_eq!(count_of(&gw, "acme", &ada, "logout_all").await, 1, "{name}");
    }
}

#[tokio::test]
async fn a_scheduler_logged_out_after_scheduling_is_not_brought_back() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let (ada, bea) = (admin("ada", "acme").sign(), admin("bea", "acme").sign());
    let at = in_about(2.0);
    schedule(&gw, "acme", &ada, at).await;
    // Ada's token is stolen: Bea logs everyone out (keeping her own session).
    assert_eq!(gw.logout_all("acme", &bea).await.status(), 200);
    assert!(!passes(&gw, &ada).await);
    assert!(passes(&gw, &bea).await);
    until_refused(&gw, &bea, "the scheduled logout applies, sparing no one").await;
    assert!(!passes(&gw, &ada).await, "ada's session stays signed out");
    let fresh = issued_at("acme", at.floor() + 1.0);
    until_settled(&gw, &fresh).await;
    assert_eq!(
        sessions(&gw, "acme", &fresh).await["preserved_session"],
        Value::Null
    );
}

#[tokio::test]
async fn a_scheduler_failing_a_policy_set_after_scheduling_is_not_preserved() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ada = admin("ada", "acme").sign();
    let mfa = |builder: support::TokenBuilder| builder.claim("amr", json!(["mfa"])).sign();
    let at = in_about(2.0);
    schedule(&gw, "acme", &ada, at).await;
    // Bea requires MFA; ada signed in without it.
    let bea = mfa(admin("bea", "acme"));
    let policy = json!({"require_claims": [{"claim": "amr", "any_of": ["mfa"]}]});
    let put = gw.put_policy("acme", &bea, &policy).send().await.unwrap();
    assert_eq!(put.status(), 200);
    assert!(!passes(&gw, &ada).await, "the policy refuses ada at once");
    until_refused(&gw, &bea, "the scheduled logout applies").await;
    let fresh = mfa(admin("cy", "acme").iat(at.floor() + 1.0));
    until_settled(&gw, &fresh).await;
    assert_eq!(
        sessions(&gw, "acme", &fresh).await["preserved_session"],
        Value::Null,
        "ada failed the policy just before the time: no session is kept"
    );
    let cleared = gw
        .put_policy("acme", &fresh, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    let (status, body) = answer(gw.get("/app").bearer_auth(&ada).send().await.unwrap()).await;
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("session_invalidated"))
    );
}

#[tokio::test]
async fn a_cancelled_logout_never_applies_and_a_second_cancel_is_404() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let (ada, bob) = (admin("ada", "acme").sign(), token().sign());
    let at = in_about(2.0);
    schedule(&gw, "acme", &ada, at).await;
    let (status, body) = answer(gw.cancel_scheduled_logout("acme", &ada).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["workspace"], "acme");
    assert_eq!(body["cancelled"], true);
    let audit_id = body["audit_id"].as_str().unwrap();
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(
        sessions(&gw, "acme", &ada).await["scheduled_logout"],
        Value::Null
    );
    let audit = gw.admin_get("workspaces/acme/audit", &ada).await;
    assert_eq!(audit["events"][0]["action"], "logout_cancelled");
    assert_eq!(audit["events"][0]["id"], audit_id);
    assert_eq!(audit["events"][0]["scheduled_at"], rfc3339(at));

    let (status, body) = answer(gw.cancel_scheduled_logout("acme", &ada).await).await;
    assert_eq!((status, &body["error"]), (404, &json!("not_found")));
    wait_past(at + 1.5).await;
    assert!(passes(&gw, &bob).await, "a cancelled logout does not apply");
    assert_eq!(
        actions(&gw, "acme", &ada).await,
        ["logout_cancelled", "logout_scheduled"]
    );
}

#[tokio::test]
async fn cancel_with_nothing_pending_is_404_and_cancel_follows_the_csrf_rule() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).set("auth.cookie = \"sg\"").start().await;
    let ada = admin("ada", "acme").sign();
    assert_eq!(gw.cancel_scheduled_logout("acme", &ada).await.status(), 404);
    schedule(&gw, "acme", &ada, now() + 3600.0).await;
    let path = format!("{API}/workspaces/acme/scheduled-logout");
    let cross = gw
        .delete(&path)
        .header("cookie", format!("sg={ada}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let same = gw
        .delete(&path)
        .header("cookie", format!("sg={ada}"))
        .header("origin", format!("http://{}", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let get = gw.get(&format!("{API}/workspaces/acme/scheduled-logout"));
    assert_eq!(get.bearer_auth(&ada).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn a_new_schedule_replaces_the_pending_one() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let (ada, bea, bob) = (
        admin("ada", "acme").sign(),
        admin("bea", "acme").sign(),
        token().sign(),
    );
    let later = now() + 3600.0;
    schedule(&gw, "acme", &ada, later).await;
    let soon = in_about(2.0);
    let replaced = schedule(&gw, "acme", &bea, soon).await;
    let pending = &sessions(&gw, "acme", &ada).await["scheduled_logout"];
    assert_eq!(pending["at"], rfc3339(soon));
    assert_eq!(pending["actor_subject"], "bea");
    assert_eq!(pending["audit_id"], replaced["audit_id"]);
    until_refused(&gw, &bob, "the replacing schedule applies").await;
    assert!(passes(&gw, &bea).await, "its scheduler is kept");
    assert!(
        !passes(&gw, &ada).await,
        "the replaced one's scheduler is not"
    );
    until_settled(&gw, &bea).await;
    assert_eq!(count_of(&gw, "acme", &bea, "logout_all").await, 1);
}

// ============================================================================
// Advance notice
// ============================================================================

#[tokio::test]
async fn forwarded_requests_carry_the_logout_time_and_client_copies_are_stripped() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("auth.public_paths = [\"/public\"]")
        .start()
        .await;
    let (ada, bob) = (admin("ada", "acme").sign(), token().sign());
    let spoofed = |path: &str, jwt: Option<&str>| {
        let request = gw
            .get(path)
            .header("x-auth-logout-at", "1")
            .header("X-Auth-Logout-At", "2");
        match jwt {
            Some(jwt) => request.bearer_auth(jwt),
            None => request,
        }
    };
    spoofed("/app", Some(&bob)).send().await.unwrap();
    assert!(notice(&upstream).is_empty(), "nothing pending: stripped");

    let at = now().floor() + 3600.75;
    schedule(&gw, "acme", &ada, at).await;
    spoofed("/app", Some(&bob)).send().await.unwrap();
    assert_eq!(notice(&upstream), [format!("{}", at.floor() as i64)]);
    gw.get("/app").bearer_auth(&bob).send().await.unwrap();
    assert_eq!(notice(&upstream), [format!("{}", at.floor() as i64)]);
    let globex = token().workspace("globex").sign();
    spoofed("/app", Some(&globex)).send().await.unwrap();
    assert!(notice(&upstream).is_empty(), "another workspace");
    spoofed("/public", None).send().await.unwrap();
    assert!(notice(&upstream).is_empty(), "public paths too");

    assert_eq!(gw.cancel_scheduled_logout("acme", &ada).await.status(), 200);
    spoofed("/app", Some(&bob)).send().await.unwrap();
    assert!(notice(&upstream).is_empty(), "cancelled");
}

// ============================================================================
// Durability
// ============================================================================

#[tokio::test]
async fn a_schedule_survives_kill_9() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ada = admin("ada", "acme").sign();
    let at = now().floor() + 7200.0;
    let body = schedule(&gw, "acme", &ada, at).await;
    let gw = gw.crash_and_restart().await;
    let pending = &sessions(&gw, "acme", &ada).await["scheduled_logout"];
    assert_eq!(pending["at"], rfc3339(at));
    assert_eq!(pending["audit_id"], body["audit_id"]);
    gw.get("/app").bearer_auth(&ada).send().await.unwrap();
    assert_eq!(notice(&upstream), [format!("{}", at as i64)]);
}

#[tokio::test]
async fn an_instance_down_at_the_time_applies_the_logout_when_it_loads() {
    let upstream = upstream().await;
    let mut gw = gateway(&upstream).start().await;
    let (ada, bob) = (admin("ada", "acme").sign(), token().sign());
    let at = in_about(1.5);
    schedule(&gw, "acme", &ada, at).await;
    gw.kill9();
    wait_past(at + 0.5).await;
    let gw = gw.crash_and_restart().await;
    let (status, body) = answer(gw.get("/app").bearer_auth(&bob).send().await.unwrap()).await;
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("session_invalidated"))
    );
    assert!(passes(&gw, &ada).await, "the scheduler is kept");
    until("committed on load", APPLIES_WITHIN, || async {
        count_of(&gw, "acme", &ada, "logout_all").await == 1
    })
    .await;
    let state = sessions(&gw, "acme", &ada).await;
    assert_eq!(state["sessions_valid_after"], at.floor() as i64 + 1);
    assert_eq!(state["scheduled_logout"], Value::Null);
}

// ============================================================================
// A fleet on Redis
// ============================================================================

/// Two instances on `redis`, and a logout of acme scheduled `lead` seconds ahead on the
/// first by ada, known to the second; its time and ada's token.
async fn fleet_with_a_schedule(
    redis: &support::RedisServer,
    upstream: &Upstream,
    lead: f64,
) -> ([Gateway; 2], f64, String) {
    let fleet = [
        gateway(upstream).redis(redis).start().await,
        gateway(upstream).redis(redis).start().await,
    ];
    let at = in_about(lead);
    let ada = admin("ada", "acme").sign();
    schedule(&fleet[0], "acme", &ada, at).await;
    until(
        "the other instance hears of it",
        Duration::from_secs(5),
        || async { !sessions(&fleet[1], "acme", &ada).await["scheduled_logout"].is_null() },
    )
    .await;
    (fleet, at, ada)
}

/// Polls until `gw` no longer holds a pending schedule of acme: it heard the result.
async fn until_settled(gw: &Gateway, jwt: &str) {
    until("settled", APPLIES_WITHIN, || async {
        sessions(gw, "acme", jwt).await["scheduled_logout"].is_null()
    })
    .await;
}

#[tokio::test]
async fn a_fleet_applies_the_logout_everywhere_and_writes_it_once() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let (fleet, at, ada) = fleet_with_a_schedule(&redis, &upstream, 2.0).await;
    let bob = token().sign();
    fleet[1].get("/app").bearer_auth(&bob).send().await.unwrap();
    assert_eq!(notice(&upstream), [format!("{}", at.floor() as i64)]);
    for gw in &fleet {
        until_refused(gw, &bob, "every instance signs bob out").await;
        assert!(passes(gw, &ada).await);
    }
    for gw in &fleet {
        until_settled(gw, &ada).await;
    }
    assert_eq!(count_of(&fleet[0], "acme", &ada, "logout_all").await, 1);
    let logs = fleet
        .iter()
        .map(Gateway::logs)
        .collect::<Vec<_>>()
        .join("\n");
    let committed = logs.matches("\"logout_all committed\"").count();
    assert_eq!(committed, 1, "one instance commits it");
}

#[tokio::test]
async fn instances_cut_off_from_redis_still_apply_the_logout_at_its_time() {
    let Some(mut redis) = redis_server().persistent().start().await else {
        return;
    };
    let upstream = upstream().await;
    let (fleet, at, ada) = fleet_with_a_schedule(&redis, &upstream, 3.0).await;
    let bob = token().sign();
    redis.kill();
    for gw in &fleet {
        until_refused(gw, &bob, "signed out without the store").await;
        assert!(now() >= at, "refused before its time");
        assert!(passes(gw, &ada).await);
    }
    assert!(redis.restart().await);
    until("committed once Redis is back", APPLIES_WITHIN, || async {
        let rsp = fleet[1]
            .get(&format!("{API}/workspaces/acme/audit"))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        let Ok(audit) = rsp.json::<Value>().await else {
            return false;
        };
        audit["events"][0]["action"] == "logout_all"
    })
    .await;
    for gw in &fleet {
        until_settled(gw, &ada).await;
        assert!(!passes(gw, &bob).await);
    }
    assert_eq!(count_of(&fleet[0], "acme", &ada, "logout_all").await, 1);
}
