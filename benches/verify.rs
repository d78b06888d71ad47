//! The hot path without the network: extract the token from headers, verify it, check the
//! session cutoffs. Per algorithm, with the verified-token cache warm and with it off.
//!
//! `cargo bench --bench verify`; compare the cached rows with the HS256 row of the same run.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sessiongate::auth::{self, AuthMetrics, KeyRing, Verifier};
use sessiongate::config::Config;
use sessiongate::sessions::Sessions;
use sessiongate::store::{Cutoff, Record, Scope};

const SECRET: &str = "sessiongate-bench-secret-0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn verifier(dir: &tempfile::TempDir, cache_entries: u64) -> Verifier {
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let text = format!(
        r#"
        upstream.url = "http://127.0.0.1:1"
        jwt.algorithms = ["HS256", "RS256", "ES256"]
        jwt.verify_cache_entries = {cache_entries}
        [[jwt.keys]]
        hmac_secret_file = "{}"
        [[jwt.keys]]
        public_key_file = "{}"
        [[jwt.keys]]
        public_key_file = "{}"
        "#,
        secret.display(),
        fixture("rsa.pub.pem").display(),
        fixture("ec256.pub.pem").display(),
    );
    let config = Config::from_toml(&text, &[]).unwrap();
    let ring = Arc::new(KeyRing::load(&config.jwt.keys).unwrap());
    let metrics = AuthMetrics::register(&mut sessiongate::ops::registry());
    Verifier::new(&config, ring, metrics)
}

fn token(alg: Algorithm) -> String {
    let now = sessiongate::clock::now() as i64;
    let claims = json!({"sub": "alice", "workspace_id": "acme", "iat": now, "exp": now + 3600, "jti": "bench-1"});
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa.key")).unwrap()).unwrap()
        }
        _ => EncodingKey::from_ec_pem(&std::fs::read(fixture("ec256.key")).unwrap()).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
}

/// A workspace with a cutoff in the past, so the session check does real work.
fn sessions() -> Sessions {
    let sessions = Sessions::new(&mut sessiongate::ops::registry());
    sessions.apply(Record::Cutoff {
        scope: Scope::Workspace("acme".into()),
        cutoff: Cutoff {
            valid_after: 1_000_000_000,
            preserved: None,
            version: 1,
        },
    });
    sessions
}

fn hot_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sessions = sessions();
    for (cache, label) in [(100_000, "cached"), (0, "uncached")] {
        let verifier = verifier(&dir, cache);
        for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token(alg)).parse().unwrap(),
            );
            c.bench_function(&format!("{alg:?}/{label}"), |b| {
                b.iter(|| {
                    let presented = auth::extract(black_box(&headers), None).unwrap();
                    let now = sessiongate::clock::now();
                    let claims = verifier.verify(presented.token, now).unwrap();
                    sessions.check(&claims.session(), now).unwrap();
                    claims
                })
            });
        }
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
