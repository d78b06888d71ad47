//! The `sessiongate` command line (SPEC section 7): `check`, `serve`, `token`, `demo`, env
//! overrides, and the reference config/sessiongate.toml (SPEC section 8).

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sessiongate::config::PublicPaths;
use sessiongate::config::raw::{RawConfig, RawJwt, RawKey, RawUpstream};
use sessiongate::config::{KeySource, LogFormat, StoreConfig, TimeClaim};

const BIN: &str = env!("CARGO_BIN_EXE_sessiongate");
/// The reference file, relative to the package root (the working directory of tests).
const REFERENCE: &str = "config/sessiongate.toml";
/// The value of `SESSIONGATE_HMAC_SECRET` in every command: must never be printed.
const SECRET_VALUE: &str = "RECOGNISABLE-secret-value-9d41c7e2";
/// How long any command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A valid config for `check`, with the key the reference file uses.
const MINIMAL: &str = r#"
upstream.url = "http://127.0.0.1:3000"
jwt.algorithms = ["HS256"]
[[jwt.keys]]
hmac_secret_env = "SESSIONGATE_HMAC_SECRET"
"#;

// ============================================================================
// config/sessiongate.toml
// ============================================================================

#[test]
fn reference_config_passes_check_and_prints_a_summary() {
    let out = sessiongate(&["check", "--config", REFERENCE]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("configuration config/sessiongate.toml is valid"),
        "{out:?}"
    );
    assert_eq!(summary(&out, "server.listen"), "127.0.0.1:8080", "{out:?}");
    assert_eq!(summary(&out, "ops.listen"), "127.0.0.1:9901", "{out:?}");
    assert_eq!(
        summary(&out, "upstream.url"),
        "http://127.0.0.1:3000/",
        "{out:?}"
    );
    assert_eq!(summary(&out, "jwt.algorithms"), "[HS256]", "{out:?}");
    assert_eq!(
        summary(&out, "jwt.keys[0]"),
        "HMAC secret from env SESSIONGATE_HMAC_SECRET (value not shown)",
        "{out:?}"
    );
    assert!(out.stdout.contains("(1 keys loaded now)"), "{out:?}");
    assert_eq!(
        summary(&out, "admin.path_prefix"),
        "/_sessiongate",
        "{out:?}"
    );
    out.assert_no_secret();
}

