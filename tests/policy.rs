//! Workspace policies (SPEC sections 1 step 6, 3, 9): the admin API that sets them, their
//! enforcement on proxied requests and on the admin API, on every store.
//!
//! The gateway trusts 127.0.0.1 as a proxy here, so each request names its client IP in
//! `X-Forwarded-For`: the IP rule is tested at its exact edges without extra interfaces.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Gateway, GatewayBuilder, admin, now, token};

const POLICY: &str = "/_sessiongate/v1/workspaces/acme/policy";
const OFFICE: &str = "203.0.113.9";

fn trusting_localhost(builder: GatewayBuilder) -> GatewayBuilder {
    builder.set("server.trusted_proxies = [\"127.0.0.1/32\"]")
}

async fn start() -> (support::Upstream, Gateway) {
    start_with(&[]).await
}

/// A gateway trusting 127.0.0.1's `X-Forwarded-For`, with extra config `lines`.
async fn start_with(lines: &[&str]) -> (support::Upstream, Gateway) {
    let upstream = support::upstream().await;
    let builder = trusting_localhost(support::gateway(&upstream));
    let gw = lines
        .iter()
        .fold(builder, |b, line| b.set(line))
        .start()
        .await;
    (upstream, gw)
}

/// One more instance of the fleet sharing `redis`.
async fn on_redis(upstream: &support::Upstream, redis: &support::RedisServer) -> Gateway {
    trusting_localhost(support::gateway(upstream).redis(redis))
        .start()
        .await
}

/// carol clears the policy with `If-Match: tag`: the status.
async fn clear_if_match(gw: &Gateway, tag: &str) -> u16 {
    let request = gw
        .put_policy("acme", &carol(), &json!({}))
        .header("if-match", tag);
    let rsp = request
        .header("x-forwarded-for", OFFICE)
        .send()
        .await
        .unwrap();
    rsp.status().as_u16()
}

/// An admin `GET` of `ws/acme/{rest}` from `ip`: status and body.
async fn read_from(gw: &Gateway, rest: &str, jwt: &str, ip: &str) -> (u16, Value) {
    let path = format!("/_sessiongate/v1/workspaces/acme/{rest}");
    let request = gw.get(&path).bearer_auth(jwt).header("x-forwarded-for", ip);
    let rsp = request.send().await.unwrap();
    (rsp.status().as_u16(), rsp.json().await.unwrap())
}

