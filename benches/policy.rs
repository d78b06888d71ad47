//! Step 6 of the acceptance rule: what a workspace policy costs a request that passes it.
//! Policy off (one map lookup), an allow-list of 1 CIDR, and of 1000 CIDRs (a binary
//! search over merged ranges), with a required claim and a maximum age on top.
//!
//! `cargo bench --bench policy`; `steps 5+6` rows are `auth::recheck` on a verified token
//! (what every request, cached or not, pays after the signature, the clock read included);
//! `step 6` rows are the policy check alone.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sessiongate::auth::{self, AuthMetrics, Claims, KeyRing, Verifier};
use sessiongate::config::Config;
use sessiongate::sessions::Sessions;
use sessiongate::store::{ClaimRule, PolicyDocument, Record, StoredPolicy};

const SECRET: &str = "sessiongate-bench-secret-0123456789abcdef";

/// alice's verified claims in workspace `acme`, with `amr: ["pwd", "mfa"]`.
fn claims() -> Arc<Claims> {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let text = format!(
        "upstream.url = \"http://127.0.0.1:1\"\njwt.algorithms = [\"HS256\"]\n\
         [[jwt.keys]]\nhmac_secret_file = \"{}\"\n",
        secret.display()
    );
    let config = Config::from_toml(&text, &[]).unwrap();
    let ring = Arc::new(KeyRing::load(&config.jwt.keys).unwrap());
    let metrics = AuthMetrics::register(&mut sessiongate::ops::registry());
    let verifier = Verifier::new(&config, ring, metrics);
    let now = sessiongate::clock::now() as i64;
    let claims = json!({"sub": "alice", "workspace_id": "acme", "iat": now, "exp": now + 3600, "amr": ["pwd", "mfa"]});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    verifier.verify(&token, now as f64).unwrap()
}

/// Sessions whose workspace `acme` has `cidrs` as its allow-list (none: no policy).
fn sessions(cidrs: Option<Vec<String>>) -> Sessions {
    let sessions = Sessions::new(&mut sessiongate::ops::registry());
    let Some(cidrs) = cidrs else {
        return sessions;
    };
    let document = PolicyDocument {
        ip_allowlist: Some(cidrs),
        require_claims: vec![ClaimRule {
            claim: "amr".into(),
            any_of: vec!["mfa".into()],
        }],
        max_session_age_secs: Some(43_200),
    };
    let policy = StoredPolicy {
        document,
        version: 1,
        ..StoredPolicy::default()
    };
    sessions.apply(Record::Policy {
        workspace: "acme".into(),
        policy,
    });
    sessions
}

/// 1000 disjoint /24s spread over 10.0.0.0/8 and 2001:db8::/32, half of each family.
fn thousand_cidrs() -> Vec<String> {
    let v4 = (0..500).map(|i| format!("10.{}.{}.0/24", i / 100, (i % 100) * 2));
    let v6 = (0..500).map(|i| format!("2001:db8:{i:x}::/48"));
    v4.chain(v6).collect()
}

fn step_six(c: &mut Criterion) {
    let claims = claims();
    let client: IpAddr = "10.2.40.7".parse().unwrap();
    let cases = [
        ("policy off", None),
        ("1 CIDR", Some(vec!["10.0.0.0/8".to_string()])),
        ("1000 CIDRs", Some(thousand_cidrs())),
    ];
    for (label, cidrs) in cases {
        let sessions = sessions(cidrs);
        c.bench_function(&format!("steps 5+6/{label}"), |b| {
            b.iter(|| {
                let now = sessiongate::clock::now();
                auth::recheck(&sessions, black_box(&claims), black_box(client), now).unwrap()
            })
        });
        let now = sessiongate::clock::now();
        c.bench_function(&format!("step 6/{label}"), |b| {
            b.iter(|| {
                let request = black_box(&claims).policy_request(black_box(client));
                sessions.check_policy(&request, now).unwrap()
            })
        });
    }
}

criterion_group!(benches, step_six);
criterion_main!(benches);