#[test]
fn reference_config_loads_with_every_spec_default() {
    let config = sessiongate::Config::load(Path::new(REFERENCE)).expect("the reference loads");
    let server = &config.server;
    assert_eq!(server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(server.max_header_bytes, 16384);
    assert_eq!(server.max_connections, 10000);
    assert_eq!(server.shutdown_grace, Duration::from_secs(30));
    assert!(server.trusted_proxies.is_empty());
    assert_eq!(config.ops_listen, Some("127.0.0.1:9901".parse().unwrap()));
    let upstream = &config.upstream;
    assert_eq!(upstream.origin.to_string(), "http://127.0.0.1:3000/");
    assert_eq!(upstream.base_path, "");
    assert_eq!(upstream.connect_timeout, Duration::from_millis(2000));
    assert_eq!(upstream.response_timeout, Duration::from_secs(60));
    assert!(upstream.forward_token);
    let auth = &config.auth;
    assert_eq!(auth.cookie, None);
    assert_eq!(auth.cookie_path, "/");
    assert_eq!(
        format!("{:?}", auth.public_paths),
        format!("{:?}", PublicPaths::default())
    );
    assert_eq!(auth.login_url, None);
    assert!(auth.allowed_origins.is_empty());
    assert_eq!(config.admin_prefix, "/_sessiongate");
    let jwt = &config.jwt;
    assert_eq!(jwt.algorithms, [jsonwebtoken::Algorithm::HS256]);
    assert_eq!(jwt.issuer, None);
    assert!(jwt.audience.is_empty());
    assert_eq!(jwt.leeway_secs, 30.0);
    assert_eq!(jwt.max_token_bytes, 8192);
    assert_eq!(jwt.workspace_claim.segments(), ["workspace_id"]);
    assert_eq!(jwt.roles_claim.segments(), ["roles"]);
    assert_eq!(jwt.admin_roles, ["admin"]);
    assert_eq!(jwt.keys.len(), 1);
    let key = &jwt.keys[0];
    assert!(
        matches!(&key.source, KeySource::HmacEnv(var) if var == "SESSIONGATE_HMAC_SECRET"),
        "{key:?}"
    );
    assert_eq!((key.kid.as_deref(), key.algorithm), (None, None));
    assert_eq!(config.sessions.time_claim, TimeClaim::Iat);
    assert_eq!(config.sessions.user_claim.segments(), ["sub"]);
    assert_eq!(config.sessions.iat_backdate_secs, 0.0);
    assert_eq!(config.sessions.invalidation_margin_secs, 0);
    assert_eq!(config.sessions.revoked_sid_ttl_secs, 86400);
    assert!(config.signals.issuers.is_empty());
    assert!(config.signals.scim.paths.is_empty());
    assert_eq!(
        config.signals.scim.subject_attribute,
        sessiongate::config::ScimAttribute::Id
    );
    assert!(
        matches!(&config.store, StoreConfig::Embedded { path } if path == Path::new("data/sessiongate.redb")),
        "{:?}",
        config.store
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "info");
}

/// The file's active values are exactly the built-in defaults (raw.rs), except the three
/// keys that have none; the redis keys included, which the validated `Config` drops.
#[test]
fn reference_config_values_equal_the_built_in_defaults() {
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::new(REFERENCE, config::FileFormat::Toml))
        .build()
        .and_then(config::Config::try_deserialize)
        .expect("the reference file matches the raw config shape");
    let expected = RawConfig {
        upstream: RawUpstream {
            url: Some("http://127.0.0.1:3000".into()),
            ..RawUpstream::default()
        },
        jwt: RawJwt {
            algorithms: Some(vec!["HS256".into()]),
            keys: vec![RawKey {
                hmac_secret_env: Some("SESSIONGATE_HMAC_SECRET".into()),
                ..RawKey::default()
            }],
            ..RawJwt::default()
        },
        ..RawConfig::default()
    };
    assert_eq!(format!("{raw:#?}"), format!("{expected:#?}"));
    assert_eq!(raw.store.redis_url, "redis://127.0.0.1:6379/0");
    assert_eq!(raw.store.redis_key_prefix, "sessiongate:");
    assert_eq!(raw.store.resync_secs, 30);
    assert_eq!(raw.store.max_staleness_secs, 0);
}

/// Every key of SPEC section 8 (and `allow_hmac`) appears, set or commented out.
#[test]
fn reference_config_documents_every_key() {
    let text = std::fs::read_to_string(REFERENCE).unwrap();
    let documented = documented_keys(&text);
    let expected = [
        "server.listen",
        "server.header_read_timeout_secs",
        "server.max_header_bytes",
        "server.max_connections",
        "server.shutdown_grace_secs",
        "server.trusted_proxies",
        "server.tls.cert",
        "server.tls.key",
        "ops.listen",
        "upstream.url",
        "upstream.ca_file",
        "upstream.connect_timeout_ms",
        "upstream.response_timeout_secs",
        "upstream.forward_token",
        "auth.cookie",
        "auth.cookie_path",
        "auth.public_paths",
        "auth.login_url",
        "auth.allowed_origins",
        "admin.path_prefix",
        "admin.console",
        "jwt.algorithms",
        "jwt.issuer",
        "jwt.audience",
        "jwt.leeway_secs",
        "jwt.max_token_bytes",
        "jwt.workspace_claim",
        "jwt.roles_claim",
        "jwt.admin_roles",
        "jwt.keys.kid",
        "jwt.keys.algorithm",
        "jwt.keys.hmac_secret_env",
        "jwt.keys.hmac_secret_file",
        "jwt.keys.public_key_file",
        "jwt.keys.jwks_file",
        "jwt.keys.allow_hmac",
        "jwt.keys.jwks_url",
        "jwt.keys.refresh_secs",
        "jwt.keys.ca_file",
        "sessions.time_claim",
        "sessions.user_claim",
        "sessions.iat_backdate_secs",
        "sessions.invalidation_margin_secs",
        "sessions.revoked_sid_ttl_secs",
        "signals.issuers.issuer",
        "signals.issuers.audience",
        "signals.issuers.jwks_url",
        "signals.issuers.refresh_secs",
        "signals.issuers.ca_file",
        "signals.issuers.jwks_file",
        "signals.issuers.public_key_file",
        "signals.issuers.kid",
        "signals.issuers.algorithm",
        "signals.issuers.workspace",
        "signals.issuers.allow_workspace_logout",
        "signals.issuers.push_authorization_env",
        "signals.scim.paths",
        "signals.scim.subject_attribute",
        "signals.scim.workspace",
        "store.backend",
        "store.path",
        "store.redis_url",
        "store.redis_key_prefix",
        "store.redis_ca_file",
        "store.resync_secs",
        "store.max_staleness_secs",
        "log.format",
        "log.level",
        "events.webhooks.url",
        "events.webhooks.secret_env",
        "events.webhooks.actions",
        "events.webhooks.timeout_ms",
        "events.webhooks.retry_for_secs",
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| !documented.contains(**key))
        .collect();
    assert!(missing.is_empty(), "not in {REFERENCE}: {missing:?}");
}

