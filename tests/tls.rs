//! SPEC section 4 (TLS): rustls termination from PEM files, h2 and http/1.1 by ALPN on one
//! listener, and certificate reload without a restart (file change or SIGHUP; a bad new
//! file keeps the old certificate).
//!
//! Every gateway here serves copies of certs/localhost.{pem,key} from its own temp dir, so
//! a reload test can overwrite them. Clients trust certs/ca.pem and reach the gateway as
//! `https://localhost:<port>` (the certificate's SAN), resolved to the gateway's address.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::{Gateway, Upstream, admin, gateway, token, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a reload may take: the files are polled every 2 s.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

// ============================================================================
// Helpers
// ============================================================================

/// Path of a file under certs/.
fn dev_cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// A TLS gateway and the certificate and key files it was configured with.
struct TlsGateway {
    gw: Gateway,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsGateway {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.gw.addr.port(), path)
    }

    /// A client offering exactly `alpn`, trusting the development CA.
    fn client(&self, alpn: &[&[u8]]) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(client_tls(alpn))
            .resolve("localhost", self.gw.addr)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Replaces the served files with `certs/<stem>.pem` and `certs/<stem>.key`.
    fn install(&self, stem: &str) {
        // Key first: a poll between the two writes sees a mismatched pair and keeps the
        // old certificate; the next poll picks up the complete pair.
        std::fs::copy(dev_cert(&format!("{stem}.key")), &self.key).unwrap();
        std::fs::copy(dev_cert(&format!("{stem}.pem")), &self.cert).unwrap();
    }
}

/// A gateway in front of `upstream` terminating TLS with (copies of) certs/localhost.*.
async fn tls_gateway(upstream: &Upstream) -> TlsGateway {
    let builder = gateway(upstream);
    let cert = builder.dir().join("server.pem");
    let key = builder.dir().join("server.key");
    std::fs::copy(dev_cert("localhost.pem"), &cert).unwrap();
    std::fs::copy(dev_cert("localhost.key"), &key).unwrap();
    let gw = builder
        .set(&format!("server.tls.cert = \"{}\"", cert.display()))
        .set(&format!("server.tls.key = \"{}\"", key.display()))
        .start()
        .await;
    TlsGateway { gw, cert, key }
}

/// rustls client config trusting only certs/ca.pem, offering `alpn`.
fn client_tls(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dev_cert("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The DER of the leaf certificate a new TLS connection to `gw` is shown.
async fn presented_leaf(gw: &Gateway) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(H1_ONLY)));
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("the TLS handshake completes within 10 s")
        .expect("the gateway's certificate verifies against certs/ca.pem");
    conn.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// Whether the leaf is the `localhost-next` certificate (its CN is only in that one).
fn is_next(der: &[u8]) -> bool {
    der.windows(b"localhost-next".len())
        .any(|w| w == b"localhost-next")
}

