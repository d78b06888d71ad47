//! Shared Signals push (RFC 8935) of CAEP and RISC events (SPEC section 13): every rule
//! refused with its RFC 8935 error, every revoking event and subject format, tenants.

use serde_json::{Value, json};

use crate::idp::{
    self, CAEP, ISSUER, OTHER_ISSUER, PASSES, RISC, SSF_PATH, Signal, VERIFICATION, api,
    audit_lines, invalidated, later, post, push, revoked, signals, user,
};
use crate::support::{self, Signer, admin, upstream};

fn opaque(id: &str) -> Value {
    json!({"format": "opaque", "id": id})
}

#[tokio::test]
async fn every_revoking_event_ends_its_subjects_sessions_and_spares_the_others() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let credential = format!("{CAEP}credential-change");
    let events = [
        (
            format!("{CAEP}session-revoked"),
            json!({"subject": opaque("u1")}),
            "u1",
        ),
        (
            credential.clone(),
            json!({"subject": {"format": "iss_sub", "iss": ISSUER, "sub": "u2"},
                   "credential_type": "password", "change_type": "revoke"}),
            "u2",
        ),
        (
            credential.clone(),
            json!({"subject": {"format": "email", "email": "U3@Example.COM"},
                   "credential_type": "fido2-roaming", "change_type": "delete"}),
            "u3@example.com",
        ),
        (
            format!("{RISC}account-disabled"),
            json!({"subject": opaque("u4"), "reason": "hijacking"}),
            "u4",
        ),
        (
            format!("{RISC}account-purged"),
            json!({"subject": opaque("u5")}),
            "u5",
        ),
        (
            format!("{RISC}account-credential-change-required"),
            json!({"subject": opaque("u6")}),
            "u6",
        ),
    ];
    let bystander = user("bob", "acme").sign();
    for (uri, event, sub) in &events {
        let victim = user(sub, "acme").sign();
        assert_eq!(api(&gw, &victim).await, PASSES, "{uri}");
        let answer = push(&gw, &Signal::set(uri, event.clone()).sign(), None).await;
        assert_eq!(answer.status, 202, "{uri}: {answer:?}");
        assert_eq!(api(&gw, &victim).await, revoked(), "{uri} for {sub}");
        assert_eq!(api(&gw, &bystander).await, PASSES, "{uri}: another user");
    }
    // An address matches whatever its case in the token.
    let shouting = user("U3@EXAMPLE.com", "acme").sign();
    assert_eq!(api(&gw, &shouting).await, revoked());
    let fresh = user("u1", "acme").iat(later()).sign();
    assert_eq!(
        api(&gw, &fresh).await,
        PASSES,
        "a token issued after the signal passes"
    );

    let audit = audit_lines(&gw, "ssf_event", events.len()).await;
    assert_eq!(audit[0]["event"], events[0].0.as_str());
    assert_eq!(audit[0]["actor_subject"], ISSUER);
    assert_eq!(signals(&gw, "accepted", "ssf").await, events.len() as f64);
}

#[tokio::test]
async fn sub_id_names_the_subject_and_a_complex_session_revokes_that_session_alone() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let alice = user("alice", "acme").sign();
    let set =
        Signal::set(&format!("{RISC}account-disabled"), json!({})).claim("sub_id", opaque("alice"));
    assert_eq!(push(&gw, &set.sign(), None).await.status, 202);
    assert_eq!(api(&gw, &alice).await, revoked());

    let phone = user("bob", "acme").claim("sid", json!("s-phone")).sign();
    let laptop = user("bob", "acme").claim("sid", json!("s-laptop")).sign();
    let subject = json!({
        "format": "complex",
        "user": {"format": "iss_sub", "iss": ISSUER, "sub": "bob"},
        "session": opaque("s-phone"),
    });
    let set = Signal::event(&format!("{CAEP}session-revoked"), subject);
    assert_eq!(push(&gw, &set.sign(), None).await.status, 202);
    assert_eq!(api(&gw, &phone).await, revoked());
    assert_eq!(api(&gw, &laptop).await, PASSES, "bob's other session stays");
}

#[tokio::test]
async fn verification_and_other_events_are_acknowledged_and_change_nothing() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let alice = user("alice", "acme").sign();
    for set in [
        Signal::set(VERIFICATION, json!({"state": "c2F0ZQ"})),
        Signal::event(&format!("{CAEP}credential-change"), opaque("alice"))
            .claim("events", json!({format!("{CAEP}credential-change"): {
                "subject": opaque("alice"), "change_type": "update", "credential_type": "password"}})),
        Signal::event(&format!("{CAEP}token-claims-change"), opaque("alice")),
        Signal::event("https://example.com/custom-event", opaque("alice")),
    ] {
        let answer = push(&gw, &set.sign(), None).await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    assert_eq!(api(&gw, &alice).await, PASSES);
    audit_lines(&gw, "ssf_event", 4).await;
}

