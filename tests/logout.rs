//! Session cutoffs through the real binary: SPEC section 1 step 5 and section 2
//! (logout-all, per-user logout, logout-others, the sessions endpoint).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Gateway, TokenBuilder, admin, gateway, now, token, upstream};

const API: &str = "/_sessiongate/v1";

// ============================================================================
// Helpers
// ============================================================================

/// A proxied request with `jwt`: the status and the JSON body.
async fn proxied(gw: &Gateway, jwt: &str) -> (u16, Value) {
    let rsp = gw.get("/app/data").bearer_auth(jwt).send().await.unwrap();
    let status = rsp.status().as_u16();
    let body = rsp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The token reaches the upstream.
async fn assert_passes(gw: &Gateway, jwt: &str, what: &str) {
    let (status, body) = proxied(gw, jwt).await;
    assert_eq!(
        (status, &body["ok"]),
        (200, &json!(true)),
        "{what}: expected the upstream's 200, got {status} {body}"
    );
}

/// The token is refused with 401 and exactly this reason.
async fn assert_refused(gw: &Gateway, jwt: &str, reason: &str, what: &str) {
    let (status, body) = proxied(gw, jwt).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "invalid_token", "reason": reason})),
        "{what}"
    );
}

/// A logout call and the wall-clock window around it.
struct Called {
    status: u16,
    body: Value,
    before: f64,
    after: f64,
}

async fn call(request: reqwest::RequestBuilder) -> Called {
    let before = now();
    let rsp = request.send().await.unwrap();
    let status = rsp.status().as_u16();
    let body = rsp.json().await.unwrap_or(Value::Null);
    let after = now();
    Called {
        status,
        body,
        before,
        after,
    }
}

async fn logout_all(gw: &Gateway, workspace: &str, jwt: &str) -> Called {
    call(
        gw.post(&format!("{API}/workspaces/{workspace}/logout-all"))
            .bearer_auth(jwt),
    )
    .await
}

/// `subject_in_path` is already percent-encoded.
async fn user_logout(gw: &Gateway, workspace: &str, subject_in_path: &str, jwt: &str) -> Called {
    call(
        gw.post(&format!(
            "{API}/workspaces/{workspace}/users/{subject_in_path}/logout"
        ))
        .bearer_auth(jwt),
    )
    .await
}

async fn logout_others(gw: &Gateway, jwt: &str) -> Called {
    call(gw.post(&format!("{API}/me/logout-others")).bearer_auth(jwt)).await
}

/// A logout that must have answered 200; returns its body.
fn ok(called: &Called) -> &Value {
    assert_eq!(called.status, 200, "logout answered {}", called.body);
    &called.body
}

/// `GET .../workspaces/{ws}/sessions`, which must answer 200.
async fn sessions(gw: &Gateway, workspace: &str, jwt: &str) -> Value {
    let rsp = gw
        .get(&format!("{API}/workspaces/{workspace}/sessions"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    rsp.json().await.unwrap()
}

/// The cutoff of a logout response, checked to be `floor(t) + 1 + margin` for a `t`
/// inside the call's wall-clock window.
fn cutoff_of(called: &Called, margin: i64) -> i64 {
    let value = ok(called)["sessions_valid_after"]
        .as_i64()
        .unwrap_or_else(|| panic!("integer sessions_valid_after in {}", called.body));
    let low = called.before.floor() as i64 + 1 + margin;
    let high = called.after.floor() as i64 + 1 + margin;
    assert!(
        (low..=high).contains(&value),
        "sessions_valid_after {value} not in [{low}, {high}]"
    );
    value
}

/// Sorted keys of a JSON object.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`; `None` for any other shape.
fn rfc3339_utc_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60 * 1000 + ss * 1000 + ms)
}

/// Lowercase hex SHA-256 of the compact token.
fn sha256_hex(jwt: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwt.as_bytes()).as_ref())
}

fn with_jti(builder: TokenBuilder, jti: &str) -> TokenBuilder {
    builder.claim("jti", json!(jti))
}

