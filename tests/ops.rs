//! Operability (issue 6, SPEC section 7): the ops listener (`/healthz`, `/readyz`,
//! `/metrics`), the `access` and `audit` log events, and "never a token or secret" in any
//! log output or in `sessiongate check`.
//!
//! Most tests use the harness gateway (`support::gateway`). Those that need a log format or
//! level the harness does not write, `RUST_LOG`, or an upstream that can be shut down for
//! good start the binary themselves (`RawGateway`): fixed free ports, ready once `/readyz`
//! answers 200, and the complete output collected after a SIGTERM.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use support::{Gateway, SECRET, Signer, TokenBuilder, admin, gateway, now, token, upstream};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_sessiongate");
/// How long anything that happens "eventually" may take before a test gives up.
const EVENTUALLY: Duration = Duration::from_secs(10);
const AUDIT_PATH: &str = "/_sessiongate/v1/workspaces/acme/audit";

// ============================================================================
// Prometheus exposition parser
// ============================================================================

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone)]
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

/// Parses the text exposition; panics on any line that is neither a comment nor a sample.
fn parse_exposition(text: &str) -> Scrape {
    let samples = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            parse_sample(line).unwrap_or_else(|why| panic!("bad exposition line {line:?}: {why}"))
        })
        .collect();
    Scrape {
        samples,
        text: text.to_string(),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut consumed = None;
        loop {
            // Label name up to '=' (or the closing brace).
            let mut key = String::new();
            loop {
                match chars.next() {
                    Some((i, '}')) if key.is_empty() => {
                        consumed = Some(i + 1);
                        break;
                    }
                    Some((_, '=')) => break,
                    Some((_, c)) if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                    Some((_, c)) => return Err(format!("bad label name character {c:?}")),
                    None => return Err("unterminated labels".into()),
                }
            }
            if consumed.is_some() {
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            match chars.next() {
                Some((_, ',')) => {
                    // A trailing comma before '}' is allowed.
                    if let Some(&(i, '}')) = chars.peek() {
                        consumed = Some(i + 1);
                        break;
                    }
                }
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
        rest = &inner[consumed.expect("set before break")..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    // An optional timestamp, then nothing.
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

impl Scrape {
    /// The sample with exactly these labels, if exported.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut found = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted);
        let sample = found.next()?;
        assert!(
            found.next().is_none(),
            "{name}{labels:?} exported twice:\n{}",
            self.text
        );
        Some(sample.value)
    }

    /// Like `get`, but a counter series not exported yet counts as 0 (a labelled family may
    /// only appear with its first increment).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Like `get`, but the series must be there.
    fn require(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} not exported:\n{}", self.text))
    }

    /// The label sets exported under `name`.
    fn label_sets(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.clone())
            .collect()
    }
}

#[test]
fn exposition_parser_reads_labels_escapes_and_special_values() {
    let scrape = parse_exposition(
        "# HELP a_total x\n# TYPE a counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\nb 2.5 1700000000\n\
         c_bucket{le=\"+Inf\",} 7\nd +Inf\n# EOF\n",
    );
    assert_eq!(
        scrape.get("a_total", &[("x", "1"), ("y", "q\"\\\n")]),
        Some(3.0)
    );
    assert_eq!(scrape.get("b", &[]), Some(2.5));
    assert_eq!(scrape.get("c_bucket", &[("le", "+Inf")]), Some(7.0));
    assert_eq!(scrape.get("d", &[]), Some(f64::INFINITY));
    assert_eq!(scrape.get("a_total", &[("x", "1")]), None);
    assert!(parse_sample("bad{x=1} 2").is_err());
    assert!(parse_sample("bad{x=\"1\" 2").is_err());
    assert!(parse_sample("bad 2 3 4").is_err());
    assert!(parse_sample("bad two").is_err());
}

// ============================================================================
// Helpers
// ============================================================================

/// A client that keeps no idle connection, so open-connection counts settle.
fn fresh_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn scrape_at(client: &reqwest::Client, ops: SocketAddr) -> Scrape {
    let rsp = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let content_type = rsp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    parse_exposition(&rsp.text().await.unwrap())
}

async fn scrape(gw: &Gateway) -> Scrape {
    scrape_at(&fresh_client(), gw.ops.expect("ops listener enabled")).await
}

/// Polls `check` every 20 ms until it gives `Some`; panics with `what` after `EVENTUALLY`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON log events in `logs` (non-JSON lines skipped).
fn events(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

fn with_target(logs: &str, target: &str) -> Vec<Value> {
    events(logs)
        .into_iter()
        .filter(|e| e["target"] == target)
        .collect()
}

/// Makes a request nobody else makes and waits until its access line is in the output.
/// The process writes its lines in order, so every earlier request's line is in too.
async fn sync_logs(gw: &Gateway) -> String {
    let path = format!("/log-sentinel-{}", (now() * 1e6) as u64);
    let rsp = gw.get(&path).send().await.unwrap();
    assert_eq!(rsp.status(), 401);
    eventually("the sentinel access line", || {
        let logs = gw.logs();
        let seen = with_target(&logs, "access")
            .iter()
            .any(|e| e["path"] == path.as_str());
        std::future::ready(seen.then_some(logs))
    })
    .await
}

/// `sha256:` and the first 16 hex digits of SHA-256 over the compact token.
fn hashed_session_prefix(jwt: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwt.as_bytes());
    format!("sha256:{}", &hex::encode(digest.as_ref())[..16])
}

/// The third (signature) segment of a compact token.
fn signature_of(jwt: &str) -> &str {
    jwt.rsplit('.').next().unwrap()
}

/// `header.payload` of `jwt` with the signature of `other`: a token the key did not sign.
fn with_foreign_signature(jwt: &str, other: &str) -> String {
    let (message, _) = jwt.rsplit_once('.').unwrap();
    format!("{message}.{}", signature_of(other))
}

fn expired() -> TokenBuilder {
    let t = now().floor();
    token().iat(t - 7200.0).exp(t - 3600.0)
}

async fn json_of(rsp: reqwest::Response) -> (u16, Value) {
    let status = rsp.status().as_u16();
    let text = rsp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, body)
}

// ============================================================================
// A gateway started by the test itself
// ============================================================================

/// An upstream that answers 200 and closes every connection, and that can be closed for
/// good (listener gone, no pooled connection left), so the next request finds no one.
struct ClosableUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

async fn closable_upstream() -> ClosableUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"ok\":true}",
                    ))))
                });
                let _ = http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    ClosableUpstream { addr, task }
}

