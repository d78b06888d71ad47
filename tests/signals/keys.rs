//! Issuer keys from a real JWKS server (loaded and refreshed like `jwt.keys`, never
//! holding back readiness), and the `[signals]` settings as `check` and `serve` see them.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::idp::{
    self, AUDIENCE, ISSUER, JwksServer, PASSES, Signal, api, backchannel, jwk, revoked, until, user,
};
use crate::support::{self, Signer, upstream};

fn jwks_issuer(server: &JwksServer, extra: &str) -> String {
    format!(
        "{{ issuer = \"{ISSUER}\", audience = \"{AUDIENCE}\", jwks_url = \"{}\"{extra} }}",
        server.url()
    )
}

#[tokio::test]
async fn an_issuers_jwks_never_holds_back_readiness_and_its_signals_get_503_until_it_loads() {
    let server = JwksServer::start(500, json!({})).await;
    let upstream = upstream().await;
    let gw = idp::trusting(support::gateway(&upstream), &[jwks_issuer(&server, "")])
        .start()
        .await;
    let ready = gw.ops_get("/readyz").await;
    assert_eq!(
        ready.status(),
        200,
        "the product's keys and the store are loaded"
    );
    let alice = user("alice", "acme").sign();
    assert_eq!(api(&gw, &alice).await, PASSES);
    let token = Signal::logout("alice").header("kid", json!("k1")).sign();
    let answer = backchannel(&gw, &token).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (503, Some("not_ready")),
        "{answer:?}"
    );

    server.serve(&[jwk(Signer::Rs256, "k1")]);
    until(
        "the issuer's keys loaded",
        Duration::from_secs(20),
        || async { backchannel(&gw, &token).await.status == 200 },
    )
    .await;
    assert_eq!(api(&gw, &alice).await, revoked());
}

#[tokio::test]
async fn a_rotated_issuer_key_is_fetched_when_a_signal_names_its_new_kid() {
    let server = JwksServer::start(200, json!({"keys": [jwk(Signer::Rs256, "k1")]})).await;
    let upstream = upstream().await;
    let gw = idp::trusting(support::gateway(&upstream), &[jwks_issuer(&server, "")])
        .start()
        .await;
    let first = Signal::logout("alice").header("kid", json!("k1")).sign();
    until(
        "the issuer's keys loaded",
        Duration::from_secs(10),
        || async { backchannel(&gw, &first).await.status == 200 },
    )
    .await;
    let fetched = server.hits();

    server.serve(&[jwk(Signer::Rs256, "k1"), jwk(Signer::OtherRs256, "k2")]);
    let rotated = Signal::logout("bob")
        .signed_with(Signer::OtherRs256)
        .header("kid", json!("k2"))
        .sign();
    let answer = backchannel(&gw, &rotated).await;
    assert_eq!(
        answer.status, 200,
        "the new key is believed at once: {answer:?}"
    );
    assert_eq!(
        server.hits(),
        fetched + 1,
        "one refetch for the unknown kid"
    );
    assert_eq!(api(&gw, &user("bob", "acme").sign()).await, revoked());

    let forged = Signal::logout("carol")
        .signed_with(Signer::Es256)
        .header("kid", json!("k3"))
        .sign();
    assert_eq!(backchannel(&gw, &forged).await.status, 400);
    assert_eq!(server.hits(), fetched + 1, "at most one refetch per 30 s");
}

// ============================================================================
// check and serve
// ============================================================================

fn sessiongate(config: &str, env: &[(&str, &str)], command: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessiongate.toml");
    let secret = dir.path().join("hmac.secret");
    std::fs::write(&secret, support::SECRET).unwrap();
    let text = format!(
        "upstream.url = \"http://127.0.0.1:1\"\nserver.listen = \"127.0.0.1:0\"\nops.listen = \"\"\n\
         store.backend = \"memory\"\njwt.algorithms = [\"HS256\"]\n{config}\n\
         [[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
        secret.display()
    );
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiongate"));
    child
        .args([command, "--config"])
        .arg(&path)
        .env_remove("RUST_LOG");
    for (key, value) in env {
        child.env(key, value);
    }
    child.output().unwrap()
}

fn key_file() -> String {
    support::fixture("rsa.pub.pem").display().to_string()
}

