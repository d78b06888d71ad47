//! Finding the token in a request and checking it against SPEC section 1, steps 1-4.
//!
//! Pure and synchronous: no sockets, no store. Signatures are checked by jsonwebtoken's
//! crypto (aws-lc-rs); parsing and the claim rules are ours, because the reasons, the
//! exact fractional time comparisons and the `crit` rule are part of the contract.

use std::sync::Arc;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::Algorithm;
use moka::Expiry;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};

use crate::config::{JwtConfig, SessionsConfig, TimeClaim};
use crate::keys::{KeyRing, KeySet};

/// Why a token was refused; `as_str()` is the `reason` of SPEC section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenError {
    #[error("missing_token")]
    Missing,
    #[error("malformed_token")]
    Malformed,
    #[error("unsupported_algorithm")]
    UnsupportedAlgorithm,
    #[error("unknown_key")]
    UnknownKey,
    #[error("bad_signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not_yet_valid")]
    NotYetValid,
    #[error("issued_in_future")]
    IssuedInFuture,
    #[error("wrong_issuer")]
    WrongIssuer,
    #[error("wrong_audience")]
    WrongAudience,
    #[error("missing_claim")]
    MissingClaim,
    #[error("session_invalidated")]
    SessionInvalidated,
    #[error("session_revoked")]
    SessionRevoked,
}

/// Where the token was found; cookie tokens get the CSRF check and the cookie cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Cookie,
}

/// A token as presented by the client.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub token: &'a str,
    pub source: TokenSource,
}

/// What the gateway knows about a request once its token has been verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub workspace: String,
    pub subject: Option<String>,
    /// `jti:<jti>` or `sha256:<hex>`: the identity of this session.
    pub session_id: String,
    /// `T` of SPEC section 1: the session-time claim plus `sessions.iat_backdate_secs`.
    pub session_time: f64,
    pub expires_at: f64,
    pub issued_at: f64,
    pub not_before: Option<f64>,
    pub roles: Vec<String>,
    /// The identity headers for the upstream, built on first use and then shared by every
    /// request that presents this (cached) token.
    pub identity: OnceLock<IdentityHeaders>,
}

/// `X-Auth-Subject`, `X-Auth-Workspace` and `X-Auth-Session` values of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeaders {
    pub subject: Option<HeaderValue>,
    pub workspace: HeaderValue,
    pub session: HeaderValue,
}

/// Verifies tokens with the configured keys and claim rules.
pub struct Verifier {
    jwt: JwtConfig,
    sessions: SessionsConfig,
    keys: Arc<KeyRing>,
    /// Verified tokens by SHA-256, so signature and claim parsing run once per token.
    cache: Option<Cache<[u8; 32], Verified>>,
    cache_hits: Counter,
    cache_misses: Counter,
}

/// A cache entry: the claims, and the key set generation that verified them (a token
/// verified by a key that has since been removed must not stay accepted).
#[derive(Clone)]
struct Verified {
    claims: Arc<Claims>,
    generation: u64,
}

/// Cache entries leave at `exp + leeway`: after that the token can never pass again.
struct UntilExpiry {
    leeway: f64,
}

/// The parts of a compact JWS, each checked to be base64url.
struct Parts<'a> {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    signed: &'a str,
    signature: &'a str,
}

// === impl Claims ===

impl Claims {
    /// The identity headers, built once per token.
    pub fn identity(&self) -> &IdentityHeaders {
        self.identity.get_or_init(|| {
            // `verify` refuses control characters in these claims, so they always fit.
            let value = |text: &str| {
                HeaderValue::from_str(text).or_else(|_| HeaderValue::from_bytes(text.as_bytes()))
            };
            let value =
                |text: &str| value(text).expect("claims were checked for control characters");
            IdentityHeaders {
                subject: self.subject.as_deref().map(value),
                workspace: value(&self.workspace),
                session: value(&self.session_id),
            }
        })
    }
}

// === impl TokenError ===

impl TokenError {
    /// Every reason, in declaration order.
    pub const ALL: [TokenError; 13] = [
        Self::Missing,
        Self::Malformed,
        Self::UnsupportedAlgorithm,
        Self::UnknownKey,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::IssuedInFuture,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::MissingClaim,
        Self::SessionInvalidated,
        Self::SessionRevoked,
    ];

