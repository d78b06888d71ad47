//! Minting development tokens with a configured HMAC key (`sessiongate token`, the demo).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::auth::{self, KeyError};
use crate::config::{ClaimPath, Config};

/// The claims a development token carries.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub subject: String,
    pub workspace: String,
    pub roles: Vec<String>,
    pub ttl: Duration,
    /// Unix seconds; now when `None`.
    pub issued_at: Option<i64>,
}

/// Why no token could be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("jwt.keys: no hmac_secret_env or hmac_secret_file key to sign with")]
    NoHmacKey,
    #[error("jwt.algorithms: no HS256, HS384 or HS512 to sign with")]
    NoHmacAlgorithm,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Signs a token that the gateway configured by `config` accepts.
pub fn mint(config: &Config, request: &TokenRequest) -> Result<String, MintError> {
    let mut signer = None;
    for entry in &config.jwt.keys {
        if let Some(secret) = auth::hmac_secret(entry)? {
            signer = Some((entry, secret));
            break;
        }
    }
    let (entry, secret) = signer.ok_or(MintError::NoHmacKey)?;
    let alg = entry
        .algorithm
        .or_else(|| {
            config
                .jwt
                .algorithms
                .iter()
                .copied()
                .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        })
        .ok_or(MintError::NoHmacAlgorithm)?;
    let mut header = Header::new(alg);
    header.kid = entry.kid.clone();
    let iat = request
        .issued_at
        .unwrap_or_else(|| crate::clock::now() as i64);
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(request.subject));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(iat + request.ttl.as_secs() as i64));
    claims.insert(
        "jti".into(),
        json!(uuid::Uuid::now_v7().simple().to_string()),
    );
    if let Some(issuer) = &config.jwt.issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    if let Some(audience) = config.jwt.audience.first() {
        claims.insert("aud".into(), json!(audience));
    }
    insert_at(
        &mut claims,
        &config.jwt.workspace_claim,
        json!(request.workspace),
    );
    if !request.roles.is_empty() {
        insert_at(&mut claims, &config.jwt.roles_claim, json!(request.roles));
    }
    let key = EncodingKey::from_secret(secret.expose())?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Puts `value` at a dotted claim path, creating the nested objects on the way.
fn insert_at(claims: &mut Map<String, Value>, path: &ClaimPath, value: Value) {
    let (last, parents) = path
        .segments()
        .split_last()
        .expect("claim paths have at least one segment");
    let mut object = claims;
    for segment in parents {
        let entry = object.entry(segment.clone()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        object = entry.as_object_mut().expect("just made an object");
    }
    object.insert(last.clone(), value);
}