/// Waits (setup, not an assertion) until the wall clock has reached `unix`.
async fn wait_until(unix: i64) {
    while now() < unix as f64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ============================================================================
// logout-all: the cutoff
// ============================================================================

#[tokio::test]
async fn rejects_token_issued_in_the_same_second_just_before_logout_all() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = with_jti(admin("root", "acme"), "root-1").sign();
    let old = token().iat(now().floor() - 100.0).sign();
    let same_second = token().iat(now().floor()).sign();
    assert_passes(&gw, &old, "old token before the logout").await;
    let called = logout_all(&gw, "acme", &root).await;
    ok(&called);
    assert_refused(
        &gw,
        &same_second,
        "session_invalidated",
        "iat = floor(now) just before logout-all",
    )
    .await;
    assert_refused(&gw, &old, "session_invalidated", "iat = now - 100").await;
}

#[tokio::test]
async fn logout_all_answers_with_cutoff_time_preserved_session_and_audit_id() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = with_jti(admin("root", "acme"), "root-jti-7").sign();
    let called = logout_all(&gw, "acme", &root).await;
    let cutoff = cutoff_of(&called, 0);
    let body = &called.body;
    assert_eq!(
        keys(body),
        [
            "audit_id",
            "invalidated_at",
            "preserved_session",
            "sessions_valid_after",
            "workspace"
        ],
        "{body}"
    );
    assert_eq!(body["workspace"], "acme");
    assert_eq!(body["preserved_session"], "jti:root-jti-7");
    let audit_id = body["audit_id"].as_str().expect("audit_id is a string");
    assert!(!audit_id.is_empty());
    let at = body["invalidated_at"]
        .as_str()
        .expect("invalidated_at string");
    let at_ms = rfc3339_utc_millis(at)
        .unwrap_or_else(|| panic!("invalidated_at {at:?} is not RFC 3339 UTC with ms"));
    let (low, high) = (
        (called.before * 1000.0).floor() as i64,
        (called.after * 1000.0).ceil() as i64,
    );
    assert!(
        (low..=high).contains(&at_ms),
        "invalidated_at {at} outside the call"
    );
    assert_eq!(
        at_ms.div_euclid(1000) + 1,
        cutoff,
        "cutoff is floor(invalidated_at) + 1"
    );
}

#[tokio::test]
async fn logout_all_without_jti_preserves_a_short_hash_never_the_token() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = admin("root", "acme").without("jti").sign();
    let called = logout_all(&gw, "acme", &root).await;
    let preserved = ok(&called)["preserved_session"]
        .as_str()
        .expect("preserved_session is a string")
        .to_string();
    let full = sha256_hex(&root);
    let digits = preserved
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("{preserved:?} starts with sha256:"));
    assert!(
        !digits.is_empty() && digits.len() <= 16,
        "at most 16 hex digits: {preserved:?}"
    );
    assert!(
        full.starts_with(digits),
        "{preserved:?} is a prefix of {full}"
    );
    assert!(
        !called.body.to_string().contains(&root),
        "token in response"
    );
    assert!(
        !called.body.to_string().contains(&full),
        "full hash in response"
    );
    assert_passes(&gw, &root, "the jti-less caller token is preserved").await;
    let listed = sessions(&gw, "acme", &root).await;
    assert_eq!(listed["preserved_session"], json!(preserved));
}

#[tokio::test]
async fn token_issued_at_the_cutoff_passes_and_half_a_second_before_fails() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = admin("root", "acme").sign();
    let cutoff = cutoff_of(&logout_all(&gw, "acme", &root).await, 0) as f64;
    let at_cutoff = token().iat(cutoff).sign();
    let just_before = token().iat(cutoff - 0.5).sign();
    assert_passes(&gw, &at_cutoff, "iat = sessions_valid_after").await;
    assert_refused(
        &gw,
        &just_before,
        "session_invalidated",
        "iat = sessions_valid_after - 0.5",
    )
    .await;
}

#[tokio::test]
async fn admin_token_survives_its_own_logout_all_until_another_admin_logs_everyone_out() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let first = with_jti(admin("root", "acme"), "first-admin").sign();
    let c1 = cutoff_of(&logout_all(&gw, "acme", &first).await, 0);
    assert_passes(&gw, &first, "first admin after its own logout-all").await;
    let second = with_jti(admin("carol", "acme"), "second-admin")
        .iat(c1 as f64)
        .sign();
    let called = logout_all(&gw, "acme", &second).await;
    cutoff_of(&called, 0);
    assert_eq!(called.body["preserved_session"], "jti:second-admin");
    assert_refused(
        &gw,
        &first,
        "session_invalidated",
        "first admin after the second admin's logout-all",
    )
    .await;
    assert_passes(&gw, &second, "second admin after its own logout-all").await;
}

