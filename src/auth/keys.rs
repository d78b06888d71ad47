//! Verification keys: loaded from `[[jwt.keys]]`, chosen per token by `kid` and algorithm.
//!
//! A `KeySet` is an immutable snapshot; the `KeyRing` replaces it whole (`ArcSwap`) when a
//! remote JWKS changes, so a request never waits for a reload.

use std::path::Path;

use der::Decode;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::config::{KeyConfig, KeySource};

mod jwks;
mod prepared;
mod ring;

pub use jwks::JwksError;
use prepared::Prepared;
pub use ring::KeyRing;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Every key the gateway may verify with, at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// Bumped on every change, so verified-token caches can tell stale entries.
    generation: u64,
    /// Whether every remote JWKS has contributed (the gateway is not ready before).
    complete: bool,
}

/// One usable key: its material, what it may verify, and how tokens name it.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    kid: Option<String>,
    /// When set, the only algorithm this key verifies.
    algorithm: Option<Algorithm>,
    kind: KeyKind,
    /// The key made ready for each algorithm it verifies.
    prepared: Vec<Prepared>,
}

/// The type of a key, fine enough to tell which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// A shared secret; `Debug` never shows it.
pub struct Secret(Vec<u8>);

/// A key entry that cannot be loaded; the message names the entry and the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}.hmac_secret_env: environment variable {var} is not set or not UTF-8")]
    MissingEnv { key: String, var: String },
    #[error("{key}: the HMAC secret is empty")]
    EmptySecret { key: String },
    #[error("{key}.public_key_file: {path}: {problem}")]
    Pem {
        key: String,
        path: String,
        problem: &'static str,
    },
    #[error("{key}.jwks_file: {path}: {problem}")]
    Jwks {
        key: String,
        path: String,
        problem: String,
    },
    #[error("{key}.ca_file: {source}")]
    Roots {
        key: String,
        source: crate::tls::RootsError,
    },
}

// === impl KeySet ===

impl KeySet {
    /// Loads the keys of every file and env entry; remote entries are left to the ring.
    pub fn load(entries: &[KeyConfig]) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for entry in entries {
            keys.extend(load_entry(entry)?);
        }
        let complete = !entries
            .iter()
            .any(|entry| matches!(entry.source, KeySource::JwksUrl(_)));
        Ok(Self {
            keys,
            generation: 0,
            complete,
        })
    }

    /// A snapshot of `keys`, numbered `generation`.
    fn new(keys: Vec<VerifyKey>, generation: u64, complete: bool) -> Self {
        Self {
            keys,
            generation,
            complete,
        }
    }

    /// Whether some configured key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// Which version of the key set this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many keys are loaded (for the start-up summary).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys a token may be verified with (SPEC section 1, step 2).
    ///
    /// `Some(keys)` when the `kid` names configured keys (only those are tried, even if
    /// none fits the algorithm); otherwise the keys without a `kid` that fit.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Candidates<'_> {
        let named = kid.and_then(|kid| {
            self.keys
                .iter()
                .find_map(|key| key.kid.as_deref().filter(|k| *k == kid))
        });
        Candidates {
            keys: self.keys.iter(),
            kid: named,
            alg,
        }
    }
}

/// Iterator over the keys to try for one token.
pub struct Candidates<'a> {
    keys: std::slice::Iter<'a, VerifyKey>,
    kid: Option<&'a str>,
    alg: Algorithm,
}

impl<'a> Candidates<'a> {
    /// Whether the token's `kid` matched configured keys.
    pub fn by_kid(&self) -> bool {
        self.kid.is_some()
    }
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a VerifyKey;

    fn next(&mut self) -> Option<&'a VerifyKey> {
        let (kid, alg) = (self.kid, self.alg);
        self.keys
            .by_ref()
            .find(|key| key.kid.as_deref() == kid && key.fits(alg))
    }
}

// === impl VerifyKey ===

