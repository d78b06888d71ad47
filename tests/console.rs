//! SPEC sections 2 (`GET {prefix}/v1/me`), 11 (activity) and 12 (the Security settings
//! page) through the real binary, without a browser: what every console response carries,
//! who the page learns it is talking to, and the activity figures the dialog shows.
//! The page itself, in a real browser: tests/console_browser.rs.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Gateway, admin, gateway, redis_server, token, upstream};

const PAGE: &str = "/_sessiongate/console/";

/// SPEC section 12: every console response carries exactly these.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

fn assert_security_headers(what: &str, rsp: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            rsp.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name}"
        );
    }
}

async fn activity(gw: &Gateway, workspace: &str, jwt: &str) -> Value {
    gw.admin_get(&format!("workspaces/{workspace}/activity"), jwt)
        .await
}

/// Sends one proxied request per token, 32 at a time; every one must pass.
async fn pass_all(gw: &Gateway, tokens: &[String]) {
    let statuses: Vec<u16> = futures_util::stream::iter(tokens)
        .map(|jwt| gw.status_with("/app", jwt))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "every request passes");
}

/// Tokens of `sessions` distinct sessions in `workspace`, `per_user` sessions per user.
fn sessions(workspace: &str, range: std::ops::Range<usize>, per_user: usize) -> Vec<String> {
    range
        .map(|i| {
            token()
                .workspace(workspace)
                .sub(&format!("user-{}", i / per_user))
                .claim("jti", json!(format!("{workspace}-{i}")))
                .sign()
        })
        .collect()
}

fn assert_within_3_percent(what: &str, counted: &Value, truth: f64) {
    let counted = counted
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {counted}"));
    let error = (counted - truth).abs() / truth;
    assert!(
        error < 0.03,
        "{what}: {counted} for {truth} ({:.2} %)",
        error * 100.0
    );
    println!("{what}: {counted} for {truth} ({:.2} % off)", error * 100.0);
}

/// Polls `probe` every 50 ms until it returns true, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ============================================================================
// The page and its headers
// ============================================================================

#[tokio::test]
async fn every_console_response_carries_the_security_headers() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    for entry in ["/_sessiongate", "/_sessiongate/", "/_sessiongate/console"] {
        let rsp = gw.get(entry).send().await.unwrap();
        assert_eq!(rsp.status(), 302, "{entry}");
        assert_eq!(rsp.headers()["location"], PAGE, "{entry}");
        assert_security_headers(entry, &rsp);
    }
    for (path, content_type) in [
        (PAGE, "text/html; charset=utf-8"),
        (
            "/_sessiongate/console/app.js",
            "text/javascript; charset=utf-8",
        ),
        ("/_sessiongate/console/style.css", "text/css; charset=utf-8"),
        ("/_sessiongate/console/settings.json", "application/json"),
    ] {
        let rsp = gw.get(path).send().await.unwrap();
        assert_eq!(rsp.status(), 200, "{path}");
        assert_eq!(rsp.headers()["content-type"], content_type, "{path}");
        assert_security_headers(path, &rsp);
        assert!(!rsp.text().await.unwrap().is_empty(), "{path}");
    }
    let rsp = gw.post(PAGE).send().await.unwrap();
    assert_eq!(rsp.status(), 405);
    assert_eq!(rsp.headers()["allow"], "GET");
    assert_security_headers("POST to the page", &rsp);
    assert_eq!(upstream.count(), 0, "the console is never forwarded");
}

#[tokio::test]
async fn the_page_is_plain_files_that_call_only_the_admin_api() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("auth.login_url = \"https://login.example/in?app=1\"")
        .start()
        .await;
    let html = gw.get(PAGE).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="style.css">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from another host"
    );
    assert!(html.contains("<dialog"), "the confirmation is a <dialog>");
    assert_eq!(html.matches(">Log all users out</button>").count(), 2);
    let settings: Value = gw
        .get("/_sessiongate/console/settings.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings,
        json!({"login_url": "https://login.example/in?app=1"})
    );
}

#[tokio::test]
async fn admin_console_false_turns_the_page_off_and_keeps_the_api() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("admin.console = false")
        .start()
        .await;
    for path in [
        "/_sessiongate",
        "/_sessiongate/console",
        PAGE,
        "/_sessiongate/console/app.js",
        "/_sessiongate/console/settings.json",
    ] {
        let rsp = gw.get(path).send().await.unwrap();
        assert_eq!(rsp.status(), 404, "{path}");
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    let root = admin("root", "acme").sign();
    let me = gw.admin_get("me", &root).await;
    assert_eq!(me["workspace"], "acme");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_custom_prefix_moves_the_console_with_it() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("admin.path_prefix = \"/admin\"")
        .start()
        .await;
    let rsp = gw.get("/admin/").send().await.unwrap();
    assert_eq!(rsp.status(), 302);
    assert_eq!(rsp.headers()["location"], "/admin/console/");
    assert_eq!(
        gw.get("/admin/console/").send().await.unwrap().status(),
        200
    );
}

// ============================================================================
// GET {prefix}/v1/me
// ============================================================================

