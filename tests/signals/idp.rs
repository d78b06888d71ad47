//! The identity provider of these tests: signed logout tokens and Security Event Tokens
//! from the fixture keys, a real JWKS endpoint, gateways that trust it, and the requests
//! that deliver its signals.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use crate::support::until;
use crate::support::{self, Gateway, GatewayBuilder, Signer, TokenBuilder, Upstream};

/// The `iss` of the test identity provider, and the `aud` its signals carry.
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "sessiongate-test";
/// A second issuer, trusted with the same key.
pub const OTHER_ISSUER: &str = "https://other-idp.test";

pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

pub const BACKCHANNEL_PATH: &str = "/_sessiongate/v1/signals/backchannel-logout";
pub const SSF_PATH: &str = "/_sessiongate/v1/signals/ssf";

// ============================================================================
// Signed signals
// ============================================================================

/// A logout token or SET under construction: full control over header and claims.
#[derive(Debug, Clone)]
pub struct Signal(TokenBuilder);

/// A unique `jti`.
pub fn jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "sig-{}-{}-{}",
        std::process::id(),
        support::now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Signal {
    /// A valid OIDC back-channel logout token for `sub`, RS256 with the fixture key.
    pub fn logout(sub: &str) -> Self {
        let now = support::now().floor();
        Self::from_issuer(support::token().sub(sub))
            .header("typ", json!("logout+jwt"))
            .claim("exp", json!(now + 120.0))
            .claim("events", json!({BACKCHANNEL_EVENT: {}}))
    }

    /// A valid Security Event Token carrying one event `uri` with payload `event`.
    pub fn set(uri: &str, event: Value) -> Self {
        Self::from_issuer(support::token().without("sub").without("exp"))
            .header("typ", json!("secevent+jwt"))
            .claim("events", json!({ uri: event }))
    }

    /// A SET of `event` (`caep/...`, `risc/...` name) about `subject`, in the event.
    pub fn event(uri: &str, subject: Value) -> Self {
        Self::set(uri, json!({ "subject": subject }))
    }

    /// The test issuer's claims on `token`'s (issued now, fresh `jti`), RS256-signed.
    fn from_issuer(token: TokenBuilder) -> Self {
        let token = token
            .without("workspace_id")
            .claim("iss", json!(ISSUER))
            .claim("aud", json!(AUDIENCE))
            .claim("jti", json!(jti()))
            .signed_with(Signer::Rs256);
        Self(token)
    }

    pub fn claim(self, name: &str, value: Value) -> Self {
        Self(self.0.claim(name, value))
    }

    pub fn without(self, name: &str) -> Self {
        Self(self.0.without(name))
    }

    pub fn header(self, name: &str, value: Value) -> Self {
        Self(self.0.header(name, value))
    }

    pub fn without_header(self, name: &str) -> Self {
        Self(self.0.without_header(name))
    }

    /// Signs with `signer`, the header's `alg` following.
    pub fn signed_with(self, signer: Signer) -> Self {
        Self(self.0.signed_with(signer))
    }

    /// The compact token.
    pub fn sign(&self) -> String {
        self.0.sign()
    }

    /// The header and claims with an empty signature.
    pub fn unsigned(&self) -> String {
        format!("{}.", self.input())
    }

    /// `alg: HS256`, HMAC-keyed with `secret` (for the key-confusion attack).
    pub fn hs256_with(self, secret: &[u8]) -> String {
        let input = self.header("alg", json!("HS256")).input();
        let key = EncodingKey::from_secret(secret).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{signature}")
    }

    /// `header.claims`, as signed.
    fn input(&self) -> String {
        let token = self.sign();
        let (input, _) = token.rsplit_once('.').unwrap();
        input.to_string()
    }
}

/// The public JWK of a fixture key, named `kid`.
pub fn jwk(signer: Signer, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&signer.key(), signer.algorithm()).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

// ============================================================================
// Gateways that trust the identity provider
// ============================================================================

/// One `[[signals.issuers]]` entry as an inline table: the test issuer with the fixture
/// RSA public key, plus `extra` fields (`, workspace = "acme"`).
pub fn issuer(extra: &str) -> String {
    issuer_named(ISSUER, extra)
}

/// An entry for issuer `iss` with the fixture RSA public key.
pub fn issuer_named(iss: &str, extra: &str) -> String {
    format!(
        "{{ issuer = \"{iss}\", audience = \"{AUDIENCE}\", public_key_file = \"{}\"{extra} }}",
        support::fixture("rsa.pub.pem").display()
    )
}

/// `builder` trusting exactly these issuer entries.
pub fn trusting(builder: GatewayBuilder, issuers: &[String]) -> GatewayBuilder {
    builder.set(&format!("signals.issuers = [{}]", issuers.join(", ")))
}