/// `PUT .../policy` by `jwt` from `ip`: status and body.
async fn put(gw: &Gateway, jwt: &str, ip: &str, body: Value) -> (u16, Value) {
    let rsp = gw
        .put_policy("acme", jwt, &body)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

/// `PUT` that must succeed.
async fn set(gw: &Gateway, jwt: &str, ip: &str, body: Value) -> Value {
    let (status, answer) = put(gw, jwt, ip, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// `GET .../policy` from `ip`: the body and the `ETag`.
async fn get(gw: &Gateway, jwt: &str, ip: &str) -> (Value, String) {
    let rsp = gw
        .get(POLICY)
        .bearer_auth(jwt)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let etag = rsp.headers()["etag"].to_str().unwrap().to_string();
    (rsp.json().await.unwrap(), etag)
}

/// A proxied `GET /app` with `jwt` from `ip`.
async fn proxied(gw: &Gateway, jwt: &str, ip: &str) -> reqwest::Response {
    gw.get("/app")
        .bearer_auth(jwt)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

/// A proxied request from `ip` refused with 401: its `WWW-Authenticate` challenge and body.
async fn challenge(gw: &Gateway, jwt: &str, ip: &str) -> (String, Value) {
    let rsp = proxied(gw, jwt, ip).await;
    assert_eq!(rsp.status(), 401);
    let challenge = rsp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    (challenge, rsp.json().await.unwrap())
}

async fn status_from(gw: &Gateway, jwt: &str, ip: &str) -> u16 {
    proxied(gw, jwt, ip).await.status().as_u16()
}

fn carol() -> String {
    admin("carol", "acme").sign()
}

// ============================================================================
// The document
// ============================================================================

#[tokio::test]
async fn a_workspace_without_a_policy_answers_nulls_and_an_etag() {
    let (_upstream, gw) = start().await;
    let (body, etag) = get(&gw, &carol(), OFFICE).await;
    assert_eq!(
        body,
        json!({"workspace": "acme", "ip_allowlist": null, "require_claims": [],
               "max_session_age_secs": null, "updated_at": null, "updated_by": null})
    );
    assert_eq!(etag, "\"v0\"");
    let user = token().sign();
    let rsp = gw.get(POLICY).bearer_auth(&user).send().await.unwrap();
    assert_eq!(rsp.status(), 403, "not an admin");
    let other = admin("dave", "globex").sign();
    let rsp = gw.get(POLICY).bearer_auth(&other).send().await.unwrap();
    assert_eq!(rsp.status(), 403, "admin of another workspace");
    let rsp = gw.client_delete(POLICY, &carol()).await;
    assert_eq!(rsp.status(), 405);
    assert_eq!(rsp.headers()["allow"], "GET, PUT");
}

#[tokio::test]
async fn put_replaces_the_whole_policy_and_answers_it_with_a_new_etag() {
    let (_upstream, gw) = start().await;
    let answer = set(
        &gw,
        &carol(),
        OFFICE,
        json!({"ip_allowlist": ["203.0.113.77/24"], "max_session_age_secs": 3600,
               "reason": "office only", "category": "policy_change", "ticket": "SEC-1"}),
    )
    .await;
    assert_eq!(
        answer["ip_allowlist"],
        json!(["203.0.113.0/24"]),
        "canonical form"
    );
    assert_eq!(answer["updated_by"], "carol");
    assert!(answer["audit_id"].is_string());
    assert!(
        answer.get("sessions_valid_after").is_none(),
        "no logout asked"
    );
    let (body, etag) = get(&gw, &carol(), OFFICE).await;
    assert_eq!(body["max_session_age_secs"], 3600);
    assert_eq!(etag, "\"v1\"");

    // The whole document: what is left out is no rule any more.
    let with_amr = admin("carol", "acme").claim("amr", json!(["pwd"])).sign();
    let rules = json!({"require_claims": [{"claim": "amr", "any_of": ["pwd"]}]});
    set(&gw, &with_amr, OFFICE, rules).await;
    let (body, etag) = get(&gw, &with_amr, OFFICE).await;
    assert_eq!(body["ip_allowlist"], Value::Null);
    assert_eq!(body["max_session_age_secs"], Value::Null);
    assert_eq!(etag, "\"v2\"");

    let audit = gw.admin_get("workspaces/acme/audit", &with_amr).await;
    let newest = &audit["events"][0];
    assert_eq!(newest["action"], "policy_update");
    assert_eq!(
        newest["policy_before"]["ip_allowlist"],
        json!(["203.0.113.0/24"])
    );
    assert_eq!(newest["policy_after"]["require_claims"][0]["claim"], "amr");
    let first = &audit["events"][1];
    assert_eq!(first["policy_before"]["require_claims"], json!([]));
    assert_eq!(
        (first["category"].as_str(), first["ticket"].as_str()),
        (Some("policy_change"), Some("SEC-1"))
    );
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let (_upstream, gw) = start().await;
    let (_, v0) = get(&gw, &carol(), OFFICE).await;
    let with_tag = |tag: &str, age: u64| {
        gw.put_policy("acme", &carol(), &json!({"max_session_age_secs": age}))
            .header("if-match", tag)
            .header("x-forwarded-for", OFFICE)
    };
    let rsp = with_tag(&v0, 3600).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let v1 = rsp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(v1, "\"v1\"", "the PUT answers the new ETag");

    // A second admin still holding v0 does not overwrite the first one's edit.
    let rsp = with_tag(&v0, 7200).send().await.unwrap();
    assert_eq!(rsp.status(), 412);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["error"], "precondition_failed");
    for tag in ["W/\"v1\"", "\"garbage\""] {
        assert_eq!(
            with_tag(tag, 7200).send().await.unwrap().status(),
            412,
            "{tag}"
        );
    }
    let (body, etag) = get(&gw, &carol(), OFFICE).await;
    assert_eq!(
        (body["max_session_age_secs"].as_u64(), etag),
        (Some(3600), v1.clone())
    );
    assert_eq!(with_tag(&v1, 7200).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bad_documents_are_400_naming_the_field_and_change_nothing() {
    let (_upstream, gw) = start().await;
    let many_cidrs: Vec<String> = (0..1001)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let rule = json!({"claim": "amr", "any_of": ["mfa"]});
    let many_rules: Vec<Value> = (0..17).map(|_| rule.clone()).collect();
    let cases = [
        (json!({"ip_allowlist": many_cidrs}), "ip_allowlist"),
        (
            json!({"ip_allowlist": ["203.0.113.0/24", "203.0.113.0/40"]}),
            "ip_allowlist[1]",
        ),
        (json!({"ip_allowlist": ["not-an-ip"]}), "ip_allowlist[0]"),
        (json!({"ip_allowlist": []}), "ip_allowlist"),
        (json!({"require_claims": many_rules}), "require_claims"),
        (
            json!({"require_claims": [{"claim": "amr", "any_of": ["x".repeat(10_000)]}]}),
            "require_claims[0].any_of[0]",
        ),
        (
            json!({"require_claims": [{"claim": "", "any_of": ["x"]}]}),
            "require_claims[0].claim",
        ),
        (
            json!({"require_claims": [{"claim": "amr", "any_of": [1]}]}),
            "require_claims[0].any_of[0]",
        ),
        (json!({"max_session_age_secs": 59}), "max_session_age_secs"),
        (
            json!({"max_session_age_secs": "3600"}),
            "max_session_age_secs",
        ),
        (json!({"ip_allowlist": null, "colour": "red"}), "colour"),
        (json!({"logout": 1}), "logout"),
        (json!({"reason": "r".repeat(1025)}), "reason"),
        (json!({"category": "whim"}), "category"),
    ];
    for (body, field) in cases {
        let (status, answer) = put(&gw, &carol(), OFFICE, body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"], "bad_request");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")) || message.starts_with(field),
            "{field}: {message}"
        );
        assert!(
            message.len() < 400,
            "the message does not echo a huge value back"
        );
    }
    for raw in [
        "{",
        "[]",
        "",
        "null",
        "{\"ip_allowlist\": [\"10.0.0.0/8\"],}",
    ] {
        let rsp = gw
            .client_put_raw(POLICY, &carol(), raw.as_bytes().to_vec())
            .await;
        assert_eq!(rsp.status(), 400, "{raw:?}");
    }
    let oversized = format!("{{\"reason\": \"{}\"}}", "x".repeat(65 * 1024));
    let rsp = gw
        .client_put_raw(POLICY, &carol(), oversized.into_bytes())
        .await;
    assert_eq!(rsp.status(), 413);
    let (_, etag) = get(&gw, &carol(), OFFICE).await;
    assert_eq!(etag, "\"v0\"", "nothing was ever written");
}

// ============================================================================
// Enforcement
// ============================================================================

#[tokio::test]
async fn the_allowlist_admits_exactly_its_ranges_v4_v6_and_mapped() {
    let (upstream, gw) = start().await;
    set(
        &gw,
        &carol(),
        OFFICE,
        json!({"ip_allowlist": ["203.0.113.0/24", "2001:db8::/32"]}),
    )
    .await;
    let user = token().sign();
    for inside in [
        "203.0.113.0",
        "203.0.113.255",
        "2001:db8::",
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:203.0.113.7",
    ] {
        assert_eq!(status_from(&gw, &user, inside).await, 200, "{inside}");
    }
    let forwarded = upstream.count();
    for outside in [
        "203.0.112.255",
        "203.0.114.0",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
        "::ffff:203.0.114.1",
        "127.0.0.1",
    ] {
        let rsp = proxied(&gw, &user, outside).await;
        assert_eq!(rsp.status(), 403, "{outside}");
        assert!(rsp.headers().get("www-authenticate").is_none());
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "forbidden", "reason": "ip_not_allowed"})
        );
    }
    assert_eq!(
        upstream.count(),
        forwarded,
        "refused requests never reach the upstream"
    );
    let other_workspace = token().workspace("globex").sign();
    assert_eq!(
        status_from(&gw, &other_workspace, "198.51.100.1").await,
        200
    );
    let text = gw.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("sessiongate_rejections_total{reason=\"ip_not_allowed\"} 6"),
        "{text}"
    );
}

