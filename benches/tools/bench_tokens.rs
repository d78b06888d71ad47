//! Mints one long-lived token per algorithm for the load benchmark (benches/load.sh):
//! HS256 with the secret in the file named by the first argument, RS256 and ES256 with the
//! test fixture keys, plus an HS256 `ADMIN` token (to set the benchmark workspace's
//! cutoff). Every token carries the `iss` and `aud` the benchmark's configs require.
//! Prints `ALG TOKEN` lines. Tokens for benchmarks only.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() {
    let secret_file = std::env::args()
        .nth(1)
        .expect("usage: bench_tokens SECRET_FILE");
    let secret = std::fs::read(secret_file).expect("the secret file is readable");
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture keys exist")
    };
    let now = sessiongate::clock::now() as i64;
    let claims = json!({"sub": "bench", "workspace_id": "acme", "iat": now, "exp": now + 86_400, "jti": "bench",
        "iss": "https://idp.bench.test", "aud": "sessiongate-bench"});
    let keys = [
        (Algorithm::HS256, EncodingKey::from_secret(&secret)),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa.key")),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec256.key")),
        ),
    ];
    for (alg, key) in keys {
        let token =
            jsonwebtoken::encode(&Header::new(alg), &claims, &key.expect("fixture keys load"))
                .expect("signing");
        println!("{alg:?} {token}");
    }
    let mut admin = claims;
    admin["sub"] = json!("bench-admin");
    admin["jti"] = json!("bench-admin");
    admin["roles"] = json!(["admin"]);
    let key = EncodingKey::from_secret(&secret).expect("an HMAC key");
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &admin, &key).expect("signing");
    println!("ADMIN {token}");
}
