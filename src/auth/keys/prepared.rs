//! Keys made ready once, when a key set is loaded, for each algorithm they may verify.
//!
//! jsonwebtoken's `crypto::verify` builds a verifier per call: it clones the key, boxes a
//! verifier and has aws-lc-rs parse the public key again (for RSA that includes setting up
//! the modulus arithmetic). Keeping aws-lc-rs's parsed key is the same crypto without that
//! work on every token: see `benches/verify.rs` and docs/perf/issue-15.md for the figures.

use aws_lc_rs::{hmac, signature};
use der::Encode;
use der::asn1::{SequenceOf, UintRef};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use super::KeyKind;

/// Every algorithm a key may be made ready for.
const ALGORITHMS: [Algorithm; 12] = {
    use Algorithm::*;
    [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

/// A key ready to check signatures of one algorithm.
#[derive(Debug, Clone)]
pub struct Prepared {
    alg: Algorithm,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    /// Boxed: the key keeps both precomputed HMAC states (over a kilobyte).
    Hmac(Box<hmac::Key>),
    Public(signature::ParsedPublicKey),
}

// === impl Prepared ===

impl Prepared {
    /// `key` made ready for every algorithm its kind fits (only `only`, when set). One
    /// aws-lc-rs refuses the key for (an RSA modulus under 2048 bits, say) gets no entry:
    /// tokens signed so fail their signature check, as they did when the key was parsed
    /// per token.
    pub fn all(kind: KeyKind, key: &DecodingKey, only: Option<Algorithm>) -> Vec<Self> {
        match material(key) {
            Ok(material) => (ALGORITHMS.into_iter())
                .filter(|alg| kind.fits(*alg) && only.is_none_or(|only| only == *alg))
                .filter_map(|alg| Self::new(alg, &material))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn new(alg: Algorithm, material: &[u8]) -> Option<Self> {
        let check = match hmac_algorithm(alg) {
            Some(hmac) => Check::Hmac(Box::new(hmac::Key::new(hmac, material))),
            None => {
                let parsed = signature::ParsedPublicKey::new(public_algorithm(alg)?, material);
                Check::Public(parsed.ok()?)
            }
        };
        Some(Self { alg, check })
    }

    /// Whether this verifies tokens signed with `alg`.
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.alg == alg
    }

    /// Whether `signature` (decoded) signs `message`; HMAC is compared in constant time.
    pub fn check(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.check {
            Check::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Check::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

/// The bytes aws-lc-rs takes for `key`: the secret, the DER or point jsonwebtoken kept,
/// or, for an RSA key given as modulus and exponent, its PKCS#1 `RSAPublicKey`.
fn material(key: &DecodingKey) -> Result<Vec<u8>, &'static str> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => Ok(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => rsa_public_key_der(n, e),
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017),
/// which is exactly a DER `SEQUENCE OF INTEGER` with two elements.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, &'static str> {
    let integer = |bytes| UintRef::new(bytes).map_err(|_| "malformed RSA modulus or exponent");
    let mut sequence = SequenceOf::<UintRef<'_>, 2>::new();
    for part in [integer(n)?, integer(e)?] {
        sequence.add(part).map_err(|_| "malformed RSA key")?;
    }
    sequence.to_der().map_err(|_| "malformed RSA key")
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// The algorithms jsonwebtoken's aws-lc-rs backend verifies with, so what passes and what
/// fails is the same (RSA moduli of 2048 to 8192 bits, fixed-size ECDSA signatures).
fn public_algorithm(alg: Algorithm) -> Option<&'static dyn signature::VerificationAlgorithm> {
    use Algorithm::*;
    Some(match alg {
        RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        EdDSA => &signature::ED25519,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use der::Decode;
    use jsonwebtoken::EncodingKey;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// The PKCS#1 DER of the RSA fixture, and its modulus and exponent.
    fn rsa_parts() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (_, der) = der::pem::decode_vec(&fixture("rsa.pkcs1.pub.pem")).unwrap();
        let parts = SequenceOf::<UintRef<'_>, 2>::from_der(&der).unwrap();
        let [n, e] = [0, 1].map(|i| parts.get(i).unwrap().as_bytes().to_vec());
        (der, n, e)
    }

    fn signed(alg: Algorithm, key: &EncodingKey) -> (Vec<u8>, Vec<u8>) {
        let message = b"header.payload".to_vec();
        let signature = jsonwebtoken::crypto::sign(&message, key, alg).unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        (message, signature)
    }

    fn checks(prepared: &[Prepared], alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let mut fitting = prepared.iter().filter(|p| p.verifies(alg));
        fitting.any(|p| p.check(message, signature))
    }

    #[test]
    fn rsa_modulus_and_exponent_are_encoded_as_pkcs1() {
        let (der, n, e) = rsa_parts();
        assert_eq!(rsa_public_key_der(&n, &e).unwrap(), der);
    }

    #[test]
    fn a_key_given_as_components_verifies_what_its_der_verifies() {
        let (der, n, e) = rsa_parts();
        let private = EncodingKey::from_rsa_pem(&fixture("rsa.key")).unwrap();
        let (message, signature) = signed(Algorithm::RS256, &private);
        for key in [
            DecodingKey::from_rsa_der(&der),
            DecodingKey::from_rsa_raw_components(&n, &e),
        ] {
            let prepared = Prepared::all(KeyKind::Rsa, &key, None);
            assert!(checks(&prepared, Algorithm::RS256, &message, &signature));
            assert!(!checks(
                &prepared,
                Algorithm::RS256,
                b"header.tampered",
                &signature
            ));
            assert!(!checks(&prepared, Algorithm::PS256, &message, &signature));
        }
    }

    #[test]
    fn a_key_limited_to_one_algorithm_is_ready_for_that_one_only() {
        let (der, ..) = rsa_parts();
        let key = DecodingKey::from_rsa_der(&der);
        let prepared = Prepared::all(KeyKind::Rsa, &key, Some(Algorithm::PS256));
        assert_eq!(prepared.len(), 1);
        assert!(prepared[0].verifies(Algorithm::PS256));
        assert_eq!(Prepared::all(KeyKind::Rsa, &key, None).len(), 6);
    }

    #[test]
    fn hmac_checks_the_secret() {
        let (message, signature) = signed(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"right secret, right length 0123456789").unwrap(),
        );
        let check = |secret: &[u8]| {
            let key = DecodingKey::from_secret(secret).unwrap();
            let prepared = Prepared::all(KeyKind::Hmac, &key, None);
            checks(&prepared, Algorithm::HS256, &message, &signature)
        };
        assert!(check(b"right secret, right length 0123456789"));
        assert!(!check(b"wrong secret, right length 0123456789"));
    }

    #[test]
    fn an_rsa_modulus_under_2048_bits_verifies_nothing() {
        let private = EncodingKey::from_rsa_pem(&fixture("rsa.key")).unwrap();
        let (message, signature) = signed(Algorithm::RS256, &private);
        let (_, n, e) = rsa_parts();
        let short = DecodingKey::from_rsa_raw_components(&n[..128], &e);
        let prepared = Prepared::all(KeyKind::Rsa, &short, None);
        assert!(!checks(&prepared, Algorithm::RS256, &message, &signature));
    }
}