impl VerifyKey {
    /// The key, made ready for what it verifies; `name` says which key a warning is about
    /// (the config entry, or the JWKS key's `kid`).
    fn new(
        name: &str,
        kid: Option<String>,
        algorithm: Option<Algorithm>,
        (kind, key): (KeyKind, &DecodingKey),
    ) -> Self {
        let prepared = Prepared::all(kind, key, algorithm);
        if prepared.is_empty() {
            // Kept, so its tokens are refused as a bad signature, as with any wrong key.
            tracing::warn!(
                key = name,
                ?kind,
                "key cannot verify any algorithm it is for"
            );
        }
        Self {
            kid,
            algorithm,
            kind,
            prepared,
        }
    }

    fn fits(&self, alg: Algorithm) -> bool {
        self.algorithm.is_none_or(|only| only == alg) && self.kind.fits(alg)
    }

    /// Whether `signature` (decoded) signs `message` with `alg`, which the key fits.
    pub fn check(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        (self.prepared.iter())
            .find(|prepared| prepared.verifies(alg))
            .is_some_and(|prepared| prepared.check(message, signature))
    }
}

// === impl KeyKind ===

impl KeyKind {
    /// An HMAC algorithm is never verified with a public key and vice versa.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Hmac => matches!(alg, HS256 | HS384 | HS512),
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

// === impl Secret ===

impl Secret {
    /// Keeps `bytes` as a secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret's bytes, for building a key.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The HMAC secret of an `hmac_secret_env` or `hmac_secret_file` entry; `None` for other kinds.
pub fn hmac_secret(entry: &KeyConfig) -> Result<Option<Secret>, KeyError> {
    let key = || entry.key_name.clone();
    let bytes = match &entry.source {
        KeySource::HmacEnv(var) => std::env::var(var)
            .map_err(|_| KeyError::MissingEnv {
                key: key(),
                var: var.clone(),
            })?
            .into_bytes(),
        KeySource::HmacFile(path) => {
            let mut bytes = read(&entry.key_name, path)?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            bytes
        }
        KeySource::PublicKeyFile(_) | KeySource::JwksFile { .. } | KeySource::JwksUrl(_) => {
            return Ok(None);
        }
    };
    if bytes.is_empty() {
        return Err(KeyError::EmptySecret { key: key() });
    }
    if bytes.len() < 32 {
        tracing::warn!(key = %entry.key_name, "HMAC secret is shorter than 32 bytes");
    }
    Ok(Some(Secret(bytes)))
}

fn load_entry(entry: &KeyConfig) -> Result<Vec<VerifyKey>, KeyError> {
    let single = |kind, key: DecodingKey| {
        let (name, kid) = (&entry.key_name, entry.kid.clone());
        vec![VerifyKey::new(name, kid, entry.algorithm, (kind, &key))]
    };
    if let Some(secret) = hmac_secret(entry)? {
        let key = DecodingKey::from_secret(secret.expose()).map_err(|_| KeyError::EmptySecret {
            key: entry.key_name.clone(),
        })?;
        return Ok(single(KeyKind::Hmac, key));
    }
    match &entry.source {
        KeySource::PublicKeyFile(path) => {
            let (kind, key) = public_key_file(entry, path)?;
            Ok(single(kind, key))
        }
        KeySource::JwksFile { path, allow_hmac } => {
            let text = read(&entry.key_name, path)?;
            parse_jwks(&text, *allow_hmac).map_err(|problem| KeyError::Jwks {
                key: entry.key_name.clone(),
                path: path.display().to_string(),
                problem,
            })
        }
        // Fetched by the KeyRing, in the background.
        KeySource::JwksUrl(_) => Ok(Vec::new()),
        KeySource::HmacEnv(_) | KeySource::HmacFile(_) => {
            unreachable!("HMAC entries returned above")
        }
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        key: key.to_string(),
        path: path.display().to_string(),
        source,
    })
}

/// A PEM public key (SPKI or PKCS#1 RSA) or an X.509 certificate's key.
fn public_key_file(entry: &KeyConfig, path: &Path) -> Result<(KeyKind, DecodingKey), KeyError> {
    let pem_error = |problem| KeyError::Pem {
        key: entry.key_name.clone(),
        path: path.display().to_string(),
        problem,
    };
    let text = read(&entry.key_name, path)?;
    let (label, der) = der::pem::decode_vec(&text).map_err(|_| pem_error("not a PEM file"))?;
    let spki = match label {
        "PUBLIC KEY" => SubjectPublicKeyInfoOwned::from_der(&der)
            .map_err(|_| pem_error("malformed public key"))?,
        "CERTIFICATE" => {
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|_| pem_error("malformed certificate"))?;
            cert.tbs_certificate.subject_public_key_info
        }
        "RSA PUBLIC KEY" => return Ok((KeyKind::Rsa, DecodingKey::from_rsa_der(&der))),
        label if label.contains("PRIVATE KEY") => {
            return Err(pem_error("is a private key; configure the public key"));
        }
        _ => {
            return Err(pem_error(
                "expected a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block",
            ));
        }
    };
    let raw = spki.subject_public_key.raw_bytes();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    match (spki.algorithm.oid, curve) {
        (OID_RSA, _) => Ok((KeyKind::Rsa, DecodingKey::from_rsa_der(raw))),
        (OID_EC, Some(OID_P256)) => Ok((KeyKind::EcP256, DecodingKey::from_ec_der(raw))),
        (OID_EC, Some(OID_P384)) => Ok((KeyKind::EcP384, DecodingKey::from_ec_der(raw))),
        (OID_EC, _) => Err(pem_error("unsupported elliptic curve (use P-256 or P-384)")),
        (OID_ED25519, _) => Ok((KeyKind::Ed25519, DecodingKey::from_ed_der(raw))),
        _ => Err(pem_error(
            "unsupported key type (use RSA, EC P-256/P-384 or Ed25519)",
        )),
    }
}