// ============================================================================
// check: errors name the key, never a secret
// ============================================================================

#[test]
fn check_names_an_unknown_key() {
    let out = check(&format!(
        "{MINIMAL}[server]\nlisten_adress = \"127.0.0.1:8080\"\n"
    ));
    out.assert_config_error(1, "server.listen_adress");
}

#[test]
fn check_names_the_key_with_an_invalid_value() {
    let out = check(&format!("{MINIMAL}[server]\nlisten = \"nowhere\"\n"));
    out.assert_config_error(1, "server.listen");
    assert!(out.stderr.contains("nowhere"), "{out:?}");
}

#[test]
fn check_refuses_algorithm_none() {
    let text = MINIMAL.replace(r#"["HS256"]"#, r#"["HS256", "none"]"#);
    let out = check(&text);
    out.assert_config_error(1, "jwt.algorithms");
    assert!(out.stderr.contains("none"), "{out:?}");
}

#[test]
fn check_names_a_missing_required_key() {
    let text = MINIMAL.replace("upstream.url = \"http://127.0.0.1:3000\"\n", "");
    let out = check(&text);
    out.assert_config_error(1, "upstream.url");
}

#[test]
fn check_names_the_key_entry_and_path_of_a_missing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.secret");
    let text = MINIMAL.replace(
        "hmac_secret_env = \"SESSIONGATE_HMAC_SECRET\"",
        &format!("hmac_secret_file = \"{}\"", missing.display()),
    );
    let out = check(&text);
    out.assert_config_error(1, "jwt.keys[0]");
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "{out:?}"
    );
}

#[test]
fn check_refuses_a_private_key_as_public_key_file_without_printing_it() {
    let private = support::fixture("rsa.key");
    let text = MINIMAL.replace(r#"["HS256"]"#, r#"["RS256"]"#).replace(
        "hmac_secret_env = \"SESSIONGATE_HMAC_SECRET\"",
        &format!("public_key_file = \"{}\"", private.display()),
    );
    let out = check(&text);
    out.assert_config_error(1, "jwt.keys[0]");
    assert!(out.stderr.contains("private key"), "{out:?}");
    let pem = std::fs::read_to_string(&private).unwrap();
    let material = pem.lines().nth(1).expect("the PEM has a body");
    assert!(
        !out.all().contains(material),
        "key material printed: {out:?}"
    );
}

#[test]
fn check_names_the_key_of_a_bad_env_override() {
    let out = sessiongate(&["check", "--config", REFERENCE])
        .env("SESSIONGATE__SERVER__MAX_CONNECTIONS", "many")
        .run();
    out.assert_config_error(1, "server.max_connections");
}

#[test]
fn check_names_an_unknown_env_key() {
    let out = sessiongate(&["check", "--config", REFERENCE])
        .env("SESSIONGATE__SERVER__NOPE", "1")
        .run();
    out.assert_config_error(1, "server.nope");
}