#[tokio::test]
async fn an_ip_refusal_is_never_a_redirect_and_the_admin_api_is_subject_to_it() {
    let (_upstream, gw) =
        start_with(&["auth.login_url = \"https://login.example.com/signin\""]).await;
    set(&gw, &carol(), OFFICE, json!({"ip_allowlist": [OFFICE]})).await;
    let rsp = gw
        .get("/app")
        .bearer_auth(token().sign())
        .header("accept", "text/html")
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 403, "a browser navigation too");
    let (status, body) = read_from(&gw, "sessions", &carol(), "198.51.100.1").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("ip_not_allowed"))
    );
    let (status, _) = put(&gw, &carol(), "198.51.100.1", json!({})).await;
    assert_eq!(status, 403, "nor can it lift the policy from outside");
}

#[tokio::test]
async fn required_claims_accept_a_string_or_an_array_and_refuse_missing_or_wrong_types() {
    let (_upstream, gw) = start().await;
    let admin_jwt = admin("carol", "acme")
        .claim("org", json!({"amr": ["pwd", "mfa"]}))
        .sign();
    set(
        &gw,
        &admin_jwt,
        OFFICE,
        json!({"require_claims": [{"claim": "org.amr", "any_of": ["mfa", "saml"]}]}),
    )
    .await;
    let with = |amr: Value| token().claim("org", json!({"amr": amr})).sign();
    assert_eq!(status_from(&gw, &with(json!("saml")), OFFICE).await, 200);
    assert_eq!(
        status_from(&gw, &with(json!(["otp", "mfa"])), OFFICE).await,
        200
    );
    for (refused, what) in [
        (with(json!("pwd")), "another string"),
        (with(json!(["pwd"])), "an array without it"),
        (with(json!(1)), "a number"),
        (with(json!({"mfa": true})), "an object"),
        (token().sign(), "missing"),
    ] {
        let (challenge, body) = challenge(&gw, &refused, OFFICE).await;
        assert_eq!(
            challenge,
            "Bearer realm=\"sessiongate\", error=\"insufficient_user_authentication\", error_description=\"sign_in_method_not_allowed\"",
            "{what}"
        );
        assert_eq!(
            body,
            json!({"error": "insufficient_user_authentication", "reason": "sign_in_method_not_allowed"})
        );
    }
    assert_eq!(
        status_from(&gw, &admin_jwt, OFFICE).await,
        200,
        "the policy applies to admins too, who pass"
    );
}

