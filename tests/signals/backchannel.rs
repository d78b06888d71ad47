//! OIDC Back-Channel Logout 1.0 (SPEC section 13): every validation rule refused with its
//! answer and nothing changed, and the effects of a valid logout token.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::idp::{
    self, BACKCHANNEL_EVENT, BACKCHANNEL_PATH, ISSUER, OTHER_ISSUER, PASSES, Signal, api,
    audit_lines, backchannel, earlier, later, post, revoked, signals, user,
};
use crate::support::{self, Signer, admin, upstream};

#[tokio::test]
async fn a_logout_token_with_sub_ends_every_session_of_that_user() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let alice = user("alice", "acme").sign();
    let alice_elsewhere = user("alice", "globex").claim("sid", json!("s9")).sign();
    let bob = user("bob", "acme").sign();
    assert_eq!(api(&gw, &alice).await, PASSES);

    let answer = backchannel(&gw, &Signal::logout("alice").sign()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    assert_eq!(api(&gw, &alice).await, revoked());
    assert_eq!(api(&gw, &alice_elsewhere).await, revoked(), "subject-wide");
    assert_eq!(api(&gw, &bob).await, PASSES, "another user is untouched");
    let fresh = user("alice", "acme").iat(later()).sign();
    assert_eq!(
        api(&gw, &fresh).await,
        PASSES,
        "a token issued after it passes"
    );

    let audit = audit_lines(&gw, "backchannel_logout", 1).await;
    assert_eq!(audit[0]["actor_subject"], ISSUER);
    assert_eq!(audit[0]["subject"], "alice");
    assert!(
        audit[0].get("workspace").is_none_or(Value::is_null),
        "{}",
        audit[0]
    );
    // Subject-wide: in no workspace's trail.
    let trail = gw
        .admin_get("workspaces/acme/audit", &admin("root", "acme").sign())
        .await;
    assert_eq!(trail["events"], json!([]));
    assert_eq!(signals(&gw, "accepted", "backchannel_logout").await, 1.0);
}

#[tokio::test]
async fn a_logout_token_with_a_sid_ends_that_session_only() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let phone = user("alice", "acme").claim("sid", json!("s-phone")).sign();
    let laptop = user("alice", "acme").claim("sid", json!("s-laptop")).sign();
    let no_sid = user("alice", "acme").sign();
    let other_workspace = user("alice", "globex")
        .claim("sid", json!("s-phone"))
        .sign();

    let token = Signal::logout("alice")
        .claim("sid", json!("s-phone"))
        .sign();
    assert_eq!(backchannel(&gw, &token).await.status, 200);
    assert_eq!(api(&gw, &phone).await, revoked());
    assert_eq!(
        api(&gw, &other_workspace).await,
        revoked(),
        "an issuer without workspace revokes it everywhere"
    );
    assert_eq!(
        api(&gw, &laptop).await,
        PASSES,
        "the user's other sessions stay"
    );
    assert_eq!(api(&gw, &no_sid).await, PASSES);
    let again = user("alice", "acme")
        .iat(later())
        .claim("sid", json!("s-phone"))
        .sign();
    assert_eq!(
        api(&gw, &again).await,
        revoked(),
        "a revoked sid stays refused"
    );

    // Without sub.
    let token = Signal::logout("x")
        .without("sub")
        .claim("sid", json!("s-laptop"))
        .sign();
    assert_eq!(backchannel(&gw, &token).await.status, 200);
    assert_eq!(api(&gw, &laptop).await, revoked());
    assert_eq!(api(&gw, &no_sid).await, PASSES);
    let audit = audit_lines(&gw, "backchannel_logout", 2).await;
    assert_eq!(audit[0]["sid"], "s-phone", "{}", audit[0]);
}

