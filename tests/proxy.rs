//! SPEC section 4: public paths, path tricks, identity and hop-by-hop headers,
//! X-Forwarded-*, token forwarding, upstream failures, header limits and streaming.
//!
//! Header tests use a raw TCP client: reqwest and hyper normalise dot-segments and manage
//! hop-by-hop headers themselves, so only raw bytes show what the gateway does.
//! (SPEC "not ready -> 503" cannot be reached through the real binary here: it only
//! reports ready once keys and store are loaded.)

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Gateway, gateway, token, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PUBLIC_PATHS: &str = "auth.public_paths = [\"/assets/*\", \"/health\"]";
const MIB: usize = 1024 * 1024;

// ============================================================================
// Raw HTTP/1.1 client
// ============================================================================

/// A response as it came over the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    /// Every value of `name` (case-insensitive).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `GET target` with exactly `headers` (plus `Host: x` unless one is given) and
/// reads one response.
async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!("GET {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str("Host: x\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw(addr, request.as_bytes()).await
}

/// Writes `request` on a new connection and parses one response (Content-Length,
/// chunked, or until the connection closes).
async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        read_response(&mut stream).await
    })
    .await
    .expect("the gateway answers within 20 s")
}

async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        assert!(
            read_more(stream, &mut buf).await,
            "connection closed before the response head; got {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("the head is text");
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let body = if let Some(length) = header("content-length") {
        let length: usize = length.parse().unwrap();
        while rest.len() < length {
            assert!(read_more(stream, &mut rest).await, "body cut short");
        }
        rest.truncate(length);
        rest
    } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        read_chunked(stream, rest).await
    } else {
        while read_more(stream, &mut rest).await {}
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            assert!(read_more(stream, &mut buf).await, "chunk size cut short");
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        while buf.len() < line_end + 2 + size + 2 {
            if size == 0 && find(&buf[line_end..], b"\r\n\r\n").is_some() {
                break;
            }
            assert!(read_more(stream, &mut buf).await, "chunk cut short");
        }
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(error) => panic!("read failed: {error}; got so far {:?}", buf),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ============================================================================
// Helpers
// ============================================================================

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every value the upstream received for `name`.
fn received<'a>(seen: &'a support::Recorded, name: &str) -> Vec<&'a str> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

async fn public_gateway(upstream: &support::Upstream) -> Gateway {
    gateway(upstream).set(PUBLIC_PATHS).start().await
}

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    hex::encode(digest.as_ref())
}

// ============================================================================
// Public paths
// ============================================================================

#[tokio::test]
async fn public_paths_are_forwarded_without_a_token() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    for path in ["/assets", "/assets/app.js", "/health", "/health?x=/../"] {
        let rsp = raw_get(gw.addr, path, &[]).await;
        assert_eq!(rsp.status, 200, "{path}");
        assert_eq!(rsp.json()["ok"], true, "{path}: the upstream's own body");
        assert_eq!(upstream.last().uri, path, "{path} forwarded as sent");
    }
    assert_eq!(upstream.count(), 4);
}

#[tokio::test]
async fn paths_beside_or_below_an_exact_public_path_need_a_token() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    for path in ["/assetsX", "/assets-private/x", "/health/x", "/other", "/"] {
        let rsp = raw_get(gw.addr, path, &[]).await;
        assert_eq!(rsp.status, 401, "{path}");
        assert_eq!(
            rsp.json(),
            json!({"error": "missing_token", "reason": "missing_token"}),
            "{path}"
        );
    }
    assert_eq!(upstream.count(), 0, "nothing was forwarded");
    let jwt = token().sign();
    for path in ["/assetsX", "/health/x", "/other"] {
        let rsp = raw_get(gw.addr, path, &[("Authorization", &bearer(&jwt))]).await;
        assert_eq!(rsp.status, 200, "{path} with a valid token");
    }
    assert_eq!(upstream.count(), 3);
}

// ============================================================================
// Path tricks
// ============================================================================

const PATH_TRICKS: [&str; 20] = [
    "/assets/../admin",
    "/assets/./x",
    "/assets/..",
    "/assets/.",
    "/assets/x/.",
    "/other/../admin",
    "/./other",
    "/assets/%2e%2e/admin",
    "/assets/%2E%2e/admin",
    "/assets/.%2e/admin",
    "/assets/%2e/x",
    "/assets%2fadmin",
    "/assets%2Fadmin",
    "/other/x%2Fy",
    "/assets/%5cadmin",
    "/assets/%5Cadmin",
    "/other/%5c",
    "/assets/\\admin",
    "/assets\\..\\admin",
    "/health/..",
];

#[tokio::test]
async fn path_tricks_are_refused_with_400_without_a_token() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    for path in PATH_TRICKS {
        let rsp = raw_get(gw.addr, path, &[]).await;
        assert_eq!(rsp.status, 400, "{path}");
        let body = rsp.json();
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    assert_eq!(upstream.count(), 0, "no trick reached the upstream");
}

