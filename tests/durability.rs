//! SPEC sections 2 and 6: a logout answered 200 is committed; cutoffs, preserved sessions
//! and audit records survive SIGKILL and restarts, and are loaded before the gateway is
//! ready. The `memory` backend warns and forgets.

mod support;

use serde_json::{Value, json};
use support::{Gateway, admin, gateway, now, set_file_size_limit, token, upstream};

// ============================================================================
// Helpers
// ============================================================================

/// Status and JSON body of `GET /app` with `jwt`.
async fn outcome(gw: &Gateway, jwt: &str) -> (u16, Value) {
    let rsp = gw.get("/app").bearer_auth(jwt).send().await.unwrap();
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap())
}

fn refused(reason: &str) -> (u16, Value) {
    (401, json!({"error": "invalid_token", "reason": reason}))
}

fn accepted() -> (u16, Value) {
    (200, json!({"ok": true, "body_len": 0}))
}

/// A 200 admin `POST` (logout) and its JSON answer.
async fn logout(gw: &Gateway, path: &str, jwt: &str, body: Value) -> Value {
    let rsp = gw
        .post(&format!("/_sessiongate/v1/{path}"))
        .bearer_auth(jwt)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "POST {path}");
    rsp.json().await.unwrap()
}

/// Ten seconds ago: earlier than any cutoff a logout in this test sets.
fn earlier() -> f64 {
    now().floor() - 10.0
}

/// Everything a restart must keep for `workspace`, read through the admin API.
async fn snapshot(gw: &Gateway, workspace: &str, admin_jwt: &str) -> (Value, Value) {
    (
        gw.admin_get(&format!("workspaces/{workspace}/sessions"), admin_jwt)
            .await,
        gw.admin_get(
            &format!("workspaces/{workspace}/audit?limit=1000"),
            admin_jwt,
        )
        .await,
    )
}

fn actions(audit: &Value) -> Vec<&str> {
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

// ============================================================================
// SIGKILL right after a 200
// ============================================================================

#[tokio::test]
async fn logouts_survive_sigkill_right_after_the_200() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let t0 = earlier();
    let root = admin("root", "acme")
        .iat(t0)
        .claim("jti", json!("root-1"))
        .sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let boss = admin("boss", "beta")
        .iat(t0)
        .claim("jti", json!("boss-1"))
        .sign();
    let bob = token().sub("bob").workspace("beta").iat(t0).sign();
    let carol_here = token()
        .sub("carol")
        .workspace("beta")
        .iat(t0)
        .claim("jti", json!("carol-here"))
        .sign();
    let carol_phone = token().sub("carol").workspace("beta").iat(t0).sign();
    for jwt in [&root, &alice, &boss, &bob, &carol_here, &carol_phone] {
        assert_eq!(outcome(&gw, jwt).await, accepted(), "before any logout");
    }

    let user = logout(
        &gw,
        "workspaces/beta/users/bob/logout",
        &boss,
        json!({"reason": "left the company", "category": "personnel_change"}),
    )
    .await;
    let others = logout(&gw, "me/logout-others", &carol_here, json!({})).await;
    let all = logout(
        &gw,
        "workspaces/acme/logout-all",
        &root,
        json!({"reason": "incident", "category": "security_incident", "ticket": "INC-1"}),
    )
    .await;
    let gw = gw.crash_and_restart().await;

    assert_eq!(outcome(&gw, &alice).await, refused("session_invalidated"));
    assert_eq!(outcome(&gw, &bob).await, refused("session_revoked"));
    assert_eq!(outcome(&gw, &carol_phone).await, refused("session_revoked"));
    assert_eq!(
        outcome(&gw, &root).await,
        accepted(),
        "logout-all caller kept"
    );
    assert_eq!(
        outcome(&gw, &carol_here).await,
        accepted(),
        "logout-others caller kept"
    );
    assert_eq!(outcome(&gw, &boss).await, accepted(), "not a target");

    let (sessions, audit) = snapshot(&gw, "acme", &root).await;
    assert_eq!(
        sessions,
        json!({
            "workspace": "acme",
            "sessions_valid_after": all["sessions_valid_after"],
            "preserved_session": "jti:root-1",
            "scheduled_logout": null,
        })
    );
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    let event = &events[0];
    assert_eq!(event["id"], all["audit_id"]);
    assert_eq!(event["at"], all["invalidated_at"]);
    assert_eq!(event["action"], "logout_all");
    assert_eq!(event["actor_subject"], "root");
    assert_eq!(event["actor_session"], "jti:root-1");
    assert_eq!(event["reason"], "incident");
    assert_eq!(event["category"], "security_incident");
    assert_eq!(event["ticket"], "INC-1");
    assert_eq!(event["sessions_valid_after"], all["sessions_valid_after"]);

    let (_, audit) = snapshot(&gw, "beta", &boss).await;
    assert_eq!(
        actions(&audit),
        ["logout_others", "user_logout"],
        "newest first"
    );
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events[0]["id"], others["audit_id"]);
    assert_eq!(events[0]["subject"], "carol");
    assert_eq!(events[0]["actor_session"], "jti:carol-here");
    assert_eq!(events[1]["id"], user["audit_id"]);
    assert_eq!(events[1]["subject"], "bob");
    assert_eq!(events[1]["reason"], "left the company");
    assert_eq!(events[1]["category"], "personnel_change");
}

