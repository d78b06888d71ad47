//! SPEC section 5 (`jwks_url`: fetched at start, not ready until the first success,
//! refreshed on `refresh_secs` or a shorter `Cache-Control: max-age`, one refetch per 30 s
//! for an unknown `kid`, the last good keys kept when a refresh fails) and section 1 (the
//! verified-token cache never lets a revoked or expired token through).
//!
//! Every test runs its own JWKS server: a real hyper server on 127.0.0.1 (plain or TLS)
//! whose answer the test changes while the gateway runs, and which counts the fetches.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use support::{Gateway, GatewayBuilder, Signer, Upstream, admin, gateway, token, upstream};
use tokio::net::TcpListener;

/// The WARN a failed refresh logs.
const REFRESH_FAILED: &str = "JWKS refresh failed; keeping the last good keys";
/// The secret of the `oct` key some JWKS documents carry (not the gateway's own secret).
const OCT_SECRET: &[u8] = b"an-hmac-secret-published-in-a-jwks-0123";

// ============================================================================
// JWKS server
// ============================================================================

/// What the JWKS server answers, changeable during a test.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Bytes,
    cache_control: Option<String>,
    delay: Duration,
}

struct ServerState {
    answer: Answer,
    /// When each request arrived.
    hits: Vec<Instant>,
}

/// A real identity-provider JWKS endpoint on a free loopback port.
struct JwksServer {
    addr: SocketAddr,
    https: bool,
    state: Arc<Mutex<ServerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Plain http, serving `document`.
    async fn start(document: Value) -> Self {
        Self::spawn(document, None).await
    }

    /// https with certs/localhost.{pem,key} (signed by certs/ca.pem), serving `document`.
    async fn start_https(document: Value) -> Self {
        Self::spawn(document, Some(tls_acceptor())).await
    }