/// Every rule of SPEC section 13 for a push, each with its RFC 8935 answer; nothing changes.
#[tokio::test]
async fn every_rule_of_the_push_is_enforced_and_a_refusal_changes_nothing() {
    let upstream = upstream().await;
    let gw = idp::trusting(
        support::gateway(&upstream).env("SSF_PUSH", "Bearer push-s3cret"),
        &[idp::issuer(", push_authorization_env = \"SSF_PUSH\"")],
    )
    .set("sessions.revoked_sid_ttl_secs = 600")
    .start()
    .await;
    let auth = Some("Bearer push-s3cret");
    let alice = user("alice", "acme").sign();
    let uri = format!("{RISC}account-disabled");
    let valid = || Signal::event(&uri, opaque("alice"));
    let public_pem = std::fs::read(support::fixture("rsa.pub.pem")).unwrap();
    let now = support::now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("unsigned", valid().unsigned(), "invalid_key"),
        (
            "alg none",
            valid().header("alg", json!("none")).unsigned(),
            "invalid_key",
        ),
        (
            "HS256 keyed with the public key",
            valid().hs256_with(&public_pem),
            "invalid_key",
        ),
        (
            "wrong key",
            valid().signed_with(Signer::OtherRs256).sign(),
            "invalid_key",
        ),
        (
            "wrong typ",
            valid().header("typ", json!("JWT")).sign(),
            "invalid_request",
        ),
        (
            "no typ",
            valid().without_header("typ").sign(),
            "invalid_request",
        ),
        (
            "wrong iss",
            valid().claim("iss", json!("https://evil.test")).sign(),
            "invalid_issuer",
        ),
        (
            "missing iss",
            valid().without("iss").sign(),
            "invalid_request",
        ),
        (
            "wrong aud",
            valid().claim("aud", json!("other")).sign(),
            "invalid_audience",
        ),
        (
            "missing aud",
            valid().without("aud").sign(),
            "invalid_audience",
        ),
        (
            "missing jti",
            valid().without("jti").sign(),
            "invalid_request",
        ),
        (
            "missing iat",
            valid().without("iat").sign(),
            "invalid_request",
        ),
        (
            "iat in the future",
            valid().claim("iat", json!(now + 300.0)).sign(),
            "invalid_request",
        ),
        (
            "older than the sid TTL",
            valid().claim("iat", json!(now - 700.0)).sign(),
            "invalid_request",
        ),
        (
            "sub claim",
            valid().claim("sub", json!("alice")).sign(),
            "invalid_request",
        ),
        (
            "exp claim",
            valid().claim("exp", json!(now + 60.0)).sign(),
            "invalid_request",
        ),
        (
            "no events",
            valid().without("events").sign(),
            "invalid_request",
        ),
        (
            "no event",
            valid().claim("events", json!({})).sign(),
            "invalid_request",
        ),
        (
            "two events in one SET",
            valid()
                .claim(
                    "events",
                    json!({uri.clone(): {"subject": opaque("alice")}, VERIFICATION: {}}),
                )
                .sign(),
            "invalid_request",
        ),
        (
            "no subject",
            valid().claim("events", json!({uri.clone(): {}})).sign(),
            "invalid_request",
        ),
        (
            "unsupported subject format",
            Signal::event(
                &uri,
                json!({"format": "phone_number", "phone_number": "+15551234"}),
            )
            .sign(),
            "invalid_request",
        ),
        (
            "subject of another issuer",
            Signal::event(
                &uri,
                json!({"format": "iss_sub", "iss": OTHER_ISSUER, "sub": "alice"}),
            )
            .sign(),
            "access_denied",
        ),
    ];
    for (what, set, err) in &cases {
        let answer = push(&gw, set, auth).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert_eq!(answer.body["err"], *err, "{what}: {answer:?}");
        assert!(answer.body["description"].is_string(), "{what}: {answer:?}");
    }
    let set = valid().sign();
    for (what, authorization) in [
        ("missing", None),
        ("wrong", Some("Bearer guess")),
        ("near", Some("Bearer push-s3cre")),
    ] {
        let answer = push(&gw, &set, authorization).await;
        assert_eq!(answer.status, 401, "{what} Authorization: {answer:?}");
        assert_eq!(answer.body["err"], "authentication_failed");
    }
    let answer = post(&gw, SSF_PATH, "application/jwt", set.clone(), auth).await;
    assert_eq!(
        (answer.status, answer.body["err"].as_str()),
        (400, Some("invalid_request")),
        "wrong content type"
    );
    let oversized = format!("{set}{}", " ".repeat(64 * 1024));
    assert_eq!(push(&gw, &oversized, auth).await.status, 413);

    assert_eq!(api(&gw, &alice).await, PASSES, "nothing changed");
    assert_eq!(signals(&gw, "accepted", "ssf").await, 0.0);
    assert_eq!(idp::refusals(&gw, "ssf").await, (cases.len() + 5) as f64);
    assert!(
        !gw.logs().contains("push-s3cret"),
        "the push secret is never logged"
    );
    let answer = push(&gw, &set, auth).await;
    assert_eq!(
        answer.status, 202,
        "the valid SET with its authorization: {answer:?}"
    );
    assert_eq!(api(&gw, &alice).await, revoked());
}