#[tokio::test]
async fn logout_all_leaves_other_workspaces_untouched() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let old = now().floor() - 100.0;
    let globex_user = token().workspace("globex").iat(old).sign();
    let acme_user = token().iat(old).sign();
    ok(&logout_all(&gw, "acme", &admin("root", "acme").sign()).await);
    assert_refused(&gw, &acme_user, "session_invalidated", "acme user").await;
    assert_passes(
        &gw,
        &globex_user,
        "globex user issued before the acme logout",
    )
    .await;
    let globex_admin = admin("boss", "globex").sign();
    assert_eq!(
        sessions(&gw, "globex", &globex_admin).await,
        json!({"workspace": "globex", "sessions_valid_after": null, "preserved_session": null, "scheduled_logout": null})
    );
}

#[tokio::test]
async fn cutoff_only_increases_over_successive_logout_alls() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = with_jti(admin("root", "acme"), "root").sign();
    let first = cutoff_of(&logout_all(&gw, "acme", &root).await, 0);
    assert_eq!(
        sessions(&gw, "acme", &root).await["sessions_valid_after"],
        first
    );
    let second = cutoff_of(&logout_all(&gw, "acme", &root).await, 0);
    assert!(second >= first, "cutoff moved back: {first} -> {second}");
    assert_eq!(
        sessions(&gw, "acme", &root).await["sessions_valid_after"],
        second
    );
}

#[tokio::test]
async fn invalidation_margin_refuses_tokens_issued_until_the_margin_has_passed() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("sessions.invalidation_margin_secs = 60")
        .set("jwt.leeway_secs = 120")
        .start()
        .await;
    let root = admin("root", "acme").sign();
    let cutoff = cutoff_of(&logout_all(&gw, "acme", &root).await, 60);
    let fresh = token().iat(now()).sign();
    let one_before = token().iat(cutoff as f64 - 1.0).sign();
    let at_cutoff = token().iat(cutoff as f64).sign();
    assert_refused(
        &gw,
        &fresh,
        "session_invalidated",
        "iat = now, after the logout",
    )
    .await;
    assert_refused(&gw, &one_before, "session_invalidated", "iat = cutoff - 1").await;
    assert_passes(&gw, &at_cutoff, "iat = cutoff").await;
    assert_passes(&gw, &root, "the caller's preserved token").await;
}

#[tokio::test]
async fn cutoff_never_moves_back_when_a_later_logout_proposes_a_lower_one() {
    let upstream = upstream().await;
    let builder = gateway(&upstream).set("sessions.invalidation_margin_secs = 120");
    let config = builder.dir().join("sessiongate.toml");
    let gw = builder.start().await;
    let root = with_jti(admin("root", "acme"), "root").sign();
    let high = cutoff_of(&logout_all(&gw, "acme", &root).await, 120);
    let text = std::fs::read_to_string(&config).unwrap();
    let lowered = text.replace(
        "sessions.invalidation_margin_secs = 120",
        "sessions.invalidation_margin_secs = 0",
    );
    assert_ne!(text, lowered, "the margin line was rewritten");
    std::fs::write(&config, lowered).unwrap();
    let gw = gw.crash_and_restart().await;
    let called = logout_all(&gw, "acme", &root).await;
    assert_eq!(
        ok(&called)["sessions_valid_after"],
        high,
        "the higher cutoff stays"
    );
    assert_eq!(
        sessions(&gw, "acme", &root).await,
        json!({"workspace": "acme", "sessions_valid_after": high, "preserved_session": "jti:root", "scheduled_logout": null})
    );
    let after_low_cutoff = token().iat(called.after.floor() + 1.0).sign();
    assert_refused(
        &gw,
        &after_low_cutoff,
        "session_invalidated",
        "iat = floor(t) + 1 < the kept cutoff",
    )
    .await;
}