#[test]
fn check_does_not_print_the_secret_when_a_later_key_fails() {
    // The HMAC key loads (its secret is in memory) before the second entry fails.
    let text = MINIMAL.replace(r#"["HS256"]"#, r#"["HS256", "RS256"]"#)
        + &format!(
            "[[jwt.keys]]\npublic_key_file = \"{}\"\n",
            support::fixture("rsa.key").display()
        );
    let out = check(&text);
    out.assert_config_error(1, "jwt.keys[1]");
}

// ============================================================================
// env overrides through the real process
// ============================================================================

#[test]
fn env_overrides_show_in_the_check_summary() {
    let out = sessiongate(&["check", "--config", REFERENCE])
        .env("SESSIONGATE__SERVER__LISTEN", "127.0.0.1:9999")
        .env("SESSIONGATE__OPS__LISTEN", "")
        .env("SESSIONGATE__JWT__ALGORITHMS", "HS256,HS384")
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(summary(&out, "server.listen"), "127.0.0.1:9999", "{out:?}");
    assert_eq!(summary(&out, "ops.listen"), "disabled", "{out:?}");
    assert_eq!(summary(&out, "jwt.algorithms"), "[HS256, HS384]", "{out:?}");
}

#[tokio::test]
async fn serve_applies_env_overrides() {
    let upstream = support::upstream().await;
    // Expired 5 s ago: inside the default 30 s leeway, outside a leeway of 0.
    let now = support::now().floor();
    let jwt = support::token().iat(now - 60.0).exp(now - 5.0).sign();
    let control = support::gateway(&upstream).start().await;
    assert_eq!(control.status_with("/x", &jwt).await, 200);

    let builder = support::gateway(&upstream);
    let config = builder.write_config();
    let mut serve = sessiongate(&["serve", "--config"]);
    serve.arg(&config).env("SESSIONGATE__JWT__LEEWAY_SECS", "0");
    let (_child, addr) = spawn_until_ready(serve);
    let rsp = support::client()
        .get(format!("http://{addr}/x"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 401);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_token", "reason": "expired"}));
}

// ============================================================================
// Settings that do not apply: warnings, never refusals
// ============================================================================

/// Valid settings made moot by the rest of the config (an `http://` upstream with a CA
/// file, a JWKS entry with a `kid`, a file key with `refresh_secs`).
fn moot_settings(base: &str) -> String {
    let ca = support::dev_cert("ca.pem");
    let text = base.replacen(
        "upstream.url = \"http://127.0.0.1:3000\"\n",
        &format!(
            "upstream.url = \"http://127.0.0.1:3000\"\nupstream.ca_file = \"{}\"\n",
            ca.display()
        ),
        1,
    );
    format!("{text}refresh_secs = 60\n")
}

#[test]
fn check_warns_about_a_setting_that_does_not_apply_and_passes() {
    let out = check(&moot_settings(MINIMAL));
    assert_eq!(out.code, Some(0), "{out:?}");
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{out:?}");
    assert!(
        warnings[0].starts_with("warning: upstream.ca_file: "),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("warning: jwt.keys[0].refresh_secs: "),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn serve_starts_with_a_setting_that_does_not_apply_and_logs_the_warning() {
    let upstream = support::upstream().await;
    let ca = support::dev_cert("ca.pem");
    let gw = support::gateway(&upstream)
        .set(&format!("upstream.ca_file = \"{}\"", ca.display()))
        .start()
        .await;
    assert_eq!(gw.status_with("/x", &support::token().sign()).await, 200);
    let warning = gw
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["key"] == "upstream.ca_file")
        .unwrap_or_else(|| panic!("no warning for upstream.ca_file:\n{}", gw.logs()));
    assert_eq!(warning["level"], "WARN");
}

#[test]
fn an_invalid_value_of_a_setting_that_does_not_apply_still_refuses_to_start() {
    // `refresh_secs` does not apply to an HMAC key, but a negative one is still invalid.
    let text = format!("{MINIMAL}refresh_secs = -1\n");
    check(&text).assert_config_error(1, "jwt.keys[0].refresh_secs");
}

// ============================================================================
// serve
// ============================================================================

#[test]
fn serve_exits_64_and_names_the_key_on_a_bad_config() {
    let (_dir, path) = write_config(&format!("{MINIMAL}[server]\nlisten = \"nowhere\"\n"));
    let out = sessiongate(&["serve", "--config"]).arg(&path).run();
    out.assert_config_error(64, "server.listen");
}

#[test]
fn serve_exits_64_and_names_the_key_entry_when_a_key_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.secret");
    let text = format!(
        "upstream.url = \"http://127.0.0.1:3000\"\nserver.listen = \"127.0.0.1:0\"\n\
         ops.listen = \"\"\nstore.path = \"{}\"\njwt.algorithms = [\"HS256\"]\n\
         [[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
        dir.path().join("store.redb").display(),
        missing.display()
    );
    let (_config_dir, path) = write_config(&text);
    let out = sessiongate(&["serve", "--config"]).arg(&path).run();
    out.assert_config_error(64, "jwt.keys[0]");
}

#[tokio::test]
async fn serve_exits_0_on_sigterm() {
    let upstream = support::upstream().await;
    let mut gw = support::gateway(&upstream).start().await;
    assert_eq!(gw.status_with("/x", &support::token().sign()).await, 200);
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", gw.logs());
}

/// The signal lands while the gateway loads its store, before it serves: a handler
/// installed only once it serves left SIGTERM its default action, death by signal 15.
#[tokio::test]
async fn serve_exits_0_on_a_sigterm_that_arrives_while_it_loads_its_store() {
    let upstream = support::upstream().await;
    let builder = support::gateway(&upstream);
    let record = r#"{"valid_after":1795000000,"preserved":null,"version":1}"#;
    let store = builder.dir().join("store.redb");
    support::bulk::write_store(&store, LOADING_CUTOFFS, |_| {
        (record.as_bytes().to_vec(), record.as_bytes().to_vec())
    });
    let mut gw = builder.start_unready().await;
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", gw.logs());
}

/// Enough cutoffs that loading them outlasts sending the signal: a debug build loads
/// 20,000 in ~140 ms, and the signal lands a few ms after `listening`.
const LOADING_CUTOFFS: usize = 20_000;

// ============================================================================
// token
// ============================================================================

#[tokio::test]
async fn token_command_mints_a_token_the_gateway_accepts() {
    let upstream = support::upstream().await;
    let builder = support::gateway(&upstream);
    let config = builder.write_config();
    let before = support::now().floor() as i64;
    let jwt = mint(
        &config,
        &[
            "--sub",
            "bob",
            "--workspace",
            "acme",
            "--roles",
            "admin",
            "--ttl",
            "10m",
        ],
    );
    let after = support::now().ceil() as i64;
    let gw = builder.start().await;

    let claims = payload(&jwt);
    let iat = claims["iat"].as_i64().expect("iat is an integer");
    assert!((before..=after).contains(&iat), "iat {iat} is not now");
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 600);
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["workspace_id"], "acme");

    assert_eq!(gw.status_with("/hello", &jwt).await, 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/hello");
    assert_eq!(seen.headers["x-auth-subject"], "bob");
    assert_eq!(seen.headers["x-auth-workspace"], "acme");
}

#[tokio::test]
async fn token_command_admin_role_may_log_the_workspace_out() {
    let upstream = support::upstream().await;
    let builder = support::gateway(&upstream);
    let config = builder.write_config();
    let admin = mint(
        &config,
        &["--sub", "bob", "--workspace", "acme", "--roles", "admin"],
    );
    let user = mint(&config, &["--sub", "carol", "--workspace", "acme"]);
    assert_eq!(payload(&user).get("roles"), None);
    let gw = builder.start().await;
    assert_eq!(gw.logout_all("acme", &user).await.status(), 403);
    assert_eq!(gw.logout_all("acme", &admin).await.status(), 200);
}

#[tokio::test]
async fn token_command_iat_sets_issued_at_and_the_gateway_refuses_it_as_expired() {
    let upstream = support::upstream().await;
    let builder = support::gateway(&upstream);
    let config = builder.write_config();
    let jwt = mint(
        &config,
        &["--sub", "bob", "--workspace", "acme", "--iat", "1000"],
    );
    let gw = builder.start().await;

    let claims = payload(&jwt);
    assert_eq!(claims["iat"], json!(1000));
    // Default lifetime: one hour.
    assert_eq!(claims["exp"], json!(1000 + 3600));
    let rsp = gw.get("/hello").bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(rsp.status(), 401);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_token", "reason": "expired"}));
    assert_eq!(upstream.count(), 0);
}

// ============================================================================
// demo
// ============================================================================

#[tokio::test]
async fn demo_walkthrough_works_as_printed() {
    let mut command = sessiongate(&["demo"]);
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Killed(command.spawn().expect("sessiongate demo starts"));
    let demo = read_walkthrough(&mut child.0);
    let client = support::client();
    let get = |token: &str| {
        client
            .get(format!("{}/hello", demo.base))
            .bearer_auth(token)
            .send()
    };

    // 1. alice passes; the upstream sees who she is.
    let rsp = get(&demo.user).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["x-auth-subject"], "alice");
    assert_eq!(body["x-auth-workspace"], "acme");

    // 2. ada logs everyone else out.
    let rsp = client
        .post(format!(
            "{}/_sessiongate/v1/workspaces/acme/logout-all",
            demo.base
        ))
        .bearer_auth(&demo.admin)
        .body(r#"{"reason": "demo", "category": "security_incident"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["workspace"], "acme");

    // 3. alice's old token is refused.
    let rsp = get(&demo.user).await.unwrap();
    assert_eq!(rsp.status(), 401);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "invalid_token", "reason": "session_invalidated"})
    );

    // 4. ada's own token still works.
    let rsp = get(&demo.admin).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(body["x-auth-subject"], "ada");

    // 5. the audit trail has the one logout-all.
    let rsp = client
        .get(format!(
            "{}/_sessiongate/v1/workspaces/acme/audit",
            demo.base
        ))
        .bearer_auth(&demo.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.unwrap();
    let events = body["events"].as_array().expect("events is an array");
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["action"], "logout_all");
    assert_eq!(events[0]["actor_subject"], "ada");
    assert_eq!(events[0]["reason"], "demo");
    assert_eq!(events[0]["category"], "security_incident");
}

