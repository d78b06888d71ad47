//! Test harness: the real `sessiongate` binary on free ports, a recording upstream, and
//! token minting with real keys (tests/fixtures, made by tests/fixtures/gen.sh).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The HMAC secret every test gateway trusts (via `hmac_secret_file`).
pub const SECRET: &str = "sessiongate-test-secret-0123456789abcdef";

/// Path of a file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Now, in unix seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `unix` as RFC 3339 UTC with milliseconds, as the API writes times.
pub fn rfc3339(unix: f64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs_f64(unix);
    humantime::format_rfc3339_millis(at).to_string()
}

/// An HTTP client that neither follows redirects nor uses a proxy.
pub fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider; tests use the gateway's (aws-lc-rs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        // Below the shortest header-read timeout tests configure (1 s): reusing a pooled
        // connection just as the gateway closes it for idleness is a race no proxy can win.
        .pool_idle_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

// ============================================================================
// Upstream
// ============================================================================

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
    pub body: Vec<u8>,
}

/// A real HTTP server that records every request it gets.
///
/// - `/download/<bytes>` streams that many bytes in 64 KiB chunks;
/// - `/slow/<ms>` waits before answering;
/// - anything else answers 200 `{"ok": true}` after reading the body frame by frame.
pub struct Upstream {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received a request")
    }

    pub fn count(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a recording upstream on a free loopback port.
pub async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let log = recorded.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            let service = service_fn(move |req| answer(req, log.clone()));
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Upstream {
        addr,
        recorded,
        task,
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<TestBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let mut body_len = 0;
    let mut kept = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            body_len += data.len();
            if kept.len() < 64 * 1024 {
                kept.extend_from_slice(&data);
            }
        }
    }
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body_len,
        body: kept,
    });
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(size) = path.strip_prefix("/download/") {
        return Ok(Response::new(download(size.parse().unwrap_or(0))));
    }
    let body = http_body_util::Full::new(Bytes::from(
        json!({"ok": true, "body_len": body_len}).to_string(),
    ));
    let mut response = Response::new(body.boxed());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
        .headers_mut()
        .insert("connection", "x-upstream-secret".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream-secret", "hop".parse().unwrap());
    Ok(response)
}

fn download(total: usize) -> TestBody {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(CHUNK);
                (Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n)
            })
        }
    });
    StreamBody::new(stream).boxed()
}

// ============================================================================
// Gateway
// ============================================================================

/// Configures a gateway process before starting it.
pub struct GatewayBuilder {
    dir: Arc<tempfile::TempDir>,
    upstream_url: String,
    settings: Vec<String>,
    keys: Vec<String>,
    default_key: bool,
    env: Env,
    ignore_sigxfsz: bool,
}

/// Environment changes for the gateway process: `Some` sets, `None` removes.
type Env = Vec<(String, Option<String>)>;

/// A running `sessiongate serve` process.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub ops: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    dir: Arc<tempfile::TempDir>,
    config_path: PathBuf,
    env: Env,
    ignore_sigxfsz: bool,
    client: reqwest::Client,
}

/// A gateway in front of `upstream`, HS256 with [`SECRET`], embedded store in a temp dir.
pub fn gateway(upstream: &Upstream) -> GatewayBuilder {
    gateway_to(&upstream.url())
}

/// A gateway in front of any `upstream.url` (an https upstream, a closed port, ...).
pub fn gateway_to(upstream_url: &str) -> GatewayBuilder {
    GatewayBuilder {
        dir: Arc::new(tempfile::tempdir().unwrap()),
        upstream_url: upstream_url.to_string(),
        settings: Vec::new(),
        keys: Vec::new(),
        default_key: true,
        env: vec![("RUST_LOG".into(), None)],
        ignore_sigxfsz: false,
    }
}

