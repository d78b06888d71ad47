//! A compact JWS (RFC 7515), as both kinds of token the gateway verifies use it: the
//! product's access tokens (SPEC section 1, step 2) and identity-provider signals
//! (section 13). Split strictly, its algorithm checked against an allow-list (`none` can
//! never be named), its signature checked with the keys its header selects.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::{KeyRing, KeySet};
use super::metrics::AuthMetrics;
use super::token::TokenError;

/// The parts of a compact JWS, each checked to be base64url; the signature not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims, not to be trusted before `verify` (or `check_signature`) passed.
    pub payload: Map<String, Value>,
    signed: &'a str,
    signature: &'a str,
}

// === impl Jws ===

impl<'a> Jws<'a> {
    /// Splits `token` into three base64url segments, the first two JSON objects.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Self, TokenError> {
        if token.len() > max_bytes {
            return Err(TokenError::Malformed);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if payload.contains('.') || !is_base64url(signature) {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            header: json_object(header)?,
            payload: json_object(payload)?,
            signed,
            signature,
        })
    }

    /// The header's `alg`, when `allowed` lists it. A `crit` parameter is refused: no
    /// extension is understood here.
    pub fn algorithm(&self, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
        if self.header.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let name = self
            .header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        // `none` cannot parse as an Algorithm, so it can never reach the allow-list.
        let alg: Algorithm = name.parse().map_err(|_| TokenError::UnsupportedAlgorithm)?;
        if !allowed.contains(&alg) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        Ok(alg)
    }

    /// Verifies the signature with the keys `kid` names, else the kid-less keys that fit
    /// `alg` (an HMAC algorithm never with a public key, and vice versa).
    pub fn check_signature(&self, alg: Algorithm, keys: &KeySet) -> Result<(), TokenError> {
        let mut candidates = keys.candidates(self.kid()?, alg);
        let by_kid = candidates.by_kid();
        // Well-formed base64url can still fail to decode (stray trailing bits): then no
        // key verifies it.
        let signature = URL_SAFE_NO_PAD.decode(self.signature).ok();
        let mut tried = false;
        for key in candidates.by_ref() {
            tried = true;
            let signed = self.signed.as_bytes();
            if signature
                .as_deref()
                .is_some_and(|sig| key.check(alg, signed, sig))
            {
                return Ok(());
            }
        }
        Err(if tried || by_kid {
            TokenError::BadSignature
        } else {
            TokenError::UnknownKey
        })
    }

    /// Checks the algorithm and signature with `ring`'s keys; a key the ring does not know
    /// yet may wait for its one shared, rate-limited refetch (a rotation is believed at once).
    pub async fn verify(
        &self,
        allowed: &[Algorithm],
        ring: &KeyRing,
        metrics: &AuthMetrics,
    ) -> Result<(), TokenError> {
        let alg = self.algorithm(allowed)?;
        // The key set's guard is let go before waiting for a refetch.
        let (generation, refused) = {
            let keys = ring.current();
            match self.check_signature(alg, &keys) {
                Err(refused) if self.may_need_new_keys(&keys, refused)? => {
                    (keys.generation(), refused)
                }
                checked => return checked,
            }
        };
        if !ring.refetch_for_unknown_key(generation, metrics).await {
            return Err(refused);
        }
        self.check_signature(alg, &ring.current())
    }

    fn kid(&self) -> Result<Option<&str>, TokenError> {
        match self.header.get("kid") {
            None => Ok(None),
            Some(Value::String(kid)) => Ok(Some(kid)),
            Some(_) => Err(TokenError::Malformed),
        }
    }

    /// Whether `refused` may be cured by new keys: the key is unknown, or the `kid` names
    /// no key we have (the kid-less keys it fell back to did not verify it).
    fn may_need_new_keys(&self, keys: &KeySet, refused: TokenError) -> Result<bool, TokenError> {
        Ok(match refused {
            TokenError::UnknownKey => true,
            TokenError::BadSignature => self.kid()?.is_some_and(|kid| !keys.has_kid(kid)),
            _ => false,
        })
    }
}

/// Whether a token refused with `refused` may pass with new keys (see `Jws::verify`),
/// judged from its header alone.
pub(super) fn may_need_new_keys(token: &str, keys: &KeySet, refused: TokenError) -> bool {
    let header = token
        .split('.')
        .next()
        .and_then(|segment| json_object(segment).ok());
    let Some(header) = header else {
        return false;
    };
    let jws = Jws {
        header,
        payload: Map::new(),
        signed: "",
        signature: "",
    };
    jws.may_need_new_keys(keys, refused).unwrap_or(false)
}

fn is_base64url(segment: &str) -> bool {
    segment.len() % 4 != 1
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn json_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_segments_are_checked_strictly() {
        assert!(is_base64url("eyJhbGciOiJIUzI1NiJ9"));
        assert!(
            is_base64url(""),
            "an empty signature is well-formed (alg none is refused later)"
        );
        for bad in ["abc=", "a+b", "a/b", "a b", "abcde"] {
            assert!(!is_base64url(bad), "{bad}");
        }
    }

    #[test]
    fn none_and_unlisted_algorithms_are_refused() {
        let token = |alg: &str| {
            let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\"}}"));
            format!("{header}.e30.")
        };
        for alg in ["none", "None", "HS256", "RS999"] {
            let text = token(alg);
            let jws = Jws::parse(&text, 1000).unwrap();
            assert_eq!(
                jws.algorithm(&[Algorithm::RS256]),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }
}