/// Parses a JWKS document. Keys that cannot serve for signatures are skipped with a
/// warning; a document that is not a JWKS at all is an error.
pub fn parse_jwks(text: &[u8], allow_hmac: bool) -> Result<Vec<VerifyKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys: Vec<VerifyKey> = document
        .keys
        .into_iter()
        .enumerate()
        .filter_map(|(index, value)| match jwk_key(value, allow_hmac) {
            Ok(key) => Some(key),
            Err(why) => {
                tracing::warn!(index, why, "skipping JWKS key");
                None
            }
        })
        .collect();
    if keys.is_empty() {
        return Err("no usable signing key".into());
    }
    Ok(keys)
}

fn jwk_key(value: serde_json::Value, allow_hmac: bool) -> Result<VerifyKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "malformed JWK")?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("\"use\" is not \"sig\"");
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err("unsupported curve"),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        AlgorithmParameters::OctetKey(_) if allow_hmac => KeyKind::Hmac,
        AlgorithmParameters::OctetKey(_) => return Err("oct key without allow_hmac"),
        _ => return Err("unsupported key type"),
    };
    let algorithm = jwk
        .common
        .key_algorithm
        .map(signing_algorithm)
        .transpose()?;
    if algorithm.is_some_and(|alg| !kind.fits(alg)) {
        return Err("\"alg\" does not fit the key type");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "unusable key material")?;
    let name = jwk
        .common
        .key_id
        .clone()
        .unwrap_or_else(|| "a JWKS key without kid".into());
    Ok(VerifyKey::new(
        &name,
        jwk.common.key_id,
        algorithm,
        (kind, &key),
    ))
}

fn signing_algorithm(alg: KeyAlgorithm) -> Result<Algorithm, &'static str> {
    use KeyAlgorithm as K;
    Ok(match alg {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return Err("\"alg\" is not a signature algorithm"),
    })
}