impl GatewayBuilder {
    /// Sets an environment variable of the gateway process.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((
            key.into(),
            Some(value.as_ref().to_string_lossy().into_owned()),
        ));
        self
    }

    /// Removes an environment variable from the gateway process.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// A top-level TOML line with a dotted key, e.g. `auth.cookie = "sg"`.
    pub fn set(mut self, line: &str) -> Self {
        self.settings.push(line.to_string());
        self
    }

    /// An extra `[[jwt.keys]]` table body.
    pub fn key(mut self, table: &str) -> Self {
        self.keys.push(table.to_string());
        self
    }

    /// Starts the process with SIGXFSZ ignored, so a file-size limit (`prlimit`) makes
    /// its writes fail instead of killing it.
    pub fn ignoring_sigxfsz(mut self) -> Self {
        self.ignore_sigxfsz = true;
        self
    }

    /// Drops the default HMAC key (use only the keys given with `key`).
    pub fn without_default_key(mut self) -> Self {
        self.default_key = false;
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config file.
    pub fn write_config(&self) -> PathBuf {
        let secret = self.dir.path().join("hmac.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let mut text = format!(
            "upstream.url = \"{}\"\nserver.listen = \"127.0.0.1:0\"\nops.listen = \"127.0.0.1:0\"\n\
             store.path = \"{}\"\nlog.format = \"json\"\nlog.level = \"info\"\n",
            self.upstream_url,
            self.dir.path().join("store.redb").display()
        );
        if !self
            .settings
            .iter()
            .any(|s| s.starts_with("jwt.algorithms"))
        {
            text.push_str("jwt.algorithms = [\"HS256\", \"RS256\", \"PS256\", \"ES256\", \"ES384\", \"EdDSA\"]\n");
        }
        for line in &self.settings {
            text.push_str(line);
            text.push('\n');
        }
        if self.default_key {
            text.push_str(&format!(
                "[[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
                secret.display()
            ));
        }
        for key in &self.keys {
            text.push_str(&format!("[[jwt.keys]]\n{key}\n"));
        }
        let path = self.dir.path().join("sessiongate.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the binary and waits for its `ready` log line.
    pub async fn start(self) -> Gateway {
        let config_path = self.write_config();
        let launch = Launch {
            env: self.env,
            ignore_sigxfsz: self.ignore_sigxfsz,
        };
        Gateway::spawn(self.dir, config_path, launch, "ready").await
    }

    /// Starts the binary and returns once it listens, before it is ready (remote keys
    /// still loading): requests then get 503.
    pub async fn start_unready(self) -> Gateway {
        let config_path = self.write_config();
        let launch = Launch {
            env: self.env,
            ignore_sigxfsz: self.ignore_sigxfsz,
        };
        Gateway::spawn(self.dir, config_path, launch, "listening").await
    }
}

/// How the process is started, kept for restarts.
#[derive(Clone)]
struct Launch {
    env: Env,
    ignore_sigxfsz: bool,
}

impl Launch {
    fn command(&self, config_path: &Path) -> Command {
        // Another build's binary, for a benchmark's A/B on the same data; said out loud,
        // so a variable left set never passes for a test of this build.
        let bin = match std::env::var_os("SESSIONGATE_BIN") {
            Some(other) => {
                eprintln!("SESSIONGATE_BIN: running {}", other.to_string_lossy());
                other
            }
            None => env!("CARGO_BIN_EXE_sessiongate").into(),
        };
        let mut command = match self.ignore_sigxfsz {
            // An ignored signal stays ignored across exec.
            true => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""]).arg(bin);
                sh
            }
            false => Command::new(bin),
        };
        command
            .args(["serve", "--config"])
            .arg(config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }
}

