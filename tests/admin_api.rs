//! The admin API of SPEC section 2, through the real binary: who may call it, the CSRF
//! rule for cookie tokens, request bodies, the audit trail, routing under the prefix, and
//! the `audit` log event.
//!
//! Every refused call is followed by a check that nothing changed: the workspace cutoff
//! and the audit trail read back exactly as before, and the upstream saw nothing.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Gateway, GatewayBuilder, TokenBuilder, Upstream, admin, gateway, token, upstream};

const ALLOWED_ORIGIN: &str = "https://app.example.com";

// ============================================================================
// Helpers
// ============================================================================

/// A response of the gateway, its body parsed as JSON.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// What the admin API says about a workspace: its sessions entry and its whole audit trail.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sessions: Value,
    audit: Value,
}

async fn start(configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> (Upstream, Gateway) {
    let upstream = upstream().await;
    let gw = configure(gateway(&upstream)).start().await;
    (upstream, gw)
}

/// A gateway that takes its token from the `sg` cookie and trusts one origin.
async fn start_with_cookie() -> (Upstream, Gateway) {
    start(|b| {
        b.set("auth.cookie = \"sg\"")
            .set(&format!("auth.allowed_origins = [\"{ALLOWED_ORIGIN}\"]"))
    })
    .await
}

fn request(gw: &Gateway, method: Method, path: &str) -> reqwest::RequestBuilder {
    support::client().request(method, gw.url(path))
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let rsp = req.send().await.expect("the gateway answers");
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let text = rsp.text().await.expect("the body is readable");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    Reply {
        status,
        headers,
        body,
    }
}

fn logout_all_path(ws: &str) -> String {
    format!("/_sessiongate/v1/workspaces/{ws}/logout-all")
}

fn user_logout_path(ws: &str, sub: &str) -> String {
    format!("/_sessiongate/v1/workspaces/{ws}/users/{sub}/logout")
}

fn sessions_path(ws: &str) -> String {
    format!("/_sessiongate/v1/workspaces/{ws}/sessions")
}

fn audit_path(ws: &str) -> String {
    format!("/_sessiongate/v1/workspaces/{ws}/audit")
}

const LOGOUT_OTHERS: &str = "/_sessiongate/v1/me/logout-others";

/// The four endpoints that need an admin of `ws`.
fn admin_endpoints(ws: &str) -> [(Method, String); 4] {
    [
        (Method::POST, logout_all_path(ws)),
        (Method::POST, user_logout_path(ws, "bob")),
        (Method::GET, sessions_path(ws)),
        (Method::GET, audit_path(ws)),
    ]
}

/// `POST logout-all` with a bearer token and an optional raw body.
async fn logout_all(gw: &Gateway, ws: &str, jwt: &str, body: Option<&str>) -> Reply {
    let mut req = gw.post(&logout_all_path(ws)).bearer_auth(jwt);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    send(req).await
}

/// An admin of `ws` that every cutoff made during a test admits: its `iat` is 10 s ahead,
/// within the 30 s leeway, while a logout-all moves the cutoff at most 1 s past now. It
/// only reads, so it never becomes the preserved session.
fn observer(ws: &str) -> TokenBuilder {
    admin("observer", ws).iat(support::now().floor() + 10.0)
}

async fn snapshot_with(gw: &Gateway, ws: &str, observer: &str) -> Snapshot {
    let sessions = send(gw.get(&sessions_path(ws)).bearer_auth(observer)).await;
    assert_eq!(
        sessions.status, 200,
        "observer reads sessions: {sessions:?}"
    );
    let audit = send(
        gw.get(&format!("{}?limit=1000", audit_path(ws)))
            .bearer_auth(observer),
    )
    .await;
    assert_eq!(audit.status, 200, "observer reads audit: {audit:?}");
    Snapshot {
        sessions: sessions.body,
        audit: audit.body,
    }
}

async fn snapshot(gw: &Gateway, ws: &str) -> Snapshot {
    snapshot_with(gw, ws, &observer(ws).sign()).await
}

/// Root (`jti:root`), an admin of acme, logs everyone out so there is a cutoff and one
/// audit record; returns root's token and the state right after.
async fn with_cutoff(gw: &Gateway) -> (String, Snapshot) {
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    let reply = logout_all(gw, "acme", &root, None).await;
    assert_eq!(reply.status, 200, "root's logout-all: {reply:?}");
    let before = snapshot(gw, "acme").await;
    assert!(before.sessions["sessions_valid_after"].is_i64());
    assert_eq!(before.audit["events"].as_array().unwrap().len(), 1);
    (root, before)
}

/// Calls every admin endpoint of acme with `jwt` (or none) and hands each reply to `check`.
async fn call_every_admin_endpoint(gw: &Gateway, jwt: Option<&str>, check: impl Fn(&str, &Reply)) {
    for (method, path) in admin_endpoints("acme") {
        let mut req = request(gw, method.clone(), &path);
        if let Some(jwt) = jwt {
            req = req.bearer_auth(jwt);
        }
        let reply = send(req).await;
        check(&format!("{method} {path}"), &reply);
    }
}

fn assert_forbidden(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 403, "{what}: {reply:?}");
    assert_eq!(reply.body["error"], "forbidden", "{what}: {reply:?}");
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: a 403 explains itself in `message`: {reply:?}"
    );
    assert_eq!(
        reply.body.as_object().map(|o| o.len()),
        Some(2),
        "{what}: {reply:?}"
    );
}

fn assert_invalid_token(what: &str, reply: &Reply, reason: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    assert_eq!(
        reply.body,
        json!({"error": "invalid_token", "reason": reason}),
        "{what}"
    );
}

