//! Finding the token in a request and checking it against SPEC section 1, steps 1-4.
//!
//! Pure and synchronous: no sockets, no store. Signatures are checked by jsonwebtoken's
//! crypto (aws-lc-rs); parsing and the claim rules are ours, because the reasons, the
//! exact fractional time comparisons and the `crit` rule are part of the contract.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::{JwtConfig, SessionsConfig, TimeClaim};
use crate::keys::KeySet;

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
    pub roles: Vec<String>,
}

/// Verifies tokens with the configured keys and claim rules.
pub struct Verifier {
    jwt: JwtConfig,
    sessions: SessionsConfig,
    keys: ArcSwap<KeySet>,
}

/// The parts of a compact JWS, each checked to be base64url.
struct Parts<'a> {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    signed: &'a str,
    signature: &'a str,
}

// === impl TokenError ===

impl TokenError {
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
    match jti {
        Some(jti) => format!("jti:{jti}"),
        None => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            format!("sha256:{}", hex::encode(digest.as_ref()))
        }
    }
}

/// A session id as logs may show it: at most 16 hex digits of a hash.
pub fn session_id_prefix(session_id: &str) -> &str {
    match session_id.strip_prefix("sha256:") {
        Some(hash) => &session_id[..7 + hash.len().min(16)],
        None => session_id,
    }
}

// === impl Verifier ===

impl Verifier {
    /// A verifier over `keys`, which can be replaced later without blocking requests.
    pub fn new(jwt: JwtConfig, sessions: SessionsConfig, keys: KeySet) -> Self {
        Self {
            jwt,
            sessions,
            keys: ArcSwap::from_pointee(keys),
        }
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Steps 1-4 of the acceptance rule at time `now`; the session step is `Sessions::check`.
    pub fn verify(&self, token: &str, now: f64) -> Result<Claims, TokenError> {
        let parts = self.split(token)?;
        let alg = self.algorithm(&parts.header)?;
        self.check_signature(&parts, alg)?;
        let claims = &parts.payload;
        let expires_at = self.check_times(claims, now)?;
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
            session_id: session_id(token, jti),
            session_time: self.session_time(claims)?,
            expires_at,
            roles: self.roles(claims),
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

    fn check_signature(&self, parts: &Parts<'_>, alg: Algorithm) -> Result<(), TokenError> {
        let kid = match parts.header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };
        let keys = self.keys.load();
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

    /// Step 3; returns `exp`.
    fn check_times(&self, claims: &Map<String, Value>, now: f64) -> Result<f64, TokenError> {
        let leeway = self.jwt.leeway_secs;
        let exp = required_number(claims, "exp")?;
        if now >= exp + leeway {
            return Err(TokenError::Expired);
        }
        if optional_number(claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        if required_number(claims, "iat")? > now + leeway {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(exp)
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