impl Gateway {
    async fn spawn(
        dir: Arc<tempfile::TempDir>,
        config_path: PathBuf,
        launch: Launch,
        wait_for: &'static str,
    ) -> Gateway {
        let mut child = launch
            .command(&config_path)
            .spawn()
            .expect("the sessiongate binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == wait_for
                {
                    let _ = ready_tx.send(event);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let ready =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap();
        let Ok(ready) = ready else {
            let _ = child.kill();
            panic!(
                "gateway did not log {wait_for:?}; output:\n{}",
                logs.lock().unwrap().join("\n")
            );
        };
        let addr = ready["listen"].as_str().unwrap().parse().unwrap();
        let ops = ready["ops"].as_str().map(|a| a.parse().unwrap());
        Gateway {
            child,
            addr,
            ops,
            logs,
            dir,
            config_path,
            env: launch.env,
            ignore_sigxfsz: launch.ignore_sigxfsz,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    /// `POST /_sessiongate/v1/workspaces/{ws}/logout-all` with a bearer token.
    pub async fn logout_all(&self, workspace: &str, token: &str) -> reqwest::Response {
        let request = self.logout_all_request(workspace, token);
        request.send().await.unwrap()
    }

    fn logout_all_request(&self, workspace: &str, token: &str) -> reqwest::RequestBuilder {
        self.post(&format!(
            "/_sessiongate/v1/workspaces/{workspace}/logout-all"
        ))
        .bearer_auth(token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// `POST .../logout-all` with `{"at": at}`: a logout scheduled for later (SPEC section 10).
    pub async fn schedule_logout(
        &self,
        workspace: &str,
        token: &str,
        at: &str,
    ) -> reqwest::Response {
        let request = self.logout_all_request(workspace, token);
        request.json(&json!({ "at": at })).send().await.unwrap()
    }

    /// `DELETE .../scheduled-logout` with a bearer token.
    pub async fn cancel_scheduled_logout(&self, workspace: &str, token: &str) -> reqwest::Response {
        self.delete(&format!(
            "/_sessiongate/v1/workspaces/{workspace}/scheduled-logout"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
    }

    /// `PUT /_sessiongate/v1/workspaces/{ws}/policy` with a bearer token and a JSON body.
    pub fn put_policy(
        &self,
        workspace: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(&format!("/_sessiongate/v1/workspaces/{workspace}/policy")))
            .bearer_auth(token)
            .json(body)
    }

    /// `DELETE path` with a bearer token.
    pub async fn client_delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.delete(path).bearer_auth(token).send().await.unwrap()
    }

    /// `PUT path` with a bearer token and `body` as it is (JSON content type).
    pub async fn client_put_raw(
        &self,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let request = self.client.put(self.url(path)).bearer_auth(token);
        let request = request
            .header("content-type", "application/json")
            .body(body);
        request.send().await.unwrap()
    }

    /// The config file the process was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Status of `GET path` with a bearer token.
    pub async fn status_with(&self, path: &str, token: &str) -> u16 {
        self.get(path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn ops_get(&self, path: &str) -> reqwest::Response {
        let ops = self.ops.expect("ops listener enabled");
        self.client
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .unwrap()
    }

    /// The value of one series in `/metrics` (0 when absent), e.g.
    /// `sessiongate_jwks_refreshes_total{result="ok"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.ops_get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
                    .map(|rest| rest.trim().parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// A bodiless `POST /_sessiongate/v1/{path}` with a bearer token, as sent.
    pub async fn admin_post(&self, path: &str, jwt: &str) -> reqwest::Response {
        let request = self.post(&format!("/_sessiongate/v1/{path}"));
        request.bearer_auth(jwt).send().await.unwrap()
    }

    /// A 200 admin `GET` under `/_sessiongate/v1/` and its JSON answer.
    pub async fn admin_get(&self, path: &str, jwt: &str) -> Value {
        let rsp = self
            .get(&format!("/_sessiongate/v1/{path}"))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200, "GET {path}");
        rsp.json().await.unwrap()
    }

    /// Streams `total` bytes to `/upload` in 1 MiB chunks (never holding more) and returns
    /// how many bytes the upstream says it received.
    pub async fn upload(&self, jwt: &str, total: usize) -> usize {
        const CHUNK: usize = 1024 * 1024;
        let chunk = Bytes::from(vec![b'u'; CHUNK]);
        let chunks = (0..total.div_ceil(CHUNK)).map(move |i| {
            let n = CHUNK.min(total - i * CHUNK);
            Ok::<_, std::io::Error>(chunk.slice(..n))
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let rsp = self
            .post("/upload")
            .bearer_auth(jwt)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200, "upload through the gateway");
        let echoed = rsp.json::<Value>().await.unwrap()["body_len"]
            .as_u64()
            .unwrap();
        usize::try_from(echoed).unwrap()
    }

    /// Downloads `/download/<total>`, counting bytes as they arrive (never buffering them).
    pub async fn download(&self, jwt: &str, total: usize) -> usize {
        let mut rsp = self
            .get(&format!("/download/{total}"))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200, "download through the gateway");
        let mut received = 0;
        while let Some(chunk) = rsp.chunk().await.unwrap() {
            received += chunk.len();
        }
        received
    }

    /// `VmHWM` (peak resident set size) of the gateway process, in bytes.
    pub fn peak_rss_bytes(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/<pid>/status");
        let kib: usize = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The embedded store file.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store.redb")
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILLs this process and starts a new one on the same config and store file.
    pub async fn crash_and_restart(mut self) -> Gateway {
        self.kill9();
        let launch = Launch {
            env: self.env.clone(),
            ignore_sigxfsz: self.ignore_sigxfsz,
        };
        Gateway::spawn(self.dir.clone(), self.config_path.clone(), launch, "ready").await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 10 ms until it is true; the time it took, or a panic after `limit`.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !probe().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// p50, p99 and max of `samples` (sorted in place), for benchmark output.
pub fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.2?}  p99 {:.2?}  max {:.2?}  (n = {})",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

// ============================================================================
// Tokens
// ============================================================================

/// How a test token is signed.
#[derive(Debug, Clone, Copy)]
pub enum Signer {
    Hs256,
    Rs256,
    Ps256,
    Es256,
    Es384,
    EdDsa,
    /// RS256 with the second RSA key (not configured unless a test adds it).
    OtherRs256,
}

/// Builds a JWT with full control over header and claims.
#[derive(Debug, Clone)]
pub struct TokenBuilder {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signer: Signer,
}

/// A valid HS256 token for alice in workspace acme, issued now, valid one hour.
pub fn token() -> TokenBuilder {
    let now = now().floor();
    let claims = json!({
        "sub": "alice",
        "workspace_id": "acme",
        "iat": now,
        "exp": now + 3600.0,
        "jti": format!("t-{}", uuid()),
    });
    TokenBuilder {
        header: json!({"alg": "HS256", "typ": "JWT"})
            .as_object()
            .unwrap()
            .clone(),
        claims: claims.as_object().unwrap().clone(),
        signer: Signer::Hs256,
    }
}

/// An admin token of `workspace` for `sub`.
pub fn admin(sub: &str, workspace: &str) -> TokenBuilder {
    token().sub(sub).workspace(workspace).roles(&["admin"])
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TokenBuilder {
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    pub fn workspace(self, workspace: &str) -> Self {
        self.claim("workspace_id", json!(workspace))
    }

    pub fn roles(self, roles: &[&str]) -> Self {
        self.claim("roles", json!(roles))
    }

    pub fn iat(self, iat: f64) -> Self {
        self.claim("iat", json!(iat))
    }

    pub fn exp(self, exp: f64) -> Self {
        self.claim("exp", json!(exp))
    }

    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Signs with `signer` and sets the header's `alg` to match.
    pub fn signed_with(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self.header
            .insert("alg".into(), json!(format!("{:?}", signer.algorithm())));
        self
    }

    /// Signs with `signer` but leaves the header's `alg` as it is (for confusion attacks).
    pub fn key_only(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    /// The compact token.
    pub fn sign(&self) -> String {
        let header = URL_SAFE_NO_PAD.encode(Value::Object(self.header.clone()).to_string());
        let claims = URL_SAFE_NO_PAD.encode(Value::Object(self.claims.clone()).to_string());
        let message = format!("{header}.{claims}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &self.signer.key(),
            self.signer.algorithm(),
        )
        .unwrap();
        format!("{message}.{signature}")
    }
}

impl Signer {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 | Self::OtherRs256 => Algorithm::RS256,
            Self::Ps256 => Algorithm::PS256,
            Self::Es256 => Algorithm::ES256,
            Self::Es384 => Algorithm::ES384,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    pub fn key(self) -> EncodingKey {
        let pem = |name: &str| std::fs::read(fixture(name)).unwrap();
        match self {
            Self::Hs256 => EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            Self::Rs256 | Self::Ps256 => EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap(),
            Self::OtherRs256 => EncodingKey::from_rsa_pem(&pem("rsa2.key")).unwrap(),
            Self::Es256 => EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
            Self::Es384 => EncodingKey::from_ec_pem(&pem("ec384.key")).unwrap(),
            Self::EdDsa => EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap(),
        }
    }
}

/// Base64url of arbitrary JSON text, for hand-built malformed tokens.
pub fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// The `[[jwt.keys]]` body for a fixture public key file.
pub fn public_key(file: &str) -> String {
    format!("public_key_file = \"{}\"", fixture(file).display())
}

// ============================================================================
// Redis (tests/redis.rs): real redis-server processes on free ports
// ============================================================================

/// How a test `redis-server` is started.
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    password: Option<String>,
    tls: bool,
    persistent: bool,
    /// `--replicaof 127.0.0.1 <port>`.
    replica_of: Option<u16>,
}

/// Redis Sentinel and replicas (tests/failover.rs).
pub mod bulk;
pub mod ha;

/// A `redis-server` on a free loopback port, SIGKILLed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    options: RedisBuilder,
    dir: tempfile::TempDir,
}

/// A plain `redis-server`: no password, no TLS, nothing kept on disk.
pub fn redis_server() -> RedisBuilder {
    RedisBuilder::default()
}

/// `prlimit --pid` on a gateway: the soft file-size limit (RLIMIT_FSIZE) of a running
/// process (the hard limit stays, so raising it again needs no privilege). Start it
/// `ignoring_sigxfsz`, so its writes fail instead of killing it.
pub fn set_file_size_limit(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={limit}");
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisBuilder {
    /// `--requirepass`.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// TLS only (`--tls-port`, no plain port), with the development certificates.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// A replica of the server on loopback `port`.
    pub fn replica_of(mut self, port: u16) -> Self {
        self.replica_of = Some(port);
        self
    }

    /// Append-only file with fsync on every write, so a SIGKILL loses nothing.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Starts the server and waits until it answers. `None` (after a loud SKIP line) when
    /// redis-server is not installed, or lacks TLS for a TLS server; on CI a missing
    /// redis-server is a failure instead.
    pub async fn start(self) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("redis-server is not installed; CI machines must have it");
            }
            eprintln!("\n*** SKIP: redis-server is not installed; Redis tests did not run ***\n");
            return None;
        }
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            options: self,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart().await.then_some(server)
    }
}

impl RedisServer {
    /// `redis://` or `rediss://` URL for the gateway, with the password when there is one.
    pub fn url(&self) -> String {
        self.url_with(self.options.password.as_deref())
    }

    /// The same server with another password (or none) in the URL.
    pub fn url_with(&self, password: Option<&str>) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let host = if self.options.tls {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{auth}{host}:{}/0", self.port)
    }

    /// A connection for inspecting what the gateways wrote.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = if self.options.tls {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(dev_cert("ca.pem")).unwrap()),
            };
            redis::Client::build_with_tls(self.url(), certificates).unwrap()
        } else {
            redis::Client::open(self.url()).unwrap()
        };
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// SIGKILL: no shutdown, no save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and data directory; false when TLS is missing.
    pub async fn restart(&mut self) -> bool {
        self.kill();
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(self.args())
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap().is_some();
            if exited {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                if self.options.tls && output.to_lowercase().contains("tls") {
                    eprintln!(
                        "\n*** SKIP: this redis-server cannot serve TLS; rediss:// test did not run ***\n{output}"
                    );
                    return false;
                }
                panic!("redis-server exited at start:\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--dir"].map(String::from).into();
        args.push(self.dir.path().display().to_string());
        let port = self.port.to_string();
        if self.options.tls {
            let cert = |name: &str| dev_cert(name).display().to_string();
            args.extend(
                [
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-cert-file",
                    &cert("localhost.pem"),
                    "--tls-key-file",
                    &cert("localhost.key"),
                    "--tls-ca-cert-file",
                    &cert("ca.pem"),
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from),
            );
        } else {
            args.extend(["--port".to_string(), port]);
        }
        let durability = if self.options.persistent {
            [
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
            .as_slice()
        } else {
            ["--save", "", "--appendonly", "no"].as_slice()
        };
        args.extend(durability.iter().map(|a| a.to_string()));
        if let Some(password) = &self.options.password {
            args.extend(["--requirepass".to_string(), password.clone()]);
        }
        if let Some(primary) = self.options.replica_of {
            args.extend(["--replicaof", "127.0.0.1", &primary.to_string()].map(String::from));
        }
        args
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file under certs/ (development certificates).
pub fn dev_cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

impl GatewayBuilder {
    /// Uses `redis` as the store (`store.backend = "redis"`), trusting the development CA
    /// for a TLS server.
    pub fn redis(self, redis: &RedisServer) -> Self {
        let builder = self.redis_url(&redis.url());
        match redis.options.tls {
            true => builder.set(&format!(
                "store.redis_ca_file = \"{}\"",
                dev_cert("ca.pem").display()
            )),
            false => builder,
        }
    }

    /// `store.backend = "redis"` at `url`.
    pub fn redis_url(self, url: &str) -> Self {
        self.set("store.backend = \"redis\"")
            .set(&format!("store.redis_url = \"{url}\""))
    }
}

/// A TCP relay to a local port that a test can cut: every open connection is closed and new
/// ones are refused until `restore`. Puts one gateway out of Redis's reach while the
/// others keep it.
pub struct Relay {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays a free loopback port to `target_port`.
    pub async fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (gate, watch) = (open.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay {
            port,
            open,
            cuts,
            task,
        }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
