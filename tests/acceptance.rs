//! SPEC sections 1, 3 and 5 through the real binary: which tokens pass, why every other
//! token is refused (exact JSON body and exact `WWW-Authenticate`), that a refused request
//! never reaches the upstream, and how keys are loaded and chosen.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{
    Gateway, GatewayBuilder, Recorded, SECRET, Signer, TokenBuilder, Upstream, b64, fixture,
    gateway, now, public_key, token, upstream,
};

/// The private path every request goes to.
const PATH: &str = "/acceptance";

/// A browser's `Accept` header for a navigation.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

const LOGIN_URL: &str = "https://login.example.com/signin";

// ============================================================================
// Helpers
// ============================================================================

/// A recording upstream and a gateway in front of it.
struct Bench {
    upstream: Upstream,
    gw: Gateway,
}

/// Starts an upstream and a gateway configured by `configure`.
async fn bench(configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Bench {
    let upstream = upstream().await;
    let gw = configure(gateway(&upstream)).start().await;
    Bench { upstream, gw }
}

impl Bench {
    fn bearer(&self, jwt: &str) -> reqwest::RequestBuilder {
        self.gw.get(PATH).bearer_auth(jwt)
    }

    /// Asserts `jwt` passes: 200 and the upstream got exactly this request.
    async fn pass(&self, case: &str, jwt: &str) -> Recorded {
        self.pass_request(case, self.bearer(jwt)).await
    }

    async fn pass_request(&self, case: &str, request: reqwest::RequestBuilder) -> Recorded {
        let before = self.upstream.count();
        let rsp = request.send().await.unwrap();
        let status = rsp.status();
        let body = rsp.text().await.unwrap();
        assert_eq!(
            status, 200,
            "{case}: expected the token to pass; body {body}"
        );
        assert_eq!(
            self.upstream.count(),
            before + 1,
            "{case}: the upstream should get the request once"
        );
        self.upstream.last()
    }

    /// Asserts `jwt` is refused with exactly `reason`.
    async fn reject(&self, case: &str, jwt: &str, reason: &str) {
        self.reject_request(case, self.bearer(jwt), reason).await;
    }

    async fn reject_request(&self, case: &str, request: reqwest::RequestBuilder, reason: &str) {
        let got = self.refused(case, request).await;
        assert_eq!(got, reason, "{case}: wrong rejection reason");
    }

    /// Asserts `jwt` is refused with one of `reasons` (where SPEC allows either).
    async fn reject_any(&self, case: &str, jwt: &str, reasons: &[&str]) {
        let got = self.refused(case, self.bearer(jwt)).await;
        assert!(
            reasons.contains(&got.as_str()),
            "{case}: reason {got:?} is not one of {reasons:?}"
        );
    }

    /// Sends `request`, checks the SPEC section 3 shape of the 401 for whatever reason it
    /// carries, checks the upstream saw nothing, and returns the reason.
    async fn refused(&self, case: &str, request: reqwest::RequestBuilder) -> String {
        let before = self.upstream.count();
        let rsp = request.send().await.unwrap();
        let reason = assert_unauthorized(case, rsp).await;
        assert_eq!(
            self.upstream.count(),
            before,
            "{case}: a refused request reached the upstream"
        );
        reason
    }
}

/// Checks a 401 exactly as SPEC section 3 writes it and returns its reason.
async fn assert_unauthorized(case: &str, rsp: reqwest::Response) -> String {
    let status = rsp.status();
    let challenges: Vec<String> = rsp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let content_type = header(&rsp, "content-type");
    let text = rsp.text().await.unwrap();
    assert_eq!(status, 401, "{case}: expected 401; body {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{case}: content-type {content_type:?}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{case}: body is not JSON ({e}): {text}"));
    let reason = body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no reason in {body}"))
        .to_string();
    let (expected_body, expected_challenge) = if reason == "missing_token" {
        (
            json!({"error": "missing_token", "reason": "missing_token"}),
            r#"Bearer realm="sessiongate""#.to_string(),
        )
    } else {
        (
            json!({"error": "invalid_token", "reason": reason}),
            format!(
                r#"Bearer realm="sessiongate", error="invalid_token", error_description="{reason}""#
            ),
        )
    };
    assert_eq!(body, expected_body, "{case}: body");
    assert_eq!(challenges, [expected_challenge], "{case}: WWW-Authenticate");
    reason
}

fn header(rsp: &reqwest::Response, name: &str) -> String {
    rsp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The three segments of a compact token.
fn segments(jwt: &str) -> (String, String, String) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "test token has three segments");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

/// `input` (header.payload, already encoded) with a signature by `key`.
fn sign_input(input: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

/// `builder`'s header and claims, HS256-signed with `secret` instead of [`SECRET`].
fn hs256_with_secret(builder: &TokenBuilder, secret: &[u8]) -> String {
    let jwt = builder.sign();
    let (input, _) = jwt.rsplit_once('.').unwrap();
    sign_input(
        input,
        &EncodingKey::from_secret(secret).unwrap(),
        Algorithm::HS256,
    )
}

/// A hand-built token: raw header and payload text, HS256-signed with [`SECRET`].
fn raw_hs256(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    sign_input(&input, &Signer::Hs256.key(), Algorithm::HS256)
}

/// Claims of a valid token, as JSON text.
fn valid_claims() -> String {
    let now = now().floor();
    json!({"sub": "alice", "workspace_id": "acme", "iat": now, "exp": now + 3600.0}).to_string()
}

/// Pads a base64url segment with `=` as standard base64 would (at least one `=`).
fn padded(segment: &str) -> String {
    let missing = (4 - segment.len() % 4) % 4;
    format!("{segment}{}", "=".repeat(missing.max(1)))
}

/// `segment` (a 32-byte HS256 signature, 43 characters) with the two unused low bits of
/// its last character set: the same bytes to a lenient decoder, invalid to a strict one.
fn with_nonzero_trailing_bits(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(
        segment.len() % 4,
        3,
        "a 32-byte signature leaves 2 unused bits"
    );
    let (head, last) = segment.split_at(segment.len() - 1);
    let value = ALPHABET
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[value | 0b01] as char)
}

/// The public JWK of `signer`'s key, with `kid`.
fn jwk(signer: Signer, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&signer.key(), signer.algorithm()).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