    async fn spawn(document: Value, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState {
            answer: Answer {
                status: 200,
                body: Bytes::from(document.to_string()),
                cache_control: None,
                delay: Duration::ZERO,
            },
            hits: Vec::new(),
        }));
        let shared = state.clone();
        let https = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| respond(state.clone()));
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            https,
            state,
            task,
        }
    }

    fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}/jwks.json", self.addr.port())
        } else {
            format!("http://{}/jwks.json", self.addr)
        }
    }

    /// A `[[jwt.keys]]` body for this server, plus `extra` lines.
    fn key_entry(&self, extra: &str) -> String {
        format!("jwks_url = \"{}\"\n{extra}", self.url())
    }

    fn change(&self, f: impl FnOnce(&mut Answer)) {
        f(&mut self.state.lock().unwrap().answer);
    }

    /// 200 with `document`.
    fn serve(&self, document: Value) {
        self.change(|a| {
            a.status = 200;
            a.body = Bytes::from(document.to_string());
        });
    }

    /// 200 with these exact bytes.
    fn serve_raw(&self, body: Vec<u8>) {
        self.change(|a| {
            a.status = 200;
            a.body = Bytes::from(body);
        });
    }

    /// An error status with a small JSON body.
    fn fail(&self, status: u16) {
        self.change(|a| {
            a.status = status;
            a.body = Bytes::from_static(b"{\"error\": \"internal\"}");
        });
    }

    fn cache_control(&self, value: Option<&str>) {
        self.change(|a| a.cache_control = value.map(str::to_string));
    }

    fn delay(&self, delay: Duration) {
        self.change(|a| a.delay = delay);
    }

    /// How many requests arrived so far.
    fn hits(&self) -> usize {
        self.state.lock().unwrap().hits.len()
    }

    fn hit_times(&self) -> Vec<Instant> {
        self.state.lock().unwrap().hits.clone()
    }

    /// Waits until `n` requests have arrived; false if that did not happen by `deadline`.
    async fn wait_for_hits(&self, n: usize, deadline: Instant) -> bool {
        loop {
            if self.hits() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn respond(state: Arc<Mutex<ServerState>>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Counted and answered from the same snapshot: a change after the count is not served.
    let answer = {
        let mut state = state.lock().unwrap();
        state.hits.push(Instant::now());
        state.answer.clone()
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(value) = answer.cache_control {
        response
            .headers_mut()
            .insert("cache-control", value.parse().unwrap());
    }
    Ok(response)
}

fn dev_cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dev_cert("localhost.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dev_cert("localhost.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// ============================================================================
// Keys, tokens, requests
// ============================================================================

/// The public JWK of a fixture key: `kid`, `"use": "sig"`, `alg` of the signer.
fn jwk(signer: Signer, kid: &str) -> Value {
    jwk_of(&signer.key(), signer.algorithm(), kid)
}

fn jwk_of(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

/// `jwk` without an `alg` (the key verifies any algorithm of its type).
fn jwk_without_alg(signer: Signer, kid: &str) -> Value {
    let mut jwk = jwk(signer, kid);
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// A fresh token for alice@acme signed by `signer`, header `kid`.
fn signed(signer: Signer, kid: &str) -> String {
    token().signed_with(signer).header("kid", json!(kid)).sign()
}

/// Valid claims for alice@acme, issued now, valid one hour, unique `jti`.
fn claims() -> Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let now = support::now().floor();
    json!({
        "sub": "alice",
        "workspace_id": "acme",
        "iat": now,
        "exp": now + 3600.0,
        "jti": format!("jwks-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
    })
}

/// A token with exactly this header, HMAC-SHA256-signed with `secret`.
fn hs256_with_secret(header: Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret).unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// A gateway whose only key is `server`'s JWKS (plus `extra` lines in that entry).
fn jwks_gateway(upstream: &Upstream, server: &JwksServer, extra: &str) -> GatewayBuilder {
    gateway(upstream)
        .without_default_key()
        .key(&server.key_entry(extra))
}

/// Status and JSON body of `GET /api` with `jwt`.
async fn call(gw: &Gateway, jwt: &str) -> (u16, Value) {
    let response = gw.get("/api").bearer_auth(jwt).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Asserts `jwt` is forwarded.
async fn assert_passes(gw: &Gateway, jwt: &str, what: &str) {
    let (status, body) = call(gw, jwt).await;
    assert_eq!(status, 200, "{what}: {body}\n{}", gw.logs());
}

/// Asserts `jwt` is refused with exactly `reason`.
async fn assert_refused(gw: &Gateway, jwt: &str, reason: &str, what: &str) {
    let (status, body) = call(gw, jwt).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "invalid_token", "reason": reason})),
        "{what}"
    );
}

/// Asserts `jwt` is refused as a signature failure (never accepted).
async fn assert_refused_signature(gw: &Gateway, jwt: &str, what: &str) {
    let (status, body) = call(gw, jwt).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"], "invalid_token", "{what}: {body}");
    assert!(
        body["reason"] == "bad_signature" || body["reason"] == "unknown_key",
        "{what}: {body}"
    );
}

/// Series read with `Gateway::metric`.
const REFRESH_OK: &str = "sessiongate_jwks_refreshes_total{result=\"ok\"}";
const REFRESH_ERROR: &str = "sessiongate_jwks_refreshes_total{result=\"error\"}";
const CACHE_HIT: &str = "sessiongate_verify_cache_total{result=\"hit\"}";

/// Polls `check` every 50 ms until it holds; false if it still does not after `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(gw: &Gateway) -> (u16, Value) {
    let response = gw.ops_get("/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// How many JSON log events have this level and message.
fn log_count(gw: &Gateway, level: &str, message: &str) -> usize {
    gw.logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["level"] == level && event["message"] == message)
        .count()
}

// ============================================================================
// 1. Readiness
// ============================================================================

#[tokio::test]
async fn not_ready_until_the_first_jwks_fetch_succeeds() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    server.fail(500);
    let gw = jwks_gateway(&upstream, &server, "").start_unready().await;
    assert!(
        server
            .wait_for_hits(1, Instant::now() + Duration::from_secs(5))
            .await,
        "the gateway fetches the JWKS at start"
    );

    let jwt = signed(Signer::Rs256, "k1");
    let (status, body) = call(&gw, &jwt).await;
    assert_eq!((status, body), (503, json!({"error": "not_ready"})));
    assert_eq!(
        readyz(&gw).await,
        (
            503,
            json!({"ready": false, "keys": "loading", "store": "loaded", "draining": false})
        )
    );
    assert_eq!(upstream.count(), 0, "nothing is forwarded while not ready");

    server.serve(jwks(&[jwk(Signer::Rs256, "k1")]));
    assert!(
        eventually(Duration::from_secs(10), || async {
            readyz(&gw).await.0 == 200
        })
        .await,
        "ready within a few seconds of the JWKS answering; logs:\n{}",
        gw.logs()
    );
    assert_eq!(
        readyz(&gw).await,
        (
            200,
            json!({"ready": true, "keys": "loaded", "store": "loaded", "draining": false})
        )
    );
    // The `ready` line follows /readyz within a few milliseconds, and only once.
    assert!(
        eventually(Duration::from_secs(2), || async {
            log_count(&gw, "INFO", "ready") >= 1
        })
        .await,
        "{}",
        gw.logs()
    );
    assert_eq!(log_count(&gw, "INFO", "ready"), 1, "{}", gw.logs());
    assert_passes(&gw, &jwt, "RS256 token of the loaded JWKS").await;
    assert_eq!(upstream.last().headers["x-auth-subject"], "alice");
}

#[tokio::test]
async fn an_hmac_key_does_not_make_the_gateway_ready_before_the_jwks_loads() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    server.fail(500);
    // The default HMAC key plus the JWKS.
    let gw = gateway(&upstream)
        .key(&server.key_entry(""))
        .start_unready()
        .await;
    // Two failed fetches: the gateway retried and is still not ready.
    assert!(
        server
            .wait_for_hits(2, Instant::now() + Duration::from_secs(5))
            .await,
        "the first fetch is retried after about 1 s"
    );
    let hs256 = token().sign();
    let (status, body) = call(&gw, &hs256).await;
    assert_eq!(
        (status, body),
        (503, json!({"error": "not_ready"})),
        "an HMAC-signed token waits for the JWKS too"
    );
    assert_eq!(
        readyz(&gw).await,
        (
            503,
            json!({"ready": false, "keys": "loading", "store": "loaded", "draining": false})
        )
    );

    server.serve(jwks(&[jwk(Signer::Rs256, "k1")]));
    assert!(
        eventually(Duration::from_secs(10), || async {
            readyz(&gw).await.0 == 200
        })
        .await,
        "ready once the JWKS answers; logs:\n{}",
        gw.logs()
    );
    assert_passes(&gw, &hs256, "HS256 token once ready").await;
    assert_passes(&gw, &signed(Signer::Rs256, "k1"), "RS256 token once ready").await;
}

// ============================================================================
// 2. Rotation
// ============================================================================

#[tokio::test]
async fn rotation_new_key_accepted_at_once_and_removed_key_refused_after_refresh() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = gateway(&upstream)
        .key(&server.key_entry("refresh_secs = 1"))
        .start()
        .await;

    let old = signed(Signer::Rs256, "k1");
    assert_passes(&gw, &old, "k1 token").await;
    let hits_before = gw.metric(CACHE_HIT).await;
    assert_passes(&gw, &old, "k1 token again").await;
    assert_eq!(
        gw.metric(CACHE_HIT).await,
        hits_before + 1.0,
        "the second use of the k1 token is a cache hit"
    );

    // Right after a scheduled refresh (refresh_secs = 1), so the next one is ~1 s away and
    // only the unknown-key refetch can explain a fetch during the k2 request.
    let seen = server.hits();
    assert!(
        server
            .wait_for_hits(seen + 1, Instant::now() + Duration::from_secs(5))
            .await,
        "scheduled refreshes every second"
    );
    server.serve(jwks(&[
        jwk(Signer::Rs256, "k1"),
        jwk(Signer::OtherRs256, "k2"),
    ]));
    let fetches = server.hits();
    let new = signed(Signer::OtherRs256, "k2");
    assert_passes(
        &gw,
        &new,
        "the first k2 token, right after the provider added k2",
    )
    .await;
    assert_eq!(
        server.hits(),
        fetches + 1,
        "exactly one refetch for the unknown kid"
    );

    // The provider removes k1: once the gateway has refreshed, the (cached) k1 token fails.
    server.serve(jwks(&[jwk(Signer::OtherRs256, "k2")]));
    let deadline = Instant::now() + Duration::from_secs(6);
    let refused = loop {
        let (status, body) = call(&gw, &old).await;
        if status != 200 || Instant::now() >= deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refused,
        (
            401,
            json!({"error": "invalid_token", "reason": "unknown_key"})
        ),
        "a token of a removed key fails after the next refresh"
    );
    assert_passes(&gw, &new, "k2 token after k1 is gone").await;
    assert_passes(&gw, &signed(Signer::OtherRs256, "k2"), "a fresh k2 token").await;
}

