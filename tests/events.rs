//! SPEC section 14, events out, through the real binary: a real receiving server that
//! verifies Standard Webhooks signatures the way a product would, and fails on demand.
//!
//! Each test starts its own receiver and gateway(s); the Redis tests their own
//! `redis-server`. Backoff is the real one (1 s, 2 s, ...), so the retry tests take seconds.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::{
    Gateway, GatewayBuilder, admin, gateway, redis_server, set_file_size_limit, token, upstream,
};
use tokio::net::TcpListener;

/// The secret the gateways sign with, and the receiver checks by default.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid secret: a receiver holding it must refuse what the gateway signs.
const OTHER_SECRET: &str = "whsec_c2Vzc2lvbmdhdGUtb3RoZXItc2VjcmV0LTAx";
/// Standard Webhooks receivers refuse timestamps further than this from their clock.
const TOLERANCE_SECS: u64 = 300;

// ============================================================================
// The receiver
// ============================================================================

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Ok,
    Status(u16),
    /// Holds the request this long before answering 200 (longer than the sender waits).
    Hang(Duration),
    /// Takes this long to answer 200 (shorter than the sender waits): a delivery.
    Slow(Duration),
    /// 302 to `/followed` on the receiver itself: a request there means it was followed.
    Redirect,
}

/// The next `times` requests for `workspace` (any, when `None`) get `reply`.
#[derive(Debug, Clone)]
struct Rule {
    workspace: Option<String>,
    times: usize,
    reply: Reply,
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Attempt {
    path: String,
    id: String,
    timestamp: u64,
    signature: String,
    content_type: String,
    /// The body as sent, and as JSON.
    raw: Bytes,
    body: Value,
    /// The signature verifies with the receiver's secret and the timestamp is fresh.
    verified: bool,
    at: Instant,
    reply: Reply,
}

#[derive(Debug)]
struct Plan {
    secret: Vec<u8>,
    rules: Vec<Rule>,
    default: Reply,
    attempts: Vec<Attempt>,
}

/// A webhook endpoint on a free loopback port.
struct Receiver {
    addr: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = Arc::new(Mutex::new(Plan {
            secret: key_of(secret),
            rules: Vec::new(),
            default: Reply::Ok,
            attempts: Vec::new(),
        }));
        let shared = plan.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let plan = shared.clone();
                let service = service_fn(move |req| receive(req, plan.clone(), addr));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Receiver { addr, plan, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The endpoint label of the metrics.
    fn endpoint(&self) -> String {
        self.url()
    }

    fn fail(&self, workspace: Option<&str>, times: usize, reply: Reply) {
        self.plan.lock().unwrap().rules.push(Rule {
            workspace: workspace.map(str::to_string),
            times,
            reply,
        });
    }

    fn answer_by_default(&self, reply: Reply) {
        self.plan.lock().unwrap().default = reply;
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.plan.lock().unwrap().attempts.clone()
    }

    /// The audit ids answered 2xx, in the order they were.
    fn delivered(&self) -> Vec<String> {
        self.attempts()
            .into_iter()
            .filter(|a| a.verified && matches!(a.reply, Reply::Ok | Reply::Slow(_)))
            .map(|a| a.id)
            .collect()
    }

    fn attempts_of(&self, id: &str) -> Vec<Attempt> {
        self.attempts().into_iter().filter(|a| a.id == id).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The HMAC key of a `whsec_` secret, decoded as a receiver library does.
fn key_of(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

/// Standard Webhooks verification, written from the specification: the signature header
/// may list several space-separated `v1,<base64>` entries; one must match.
fn verify(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(seconds) = timestamp.parse::<u64>() else {
        return false;
    };
    if seconds_from_now(seconds) > TOLERANCE_SECS {
        return false;
    }
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &signed);
    let expected = format!("v1,{}", STANDARD.encode(tag.as_ref()));
    header.split(' ').any(|candidate| candidate == expected)
}

/// How far unix time `seconds` is from now, either way.
fn seconds_from_now(seconds: u64) -> u64 {
    (support::now() as u64).abs_diff(seconds)
}

async fn receive(
    req: Request<Incoming>,
    plan: Arc<Mutex<Plan>>,
    addr: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let reply = {
        let mut plan = plan.lock().unwrap();
        let verified = verify(&plan.secret, &id, &timestamp, &raw, &signature);
        let reply = match verified {
            false => Reply::Status(401),
            true => plan.next_reply(body["workspace"].as_str()),
        };
        plan.attempts.push(Attempt {
            path: parts.uri.path().to_string(),
            id,
            timestamp: timestamp.parse().unwrap_or(0),
            signature,
            content_type: header("content-type"),
            raw,
            body,
            verified,
            at: Instant::now(),
            reply,
        });
        reply
    };
    Ok(answer(reply, addr).await)
}

async fn answer(reply: Reply, addr: SocketAddr) -> Response<Full<Bytes>> {
    let status = match reply {
        Reply::Ok => StatusCode::OK,
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hang(time) | Reply::Slow(time) => {
            tokio::time::sleep(time).await;
            StatusCode::OK
        }
        Reply::Redirect => StatusCode::FOUND,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    if reply == Reply::Redirect {
        let location = format!("http://{addr}/followed");
        response
            .headers_mut()
            .insert("location", location.parse().unwrap());
    }
    response
}

impl Plan {
    fn next_reply(&mut self, workspace: Option<&str>) -> Reply {
        let rule = self.rules.iter_mut().find(|rule| {
            rule.times > 0
                && rule
                    .workspace
                    .as_deref()
                    .is_none_or(|w| Some(w) == workspace)
        });
        match rule {
            Some(rule) => {
                rule.times -= 1;
                rule.reply
            }
            None => self.default,
        }
    }
}

// ============================================================================
// Helpers
// ============================================================================

/// `builder` with one webhook to `receiver`, signing with [`SECRET`]; `extra` adds fields
/// to the entry (`timeout_ms = 500`).
fn with_webhook(builder: GatewayBuilder, receiver: &Receiver, extra: &str) -> GatewayBuilder {
    builder.env("HOOK_SECRET", SECRET).set(&format!(
        "events.webhooks = [{{ url = \"{}\", secret_env = \"HOOK_SECRET\"{extra} }}]",
        receiver.url()
    ))
}

/// A gateway on an embedded store with one webhook to `receiver`.
async fn gateway_with(receiver: &Receiver, extra: &str) -> (Gateway, support::Upstream) {
    let upstream = upstream().await;
    let gw = with_webhook(gateway(&upstream), receiver, extra)
        .start()
        .await;
    (gw, upstream)
}

/// An admin token of `workspace` issued 20 s ahead (within the leeway): the tests' own
/// logouts, one after the other in the same second, never cut it off.
fn ada_token(workspace: &str) -> String {
    admin("ada", workspace)
        .iat(support::now().floor() + 20.0)
        .sign()
}

/// logout-all of `workspace` by its admin ada; the audit id.
async fn logout_all(gw: &Gateway, workspace: &str) -> String {
    let rsp = gw.logout_all(workspace, &ada_token(workspace)).await;
    assert_eq!(rsp.status(), 200);
    audit_id(rsp).await
}

/// A `POST` under `/_sessiongate/v1/` with `jwt`; the audit id of its 200.
async fn post(gw: &Gateway, path: &str, jwt: &str) -> String {
    let rsp = gw.admin_post(path, jwt).await;
    assert_eq!(rsp.status(), 200, "POST {path}");
    audit_id(rsp).await
}

async fn audit_id(rsp: reqwest::Response) -> String {
    let body: Value = rsp.json().await.unwrap();
    body["audit_id"].as_str().unwrap().to_string()
}

/// Polls `probe` every 20 ms until it is true, or panics after `limit`.
async fn until(what: &str, limit: Duration, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `sessiongate_<name>{endpoint="..."}` on `gw`'s ops listener.
async fn metric(gw: &Gateway, name: &str, receiver: &Receiver) -> f64 {
    let text = gw.ops_get("/metrics").await.text().await.unwrap();
    let series = format!(
        "sessiongate_{name}{{endpoint=\"{}\"}} ",
        receiver.endpoint()
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `name` on `gw` until it equals `value`.
async fn until_metric(gw: &Gateway, name: &str, receiver: &Receiver, value: f64) {
    let start = Instant::now();
    loop {
        let now = metric(gw, name, receiver).await;
        if now == value {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{name} stayed {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of `workspace`'s events among `ids`, in order.
fn of_workspace(receiver: &Receiver, ids: &[String], workspace: &str) -> Vec<String> {
    let attempts = receiver.attempts();
    ids.iter()
        .filter(|id| {
            attempts
                .iter()
                .any(|a| &a.id == *id && a.body["workspace"] == workspace)
        })
        .cloned()
        .collect()
}

// ============================================================================
// Delivery and signatures
// ============================================================================

#[tokio::test]
async fn every_logout_action_is_delivered_signed_with_the_audit_record_as_body() {
    let receiver = Receiver::start(SECRET).await;
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let ada = ada_token("acme");
    let all = logout_all(&gw, "acme").await;
    let user = post(&gw, "workspaces/acme/users/bob/logout", &ada).await;
    let carol = token().sub("carol").iat(support::now().floor() + 20.0);
    let others = post(&gw, "me/logout-others", &carol.sign()).await;
    let ids = [all, user, others];
    until("three deliveries", Duration::from_secs(10), || {
        receiver.delivered().len() == 3
    })
    .await;

    let audit = gw.admin_get("workspaces/acme/audit", &ada).await;
    for (id, action) in ids
        .iter()
        .zip(["logout_all", "user_logout", "logout_others"])
    {
        let [attempt] = receiver.attempts_of(id).try_into().unwrap();
        assert!(attempt.verified, "{attempt:?}");
        assert_eq!(attempt.path, "/hook");
        assert_eq!(attempt.content_type, "application/json");
        assert_eq!(attempt.body["action"], action);
        let stored = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str())
            .expect("the event is in the audit trail");
        assert_eq!(&attempt.body, stored, "the body is the audit record");
        assert!(seconds_from_now(attempt.timestamp) < 60);
        assert!(attempt.signature.starts_with("v1,"));
    }
    until_metric(&gw, "events_pending", &receiver, 0.0).await;
    assert_eq!(metric(&gw, "events_delivered_total", &receiver).await, 3.0);
    assert_eq!(metric(&gw, "events_retried_total", &receiver).await, 0.0);
    assert_eq!(metric(&gw, "events_dropped_total", &receiver).await, 0.0);
}

#[tokio::test]
async fn a_policy_update_goes_to_the_webhooks_that_ask_for_it() {
    let receiver = Receiver::start(SECRET).await;
    let (gw, _upstream) = gateway_with(&receiver, ", actions = [\"policy_update\"]").await;
    logout_all(&gw, "acme").await;
    let policy = json!({"max_session_age_secs": 3600, "reason": "rotation"});
    let rsp = gw
        .put_policy("acme", &ada_token("acme"), &policy)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let id = audit_id(rsp).await;
    until("the policy event", Duration::from_secs(10), || {
        receiver.delivered().len() == 1
    })
    .await;
    let [attempt] = receiver.attempts_of(&id).try_into().unwrap();
    assert!(attempt.verified, "{attempt:?}");
    assert_eq!(attempt.body["action"], "policy_update");
    assert_eq!(attempt.body["policy_after"]["max_session_age_secs"], 3600);
    until_metric(&gw, "events_pending", &receiver, 0.0).await;
    assert_eq!(
        metric(&gw, "events_delivered_total", &receiver).await,
        1.0,
        "the logout-all was not asked for"
    );
}

#[tokio::test]
async fn a_receiver_with_another_secret_refuses_and_nothing_counts_as_delivered() {
    let receiver = Receiver::start(OTHER_SECRET).await;
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let id = logout_all(&gw, "acme").await;
    until("a second attempt", Duration::from_secs(10), || {
        receiver.attempts_of(&id).len() >= 2
    })
    .await;

    let gateway_key = key_of(SECRET);
    for attempt in receiver.attempts_of(&id) {
        assert!(!attempt.verified, "the other secret must not verify");
        assert_eq!(attempt.reply, Reply::Status(401));
        let timestamp = attempt.timestamp.to_string();
        assert!(
            verify(
                &gateway_key,
                &id,
                &timestamp,
                &attempt.raw,
                &attempt.signature
            ),
            "signed with the configured secret over id.timestamp.body"
        );
        let tampered = [attempt.raw.as_ref(), b" "].concat();
        assert!(!verify(
            &gateway_key,
            &id,
            &timestamp,
            &tampered,
            &attempt.signature
        ));
    }
    assert_eq!(metric(&gw, "events_delivered_total", &receiver).await, 0.0);
    assert!(metric(&gw, "events_retried_total", &receiver).await >= 1.0);
    assert_eq!(metric(&gw, "events_pending", &receiver).await, 1.0);
}

// ============================================================================
// Retries
// ============================================================================

#[tokio::test]
async fn a_5xx_is_retried_with_backoff_each_attempt_signed_afresh() {
    let receiver = Receiver::start(SECRET).await;
    receiver.fail(None, 2, Reply::Status(503));
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let id = logout_all(&gw, "acme").await;
    until("delivery after two 503s", Duration::from_secs(15), || {
        receiver.delivered() == [id.clone()]
    })
    .await;

    let attempts = receiver.attempts_of(&id);
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts.iter().all(|a| a.verified));
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(900),
        "1 s backoff: {gaps:?}"
    );
    assert!(gaps[1] >= Duration::from_millis(1900), "then 2 s: {gaps:?}");
    assert!(
        attempts
            .windows(2)
            .all(|w| w[1].timestamp > w[0].timestamp && w[1].signature != w[0].signature),
        "each attempt carries its own timestamp and signature"
    );
    assert!(
        attempts.iter().all(|a| a.raw == attempts[0].raw),
        "same body"
    );
    until_metric(&gw, "events_pending", &receiver, 0.0).await;
    assert_eq!(metric(&gw, "events_retried_total", &receiver).await, 2.0);
    assert_eq!(metric(&gw, "events_delivered_total", &receiver).await, 1.0);
    assert!(gw.logs().contains("event not delivered; retrying"));
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_in_time_is_retried() {
    let receiver = Receiver::start(SECRET).await;
    receiver.fail(None, 1, Reply::Hang(Duration::from_secs(5)));
    let (gw, _upstream) = gateway_with(&receiver, ", timeout_ms = 300").await;
    let id = logout_all(&gw, "acme").await;
    until("a second attempt", Duration::from_secs(10), || {
        receiver.attempts_of(&id).len() == 2
    })
    .await;

    let attempts = receiver.attempts_of(&id);
    assert_eq!(attempts[1].reply, Reply::Ok);
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(1200));
    until_metric(&gw, "events_delivered_total", &receiver, 1.0).await;
    assert_eq!(metric(&gw, "events_retried_total", &receiver).await, 1.0);
    assert!(gw.logs().contains("no answer within"), "{}", gw.logs());
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_never_followed() {
    let receiver = Receiver::start(SECRET).await;
    receiver.fail(None, 1, Reply::Redirect);
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let id = logout_all(&gw, "acme").await;
    until(
        "delivery after the redirect",
        Duration::from_secs(10),
        || receiver.delivered() == [id.clone()],
    )
    .await;

    let paths: Vec<String> = receiver.attempts().into_iter().map(|a| a.path).collect();
    assert_eq!(paths, ["/hook", "/hook"], "/followed is never requested");
    assert_eq!(metric(&gw, "events_retried_total", &receiver).await, 1.0);
    assert!(gw.logs().contains("answered HTTP 302"));
}

#[tokio::test]
async fn order_is_kept_per_workspace_while_an_earlier_event_is_retried() {
    let receiver = Receiver::start(SECRET).await;
    receiver.fail(Some("acme"), 2, Reply::Status(500));
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let ada = ada_token("acme");
    let a1 = logout_all(&gw, "acme").await;
    let g1 = logout_all(&gw, "globex").await;
    let a2 = post(&gw, "workspaces/acme/users/bob/logout", &ada).await;
    let a3 = logout_all(&gw, "acme").await;
    until("all four delivered", Duration::from_secs(15), || {
        receiver.delivered().len() == 4
    })
    .await;

    let delivered = receiver.delivered();
    assert_eq!(
        of_workspace(&receiver, &delivered, "acme"),
        [a1.clone(), a2.clone(), a3.clone()]
    );
    let position = |id: &str| delivered.iter().position(|d| d == id).unwrap();
    assert!(
        position(&g1) < position(&a1),
        "globex is not held back by acme's retries: {delivered:?}"
    );
    let attempts = receiver.attempts();
    let first_try = |id: &str| attempts.iter().position(|a| a.id == id).unwrap();
    let a1_done = attempts
        .iter()
        .position(|a| a.id == a1 && a.reply == Reply::Ok)
        .unwrap();
    assert!(first_try(&a2) > a1_done, "a2 waited for a1: {attempts:#?}");
    assert_eq!(receiver.attempts_of(&a1).len(), 3);
    assert_eq!(
        receiver.attempts_of(&a2).len(),
        1,
        "only the head is retried"
    );
}

#[tokio::test]
async fn an_event_not_delivered_within_retry_for_is_dropped_and_releases_its_workspace() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_by_default(Reply::Status(500));
    let (gw, _upstream) = gateway_with(&receiver, ", retry_for_secs = 2").await;
    let dropped = logout_all(&gw, "acme").await;
    until_metric(&gw, "events_dropped_total", &receiver, 1.0).await;
    assert!(
        receiver.attempts_of(&dropped).len() >= 2,
        "retried until then"
    );
    // The metric moves before the log line reaches the harness's reader.
    until("the drop logged", Duration::from_secs(5), || {
        gw.logs().contains("event dropped")
    })
    .await;

    receiver.answer_by_default(Reply::Ok);
    let next = logout_all(&gw, "acme").await;
    until("the next event of acme", Duration::from_secs(10), || {
        receiver.delivered() == [next.clone()]
    })
    .await;
    until_metric(&gw, "events_pending", &receiver, 0.0).await;
}

// ============================================================================
// Isolation: a dead endpoint slows nothing else
// ============================================================================

#[tokio::test]
async fn a_hanging_endpoint_delays_neither_logouts_nor_requests_nor_readiness() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_by_default(Reply::Hang(Duration::from_secs(60)));
    let (gw, upstream) = gateway_with(&receiver, ", timeout_ms = 30000").await;
    let first = logout_all(&gw, "acme").await;
    until("the first attempt hangs", Duration::from_secs(10), || {
        receiver.attempts_of(&first).len() == 1
    })
    .await;

    // Far below the endpoint's 30 s timeout: none of these waits for it.
    let quick = Duration::from_secs(10);
    for workspace in ["acme", "globex", "acme"] {
        let logout = tokio::time::timeout(quick, logout_all(&gw, workspace)).await;
        assert!(logout.is_ok(), "a logout waited for the endpoint");
    }
    let alice = token().workspace("initech").sign();
    let proxied = tokio::time::timeout(quick, gw.status_with("/app", &alice)).await;
    assert_eq!(proxied.expect("a request waited for the endpoint"), 200);
    assert_eq!(upstream.count(), 1);
    let ready = gw.ops_get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(metric(&gw, "events_in_flight", &receiver).await, 2.0);
    until_metric(&gw, "events_pending", &receiver, 4.0).await;
}

// ============================================================================
// Durability: kill -9 loses nothing undelivered, resends nothing delivered
// ============================================================================

#[tokio::test]
async fn a_backlog_survives_kill_9_and_is_delivered_after_the_restart() {
    let receiver = Receiver::start(SECRET).await;
    let (gw, _upstream) = gateway_with(&receiver, "").await;
    let before = logout_all(&gw, "acme").await;
    until("the first delivery", Duration::from_secs(10), || {
        receiver.delivered() == [before.clone()]
    })
    .await;

    receiver.answer_by_default(Reply::Status(503));
    let backlog = [
        logout_all(&gw, "acme").await,
        logout_all(&gw, "globex").await,
        logout_all(&gw, "acme").await,
    ];
    until("failed attempts", Duration::from_secs(10), || {
        receiver.attempts().len() >= 3
    })
    .await;
    let gw = gw.crash_and_restart().await;
    receiver.answer_by_default(Reply::Ok);
    until(
        "the backlog after the restart",
        Duration::from_secs(15),
        || receiver.delivered().len() >= 4,
    )
    .await;

    let delivered = receiver.delivered();
    assert_eq!(delivered[0], before, "delivered once, never again");
    let mut sent: Vec<String> = delivered[1..].to_vec();
    sent.sort();
    let mut expected = backlog.to_vec();
    expected.sort();
    assert_eq!(sent, expected, "each undelivered event exactly once");
    assert_eq!(
        of_workspace(&receiver, &delivered, "acme"),
        [before.clone(), backlog[0].clone(), backlog[2].clone()]
    );
    until_metric(&gw, "events_pending", &receiver, 0.0).await;
}

#[tokio::test]
async fn a_logout_the_store_refuses_sends_no_event() {
    let receiver = Receiver::start(SECRET).await;
    let upstream = upstream().await;
    let builder = with_webhook(gateway(&upstream).ignoring_sigxfsz(), &receiver, "");
    let gw = builder.start().await;
    let ada = ada_token("acme");
    let size = std::fs::metadata(gw.store_path()).unwrap().len();
    set_file_size_limit(gw.pid(), &size.to_string());
    let mut committed = Vec::new();
    let mut refused = None;
    for round in 0..2000 {
        let reason = format!("round {round} {}", "x".repeat(900));
        let rsp = gw
            .post("/_sessiongate/v1/workspaces/acme/logout-all")
            .bearer_auth(&ada)
            .json(&serde_json::json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        if rsp.status() == 503 {
            refused = Some(format!("round {round} "));
            break;
        }
        assert_eq!(rsp.status(), 200, "round {round}");
        committed.push(audit_id(rsp).await);
    }
    let refused = refused.expect("the store file never needed to grow");
    assert!(!committed.is_empty(), "the first logout already failed");
    set_file_size_limit(gw.pid(), "unlimited");
    until("every committed event", Duration::from_secs(20), || {
        let delivered = receiver.delivered();
        committed.iter().all(|id| delivered.contains(id))
    })
    .await;
    // The instances poll every second: a stray event would have shown by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for attempt in receiver.attempts() {
        let reason = attempt.body["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.starts_with(&refused),
            "an event for the refused logout"
        );
        assert!(committed.contains(&attempt.id), "{}", attempt.id);
    }
}

// ============================================================================
// Configuration
// ============================================================================

/// Runs `sessiongate <command>` on `builder`'s config; exit code and stderr + stdout.
fn run(command: &str, builder: &GatewayBuilder, env: &[(&str, &str)]) -> (i32, String) {
    let config = builder.write_config();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .args([command, "--config"])
        .arg(config)
        .env_remove("HOOK_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn unusable_webhooks_stop_the_start_naming_the_key() {
    let upstream = upstream().await;
    let entry = |extra: &str| {
        gateway(&upstream).set(&format!(
            "events.webhooks = [{{ url = \"https://hooks.example.com/x\", secret_env = \"HOOK_SECRET\"{extra} }}]"
        ))
    };
    let cases = [
        (
            "",
            None,
            "events.webhooks[0].secret_env: environment variable HOOK_SECRET is not set",
        ),
        (
            "",
            Some("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "events.webhooks[0].secret_env: the value of HOOK_SECRET must start with whsec_",
        ),
        (
            "",
            Some("whsec_***"),
            "events.webhooks[0].secret_env: the value of HOOK_SECRET must be whsec_ followed by base64",
        ),
        (
            ", actions = [\"logout_al\"]",
            Some(SECRET),
            "events.webhooks[0].actions: unknown action \"logout_al\"",
        ),
    ];
    for (extra, secret, message) in cases {
        let env: Vec<(&str, &str)> = secret.map(|s| ("HOOK_SECRET", s)).into_iter().collect();
        let (code, output) = run("serve", &entry(extra), &env);
        assert_eq!(code, 64, "{output}");
        assert!(output.contains(message), "{message}\n{output}");
        assert!(
            !output.contains("MfKQ9r8G"),
            "the secret is never shown: {output}"
        );
        let (code, output) = run("check", &entry(extra), &env);
        assert_eq!(code, 1, "{output}");
        assert!(output.contains(message), "check: {message}\n{output}");
    }
    let bad_url = gateway(&upstream)
        .set("events.webhooks = [{ url = \"hooks.example.com/x\", secret_env = \"HOOK_SECRET\" }]");
    let (code, output) = run("serve", &bad_url, &[("HOOK_SECRET", SECRET)]);
    assert_eq!(code, 64, "{output}");
    assert!(output.contains("events.webhooks[0].url"), "{output}");
}

#[tokio::test]
async fn check_shows_each_webhook_without_its_secret_and_warns_about_plain_http() {
    let upstream = upstream().await;
    let builder = gateway(&upstream).set(
        "events.webhooks = [\
         { url = \"https://siem.example.com/in?token=query-credential-7f3a\", secret_env = \"HOOK_SECRET\", actions = [\"logout_all\"] },\
         { url = \"http://collector.internal/hook\", secret_env = \"HOOK_SECRET\", timeout_ms = 2000 }]",
    );
    let (code, output) = run("check", &builder, &[("HOOK_SECRET", SECRET)]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(
        "events.webhooks[0]                 https://siem.example.com/in (secret from env HOOK_SECRET, value not shown; logout_all; timeout 5000 ms; retried for 86400 s)"
    ), "{output}");
    assert!(output.contains("http://collector.internal/hook (secret from env HOOK_SECRET, value not shown; every action; timeout 2000 ms"), "{output}");
    assert!(
        output.contains("warning: events.webhooks[1].url: http:// to a host that is not loopback"),
        "{output}"
    );
    assert!(
        !output.contains("MfKQ9r8G") && !output.contains("query-credential-7f3a"),
        "{output}"
    );
}

// ============================================================================
// A fleet on one Redis
// ============================================================================

#[tokio::test]
async fn a_fleet_delivers_each_event_once() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let receiver = Receiver::start(SECRET).await;
    // Slower than the poll period: the other instance looks while an attempt is open.
    receiver.answer_by_default(Reply::Slow(Duration::from_millis(1200)));
    let upstream = upstream().await;
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let builder = with_webhook(gateway(&upstream).redis(&redis), &receiver, "");
        fleet.push(builder.start().await);
    }
    let mut ids = Vec::new();
    let plan = [
        ("acme", 0),
        ("acme", 1),
        ("globex", 0),
        ("acme", 1),
        ("initech", 0),
        ("globex", 1),
    ];
    for (workspace, instance) in plan {
        ids.push(logout_all(&fleet[instance], workspace).await);
    }
    until("every event", Duration::from_secs(15), || {
        receiver.delivered().len() >= ids.len()
    })
    .await;
    // Both instances poll every second: give a second claim the time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut delivered = receiver.delivered();
    assert_eq!(
        of_workspace(&receiver, &delivered, "acme"),
        [ids[0].clone(), ids[1].clone(), ids[3].clone()]
    );
    delivered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(delivered, expected, "each event once");
    assert_eq!(receiver.attempts().len(), ids.len());
    for gw in &fleet {
        until_metric(gw, "events_pending", &receiver, 0.0).await;
    }
    let mut by_instance = 0.0;
    for gw in &fleet {
        by_instance += metric(gw, "events_delivered_total", &receiver).await;
    }
    assert_eq!(by_instance, ids.len() as f64);
}

#[tokio::test]
async fn the_survivor_takes_over_an_event_claimed_by_a_killed_instance() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let receiver = Receiver::start(SECRET).await;
    receiver.fail(None, 1, Reply::Hang(Duration::from_secs(60)));
    let upstream = upstream().await;
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let builder = with_webhook(
            gateway(&upstream).redis(&redis),
            &receiver,
            ", timeout_ms = 3000",
        );
        fleet.push(builder.start().await);
    }
    let id = logout_all(&fleet[0], "acme").await;
    until("the first attempt hangs", Duration::from_secs(10), || {
        receiver.attempts_of(&id).len() == 1
    })
    .await;
    let mut holder = None;
    for (n, gw) in fleet.iter().enumerate() {
        if metric(gw, "events_in_flight", &receiver).await == 1.0 {
            holder = Some(n);
        }
    }
    let holder = holder.expect("one instance holds the attempt");
    fleet[holder].kill9();
    let survivor = &fleet[1 - holder];

    until("the survivor's attempt", Duration::from_secs(15), || {
        receiver.delivered().contains(&id) && receiver.attempts_of(&id).len() == 2
    })
    .await;
    let attempts = receiver.attempts_of(&id);
    assert!(
        attempts[1].at - attempts[0].at >= Duration::from_secs(4),
        "taken over once the holder's lease ran out, not before"
    );
    until_metric(survivor, "events_delivered_total", &receiver, 1.0).await;
    until_metric(survivor, "events_pending", &receiver, 0.0).await;
}

#[tokio::test]
async fn scheduled_logouts_send_their_events_and_a_fleet_sends_the_applied_one_once() {
    let Some(redis) = redis_server().start().await else {
        return;
    };
    let receiver = Receiver::start(SECRET).await;
    let upstream = upstream().await;
    let actions = ", actions = [\"logout_scheduled\", \"logout_cancelled\", \"logout_all\"]";
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let builder = with_webhook(gateway(&upstream).redis(&redis), &receiver, actions);
        fleet.push(builder.start().await);
    }
    let ada = ada_token("acme");
    let later = support::rfc3339(support::now() + 3600.0);
    let scheduled = fleet[0].schedule_logout("acme", &ada, &later).await;
    assert_eq!(scheduled.status(), 202);
    let cancelled = fleet[1].cancel_scheduled_logout("acme", &ada).await;
    assert_eq!(cancelled.status(), 200);
    let soon = support::rfc3339(support::now() + 2.0);
    assert_eq!(
        fleet[0].schedule_logout("acme", &ada, &soon).await.status(),
        202
    );
    until("four events", Duration::from_secs(20), || {
        receiver.delivered().len() >= 4
    })
    .await;
    // Both instances poll every second: give a second copy the time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered: Vec<Value> = receiver
        .delivered()
        .iter()
        .map(|id| receiver.attempts_of(id)[0].body["action"].clone())
        .collect();
    assert_eq!(
        delivered,
        [
            "logout_scheduled",
            "logout_cancelled",
            "logout_scheduled",
            "logout_all"
        ]
    );
}