impl ClosableUpstream {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns once the listener is dropped: connecting is refused from then on.
    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration of a `RawGateway`.
struct RawBuilder {
    dir: tempfile::TempDir,
    upstream_url: String,
    format: &'static str,
    level: &'static str,
    settings: Vec<String>,
    keys: Vec<String>,
    rust_log: Option<String>,
}

fn raw_gateway(upstream_url: &str) -> RawBuilder {
    RawBuilder {
        dir: tempfile::tempdir().unwrap(),
        upstream_url: upstream_url.to_string(),
        format: "json",
        level: "info",
        settings: Vec::new(),
        keys: Vec::new(),
        rust_log: None,
    }
}

/// A `sessiongate serve` the test spawned; its output is complete after `finish`.
struct RawGateway {
    child: Child,
    addr: SocketAddr,
    ops: SocketAddr,
    config: PathBuf,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl RawBuilder {
    fn format(mut self, format: &'static str) -> Self {
        self.format = format;
        self
    }

    fn level(mut self, level: &'static str) -> Self {
        self.level = level;
        self
    }

    fn set(mut self, line: &str) -> Self {
        self.settings.push(line.to_string());
        self
    }

    /// An extra `[[jwt.keys]]` table body.
    fn key(mut self, table: &str) -> Self {
        self.keys.push(table.to_string());
        self
    }

    fn rust_log(mut self, value: &str) -> Self {
        self.rust_log = Some(value.to_string());
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn start(self) -> RawGateway {
        let (main_port, ops_port) = (free_port(), free_port());
        let secret = self.path("hmac.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let mut text = format!(
            "upstream.url = \"{}\"\nserver.listen = \"127.0.0.1:{main_port}\"\n\
             ops.listen = \"127.0.0.1:{ops_port}\"\nstore.path = \"{}\"\n\
             log.format = \"{}\"\nlog.level = \"{}\"\njwt.algorithms = [\"HS256\"]\n",
            self.upstream_url,
            self.path("store.redb").display(),
            self.format,
            self.level,
        );
        for line in &self.settings {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!(
            "[[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
            secret.display()
        ));
        for key in &self.keys {
            text.push_str(&format!("[[jwt.keys]]\n{key}\n"));
        }
        let config = self.path("sessiongate.toml");
        std::fs::write(&config, text).unwrap();

        let mut command = Command::new(BIN);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(value) = &self.rust_log {
            command.env("RUST_LOG", value);
        }
        let mut child = command.spawn().expect("the sessiongate binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), output.clone()),
            collect(child.stderr.take().unwrap(), output.clone()),
        ];
        let mut gw = RawGateway {
            child,
            addr: ([127, 0, 0, 1], main_port).into(),
            ops: ([127, 0, 0, 1], ops_port).into(),
            config,
            output,
            readers,
            client: fresh_client(),
            _dir: self.dir,
        };
        gw.wait_ready().await;
        gw
    }
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    })
}

impl RawGateway {
    /// Until `/readyz` answers 200 (the log may be silent at the configured level).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(rsp) = self
                .client
                .get(format!("http://{}/readyz", self.ops))
                .send()
                .await
                && rsp.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready on {}:\n{}",
                self.ops,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    async fn scrape(&self) -> Scrape {
        scrape_at(&self.client, self.ops).await
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// SIGTERM, wait for the exit, and return everything the process printed.
    async fn finish(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit after SIGTERM:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let output = self.output();
        assert!(status.success(), "exit {status}:\n{output}");
        output
    }
}

impl Drop for RawGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ============================================================================
// 1. Health and readiness
// ============================================================================

#[tokio::test]
async fn ops_listener_answers_healthz_readyz_and_404_for_unknown_paths() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;