#[tokio::test]
async fn new_kid_triggers_a_refetch_even_with_a_kidless_key_of_the_same_type() {
    // SPEC section 5: "a token with an unknown `kid` triggers at most one refetch". A
    // kid-less RSA key (a PEM file) must not stop a new RSA kid from being fetched.
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Es256, "e1")])).await;
    let gw = gateway(&upstream)
        .without_default_key()
        .key(&support::public_key("rsa.pub.pem"))
        .key(&server.key_entry(""))
        .start()
        .await;
    assert_passes(
        &gw,
        &token().signed_with(Signer::Rs256).sign(),
        "the PEM key",
    )
    .await;

    server.serve(jwks(&[
        jwk(Signer::Es256, "e1"),
        jwk(Signer::OtherRs256, "k2"),
    ]));
    let fetches = server.hits();
    let (status, body) = call(&gw, &signed(Signer::OtherRs256, "k2")).await;
    assert_eq!(
        (status, server.hits()),
        (200, fetches + 1),
        "the first token with the new kid k2 is accepted after one refetch: {body}"
    );
}

#[tokio::test]
async fn a_slow_scheduled_refresh_does_not_undo_a_newer_refetch() {
    // A scheduled refresh asks for the JWKS while it still has only k1 and gets its answer
    // late; meanwhile the provider adds k2 and a k2 token's refetch loads it. The late,
    // older answer must not take k2 away again while the provider still serves it.
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "refresh_secs = 1")
        .start()
        .await;
    server.delay(Duration::from_secs(3));
    let seen = server.hits();
    assert!(
        server
            .wait_for_hits(seen + 1, Instant::now() + Duration::from_secs(5))
            .await,
        "a scheduled refresh starts (answered k1 only, in 3 s)"
    );
    let slow_answer_at = Instant::now() + Duration::from_secs(3);
    server.change(|a| {
        a.body = Bytes::from(
            jwks(&[jwk(Signer::Rs256, "k1"), jwk(Signer::OtherRs256, "k2")]).to_string(),
        );
        a.delay = Duration::ZERO;
    });
    assert_passes(
        &gw,
        &signed(Signer::OtherRs256, "k2"),
        "k2 after the refetch",
    )
    .await;

    // Until well after the old answer has landed, k2 tokens keep passing.
    while Instant::now() < slow_answer_at + Duration::from_millis(1500) {
        let (status, body) = call(&gw, &signed(Signer::OtherRs256, "k2")).await;
        assert_eq!(
            status,
            200,
            "a k2 token {:?} after the old answer was due: {body}",
            Instant::now().checked_duration_since(slow_answer_at)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ============================================================================
// 3. Unknown-kid refetches: single flight, rate limited, never in the way
// ============================================================================

#[tokio::test]
async fn unknown_kid_bursts_cause_at_most_one_jwks_fetch_per_30_seconds() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "").start().await;
    let base = server.hits();
    assert_eq!(base, 1, "one fetch at start");

    let burst = || async {
        let calls = (0..50).map(|i| {
            let jwt = signed(Signer::OtherRs256, &format!("made-up-{i}"));
            let gw = &gw;
            async move { call(gw, &jwt).await }
        });
        futures_util::future::join_all(calls).await
    };
    for (status, body) in burst().await {
        assert_eq!(
            (status, body),
            (
                401,
                json!({"error": "invalid_token", "reason": "unknown_key"})
            )
        );
    }
    assert_eq!(
        server.hits(),
        base + 1,
        "50 concurrent unknown-kid requests share one refetch"
    );

    for (status, body) in burst().await {
        assert_eq!(
            (status, body),
            (
                401,
                json!({"error": "invalid_token", "reason": "unknown_key"})
            )
        );
    }
    assert_eq!(
        server.hits(),
        base + 1,
        "no refetch for a second burst within 30 s"
    );
    assert_passes(&gw, &signed(Signer::Rs256, "k1"), "known key").await;
}