/// A gateway in front of `upstream` trusting the test issuer (plus `extra` fields).
pub async fn gateway(upstream: &Upstream, extra: &str) -> Gateway {
    trusting(support::gateway(upstream), &[issuer(extra)])
        .start()
        .await
}

// ============================================================================
// Delivering signals, and what the product sees
// ============================================================================

/// An answer: status, JSON body (`Null` when empty), and its `Cache-Control`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub cache_control: Option<String>,
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let cache_control = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        cache_control,
    }
}

/// `POST .../backchannel-logout` with the form `logout_token=<token>`.
pub async fn backchannel(gw: &Gateway, token: &str) -> Reply {
    let body = format!("logout_token={token}");
    post(
        gw,
        BACKCHANNEL_PATH,
        "application/x-www-form-urlencoded",
        body,
        None,
    )
    .await
}

/// An RFC 8935 push of `set`, with this `Authorization` header if any.
pub async fn push(gw: &Gateway, set: &str, authorization: Option<&str>) -> Reply {
    post(
        gw,
        SSF_PATH,
        "application/secevent+jwt",
        set.to_string(),
        authorization,
    )
    .await
}

pub async fn post(
    gw: &Gateway,
    path: &str,
    content_type: &str,
    body: String,
    authorization: Option<&str>,
) -> Reply {
    let mut request = gw
        .post(path)
        .header("content-type", content_type)
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    reply(request.send().await.unwrap()).await
}

/// Status and refusal reason of `GET /api` with `jwt` (`None` when forwarded).
pub async fn api(gw: &Gateway, jwt: &str) -> (u16, Option<String>) {
    let rsp = gw.get("/api").bearer_auth(jwt).send().await.unwrap();
    let status = rsp.status().as_u16();
    let body: Value = rsp.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().map(str::to_string))
}

pub const PASSES: (u16, Option<String>) = (200, None);

pub fn revoked() -> (u16, Option<String>) {
    (401, Some("session_revoked".into()))
}

pub fn invalidated() -> (u16, Option<String>) {
    (401, Some("session_invalidated".into()))
}

/// Ten seconds ago: a session time every cutoff set in a test is later than.
pub fn earlier() -> f64 {
    support::now().floor() - 10.0
}

/// The next whole second: a session time later than every cutoff set so far.
pub fn later() -> f64 {
    support::now().floor() + 1.0
}

/// A token of `sub` in `workspace`, issued ten seconds ago.
pub fn user(sub: &str, workspace: &str) -> support::TokenBuilder {
    support::token()
        .sub(sub)
        .workspace(workspace)
        .iat(earlier())
}

/// `sessiongate_signals_<what>_total{signal="<signal>"}`.
pub async fn signals(gw: &Gateway, what: &str, signal: &str) -> f64 {
    let series = format!("sessiongate_signals_{what}_total{{signal=\"{signal}\"}}");
    gw.metric(&series).await
}

/// The sum of every `sessiongate_signals_refused_total` series of `signal`.
pub async fn refusals(gw: &Gateway, signal: &str) -> f64 {
    let text = gw.ops_get("/metrics").await.text().await.unwrap();
    let prefix = format!("sessiongate_signals_refused_total{{signal=\"{signal}\",");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `audit` log events of the gateway with this action, once there are `n` of them
/// (its output is read by another thread, a moment later); a panic after 5 s.
pub async fn audit_lines(gw: &Gateway, action: &str, n: usize) -> Vec<Value> {
    let lines = || -> Vec<Value> {
        gw.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["target"] == "audit" && event["action"] == action)
            .collect()
    };
    until(
        &format!("{n} {action} audit events"),
        Duration::from_secs(5),
        || {
            let enough = lines().len() >= n;
            async move { enough }
        },
    )
    .await;
    let found = lines();
    assert_eq!(found.len(), n, "{action}: {found:?}");
    found
}

// ============================================================================
// A JWKS endpoint
// ============================================================================

/// The identity provider's JWKS endpoint: a real HTTP server whose answer a test changes.
pub struct JwksServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Serves `status` with `document`.
    pub async fn start(status: u16, document: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new((status, document.to_string())));
        let hits = Arc::new(AtomicU64::new(0));
        let (shared, counter) = (answer.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (shared, counter) = (shared.clone(), counter.clone());
                let service = service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = shared.lock().unwrap().clone();
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self {
            addr,
            answer,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// From now on, answers 200 with `{"keys": keys}`.
    pub fn serve(&self, keys: &[Value]) {
        *self.answer.lock().unwrap() = (200, json!({ "keys": keys }).to_string());
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}