    let (status, body) = json_of(gw.ops_get("/healthz").await).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    let (status, body) = json_of(gw.ops_get("/readyz").await).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"ready": true, "keys": "loaded", "store": "loaded", "draining": false})
        )
    );

    for path in ["/nope", "/healthz/extra", "/metricsz", "/"] {
        let (status, body) = json_of(gw.ops_get(path).await).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body, json!({"error": "not_found"}), "{path}");
    }
    // The ops endpoints live on the ops listener only: on the main one they are proxied
    // paths like any other (no token -> 401), never answered by the gateway itself.
    let rsp = gw.get("/healthz").send().await.unwrap();
    assert_eq!(rsp.status(), 401);
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// 2. Metrics
// ============================================================================

#[tokio::test]
async fn metrics_count_each_outcome_rejection_logout_and_upstream_error_exactly() {
    let upstream = closable_upstream().await;
    let gw = raw_gateway(&upstream.url()).start().await;
    let before = gw.scrape().await;

    let user = token().sign();
    let admin_token = admin("ada", "acme").sign();

    // Forwarded twice with the same token: the second verification is a cache hit.
    for _ in 0..2 {
        let rsp = gw.get("/fwd").bearer_auth(&user).send().await.unwrap();
        assert_eq!(rsp.status(), 200);
    }
    // Rejected: expired, then no token at all.
    let (status, body) = json_of(
        gw.get("/x")
            .bearer_auth(expired().sign())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["reason"]), (401, &json!("expired")));
    let (status, body) = json_of(gw.get("/x").send().await.unwrap()).await;
    assert_eq!((status, &body["reason"]), (401, &json!("missing_token")));
    // Admin: one logout-all.
    let rsp = gw
        .post("/_sessiongate/v1/workspaces/acme/logout-all")
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    // The upstream goes away: 502 (the admin's token is the preserved session: a hit).
    upstream.close().await;
    let (status, body) = json_of(
        gw.get("/dead")
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (502, json!({"error": "bad_gateway"})));

    let after = gw.scrape().await;
    let mut wrong = Vec::new();
    let mut expect = |name: &str, labels: &[(&str, &str)], increase: f64| {
        let was = before.counter(name, labels);
        let is = after.get(name, labels);
        if is != Some(was + increase) {
            wrong.push(format!(
                "{name}{labels:?}: {was} -> {is:?}, expected +{increase}"
            ));
        }
    };
    expect(
        "sessiongate_requests_total",
        &[("outcome", "forwarded")],
        2.0,
    );
    expect(
        "sessiongate_requests_total",
        &[("outcome", "rejected")],
        2.0,
    );
    expect("sessiongate_requests_total", &[("outcome", "admin")], 1.0);
    expect("sessiongate_requests_total", &[("outcome", "error")], 1.0);
    expect(
        "sessiongate_rejections_total",
        &[("reason", "expired")],
        1.0,
    );
    expect(
        "sessiongate_rejections_total",
        &[("reason", "missing_token")],
        1.0,
    );
    expect(
        "sessiongate_rejections_total",
        &[("reason", "bad_signature")],
        0.0,
    );
    expect(
        "sessiongate_logouts_total",
        &[("action", "logout_all")],
        1.0,
    );
    expect(
        "sessiongate_upstream_errors_total",
        &[("kind", "unreachable")],
        1.0,
    );
    expect("sessiongate_verify_cache_total", &[("result", "hit")], 2.0);
    // Six requests on the main listener: each is timed, end to end and the gateway's part.
    expect("sessiongate_request_duration_seconds_count", &[], 6.0);
    expect("sessiongate_gateway_duration_seconds_count", &[], 6.0);
    // "Upstream response-header latency": the two requests the upstream answered. A
    // refused connection has no response headers; counting it as a ~0 s latency would
    // drag the upstream percentiles down exactly when the upstream is down.
    expect("sessiongate_upstream_duration_seconds_count", &[], 2.0);
    expect(
        "sessiongate_request_duration_seconds_bucket",
        &[("le", "+Inf")],
        6.0,
    );
    assert!(
        wrong.is_empty(),
        "metrics did not move as expected:\n{}\n\nbefore:\n{}\nafter:\n{}",
        wrong.join("\n"),
        before.text,
        after.text
    );
    assert_eq!(after.require("sessiongate_store_up", &[]), 1.0);
    assert_eq!(after.require("sessiongate_cutoffs_loaded", &[]), 0.0);
}