#[tokio::test]
async fn concurrent_tokens_of_a_new_key_wait_for_one_refetch_and_all_pass() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "").start().await;
    let base = server.hits();
    server.serve(jwks(&[
        jwk(Signer::Rs256, "k1"),
        jwk(Signer::OtherRs256, "k2"),
    ]));
    server.delay(Duration::from_millis(500));

    let calls = (0..30).map(|_| {
        let jwt = signed(Signer::OtherRs256, "k2");
        let gw = &gw;
        async move { call(gw, &jwt).await }
    });
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(
            status, 200,
            "every k2 request passes after the shared refetch: {body}"
        );
    }
    assert_eq!(server.hits(), base + 1, "one refetch for all 30 requests");
}

#[tokio::test]
async fn known_key_requests_do_not_wait_for_a_slow_refetch() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "").start().await;
    let base = server.hits();
    server.delay(Duration::from_secs(2));

    let unknown = signed(Signer::OtherRs256, "not-yet-published");
    let started = Instant::now();
    let waiting = {
        let url = gw.url("/api");
        tokio::spawn(async move {
            let response = support::client()
                .get(url)
                .bearer_auth(unknown)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    assert!(
        server
            .wait_for_hits(base + 1, Instant::now() + Duration::from_secs(5))
            .await,
        "the unknown kid triggers a refetch"
    );

    let known = signed(Signer::Rs256, "k1");
    let timer = Instant::now();
    let (status, body) = call(&gw, &known).await;
    let took = timer.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(1000),
        "a known-key request took {took:?} while the JWKS server was slow"
    );

    let (status, body, waited) = waiting.await.unwrap();
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "invalid_token", "reason": "unknown_key"})
        )
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "the unknown-kid request waited for the refetch ({waited:?})"
    );
}