// ============================================================================
// Per-user logout, logout-others
// ============================================================================

#[tokio::test]
async fn user_logout_revokes_that_users_earlier_tokens_only() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = admin("root", "acme").sign();
    let bob_now = token().sub("bob").sign();
    let bob_old = token().sub("bob").iat(now().floor() - 100.0).sign();
    let alice = token().sub("alice").iat(now().floor() - 100.0).sign();
    let called = user_logout(&gw, "acme", "bob", &root).await;
    let cutoff = cutoff_of(&called, 0);
    let body = &called.body;
    assert_eq!(
        keys(body),
        [
            "audit_id",
            "invalidated_at",
            "preserved_session",
            "sessions_valid_after",
            "subject",
            "workspace"
        ],
        "{body}"
    );
    assert_eq!(body["workspace"], "acme");
    assert_eq!(body["subject"], "bob");
    assert_eq!(body["preserved_session"], Value::Null);
    assert!(body["audit_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_refused(&gw, &bob_now, "session_revoked", "bob, issued this second").await;
    assert_refused(&gw, &bob_old, "session_revoked", "bob, issued 100 s ago").await;
    assert_passes(&gw, &alice, "alice").await;
    assert_passes(&gw, &root, "the admin who logged bob out").await;
    let bob_new = token().sub("bob").iat(cutoff as f64).sign();
    assert_passes(&gw, &bob_new, "bob signed in again at the cutoff").await;
    assert_eq!(
        sessions(&gw, "acme", &root).await,
        json!({"workspace": "acme", "sessions_valid_after": null, "preserved_session": null, "scheduled_logout": null}),
        "a user logout sets no workspace cutoff"
    );
}

#[tokio::test]
async fn admin_logging_out_their_own_subject_keeps_the_calling_token() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let calling = with_jti(admin("root", "acme"), "root-calling").sign();
    let other = with_jti(admin("root", "acme"), "root-laptop").sign();
    let called = user_logout(&gw, "acme", "root", &calling).await;
    cutoff_of(&called, 0);
    assert_eq!(called.body["subject"], "root");
    assert_eq!(called.body["preserved_session"], "jti:root-calling");
    assert_passes(&gw, &calling, "the calling token").await;
    assert_refused(&gw, &other, "session_revoked", "the admin's other token").await;
}

#[tokio::test]
async fn user_logout_accepts_percent_encoded_subjects() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = admin("root", "acme").sign();
    let target = token().sub("auth0|42").sign();
    let neighbour = token().sub("auth0|43").sign();
    let called = user_logout(&gw, "acme", "auth0%7C42", &root).await;
    cutoff_of(&called, 0);
    assert_eq!(called.body["subject"], "auth0|42");
    assert_refused(&gw, &target, "session_revoked", "auth0|42").await;
    assert_passes(&gw, &neighbour, "auth0|43").await;
}

#[tokio::test]
async fn logout_others_revokes_the_callers_other_sessions_and_keeps_the_calling_one() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let calling = with_jti(token().sub("alice"), "alice-phone").sign();
    let other = with_jti(token().sub("alice"), "alice-laptop").sign();
    let bob = token().sub("bob").iat(now().floor() - 100.0).sign();
    let called = logout_others(&gw, &calling).await;
    let cutoff = cutoff_of(&called, 0);
    assert_eq!(called.body["workspace"], "acme");
    assert_eq!(called.body["subject"], "alice");
    assert_eq!(called.body["preserved_session"], "jti:alice-phone");
    assert!(
        called.body["audit_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_passes(&gw, &calling, "the calling token").await;
    assert_refused(&gw, &other, "session_revoked", "alice's other token").await;
    assert_passes(&gw, &bob, "bob").await;
    let alice_new = token().sub("alice").iat(cutoff as f64).sign();
    assert_passes(&gw, &alice_new, "alice signing in again").await;
}

#[tokio::test]
async fn logout_others_without_subject_is_forbidden() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let anonymous = token().without("sub").sign();
    let called = logout_others(&gw, &anonymous).await;
    assert_eq!(called.status, 403, "{}", called.body);
    assert_passes(&gw, &anonymous, "the sub-less token still works").await;
}