#[tokio::test]
async fn demo_browser_story_signs_in_with_a_cookie_and_sends_alice_back_to_sign_in() {
    let mut command = sessiongate(&["demo"]);
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Killed(command.spawn().expect("sessiongate demo starts"));
    let demo = read_walkthrough(&mut child.0);
    let client = support::client();
    let browse = |path: &str, cookie: Option<&str>| {
        let request = client
            .get(format!("{}{path}", demo.base))
            .header("accept", "text/html");
        match cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
        .send()
    };
    // Signed out, the product sends the browser to the sign-in page, which is public.
    let rsp = browse("/next", None).await.unwrap();
    assert_eq!(rsp.status(), 302);
    let login = format!("{}/signin?return_to=%2Fnext", demo.base);
    assert_eq!(rsp.headers()["location"], login.as_str());
    let page = browse("/signin?return_to=%2Fnext", None).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign in as ada"));
    // Signing in sets the HttpOnly token cookie and goes back where the user was.
    let mut cookies = Vec::new();
    for user in ["alice", "ada"] {
        let rsp = browse(&format!("/signin/{user}?return_to=%2Fnext"), None)
            .await
            .unwrap();
        assert_eq!(rsp.status(), 302);
        assert_eq!(rsp.headers()["location"], "/next");
        let set = rsp.headers()["set-cookie"].to_str().unwrap();
        assert!(
            set.starts_with("sg_session=") && set.contains("HttpOnly"),
            "{set}"
        );
        cookies.push(set.split(';').next().unwrap().to_string());
    }
    let (alice, ada) = (&cookies[0], &cookies[1]);
    let hello = browse("/next", Some(alice)).await.unwrap();
    assert!(hello.text().await.unwrap().contains("Hello alice"));
    // ada logs everyone out from the console's origin; alice's next click signs her out.
    let rsp = client
        .post(format!(
            "{}/_sessiongate/v1/workspaces/acme/logout-all",
            demo.base
        ))
        .header("cookie", ada)
        .header("origin", &demo.base)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = browse("/next", Some(alice)).await.unwrap();
    assert_eq!(rsp.status(), 302);
    assert_eq!(rsp.headers()["location"], login.as_str());
    assert_eq!(browse("/next", Some(ada)).await.unwrap().status(), 200);
}