// ============================================================================
// 4. Failed refreshes keep the last good keys
// ============================================================================

#[tokio::test]
async fn failed_refreshes_keep_the_last_good_keys() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "refresh_secs = 1")
        .start()
        .await;
    assert_passes(&gw, &signed(Signer::Rs256, "k1"), "after the good load").await;

    // Waits for `n` more failed refreshes, then checks a fresh k1 token (not cached).
    async fn after_failures(gw: &Gateway, n: f64, within: Duration, what: &str) {
        let errors = gw.metric(REFRESH_ERROR).await;
        let oks = gw.metric(REFRESH_OK).await;
        assert!(
            eventually(within, || async {
                gw.metric(REFRESH_ERROR).await >= errors + n
            })
            .await,
            "{what}: refreshes counted as errors; logs:\n{}",
            gw.logs()
        );
        assert_eq!(
            gw.metric(REFRESH_OK).await,
            oks,
            "{what}: no refresh counted as ok"
        );
        assert_passes(gw, &signed(Signer::Rs256, "k1"), what).await;
        assert_eq!(readyz(gw).await.0, 200, "{what}: still ready");
    }

    server.fail(500);
    after_failures(&gw, 2.0, Duration::from_secs(6), "HTTP 500").await;

    server.serve_raw(b"{\"keys\": [ this is not json".to_vec());
    after_failures(&gw, 2.0, Duration::from_secs(6), "invalid JSON").await;

    server.serve(json!({"keys": [
        {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": "!!!", "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "P-256", "x": "abc"},
        {"kty": "RSA", "kid": "k1", "alg": "ES256", "n": jwk(Signer::Rs256, "x")["n"], "e": "AQAB"},
        {"kty": "oct", "kid": "k1", "k": URL_SAFE_NO_PAD.encode(OCT_SECRET)},
        {"kty": "nonsense"},
        "not an object",
    ]}));
    after_failures(&gw, 2.0, Duration::from_secs(6), "only malformed keys").await;

    server.serve(json!({"keys": []}));
    after_failures(&gw, 2.0, Duration::from_secs(6), "an empty key list").await;

    // A valid JWKS, but over 1 MiB.
    let mut huge = jwks(&[jwk(Signer::Rs256, "k1")]);
    huge["padding"] = json!("x".repeat(2 * 1024 * 1024));
    server.serve(huge);
    after_failures(&gw, 2.0, Duration::from_secs(6), "a body over 1 MiB").await;

    // A valid JWKS, but later than the 5 s fetch timeout.
    let good = Bytes::from(jwks(&[jwk(Signer::Rs256, "k1")]).to_string());
    server.change(|a| {
        a.status = 200;
        a.body = good;
        a.delay = Duration::from_secs(7);
    });
    after_failures(&gw, 1.0, Duration::from_secs(12), "an answer after 7 s").await;

    assert!(
        log_count(&gw, "WARN", REFRESH_FAILED) >= 11,
        "every failed refresh logs a WARN; logs:\n{}",
        gw.logs()
    );

    // The provider recovers: refreshes succeed again.
    server.delay(Duration::ZERO);
    let oks = gw.metric(REFRESH_OK).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gw.metric(REFRESH_OK).await > oks
        })
        .await,
        "refreshes succeed again once the provider recovers"
    );
    assert_passes(&gw, &signed(Signer::Rs256, "k1"), "after recovery").await;
}