#[tokio::test]
async fn an_unmet_acr_and_a_too_old_session_name_what_a_fresh_sign_in_needs() {
    let (_upstream, gw) =
        start_with(&["auth.login_url = \"https://login.example.com/signin?app=1\""]).await;
    let admin_jwt = admin("carol", "acme").claim("acr", json!("urn:mfa")).sign();
    set(
        &gw,
        &admin_jwt,
        OFFICE,
        json!({"require_claims": [{"claim": "acr", "any_of": ["urn:mfa", "phr"]}], "max_session_age_secs": 60}),
    )
    .await;
    let no_acr = token().sign();
    // Exactly max_session_age_secs old is too old: `now - T < max` fails at the boundary.
    let at_boundary = token().claim("acr", json!("phr")).iat(now().floor() - 60.0);
    let at_boundary = at_boundary.sign();
    for (jwt, ending) in [
        (
            &no_acr,
            "\"sign_in_method_not_allowed\", acr_values=\"urn:mfa phr\"",
        ),
        (&at_boundary, "\"session_too_old\", max_age=\"60\""),
    ] {
        let (challenge, _) = challenge(&gw, jwt, OFFICE).await;
        assert!(challenge.ends_with(ending), "{challenge}");
    }
    let young = token()
        .claim("acr", json!("phr"))
        .iat(now().floor() - 30.0)
        .sign();
    assert_eq!(status_from(&gw, &young, OFFICE).await, 200);

    for (jwt, step_up) in [
        (&no_acr, "&acr_values=urn%3Amfa%20phr"),
        (&at_boundary, "&max_age=60"),
    ] {
        let rsp = gw
            .get("/app?x=1")
            .bearer_auth(jwt)
            .header("accept", "text/html")
            .header("x-forwarded-for", OFFICE)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 302);
        let location = rsp.headers()["location"].to_str().unwrap();
        assert_eq!(
            location,
            format!("https://login.example.com/signin?app=1&return_to=%2Fapp%3Fx%3D1{step_up}")
        );
    }
}