#[tokio::test]
async fn me_tells_any_valid_token_who_it_is() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("server.trusted_proxies = [\"127.0.0.1/32\"]")
        .start()
        .await;
    let user = token().sub("alice").claim("jti", json!("alice-1")).sign();
    let me = gw.admin_get("me", &user).await;
    assert_eq!(
        me,
        json!({"workspace": "acme", "subject": "alice", "session": "jti:alice-1",
               "is_admin": false, "client_ip": "127.0.0.1"})
    );
    // A hashed session id shows 16 hex digits; the client IP follows trusted proxies.
    let ada = admin("ada", "acme").without("jti").sign();
    let rsp = gw
        .get("/_sessiongate/v1/me")
        .bearer_auth(&ada)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let me: Value = rsp.json().await.unwrap();
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["client_ip"], "203.0.113.9");
    let session = me["session"].as_str().unwrap();
    let hex = session
        .strip_prefix("sha256:")
        .expect("a hashed session id");
    assert_eq!(hex.len(), 16, "{session}");
    assert!(!ada.contains(hex), "never the token");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn me_refuses_a_missing_or_bad_token() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let rsp = gw.get("/_sessiongate/v1/me").send().await.unwrap();
    assert_eq!(rsp.status(), 401);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
    let tampered = format!("{}x", token().sign());
    assert_eq!(gw.status_with("/_sessiongate/v1/me", &tampered).await, 401);
    let rsp = gw
        .post("/_sessiongate/v1/me")
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 405);
}

// ============================================================================
// CSRF, as the page calls the API
// ============================================================================

#[tokio::test]
async fn a_cookie_post_from_another_origin_is_refused_and_the_pages_own_is_allowed() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).set("auth.cookie = \"sg\"").start().await;
    let ada = admin("ada", "acme")
        .claim("jti", json!("ada-cookie"))
        .sign();
    let sessions = || gw.admin_get("workspaces/acme/sessions", &ada);
    let before = sessions().await;
    let post = |origin: &str| {
        gw.post("/_sessiongate/v1/workspaces/acme/logout-all")
            .header("cookie", format!("sg={ada}"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"reason": "from the page"}"#)
            .send()
    };
    for origin in ["http://evil.example", "null"] {
        let rsp = post(origin).await.unwrap();
        assert_eq!(rsp.status(), 403, "{origin}");
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(sessions().await, before, "a refused POST changes nothing");
    let rsp = post(&format!("http://{}", gw.addr)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["preserved_session"], "jti:ada-cookie");
}

// ============================================================================
// Activity (SPEC section 11)
// ============================================================================

#[tokio::test]
async fn activity_counts_10000_sessions_within_3_percent_and_logout_all_resets_it() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ada = admin("ada", "acme").sign();
    let empty = activity(&gw, "acme", &ada).await;
    assert_eq!(
        empty,
        json!({"workspace": "acme", "window_secs": 3600, "active_sessions": 0, "active_users": 0})
    );
    // 10,000 sessions of 5,000 users, then 500 of them again, and another workspace.
    let tokens = sessions("acme", 0..10_000, 2);
    pass_all(&gw, &tokens).await;
    pass_all(&gw, &tokens[..500]).await;
    pass_all(&gw, &sessions("other", 0..50, 1)).await;
    let counted = activity(&gw, "acme", &ada).await;
    assert_within_3_percent("sessions", &counted["active_sessions"], 10_000.0);
    assert_within_3_percent("users", &counted["active_users"], 5_000.0);
    let other = activity(&gw, "other", &admin("root", "other").sign()).await;
    assert_eq!(other["active_sessions"], 50);

    // A logout-all: sessions seen before it no longer count; new ones do.
    assert_eq!(gw.logout_all("acme", &ada).await.status(), 200);
    let reset = activity(&gw, "acme", &ada).await;
    assert_eq!(
        (
            reset["active_sessions"].clone(),
            reset["active_users"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(
        gw.status_with("/app", &tokens[0]).await,
        401,
        "refused: not counted"
    );
    assert_eq!(gw.status_with("/app", &ada).await, 200);
    let after = activity(&gw, "acme", &ada).await;
    assert_eq!(
        (
            after["active_sessions"].clone(),
            after["active_users"].clone()
        ),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn activity_is_for_admins_of_the_workspace() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let path = "/_sessiongate/v1/workspaces/acme/activity";
    assert_eq!(gw.get(path).send().await.unwrap().status(), 401);
    assert_eq!(gw.status_with(path, &token().sign()).await, 403);
    assert_eq!(
        gw.status_with(path, &admin("root", "other").sign()).await,
        403
    );
}

#[tokio::test]
async fn activity_merges_the_fleet_and_every_instance_resets_it_at_a_logout_all() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let upstream = upstream().await;
    let one = gateway(&upstream).redis(&redis).start().await;
    let two = gateway(&upstream).redis(&redis).start().await;
    let ada = admin("ada", "acme").sign();
    // 2,000 sessions on each, 1,000 of them on both: 3,000 distinct sessions (the test
    // above counts 10,000; this one is about merging, and requests are not free).
    let tokens = sessions("acme", 0..3000, 1);
    pass_all(&one, &tokens[..2000]).await;
    pass_all(&two, &tokens[1000..]).await;
    let within_3_percent = |counted: &Value| {
        let sessions = counted["active_sessions"].as_f64().unwrap();
        let users = counted["active_users"].as_f64().unwrap();
        (sessions - 3000.0).abs() < 90.0 && (users - 3000.0).abs() < 90.0
    };
    for gw in [&one, &two] {
        // A share taken while the other instance was still busy is replaced within 2 s.
        eventually(
            "the whole fleet counted",
            Duration::from_secs(10),
            || async { within_3_percent(&activity(gw, "acme", &ada).await) },
        )
        .await;
        let counted = activity(gw, "acme", &ada).await;
        assert_within_3_percent("fleet sessions", &counted["active_sessions"], 3000.0);
        assert_within_3_percent("fleet users", &counted["active_users"], 3000.0);
    }
    assert_eq!(two.logout_all("acme", &ada).await.status(), 200);
    // Both instances forget at once: their own windows, and the other's older share.
    for gw in [&one, &two] {
        eventually(
            "the reset reaching every instance",
            Duration::from_secs(5),
            || async { activity(gw, "acme", &ada).await["active_sessions"] == 0 },
        )
        .await;
    }
}