/// Every rule of section 2.6 as SPEC lists it, each refused with 400 `invalid_request`
/// (413 for an oversized body); none of them changes anything.
#[tokio::test]
async fn every_rule_of_the_logout_token_is_enforced_and_a_refusal_changes_nothing() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let alice = user("alice", "acme").claim("sid", json!("s1")).sign();
    let valid = || Signal::logout("alice").claim("sid", json!("s1"));
    let public_pem = std::fs::read(support::fixture("rsa.pub.pem")).unwrap();
    let now = support::now();
    let tokens = [
        ("unsigned", valid().unsigned()),
        ("alg none", valid().header("alg", json!("none")).unsigned()),
        (
            "HS256 keyed with the public key",
            valid().hs256_with(&public_pem),
        ),
        ("wrong key", valid().signed_with(Signer::OtherRs256).sign()),
        ("RS384", valid().header("alg", json!("RS384")).sign()),
        ("tampered claims", {
            let token = valid().sign();
            let forged = valid().claim("sub", json!("mallory")).sign();
            let parts: Vec<&str> = token.split('.').collect();
            let forged: Vec<&str> = forged.split('.').collect();
            format!("{}.{}.{}", parts[0], forged[1], parts[2])
        }),
        (
            "wrong iss",
            valid().claim("iss", json!("https://evil.test")).sign(),
        ),
        ("missing iss", valid().without("iss").sign()),
        (
            "wrong aud",
            valid().claim("aud", json!(["someone-else"])).sign(),
        ),
        ("missing aud", valid().without("aud").sign()),
        ("nonce present", valid().claim("nonce", json!("n-1")).sign()),
        ("no events", valid().without("events").sign()),
        (
            "events without the logout event",
            valid().claim("events", json!({"urn:other": {}})).sign(),
        ),
        (
            "event not an object",
            valid()
                .claim("events", json!({BACKCHANNEL_EVENT: true}))
                .sign(),
        ),
        (
            "typ of a SET",
            valid().header("typ", json!("secevent+jwt")).sign(),
        ),
        ("typ at", valid().header("typ", json!("at+jwt")).sign()),
        ("crit header", valid().header("crit", json!(["exp"])).sign()),
        ("missing jti", valid().without("jti").sign()),
        ("missing iat", valid().without("iat").sign()),
        (
            "iat in the future",
            valid().claim("iat", json!(now + 300.0)).sign(),
        ),
        ("missing exp", valid().without("exp").sign()),
        ("expired", valid().claim("exp", json!(now - 60.0)).sign()),
        (
            "neither sub nor sid",
            valid().without("sub").without("sid").sign(),
        ),
        (
            "sub of the wrong type",
            valid().claim("sub", json!(42)).sign(),
        ),
        ("not a JWT", "not-a-jwt".to_string()),
    ];
    for (what, token) in &tokens {
        let answer = backchannel(&gw, token).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert_eq!(
            answer.body["error"], "invalid_request",
            "{what}: {answer:?}"
        );
        assert!(
            answer.body["error_description"].is_string(),
            "{what}: {answer:?}"
        );
        assert!(
            !answer.body.to_string().contains(token.as_str()),
            "{what}: the token is never echoed"
        );
    }
    let form = [
        (
            "wrong content type",
            "application/json",
            format!("logout_token={}", valid().sign()),
            400,
        ),
        (
            "no logout_token",
            "application/x-www-form-urlencoded",
            "token=x".into(),
            400,
        ),
        (
            "two logout_tokens",
            "application/x-www-form-urlencoded",
            format!("logout_token={0}&logout_token={0}", valid().sign()),
            400,
        ),
        (
            "oversized",
            "application/x-www-form-urlencoded",
            format!(
                "logout_token={}&pad={}",
                valid().sign(),
                "x".repeat(64 * 1024)
            ),
            413,
        ),
    ];
    for (what, content_type, body, status) in form {
        let answer = post(&gw, BACKCHANNEL_PATH, content_type, body, None).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
    }

    assert_eq!(api(&gw, &alice).await, PASSES, "nothing changed");
    assert_eq!(signals(&gw, "accepted", "backchannel_logout").await, 0.0);
    let refused = idp::refusals(&gw, "backchannel_logout").await;
    assert_eq!(
        refused,
        (tokens.len() + 4) as f64,
        "every refusal is counted"
    );
    assert!(
        !gw.logs().contains(&tokens[2].1),
        "a refused token is never logged"
    );
    assert!(
        gw.logs().contains("\"reason\":\"bad_signature\""),
        "{}",
        gw.logs()
    );
    // The valid token still works after all that.
    assert_eq!(backchannel(&gw, &valid().sign()).await.status, 200);
    assert_eq!(api(&gw, &alice).await, revoked());
}

#[tokio::test]
async fn a_replayed_logout_token_changes_nothing_and_is_acknowledged() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let token = Signal::logout("alice").sign();
    assert_eq!(backchannel(&gw, &token).await.status, 200);
    let fresh = user("alice", "acme").iat(later()).sign();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api(&gw, &fresh).await, PASSES);

    let replay = backchannel(&gw, &token).await;
    assert_eq!(replay.status, 200, "acknowledged again: {replay:?}");
    assert_eq!(api(&gw, &fresh).await, PASSES, "the replay moved no cutoff");
    audit_lines(&gw, "backchannel_logout", 1).await;
    assert_eq!(signals(&gw, "replayed", "backchannel_logout").await, 1.0);
    // The same jti from another issuer is another signal (replays are per issuer).
    let gw_two = crate::idp::trusting(
        support::gateway(&upstream),
        &[idp::issuer(""), idp::issuer_named(OTHER_ISSUER, "")],
    )
    .start()
    .await;
    let first = Signal::logout("carol");
    let jti = first.sign();
    assert_eq!(backchannel(&gw_two, &jti).await.status, 200);
    let same_jti = first.claim("iss", json!(OTHER_ISSUER)).sign();
    assert_eq!(backchannel(&gw_two, &same_jti).await.status, 200);
    assert_eq!(
        signals(&gw_two, "accepted", "backchannel_logout").await,
        2.0
    );
}