#[tokio::test]
async fn open_connections_gauge_follows_a_held_keep_alive_connection() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let client = fresh_client();
    let ops = gw.ops.unwrap();
    let open = |client: reqwest::Client| async move {
        scrape_at(&client, ops)
            .await
            .require("sessiongate_open_connections", &[])
    };
    // The harness waited on the log, not on a request: nothing is open yet.
    let idle = eventually("no client connection open", || {
        let client = client.clone();
        async move { (open(client).await == 0.0).then_some(0.0) }
    })
    .await;

    // A raw HTTP/1.1 keep-alive connection that made one request and stays open.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let jwt = token().sign();
    let request = format!(
        "GET /held HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {jwt}\r\n\r\n",
        gw.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut byte)
            .await
            .unwrap();
        assert_eq!(n, 1, "connection closed mid-response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(upstream.count(), 1);

    assert_eq!(open(client.clone()).await, idle + 1.0);
    drop(stream);
    eventually("open_connections back to its idle value", || {
        let client = client.clone();
        async move { (open(client).await == idle).then_some(()) }
    })
    .await;
}

/// Prometheus: a series that only appears with its first increment is invisible to
/// `increase()`/`rate()` for that first event, and alerts on it cannot tell "zero" from
/// "not scraped". The gateway already exports its outcome and reason series at 0; the
/// label values of upstream errors, logouts and JWKS refreshes are just as fixed.
#[tokio::test]
async fn every_documented_series_is_exported_before_its_first_event() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let scrape = scrape(&gw).await;
    let mut missing = Vec::new();
    let series: &[(&str, &[(&str, &str)])] = &[
        ("sessiongate_requests_total", &[("outcome", "forwarded")]),
        ("sessiongate_requests_total", &[("outcome", "rejected")]),
        ("sessiongate_requests_total", &[("outcome", "admin")]),
        ("sessiongate_requests_total", &[("outcome", "error")]),
        ("sessiongate_rejections_total", &[("reason", "expired")]),
        (
            "sessiongate_rejections_total",
            &[("reason", "missing_token")],
        ),
        ("sessiongate_request_duration_seconds_count", &[]),
        ("sessiongate_gateway_duration_seconds_count", &[]),
        ("sessiongate_upstream_duration_seconds_count", &[]),
        (
            "sessiongate_upstream_errors_total",
            &[("kind", "unreachable")],
        ),
        (
            "sessiongate_upstream_errors_total",
            &[("kind", "connect_timeout")],
        ),
        ("sessiongate_upstream_errors_total", &[("kind", "timeout")]),
        ("sessiongate_logouts_total", &[("action", "logout_all")]),
        ("sessiongate_logouts_total", &[("action", "user_logout")]),
        ("sessiongate_logouts_total", &[("action", "logout_others")]),
        ("sessiongate_open_connections", &[]),
        ("sessiongate_open_tunnels", &[]),
        ("sessiongate_store_up", &[]),
        ("sessiongate_store_sync_age_seconds", &[]),
        ("sessiongate_store_disconnects_total", &[]),
        ("sessiongate_store_resyncs_total", &[]),
        ("sessiongate_cutoffs_loaded", &[]),
        ("sessiongate_jwks_refreshes_total", &[("result", "ok")]),
        ("sessiongate_jwks_refreshes_total", &[("result", "error")]),
        ("sessiongate_verify_cache_total", &[("result", "hit")]),
        ("sessiongate_verify_cache_total", &[("result", "miss")]),
    ];
    for (name, labels) in series {
        match scrape.get(name, labels) {
            Some(value) if name.ends_with("_total") || name.ends_with("_count") => {
                assert_eq!(value, 0.0, "{name}{labels:?} before any traffic");
            }
            Some(_) => {}
            None => missing.push(format!("{name}{labels:?}")),
        }
    }
    // Every TokenError reason is there, and only SPEC section 3 reasons.
    let reasons: Vec<String> = scrape
        .label_sets("sessiongate_rejections_total")
        .into_iter()
        .map(|labels| labels["reason"].clone())
        .collect();
    for reason in [
        "missing_token",
        "malformed_token",
        "unsupported_algorithm",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "session_invalidated",
        "session_revoked",
        "ip_not_allowed",
        "sign_in_method_not_allowed",
        "session_too_old",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} missing: {reasons:?}"
        );
    }
    assert_eq!(reasons.len(), 16, "{reasons:?}");
    assert!(
        missing.is_empty(),
        "not exported before their first event: {missing:?}\n{}",
        scrape.text
    );
}

