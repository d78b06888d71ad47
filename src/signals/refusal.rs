//! Why a signal was refused: one reason per rule of SPEC section 13, each with the RFC 8935
//! code it is answered with, its metrics label and a description that never quotes the
//! token.

use crate::auth::TokenError;
use crate::store::StoreError;
use crate::web::{GatewayError, SignalCode, SignalProtocol, SignalRefusal};

/// A rule a signal broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error("the body is larger than 64 KiB")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    #[error("wrong Content-Type: {0} is required")]
    ContentType(&'static str),
    #[error("the form must carry exactly one logout_token")]
    Form,
    #[error("not a signed JWT (three base64url segments, JSON header and claims)")]
    Malformed,
    #[error("the typ header must be {0}")]
    Type(&'static str),
    #[error("the iss claim names no configured issuer")]
    UnknownIssuer,
    #[error("the issuer's keys have not loaded yet")]
    KeysLoading,
    #[error("missing or wrong Authorization for this issuer's pushes")]
    PushAuthorization,
    #[error("the algorithm is not one of RS256, PS256, ES256, EdDSA")]
    Algorithm,
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the signature does not verify with the issuer's keys")]
    BadSignature,
    #[error("the aud claim does not name the issuer's audience")]
    Audience,
    #[error("the {0} claim is required")]
    Missing(&'static str),
    #[error("the {0} claim has the wrong type")]
    ClaimType(&'static str),
    #[error("the {0} claim is not allowed here")]
    Forbidden(&'static str),
    #[error("iat is in the future")]
    IssuedInFuture,
    #[error("the token has expired")]
    Expired,
    #[error("iat is older than sessions.revoked_sid_ttl_secs")]
    TooOld,
    #[error("events must hold {0}")]
    Events(&'static str),
    #[error("the event names no subject (sub_id or subject)")]
    NoSubject,
    #[error("unsupported subject identifier format")]
    SubjectFormat,
    #[error("the subject belongs to another issuer")]
    ForeignSubject,
    #[error("the tenant is not this issuer's workspace")]
    OtherTenant,
    #[error("this issuer may not log a whole workspace out (allow_workspace_logout)")]
    WorkspaceLogout,
}

/// A signal that was not acknowledged: refused, or not committed.
#[derive(Debug)]
pub(super) enum Failure {
    Refused(Refusal),
    /// Answered 503: the sender retries.
    Store(StoreError),
}

// === impl Refusal ===

impl Refusal {
    /// Every metrics label, so each series starts at 0.
    pub(super) const REASONS: [&'static str; 25] = [
        "too_large",
        "unreadable",
        "content_type",
        "form",
        "malformed",
        "type",
        "unknown_issuer",
        "keys_loading",
        "push_authorization",
        "algorithm",
        "unknown_key",
        "bad_signature",
        "audience",
        "missing_claim",
        "claim_type",
        "forbidden_claim",
        "issued_in_future",
        "expired",
        "too_old",
        "events",
        "no_subject",
        "subject_format",
        "foreign_subject",
        "other_tenant",
        "workspace_logout",
    ];

    /// The metrics label and log field.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Unreadable => "unreadable",
            Self::ContentType(_) => "content_type",
            Self::Form => "form",
            Self::Malformed => "malformed",
            Self::Type(_) => "type",
            Self::UnknownIssuer => "unknown_issuer",
            Self::KeysLoading => "keys_loading",
            Self::PushAuthorization => "push_authorization",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Audience => "audience",
            Self::Missing(_) => "missing_claim",
            Self::ClaimType(_) => "claim_type",
            Self::Forbidden(_) => "forbidden_claim",
            Self::IssuedInFuture => "issued_in_future",
            Self::Expired => "expired",
            Self::TooOld => "too_old",
            Self::Events(_) => "events",
            Self::NoSubject => "no_subject",
            Self::SubjectFormat => "subject_format",
            Self::ForeignSubject => "foreign_subject",
            Self::OtherTenant => "other_tenant",
            Self::WorkspaceLogout => "workspace_logout",
        }
    }

    /// The RFC 8935 error code.
    fn code(self) -> SignalCode {
        match self {
            Self::UnknownIssuer => SignalCode::InvalidIssuer,
            Self::Audience => SignalCode::InvalidAudience,
            Self::Algorithm | Self::UnknownKey | Self::BadSignature => SignalCode::InvalidKey,
            Self::PushAuthorization => SignalCode::AuthenticationFailed,
            Self::ForeignSubject | Self::OtherTenant | Self::WorkspaceLogout => {
                SignalCode::AccessDenied
            }
            Self::TooLarge
            | Self::KeysLoading
            | Self::Unreadable
            | Self::ContentType(_)
            | Self::Form
            | Self::Malformed
            | Self::Type(_)
            | Self::Missing(_)
            | Self::ClaimType(_)
            | Self::Forbidden(_)
            | Self::IssuedInFuture
            | Self::Expired
            | Self::TooOld
            | Self::Events(_)
            | Self::NoSubject
            | Self::SubjectFormat => SignalCode::InvalidRequest,
        }
    }

    /// The answer for a signal sent by `protocol`: 413 and 503 as for any request, every
    /// other refusal in the protocol's own error shape.
    pub(super) fn into_error(self, protocol: SignalProtocol) -> GatewayError {
        match self {
            Self::TooLarge => GatewayError::PayloadTooLarge,
            Self::KeysLoading => GatewayError::NotReady,
            refused => GatewayError::Signal(SignalRefusal {
                protocol,
                code: refused.code(),
                description: refused.to_string(),
            }),
        }
    }

    /// A signature check's refusal.
    pub(super) fn of_signature(refused: TokenError) -> Self {
        match refused {
            TokenError::UnsupportedAlgorithm => Self::Algorithm,
            TokenError::UnknownKey => Self::UnknownKey,
            TokenError::BadSignature => Self::BadSignature,
            TokenError::Missing
            | TokenError::Malformed
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::IssuedInFuture
            | TokenError::WrongIssuer
            | TokenError::WrongAudience
            | TokenError::MissingClaim
            | TokenError::SessionInvalidated
            | TokenError::SessionRevoked
            | TokenError::IpNotAllowed
            | TokenError::SignInMethodNotAllowed
            | TokenError::SessionTooOld => Self::Malformed,
        }
    }

    /// A body that could not be read, or was too large.
    pub(super) fn of_body(error: GatewayError) -> Self {
        match error {
            GatewayError::PayloadTooLarge => Self::TooLarge,
            _ => Self::Unreadable,
        }
    }
}

// === impl Failure ===

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once() {
        let reasons: std::collections::HashSet<_> = Refusal::REASONS.into_iter().collect();
        assert_eq!(reasons.len(), Refusal::REASONS.len());
        let sample = [Refusal::Missing("jti"), Refusal::Type("x"), Refusal::TooOld];
        assert!(sample.iter().all(|r| reasons.contains(r.reason())));
    }
}