#[tokio::test]
async fn an_issuer_with_a_workspace_affects_that_workspace_only() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, ", workspace = \"acme\"").await;
    let alice_acme = user("alice", "acme").sign();
    let alice_globex = user("alice", "globex").sign();
    let s1_acme = user("bob", "acme").claim("sid", json!("s1")).sign();
    let s1_globex = user("bob", "globex").claim("sid", json!("s1")).sign();

    assert_eq!(
        backchannel(&gw, &Signal::logout("alice").sign())
            .await
            .status,
        200
    );
    let sid = Signal::logout("bob").claim("sid", json!("s1")).sign();
    assert_eq!(backchannel(&gw, &sid).await.status, 200);
    assert_eq!(api(&gw, &alice_acme).await, revoked());
    assert_eq!(api(&gw, &alice_globex).await, PASSES);
    assert_eq!(api(&gw, &s1_acme).await, revoked());
    assert_eq!(api(&gw, &s1_globex).await, PASSES);

    let trail = gw
        .admin_get("workspaces/acme/audit", &admin("root", "acme").sign())
        .await;
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{trail}");
    assert!(
        events
            .iter()
            .all(|e| e["action"] == "backchannel_logout" && e["actor_subject"] == ISSUER)
    );
    assert_eq!(events[0]["sid"], "s1");
    assert_eq!(events[1]["subject"], "alice");
    let globex = gw
        .admin_get("workspaces/globex/audit", &admin("root", "globex").sign())
        .await;
    assert_eq!(globex["events"], json!([]));
}

/// A thief with a stolen token signs everyone else out (`logout-others` preserves the
/// caller); the identity provider's logout that follows preserves nothing.
#[tokio::test]
async fn a_thiefs_logout_others_does_not_survive_deprovisioning() {
    let upstream = upstream().await;
    let issuers = [
        idp::issuer(", workspace = \"acme\""),
        idp::issuer_named(OTHER_ISSUER, ""),
    ];
    let gw = idp::trusting(support::gateway(&upstream), &issuers)
        .start()
        .await;
    for (signal, victim) in [
        (Signal::logout("alice"), "alice"),
        (
            Signal::logout("dave").claim("iss", json!(OTHER_ISSUER)),
            "dave",
        ),
    ] {
        let thief = user(victim, "acme").iat(earlier()).sign();
        let owner = user(victim, "acme").iat(earlier()).sign();
        let rsp = gw
            .post("/_sessiongate/v1/me/logout-others")
            .bearer_auth(&thief)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(api(&gw, &owner).await, revoked());
        assert_eq!(api(&gw, &thief).await, PASSES, "the thief kept the session");

        assert_eq!(backchannel(&gw, &signal.sign()).await.status, 200);
        assert_eq!(
            api(&gw, &thief).await,
            revoked(),
            "{victim}: deprovisioning preserves nothing"
        );
    }
}

#[tokio::test]
async fn a_revoked_users_open_stream_closes_within_a_second() {
    const ENDLESS: usize = 1 << 40;
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    for (what, token, signal) in [
        (
            "sid",
            user("alice", "acme").claim("sid", json!("s1")),
            Signal::logout("x").without("sub").claim("sid", json!("s1")),
        ),
        ("sub", user("bob", "acme"), Signal::logout("bob")),
    ] {
        let mut download = gw
            .get(&format!("/download/{ENDLESS}"))
            .bearer_auth(token.sign())
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), 200);
        assert!(download.chunk().await.unwrap().is_some());
        assert_eq!(backchannel(&gw, &signal.sign()).await.status, 200);
        let answered = Instant::now();
        let cut = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = download.chunk().await {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            answered.elapsed()
        })
        .await
        .expect("the download of a revoked session still runs 5 s later");
        println!("{what}: download cut {cut:?} after the signal's 200");
        assert!(cut < Duration::from_secs(1), "{what}: {cut:?}");
    }
}

#[tokio::test]
async fn signal_paths_need_no_token_and_answer_404_and_405_like_the_admin_api() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let get = gw.get(BACKCHANNEL_PATH).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let unknown = gw
        .post("/_sessiongate/v1/signals/other")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(upstream.count(), 0, "never forwarded");
}