// ============================================================================
// helpers
// ============================================================================

/// What a finished command printed.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn assert_no_secret(&self) {
        assert!(
            !self.all().contains(SECRET_VALUE),
            "the HMAC secret was printed: {self:?}"
        );
    }

    /// Exit `code`, and stderr names `key` (followed by `:` or `.`, so a prefix of a longer
    /// key does not count).
    fn assert_config_error(&self, code: i32, key: &str) {
        assert_eq!(self.code, Some(code), "{self:?}");
        let named = [format!("{key}:"), format!("{key}.")]
            .iter()
            .any(|k| self.stderr.contains(k.as_str()));
        assert!(named, "stderr does not name {key}: {self:?}");
        self.assert_no_secret();
    }
}

trait RunExt {
    fn run(&mut self) -> Outcome;
}

impl RunExt for Command {
    /// Runs to completion (killed after [`COMMAND_TIMEOUT`]).
    fn run(&mut self) -> Outcome {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sessiongate binary starts");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let Ok(output) = rx.recv_timeout(COMMAND_TIMEOUT) else {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("sessiongate did not exit within {COMMAND_TIMEOUT:?}");
        };
        let output = output.unwrap();
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The binary with `args`, the HMAC secret the reference file names, and no inherited
/// `SESSIONGATE__*` overrides or `RUST_LOG`.
fn sessiongate(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env("SESSIONGATE_HMAC_SECRET", SECRET_VALUE)
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SESSIONGATE__") {
            command.env_remove(name);
        }
    }
    command
}

