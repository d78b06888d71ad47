//! Property tests for everything that parses outside input: never a panic, and every
//! refusal one of the documented answers. A fixed case budget keeps them fast; library
//! functions are tested directly, the rest through the real binary.

#[allow(dead_code)]
#[path = "signals/idp.rs"]
mod idp;
mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use serde_json::json;
use sessiongate::auth::{Jws, TokenError, TokenSource, extract, find_cookie};
use sessiongate::config::{BadPath, check_path};
use support::{Gateway, GatewayBuilder, Upstream, admin, gateway, upstream};

const CASES: u32 = 256;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Texts built from the characters that matter to each parser, plus anything.
fn text_of(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop_oneof![
        prop::collection::vec(prop::sample::select(chars), 0..max)
            .prop_map(|chars| chars.into_iter().collect()),
        ".{0,64}",
    ]
}

/// Paths built from the pieces that could smuggle a separator past the rule.
fn path_like() -> impl Strategy<Value = String> {
    let pieces = vec![
        "/", ".", "..", "%", "%25", "%2", "%2e", "%2E", "%2f", "%5c", "2e", "2f", "5c", "a", "\\",
        "%41",
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..12)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// A compact token of three segments, each base64url of something, or raw text.
fn token_like() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        ".{0,40}".prop_map(|text: String| URL_SAFE_NO_PAD.encode(text)),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        r#"\{"alg":"(HS256|none|RS256)"(,"crit":\[\])?\}"#.prop_map(|j| URL_SAFE_NO_PAD.encode(j)),
        text_of("abcAB01-_=.+/ ", 16),
    ];
    (segment.clone(), segment.clone(), segment).prop_map(|(h, p, s)| format!("{h}.{p}.{s}"))
}

/// Decodes percent-escapes until none is left to decode.
fn fully_decoded(path: &str) -> Vec<u8> {
    let mut current = path.as_bytes().to_vec();
    loop {
        let next: Vec<u8> = percent_encoding::percent_decode(&current).collect();
        if next == current {
            return current;
        }
        current = next;
    }
}

// ============================================================================
// Library parsers
// ============================================================================

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_token_parser_never_panics_and_refuses_as_malformed(
        token in prop_oneof![token_like(), ".{0,200}"],
    ) {
        if let Err(error) = Jws::parse(&token, 8192) {
            prop_assert_eq!(error, TokenError::Malformed);
        }
    }

    #[test]
    fn an_algorithm_outside_the_allow_list_is_never_chosen(token in token_like()) {
        let allowed = [jsonwebtoken::Algorithm::HS256];
        if let Ok(jws) = Jws::parse(&token, 8192) {
            match jws.algorithm(&allowed) {
                Ok(alg) => prop_assert_eq!(alg, jsonwebtoken::Algorithm::HS256),
                Err(error) => prop_assert!(matches!(
                    error,
                    TokenError::Malformed | TokenError::UnsupportedAlgorithm
                )),
            }
        }
    }

    #[test]
    fn the_extractor_finds_only_what_the_headers_hold(
        authorization in text_of("Bearer bearer \t.abc=;", 24),
        cookies in text_of("sg=; abc.\t=", 40),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("authorization", &authorization), ("cookie", &cookies)] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(name, value);
            }
        }
        if let Some(presented) = extract(&headers, Some("sg")) {
            prop_assert!(!presented.token.is_empty());
            let source = match presented.source {
                TokenSource::Header => &authorization,
                TokenSource::Cookie => &cookies,
            };
            prop_assert!(source.contains(presented.token));
        }
        if let Some(value) = find_cookie(&headers, "sg") {
            prop_assert!(!value.is_empty() && !value.contains(';'));
            let pair = format!("sg={value}");
            prop_assert!(cookies.contains(&pair));
        }
    }

    #[test]
    fn no_accepted_path_has_a_dot_segment_or_separator_after_decoding(
        path in prop_oneof![path_like(), ".{0,30}".prop_map(|p| format!("/{p}"))],
    ) {
        match check_path(&path) {
            Ok(()) => {
                let decoded = fully_decoded(&path);
                prop_assert!(!decoded.contains(&b'\\'), "{}", path);
                let raw_segments = path.split('/').count();
                let decoded_segments = decoded.split(|b| *b == b'/').count();
                prop_assert_eq!(raw_segments, decoded_segments, "{}", path);
                for segment in decoded.split(|b| *b == b'/') {
                    prop_assert!(segment != b"." && segment != b"..", "{}", path);
                }
            }
            Err(error) => prop_assert!(matches!(
                error,
                BadPath::DotSegment | BadPath::Backslash | BadPath::EncodedSeparator
            )),
        }
    }
}

// ============================================================================
// Through the binary
// ============================================================================

/// Runs `cases` of `strategy` against one gateway (as `configure` sets it up), each
/// answer checked by `check`.
fn against_gateway<S: Strategy>(
    configure: impl FnOnce(&Upstream) -> GatewayBuilder,
    strategy: S,
    check: impl Fn(&Gateway, S::Value) -> futures_util::future::BoxFuture<'_, Result<(), String>>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (gw, _upstream) = runtime.block_on(async {
        let upstream = upstream().await;
        (configure(&upstream).start().await, upstream)
    });
    let mut runner = TestRunner::new(config());
    runner
        .run(&strategy, |value| {
            runtime
                .block_on(check(&gw, value))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
}

/// A documented answer: its status is one of `allowed`, its body names a documented error.
fn documented(status: u16, body: &Value, allowed: &[(u16, &str)]) -> Result<(), String> {
    let error = body["error"].as_str().unwrap_or("");
    match allowed
        .iter()
        .any(|(s, e)| *s == status && (e.is_empty() || *e == error))
    {
        true => Ok(()),
        false => Err(format!("undocumented answer {status} {body}")),
    }
}

fn logout_body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop::sample::select(vec!["reason", "category", "ticket", "subject", "x"]);
    let value = prop_oneof![
        Just(Value::Null),
        ".{0,30}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec!["security_incident", "other", "bogus"]).prop_map(Value::from),
        Just(Value::from("r".repeat(1100))),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::btree_map(field, value, 0..4)
            .prop_map(|map| serde_json::to_vec(&map).unwrap()),
    ]
}