#[test]
fn check_prints_the_issuers_and_never_a_secret() {
    let config = format!(
        "signals.issuers = [{{ issuer = \"{ISSUER}\", audience = [\"{AUDIENCE}\", \"b\"], \
         public_key_file = \"{}\", workspace = \"acme\", allow_workspace_logout = true, \
         push_authorization_env = \"SSF_PUSH\" }}]\n\
         signals.scim.paths = [\"/scim/v2/Users/{{id}}\"]\nsignals.scim.subject_attribute = \"userName\"\n\
         sessions.revoked_sid_ttl_secs = 3600",
        key_file()
    );
    let out = sessiongate(&config, &[("SSF_PUSH", "Bearer hunter2-push")], "check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let issuer = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("signals.issuers[0]"))
        .unwrap_or_else(|| panic!("no issuer line:\n{stdout}"));
    for shown in [
        ISSUER,
        AUDIENCE,
        "rsa.pub.pem",
        "workspace acme",
        "allowed",
        "SSF_PUSH",
    ] {
        assert!(issuer.contains(shown), "{shown} not in {issuer}");
    }
    assert!(stdout.contains("/scim/v2/Users/{id}"), "{stdout}");
    assert!(stdout.contains("userName"), "{stdout}");
    assert!(stdout.contains("3600"), "{stdout}");
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("hunter2"), "the push secret is never printed");
}

#[test]
fn invalid_signal_settings_name_their_key() {
    let key = key_file();
    let entry = |fields: &str| format!("signals.issuers = [{{ {fields} }}]");
    let good =
        format!("issuer = \"{ISSUER}\", audience = \"{AUDIENCE}\", public_key_file = \"{key}\"");
    let cases = [
        (
            entry(&format!("audience = \"a\", public_key_file = \"{key}\"")),
            "signals.issuers[0].issuer",
        ),
        (
            entry(&format!("issuer = \"i\", public_key_file = \"{key}\"")),
            "signals.issuers[0].audience",
        ),
        (
            entry(&format!(
                "issuer = \"i\", audience = [], public_key_file = \"{key}\""
            )),
            "signals.issuers[0].audience",
        ),
        (
            entry("issuer = \"i\", audience = \"a\""),
            "signals.issuers[0]",
        ),
        (
            entry(&format!("{good}, jwks_file = \"{key}\"")),
            "signals.issuers[0]",
        ),
        (
            entry(&format!("{good}, algorithm = \"HS256\"")),
            "signals.issuers[0].algorithm",
        ),
        (
            entry(&format!("{good}, workspace = \"\"")),
            "signals.issuers[0].workspace",
        ),
        (
            format!("signals.issuers = [{{ {good} }}, {{ {good} }}]"),
            "signals.issuers[1].issuer",
        ),
        (
            entry(&format!(
                "{good}, push_authorization_env = \"UNSET_PUSH_VAR\""
            )),
            "signals.issuers[0].push_authorization_env",
        ),
        (
            entry("issuer = \"i\", audience = \"a\", public_key_file = \"/nonexistent.pem\""),
            "signals.issuers[0]",
        ),
        (
            "signals.scim.paths = [\"/scim/v2/Users\"]".into(),
            "signals.scim.paths",
        ),
        (
            "signals.scim.paths = [\"/_sessiongate/Users/{id}\"]".into(),
            "signals.scim.paths",
        ),
        (
            "signals.scim.subject_attribute = \"email\"".into(),
            "signals.scim.subject_attribute",
        ),
        (
            "sessions.revoked_sid_ttl_secs = 0".into(),
            "sessions.revoked_sid_ttl_secs",
        ),
    ];
    for (config, key) in &cases {
        let out = sessiongate(config, &[], "check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{config}: {out:?}");
        assert!(
            stderr.starts_with(&format!("sessiongate: {key}")),
            "{config}: {stderr}"
        );
    }
    let hmac = entry("issuer = \"i\", audience = \"a\", hmac_secret_env = \"X\"");
    let out = sessiongate(&hmac, &[], "check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("hmac_secret_env"),
        "{stderr}"
    );
    let out = sessiongate(
        &entry(&format!(
            "{good}, push_authorization_env = \"UNSET_PUSH_VAR\""
        )),
        &[],
        "serve",
    );
    assert_eq!(
        out.status.code(),
        Some(64),
        "serve refuses to start: {out:?}"
    );
    let logged = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logged.contains("signals.issuers[0].push_authorization_env"),
        "{logged}"
    );
}