// ============================================================================
// 5. Cache-Control
// ============================================================================

#[tokio::test]
async fn cache_control_max_age_shorter_than_refresh_secs_brings_the_refresh_forward() {
    let upstream = upstream().await;
    let short = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    short.cache_control(Some("public, max-age=1"));
    let zero = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    zero.cache_control(Some("max-age=0"));
    let plain = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;

    let (gw_short, gw_zero, gw_plain) = tokio::join!(
        jwks_gateway(&upstream, &short, "refresh_secs = 300").start(),
        jwks_gateway(&upstream, &zero, "refresh_secs = 300").start(),
        jwks_gateway(&upstream, &plain, "refresh_secs = 300").start(),
    );

    let first = short.hit_times()[0];
    assert!(
        short.wait_for_hits(2, first + Duration::from_secs(3)).await,
        "max-age=1 brings the next refresh to ~1 s (refresh_secs = 300); logs:\n{}",
        gw_short.logs()
    );
    assert!(
        short.wait_for_hits(3, first + Duration::from_secs(5)).await,
        "and the refresh after that too"
    );
    assert_eq!(
        plain.hits(),
        1,
        "without Cache-Control the next refresh is refresh_secs away"
    );
    assert!(
        zero.hits() <= 4,
        "max-age=0 is treated as at least 1 s, not a fetch loop ({} fetches)",
        zero.hits()
    );
    assert!(zero.hits() >= 2, "max-age=0 refreshes early too");
    assert_passes(&gw_short, &signed(Signer::Rs256, "k1"), "max-age=1 gateway").await;
    assert_passes(&gw_zero, &signed(Signer::Rs256, "k1"), "max-age=0 gateway").await;
    assert_passes(&gw_plain, &signed(Signer::Rs256, "k1"), "plain gateway").await;
}

// ============================================================================
// 6. JWK types
// ============================================================================

/// A JWKS with every supported key type, an `enc` key and an `oct` key.
fn mixed_jwks() -> Value {
    let mut enc = jwk(Signer::OtherRs256, "enc");
    enc["use"] = json!("enc");
    let oct = jwk_of(
        &EncodingKey::from_secret(OCT_SECRET).unwrap(),
        Algorithm::HS256,
        "oct",
    );
    jwks(&[
        jwk(Signer::Es256, "ec256"),
        jwk(Signer::Es384, "ec384"),
        jwk(Signer::EdDsa, "ed"),
        jwk(Signer::Rs256, "rs256-only"),
        jwk_without_alg(Signer::Rs256, "rsa-any-alg"),
        enc,
        oct,
    ])
}

fn oct_token() -> String {
    hs256_with_secret(
        json!({"alg": "HS256", "typ": "JWT", "kid": "oct"}),
        OCT_SECRET,
    )
}

#[tokio::test]
async fn jwks_ec_okp_and_rsa_keys_verify_their_algorithms_only() {
    let upstream = upstream().await;
    let server = JwksServer::start(mixed_jwks()).await;
    let gw = jwks_gateway(&upstream, &server, "").start().await;

    assert_passes(
        &gw,
        &signed(Signer::Es256, "ec256"),
        "ES256 with an EC P-256 JWK",
    )
    .await;
    assert_passes(
        &gw,
        &signed(Signer::Es384, "ec384"),
        "ES384 with an EC P-384 JWK",
    )
    .await;
    assert_passes(
        &gw,
        &signed(Signer::EdDsa, "ed"),
        "EdDSA with an OKP Ed25519 JWK",
    )
    .await;
    assert_passes(
        &gw,
        &signed(Signer::Rs256, "rs256-only"),
        "RS256 with an RS256 JWK",
    )
    .await;
    assert_passes(
        &gw,
        &signed(Signer::Ps256, "rsa-any-alg"),
        "PS256 with an RSA JWK without alg",
    )
    .await;
    assert_refused(
        &gw,
        &signed(Signer::Ps256, "rs256-only"),
        "bad_signature",
        "a PS256 token signed by the key of a JWK whose alg is RS256",
    )
    .await;
    assert_refused(
        &gw,
        &signed(Signer::OtherRs256, "enc"),
        "unknown_key",
        "a key with \"use\": \"enc\" is not a signature key",
    )
    .await;
    assert_refused(
        &gw,
        &oct_token(),
        "unknown_key",
        "an oct key without allow_hmac",
    )
    .await;
}