/// Writes `keys` as a JWKS file in the gateway's directory and returns its path.
fn write_jwks(builder: &GatewayBuilder, keys: Vec<Jwk>) -> PathBuf {
    let path = builder.dir().join("jwks.json");
    let text = serde_json::to_string_pretty(&JwkSet { keys }).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn jwks_key(path: &std::path::Path, extra: &str) -> String {
    format!("jwks_file = \"{}\"\n{extra}", path.display())
}

/// The label and DER bytes of a one-block PEM file.
fn pem_to_der(pem: &[u8]) -> (String, Vec<u8>) {
    let text = std::str::from_utf8(pem).unwrap();
    let label = text
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("-----BEGIN ")
        .trim_end_matches("-----")
        .to_string();
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    (label, STANDARD.decode(body).unwrap())
}

/// A TCP listener that counts connections and answers any request with `body`, so a
/// gateway that fetched `jku`/`x5u` would get a usable key set.
struct Trap {
    url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn trap(body: String) -> Trap {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Trap { url, hits, task }
}

/// The attributes of a `Set-Cookie` value: (`name=value`, lower-cased attributes).
fn cookie_parts(set_cookie: &str) -> (String, Vec<String>) {
    let mut parts = set_cookie.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default().to_string();
    let attributes = parts.map(str::to_ascii_lowercase).collect();
    (pair, attributes)
}

// ============================================================================
// Section 3: missing token
// ============================================================================

#[tokio::test]
async fn rejects_request_without_token_as_missing_token_without_error_attribute() {
    let b = bench(|g| g.set("auth.cookie = \"sg\"")).await;
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no Authorization, no cookie", b.gw.get(PATH)),
        (
            "Basic scheme only",
            b.gw.get(PATH).header("authorization", "Basic YWxpY2U6cHc="),
        ),
        (
            "other cookies only",
            b.gw.get(PATH).header("cookie", "theme=dark; lang=en"),
        ),
        ("empty token cookie", b.gw.get(PATH).header("cookie", "sg=")),
    ];
    for (case, request) in cases {
        b.reject_request(case, request, "missing_token").await;
    }
    b.pass("control: valid bearer", &token().sign()).await;
}

#[tokio::test]
async fn ignores_token_cookie_when_auth_cookie_is_unset() {
    let b = bench(|g| g).await;
    let request =
        b.gw.get(PATH)
            .header("cookie", format!("sg={}", token().sign()));
    b.reject_request(
        "valid token in an unconfigured cookie",
        request,
        "missing_token",
    )
    .await;
}

// ============================================================================
// Section 1 step 1: malformed tokens
// ============================================================================

#[tokio::test]
async fn rejects_tokens_that_are_not_three_base64url_segments_as_malformed() {
    let b = bench(|g| g).await;
    let jwt = token().sign();
    let (h, p, s) = segments(&jwt);
    let cases = [
        ("not a JWT", "hello".to_string()),
        ("two segments", format!("{h}.{p}")),
        ("four segments", format!("{h}.{p}.{s}.{s}")),
        ("trailing dot", format!("{h}.{p}.{s}.")),
        ("only dots", "..".to_string()),
        ("empty header segment", format!(".{p}.{s}")),
        ("empty payload segment", format!("{h}..{s}")),
        ("'!' in header", format!("{h}!.{p}.{s}")),
        ("'+' (standard alphabet) in header", format!("+{h}.{p}.{s}")),
        ("'!' in payload", format!("{h}.{p}!.{s}")),
        (
            "'/' (standard alphabet) in payload",
            format!("{h}./{p}.{s}"),
        ),
        ("'*' in signature", format!("{h}.{p}.{s}*")),
        (
            "'+' (standard alphabet) in signature",
            format!("{h}.{p}.+{s}"),
        ),
        (
            "impossible base64 length in signature",
            format!("{h}.{p}.{s}AA"),
        ),
        ("space inside the token", format!("{h}.{p} .{s}")),
        ("padding '=' on header", format!("{}.{p}.{s}", padded(&h))),
        ("padding '=' on payload", format!("{h}.{}.{s}", padded(&p))),
        (
            "padding '=' on signature",
            format!("{h}.{p}.{}", padded(&s)),
        ),
    ];
    for (case, jwt) in &cases {
        b.reject(case, jwt, "malformed_token").await;
    }
    // A lenient decoder ignores the unused low bits of the last character, so this second
    // spelling of the same signature would verify (and hash to another session id).
    let respelled = format!("{h}.{p}.{}", with_nonzero_trailing_bits(&s));
    b.reject_any(
        "signature with non-zero trailing bits",
        &respelled,
        &["malformed_token", "bad_signature"],
    )
    .await;
    b.pass("control: the untouched token", &jwt).await;
}

#[tokio::test]
async fn rejects_empty_bearer_token() {
    let b = bench(|g| g).await;
    // `Bearer ` with nothing after it is no token at all or a malformed one; SPEC names
    // neither, so either reason is right, as long as it is refused with the exact shape.
    for (case, value) in [("Bearer + space", "Bearer "), ("Bearer alone", "Bearer")] {
        let request = b.gw.get(PATH).header("authorization", value);
        let got = b.refused(case, request).await;
        assert!(
            ["missing_token", "malformed_token"].contains(&got.as_str()),
            "{case}: reason {got:?}"
        );
    }
}

#[tokio::test]
async fn rejects_header_or_payload_that_is_not_a_json_object_as_malformed() {
    let b = bench(|g| g).await;
    let header = json!({"alg": "HS256", "typ": "JWT"}).to_string();
    let claims = valid_claims();
    let not_objects = [
        ("an array", r#"[{"alg":"HS256"}]"#),
        ("a string", r#""HS256""#),
        ("a number", "42"),
        ("null", "null"),
        ("invalid JSON", r#"{"alg":"HS256""#),
        ("control bytes", "\u{1}\u{2}garbage"),
    ];
    for (what, text) in not_objects {
        let case = format!("header is {what}");
        b.reject(&case, &raw_hs256(text, &claims), "malformed_token")
            .await;
        let case = format!("payload is {what}");
        b.reject(&case, &raw_hs256(&header, text), "malformed_token")
            .await;
    }
    b.pass(
        "control: hand-built valid token",
        &raw_hs256(&header, &claims),
    )
    .await;
}

#[tokio::test]
async fn rejects_token_longer_than_default_max_token_bytes() {
    let b = bench(|g| g).await;
    // The largest token not longer than 8192 bytes passes; the smallest longer one fails.
    let sized = |pad: usize| {
        token()
            .claim("jti", json!("fixed-jti"))
            .claim("pad", json!("x".repeat(pad)))
            .sign()
    };
    let too_long_pad = (0..8192).find(|&pad| sized(pad).len() > 8192).unwrap();
    let (fits, too_long) = (sized(too_long_pad - 1), sized(too_long_pad));
    assert!(fits.len() <= 8192 && too_long.len() > 8192);
    b.pass(&format!("{} bytes", fits.len()), &fits).await;
    b.reject(
        &format!("{} bytes", too_long.len()),
        &too_long,
        "malformed_token",
    )
    .await;
    let huge = sized(9_000);
    b.reject("about 12 KB of token", &huge, "malformed_token")
        .await;
}

#[tokio::test]
async fn rejects_token_longer_than_configured_max_token_bytes() {
    let exact = token().claim("jti", json!("fixed-jti")).sign();
    let longer = token()
        .claim("jti", json!("fixed-jti"))
        .claim("pad", json!("x"))
        .sign();
    assert!(longer.len() > exact.len());
    let limit = exact.len();
    let b = bench(|g| g.set(&format!("jwt.max_token_bytes = {limit}"))).await;
    b.pass("token exactly at the limit", &exact).await;
    b.reject("token one segment longer", &longer, "malformed_token")
        .await;
}

#[tokio::test]
async fn rejects_crit_header_as_malformed() {
    let b = bench(|g| g).await;
    let cases = [
        ("crit naming exp", json!(["exp"])),
        ("crit naming an unknown extension", json!(["x-ext"])),
        ("crit empty array", json!([])),
    ];
    for (case, crit) in cases {
        let jwt = token()
            .header("crit", crit)
            .header("x-ext", json!(1))
            .sign();
        b.reject(case, &jwt, "malformed_token").await;
    }
    b.pass("control: no crit", &token().sign()).await;
}

#[tokio::test]
async fn rejects_required_claims_of_the_wrong_json_type_as_malformed() {
    let b = bench(|g| {
        g.set("jwt.issuer = \"https://idp.example.com\"")
            .set("jwt.audience = [\"api\"]")
    })
    .await;
    let base = || {
        token()
            .claim("iss", json!("https://idp.example.com"))
            .claim("aud", json!("api"))
    };
    let later = (now() + 3600.0).floor().to_string();
    let earlier = (now() - 60.0).floor().to_string();
    let cases = [
        ("exp as a string", base().claim("exp", json!(later))),
        ("exp as a boolean", base().claim("exp", json!(true))),
        ("iat as a string", base().claim("iat", json!(earlier))),
        ("nbf as a string", base().claim("nbf", json!(earlier))),
        (
            "workspace_id as a number",
            base().claim("workspace_id", json!(42)),
        ),
        (
            "workspace_id as an array",
            base().claim("workspace_id", json!(["acme"])),
        ),
        (
            "workspace_id as an object",
            base().claim("workspace_id", json!({"id": "acme"})),
        ),
        ("iss as a number", base().claim("iss", json!(7))),
        ("aud as a number", base().claim("aud", json!(7))),
    ];
    for (case, builder) in &cases {
        b.reject(case, &builder.sign(), "malformed_token").await;
    }
    b.pass("control: right types", &base().sign()).await;
}

#[tokio::test]
async fn rejects_subject_with_control_characters_as_malformed() {
    let b = bench(|g| g).await;
    let cases = [
        ("newline", "alice\nX-Auth-Workspace: other"),
        ("carriage return", "alice\r"),
        ("NUL", "alice\u{0}"),
        ("escape", "alice\u{1b}[31m"),
        ("DEL", "alice\u{7f}"),
    ];
    for (case, sub) in cases {
        b.reject(case, &token().sub(sub).sign(), "malformed_token")
            .await;
    }
    let seen = b
        .pass("control: plain sub", &token().sub("alice").sign())
        .await;
    assert_eq!(seen.headers["x-auth-subject"], "alice");
}

// ============================================================================
// Section 1 step 2: algorithm and signature
// ============================================================================

#[tokio::test]
async fn rejects_alg_none_in_any_spelling_as_unsupported_algorithm() {
    let b = bench(|g| g).await;
    let claims = b64(&valid_claims());
    let hs256_signature = {
        let (_, _, s) = segments(&token().sign());
        s
    };
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}).to_string());
        let empty = format!("{header}.{claims}.");
        b.reject(
            &format!("alg {alg:?}, empty signature"),
            &empty,
            "unsupported_algorithm",
        )
        .await;
        let signed = sign_input(
            &format!("{header}.{claims}"),
            &Signer::Hs256.key(),
            Algorithm::HS256,
        );
        b.reject(
            &format!("alg {alg:?}, HS256 signature"),
            &signed,
            "unsupported_algorithm",
        )
        .await;
        let foreign = format!("{header}.{claims}.{hs256_signature}");
        b.reject(
            &format!("alg {alg:?}, foreign signature"),
            &foreign,
            "unsupported_algorithm",
        )
        .await;
    }
}