    /// The wire name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::SessionInvalidated => "session_invalidated",
            Self::SessionRevoked => "session_revoked",
        }
    }
}

/// Step 1: `Authorization: Bearer`, else the `auth.cookie` cookie.
pub fn extract<'a>(headers: &'a HeaderMap, cookie_name: Option<&str>) -> Option<Presented<'a>> {
    let bearer = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .find_map(|value| {
            let value = value.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if let Some(token) = bearer.filter(|t| !t.is_empty()) {
        return Some(Presented {
            token,
            source: TokenSource::Header,
        });
    }
    let token = find_cookie(headers, cookie_name?)?;
    Some(Presented {
        token,
        source: TokenSource::Cookie,
    })
}

/// The value of cookie `name` across all `Cookie` headers.
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then_some(value)
        })
}

/// `jti:<jti>` when the token has one, else `sha256:<hex>` over the compact token.
pub fn session_id(token: &str, jti: Option<&str>) -> String {
    session_id_from_digest(&sha256(token), jti)
}

fn session_id_from_digest(digest: &[u8; 32], jti: Option<&str>) -> String {
    match jti {
        Some(jti) => format!("jti:{jti}"),
        None => format!("sha256:{}", hex::encode(digest)),
    }
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// A session id as logs may show it: at most 16 hex digits of a hash.
pub fn session_id_prefix(session_id: &str) -> &str {
    match session_id.strip_prefix("sha256:") {
        Some(hash) => &session_id[..7 + hash.len().min(16)],
        None => session_id,
    }
}

// === impl UntilExpiry ===

impl Expiry<[u8; 32], Verified> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Verified,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let remaining = value.claims.expires_at + self.leeway - crate::clock::now();
        Some(Duration::from_secs_f64(remaining.clamp(0.0, 1e9)))
    }
}

// === impl Verifier ===