#[tokio::test]
async fn jwks_oct_key_is_used_only_with_allow_hmac() {
    let upstream = upstream().await;
    let server = JwksServer::start(mixed_jwks()).await;
    let gw = jwks_gateway(&upstream, &server, "allow_hmac = true")
        .start()
        .await;
    assert_passes(&gw, &oct_token(), "an oct key with allow_hmac").await;
    assert_refused(
        &gw,
        &hs256_with_secret(
            json!({"alg": "HS256", "typ": "JWT", "kid": "oct"}),
            b"some-other-secret-0123456789abcdef",
        ),
        "bad_signature",
        "HS256 with the oct kid but another secret",
    )
    .await;
    assert_refused(
        &gw,
        &signed(Signer::OtherRs256, "enc"),
        "unknown_key",
        "an enc key stays unusable with allow_hmac",
    )
    .await;
    assert_passes(
        &gw,
        &signed(Signer::Es256, "ec256"),
        "other keys still work",
    )
    .await;
}

// ============================================================================
// 7. Algorithm confusion
// ============================================================================

#[tokio::test]
async fn hs256_token_keyed_with_a_jwks_public_key_is_refused() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[
        jwk(Signer::Rs256, "k1"),
        jwk_without_alg(Signer::Rs256, "k1-any-alg"),
    ]))
    .await;
    // The default HMAC key too (HS256 is allowed), and allow_hmac on the JWKS.
    let gw = gateway(&upstream)
        .key(&server.key_entry("allow_hmac = true"))
        .start()
        .await;

    let pem = std::fs::read(support::fixture("rsa.pub.pem")).unwrap();
    let pem_text = String::from_utf8(pem.clone()).unwrap();
    let base64_body: String = pem_text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(base64_body).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(jwk(Signer::Rs256, "k1")["n"].as_str().unwrap())
        .unwrap();
    let secrets: [(&str, &[u8]); 4] = [
        ("PEM file bytes", &pem),
        (
            "PEM without trailing newline",
            pem_text.trim_end().as_bytes(),
        ),
        ("SPKI DER bytes", &der),
        ("modulus n bytes", &n),
    ];
    for (what, secret) in secrets {
        for kid in [Some("k1"), Some("k1-any-alg"), None] {
            let mut header = json!({"alg": "HS256", "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let jwt = hs256_with_secret(header, secret);
            assert_refused_signature(
                &gw,
                &jwt,
                &format!("HS256 keyed with the {what}, kid {kid:?}"),
            )
            .await;
        }
    }
    assert_eq!(upstream.count(), 0, "nothing was forwarded");
    assert_passes(&gw, &signed(Signer::Rs256, "k1"), "the real RS256 token").await;
}

#[tokio::test]
async fn token_alg_must_match_the_jwk_alg() {
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Es256, "ec")])).await;
    let gw = jwks_gateway(&upstream, &server, "").start().await;

    assert_passes(
        &gw,
        &signed(Signer::Es256, "ec"),
        "ES256 with the ES256 JWK",
    )
    .await;
    let es384_signed = token()
        .signed_with(Signer::Es384)
        .header("kid", json!("ec"))
        .sign();
    assert_refused_signature(
        &gw,
        &es384_signed,
        "ES384 token (P-384 key) naming the ES256 JWK",
    )
    .await;
    let es256_key_es384_header = token()
        .header("alg", json!("ES384"))
        .header("kid", json!("ec"))
        .key_only(Signer::Es256)
        .sign();
    assert_refused_signature(
        &gw,
        &es256_key_es384_header,
        "header alg ES384, signed with the P-256 key of the ES256 JWK",
    )
    .await;
    assert_eq!(upstream.count(), 1, "only the genuine token was forwarded");
}

// ============================================================================
// 8. Verified-token cache
// ============================================================================