/// The cache counters are "Verified-token cache lookups by result": a token looked up and
/// not found is a miss whether it then verifies or not (else hits/(hits+misses) is not the
/// hit ratio, and a flood of never-seen bad tokens leaves `miss` flat).
#[tokio::test]
async fn verify_cache_counts_every_lookup_that_misses() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let before = scrape(&gw).await;
    let good = token().sign();
    let expired = expired().sign();
    let forged = with_foreign_signature(&token().sign(), &good);
    for (jwt, status) in [(&good, 200), (&good, 200), (&expired, 401), (&forged, 401)] {
        assert_eq!(gw.status_with("/c", jwt).await, status);
    }
    let after = scrape(&gw).await;
    let delta = |result: &str| {
        after.require("sessiongate_verify_cache_total", &[("result", result)])
            - before.counter("sessiongate_verify_cache_total", &[("result", result)])
    };
    assert_eq!(delta("hit"), 1.0, "{}", after.text);
    // good (first time), expired, forged: three lookups found nothing.
    assert_eq!(delta("miss"), 3.0, "{}", after.text);
}

// ============================================================================
// 3. Access log
// ============================================================================

#[tokio::test]
async fn access_log_has_one_line_per_request_with_documented_fields_and_no_query() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let with_jti = token().claim("jti", json!("access-log-jti-1")).sign();
    let without_jti = token().without("jti").sign();
    let expired_jwt = expired().sign();
    let admin_token = admin("ada", "acme").sign();

    let send = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status() };
    assert_eq!(
        send(gw.get("/a?secret=1&x=2").bearer_auth(&with_jti)).await,
        200
    );
    assert_eq!(send(gw.get("/b").bearer_auth(&without_jti)).await, 200);
    assert_eq!(send(gw.get("/c?secret=1")).await, 401);
    assert_eq!(
        send(gw.post("/d").bearer_auth(&expired_jwt).body("x")).await,
        401
    );
    assert_eq!(
        send(
            gw.get("/_sessiongate/v1/workspaces/acme/sessions")
                .bearer_auth(&admin_token)
        )
        .await,
        200
    );
    let logs = sync_logs(&gw).await;

    assert!(!logs.contains("secret=1"), "query string logged:\n{logs}");
    let access = with_target(&logs, "access");
    let paths: Vec<&str> = access.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 6, "one access line per request:\n{logs}");
    assert_eq!(
        paths[..5],
        [
            "/a",
            "/b",
            "/c",
            "/d",
            "/_sessiongate/v1/workspaces/acme/sessions"
        ],
        "{logs}"
    );
    assert!(paths[5].starts_with("/log-sentinel-"));
    for event in &access {
        assert_eq!(event["level"], "INFO", "{event}");
        assert!(event["timestamp"].is_string(), "{event}");
        let latency = event["latency_ms"].as_f64();
        assert!(latency.is_some_and(|ms| ms >= 0.0), "{event}");
    }
    let field = |i: usize, name: &str| access[i].get(name).cloned().unwrap_or(Value::Null);

    // Forwarded, token with a jti.
    assert_eq!(field(0, "method"), "GET");
    assert_eq!(field(0, "status"), 200);
    assert_eq!(field(0, "workspace"), "acme");
    assert_eq!(field(0, "session"), "jti:access-log-jti-1");
    assert_eq!(field(0, "upstream_status"), 200);
    assert_eq!(field(0, "reason"), Value::Null);
    // Forwarded, token without a jti: a 16-hex-digit prefix of its hash, never the token.
    let session = field(1, "session");
    let session = session.as_str().expect("session logged");
    let hex = session.strip_prefix("sha256:").expect("sha256: prefix");
    assert_eq!(hex.len(), 16, "{session}");
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(session, hashed_session_prefix(&without_jti));
    assert_eq!(field(1, "upstream_status"), 200);
    // No token: the reason, no identity, nothing upstream.
    assert_eq!(field(2, "status"), 401);
    assert_eq!(field(2, "reason"), "missing_token");
    assert_eq!(field(2, "workspace"), Value::Null);
    assert_eq!(field(2, "session"), Value::Null);
    assert_eq!(field(2, "upstream_status"), Value::Null);
    // Expired: refused before the upstream, with its reason and method.
    assert_eq!(field(3, "method"), "POST");
    assert_eq!(field(3, "status"), 401);
    assert_eq!(field(3, "reason"), "expired");
    assert_eq!(field(3, "upstream_status"), Value::Null);
    // Admin API: answered by the gateway.
    assert_eq!(field(4, "status"), 200);
    assert_eq!(field(4, "upstream_status"), Value::Null);
    assert_eq!(upstream.count(), 2);
}