#[tokio::test]
async fn the_lockout_guard_refuses_each_rule_the_caller_would_fail() {
    let (_upstream, gw) = start().await;
    let old_admin = admin("carol", "acme").iat(now().floor() - 600.0).sign();
    let cases = [
        (json!({"ip_allowlist": ["198.51.100.0/24"]}), "ip_allowlist"),
        (
            json!({"require_claims": [{"claim": "amr", "any_of": ["mfa"]}]}),
            "require_claims",
        ),
        (json!({"max_session_age_secs": 300}), "max_session_age_secs"),
    ];
    for (body, rule) in cases {
        let (status, answer) = put(&gw, &old_admin, OFFICE, body).await;
        assert_eq!(status, 409, "{rule}: {answer}");
        assert_eq!(answer["error"], "conflict");
        assert_eq!(answer["reason"], "would_lock_out_caller");
        assert!(
            answer["message"].as_str().unwrap().contains(rule),
            "{answer}"
        );
    }
    let (_, etag) = get(&gw, &old_admin, OFFICE).await;
    assert_eq!(etag, "\"v0\"", "nothing changed");
    let user = token().iat(now().floor() - 600.0).sign();
    assert_eq!(status_from(&gw, &user, "198.51.100.1").await, 200);
}

#[tokio::test]
async fn logout_true_moves_the_cutoff_in_the_same_commit_and_keeps_the_caller() {
    let (_upstream, gw) = start().await;
    let user = token().iat(now().floor() - 5.0).sign();
    assert_eq!(status_from(&gw, &user, OFFICE).await, 200);
    let admin_jwt = admin("carol", "acme").iat(now().floor() - 5.0).sign();
    let answer = set(
        &gw,
        &admin_jwt,
        OFFICE,
        json!({"ip_allowlist": ["203.0.113.0/24"], "logout": true, "reason": "new office"}),
    )
    .await;
    let cutoff = answer["sessions_valid_after"].as_i64().unwrap();
    assert!(cutoff as f64 > now() - 5.0);
    let rsp = proxied(&gw, &user, OFFICE).await;
    assert_eq!(rsp.status(), 401);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["reason"], "session_invalidated");
    assert_eq!(
        status_from(&gw, &admin_jwt, OFFICE).await,
        200,
        "the caller is preserved"
    );
    assert_eq!(
        status_from(&gw, &admin_jwt, "198.51.100.1").await,
        403,
        "and subject to the policy"
    );
    let (_, sessions) = read_from(&gw, "sessions", &admin_jwt, OFFICE).await;
    assert_eq!(sessions["sessions_valid_after"], cutoff);
    let (_, audit) = read_from(&gw, "audit", &admin_jwt, OFFICE).await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one commit, one audit record");
    assert_eq!(events[0]["action"], "policy_update");
    assert_eq!(events[0]["sessions_valid_after"], cutoff);
}