/// Polls new handshakes until the `localhost-next` certificate is presented, up to `RELOAD_WAIT`.
async fn wait_for_next_certificate(gw: &Gateway) -> bool {
    let start = Instant::now();
    while start.elapsed() < RELOAD_WAIT {
        if is_next(&presented_leaf(gw).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls the log until it contains `text`, up to `RELOAD_WAIT`.
async fn wait_for_log(gw: &Gateway, text: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < RELOAD_WAIT {
        if gw.logs().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Writes `contents` to `path` by an atomic rename, keeping the old modification time,
/// so only an explicit reload (SIGHUP) can notice the change.
fn replace_keeping_mtime(path: &Path, contents: &[u8]) {
    let mtime: SystemTime = std::fs::metadata(path).unwrap().modified().unwrap();
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&staged, path).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// Sends SIGHUP to the gateway process.
fn hangup(gw: &Gateway) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn header<'a>(rsp: &'a reqwest::Response, name: &str) -> &'a str {
    rsp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has {name}"))
        .to_str()
        .unwrap()
}

fn received<'a>(headers: &'a http::HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

// ============================================================================
// ALPN: h2 and http/1.1 on one listener
// ============================================================================

#[tokio::test]
async fn h2_client_gets_http2_and_upstream_sees_host_identity_and_https_proto() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let jwt = token().claim("jti", json!("tls-h2")).sign();

    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/app/items?page=2"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();

    assert_eq!(rsp.version(), reqwest::Version::HTTP_2);
    assert_eq!(rsp.status(), 200);
    let seen = upstream.last();
    let host = format!("localhost:{}", tls.gw.addr.port());
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/app/items?page=2");
    assert_eq!(received(&seen.headers, "host"), [host.as_str()]);
    assert_eq!(received(&seen.headers, "x-forwarded-host"), [host.as_str()]);
    assert_eq!(received(&seen.headers, "x-forwarded-proto"), ["https"]);
    assert_eq!(received(&seen.headers, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&seen.headers, "x-auth-subject"), ["alice"]);
    assert_eq!(received(&seen.headers, "x-auth-workspace"), ["acme"]);
    assert_eq!(received(&seen.headers, "x-auth-session"), ["jti:tls-h2"]);
}

#[tokio::test]
async fn h2_request_body_reaches_the_upstream_whole() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let body = vec![b'z'; 300 * 1024];

    let rsp = tls
        .client(H2_AND_H1)
        .post(tls.url("/upload"))
        .bearer_auth(token().sign())
        .body(body.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(rsp.version(), reqwest::Version::HTTP_2);
    assert_eq!(rsp.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body_len, body.len());
}

#[tokio::test]
async fn http11_only_client_gets_http11_on_the_same_listener() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;

    for alpn in [H1_ONLY, &[][..]] {
        let rsp = tls
            .client(alpn)
            .get(tls.url("/app"))
            .bearer_auth(token().sign())
            .send()
            .await
            .unwrap();

        assert_eq!(rsp.version(), reqwest::Version::HTTP_11, "ALPN {alpn:?}");
        assert_eq!(rsp.status(), 200, "ALPN {alpn:?}");
        let seen = upstream.last();
        let host = format!("localhost:{}", tls.gw.addr.port());
        assert_eq!(received(&seen.headers, "host"), [host.as_str()]);
        assert_eq!(received(&seen.headers, "x-forwarded-proto"), ["https"]);
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_clear_text_answer() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let jwt = token().sign();

    let mut stream = TcpStream::connect(tls.gw.addr).await.unwrap();
    let request =
        format!("GET /app HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {jwt}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes a non-TLS connection within 20 s");

    // A TLS alert or a reset is fine; an HTTP response in clear text is not.
    assert!(
        read.is_err() || !answer.starts_with(b"HTTP/"),
        "clear-text answer on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        upstream.count(),
        0,
        "a clear-text request reached the upstream"
    );
    // The listener still serves TLS afterwards.
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/app"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
}

#[tokio::test]
async fn rejections_over_h2_carry_the_same_json_and_www_authenticate() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let client = tls.client(H2_AND_H1);

    let missing = client.get(tls.url("/app")).send().await.unwrap();
    assert_eq!(missing.version(), reqwest::Version::HTTP_2);
    assert_eq!(missing.status(), 401);
    assert_eq!(
        header(&missing, "www-authenticate"),
        "Bearer realm=\"sessiongate\""
    );
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "missing_token", "reason": "missing_token"})
    );

    let stale = token().exp(support::now() - 3600.0).sign();
    let expired = client
        .get(tls.url("/app"))
        .bearer_auth(stale)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.version(), reqwest::Version::HTTP_2);
    assert_eq!(expired.status(), 401);
    assert_eq!(
        header(&expired, "www-authenticate"),
        "Bearer realm=\"sessiongate\", error=\"invalid_token\", error_description=\"expired\""
    );
    assert_eq!(
        expired.json::<Value>().await.unwrap(),
        json!({"error": "invalid_token", "reason": "expired"})
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logout_all_over_h2_invalidates_older_tokens_on_h2() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let client = tls.client(H2_AND_H1);
    let old = token().iat(support::now().floor() - 10.0).sign();
    let admin_jwt = admin("root", "acme").sign();

    let rsp = client
        .post(tls.url("/_sessiongate/v1/workspaces/acme/logout-all"))
        .bearer_auth(&admin_jwt)
        .json(&json!({"reason": "rotation over h2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.version(), reqwest::Version::HTTP_2);
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.json::<Value>().await.unwrap()["workspace"], "acme");

    let rejected = client
        .get(tls.url("/app"))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 401);
    assert_eq!(
        rejected.json::<Value>().await.unwrap(),
        json!({"error": "invalid_token", "reason": "session_invalidated"})
    );
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// Certificate reload
// ============================================================================

#[tokio::test]
async fn changed_certificate_files_are_served_to_new_connections_without_restart() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    let pid = tls.gw.pid();
    assert!(
        !is_next(&presented_leaf(&tls.gw).await),
        "starts with CN localhost"
    );

    tls.install("localhost-next");

    assert!(
        wait_for_next_certificate(&tls.gw).await,
        "CN localhost-next not presented within {RELOAD_WAIT:?}; logs:\n{}",
        tls.gw.logs()
    );
    assert_eq!(tls.gw.pid(), pid);
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/after-reload"))
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(upstream.last().uri, "/after-reload");
}

/// The files may change at any moment after the gateway loaded them, including the instant
/// it reports ready; five gateways at once make that window likely to be hit.
#[tokio::test]
async fn certificate_replaced_right_after_ready_is_picked_up() {
    let upstream = upstream().await;
    let mut gateways = Vec::new();
    for _ in 0..5 {
        let tls = tls_gateway(&upstream).await;
        tls.install("localhost-next");
        gateways.push(tls);
    }

    for (i, tls) in gateways.iter().enumerate() {
        assert!(
            wait_for_next_certificate(&tls.gw).await,
            "gateway {i}: files replaced right after `ready` were never reloaded; logs:\n{}",
            tls.gw.logs()
        );
    }
}

/// An operator may send SIGHUP at any moment after the gateway reports ready; it must
/// never take the default action (terminate). Ten gateways make the window likely to be hit.
#[tokio::test]
async fn sighup_right_after_ready_does_not_kill_the_gateway() {
    let upstream = upstream().await;
    let mut gateways = Vec::new();
    for _ in 0..10 {
        let tls = tls_gateway(&upstream).await;
        hangup(&tls.gw);
        gateways.push(tls);
    }

    for (i, tls) in gateways.iter().enumerate() {
        let rsp = tls
            .client(H2_AND_H1)
            .get(tls.url("/after-hup"))
            .bearer_auth(token().sign())
            .send()
            .await;
        assert!(
            matches!(&rsp, Ok(rsp) if rsp.status() == 200),
            "gateway {i} did not survive a SIGHUP right after `ready`: {rsp:?}; logs:\n{}",
            tls.gw.logs()
        );
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_even_when_mtimes_did_not_change() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    assert!(
        !is_next(&presented_leaf(&tls.gw).await),
        "starts with CN localhost"
    );

    // Same mtimes as before: the 2 s poll cannot see this change, only SIGHUP can.
    replace_keeping_mtime(
        &tls.key,
        &std::fs::read(dev_cert("localhost-next.key")).unwrap(),
    );
    replace_keeping_mtime(
        &tls.cert,
        &std::fs::read(dev_cert("localhost-next.pem")).unwrap(),
    );
    hangup(&tls.gw);

    assert!(
        wait_for_next_certificate(&tls.gw).await,
        "CN localhost-next not presented within {RELOAD_WAIT:?} of SIGHUP; logs:\n{}",
        tls.gw.logs()
    );
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/after-hup"))
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "the process survived SIGHUP");
}

#[tokio::test]
async fn garbage_certificate_keeps_the_old_one_and_logs_an_error() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    assert!(!is_next(&presented_leaf(&tls.gw).await));

    std::fs::write(&tls.cert, "this is not a certificate\n").unwrap();

    assert!(
        wait_for_log(&tls.gw, "TLS certificate not reloaded").await,
        "no 'TLS certificate not reloaded' within {RELOAD_WAIT:?}; logs:\n{}",
        tls.gw.logs()
    );
    assert_not_reloaded_logged_as_error(&tls.gw);
    assert!(!is_next(&presented_leaf(&tls.gw).await));
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/still-serving"))
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);

    // Fixing the files later is picked up as usual.
    tls.install("localhost-next");
    assert!(
        wait_for_next_certificate(&tls.gw).await,
        "fixed files not picked up; logs:\n{}",
        tls.gw.logs()
    );
}