#[tokio::test]
async fn user_logout_by_an_admin_ends_the_session_kept_by_logout_others() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let kept = with_jti(token().sub("alice"), "alice-kept").sign();
    ok(&logout_others(&gw, &kept).await);
    assert_passes(&gw, &kept, "alice's kept session after logout-others").await;
    let root = admin("root", "acme").sign();
    let called = user_logout(&gw, "acme", "alice", &root).await;
    cutoff_of(&called, 0);
    assert_eq!(called.body["preserved_session"], Value::Null);
    assert_refused(
        &gw,
        &kept,
        "session_revoked",
        "alice's kept session after an admin logged her out",
    )
    .await;
}

#[tokio::test]
async fn preserved_session_ends_with_the_callers_exp() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let exp = now() + 1.5;
    let short = with_jti(admin("root", "acme"), "root-short")
        .exp(exp)
        .sign();
    let cutoff = cutoff_of(&logout_all(&gw, "acme", &short).await, 0);
    assert_passes(&gw, &short, "preserved caller before its exp").await;
    wait_until(exp.ceil() as i64).await;
    // Still inside exp + leeway (30 s), so step 3 passes; only step 5 can refuse it.
    assert_refused(
        &gw,
        &short,
        "session_invalidated",
        "preserved caller after its exp: the preserved entry has expired",
    )
    .await;
    let carol = admin("carol", "acme").iat(cutoff as f64).sign();
    assert_eq!(
        sessions(&gw, "acme", &carol).await,
        json!({"workspace": "acme", "sessions_valid_after": cutoff, "preserved_session": null, "scheduled_logout": null})
    );
}

// ============================================================================
// Session time: auth_time, iat back-dating, levels
// ============================================================================

#[tokio::test]
async fn auth_time_cutoff_refuses_fresh_iat_with_an_old_sign_in() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("sessions.time_claim = \"auth_time\"")
        .start()
        .await;
    let signed_in = now().floor();
    let root = admin("root", "acme")
        .claim("auth_time", json!(signed_in))
        .sign();
    let cutoff = cutoff_of(&logout_all(&gw, "acme", &root).await, 0) as f64;
    let refreshed = token()
        .iat(cutoff)
        .claim("auth_time", json!(signed_in - 100.0))
        .sign();
    let signed_in_again = token()
        .iat(signed_in - 100.0)
        .claim("auth_time", json!(cutoff))
        .sign();
    assert_refused(
        &gw,
        &refreshed,
        "session_invalidated",
        "fresh iat, auth_time before the logout",
    )
    .await;
    assert_passes(&gw, &signed_in_again, "auth_time at the cutoff, old iat").await;
    assert_passes(&gw, &root, "the caller's preserved token").await;
}

#[tokio::test]
async fn auth_time_session_claim_is_required() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("sessions.time_claim = \"auth_time\"")
        .start()
        .await;
    let without = token().sign();
    assert_refused(&gw, &without, "missing_claim", "no auth_time").await;
}

#[tokio::test]
async fn iat_backdate_accepts_backdated_tokens_minted_after_logout_all() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("sessions.iat_backdate_secs = 300")
        .start()
        .await;
    let root = admin("root", "acme").sign();
    let called = logout_all(&gw, "acme", &root).await;
    let cutoff = cutoff_of(&called, 0) as f64;
    // The cutoff is on the gateway's clock; T = iat + 300 is compared with it.
    let backdated = token().iat(called.after.floor() - 200.0).sign();
    let before_logout = token().iat(called.before.floor() - 400.0).sign();
    let edge = token().iat(cutoff - 300.0).sign();
    let past_edge = token().iat(cutoff - 300.5).sign();
    assert_passes(&gw, &backdated, "iat back-dated 200 s, minted after").await;
    assert_passes(&gw, &edge, "iat + 300 = cutoff").await;
    assert_refused(
        &gw,
        &before_logout,
        "session_invalidated",
        "iat 400 s before the logout",
    )
    .await;
    assert_refused(
        &gw,
        &past_edge,
        "session_invalidated",
        "iat + 300 = cutoff - 0.5",
    )
    .await;
}

