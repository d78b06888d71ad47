//! Tokens as the rest of the gateway sees them: where one is found (step 1), what a
//! verified one says (`Claims`), how a session is named, and why one is refused.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};

use serde_json::{Map, Value};

use crate::sessions::{PolicyRefusal, Refusal, Session, policy};

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
    /// The workspace policy's allow-list (403, SPEC section 3).
    #[error("ip_not_allowed")]
    IpNotAllowed,
    /// A required claim of the workspace policy is unmet.
    #[error("sign_in_method_not_allowed")]
    SignInMethodNotAllowed,
    /// Older than the workspace policy's `max_session_age_secs`.
    #[error("session_too_old")]
    SessionTooOld,
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
    /// The value of `sessions.user_claim` (`sub` by default): the user of per-user cutoffs.
    pub user: Option<String>,
    /// `user` in lower case when it is an e-mail address that has upper-case letters.
    pub user_folded: Option<String>,
    /// The identity provider's session (`sid` claim).
    pub sid: Option<String>,
    /// `jti:<jti>` or `sha256:<hex>`: the identity of this session.
    pub session_id: String,
    /// `T` of SPEC section 1: the session-time claim plus `sessions.iat_backdate_secs`.
    pub session_time: f64,
    pub expires_at: f64,
    pub issued_at: f64,
    pub not_before: Option<f64>,
    pub roles: Vec<String>,
    /// Every claim, for the workspace policy's `require_claims` (step 6).
    pub payload: Map<String, Value>,
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

// === impl Claims ===

impl Claims {
    /// What the session rule (step 5) looks at.
    pub fn session(&self) -> Session<'_> {
        Session {
            workspace: &self.workspace,
            user: self.user.as_deref(),
            user_folded: self.user_folded.as_deref(),
            sid: self.sid.as_deref(),
            id: &self.session_id,
            time: self.session_time,
        }
    }

    /// What the workspace policy (step 6) looks at, for a request from `client_ip`.
    pub fn policy_request(&self, client_ip: std::net::IpAddr) -> policy::Request<'_> {
        policy::Request {
            workspace: &self.workspace,
            client_ip,
            claims: &self.payload,
            session_time: self.session_time,
        }
    }

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
    pub const ALL: [TokenError; 16] = [
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
        Self::IpNotAllowed,
        Self::SignInMethodNotAllowed,
        Self::SessionTooOld,
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
            Self::IpNotAllowed => "ip_not_allowed",
            Self::SignInMethodNotAllowed => "sign_in_method_not_allowed",
            Self::SessionTooOld => "session_too_old",
        }
    }
}

impl From<Refusal> for TokenError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalidated => Self::SessionInvalidated,
            Refusal::Revoked => Self::SessionRevoked,
        }
    }
}

impl From<&PolicyRefusal> for TokenError {
    fn from(refusal: &PolicyRefusal) -> Self {
        match refusal {
            PolicyRefusal::IpNotAllowed => Self::IpNotAllowed,
            PolicyRefusal::SignInMethod { .. } => Self::SignInMethodNotAllowed,
            PolicyRefusal::TooOld { .. } => Self::SessionTooOld,
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
            format!("sha256:{}", hex::encode(digest))
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
    fn every_reason_is_listed_once_with_its_wire_name() {
        let names: std::collections::HashSet<_> =
            TokenError::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), TokenError::ALL.len());
        assert!(TokenError::ALL.iter().all(|r| r.to_string() == r.as_str()));
    }
}