#[tokio::test]
async fn cached_token_is_refused_on_the_next_request_after_logout_all() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let user = token().sub("alice").sign();
    let admin_token = admin("root", "acme").sign();

    assert_passes(&gw, &user, "first use").await;
    let hits = gw.metric(CACHE_HIT).await;
    assert_passes(&gw, &user, "second use").await;
    assert_eq!(
        gw.metric(CACHE_HIT).await,
        hits + 1.0,
        "the second use is a cache hit"
    );

    let response = gw.logout_all("acme", &admin_token).await;
    assert_eq!(response.status(), 200);
    let hits = gw.metric(CACHE_HIT).await;
    assert_refused(
        &gw,
        &user,
        "session_invalidated",
        "the cached token, right after logout-all",
    )
    .await;
    assert_eq!(
        gw.metric(CACHE_HIT).await,
        hits + 1.0,
        "the refusal came from a cache hit: the session step runs on hits"
    );
    assert_passes(&gw, &admin_token, "the admin's preserved session").await;
}

#[tokio::test]
async fn cached_token_is_refused_once_it_expires() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).set("jwt.leeway_secs = 0").start().await;
    let exp = support::now() + 2.0;
    let jwt = token().exp(exp).sign();

    assert_passes(&gw, &jwt, "first use").await;
    let hits = gw.metric(CACHE_HIT).await;
    assert_passes(&gw, &jwt, "second use").await;
    assert_eq!(gw.metric(CACHE_HIT).await, hits + 1.0, "cached");

    let wait = exp - support::now() + 0.05;
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    assert_refused(&gw, &jwt, "expired", "the cached token after exp").await;
}

#[tokio::test]
async fn an_unchanged_jwks_refresh_keeps_cached_verifications() {
    // Entries verified under an older key set are dropped when the JWKS *changes*; a
    // refresh that brings the same keys is not a change.
    let upstream = upstream().await;
    let server = JwksServer::start(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(&upstream, &server, "refresh_secs = 1")
        .start()
        .await;
    let jwt = signed(Signer::Rs256, "k1");
    assert_passes(&gw, &jwt, "first use").await;
    let hits = gw.metric(CACHE_HIT).await;
    let fetches = server.hits();
    assert!(
        server
            .wait_for_hits(fetches + 2, Instant::now() + Duration::from_secs(5))
            .await,
        "scheduled refreshes every second"
    );
    assert_passes(
        &gw,
        &jwt,
        "second use, after refreshes that changed nothing",
    )
    .await;
    assert_eq!(
        gw.metric(CACHE_HIT).await,
        hits + 1.0,
        "the same JWKS again must not empty the verified-token cache"
    );
}

#[tokio::test]
async fn verify_cache_entries_zero_disables_the_cache() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("jwt.verify_cache_entries = 0")
        .start()
        .await;
    let jwt = token().sign();
    for n in 0..3 {
        assert_passes(&gw, &jwt, &format!("use {n}")).await;
    }
    assert_eq!(gw.metric(CACHE_HIT).await, 0.0, "no cache hits");
}

// ============================================================================
// 9. JWKS over https
// ============================================================================

#[tokio::test]
async fn jwks_over_https_with_a_private_ca_file() {
    let upstream = upstream().await;
    let server = JwksServer::start_https(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    let gw = jwks_gateway(
        &upstream,
        &server,
        &format!("ca_file = \"{}\"", dev_cert("ca.pem").display()),
    )
    .start()
    .await;
    assert_eq!(server.hits(), 1, "fetched once over TLS");
    assert_passes(
        &gw,
        &signed(Signer::Rs256, "k1"),
        "RS256 from the https JWKS",
    )
    .await;
}

#[tokio::test]
async fn https_jwks_from_an_untrusted_certificate_never_makes_the_gateway_ready() {
    let upstream = upstream().await;
    let server = JwksServer::start_https(jwks(&[jwk(Signer::Rs256, "k1")])).await;
    // A CA file that did not sign the server's certificate.
    let gw = jwks_gateway(
        &upstream,
        &server,
        &format!(
            "ca_file = \"{}\"",
            support::fixture("rsa.cert.pem").display()
        ),
    )
    .start_unready()
    .await;
    assert!(
        eventually(Duration::from_secs(8), || async {
            log_count(&gw, "WARN", REFRESH_FAILED) >= 2
        })
        .await,
        "failed TLS fetches are logged; logs:\n{}",
        gw.logs()
    );
    assert_eq!(
        server.hits(),
        0,
        "no HTTP request got through the TLS handshake"
    );
    assert_eq!(
        readyz(&gw).await,
        (
            503,
            json!({"ready": false, "keys": "loading", "store": "loaded", "draining": false})
        )
    );
    let (status, body) = call(&gw, &signed(Signer::Rs256, "k1")).await;
    assert_eq!((status, body), (503, json!({"error": "not_ready"})));
}