#[tokio::test]
async fn a_cookie_caller_needs_a_matching_origin_to_put() {
    let (_upstream, gw) = start_with(&["auth.cookie = \"sg\""]).await;
    let send = |origin: Option<&str>| {
        let mut request = support::client()
            .put(gw.url(POLICY))
            .header("cookie", format!("sg={}", carol()))
            .header("x-forwarded-for", OFFICE)
            .json(&json!({"max_session_age_secs": 3600}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 403);
    assert_eq!(
        send(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    let own = format!("http://{}", gw.addr);
    assert_eq!(send(Some(&own)).await.unwrap().status(), 200);
}

// ============================================================================
// Stores
// ============================================================================

#[tokio::test]
async fn a_policy_survives_kill_9_and_is_loaded_before_ready() {
    let (_upstream, gw) = start().await;
    set(&gw, &carol(), OFFICE, json!({"ip_allowlist": [OFFICE]})).await;
    let gw = gw.crash_and_restart().await;
    let user = token().sign();
    assert_eq!(status_from(&gw, &user, "198.51.100.1").await, 403);
    assert_eq!(status_from(&gw, &user, OFFICE).await, 200);
    let (_, etag) = get(&gw, &carol(), OFFICE).await;
    assert_eq!(etag, "\"v1\"");
}

#[tokio::test]
async fn the_memory_store_enforces_policies_too() {
    let (_upstream, gw) = start_with(&["store.backend = \"memory\""]).await;
    let (_, v0) = get(&gw, &carol(), OFFICE).await;
    set(&gw, &carol(), OFFICE, json!({"ip_allowlist": [OFFICE]})).await;
    assert_eq!(status_from(&gw, &token().sign(), "198.51.100.1").await, 403);
    assert_eq!(clear_if_match(&gw, &v0).await, 412);
    let (ok, _, stderr) = operator(&gw, &["policy", "clear"]);
    assert!(
        !ok && stderr.contains("memory"),
        "no break glass into a memory store: {stderr}"
    );
}

#[tokio::test]
async fn a_redis_fleet_enforces_a_policy_set_on_another_instance_within_a_second() {
    let Some(redis) = support::redis_server().start().await else {
        return;
    };
    let upstream = support::upstream().await;
    let a = on_redis(&upstream, &redis).await;
    let b = on_redis(&upstream, &redis).await;
    let user = token().sign();
    assert_eq!(status_from(&b, &user, "198.51.100.1").await, 200);
    let (_, v0) = get(&a, &carol(), OFFICE).await;
    set(
        &a,
        &carol(),
        OFFICE,
        json!({"ip_allowlist": [OFFICE], "require_claims": []}),
    )
    .await;
    let took = support::until(
        "instance b refuses the outside address",
        Duration::from_secs(1),
        || async { status_from(&b, &user, "198.51.100.1").await == 403 },
    )
    .await;
    println!("policy enforced by the other instance after {took:?}");
    let (body, etag) = get(&b, &carol(), OFFICE).await;
    assert_eq!(body["ip_allowlist"], json!([format!("{OFFICE}/32")]));
    assert_ne!(etag, v0);
    // A stale If-Match on the other instance is refused by the store itself.
    assert_eq!(clear_if_match(&b, &v0).await, 412);
    let (_, audit) = read_from(&b, "audit", &carol(), OFFICE).await;
    let record = &audit["events"][0];
    assert_eq!(
        record["policy_after"]["require_claims"],
        json!([]),
        "arrays stay arrays through the script"
    );
    assert_eq!(record["policy_before"]["ip_allowlist"], Value::Null);

    // A restarted instance loads it before it reports ready.
    let c = on_redis(&upstream, &redis).await;
    assert_eq!(status_from(&c, &user, "198.51.100.1").await, 403);

    // Policy and cutoff in one script: the audit record carries the cutoff.
    let admin_jwt = admin("carol", "acme").iat(now().floor() + 20.0).sign();
    let both = json!({"ip_allowlist": [OFFICE], "logout": true});
    let answer = set(&c, &admin_jwt, OFFICE, both).await;
    let cutoff = &answer["sessions_valid_after"];
    assert!(cutoff.is_i64(), "{answer}");
    assert_eq!(answer["instances_notified"], 3);
    let (_, audit) = read_from(&a, "audit", &admin_jwt, OFFICE).await;
    assert_eq!(&audit["events"][0]["sessions_valid_after"], cutoff);
    support::until(
        "a logs the workspace out",
        Duration::from_secs(1),
        || async { status_from(&a, &user, OFFICE).await == 401 },
    )
    .await;
}

// ============================================================================
// Break glass (SPEC section 7)
// ============================================================================

/// `sessiongate <args> --config <the gateway's> --workspace acme`: exit status, stdout
/// and stderr.
fn operator(gw: &Gateway, args: &[&str]) -> (bool, Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .args(args)
        .arg("--config")
        .arg(gw.config_path())
        .args(["--workspace", "acme", "--reason", "stolen admin token"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        output.status.success(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn break_glass_on_an_embedded_store_asks_to_stop_the_gateway_then_applies_at_restart() {
    let (_upstream, mut gw) = start().await;
    set(&gw, &carol(), OFFICE, json!({"ip_allowlist": [OFFICE]})).await;
    let user = token().iat(now().floor() - 5.0).sign();
    assert_eq!(status_from(&gw, &user, OFFICE).await, 200);

    for args in [&["policy", "clear"][..], &["logout-all"][..]] {
        let (ok, _, stderr) = operator(&gw, args);
        assert!(!ok, "{args:?} while the gateway holds the store");
        assert!(stderr.contains("stop it first"), "{stderr}");
    }
    gw.terminate();
    let (ok, report, stderr) = operator(&gw, &["policy", "clear"]);
    assert!(ok, "{stderr}");
    assert_eq!(report["action"], "policy_update");
    let (ok, report, stderr) = operator(&gw, &["logout-all"]);
    assert!(ok, "{stderr}");
    let cutoff = report["sessions_valid_after"].as_f64().unwrap();
    assert!(cutoff > now() - 5.0);

    let gw = gw.crash_and_restart().await;
    let fresh_admin = admin("carol", "acme").iat(cutoff).sign();
    let (body, _) = get(&gw, &fresh_admin, "198.51.100.1").await;
    assert_eq!(body["ip_allowlist"], Value::Null, "the allow-list is gone");
    assert_eq!(body["updated_by"], "operator");
    let rsp = proxied(&gw, &user, OFFICE).await;
    assert_eq!(
        rsp.status(),
        401,
        "everyone, the old admin included, is logged out"
    );
    let audit = gw.admin_get("workspaces/acme/audit", &fresh_admin).await;
    let [logout, clear, ..] = audit["events"].as_array().unwrap().as_slice() else {
        panic!("{audit}");
    };
    assert_eq!(
        (logout["action"].as_str(), logout["actor_subject"].as_str()),
        (Some("logout_all"), Some("operator"))
    );
    assert_eq!(
        (clear["action"].as_str(), clear["actor_subject"].as_str()),
        (Some("policy_update"), Some("operator"))
    );
    assert_eq!(clear["reason"], "stolen admin token");
    assert_eq!(
        clear["policy_before"]["ip_allowlist"],
        json!([format!("{OFFICE}/32")])
    );
}

#[tokio::test]
async fn break_glass_on_redis_is_enforced_by_running_instances_at_once() {
    let Some(redis) = support::redis_server().start().await else {
        return;
    };
    let upstream = support::upstream().await;
    let gw = on_redis(&upstream, &redis).await;
    set(&gw, &carol(), OFFICE, json!({"ip_allowlist": [OFFICE]})).await;
    let user = token().iat(now().floor() - 5.0).sign();
    assert_eq!(status_from(&gw, &user, "198.51.100.1").await, 403);

    let (ok, report, stderr) = operator(&gw, &["policy", "clear"]);
    assert!(ok, "{stderr}");
    assert_eq!(report["instances_notified"], 1);
    support::until(
        "the running gateway drops the allow-list",
        Duration::from_secs(1),
        || async { status_from(&gw, &user, "198.51.100.1").await == 200 },
    )
    .await;
    let (ok, _, stderr) = operator(&gw, &["logout-all"]);
    assert!(ok, "{stderr}");
    support::until(
        "the running gateway logs everyone out",
        Duration::from_secs(1),
        || async { status_from(&gw, &user, OFFICE).await == 401 },
    )
    .await;
}