#[tokio::test]
async fn restart_keeps_refusal_reasons_sessions_and_audit_exactly() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let bob = token().sub("bob").workspace("acme").iat(t0).sign();
    logout(&gw, "workspaces/acme/users/bob/logout", &root, json!({})).await;
    logout(&gw, "workspaces/acme/logout-all", &root, json!({})).await;

    let tokens = [&root, &alice, &bob];
    let mut before = Vec::new();
    for jwt in tokens {
        before.push(outcome(&gw, jwt).await);
    }
    assert_eq!(
        before,
        [
            accepted(),
            refused("session_invalidated"),
            refused("session_invalidated"),
        ]
    );
    let state_before = snapshot(&gw, "acme", &root).await;

    let gw = gw.crash_and_restart().await;
    let mut after = Vec::new();
    for jwt in tokens {
        after.push(outcome(&gw, jwt).await);
    }
    assert_eq!(after, before, "same answers, same reasons");
    assert_eq!(snapshot(&gw, "acme", &root).await, state_before);
}

// ============================================================================
// More logouts, more restarts
// ============================================================================

#[tokio::test]
async fn a_second_restart_after_more_logouts_keeps_everything() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let t0 = earlier();
    let first_admin = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    let first = logout(&gw, "workspaces/acme/logout-all", &first_admin, json!({})).await;
    let first_cutoff = first["sessions_valid_after"].as_i64().unwrap();

    let gw = gw.crash_and_restart().await;
    // Issued at the cutoff, so it passes it; the first admin's session stops being the
    // preserved one once this admin logs everyone out.
    let second_admin = admin("deputy", "acme")
        .iat(first_cutoff as f64)
        .claim("jti", json!("deputy-1"))
        .sign();
    let dave = token()
        .sub("dave")
        .workspace("acme")
        .iat(first_cutoff as f64)
        .sign();
    assert_eq!(
        outcome(&gw, &dave).await,
        accepted(),
        "issued after the cutoff"
    );
    logout(
        &gw,
        "workspaces/acme/users/dave/logout",
        &second_admin,
        json!({}),
    )
    .await;
    let second = logout(&gw, "workspaces/acme/logout-all", &second_admin, json!({})).await;
    let second_cutoff = second["sessions_valid_after"].as_i64().unwrap();
    assert!(second_cutoff >= first_cutoff);

    let expected = [
        (&first_admin, refused("session_invalidated")),
        (&alice, refused("session_invalidated")),
        (&second_admin, accepted()),
    ];
    for (jwt, answer) in &expected {
        assert_eq!(
            &outcome(&gw, jwt).await,
            answer,
            "before the second restart"
        );
    }
    let state_before = snapshot(&gw, "acme", &second_admin).await;

    let gw = gw.crash_and_restart().await;
    for (jwt, answer) in &expected {
        assert_eq!(&outcome(&gw, jwt).await, answer, "after the second restart");
    }
    let (sessions, audit) = snapshot(&gw, "acme", &second_admin).await;
    assert_eq!((sessions.clone(), audit.clone()), state_before);
    assert_eq!(
        sessions,
        json!({
            "workspace": "acme",
            "sessions_valid_after": second_cutoff,
            "preserved_session": "jti:deputy-1",
            "scheduled_logout": null,
        })
    );
    assert_eq!(
        actions(&audit),
        ["logout_all", "user_logout", "logout_all"],
        "both restarts kept every record, newest first"
    );
    let cutoffs: Vec<i64> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "logout_all")
        .map(|e| e["sessions_valid_after"].as_i64().unwrap())
        .collect();
    assert_eq!(cutoffs, [second_cutoff, first_cutoff]);
}

#[tokio::test]
async fn cutoff_never_moves_back_when_a_restart_lowers_the_margin() {
    let upstream = upstream().await;
    let builder = gateway(&upstream).set("sessions.invalidation_margin_secs = 100");
    let config_path = builder.dir().join("sessiongate.toml");
    let gw = builder.start().await;
    let root = admin("root", "acme").iat(earlier()).sign();
    let high = logout(&gw, "workspaces/acme/logout-all", &root, json!({})).await;
    let high_cutoff = high["sessions_valid_after"].as_i64().unwrap();
    assert!(high_cutoff as f64 > now() + 99.0, "margin applied: {high}");

    let config = std::fs::read_to_string(&config_path).unwrap();
    let lowered = config.replace(
        "sessions.invalidation_margin_secs = 100",
        "sessions.invalidation_margin_secs = 0",
    );
    assert_ne!(config, lowered, "the margin line was rewritten");
    std::fs::write(&config_path, lowered).unwrap();

    let gw = gw.crash_and_restart().await;
    let again = logout(&gw, "workspaces/acme/logout-all", &root, json!({})).await;
    assert_eq!(again["sessions_valid_after"], high_cutoff, "max, never min");

    let gw = gw.crash_and_restart().await;
    let (sessions, _) = snapshot(&gw, "acme", &root).await;
    assert_eq!(sessions["sessions_valid_after"], high_cutoff);
    let fresh = token().sub("erin").workspace("acme").sign();
    assert_eq!(
        outcome(&gw, &fresh).await,
        refused("session_invalidated"),
        "a token issued now is still before the kept cutoff"
    );
}