#[test]
fn any_logout_body_is_committed_or_refused_as_a_bad_request() {
    let root = admin("root", "acme").sign();
    against_gateway(gateway, logout_body(), |gw, body| {
        let root = root.clone();
        Box::pin(async move {
            let rsp = gw
                .post("/_sessiongate/v1/workspaces/acme/logout-all")
                .bearer_auth(&root)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = rsp.status().as_u16();
            let answer: Value = rsp.json().await.map_err(|e| e.to_string())?;
            documented(status, &answer, &[(200, ""), (400, "bad_request")])
        })
    });
}

#[test]
fn any_request_path_is_proxied_refused_or_not_found_never_an_error() {
    let alice = support::token().sub("alice").workspace("acme").sign();
    let path = prop_oneof![
        path_like(),
        path_like().prop_map(|p| format!("/_sessiongate{p}"))
    ];
    against_gateway(gateway, path, |gw, path| {
        let alice = alice.clone();
        Box::pin(async move {
            let Ok(uri) = http::Uri::try_from(gw.url(&path)) else {
                return Ok(());
            };
            let rsp = support::client()
                .get(uri.to_string())
                .bearer_auth(&alice)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = rsp.status().as_u16();
            let answer: Value = rsp.json().await.unwrap_or(Value::Null);
            documented(
                status,
                &answer,
                &[
                    (200, ""),
                    // The console's pages redirect to where they live.
                    (302, ""),
                    (400, "bad_request"),
                    (403, "forbidden"),
                    (404, "not_found"),
                    (405, "method_not_allowed"),
                ],
            )
        })
    });
}

/// Signals signed with the trusted key, each claim right, wrong or missing; or anything.
fn signal_like() -> impl Strategy<Value = String> {
    let now = support::now().floor();
    let pick = |values: Vec<Value>| prop::option::of(prop::sample::select(values));
    let claims = (
        pick(vec![json!(idp::ISSUER), json!(idp::OTHER_ISSUER), json!(7)]),
        pick(vec![
            json!(idp::AUDIENCE),
            json!(["x", idp::AUDIENCE]),
            json!("x"),
        ]),
        pick(vec![
            json!({ idp::BACKCHANNEL_EVENT: {} }),
            json!({ format!("{}session-revoked", idp::CAEP): {"subject": {"format": "opaque", "id": "u"}} }),
            json!({ idp::VERIFICATION: {} }),
            json!({}),
            json!("events"),
        ]),
        pick(vec![json!("alice"), json!(""), json!(1)]),
        pick(vec![json!("s-1"), json!(null)]),
        pick(vec![
            json!(now),
            json!(now + 3600.0),
            json!(now - 1e6),
            json!("x"),
        ]),
        pick(vec![json!(now + 60.0), json!(now - 60.0)]),
        pick(vec![
            json!("logout+jwt"),
            json!("secevent+jwt"),
            json!("JWT"),
            json!(1),
        ]),
        prop::bool::ANY,
    );
    let signed = claims.prop_map(|(iss, aud, events, sub, sid, iat, exp, typ, nonce)| {
        let mut token = support::token()
            .without("workspace_id")
            .without("sub")
            .without("exp")
            .without("iat")
            .claim("jti", json!(idp::jti()))
            .signed_with(support::Signer::Rs256);
        let claims = [
            ("iss", iss),
            ("aud", aud),
            ("events", events),
            ("sub", sub),
            ("sid", sid),
            ("iat", iat),
            ("exp", exp),
        ];
        for (name, value) in claims {
            if let Some(value) = value {
                token = token.claim(name, value);
            }
        }
        if let Some(typ) = typ {
            token = token.header("typ", typ);
        }
        if nonce {
            token = token.claim("nonce", json!("n"));
        }
        token.sign()
    });
    prop_oneof![3 => signed, 1 => token_like(), 1 => ".{0,80}"]
}

fn trusting_the_issuer(upstream: &Upstream) -> GatewayBuilder {
    idp::trusting(gateway(upstream), &[idp::issuer("")])
}

#[test]
fn any_logout_token_is_taken_or_refused_as_invalid_request() {
    against_gateway(trusting_the_issuer, signal_like(), |gw, token| {
        Box::pin(async move {
            let answer = idp::backchannel(gw, &token).await;
            documented(
                answer.status,
                &answer.body,
                &[(200, ""), (400, "invalid_request")],
            )
        })
    });
}

#[test]
fn any_security_event_token_is_taken_or_refused_with_a_documented_err() {
    against_gateway(trusting_the_issuer, signal_like(), |gw, set| {
        Box::pin(async move {
            let answer = idp::push(gw, &set, None).await;
            let err = answer.body["err"].as_str().unwrap_or("");
            let documented_err = [
                "invalid_request",
                "invalid_key",
                "invalid_issuer",
                "invalid_audience",
                "access_denied",
            ];
            match (answer.status, documented_err.contains(&err)) {
                (202, _) | (400, true) => Ok(()),
                _ => Err(format!("undocumented answer {answer:?}")),
            }
        })
    });
}