#[tokio::test]
async fn path_tricks_are_refused_with_400_even_with_a_valid_token() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    let auth = bearer(&token().sign());
    for path in PATH_TRICKS {
        let rsp = raw_get(gw.addr, path, &[("Authorization", &auth)]).await;
        assert_eq!(rsp.status, 400, "{path}");
        assert_eq!(rsp.json()["error"], "bad_request", "{path}");
    }
    assert_eq!(upstream.count(), 0, "no trick reached the upstream");
}

#[tokio::test]
async fn ordinary_dots_and_encodings_are_not_path_tricks() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    for path in [
        "/assets/a.b/c..d/.well-known",
        "/assets/x%20y",
        "/assets/.../z",
    ] {
        let rsp = raw_get(gw.addr, path, &[]).await;
        assert_eq!(rsp.status, 200, "{path}");
        assert_eq!(upstream.last().uri, path);
    }
}

// ============================================================================
// Identity headers
// ============================================================================

const SPOOFED: [(&str, &str); 6] = [
    ("X-Auth-Subject", "mallory"),
    ("x-auth-subject", "mallory2"),
    ("X-AUTH-WORKSPACE", "victim"),
    ("x-auth-workspace", "victim2"),
    ("X-Auth-Session", "jti:stolen"),
    ("X-aUtH-sEsSiOn", "jti:stolen2"),
];

#[tokio::test]
async fn client_identity_headers_are_removed_on_public_paths() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    let rsp = raw_get(gw.addr, "/assets/app.js", &SPOOFED).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    for name in ["x-auth-subject", "x-auth-workspace", "x-auth-session"] {
        assert_eq!(received(&seen, name), Vec::<&str>::new(), "{name}");
    }
}

#[tokio::test]
async fn identity_headers_carry_the_verified_values_only() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token()
        .sub("alice")
        .workspace("acme")
        .claim("jti", json!("id-42"))
        .sign();
    let auth = bearer(&jwt);
    let mut headers = SPOOFED.to_vec();
    headers.push(("Authorization", &auth));
    let rsp = raw_get(gw.addr, "/app", &headers).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-auth-subject"), ["alice"]);
    assert_eq!(received(&seen, "x-auth-workspace"), ["acme"]);
    assert_eq!(received(&seen, "x-auth-session"), ["jti:id-42"]);
}

#[tokio::test]
async fn session_header_is_the_sha256_of_a_token_without_jti() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token().without("jti").sign();
    let auth = bearer(&jwt);
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[("Authorization", &auth), ("X-Auth-Session", "sha256:00")],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let expected = format!("sha256:{}", sha256_hex(&jwt));
    assert_eq!(expected.len(), 7 + 64);
    assert_eq!(received(&upstream.last(), "x-auth-session"), [expected]);
}

#[tokio::test]
async fn token_without_sub_sends_no_subject_header_even_if_the_client_did() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token().without("sub").sign();
    let auth = bearer(&jwt);
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[("Authorization", &auth), ("X-Auth-Subject", "mallory")],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-auth-subject"), Vec::<&str>::new());
    assert_eq!(received(&seen, "x-auth-workspace"), ["acme"]);
}

// ============================================================================
// What goes upstream unchanged, what does not
// ============================================================================

#[tokio::test]
async fn method_path_query_host_headers_and_body_arrive_unchanged() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token().sign();
    let body = b"{\"hello\": \"world\", \"n\": [1, 2, 3]}";
    let request = format!(
        "PATCH /api/v1/items/7?sort=desc&q=a%20b HTTP/1.1\r\nHost: app.example.com:8443\r\n\
         Authorization: Bearer {jwt}\r\nContent-Type: application/json\r\n\
         X-Request-Id: abc-123\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let rsp = raw(gw.addr, &bytes).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.uri, "/api/v1/items/7?sort=desc&q=a%20b");
    assert_eq!(received(&seen, "host"), ["app.example.com:8443"]);
    assert_eq!(received(&seen, "content-type"), ["application/json"]);
    assert_eq!(received(&seen, "x-request-id"), ["abc-123"]);
    assert_eq!(received(&seen, "accept"), ["application/json"]);
    assert_eq!(
        received(&seen, "authorization"),
        [bearer(&jwt)],
        "forward_token defaults to true"
    );
    assert_eq!(seen.body, body);
    assert_eq!(seen.body_len, body.len());
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_dropped() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let auth = bearer(&token().sign());
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[
            ("Authorization", &auth),
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("X-Custom-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("Proxy-Foo", "bar"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "foo/1"),
            ("X-Kept", "yes"),
        ],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    for name in [
        "connection",
        "x-custom-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-foo",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert_eq!(
            received(&seen, name),
            Vec::<&str>::new(),
            "{name} forwarded"
        );
    }
    assert_eq!(received(&seen, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let auth = bearer(&token().sign());
    let rsp = raw_get(gw.addr, "/app", &[("Authorization", &auth)]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.all("x-upstream-secret"), Vec::<&str>::new());
    for value in rsp.all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-upstream-secret"),
            "connection: {value}"
        );
    }
    assert_eq!(rsp.all("content-type"), ["application/json"]);
}

#[tokio::test]
async fn x_forwarded_headers_are_appended_and_overwritten() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let auth = bearer(&token().sign());
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[
            ("Host", "app.example.com"),
            ("Authorization", &auth),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(received(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&seen, "x-forwarded-host"), ["app.example.com"]);
    assert_eq!(received(&seen, "host"), ["app.example.com"]);
}

#[tokio::test]
async fn x_forwarded_proto_and_host_from_a_trusted_proxy_are_kept() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("server.trusted_proxies = [\"127.0.0.1/32\"]")
        .start()
        .await;
    let auth = bearer(&token().sign());
    let headers = [
        ("Host", "internal:8080"),
        ("Authorization", auth.as_str()),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
    ];
    assert_eq!(raw_get(gw.addr, "/app", &headers).await.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(received(&seen, "x-forwarded-host"), ["app.example.com"]);
    assert_eq!(received(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    // Without them, the trusted proxy's hop is described as for anyone else.
    assert_eq!(raw_get(gw.addr, "/app", &headers[..2]).await.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&seen, "x-forwarded-host"), ["internal:8080"]);
}

#[tokio::test]
async fn x_forwarded_for_starts_with_the_peer_when_absent() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    let rsp = raw_get(gw.addr, "/health", &[("Host", "h.example")]).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&seen, "x-forwarded-host"), ["h.example"]);
}