#[tokio::test]
async fn logout_all_after_a_user_logout_refuses_that_users_tokens_in_between() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = with_jti(admin("root", "acme"), "root").sign();
    let user_cutoff = cutoff_of(&user_logout(&gw, "acme", "bob", &root).await, 0);
    let between = token().sub("bob").iat(user_cutoff as f64).sign();
    assert_passes(&gw, &between, "bob at the user cutoff, before logout-all").await;
    wait_until(user_cutoff).await;
    let called = logout_all(&gw, "acme", &root).await;
    let workspace_cutoff = cutoff_of(&called, 0);
    assert!(workspace_cutoff > user_cutoff);
    assert_eq!(called.body["preserved_session"], "jti:root");
    assert_refused(
        &gw,
        &between,
        "session_invalidated",
        "bob between user and workspace cutoffs",
    )
    .await;
    assert_passes(&gw, &root, "the preserved admin").await;
    let bob_new = token().sub("bob").iat(workspace_cutoff as f64).sign();
    assert_passes(&gw, &bob_new, "bob at the workspace cutoff").await;
}

#[tokio::test]
async fn user_logout_after_logout_all_refuses_that_users_tokens_in_between() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = admin("root", "acme").sign();
    let workspace_cutoff = cutoff_of(&logout_all(&gw, "acme", &root).await, 0);
    let bob = token().sub("bob").iat(workspace_cutoff as f64).sign();
    let alice = token().sub("alice").iat(workspace_cutoff as f64).sign();
    wait_until(workspace_cutoff).await;
    let user_cutoff = cutoff_of(&user_logout(&gw, "acme", "bob", &root).await, 0);
    assert!(user_cutoff > workspace_cutoff);
    assert_refused(
        &gw,
        &bob,
        "session_revoked",
        "bob between workspace and user cutoffs",
    )
    .await;
    assert_passes(&gw, &alice, "alice at the workspace cutoff").await;
}

// ============================================================================
// The sessions endpoint
// ============================================================================

#[tokio::test]
async fn sessions_endpoint_reports_no_cutoff_before_any_logout_and_the_cutoff_after() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let root = with_jti(admin("root", "acme"), "root-session").sign();
    assert_eq!(
        sessions(&gw, "acme", &root).await,
        json!({"workspace": "acme", "sessions_valid_after": null, "preserved_session": null, "scheduled_logout": null})
    );
    let cutoff = cutoff_of(&logout_all(&gw, "acme", &root).await, 0);
    assert_eq!(
        sessions(&gw, "acme", &root).await,
        json!({
            "workspace": "acme",
            "sessions_valid_after": cutoff,
            "preserved_session": "jti:root-session",
            "scheduled_logout": null,
        })
    );
}

// ============================================================================
// sessions.user_claim
// ============================================================================

#[tokio::test]
async fn user_claim_names_the_user_of_per_user_cutoffs_while_x_auth_subject_stays_sub() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("sessions.user_claim = \"profile.email\"")
        .start()
        .await;
    let earlier = now().floor() - 5.0;
    let alice = |sub: &str, email: &str| {
        token()
            .sub(sub)
            .claim("profile", json!({"email": email}))
            .iat(earlier)
            .sign()
    };
    let (laptop, phone) = (
        alice("u-1", "alice@acme.test"),
        alice("u-2", "alice@acme.test"),
    );
    let other = alice("u-1", "bob@acme.test");
    let ada = admin("ada", "acme").iat(earlier).sign();
    ok(&user_logout(&gw, "acme", "alice@acme.test", &ada).await);
    assert_refused(&gw, &laptop, "session_revoked", "alice's first token").await;
    assert_refused(
        &gw,
        &phone,
        "session_revoked",
        "alice's token with another sub",
    )
    .await;
    assert_passes(&gw, &other, "same sub, another user").await;
    assert_eq!(upstream.last().headers["x-auth-subject"], "u-1");

    // logout-others needs the user claim, not `sub`.
    let no_user = token().sub("carol").sign();
    assert_eq!(logout_others(&gw, &no_user).await.status, 403);
    let wrong_type = token().claim("profile", json!({"email": 42})).sign();
    assert_refused(
        &gw,
        &wrong_type,
        "malformed_token",
        "a user claim of the wrong type",
    )
    .await;
}