fn assert_bad_request(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 400, "{what}: {reply:?}");
    assert_eq!(reply.body["error"], "bad_request", "{what}: {reply:?}");
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: a 400 explains itself in `message`: {reply:?}"
    );
}

fn events(snapshot: &Snapshot) -> &Vec<Value> {
    snapshot.audit["events"]
        .as_array()
        .expect("audit answers {\"events\": [...]}")
}

/// One raw HTTP/1.1 exchange, so the path reaches the gateway exactly as written
/// (reqwest would resolve `..` and `%2e%2e` itself).
async fn raw_exchange(gw: &Gateway, method: &str, target: &str, jwt: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {jwt}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        gw.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits (bounded) until the gateway has printed a line that satisfies `found`.
async fn wait_for_log_line(gw: &Gateway, found: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = gw.logs().lines().find(|line| found(line)) {
            return Some(line.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ============================================================================
// Authorization
// ============================================================================

#[tokio::test]
async fn admin_endpoints_answer_401_missing_token_without_a_token() {
    let (upstream, gw) = start(|b| b).await;
    let (_root, before) = with_cutoff(&gw).await;
    call_every_admin_endpoint(&gw, None, |what, reply| {
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        assert_eq!(
            reply.body,
            json!({"error": "missing_token", "reason": "missing_token"}),
            "{what}"
        );
        assert_eq!(
            reply.headers["www-authenticate"], "Bearer realm=\"sessiongate\"",
            "{what}"
        );
    })
    .await;
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn admin_endpoints_answer_401_invalid_token_for_a_bad_token() {
    let (upstream, gw) = start(|b| b).await;
    let (_root, before) = with_cutoff(&gw).await;
    // An admin token whose payload was swapped for another admin's: the signature fails.
    let genuine = observer("acme").sign();
    let other = observer("acme").sub("mallory").sign();
    let genuine: Vec<&str> = genuine.split('.').collect();
    let other: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", genuine[0], other[1], genuine[2]);
    let expired = observer("acme")
        .iat(support::now() - 7200.0)
        .exp(support::now() - 3600.0)
        .sign();
    for (jwt, reason) in [
        ("not-a-jwt", "malformed_token"),
        (forged.as_str(), "bad_signature"),
        (expired.as_str(), "expired"),
    ] {
        call_every_admin_endpoint(&gw, Some(jwt), |what, reply| {
            assert_invalid_token(what, reply, reason);
        })
        .await;
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn admin_endpoints_refuse_a_non_admin_token_of_the_workspace_with_403() {
    let (upstream, gw) = start(|b| b).await;
    let (_root, before) = with_cutoff(&gw).await;
    // Issued after the cutoff so the token itself is fine; it only lacks the role.
    let member = token().sub("bob").iat(support::now().floor() + 5.0).sign();
    let member_with_roles = token()
        .sub("bob")
        .roles(&["member", "billing"])
        .iat(support::now().floor() + 5.0)
        .sign();
    for jwt in [&member, &member_with_roles] {
        call_every_admin_endpoint(&gw, Some(jwt), assert_forbidden).await;
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn admin_endpoints_refuse_an_admin_of_another_workspace_with_403() {
    let (upstream, gw) = start(|b| b).await;
    let (_root, before) = with_cutoff(&gw).await;
    let foreign_admin = admin("eve", "other").sign();
    call_every_admin_endpoint(&gw, Some(&foreign_admin), assert_forbidden).await;
    assert_eq!(snapshot(&gw, "acme").await, before);
    // The workspace the token names was not touched either.
    let other = snapshot(&gw, "other").await;
    assert_eq!(other.sessions["sessions_valid_after"], Value::Null);
    assert_eq!(events(&other).len(), 0);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn admin_endpoints_refuse_an_admin_token_invalidated_by_an_earlier_logout_all() {
    let (upstream, gw) = start(|b| b).await;
    let stale_admin = admin("second-admin", "acme").sign();
    let (root, before) = with_cutoff(&gw).await;
    call_every_admin_endpoint(&gw, Some(&stale_admin), |what, reply| {
        assert_invalid_token(what, reply, "session_invalidated");
    })
    .await;
    assert_eq!(snapshot(&gw, "acme").await, before);
    // The preserved session (root's) still works.
    let reply = send(gw.get(&sessions_path("acme")).bearer_auth(&root)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:root");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn roles_claim_may_be_a_single_string() {
    let (upstream, gw) = start(|b| b).await;
    let single = token()
        .sub("root")
        .claim("jti", json!("single"))
        .claim("roles", json!("admin"))
        .sign();
    let reply = logout_all(&gw, "acme", &single, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:single");
    let reply = send(
        gw.post(&user_logout_path("acme", "bob"))
            .bearer_auth(&single),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = send(gw.get(&sessions_path("acme")).bearer_auth(&single)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = send(gw.get(&audit_path("acme")).bearer_auth(&single)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["events"].as_array().unwrap().len(), 2);
    // A single string that is not an admin role grants nothing.
    let before = snapshot(&gw, "acme").await;
    let not_admin = token()
        .sub("bob")
        .claim("roles", json!("administrator"))
        .iat(support::now().floor() + 5.0)
        .sign();
    call_every_admin_endpoint(&gw, Some(&not_admin), assert_forbidden).await;
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn roles_outside_jwt_admin_roles_are_forbidden() {
    let (upstream, gw) = start(|b| b).await;
    let (_root, before) = with_cutoff(&gw).await;
    let owner = admin("olivia", "acme")
        .roles(&["owner", "Admin", "superuser"])
        .iat(support::now().floor() + 5.0)
        .sign();
    call_every_admin_endpoint(&gw, Some(&owner), assert_forbidden).await;
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn custom_admin_roles_and_nested_roles_claim_are_honoured() {
    let (upstream, gw) = start(|b| {
        b.set("jwt.admin_roles = [\"owner\"]")
            .set("jwt.roles_claim = \"app.roles\"")
    })
    .await;
    let observer_jwt = observer("acme")
        .without("roles")
        .claim("app", json!({"roles": ["owner"]}))
        .sign();
    let before = snapshot_with(&gw, "acme", &observer_jwt).await;
    assert_eq!(before.sessions["sessions_valid_after"], Value::Null);
    // "admin" is no longer an admin role, and a top-level `roles` is no longer read.
    let refused = [
        admin("a", "acme").sign(),
        token()
            .sub("b")
            .claim("app", json!({"roles": ["admin"]}))
            .sign(),
        token().sub("c").roles(&["owner"]).sign(),
        token().sub("d").claim("app", json!(["owner"])).sign(),
    ];
    for jwt in &refused {
        call_every_admin_endpoint(&gw, Some(jwt), assert_forbidden).await;
    }
    assert_eq!(snapshot_with(&gw, "acme", &observer_jwt).await, before);

    let owner = token()
        .sub("olivia")
        .claim("jti", json!("owner"))
        .claim("app", json!({"roles": ["member", "owner"]}))
        .sign();
    let reply = logout_all(&gw, "acme", &owner, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:owner");
    let reply = send(
        gw.post(&user_logout_path("acme", "bob"))
            .bearer_auth(&owner),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = send(gw.get(&sessions_path("acme")).bearer_auth(&owner)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:owner");
    let reply = send(gw.get(&audit_path("acme")).bearer_auth(&owner)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["events"].as_array().unwrap().len(), 2);
    // The nested claim may also be a single string.
    let single = token()
        .sub("oscar")
        .claim("app", json!({"roles": "owner"}))
        .iat(support::now().floor() + 5.0)
        .sign();
    let reply = send(gw.get(&sessions_path("acme")).bearer_auth(&single)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// CSRF
// ============================================================================

/// A cookie-carried admin of acme with a known session id.
fn cookie_admin(jti: &str) -> String {
    admin("cookie-admin", "acme")
        .claim("jti", json!(jti))
        .iat(support::now().floor() + 5.0)
        .sign()
}

fn with_cookie(req: reqwest::RequestBuilder, jwt: &str) -> reqwest::RequestBuilder {
    req.header("cookie", format!("theme=dark; sg={jwt}"))
}

#[tokio::test]
async fn csrf_refuses_a_cookie_logout_without_origin_or_referer() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("cookie");
    for path in [logout_all_path("acme"), user_logout_path("acme", "bob")] {
        let reply = send(with_cookie(gw.post(&path), &jwt)).await;
        assert_forbidden(&path, &reply);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_refuses_a_cookie_logout_from_a_wrong_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("cookie");
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.com",
        "https://app.example.com:8443",
        "null",
    ] {
        for path in [logout_all_path("acme"), user_logout_path("acme", "bob")] {
            let req = with_cookie(gw.post(&path), &jwt).header("origin", origin);
            assert_forbidden(&format!("{path} from {origin}"), &send(req).await);
        }
    }
    // A wrong Origin is not rescued by a good Referer: Origin wins when present.
    let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt)
        .header("origin", "https://evil.example.com")
        .header("referer", format!("{ALLOWED_ORIGIN}/settings"));
    assert_forbidden("wrong origin, good referer", &send(req).await);
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_accepts_a_cookie_logout_from_an_allowed_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("cookie");
    let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt).header("origin", ALLOWED_ORIGIN);
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:cookie");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(after.sessions["preserved_session"], "jti:cookie");
    assert_eq!(events(&after).len(), events(&before).len() + 1);
    assert_eq!(events(&after)[0]["id"], reply.body["audit_id"]);
    let req = with_cookie(gw.post(&user_logout_path("acme", "bob")), &jwt)
        .header("origin", ALLOWED_ORIGIN);
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_accepts_a_cookie_logout_with_an_allowed_referer_and_no_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("cookie");
    let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt)
        .header("referer", format!("{ALLOWED_ORIGIN}/settings"));
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(after.sessions["preserved_session"], "jti:cookie");
    assert_eq!(events(&after).len(), events(&before).len() + 1);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_refuses_a_cookie_logout_with_a_referer_from_another_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("cookie");
    for referer in [
        "https://evil.example.com/settings",
        "https://evil.example.com/?next=https://app.example.com/settings",
        "http://app.example.com/settings",
        "https://app.example.com.evil.com/settings",
    ] {
        let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt).header("referer", referer);
        assert_forbidden(referer, &send(req).await);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_accepts_a_cookie_logout_from_the_gateways_own_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("own-origin");
    // Plain HTTP: only http://<Host> is the gateway's own origin.
    let own = format!("http://{}", gw.addr);
    let other_scheme = format!("https://{}", gw.addr);
    let other_port = format!("http://127.0.0.1:{}", gw.addr.port() + 1);
    for origin in [&other_scheme, &other_port] {
        let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt).header("origin", origin);
        assert_forbidden(origin, &send(req).await);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    let req = with_cookie(gw.post(&logout_all_path("acme")), &jwt).header("origin", &own);
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:own-origin");
    let req = with_cookie(gw.post(&user_logout_path("acme", "bob")), &jwt)
        .header("referer", format!("{own}/_sessiongate/console/"));
    assert_eq!(send(req).await.status, 200, "same-origin Referer");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_own_origin_is_https_when_a_trusted_proxy_says_so() {
    let behind_proxy = |b: GatewayBuilder| {
        b.set("auth.cookie = \"sg\"")
            .set("server.trusted_proxies = [\"127.0.0.1/32\"]")
    };
    let (_upstream, gw) = start(behind_proxy).await;
    let jwt = cookie_admin("proxied");
    let logout = |proto: &str, origin: &str| {
        with_cookie(gw.post(&logout_all_path("acme")), &jwt)
            .header("host", "app.example.com")
            .header("x-forwarded-proto", proto)
            .header("origin", origin)
    };
    let reply = send(logout("http", "https://app.example.com")).await;
    assert_forbidden("https origin, proxy says http", &reply);
    let reply = send(logout("https", "https://app.example.com")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // From a peer that is not a trusted proxy, the header is the client's word: ignored.
    let (_upstream, direct) = start(|b| b.set("auth.cookie = \"sg\"")).await;
    let req = with_cookie(direct.post(&logout_all_path("acme")), &jwt)
        .header("host", "app.example.com")
        .header("x-forwarded-proto", "https")
        .header("origin", "https://app.example.com");
    assert_forbidden("untrusted X-Forwarded-Proto", &send(req).await);
}

#[tokio::test]
async fn csrf_does_not_apply_to_a_bearer_token() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("bearer");
    let reply = send(
        gw.post(&logout_all_path("acme"))
            .bearer_auth(&jwt)
            .header("origin", "https://evil.example.com"),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = logout_all(&gw, "acme", &jwt, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:bearer");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(events(&after).len(), events(&before).len() + 2);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn csrf_applies_to_me_logout_others_with_a_cookie() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let user = token()
        .sub("carol")
        .claim("jti", json!("carol"))
        .iat(support::now().floor() + 5.0)
        .sign();
    let refused = [
        with_cookie(gw.post(LOGOUT_OTHERS), &user),
        with_cookie(gw.post(LOGOUT_OTHERS), &user).header("origin", "https://evil.example.com"),
        with_cookie(gw.post(LOGOUT_OTHERS), &user).header("referer", "https://evil.example.com/x"),
    ];
    for req in refused {
        assert_forbidden("logout-others", &send(req).await);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);

    let reply =
        send(with_cookie(gw.post(LOGOUT_OTHERS), &user).header("origin", ALLOWED_ORIGIN)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["subject"], "carol");
    assert_eq!(reply.body["preserved_session"], "jti:carol");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(events(&after)[0]["action"], "logout_others");
    assert_eq!(events(&after)[0]["id"], reply.body["audit_id"]);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn cookie_reads_of_sessions_and_audit_need_no_origin() {
    let (upstream, gw) = start_with_cookie().await;
    let (_root, before) = with_cutoff(&gw).await;
    let jwt = cookie_admin("reader");
    let reply = send(with_cookie(gw.get(&sessions_path("acme")), &jwt)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, before.sessions);
    let reply = send(with_cookie(gw.get(&audit_path("acme")), &jwt)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, before.audit);
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// Bodies
// ============================================================================

#[tokio::test]
async fn logout_all_accepts_an_empty_body() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    for body in [None, Some(""), Some("  \n")] {
        let reply = logout_all(&gw, "acme", &root, body).await;
        assert_eq!(reply.status, 200, "body {body:?}: {reply:?}");
    }
    let after = snapshot(&gw, "acme").await;
    assert_eq!(events(&after).len(), 3);
    for event in events(&after) {
        assert_eq!(event["reason"], Value::Null);
        assert_eq!(event["category"], Value::Null);
        assert_eq!(event["ticket"], Value::Null);
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_records_reason_category_and_ticket_in_audit() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    let body = json!({"reason": "x", "category": "security_incident", "ticket": "INC-1"});
    let reply = logout_all(&gw, "acme", &root, Some(&body.to_string())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let after = snapshot(&gw, "acme").await;
    let event = &events(&after)[0];
    assert_eq!(event["id"], reply.body["audit_id"]);
    assert_eq!(event["reason"], "x");
    assert_eq!(event["category"], "security_incident");
    assert_eq!(event["ticket"], "INC-1");
    // Every documented category is accepted.
    for category in [
        "policy_change",
        "personnel_change",
        "routine_maintenance",
        "other",
    ] {
        let body = json!({ "category": category }).to_string();
        let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
        assert_eq!(reply.status, 200, "{category}: {reply:?}");
        let after = snapshot(&gw, "acme").await;
        assert_eq!(events(&after)[0]["category"], category);
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_refuses_malformed_json_with_400() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    for body in [
        "{not json",
        "{\"reason\": \"x\"",
        "{\"reason\": 42}",
        "[\"reason\"]",
    ] {
        let reply = logout_all(&gw, "acme", &root, Some(body)).await;
        assert_bad_request(body, &reply);
        assert_eq!(reply.body.as_object().map(|o| o.len()), Some(2), "{body}");
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_counts_reason_length_in_characters_not_bytes() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    // 1025 two-byte characters: too long.
    let too_long = json!({ "reason": "é".repeat(1025) }).to_string();
    let reply = logout_all(&gw, "acme", &root, Some(&too_long)).await;
    assert_bad_request("reason of 1025 characters", &reply);
    let too_long_ascii = json!({ "reason": "r".repeat(1025) }).to_string();
    let reply = logout_all(&gw, "acme", &root, Some(&too_long_ascii)).await;
    assert_bad_request("reason of 1025 ASCII characters", &reply);
    assert_eq!(snapshot(&gw, "acme").await, before);
    // 1024 of them (2048 bytes, 4096 for the four-byte one) is the limit and is fine.
    for character in ["é", "😀"] {
        let reason = character.repeat(1024);
        let body = json!({ "reason": reason }).to_string();
        let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
        assert_eq!(reply.status, 200, "reason of 1024 × {character}: {reply:?}");
        let after = snapshot(&gw, "acme").await;
        assert_eq!(events(&after)[0]["reason"], reason.as_str());
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_refuses_an_unknown_category() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    for category in [
        json!("oops"),
        json!("Security_Incident"),
        json!(""),
        json!(3),
    ] {
        let body = json!({ "reason": "x", "category": category }).to_string();
        let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
        assert_bad_request(&body, &reply);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_refuses_a_ticket_over_256_characters() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    for ticket in ["T".repeat(257), "€".repeat(257)] {
        let body = json!({ "ticket": ticket }).to_string();
        let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
        assert_bad_request("ticket of 257 characters", &reply);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    let ticket = "€".repeat(256);
    let body = json!({ "ticket": ticket }).to_string();
    let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
    assert_eq!(reply.status, 200, "ticket of 256 characters: {reply:?}");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(events(&after)[0]["ticket"], ticket.as_str());
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_refuses_a_body_over_16_kib_with_413() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let padded = |total: usize| {
        let head = "{\"reason\": \"big\"}";
        format!("{head}{}", " ".repeat(total - head.len()))
    };
    let reply = logout_all(&gw, "acme", &root, Some(&padded(16 * 1024 + 1))).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    let reply = logout_all(&gw, "acme", &root, Some(&padded(64 * 1024))).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    // Without a Content-Length (chunked), the limit holds as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"reason\": \"big\"}".to_vec()),
        Ok(vec![b' '; 20 * 1024]),
    ];
    let reply = send(
        gw.post(&logout_all_path("acme"))
            .bearer_auth(&root)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    )
    .await;
    assert_eq!(reply.status, 413, "chunked: {reply:?}");
    assert_eq!(snapshot(&gw, "acme").await, before);
    // Exactly 16 KiB is allowed.
    let reply = logout_all(&gw, "acme", &root, Some(&padded(16 * 1024))).await;
    assert_eq!(reply.status, 200, "16 KiB: {reply:?}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn user_logout_and_logout_others_validate_their_bodies_too() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let carol = token()
        .sub("carol")
        .iat(support::now().floor() + 5.0)
        .sign();
    let bad_bodies = [
        "{not json".to_string(),
        json!({ "reason": "é".repeat(1025) }).to_string(),
        json!({ "category": "oops" }).to_string(),
        json!({ "ticket": "T".repeat(257) }).to_string(),
    ];
    for body in &bad_bodies {
        for (path, jwt) in [
            (user_logout_path("acme", "bob"), &root),
            (LOGOUT_OTHERS.to_string(), &carol),
        ] {
            let req = gw
                .post(&path)
                .bearer_auth(jwt)
                .header("content-type", "application/json")
                .body(body.clone());
            assert_bad_request(&format!("{path} {body:.40}"), &send(req).await);
        }
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    let body =
        json!({"reason": "left the company", "category": "personnel_change", "ticket": "HR-7"});
    let reply = send(
        gw.post(&user_logout_path("acme", "bob"))
            .bearer_auth(&root)
            .json(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let after = snapshot(&gw, "acme").await;
    let event = &events(&after)[0];
    assert_eq!(event["action"], "user_logout");
    assert_eq!(event["reason"], "left the company");
    assert_eq!(event["category"], "personnel_change");
    assert_eq!(event["ticket"], "HR-7");
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// Audit
// ============================================================================

fn assert_rfc3339_utc(what: &str, value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && text.ends_with('Z');
    assert!(shape_ok, "{what}: {text:?} is not RFC 3339 UTC");
}

#[tokio::test]
async fn audit_lists_events_newest_first_with_every_field() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    let body =
        json!({"reason": "stolen laptop", "category": "security_incident", "ticket": "INC-1"});
    let first = send(
        gw.post(&logout_all_path("acme"))
            .bearer_auth(&root)
            .header("user-agent", "incident-console/1.0")
            // Not a trusted proxy: the peer address is the client.
            .header("x-forwarded-for", "203.0.113.9")
            .json(&body),
    )
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    let second = send(
        gw.post(&user_logout_path("acme", "bob"))
            .bearer_auth(&root)
            .header("user-agent", "scim-bridge/2"),
    )
    .await;
    assert_eq!(second.status, 200, "{second:?}");
    let cutoff = first.body["sessions_valid_after"].as_f64().unwrap();
    let carol = token()
        .sub("carol")
        .claim("jti", json!("carol"))
        .iat(cutoff)
        .sign();
    let third = send(
        gw.post(LOGOUT_OTHERS)
            .bearer_auth(&carol)
            .header("user-agent", "carol-browser/3"),
    )
    .await;
    assert_eq!(third.status, 200, "{third:?}");

    let reply = send(gw.get(&audit_path("acme")).bearer_auth(&root)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let events = reply.body["events"].as_array().expect("events array");
    assert_eq!(events.len(), 3, "{events:?}");
    let expected = [
        (
            &third,
            "logout_others",
            Some("carol"),
            "carol",
            "carol-browser/3",
        ),
        (&second, "user_logout", Some("bob"), "root", "scim-bridge/2"),
        (&first, "logout_all", None, "root", "incident-console/1.0"),
    ];
    for (event, (answer, action, subject, actor, agent)) in events.iter().zip(expected) {
        let what = format!("{action} event {event}");
        for key in [
            "id",
            "at",
            "workspace",
            "action",
            "actor_subject",
            "actor_session",
            "category",
            "ticket",
            "reason",
            "client_ip",
            "user_agent",
            "sessions_valid_after",
        ] {
            assert!(event.get(key).is_some(), "{what}: missing {key}");
        }
        assert_eq!(event["id"], answer.body["audit_id"], "{what}");
        assert_eq!(event["at"], answer.body["invalidated_at"], "{what}");
        assert_rfc3339_utc(&what, &event["at"]);
        assert_eq!(event["workspace"], "acme", "{what}");
        assert_eq!(event["action"], action, "{what}");
        match subject {
            Some(subject) => assert_eq!(event["subject"], subject, "{what}"),
            None => assert!(
                event.get("subject").is_none_or(Value::is_null),
                "{what}: a workspace logout has no subject"
            ),
        }
        assert_eq!(event["actor_subject"], actor, "{what}");
        assert_eq!(event["actor_session"], format!("jti:{actor}"), "{what}");
        assert_eq!(event["client_ip"], "127.0.0.1", "{what}");
        assert_eq!(event["user_agent"], agent, "{what}");
        assert_eq!(
            event["sessions_valid_after"], answer.body["sessions_valid_after"],
            "{what}"
        );
        assert!(event["sessions_valid_after"].is_i64(), "{what}");
    }
    assert_eq!(events[2]["reason"], "stolen laptop");
    assert_eq!(events[2]["category"], "security_incident");
    assert_eq!(events[2]["ticket"], "INC-1");
    for event in &events[..2] {
        assert_eq!(event["reason"], Value::Null);
        assert_eq!(event["category"], Value::Null);
        assert_eq!(event["ticket"], Value::Null);
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn audit_limit_returns_the_newest_n_events() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").sign();
    let mut ids = Vec::new();
    for n in 0..5 {
        let body = json!({ "reason": format!("round {n}") }).to_string();
        let reply = logout_all(&gw, "acme", &root, Some(&body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        ids.push(reply.body["audit_id"].clone());
    }
    ids.reverse();
    for limit in [1, 3, 5] {
        let reply = send(
            gw.get(&format!("{}?limit={limit}", audit_path("acme")))
                .bearer_auth(&root),
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let got: Vec<Value> = reply.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].clone())
            .collect();
        assert_eq!(got, ids[..limit], "limit={limit}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn audit_returns_50_events_by_default() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").sign();
    let mut ids = Vec::new();
    for _ in 0..52 {
        let reply = logout_all(&gw, "acme", &root, None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        ids.push(reply.body["audit_id"].clone());
    }
    ids.reverse();
    let reply = send(gw.get(&audit_path("acme")).bearer_auth(&root)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let got: Vec<Value> = reply.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(got, ids[..50]);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn audit_clamps_a_huge_limit_and_refuses_a_non_numeric_one() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let reply = send(
        gw.get(&format!("{}?limit=5000", audit_path("acme")))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, before.audit);
    for limit in ["abc", "-1", "1e3"] {
        let reply = send(
            gw.get(&format!("{}?limit={limit}", audit_path("acme")))
                .bearer_auth(&root),
        )
        .await;
        assert_bad_request(&format!("limit={limit}"), &reply);
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn audit_never_shows_events_of_another_workspace() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").sign();
    let eve = admin("eve", "other").sign();
    let acme_first = logout_all(&gw, "acme", &root, None).await;
    let other_first = logout_all(&gw, "other", &eve, None).await;
    let other_user = send(gw.post(&user_logout_path("other", "bob")).bearer_auth(&eve)).await;
    let acme_second = logout_all(&gw, "acme", &root, None).await;
    for reply in [&acme_first, &other_first, &other_user, &acme_second] {
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let ids = |snapshot: &Snapshot| -> Vec<Value> {
        events(snapshot).iter().map(|e| e["id"].clone()).collect()
    };
    let acme = snapshot(&gw, "acme").await;
    assert_eq!(
        ids(&acme),
        [
            acme_second.body["audit_id"].clone(),
            acme_first.body["audit_id"].clone()
        ]
    );
    assert!(events(&acme).iter().all(|e| e["workspace"] == "acme"));
    let other = snapshot(&gw, "other").await;
    assert_eq!(
        ids(&other),
        [
            other_user.body["audit_id"].clone(),
            other_first.body["audit_id"].clone()
        ]
    );
    assert!(events(&other).iter().all(|e| e["workspace"] == "other"));
    // A workspace whose name extends another's shares nothing with it either.
    let acme_corp = snapshot(&gw, "acme-corp").await;
    assert_eq!(events(&acme_corp).len(), 0);
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// Routing
// ============================================================================

#[tokio::test]
async fn unknown_admin_paths_answer_404_json() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    // `{prefix}` and `{prefix}/` lead to the console, `v1/me` is the caller (SPEC sections
    // 2 and 12): tests/console.rs.
    for path in [
        "/_sessiongate/v1",
        "/_sessiongate/v2/workspaces/acme/logout-all",
        "/_sessiongate/v1/workspaces/acme",
        "/_sessiongate/v1/workspaces/acme/nope",
        "/_sessiongate/v1/workspaces/acme/logout-all/extra",
        "/_sessiongate/v1/workspaces//logout-all",
        "/_sessiongate/v1/me/nope",
    ] {
        for method in [Method::GET, Method::POST] {
            let reply = send(request(&gw, method.clone(), path).bearer_auth(&root)).await;
            assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
            assert_eq!(
                reply.headers["content-type"], "application/json",
                "{method} {path}"
            );
            assert!(
                reply.body["error"].is_string(),
                "{method} {path}: {reply:?}"
            );
        }
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn wrong_methods_answer_405_with_an_allow_header() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let cases = [
        (Method::GET, logout_all_path("acme"), "POST"),
        (Method::PUT, logout_all_path("acme"), "POST"),
        (Method::DELETE, logout_all_path("acme"), "POST"),
        (Method::GET, user_logout_path("acme", "bob"), "POST"),
        (Method::GET, LOGOUT_OTHERS.to_string(), "POST"),
        (Method::POST, sessions_path("acme"), "GET"),
        (Method::DELETE, sessions_path("acme"), "GET"),
        (Method::POST, audit_path("acme"), "GET"),
    ];
    for (method, path, allow) in cases {
        let reply = send(request(&gw, method.clone(), &path).bearer_auth(&root)).await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        let allowed = reply.headers["allow"].to_str().unwrap();
        assert!(
            allowed.split(',').any(|m| m.trim() == allow),
            "{method} {path}: Allow {allowed:?} should list {allow}"
        );
        assert!(
            reply.body["error"].is_string(),
            "{method} {path}: {reply:?}"
        );
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn custom_path_prefix_serves_the_admin_api_and_forwards_the_old_prefix() {
    let (upstream, gw) = start(|b| b.set("admin.path_prefix = \"/admin-api\"")).await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    // The old prefix is an ordinary path now: it needs a token and goes upstream.
    let reply = send(gw.post(&logout_all_path("acme"))).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.body["error"], "missing_token");
    assert_eq!(upstream.count(), 0);
    let reply = logout_all(&gw, "acme", &root, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body["ok"], true,
        "answered by the upstream: {reply:?}"
    );
    assert_eq!(upstream.count(), 1);
    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/_sessiongate/v1/workspaces/acme/logout-all");
    // ...and it changed nothing.
    let reply = send(
        gw.get("/admin-api/v1/workspaces/acme/sessions")
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["sessions_valid_after"], Value::Null);

    let reply = send(
        gw.post("/admin-api/v1/workspaces/acme/logout-all")
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["preserved_session"], "jti:root");
    let audit_id = reply.body["audit_id"].clone();
    let reply = send(
        gw.get("/admin-api/v1/workspaces/acme/audit")
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["events"][0]["id"], audit_id);
    let reply = send(gw.get("/admin-api/v1/nope").bearer_auth(&root)).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = send(
        gw.get("/admin-api/v1/workspaces/acme/logout-all")
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(upstream.count(), 1, "the new prefix is never forwarded");
}

#[tokio::test]
async fn admin_api_is_never_forwarded_upstream() {
    let (upstream, gw) = start(|b| b).await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    let member = token().sub("bob").iat(support::now().floor() + 5.0).sign();
    let calls = [
        (Method::POST, logout_all_path("acme"), Some(&root), 200),
        (
            Method::POST,
            user_logout_path("acme", "bob"),
            Some(&root),
            200,
        ),
        (Method::POST, LOGOUT_OTHERS.to_string(), Some(&member), 200),
        (Method::GET, sessions_path("acme"), Some(&root), 200),
        (Method::GET, audit_path("acme"), Some(&root), 200),
        (Method::GET, sessions_path("acme"), None, 401),
        (Method::POST, logout_all_path("acme"), Some(&member), 403),
        (Method::GET, audit_path("other"), Some(&root), 403),
        (
            Method::GET,
            "/_sessiongate/v1/anything".to_string(),
            Some(&root),
            404,
        ),
        (
            Method::GET,
            "/_sessiongate/v1/me".to_string(),
            Some(&root),
            200,
        ),
        (
            Method::GET,
            "/_sessiongate/console/nothing-here".to_string(),
            Some(&root),
            404,
        ),
        (Method::GET, logout_all_path("acme"), Some(&root), 405),
        (Method::POST, sessions_path("acme"), Some(&root), 405),
        (
            Method::GET,
            format!("{}?limit=abc", audit_path("acme")),
            Some(&root),
            400,
        ),
    ];
    for (method, path, jwt, status) in calls {
        let mut req = request(&gw, method.clone(), &path);
        if let Some(jwt) = jwt {
            req = req.bearer_auth(jwt);
        }
        let reply = send(req).await;
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
        assert_eq!(upstream.count(), 0, "{method} {path} reached the upstream");
    }
    // The counter works: an ordinary path does reach the upstream.
    let reply = send(gw.get("/_sessiongate-not-admin/x").bearer_auth(&root)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.last().uri, "/_sessiongate-not-admin/x");
}

#[tokio::test]
async fn path_tricks_under_the_admin_prefix_answer_400() {
    let (upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let tricks = [
        ("GET", "/_sessiongate/v1/workspaces/acme/../x"),
        ("GET", "/_sessiongate/v1/workspaces/acme/../acme/sessions"),
        ("GET", "/_sessiongate/v1/workspaces/%2e%2e/acme/sessions"),
        ("GET", "/_sessiongate/v1/workspaces/acme/%2E%2E/acme/audit"),
        ("GET", "/_sessiongate/./v1/workspaces/acme/sessions"),
        ("GET", "/_sessiongate/v1/workspaces/acme/sessions/.."),
        (
            "POST",
            "/_sessiongate/v1/workspaces/other/../acme/logout-all",
        ),
        (
            "POST",
            "/_sessiongate/v1/workspaces/acme/%2e%2e/acme/logout-all",
        ),
        ("POST", "/_sessiongate/v1/workspaces/acme%2flogout-all"),
        (
            "POST",
            "/_sessiongate/v1/workspaces/acme/users/..%2F..%2Fx/logout",
        ),
        ("POST", "/x/../_sessiongate/v1/workspaces/acme/logout-all"),
    ];
    for (method, target) in tricks {
        let (status, body) = raw_exchange(&gw, method, target, &root).await;
        assert_eq!(status, 400, "{method} {target}: {body}");
        let body: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {target}: body is not JSON ({e}): {body:?}"));
        assert_eq!(body["error"], "bad_request", "{method} {target}: {body}");
    }
    assert_eq!(snapshot(&gw, "acme").await, before);
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// Log
// ============================================================================

#[tokio::test]
async fn audit_event_is_logged_as_json_without_the_token() {
    let (upstream, gw) = start_with_cookie().await;
    let root = admin("root", "acme").claim("jti", json!("root")).sign();
    let body = json!({"reason": "rotation", "category": "routine_maintenance", "ticket": "OPS-9"});
    let reply = send(
        gw.post(&logout_all_path("acme"))
            .bearer_auth(&root)
            .json(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let audit_id = reply.body["audit_id"]
        .as_str()
        .expect("audit_id is a string")
        .to_string();
    let line = wait_for_log_line(&gw, |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| v["target"] == "audit")
            && line.contains(&audit_id)
    })
    .await;
    assert!(
        line.is_some(),
        "no JSON log line with target \"audit\" mentions {audit_id}; logs:\n{}",
        gw.logs()
    );

    // Refused and accepted calls with other tokens, by header and by cookie.
    let cookie_jwt = cookie_admin("cookie");
    let reply = send(with_cookie(gw.post(&logout_all_path("acme")), &cookie_jwt)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = send(
        with_cookie(gw.post(&logout_all_path("acme")), &cookie_jwt)
            .header("origin", ALLOWED_ORIGIN),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let second_id = reply.body["audit_id"].as_str().unwrap().to_string();
    let stale = send(gw.get(&sessions_path("acme")).bearer_auth(&root)).await;
    assert_eq!(stale.status, 401, "root is no longer preserved: {stale:?}");
    assert!(
        wait_for_log_line(&gw, |line| line.contains(&second_id))
            .await
            .is_some(),
        "the second audit event is logged"
    );
    // Wait for the access line of the last request so every line is in.
    assert!(
        wait_for_log_line(&gw, |line| line.contains("session_invalidated"))
            .await
            .is_some()
    );
    let logs = gw.logs();
    for jwt in [&root, &cookie_jwt] {
        assert!(!logs.contains(jwt.as_str()), "a token appears in the logs");
        let signature = jwt.rsplit_once('.').unwrap().1;
        assert!(
            !logs.contains(signature),
            "a token signature appears in the logs"
        );
    }
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// POST .../users/logout with the user in the body
// ============================================================================

fn users_logout_path(ws: &str) -> String {
    format!("/_sessiongate/v1/workspaces/{ws}/users/logout")
}

#[tokio::test]
async fn user_logout_takes_a_subject_that_cannot_be_a_path_segment_from_the_body() {
    let (upstream, gw) = start(|b| b).await;
    let ada = admin("ada", "acme")
        .iat(support::now().floor() - 5.0)
        .sign();
    let slashed = token()
        .sub("team/alice")
        .iat(support::now().floor() - 5.0)
        .sign();
    let bob = token().sub("bob").iat(support::now().floor() - 5.0).sign();
    let reply = send(
        gw.post(&users_logout_path("acme"))
            .bearer_auth(&ada)
            .json(&json!({"subject": "team/alice", "reason": "left the team"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["subject"], "team/alice");
    assert_eq!(reply.body["preserved_session"], Value::Null);
    assert_eq!(gw.status_with("/app", &slashed).await, 401);
    assert_eq!(gw.status_with("/app", &bob).await, 200, "other users stay");
    let after = snapshot(&gw, "acme").await;
    assert_eq!(events(&after)[0]["action"], "user_logout");
    assert_eq!(events(&after)[0]["subject"], "team/alice");
    assert_eq!(events(&after)[0]["reason"], "left the team");
    assert_eq!(
        upstream.count(),
        1,
        "only bob's request reached the upstream"
    );
}

#[tokio::test]
async fn user_logout_by_body_needs_a_subject_and_no_other_logout_takes_one() {
    let (_upstream, gw) = start(|b| b).await;
    let (root, before) = with_cutoff(&gw).await;
    let bodies = [
        None,
        Some(json!({})),
        Some(json!({"subject": ""})),
        Some(json!({"subject": 7})),
    ];
    for body in bodies {
        let mut req = gw.post(&users_logout_path("acme")).bearer_auth(&root);
        if let Some(body) = &body {
            req = req.json(body);
        }
        assert_bad_request(&format!("users/logout with {body:?}"), &send(req).await);
    }
    for path in [
        logout_all_path("acme"),
        user_logout_path("acme", "bob"),
        LOGOUT_OTHERS.to_string(),
    ] {
        let req = gw
            .post(&path)
            .bearer_auth(&root)
            .json(&json!({"subject": "bob"}));
        assert_bad_request(&format!("{path} with a subject"), &send(req).await);
    }
    let user = token()
        .sub("carol")
        .iat(support::now().floor() + 5.0)
        .sign();
    let req = gw
        .post(&users_logout_path("acme"))
        .bearer_auth(&user)
        .json(&json!({"subject": "bob"}));
    assert_forbidden("a non-admin", &send(req).await);
    assert_eq!(snapshot(&gw, "acme").await, before);
}