// ============================================================================
// 4. Audit log
// ============================================================================

#[tokio::test]
async fn audit_log_has_one_line_per_logout_equal_to_the_stored_record() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let alice = token().sub("alice").sign();
    let bob = admin("bob", "acme").without("jti").sign();
    let dave = admin("dave", "acme").claim("jti", json!("dave-1")).sign();

    let rsp = gw
        .post("/_sessiongate/v1/me/logout-others")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = gw
        .post("/_sessiongate/v1/workspaces/acme/users/carol/logout")
        .bearer_auth(&bob)
        .header("user-agent", "ops-test/1.0")
        .json(&json!({"reason": "left the company", "category": "personnel_change"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = gw
        .post("/_sessiongate/v1/workspaces/acme/logout-all")
        .bearer_auth(&dave)
        .header("user-agent", "ops-test/2.0")
        .json(&json!({
            "reason": "incident \"42\"",
            "category": "security_incident",
            "ticket": "SEC-42",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let logout_all: Value = rsp.json().await.unwrap();

    let (status, audit) =
        json_of(gw.get(AUDIT_PATH).bearer_auth(&dave).send().await.unwrap()).await;
    assert_eq!(status, 200, "{audit}");
    let records = audit["events"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3, "{audit}");
    let logs = sync_logs(&gw).await;
    let lines = with_target(&logs, "audit");
    assert_eq!(lines.len(), 3, "one audit line per logout:\n{logs}");

    // Lines in commit order; records newest first.
    for (line, record) in lines.iter().zip(records.iter().rev()) {
        assert_eq!(line["level"], "INFO", "{line}");
        let line_fields: Map<String, Value> = line
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !["timestamp", "level", "message", "target"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let record_fields: Map<String, Value> = record
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let key = if k == "id" { "audit_id" } else { k.as_str() };
                (key.to_string(), v.clone())
            })
            .collect();
        let line_fields: Map<String, Value> = line_fields
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        assert_eq!(
            Value::Object(line_fields),
            Value::Object(record_fields),
            "audit line differs from the stored record\nline:   {line}\nrecord: {record}"
        );
    }

    // The records themselves say what happened (so the comparison above compares content).
    let [all, user, others] = [&records[0], &records[1], &records[2]];
    assert_eq!(others["action"], "logout_others");
    assert_eq!(others["subject"], "alice");
    assert_eq!(others["actor_subject"], "alice");
    assert_eq!(user["action"], "user_logout");
    assert_eq!(user["subject"], "carol");
    assert_eq!(user["actor_subject"], "bob");
    assert_eq!(user["actor_session"], hashed_session_prefix(&bob));
    assert_eq!(user["category"], "personnel_change");
    assert_eq!(user["reason"], "left the company");
    assert_eq!(user["user_agent"], "ops-test/1.0");
    assert_eq!(all["action"], "logout_all");
    assert_eq!(all["actor_subject"], "dave");
    assert_eq!(all["actor_session"], "jti:dave-1");
    assert_eq!(all["category"], "security_incident");
    assert_eq!(all["ticket"], "SEC-42");
    assert_eq!(all["reason"], "incident \"42\"");
    assert_eq!(all["client_ip"], "127.0.0.1");
    assert_eq!(all["user_agent"], "ops-test/2.0");
    assert_eq!(all["id"], logout_all["audit_id"]);
    assert_eq!(all["at"], logout_all["invalidated_at"]);
    assert_eq!(
        all["sessions_valid_after"],
        logout_all["sessions_valid_after"]
    );
    for record in &records {
        assert_eq!(record["workspace"], "acme");
    }
}

// ============================================================================
// 5. No token or secret in any output
// ============================================================================

/// Every way a token reaches the gateway, at debug level, with cookies, admin calls,
/// refused tokens and a logout-all: the whole output holds no token, no signature and not
/// the HMAC secret; nor does `sessiongate check`.
#[tokio::test]
async fn no_token_signature_or_secret_appears_in_debug_logs_or_check_output() {
    let upstream = upstream().await;
    let gw = raw_gateway(&upstream.url())
        .level("debug")
        .set("auth.cookie = \"sg\"")
        .start()
        .await;
    let bearer = token().sign();
    let bearer_no_jti = token().sub("bea").without("jti").sign();
    let cookie = token().sub("cat").sign();
    let cookie_no_jti = token().sub("cid").without("jti").sign();
    let expired_jwt = expired().sign();
    let forged = with_foreign_signature(&token().sub("mallory").sign(), &bearer);
    let wrong_key = token().key_only(Signer::OtherRs256).sign();
    let admin_token = admin("ada", "acme").without("jti").sign();
    let admin_jti = admin("abe", "acme").sign();
    let mut tokens = vec![
        &bearer,
        &bearer_no_jti,
        &cookie,
        &cookie_no_jti,
        &expired_jwt,
        &forged,
        &wrong_key,
        &admin_token,
        &admin_jti,
    ];

    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status() };
    let with_cookie = |jwt: &str| format!("theme=dark; sg={jwt}; other=1");
    assert_eq!(status(gw.get("/h").bearer_auth(&bearer)).await, 200);
    assert_eq!(status(gw.get("/h").bearer_auth(&bearer_no_jti)).await, 200);
    assert_eq!(
        status(
            gw.get("/q")
                .query(&[("access_token", &bearer)])
                .bearer_auth(&bearer)
        )
        .await,
        200
    );
    assert_eq!(
        status(gw.get("/k").header("cookie", with_cookie(&cookie))).await,
        200
    );
    assert_eq!(
        status(
            gw.post("/k")
                .header("cookie", with_cookie(&cookie_no_jti))
                .body("up")
        )
        .await,
        200
    );
    assert_eq!(status(gw.get("/e").bearer_auth(&expired_jwt)).await, 401);
    assert_eq!(
        status(gw.get("/e").header("cookie", with_cookie(&expired_jwt))).await,
        401
    );
    assert_eq!(status(gw.get("/f").bearer_auth(&forged)).await, 401);
    assert_eq!(status(gw.get("/w").bearer_auth(&wrong_key)).await, 401);
    assert_eq!(
        status(gw.get("/m").bearer_auth("not-a-token.at-all.really")).await,
        401
    );
    let admin_api = "/_sessiongate/v1/workspaces/acme";
    assert_eq!(
        status(
            gw.get(&format!("{admin_api}/sessions"))
                .bearer_auth(&admin_jti)
        )
        .await,
        200
    );
    // A bearer token's CSRF check does not apply; a cookie one without Origin is 403.
    assert_eq!(
        status(
            gw.post(&format!("{admin_api}/logout-all"))
                .header("cookie", with_cookie(&admin_jti))
        )
        .await,
        403
    );
    assert_eq!(
        status(
            gw.post(&format!("{admin_api}/logout-all"))
                .bearer_auth(&admin_token)
                .json(&json!({"reason": "rotation"}))
        )
        .await,
        200
    );
    assert_eq!(
        status(
            gw.get(&format!("{admin_api}/audit"))
                .bearer_auth(&admin_token)
        )
        .await,
        200
    );
    // Tokens refused by the new cutoff, both ways in.
    assert_eq!(status(gw.get("/h").bearer_auth(&bearer)).await, 401);
    assert_eq!(
        status(gw.get("/k").header("cookie", with_cookie(&cookie))).await,
        401
    );
    assert_eq!(
        status(
            gw.get(&format!("{admin_api}/audit"))
                .bearer_auth(&admin_jti)
        )
        .await,
        401
    );
    // `check` on the very config the gateway runs with.
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&gw.config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let check_output = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(check.status.code(), Some(0), "{check_output}");
    assert!(check_output.contains("is valid"), "{check_output}");

    let logs = gw.finish().await;

    // The run really logged at debug level, and logged these requests.
    let logged = events(&logs);
    assert!(
        logged.iter().any(|e| e["level"] == "DEBUG"),
        "no DEBUG event:\n{logs}"
    );
    assert_eq!(
        logged.iter().filter(|e| e["target"] == "access").count(),
        17,
        "{logs}"
    );
    assert_eq!(logged.iter().filter(|e| e["target"] == "audit").count(), 1);

    let not_a_token = "not-a-token.at-all.really".to_string();
    tokens.push(&not_a_token);
    for (what, output) in [("logs", &logs), ("check", &check_output)] {
        assert!(!output.contains(SECRET), "HMAC secret in {what}:\n{output}");
        for jwt in &tokens {
            assert!(
                !output.contains(jwt.as_str()),
                "token {jwt} in {what}:\n{output}"
            );
            let signature = signature_of(jwt);
            assert!(
                !output.contains(signature),
                "signature of {jwt} in {what}:\n{output}"
            );
        }
    }
}

// ============================================================================
// 6. Log format and level
// ============================================================================

#[tokio::test]
async fn pretty_format_writes_human_lines_without_tokens() {
    let upstream = upstream().await;
    let gw = raw_gateway(&upstream.url()).format("pretty").start().await;
    let jwt = token().without("jti").sign();
    let rsp = gw
        .get("/pretty-probe?q=1")
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = gw
        .get("/pretty-refused")
        .bearer_auth(expired().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 401);
    let logs = gw.finish().await;

    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "a JSON line in pretty mode: {line}"
        );
    }
    let probe: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("/pretty-probe"))
        .collect();
    assert_eq!(probe.len(), 1, "{logs}");
    let probe = probe[0];
    assert!(probe.contains("INFO"), "{probe}");
    assert!(probe.contains("access"), "{probe}");
    assert!(probe.contains("200"), "{probe}");
    assert!(!probe.contains("q=1"), "{probe}");
    assert!(lines.iter().any(|l| l.contains("expired")), "{logs}");
    assert!(!logs.contains(&jwt), "{logs}");
    assert!(!logs.contains(signature_of(&jwt)), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");
}

/// Output written to a pipe or a file is for log collectors and `grep`: no terminal
/// colour codes.
#[tokio::test]
async fn pretty_format_writes_no_ansi_escape_codes_to_a_pipe() {
    let upstream = upstream().await;
    let gw = raw_gateway(&upstream.url()).format("pretty").start().await;
    assert_eq!(gw.get("/x").send().await.unwrap().status(), 401);
    let logs = gw.finish().await;
    assert!(logs.contains("/x"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in piped output:\n{}",
        logs.escape_debug()
    );
}

#[tokio::test]
async fn rust_log_warn_overrides_log_level_and_suppresses_access_lines() {
    let upstream = upstream().await;
    // A second, short HMAC key (with a kid, so it is never tried for these tokens) makes the
    // key loader WARN at start: proof that logging is on at warn level.
    let short_key = |builder: RawBuilder| {
        let path = builder.path("short.secret");
        std::fs::write(&path, "short\n").unwrap();
        builder.key(&format!(
            "kid = \"short\"\nhmac_secret_file = \"{}\"",
            path.display()
        ))
    };
    let jwt = token().sign();
    let mut outputs = Vec::new();
    for rust_log in [Some("warn"), None] {
        let mut builder = short_key(raw_gateway(&upstream.url()).level("debug"));
        if let Some(value) = rust_log {
            builder = builder.rust_log(value);
        }
        let gw = builder.start().await;
        assert_eq!(
            gw.get("/w")
                .bearer_auth(&jwt)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(gw.get("/w").send().await.unwrap().status(), 401);
        outputs.push(gw.finish().await);
    }
    let [warn, debug] = [&outputs[0], &outputs[1]];

    let warned = |logs: &str| {
        events(logs)
            .iter()
            .any(|e| e["level"] == "WARN" && e["message"] == "HMAC secret is shorter than 32 bytes")
    };
    assert!(warned(warn), "the start-up WARN is missing:\n{warn}");
    let levels: Vec<Value> = events(warn).iter().map(|e| e["level"].clone()).collect();
    assert!(
        levels.iter().all(|l| l == "WARN" || l == "ERROR"),
        "RUST_LOG=warn let lower levels through: {levels:?}\n{warn}"
    );
    assert!(with_target(warn, "access").is_empty(), "{warn}");
    for line in warn.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }

    // Control: the same config without RUST_LOG logs at its own level (debug).
    assert!(warned(debug), "{debug}");
    assert_eq!(with_target(debug, "access").len(), 2, "{debug}");
    assert!(
        events(debug).iter().any(|e| e["level"] == "DEBUG"),
        "{debug}"
    );
}

// ============================================================================
// Answers hyper gives before the gateway sees a request
// ============================================================================

#[tokio::test]
async fn oversized_request_heads_are_counted_and_logged_like_every_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let before = scrape(&gw).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    let logged = eventually("an access event with status 431", || async {
        gw.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["target"] == "access" && event["status"] == 431)
    })
    .await;
    assert_eq!(logged["client_ip"], "127.0.0.1");
    let after = scrape(&gw).await;
    let errors = |s: &Scrape| s.counter("sessiongate_requests_total", &[("outcome", "error")]);
    assert_eq!(errors(&after), errors(&before) + 1.0);
    assert_eq!(upstream.count(), 0);
}