/// Writes `text` to a fresh temp dir; keep the dir alive while the file is used.
fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessiongate.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `sessiongate check` on a config given as text.
fn check(text: &str) -> Outcome {
    let (_dir, path) = write_config(text);
    sessiongate(&["check", "--config"]).arg(&path).run()
}

/// The value of a `check` summary line such as `  server.listen     127.0.0.1:8080`.
fn summary<'a>(out: &'a Outcome, label: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("  ")?.strip_prefix(label)?;
            rest.starts_with(' ').then(|| rest.trim())
        })
        .unwrap_or_else(|| panic!("no {label:?} line in the summary: {out:?}"))
}

/// `sessiongate token --config <config> <args>`; the token is the only stdout line.
fn mint(config: &Path, args: &[&str]) -> String {
    let out = sessiongate(&["token", "--config"])
        .arg(config)
        .args(args)
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = out.stdout.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {out:?}");
    token
}

/// The decoded claims of a compact JWT.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a payload segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url payload"))
        .expect("a JSON payload")
}

/// `section.key` for every `key = ...` line, commented out or not, under the table
/// header (commented out or not) it follows.
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

/// A child process stopped when the test ends, passing or not: SIGTERM so it can clean up
/// its temp files, SIGKILL if it is still running after a few seconds.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `serve` and waits for its JSON `ready` line; returns the child and main address.
fn spawn_until_ready(mut command: Command) -> (Killed, String) {
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Killed(command.spawn().expect("sessiongate serve starts"));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "ready"
            {
                let _ = tx.send(event["listen"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(COMMAND_TIMEOUT)
        .expect("serve printed its ready line");
    (child, addr)
}

/// What `sessiongate demo` printed: its base URL and the two tokens.
struct Walkthrough {
    base: String,
    user: String,
    admin: String,
}

/// Reads the demo's stdout until the base URL and both tokens are known.
fn read_walkthrough(child: &mut Child) -> Walkthrough {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut base, mut user, mut admin) = (None, None, None);
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("gateway on ") {
                base = rest.split([',', ' ']).next().map(str::to_string);
            }
            let quoted = |prefix: &str| {
                line.trim()
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix('\''))
                    .map(str::to_string)
            };
            user = user.or_else(|| quoted("USER='"));
            admin = admin.or_else(|| quoted("ADMIN='"));
            // Keeps draining after sending, so the demo never blocks on a full pipe.
            if let (false, Some(base), Some(user), Some(admin)) = (sent, &base, &user, &admin) {
                sent = true;
                let _ = tx.send(Walkthrough {
                    base: base.clone(),
                    user: user.clone(),
                    admin: admin.clone(),
                });
            }
        }
    });
    let demo = rx
        .recv_timeout(COMMAND_TIMEOUT)
        .expect("the demo printed its walkthrough");
    assert!(
        demo.base.starts_with("http://127.0.0.1:"),
        "base {:?}",
        demo.base
    );
    demo
}