#[tokio::test]
async fn garbage_key_keeps_the_old_certificate_and_logs_an_error() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    assert!(!is_next(&presented_leaf(&tls.gw).await));

    std::fs::copy(dev_cert("localhost-next.pem"), &tls.cert).unwrap();
    std::fs::write(
        &tls.key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    assert!(
        wait_for_log(&tls.gw, "TLS certificate not reloaded").await,
        "no 'TLS certificate not reloaded' within {RELOAD_WAIT:?}; logs:\n{}",
        tls.gw.logs()
    );
    assert_not_reloaded_logged_as_error(&tls.gw);
    assert!(
        !is_next(&presented_leaf(&tls.gw).await),
        "the new certificate was served without its key"
    );
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/still-serving"))
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
}

#[tokio::test]
async fn certificate_not_matching_the_key_keeps_the_old_pair() {
    let upstream = upstream().await;
    let tls = tls_gateway(&upstream).await;
    assert!(!is_next(&presented_leaf(&tls.gw).await));

    // A valid certificate for the names, but the key on disk is still the old one.
    std::fs::copy(dev_cert("localhost-next.pem"), &tls.cert).unwrap();

    assert!(
        wait_for_log(&tls.gw, "TLS certificate not reloaded").await,
        "no 'TLS certificate not reloaded' within {RELOAD_WAIT:?}; logs:\n{}",
        tls.gw.logs()
    );
    // Handshakes still succeed, with the old (matching) pair.
    assert!(!is_next(&presented_leaf(&tls.gw).await));
    let rsp = tls
        .client(H2_AND_H1)
        .get(tls.url("/still-serving"))
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
}

/// The "not reloaded" line is a JSON event at ERROR level.
fn assert_not_reloaded_logged_as_error(gw: &Gateway) {
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("TLS certificate not reloaded"))
        .unwrap();
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["level"], "ERROR", "{line}");
}