#[tokio::test]
async fn rejects_alg_spelled_in_the_wrong_case_as_unsupported_algorithm() {
    let b = bench(|g| g).await;
    for alg in ["hs256", "Hs256", "HS256 "] {
        let jwt = hs256_with_secret(&token().header("alg", json!(alg)), SECRET.as_bytes());
        b.reject(&format!("alg {alg:?}"), &jwt, "unsupported_algorithm")
            .await;
    }
}

#[tokio::test]
async fn rejects_algorithm_outside_the_allow_list_as_unsupported_algorithm() {
    let b = bench(|g| {
        g.set("jwt.algorithms = [\"RS256\"]")
            .without_default_key()
            .key(&public_key("rsa.pub.pem"))
    })
    .await;
    let cases = [
        ("HS256 token", token().sign()),
        (
            "PS256 token (the RSA key could verify it)",
            token().signed_with(Signer::Ps256).sign(),
        ),
        ("ES256 token", token().signed_with(Signer::Es256).sign()),
        ("EdDSA token", token().signed_with(Signer::EdDsa).sign()),
    ];
    for (case, jwt) in &cases {
        b.reject(case, jwt, "unsupported_algorithm").await;
    }
    b.pass("control: RS256", &token().signed_with(Signer::Rs256).sign())
        .await;
}

#[tokio::test]
async fn rejects_token_with_no_fitting_key_as_unknown_key() {
    let b = bench(|g| g.without_default_key().key(&public_key("ec384.pub.pem"))).await;
    let cases = [
        ("ES256 with only a P-384 key", Signer::Es256),
        ("HS256 with no HMAC key", Signer::Hs256),
        ("RS256 with no RSA key", Signer::Rs256),
        ("EdDSA with no Ed25519 key", Signer::EdDsa),
    ];
    for (case, signer) in cases {
        b.reject(case, &token().signed_with(signer).sign(), "unknown_key")
            .await;
    }
    b.pass("control: ES384", &token().signed_with(Signer::Es384).sign())
        .await;
}