impl Verifier {
    /// A verifier over the key ring, with a verified-token cache of
    /// `jwt.verify_cache_entries` entries, counting hits and misses.
    pub fn new(
        jwt: JwtConfig,
        sessions: SessionsConfig,
        keys: Arc<KeyRing>,
        (cache_hits, cache_misses): (Counter, Counter),
    ) -> Self {
        let cache = (jwt.verify_cache_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(jwt.verify_cache_entries)
                .expire_after(UntilExpiry {
                    leeway: jwt.leeway_secs,
                })
                .build()
        });
        Self {
            jwt,
            sessions,
            keys,
            cache,
            cache_hits,
            cache_misses,
        }
    }

    /// Whether a refusal may be cured by fetching the identity provider's keys again: the
    /// token's key is unknown, or its `kid` names no key we have (it fell back to kid-less
    /// keys that did not verify it).
    pub fn may_need_new_keys(&self, token: &str, refused: TokenError) -> bool {
        match refused {
            TokenError::UnknownKey => true,
            TokenError::BadSignature => {
                let header = token
                    .split('.')
                    .next()
                    .and_then(|segment| json_object(segment).ok());
                let kid = header
                    .as_ref()
                    .and_then(|h| h.get("kid"))
                    .and_then(Value::as_str);
                kid.is_some_and(|kid| !self.keys.current().has_kid(kid))
            }
            _ => false,
        }
    }

    /// The key ring (for readiness, refreshes and refetches).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Steps 1-4 of the acceptance rule at time `now`; the session step is `Sessions::check`.
    ///
    /// A token seen before skips signature and claim parsing, but the time rules (step 3)
    /// run on every call, and the session step is the caller's, on every request.
    pub fn verify(&self, token: &str, now: f64) -> Result<Arc<Claims>, TokenError> {
        if token.len() > self.jwt.max_token_bytes {
            return Err(TokenError::Malformed);
        }
        let digest: [u8; 32] = sha256(token);
        let keys = self.keys.current();
        if let Some(hit) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&digest))
            .filter(|v| v.generation == keys.generation())
        {
            self.cache_hits.inc();
            let claims = hit.claims;
            self.check_time_rules(claims.expires_at, claims.not_before, claims.issued_at, now)?;
            return Ok(claims);
        }
        if self.cache.is_some() {
            self.cache_misses.inc();
        }
        let claims = Arc::new(self.verify_uncached(token, &digest, &keys, now)?);
        if let Some(cache) = &self.cache {
            cache.insert(
                digest,
                Verified {
                    claims: claims.clone(),
                    generation: keys.generation(),
                },
            );
        }
        Ok(claims)
    }

    fn verify_uncached(
        &self,
        token: &str,
        digest: &[u8; 32],
        keys: &KeySet,
        now: f64,
    ) -> Result<Claims, TokenError> {
        let parts = self.split(token)?;
        let alg = self.algorithm(&parts.header)?;
        self.check_signature(&parts, alg, keys)?;
        let claims = &parts.payload;
        let (expires_at, not_before, issued_at) = self.read_times(claims, now)?;
        self.check_issuer_and_audience(claims)?;
        let workspace = match self.jwt.workspace_claim.lookup(claims) {
            None => return Err(TokenError::MissingClaim),
            Some(Value::String(ws)) if !ws.is_empty() && header_safe(ws) => ws.clone(),
            Some(_) => return Err(TokenError::Malformed),
        };
        let subject = optional_string(claims, "sub")?;
        let jti = optional_string(claims, "jti")?;
        // These become identity headers upstream: a control character could split them.
        if !subject.into_iter().chain(jti).all(header_safe) {
            return Err(TokenError::Malformed);
        }
        Ok(Claims {
            workspace,
            subject: subject.map(str::to_string),
            session_id: session_id_from_digest(digest, jti),
            session_time: self.session_time(claims)?,
            expires_at,
            issued_at,
            not_before,
            roles: self.roles(claims),
            identity: OnceLock::new(),
        })
    }

    fn split<'a>(&self, token: &'a str) -> Result<Parts<'a>, TokenError> {
        if token.len() > self.jwt.max_token_bytes {
            return Err(TokenError::Malformed);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if payload.contains('.') || !is_base64url(signature) {
            return Err(TokenError::Malformed);
        }
        Ok(Parts {
            header: json_object(header)?,
            payload: json_object(payload)?,
            signed,
            signature,
        })
    }

    fn algorithm(&self, header: &Map<String, Value>) -> Result<Algorithm, TokenError> {
        if header.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        // `none` cannot parse as an Algorithm, so it can never reach the allow-list.
        let alg: Algorithm = name.parse().map_err(|_| TokenError::UnsupportedAlgorithm)?;
        if !self.jwt.algorithms.contains(&alg) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        Ok(alg)
    }

    fn check_signature(
        &self,
        parts: &Parts<'_>,
        alg: Algorithm,
        keys: &KeySet,
    ) -> Result<(), TokenError> {
        let kid = match parts.header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };
        let mut candidates = keys.candidates(kid, alg);
        let by_kid = candidates.by_kid();
        let mut tried = false;
        for key in candidates.by_ref() {
            tried = true;
            let verified =
                jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), key, alg);
            if verified == Ok(true) {
                return Ok(());
            }
        }
        Err(if tried || by_kid {
            TokenError::BadSignature
        } else {
            TokenError::UnknownKey
        })
    }

    /// Step 3 while reading the claims: a missing `iat` only matters if `exp` passed.
    fn read_times(
        &self,
        claims: &Map<String, Value>,
        now: f64,
    ) -> Result<(f64, Option<f64>, f64), TokenError> {
        let exp = required_number(claims, "exp")?;
        self.check_expiry(exp, now)?;
        let nbf = optional_number(claims, "nbf")?;
        self.check_not_before(nbf, now)?;
        let iat = required_number(claims, "iat")?;
        self.check_issued_at(iat, now)?;
        Ok((exp, nbf, iat))
    }

    /// Step 3 on known values: runs on every request, cached or not.
    fn check_time_rules(
        &self,
        exp: f64,
        nbf: Option<f64>,
        iat: f64,
        now: f64,
    ) -> Result<(), TokenError> {
        self.check_expiry(exp, now)?;
        self.check_not_before(nbf, now)?;
        self.check_issued_at(iat, now)
    }

    fn check_expiry(&self, exp: f64, now: f64) -> Result<(), TokenError> {
        if now < exp + self.jwt.leeway_secs {
            Ok(())
        } else {
            Err(TokenError::Expired)
        }
    }

    fn check_not_before(&self, nbf: Option<f64>, now: f64) -> Result<(), TokenError> {
        match nbf {
            Some(nbf) if nbf > now + self.jwt.leeway_secs => Err(TokenError::NotYetValid),
            _ => Ok(()),
        }
    }

    /// The cutoff logic trusts `iat`, so a token from the future is refused.
    fn check_issued_at(&self, iat: f64, now: f64) -> Result<(), TokenError> {
        if iat <= now + self.jwt.leeway_secs {
            Ok(())
        } else {
            Err(TokenError::IssuedInFuture)
        }
    }

    fn check_issuer_and_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(issuer) = &self.jwt.issuer {
            match claims.get("iss") {
                Some(Value::String(iss)) if iss == issuer => {}
                None | Some(Value::String(_)) => return Err(TokenError::WrongIssuer),
                Some(_) => return Err(TokenError::Malformed),
            }
        }
        if self.jwt.audience.is_empty() {
            return Ok(());
        }
        let accepted = |aud: &str| self.jwt.audience.iter().any(|a| a == aud);
        let found = match claims.get("aud") {
            None => false,
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(list)) => {
                let names: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
                names
                    .ok_or(TokenError::Malformed)?
                    .into_iter()
                    .any(accepted)
            }
            Some(_) => return Err(TokenError::Malformed),
        };
        if found {
            Ok(())
        } else {
            Err(TokenError::WrongAudience)
        }
    }

    fn session_time(&self, claims: &Map<String, Value>) -> Result<f64, TokenError> {
        let claim = match self.sessions.time_claim {
            TimeClaim::Iat => "iat",
            TimeClaim::AuthTime => "auth_time",
        };
        Ok(required_number(claims, claim)? + self.sessions.iat_backdate_secs)
    }

    /// Roles are only needed by the admin API, so a roles claim of the wrong type means
    /// "no roles" rather than a refused token.
    fn roles(&self, claims: &Map<String, Value>) -> Vec<String> {
        match self.jwt.roles_claim.lookup(claims) {
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn header_safe(text: &str) -> bool {
    !text.chars().any(char::is_control)
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

fn required_number(claims: &Map<String, Value>, name: &str) -> Result<f64, TokenError> {
    optional_number(claims, name)?.ok_or(TokenError::MissingClaim)
}

fn optional_number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(TokenError::Malformed),
    }
}

fn optional_string<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn bearer_header_wins_over_the_cookie() {
        let both = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "x=1; sg=d.e.f"),
        ]);
        let presented = extract(&both, Some("sg")).unwrap();
        assert_eq!(
            (presented.token, presented.source),
            ("a.b.c", TokenSource::Header)
        );
        let cookie_only = headers(&[
            ("authorization", "Basic dXNlcg=="),
            ("cookie", "x=1; sg=d.e.f"),
        ]);
        let presented = extract(&cookie_only, Some("sg")).unwrap();
        assert_eq!(
            (presented.token, presented.source),
            ("d.e.f", TokenSource::Cookie)
        );
        assert!(
            extract(&cookie_only, None).is_none(),
            "no cookie configured: no token"
        );
    }

    #[test]
    fn session_ids_show_at_most_16_hex_digits_of_a_hash() {
        let id = session_id("a.b.c", None);
        assert_eq!(id.len(), "sha256:".len() + 64);
        assert_eq!(session_id_prefix(&id), &id[..7 + 16]);
        assert_eq!(session_id("a.b.c", Some("j1")), "jti:j1");
        assert_eq!(session_id_prefix("jti:j1"), "jti:j1");
    }

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
    fn every_reason_is_listed_once_with_its_wire_name() {
        let names: std::collections::HashSet<_> =
            TokenError::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), TokenError::ALL.len());
        assert!(TokenError::ALL.iter().all(|r| r.to_string() == r.as_str()));
    }
}