#[tokio::test]
async fn a_replayed_set_changes_nothing_and_is_acknowledged() {
    let upstream = upstream().await;
    let gw = idp::gateway(&upstream, "").await;
    let set = Signal::event(&format!("{CAEP}session-revoked"), opaque("alice")).sign();
    assert_eq!(push(&gw, &set, None).await.status, 202);
    let fresh = user("alice", "acme").iat(later()).sign();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(push(&gw, &set, None).await.status, 202);
    assert_eq!(api(&gw, &fresh).await, PASSES);
    audit_lines(&gw, "ssf_event", 1).await;
    assert_eq!(signals(&gw, "replayed", "ssf").await, 1.0);
}

#[tokio::test]
async fn a_tenant_wide_set_needs_allow_workspace_logout_and_stays_in_the_issuers_workspace() {
    let upstream = upstream().await;
    let scoped = "https://scoped-idp.test";
    let issuers = [
        idp::issuer(""),
        idp::issuer_named(OTHER_ISSUER, ", allow_workspace_logout = true"),
        idp::issuer_named(
            scoped,
            ", workspace = \"globex\", allow_workspace_logout = true",
        ),
    ];
    let gw = idp::trusting(support::gateway(&upstream), &issuers)
        .start()
        .await;
    let tenant = |iss: &str, workspace: &str| {
        Signal::event(
            &format!("{RISC}account-disabled"),
            json!({"format": "complex", "tenant": opaque(workspace)}),
        )
        .claim("iss", json!(iss))
        .sign()
    };
    let acme = user("alice", "acme").sign();
    let globex = user("alice", "globex").sign();

    let refused = push(&gw, &tenant(ISSUER, "acme"), None).await;
    assert_eq!(
        (refused.status, refused.body["err"].as_str()),
        (400, Some("access_denied")),
        "{refused:?}"
    );
    let other = push(&gw, &tenant(scoped, "acme"), None).await;
    assert_eq!(
        (other.status, other.body["err"].as_str()),
        (400, Some("access_denied")),
        "another tenant: {other:?}"
    );
    assert_eq!(api(&gw, &acme).await, PASSES);

    assert_eq!(
        push(&gw, &tenant(OTHER_ISSUER, "acme"), None).await.status,
        202
    );
    assert_eq!(api(&gw, &acme).await, invalidated());
    assert_eq!(api(&gw, &globex).await, PASSES, "only that workspace");
    let sessions = gw
        .admin_get(
            "workspaces/acme/sessions",
            &admin("root", "acme").iat(later()).sign(),
        )
        .await;
    assert_eq!(
        sessions["preserved_session"],
        Value::Null,
        "no session is preserved: {sessions}"
    );
    let trail = gw
        .admin_get(
            "workspaces/acme/audit",
            &admin("root", "acme").iat(later()).sign(),
        )
        .await;
    assert_eq!(trail["events"][0]["action"], "ssf_event");
    assert_eq!(trail["events"][0]["actor_subject"], OTHER_ISSUER);

    // The scoped issuer's users live in its workspace only, tenant or not.
    let user_set = Signal::event(&format!("{RISC}account-disabled"), opaque("alice"))
        .claim("iss", json!(scoped))
        .sign();
    assert_eq!(push(&gw, &user_set, None).await.status, 202);
    assert_eq!(api(&gw, &globex).await, revoked());
    let acme_later = user("alice", "acme").iat(later()).sign();
    assert_eq!(api(&gw, &acme_later).await, PASSES);
}