// ============================================================================
// Start-up
// ============================================================================

#[tokio::test]
async fn first_request_after_restart_already_refuses_the_old_token() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    logout(&gw, "workspaces/acme/logout-all", &root, json!({})).await;

    // `crash_and_restart` returns as soon as the new process logs `ready`.
    let gw = gw.crash_and_restart().await;
    assert_eq!(outcome(&gw, &alice).await, refused("session_invalidated"));
    assert_eq!(
        upstream.count(),
        0,
        "the old token never reached the upstream"
    );
}

// ============================================================================
// Memory backend
// ============================================================================

#[tokio::test]
async fn memory_store_warns_at_start_and_forgets_logouts_on_restart() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("store.backend = \"memory\"")
        .start()
        .await;
    assert_memory_warning(&gw.logs());
    let t0 = earlier();
    let root = admin("root", "acme").iat(t0).sign();
    let alice = token().sub("alice").workspace("acme").iat(t0).sign();
    logout(&gw, "workspaces/acme/logout-all", &root, json!({})).await;
    assert_eq!(outcome(&gw, &alice).await, refused("session_invalidated"));

    let gw = gw.crash_and_restart().await;
    assert_memory_warning(&gw.logs());
    // Documented behaviour (SPEC section 6: for tests only): nothing survives a restart.
    assert_eq!(
        outcome(&gw, &alice).await,
        accepted(),
        "memory store forgot the cutoff"
    );
    let (sessions, audit) = snapshot(&gw, "acme", &root).await;
    assert_eq!(
        sessions,
        json!({"workspace": "acme", "sessions_valid_after": null, "preserved_session": null, "scheduled_logout": null})
    );
    assert_eq!(audit, json!({"events": []}));
}

/// A WARN line at start that says the store is in memory and for tests.
fn assert_memory_warning(logs: &str) {
    let warned = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|event| {
            let message = event["message"].as_str().unwrap_or_default();
            event["level"] == "WARN" && message.contains("memory") && message.contains("tests")
        });
    assert!(warned, "no memory-store warning in:\n{logs}");
}

// ============================================================================
// A store that cannot commit
// ============================================================================

#[tokio::test]
async fn a_store_that_cannot_grow_answers_503_changes_nothing_and_recovers() {
    let upstream = upstream().await;
    let mut gw = gateway(&upstream).ignoring_sigxfsz().start().await;
    // ada's own session survives each of her logouts, so she can read the state back
    // however long the rounds take.
    let ada = admin("ada", "acme").iat(earlier()).sign();
    let size = std::fs::metadata(gw.store_path()).unwrap().len();
    set_file_size_limit(gw.pid(), &size.to_string());

    // Logouts until the file would have to grow; the first one that cannot be committed
    // is answered 503 and leaves memory and store exactly as they were.
    let mut refused_at = None;
    for round in 0..2000 {
        let before = snapshot(&gw, "acme", &ada).await;
        let rsp = gw
            .post("/_sessiongate/v1/workspaces/acme/logout-all")
            .bearer_auth(&ada)
            .json(&json!({"reason": format!("round {round} {}", "x".repeat(900))}))
            .send()
            .await
            .unwrap();
        if rsp.status() == 503 {
            let body: Value = rsp.json().await.unwrap();
            assert_eq!(body, json!({"error": "store_unavailable"}));
            assert_eq!(snapshot(&gw, "acme", &ada).await, before, "round {round}");
            refused_at = Some(round);
            break;
        }
        assert_eq!(rsp.status(), 200, "round {round}");
    }
    let refused_at = refused_at.expect("the store file never needed to grow");
    assert!(
        refused_at > 0,
        "the first logout already failed: nothing was committed"
    );
    assert!(
        gw.logs().contains("change not committed"),
        "the failure is logged"
    );

    // Space is back: the next logout commits, and a restart finds every committed one.
    set_file_size_limit(gw.pid(), "unlimited");
    let committed = logout(
        &gw,
        "workspaces/acme/logout-all",
        &ada,
        json!({"reason": "after"}),
    )
    .await;
    let (_, audit) = snapshot(&gw, "acme", &ada).await;
    assert_eq!(audit["events"][0]["id"], committed["audit_id"]);
    assert_eq!(actions(&audit).len(), refused_at + 1);
    let before_restart = snapshot(&gw, "acme", &ada).await;
    gw.kill9();
    let gw = gw.crash_and_restart().await;
    assert_eq!(snapshot(&gw, "acme", &ada).await, before_restart);
}
