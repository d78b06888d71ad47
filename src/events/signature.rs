//! Standard Webhooks signatures: `v1,<base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}">`,
//! keyed with the base64-decoded text after `whsec_`.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// Secrets are written with or without `=` padding by the tools that make them.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const PREFIX: &str = "whsec_";
/// Standard Webhooks asks for secrets of 24 to 64 bytes.
const RECOMMENDED_BYTES: usize = 24;

/// The signing key of one webhook; never printed.
pub(super) struct Signer(hmac::Key);

/// A `secret_env` value that is not a Standard Webhooks secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadSecret {
    /// It does not start with `whsec_`.
    Prefix,
    /// The rest is not base64, or is empty.
    Base64,
}

// === impl Signer ===

impl Signer {
    /// The key of `whsec_<base64>`; also whether it is shorter than recommended.
    pub(super) fn from_secret(text: &str) -> Result<(Self, bool), BadSecret> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(BadSecret::Prefix)?;
        let bytes = SECRET_BASE64
            .decode(encoded)
            .ok()
            .filter(|bytes| !bytes.is_empty())
            .ok_or(BadSecret::Base64)?;
        let short = bytes.len() < RECOMMENDED_BYTES;
        Ok((Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)), short))
    }

    /// The `webhook-signature` value for one attempt.
    pub(super) fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        for part in [
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ] {
            context.update(part);
        }
        let tag = context.sign();
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks test vector: a receiver library accepts ours.
    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let (signer, short) =
            Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!short);
        let signature = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_whsec_and_base64() {
        assert_eq!(
            Signer::from_secret("MfKQ9r8G").unwrap_err(),
            BadSecret::Prefix
        );
        assert_eq!(
            Signer::from_secret("whsec_").unwrap_err(),
            BadSecret::Base64
        );
        assert_eq!(
            Signer::from_secret("whsec_not base64!").unwrap_err(),
            BadSecret::Base64
        );
        let (_, short) = Signer::from_secret("whsec_c2hvcnQ").unwrap();
        assert!(short, "5 bytes is shorter than recommended");
        let (padded, _) = Signer::from_secret("whsec_c2hvcnQ=").unwrap();
        assert_eq!(format!("{padded:?}"), "Signer(***)");
    }
}