#[tokio::test]
async fn rejects_token_signed_by_another_key_as_bad_signature() {
    let b = bench(|g| g.key(&public_key("rsa.pub.pem"))).await;
    b.reject(
        "RS256 signed with rsa2",
        &token().signed_with(Signer::OtherRs256).sign(),
        "bad_signature",
    )
    .await;
    b.reject(
        "HS256 with another secret",
        &hs256_with_secret(&token(), b"another-secret-0123456789abcdefgh"),
        "bad_signature",
    )
    .await;
    b.reject(
        "HS256 with an empty signature",
        &format!("{}.", token().sign().rsplit_once('.').unwrap().0),
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn rejects_tampered_payload_as_bad_signature() {
    let b = bench(|g| g.key(&public_key("rsa.pub.pem"))).await;
    for signer in [Signer::Hs256, Signer::Rs256] {
        let original = token().sub("alice").signed_with(signer);
        let (h, _, s) = segments(&original.sign());
        let (_, forged, _) = segments(&original.clone().sub("mallory").sign());
        let case = format!("{signer:?}: sub changed after signing");
        b.reject(&case, &format!("{h}.{forged}.{s}"), "bad_signature")
            .await;
        let (_, admin, _) = segments(&original.clone().roles(&["admin"]).sign());
        let case = format!("{signer:?}: roles added after signing");
        b.reject(&case, &format!("{h}.{admin}.{s}"), "bad_signature")
            .await;
        b.pass(&format!("{signer:?}: control"), &original.sign())
            .await;
    }
}

#[tokio::test]
async fn refuses_hs256_token_keyed_with_the_configured_rsa_public_key() {
    let pem = std::fs::read(fixture("rsa.pub.pem")).unwrap();
    let trimmed = pem.strip_suffix(b"\n").unwrap_or(&pem).to_vec();
    let pkcs1 = std::fs::read(fixture("rsa.pkcs1.pub.pem")).unwrap();
    let secrets = [
        ("SPKI PEM bytes", pem),
        ("SPKI PEM without trailing newline", trimmed),
        ("PKCS#1 PEM bytes", pkcs1),
    ];

    // With an HMAC key present, the HMAC key is tried and fails.
    let b = bench(|g| g.key(&public_key("rsa.pub.pem"))).await;
    for (what, secret) in &secrets {
        let jwt = hs256_with_secret(&token(), secret);
        b.reject(&format!("HMAC key present; {what}"), &jwt, "bad_signature")
            .await;
    }
    // With only the RSA key, no key fits HS256.
    let b = bench(|g| g.without_default_key().key(&public_key("rsa.pub.pem"))).await;
    for (what, secret) in &secrets {
        let jwt = hs256_with_secret(&token(), secret);
        b.reject(&format!("RSA key only; {what}"), &jwt, "unknown_key")
            .await;
    }
    b.pass("control: RS256", &token().signed_with(Signer::Rs256).sign())
        .await;
    // The token names the RSA key's kid: still never verified as an HMAC secret.
    let b = bench(|g| {
        g.without_default_key()
            .key(&format!("{}\nkid = \"rsa\"", public_key("rsa.pub.pem")))
    })
    .await;
    for (what, secret) in &secrets {
        let jwt = hs256_with_secret(&token().header("kid", json!("rsa")), secret);
        let case = format!("kid names the RSA key; {what}");
        b.reject_any(&case, &jwt, &["unknown_key", "bad_signature"])
            .await;
    }
}

#[tokio::test]
async fn refuses_tokens_relabelled_between_algorithms() {
    let b = bench(|g| {
        g.key(&public_key("rsa.pub.pem"))
            .key(&public_key("ec256.pub.pem"))
    })
    .await;
    let relabelled =
        |alg: &str, key: Signer| token().header("alg", json!(alg)).key_only(key).sign();
    let cases = [
        (
            "RS256 signature labelled HS256",
            relabelled("HS256", Signer::Rs256),
        ),
        (
            "HS256 signature labelled RS256",
            relabelled("RS256", Signer::Hs256),
        ),
        (
            "RS256 signature labelled PS256",
            relabelled("PS256", Signer::Rs256),
        ),
        (
            "PS256 signature labelled RS256",
            relabelled("RS256", Signer::Ps256),
        ),
        (
            "HS256 signature labelled ES256",
            relabelled("ES256", Signer::Hs256),
        ),
        (
            "ES256 signature labelled HS256",
            relabelled("HS256", Signer::Es256),
        ),
    ];
    for (case, jwt) in &cases {
        b.reject(case, jwt, "bad_signature").await;
    }
    for signer in [Signer::Hs256, Signer::Rs256, Signer::Ps256, Signer::Es256] {
        let jwt = token().signed_with(signer).sign();
        b.pass(&format!("control: {signer:?}"), &jwt).await;
    }
}

#[tokio::test]
async fn ignores_jku_x5u_jwk_and_x5c_headers_and_never_fetches_them() {
    let attacker_jwk = jwk(Signer::OtherRs256, "attacker");
    let jwks = serde_json::to_string(&JwkSet {
        keys: vec![attacker_jwk.clone()],
    })
    .unwrap();
    let listener = trap(jwks).await;
    let attacker_cert = {
        let pem = std::fs::read(fixture("rsa2.cert.pem")).unwrap();
        let (_, der) = pem_to_der(&pem);
        STANDARD.encode(der)
    };
    let jku = json!(format!("{}/jwks.json", listener.url));
    let x5u = json!(format!("{}/cert.pem", listener.url));
    let jwk_header = serde_json::to_value(&attacker_jwk).unwrap();
    let x5c = json!([attacker_cert]);
    let with_all = |builder: TokenBuilder| {
        builder
            .header("jku", jku.clone())
            .header("x5u", x5u.clone())
            .header("jwk", jwk_header.clone())
            .header("x5c", x5c.clone())
    };

    let b = bench(|g| g.key(&public_key("rsa.pub.pem"))).await;
    let attacker = || token().signed_with(Signer::OtherRs256);
    let cases = [
        ("jku", attacker().header("jku", jku.clone())),
        ("x5u", attacker().header("x5u", x5u.clone())),
        ("jwk", attacker().header("jwk", jwk_header.clone())),
        ("x5c", attacker().header("x5c", x5c.clone())),
        ("all four", with_all(attacker())),
        (
            "all four with the attacker's kid",
            with_all(attacker()).header("kid", json!("attacker")),
        ),
    ];
    for (case, builder) in &cases {
        let case = format!("signed with rsa2, advertised in {case}");
        b.reject(&case, &builder.sign(), "bad_signature").await;
    }
    let legit = with_all(token().signed_with(Signer::Rs256)).sign();
    b.pass("signed with the configured key, carrying all four", &legit)
        .await;

    // A fetch would have happened while the requests were answered; the short wait only
    // gives a background fetch a chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        listener.hits.load(Ordering::SeqCst),
        0,
        "the gateway connected to a URL named in a token header"
    );
}

// ============================================================================
// Section 1 step 3: time
// ============================================================================

#[tokio::test]
async fn applies_default_leeway_to_exp() {
    let b = bench(|g| g).await;
    let issued = now() - 600.0;
    let jwt = |exp_offset: f64| token().iat(issued).exp(now() + exp_offset).sign();
    b.pass("exp 10 s ago", &jwt(-10.0)).await;
    b.pass("exp 25 s ago", &jwt(-25.0)).await;
    b.reject("exp 31 s ago", &jwt(-31.0), "expired").await;
    b.reject("exp 1 h ago", &jwt(-3600.0), "expired").await;
}

#[tokio::test]
async fn applies_default_leeway_to_iat() {
    let b = bench(|g| g).await;
    let jwt = |iat_offset: f64| token().iat(now() + iat_offset).exp(now() + 3600.0).sign();
    b.pass("iat 20 s ahead", &jwt(20.0)).await;
    b.reject("iat 40 s ahead", &jwt(40.0), "issued_in_future")
        .await;
    b.reject("iat 1 h ahead", &jwt(3600.0), "issued_in_future")
        .await;
}

#[tokio::test]
async fn applies_default_leeway_to_nbf() {
    let b = bench(|g| g).await;
    let jwt = |nbf_offset: f64| token().claim("nbf", json!(now() + nbf_offset)).sign();
    b.pass("nbf 60 s ago", &jwt(-60.0)).await;
    b.pass("nbf 20 s ahead", &jwt(20.0)).await;
    b.reject("nbf 40 s ahead", &jwt(40.0), "not_yet_valid")
        .await;
    b.reject("nbf 1 h ahead", &jwt(3600.0), "not_yet_valid")
        .await;
}

#[tokio::test]
async fn compares_fractional_numeric_dates_exactly() {
    let b = bench(|g| g).await;
    let issued = now() - 600.0;
    // The cases that pass leave the gateway 0.5 s to receive the request: ample on loopback.
    let exp = |offset: f64| token().iat(issued).exp(now() + offset).sign();
    b.reject("exp = now - 30.5", &exp(-30.5), "expired").await;
    b.pass("exp = now - 29.5", &exp(-29.5)).await;
    let iat = |offset: f64| token().iat(now() + offset).sign();
    b.pass("iat = now + 29.5", &iat(29.5)).await;
    b.reject("iat = now + 30.5", &iat(30.5), "issued_in_future")
        .await;
    let nbf = |offset: f64| token().claim("nbf", json!(now() + offset)).sign();
    b.pass("nbf = now + 29.5", &nbf(29.5)).await;
    b.reject("nbf = now + 30.5", &nbf(30.5), "not_yet_valid")
        .await;
}

#[tokio::test]
async fn never_rounds_the_fractional_part_of_numeric_dates() {
    let b = bench(|g| g).await;
    // Start just after a whole second `m` so the fractional parts below decide the outcome:
    // rounding a date down (or comparing whole seconds only) flips every case. The wait is
    // setup, not an assertion; each case leaves the gateway over 0.5 s to answer.
    let fraction = now().fract();
    if fraction > 0.1 {
        tokio::time::sleep(Duration::from_secs_f64(1.0 - fraction + 0.01)).await;
    }
    let m = now().floor();
    let issued = m - 600.0;
    let exp = token().iat(issued).exp(m - 29.25).sign();
    b.pass("exp = m - 29.25 (m - 30 if rounded down)", &exp)
        .await;
    let iat = token().iat(m + 30.75).sign();
    b.reject(
        "iat = m + 30.75 (m + 30 if rounded down)",
        &iat,
        "issued_in_future",
    )
    .await;
    let nbf = token().claim("nbf", json!(m + 30.75)).sign();
    b.reject(
        "nbf = m + 30.75 (m + 30 if rounded down)",
        &nbf,
        "not_yet_valid",
    )
    .await;
}

#[tokio::test]
async fn zero_leeway_allows_no_clock_skew() {
    let b = bench(|g| g.set("jwt.leeway_secs = 0")).await;
    let issued = now() - 600.0;
    let exp = |offset: f64| token().iat(issued).exp(now() + offset).sign();
    b.reject("exp 1 s ago", &exp(-1.0), "expired").await;
    b.pass("exp in 5 s", &exp(5.0)).await;
    let iat = |offset: f64| token().iat(now() + offset).sign();
    b.reject("iat 5 s ahead", &iat(5.0), "issued_in_future")
        .await;
    b.pass("iat 1 s ago", &iat(-1.0)).await;
    let nbf = |offset: f64| token().claim("nbf", json!(now() + offset)).sign();
    b.reject("nbf 5 s ahead", &nbf(5.0), "not_yet_valid").await;
    b.pass("nbf 1 s ago", &nbf(-1.0)).await;
}

// ============================================================================
// Section 1 step 4: claims
// ============================================================================

#[tokio::test]
async fn rejects_missing_or_different_issuer_as_wrong_issuer() {
    let b = bench(|g| g.set("jwt.issuer = \"https://idp.example.com\"")).await;
    let cases = [
        ("no iss", token()),
        (
            "other iss",
            token().claim("iss", json!("https://evil.example.com")),
        ),
        (
            "iss with a trailing slash",
            token().claim("iss", json!("https://idp.example.com/")),
        ),
        (
            "iss in another case",
            token().claim("iss", json!("https://IDP.example.com")),
        ),
        ("empty iss", token().claim("iss", json!(""))),
    ];
    for (case, builder) in &cases {
        b.reject(case, &builder.sign(), "wrong_issuer").await;
    }
    let jwt = token()
        .claim("iss", json!("https://idp.example.com"))
        .sign();
    b.pass("control: exact issuer", &jwt).await;
}

#[tokio::test]
async fn rejects_audience_not_configured_as_wrong_audience() {
    let b = bench(|g| g.set("jwt.audience = [\"api\", \"web\"]")).await;
    let aud = |value: Value| token().claim("aud", value).sign();
    let cases = [
        ("no aud", token().sign()),
        ("other aud", aud(json!("billing"))),
        ("aud in another case", aud(json!("API"))),
        ("empty aud array", aud(json!([]))),
        (
            "aud array without a configured audience",
            aud(json!(["billing", "mail"])),
        ),
    ];
    for (case, jwt) in &cases {
        b.reject(case, jwt, "wrong_audience").await;
    }
    b.pass("aud string", &aud(json!("api"))).await;
    b.pass(
        "aud array with one configured",
        &aud(json!(["billing", "web"])),
    )
    .await;
}

#[tokio::test]
async fn rejects_token_without_exp_iat_or_workspace_as_missing_claim() {
    let b = bench(|g| g).await;
    for claim in ["exp", "iat", "workspace_id"] {
        let jwt = token().without(claim).sign();
        b.reject(&format!("no {claim}"), &jwt, "missing_claim")
            .await;
    }
    let seen = b
        .pass("control: no sub is fine", &token().without("sub").sign())
        .await;
    assert_eq!(seen.headers["x-auth-workspace"], "acme");
}

#[tokio::test]
async fn reads_nested_workspace_claim_by_dotted_path() {
    let b = bench(|g| g.set("jwt.workspace_claim = \"org.id\"")).await;
    let nested = token()
        .without("workspace_id")
        .claim("org", json!({"id": "globex"}))
        .sign();
    let seen = b.pass("org.id present", &nested).await;
    assert_eq!(seen.headers["x-auth-workspace"], "globex");
    let flat = token().sign();
    b.reject("only a flat workspace_id", &flat, "missing_claim")
        .await;
    let number = token().claim("org", json!({"id": 7})).sign();
    b.reject("org.id is a number", &number, "malformed_token")
        .await;
}

// ============================================================================
// Section 5: key sources and selection
// ============================================================================

#[tokio::test]
async fn accepts_each_algorithm_with_its_spki_public_key() {
    let cases = [
        (Signer::Rs256, "rsa.pub.pem"),
        (Signer::Ps256, "rsa.pub.pem"),
        (Signer::Es256, "ec256.pub.pem"),
        (Signer::Es384, "ec384.pub.pem"),
        (Signer::EdDsa, "ed25519.pub.pem"),
    ];
    for (signer, file) in cases {
        let b = bench(|g| g.without_default_key().key(&public_key(file))).await;
        let case = format!("{signer:?} with {file}");
        b.pass(&case, &token().signed_with(signer).sign()).await;
        b.reject(
            &format!("{case}: HS256 has no key"),
            &token().sign(),
            "unknown_key",
        )
        .await;
    }
}

#[tokio::test]
async fn accepts_rs256_with_pkcs1_public_key_and_x509_certificate() {
    for file in ["rsa.pkcs1.pub.pem", "rsa.cert.pem"] {
        let b = bench(|g| g.without_default_key().key(&public_key(file))).await;
        for signer in [Signer::Rs256, Signer::Ps256] {
            let jwt = token().signed_with(signer).sign();
            b.pass(&format!("{signer:?} with {file}"), &jwt).await;
        }
        let other = token().signed_with(Signer::OtherRs256).sign();
        b.reject(&format!("rsa2 token with {file}"), &other, "bad_signature")
            .await;
    }
}

#[tokio::test]
async fn hmac_secret_file_drops_exactly_one_trailing_newline() {
    // The default key file holds SECRET + "\n".
    let b = bench(|g| g).await;
    let with_newline = format!("{SECRET}\n");
    b.pass("default file: SECRET", &token().sign()).await;
    b.reject(
        "default file: SECRET + newline",
        &hs256_with_secret(&token(), with_newline.as_bytes()),
        "bad_signature",
    )
    .await;

    let cases = [
        ("no newline", SECRET.to_string(), SECRET.to_string()),
        (
            "two newlines",
            format!("{SECRET}\n\n"),
            format!("{SECRET}\n"),
        ),
    ];
    for (what, contents, effective) in cases {
        let b = bench(|g| {
            let path = g.dir().join("other.secret");
            std::fs::write(&path, &contents).unwrap();
            g.without_default_key()
                .key(&format!("hmac_secret_file = \"{}\"", path.display()))
        })
        .await;
        let jwt = hs256_with_secret(&token(), effective.as_bytes());
        b.pass(
            &format!("file with {what}: the file minus one newline"),
            &jwt,
        )
        .await;
        if effective != SECRET {
            let trimmed = hs256_with_secret(&token(), effective.trim_end().as_bytes());
            let case = format!("file with {what}: all whitespace trimmed");
            b.reject(&case, &trimmed, "bad_signature").await;
        }
    }
}

#[tokio::test]
async fn selects_the_key_named_by_kid() {
    let b = bench(|g| {
        g.without_default_key()
            .key(&format!("{}\nkid = \"a\"", public_key("rsa.pub.pem")))
            .key(&format!("{}\nkid = \"b\"", public_key("rsa2.pub.pem")))
    })
    .await;
    let with_kid =
        |kid: &str, signer: Signer| token().header("kid", json!(kid)).signed_with(signer).sign();
    b.pass(
        "kid b, signed with rsa2",
        &with_kid("b", Signer::OtherRs256),
    )
    .await;
    b.pass("kid a, signed with rsa", &with_kid("a", Signer::Rs256))
        .await;
    b.reject(
        "kid a, signed with rsa2",
        &with_kid("a", Signer::OtherRs256),
        "bad_signature",
    )
    .await;
    b.reject(
        "kid b, signed with rsa",
        &with_kid("b", Signer::Rs256),
        "bad_signature",
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_falls_back_to_keys_without_kid() {
    let b = bench(|g| {
        g.key(&format!("{}\nkid = \"a\"", public_key("rsa.pub.pem")))
            .key(&public_key("rsa2.pub.pem"))
    })
    .await;
    let with_kid =
        |kid: &str, signer: Signer| token().header("kid", json!(kid)).signed_with(signer).sign();
    b.pass(
        "unknown kid, HS256 (default key has no kid)",
        &with_kid("zzz", Signer::Hs256),
    )
    .await;
    b.pass(
        "unknown kid, rsa2 (no kid)",
        &with_kid("zzz", Signer::OtherRs256),
    )
    .await;
    b.reject(
        "unknown kid, rsa (only under kid a)",
        &with_kid("zzz", Signer::Rs256),
        "bad_signature",
    )
    .await;
    b.reject(
        "no kid, rsa (only under kid a)",
        &token().signed_with(Signer::Rs256).sign(),
        "bad_signature",
    )
    .await;
    b.pass("kid a, rsa", &with_kid("a", Signer::Rs256)).await;
}

#[tokio::test]
async fn token_with_unknown_kid_and_no_key_without_kid_is_unknown_key() {
    let b = bench(|g| {
        g.without_default_key()
            .key(&format!("{}\nkid = \"a\"", public_key("rsa.pub.pem")))
            .key(&format!("{}\nkid = \"b\"", public_key("rsa2.pub.pem")))
    })
    .await;
    let unknown = token()
        .header("kid", json!("zzz"))
        .signed_with(Signer::Rs256)
        .sign();
    b.reject("kid zzz", &unknown, "unknown_key").await;
    let no_kid = token().signed_with(Signer::Rs256).sign();
    b.reject("no kid at all", &no_kid, "unknown_key").await;
}

#[tokio::test]
async fn key_pinned_to_rs256_refuses_ps256() {
    let b = bench(|g| {
        g.without_default_key().key(&format!(
            "{}\nalgorithm = \"RS256\"",
            public_key("rsa.pub.pem")
        ))
    })
    .await;
    b.pass("RS256", &token().signed_with(Signer::Rs256).sign())
        .await;
    b.reject(
        "PS256 with the same RSA key",
        &token().signed_with(Signer::Ps256).sign(),
        "unknown_key",
    )
    .await;
}

// ============================================================================
// Section 5: jwks_file
// ============================================================================

#[tokio::test]
async fn verifies_tokens_with_rsa_and_ec_keys_from_a_jwks_file_by_kid() {
    let b = bench(|g| {
        let path = write_jwks(
            &g,
            vec![jwk(Signer::Rs256, "rsa-1"), jwk(Signer::Es256, "ec-1")],
        );
        g.without_default_key().key(&jwks_key(&path, ""))
    })
    .await;
    let with_kid =
        |kid: &str, signer: Signer| token().header("kid", json!(kid)).signed_with(signer).sign();
    b.pass("RS256, kid rsa-1", &with_kid("rsa-1", Signer::Rs256))
        .await;
    b.pass("ES256, kid ec-1", &with_kid("ec-1", Signer::Es256))
        .await;
    b.reject(
        "kid rsa-1 signed with rsa2",
        &with_kid("rsa-1", Signer::OtherRs256),
        "bad_signature",
    )
    .await;
    b.reject(
        "no kid (every JWKS key has one)",
        &token().signed_with(Signer::Rs256).sign(),
        "unknown_key",
    )
    .await;
}

#[tokio::test]
async fn jwks_oct_key_is_used_only_with_allow_hmac() {
    const OCT_SECRET: &[u8] = b"jwks-oct-secret-0123456789abcdefghij";
    let oct = || {
        let key = EncodingKey::from_secret(OCT_SECRET).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::HS256).unwrap();
        jwk.common.key_id = Some("hmac-1".into());
        jwk
    };
    let hs256 = hs256_with_secret(&token().header("kid", json!("hmac-1")), OCT_SECRET);
    let rs256 = token()
        .header("kid", json!("rsa-1"))
        .signed_with(Signer::Rs256)
        .sign();
    for (allow_hmac, expect_pass) in [
        ("", false),
        ("allow_hmac = false", false),
        ("allow_hmac = true", true),
    ] {
        let b = bench(|g| {
            let path = write_jwks(&g, vec![jwk(Signer::Rs256, "rsa-1"), oct()]);
            g.without_default_key().key(&jwks_key(&path, allow_hmac))
        })
        .await;
        let case = format!("[{allow_hmac}] HS256 with the oct key");
        if expect_pass {
            b.pass(&case, &hs256).await;
        } else {
            b.reject(&case, &hs256, "unknown_key").await;
        }
        b.pass(&format!("[{allow_hmac}] control: RS256"), &rs256)
            .await;
    }
}

#[tokio::test]
async fn jwks_key_with_use_enc_is_ignored() {
    let b = bench(|g| {
        let mut enc = jwk(Signer::OtherRs256, "enc-1");
        enc.common.public_key_use = Some(PublicKeyUse::Encryption);
        let mut sig = jwk(Signer::OtherRs256, "sig-2");
        sig.common.public_key_use = Some(PublicKeyUse::Signature);
        let path = write_jwks(&g, vec![jwk(Signer::Rs256, "rsa-1"), enc, sig]);
        g.without_default_key().key(&jwks_key(&path, ""))
    })
    .await;
    let with_kid = |kid: &str| {
        token()
            .header("kid", json!(kid))
            .signed_with(Signer::OtherRs256)
            .sign()
    };
    b.reject("kid enc-1 (use enc)", &with_kid("enc-1"), "unknown_key")
        .await;
    b.pass(
        "control: same key as kid sig-2 (use sig)",
        &with_kid("sig-2"),
    )
    .await;
}

// ============================================================================
// Section 3: browser redirect
// ============================================================================

/// Asserts a 302 to `location`, the upstream untouched; returns the `Set-Cookie` values.
async fn expect_redirect(
    b: &Bench,
    case: &str,
    request: reqwest::RequestBuilder,
    location: &str,
) -> Vec<String> {
    let before = b.upstream.count();
    let rsp = request.send().await.unwrap();
    let status = rsp.status();
    let got_location = header(&rsp, "location");
    let cookies = rsp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(status, 302, "{case}: status");
    assert_eq!(got_location, location, "{case}: Location");
    assert_eq!(b.upstream.count(), before, "{case}: reached the upstream");
    cookies
}

fn navigation(b: &Bench, path: &str) -> reqwest::RequestBuilder {
    b.gw.get(path).header("accept", BROWSER_ACCEPT)
}

#[tokio::test]
async fn redirects_browser_navigation_to_login_url_with_encoded_return_to() {
    let b = bench(|g| g.set(&format!("auth.login_url = \"{LOGIN_URL}\""))).await;
    let expected = format!("{LOGIN_URL}?return_to=%2Fpath%3Fq%3D1");
    let expired = token().iat(now() - 7200.0).exp(now() - 3600.0).sign();
    let cases = [
        ("no token", navigation(&b, "/path?q=1")),
        (
            "garbage bearer",
            navigation(&b, "/path?q=1").bearer_auth("garbage"),
        ),
        (
            "expired bearer",
            navigation(&b, "/path?q=1").bearer_auth(&expired),
        ),
        (
            "Accept: text/html only",
            b.gw.get("/path?q=1").header("accept", "text/html"),
        ),
    ];
    for (case, request) in cases {
        let cookies = expect_redirect(&b, case, request, &expected).await;
        assert!(
            cookies.is_empty(),
            "{case}: no cookie to clear, got {cookies:?}"
        );
    }
    let cases = [
        ("/", format!("{LOGIN_URL}?return_to=%2F")),
        (
            "/path?a=1&b=2",
            format!("{LOGIN_URL}?return_to=%2Fpath%3Fa%3D1%26b%3D2"),
        ),
        (
            "/caf%C3%A9?x=a%20b",
            format!("{LOGIN_URL}?return_to=%2Fcaf%25C3%25A9%3Fx%3Da%2520b"),
        ),
    ];
    for (path, location) in cases {
        expect_redirect(&b, path, navigation(&b, path), &location).await;
    }
    b.pass_request(
        "control: valid token navigating",
        navigation(&b, "/path?q=1").bearer_auth(token().sign()),
    )
    .await;
}

#[tokio::test]
async fn appends_return_to_to_login_url_that_has_a_query() {
    let login = "https://login.example.com/signin?app=web";
    let b = bench(|g| g.set(&format!("auth.login_url = \"{login}\""))).await;
    let expected = format!("{login}&return_to=%2Fpath%3Fq%3D1");
    expect_redirect(&b, "no token", navigation(&b, "/path?q=1"), &expected).await;
}

#[tokio::test]
async fn answers_401_json_to_non_navigation_requests_despite_login_url() {
    let b = bench(|g| g.set(&format!("auth.login_url = \"{LOGIN_URL}\""))).await;
    let cases = [
        (
            "POST with Accept text/html",
            b.gw.post("/path?q=1").header("accept", BROWSER_ACCEPT),
        ),
        (
            "GET with Accept application/json",
            b.gw.get("/path?q=1").header("accept", "application/json"),
        ),
        (
            "GET with Accept */*",
            b.gw.get("/path?q=1").header("accept", "*/*"),
        ),
        ("GET without Accept", b.gw.get("/path?q=1")),
    ];
    for (case, request) in cases {
        b.reject_request(case, request, "missing_token").await;
    }
    let request =
        b.gw.get("/path?q=1")
            .header("accept", "application/json")
            .bearer_auth("garbage");
    b.reject_request("API client with a bad token", request, "malformed_token")
        .await;
}

#[tokio::test]
async fn redirect_clears_the_token_cookie() {
    let b = bench(|g| {
        g.set(&format!("auth.login_url = \"{LOGIN_URL}\""))
            .set("auth.cookie = \"sg\"")
    })
    .await;
    let expected = format!("{LOGIN_URL}?return_to=%2Fpath%3Fq%3D1");
    let expired = token().iat(now() - 7200.0).exp(now() - 3600.0).sign();
    for (case, value) in [
        ("garbage cookie", "garbage".to_string()),
        ("expired cookie", expired),
    ] {
        let request =
            navigation(&b, "/path?q=1").header("cookie", format!("theme=dark; sg={value}"));
        let cookies = expect_redirect(&b, case, request, &expected).await;
        assert_clears(case, &cookies, "sg", "/");
    }
    let request = navigation(&b, "/path?q=1").bearer_auth("garbage");
    let cookies = expect_redirect(&b, "bad bearer, no cookie", request, &expected).await;
    assert!(
        cookies.is_empty(),
        "bad bearer: nothing to clear, got {cookies:?}"
    );
    let cookies = expect_redirect(&b, "no token", navigation(&b, "/path?q=1"), &expected).await;
    assert!(
        cookies.is_empty(),
        "no token: nothing to clear, got {cookies:?}"
    );
}

#[tokio::test]
async fn redirect_clears_the_token_cookie_on_the_configured_cookie_path() {
    let b = bench(|g| {
        g.set(&format!("auth.login_url = \"{LOGIN_URL}\""))
            .set("auth.cookie = \"sg\"")
            .set("auth.cookie_path = \"/app\"")
    })
    .await;
    let request = navigation(&b, "/app/page").header("cookie", "sg=garbage");
    let expected = format!("{LOGIN_URL}?return_to=%2Fapp%2Fpage");
    let cookies = expect_redirect(&b, "garbage cookie", request, &expected).await;
    assert_clears("cookie_path /app", &cookies, "sg", "/app");
}

/// Asserts exactly one `Set-Cookie` that clears `name` on `path`.
fn assert_clears(case: &str, cookies: &[String], name: &str, path: &str) {
    assert_eq!(cookies.len(), 1, "{case}: one Set-Cookie, got {cookies:?}");
    let (pair, attributes) = cookie_parts(&cookies[0]);
    assert_eq!(pair, format!("{name}="), "{case}: {}", cookies[0]);
    assert!(
        attributes.contains(&"max-age=0".to_string()),
        "{case}: no Max-Age=0 in {}",
        cookies[0]
    );
    let paths: Vec<&String> = attributes
        .iter()
        .filter(|a| a.starts_with("path="))
        .collect();
    assert_eq!(
        paths,
        [&format!("path={}", path.to_ascii_lowercase())],
        "{case}: Path in {}",
        cookies[0]
    );
}

// ============================================================================
// Section 1 step 1: cookie tokens
// ============================================================================

#[tokio::test]
async fn accepts_a_valid_token_from_the_configured_cookie() {
    let b = bench(|g| g.set("auth.cookie = \"sg\"")).await;
    let jwt = token().sub("carol").sign();
    let request = b.gw.get(PATH).header("cookie", format!("sg={jwt}"));
    let seen = b.pass_request("token alone in the cookie", request).await;
    assert_eq!(seen.headers["x-auth-subject"], "carol");
    let request =
        b.gw.get(PATH)
            .header("cookie", format!("theme=dark; sg={jwt}; lang=en"));
    b.pass_request("token among other cookies", request).await;
    let request = b.gw.get(PATH).header("cookie", "sg=garbage");
    b.reject_request("garbage cookie (API client)", request, "malformed_token")
        .await;
    let request = b.gw.get(PATH).header("cookie", format!("other={jwt}"));
    b.reject_request("token under another cookie name", request, "missing_token")
        .await;
}

#[tokio::test]
async fn bearer_header_wins_over_the_cookie() {
    let b = bench(|g| g.set("auth.cookie = \"sg\"")).await;
    let bob = token().sub("bob").sign();
    let carol = token().sub("carol").sign();
    let request =
        b.gw.get(PATH)
            .bearer_auth(&bob)
            .header("cookie", format!("sg={carol}"));
    let seen = b.pass_request("both valid", request).await;
    assert_eq!(seen.headers["x-auth-subject"], "bob");
    let request =
        b.gw.get(PATH)
            .bearer_auth(&bob)
            .header("cookie", "sg=garbage");
    b.pass_request("valid bearer, garbage cookie", request)
        .await;
    let forged = hs256_with_secret(&token().sub("bob"), b"another-secret-0123456789abcdefgh");
    let request =
        b.gw.get(PATH)
            .bearer_auth(&forged)
            .header("cookie", format!("sg={carol}"));
    b.reject_request("bad bearer, valid cookie", request, "bad_signature")
        .await;
}