// ============================================================================
// upstream.forward_token = false
// ============================================================================

#[tokio::test]
async fn forward_token_false_removes_the_authorization_header() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("upstream.forward_token = false")
        .start()
        .await;
    let auth = bearer(&token().sign());
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[("Authorization", &auth), ("Cookie", "a=1")],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "authorization"), Vec::<&str>::new());
    assert_eq!(received(&seen, "cookie"), ["a=1"]);
    assert_eq!(received(&seen, "x-auth-workspace"), ["acme"]);
}

#[tokio::test]
async fn forward_token_false_removes_only_the_token_cookie() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("upstream.forward_token = false")
        .set("auth.cookie = \"sg\"")
        .start()
        .await;
    let cookie = format!("a=1; sg={}; b=2", token().sign());
    let rsp = raw_get(gw.addr, "/app", &[("Cookie", &cookie)]).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last();
    assert_eq!(received(&seen, "cookie"), ["a=1; b=2"]);
    assert_eq!(received(&seen, "x-auth-subject"), ["alice"]);
}

// ============================================================================
// Upstream failures
// ============================================================================

#[tokio::test]
async fn unreachable_upstream_is_502_bad_gateway() {
    let dead = upstream().await;
    let addr = dead.addr;
    let builder = gateway(&dead);
    drop(dead);
    wait_until_closed(addr).await;
    let gw = builder.start().await;
    let rsp = raw_get(
        gw.addr,
        "/app",
        &[("Authorization", &bearer(&token().sign()))],
    )
    .await;
    assert_eq!(rsp.status, 502);
    assert_eq!(rsp.json(), json!({"error": "bad_gateway"}));
}

/// Precondition for the 502 test: the dropped upstream's listener is really gone.
async fn wait_until_closed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn slow_upstream_is_504_gateway_timeout() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("upstream.response_timeout_secs = 1")
        .start()
        .await;
    let started = Instant::now();
    let rsp = raw_get(
        gw.addr,
        "/slow/3000",
        &[("Authorization", &bearer(&token().sign()))],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(rsp.status, 504);
    assert_eq!(rsp.json(), json!({"error": "gateway_timeout"}));
    assert!(
        elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}: the 1 s response timeout was not applied"
    );
}

// ============================================================================
// Header size limit
// ============================================================================

#[tokio::test]
async fn oversized_request_headers_get_431_and_the_gateway_keeps_serving() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    let big = "a".repeat(20 * 1024);
    let rsp = raw_get(gw.addr, "/health", &[("X-Big", &big)]).await;
    assert_eq!(rsp.status, 431);
    assert_eq!(
        upstream.count(),
        0,
        "the oversized request was not forwarded"
    );
    let next = raw_get(gw.addr, "/health", &[]).await;
    assert_eq!(next.status, 200, "the gateway still answers");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn headers_within_max_header_bytes_are_accepted() {
    let upstream = upstream().await;
    let gw = public_gateway(&upstream).await;
    let fits = "a".repeat(12 * 1024);
    let rsp = raw_get(gw.addr, "/health", &[("X-Big", &fits)]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(received(&upstream.last(), "x-big"), [fits.as_str()]);
}

// ============================================================================
// Streaming
// ============================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_100_mib_both_ways_in_small_memory() {
    const TOTAL: usize = 100 * MIB;
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token().sign();

    assert_eq!(gw.upload(&jwt, TOTAL).await, TOTAL);
    assert_eq!(upstream.last().body_len, TOTAL);
    assert_eq!(gw.download(&jwt, TOTAL).await, TOTAL);

    let peak = gw.peak_rss_bytes();
    println!(
        "gateway peak RSS (VmHWM) after 2 x 100 MiB: {:.1} MiB",
        peak as f64 / MIB as f64
    );
    assert!(
        peak < 64 * MIB,
        "peak RSS {peak} bytes: bodies are being buffered"
    );
}
