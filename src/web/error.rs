//! The request error enum and the ONE place an error becomes a response.
//!
//! Errors are classified by who is at fault: the client (4xx), the upstream (502/504),
//! or us (503). The client gets a code; the log gets the chain.

use http::header::{ALLOW, HeaderValue, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde_json::json;

use super::body::{self, Body, BoxError};
use crate::auth::{Refused, TokenError};
use crate::config::BadPath;
use crate::sessions::PolicyRefusal;
use crate::store::StoreError;

/// Why a request was not answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad path: {0}")]
    BadPath(#[from] BadPath),
    #[error("token refused: {reason}")]
    Unauthorized {
        reason: TokenError,
        redirect: Option<LoginRedirect>,
    },
    /// The workspace policy refuses the request (SPEC section 3): 403 for the IP rule,
    /// else 401 `insufficient_user_authentication` or a login redirect.
    #[error("policy refused: {refusal}")]
    Policy {
        refusal: PolicyRefusal,
        redirect: Option<LoginRedirect>,
    },
    #[error("forbidden: {0}")]
    Forbidden(Forbidden),
    #[error("no such admin endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// The change would lock its own caller out (SPEC section 9's lockout guard).
    #[error("would lock out the caller: {0}")]
    WouldLockOutCaller(String),
    /// `If-Match` names a version that is no longer current.
    #[error("precondition failed: the resource changed")]
    PreconditionFailed,
    #[error("not ready: keys or store not loaded")]
    NotReady,
    #[error("out of sync with the shared store for longer than store.max_staleness_secs")]
    StoreStale,
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[from] StoreError),
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("signal refused: {0}")]
    Signal(SignalRefusal),
}

/// An identity-provider signal the gateway refuses, answered in its sender's protocol
/// (SPEC section 13). The description names the rule, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{protocol:?} {}: {description}", code.as_str())]
pub struct SignalRefusal {
    /// The protocol the signal came by.
    pub protocol: SignalProtocol,
    /// The RFC 8935 code.
    pub code: SignalCode,
    /// The rule broken, in words.
    pub description: String,
}

/// Which protocol a signal came by: it decides the shape of the error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalProtocol {
    /// OIDC Back-Channel Logout 1.0: `{"error": "invalid_request", "error_description"}`.
    BackchannelLogout,
    /// RFC 8935 push of a Security Event Token: `{"err", "description"}`.
    SharedSignals,
}

/// The RFC 8935 error codes (Back-Channel Logout answers every one as `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCode {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
    AuthenticationFailed,
    AccessDenied,
}

/// A browser navigation sent to `auth.login_url` instead of a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRedirect {
    pub location: String,
    /// `Set-Cookie` value that clears the token cookie, when the token came from it.
    pub clear_cookie: Option<String>,
}

/// Why an authenticated caller may not use an admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("the token does not carry an admin role")]
    NotAdmin,
    #[error("the token belongs to another workspace")]
    OtherWorkspace,
    #[error("the request's Origin is not in auth.allowed_origins")]
    CrossOrigin,
    #[error("the token has no user claim (sessions.user_claim)")]
    NoUser,
}

/// The upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("unreachable: {0}")]
    Unreachable(#[source] BoxError),
    #[error("no connection within upstream.connect_timeout_ms")]
    ConnectTimeout(#[source] BoxError),
    #[error("no response headers within upstream.response_timeout_secs")]
    Timeout,
}

// === impl GatewayError ===

impl GatewayError {
    /// A refused token without a login redirect (API clients, the admin API).
    pub fn unauthorized(reason: TokenError) -> Self {
        Self::Unauthorized {
            reason,
            redirect: None,
        }
    }

    /// The status code; every variant is listed so a new one must choose.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized {
                redirect: Some(_), ..
            } => StatusCode::FOUND,
            Self::Unauthorized { redirect: None, .. } => StatusCode::UNAUTHORIZED,
            Self::Policy {
                refusal: PolicyRefusal::IpNotAllowed,
                ..
            } => StatusCode::FORBIDDEN,
            Self::Policy {
                redirect: Some(_), ..
            } => StatusCode::FOUND,
            Self::Policy { redirect: None, .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WouldLockOutCaller(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::NotReady | Self::StoreStale | Self::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Upstream(UpstreamError::Unreachable(_)) => StatusCode::BAD_GATEWAY,
            Self::Upstream(UpstreamError::ConnectTimeout(_) | UpstreamError::Timeout) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::Signal(refusal) => refusal.status(),
        }
    }

    /// The rejection reason for logs and metrics, when a token was refused.
    pub fn reason(&self) -> Option<TokenError> {
        match self {
            Self::Unauthorized { reason, .. } => Some(*reason),
            Self::Policy { refusal, .. } => Some(refusal.into()),
            _ => None,
        }
    }

    /// The response the client sees.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match self {
            Self::Unauthorized {
                redirect: Some(redirect),
                ..
            } => redirect.into_response(),
            Self::Unauthorized {
                reason,
                redirect: None,
            } => unauthorized(reason),
            Self::Policy {
                refusal: PolicyRefusal::IpNotAllowed,
                ..
            } => body::json(
                status,
                &json!({ "error": "forbidden", "reason": "ip_not_allowed" }),
            ),
            Self::Policy {
                redirect: Some(redirect),
                ..
            } => redirect.into_response(),
            Self::Policy {
                refusal,
                redirect: None,
            } => insufficient_authentication(&refusal),
            Self::BadPath(bad) => error_json(status, "bad_request", Some(&bad.to_string())),
            Self::BadRequest(message) => error_json(status, "bad_request", Some(&message)),
            Self::Forbidden(why) => error_json(status, "forbidden", Some(&why.to_string())),
            Self::NotFound => error_json(status, "not_found", None),
            Self::MethodNotAllowed { allow } => {
                let mut response = error_json(status, "method_not_allowed", None);
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                response
            }
            Self::PayloadTooLarge => error_json(status, "payload_too_large", None),
            Self::WouldLockOutCaller(message) => body::json(
                status,
                &json!({
                    "error": "conflict",
                    "reason": "would_lock_out_caller",
                    "message": message,
                }),
            ),
            Self::PreconditionFailed => error_json(
                status,
                "precondition_failed",
                Some("the policy changed since it was read: read it again (its ETag) and retry"),
            ),
            Self::NotReady => error_json(status, "not_ready", None),
            Self::StoreStale => error_json(status, "store_stale", None),
            Self::StoreUnavailable(_) => error_json(status, "store_unavailable", None),
            Self::Upstream(UpstreamError::Unreachable(_)) => {
                error_json(status, "bad_gateway", None)
            }
            Self::Upstream(UpstreamError::ConnectTimeout(_) | UpstreamError::Timeout) => {
                error_json(status, "gateway_timeout", None)
            }
            Self::Signal(refusal) => refusal.into_response(),
        }
    }
}

fn error_json(status: StatusCode, error: &str, message: Option<&str>) -> Response<Body> {
    let value = match message {
        Some(message) => json!({ "error": error, "message": message }),
        None => json!({ "error": error }),
    };
    body::json(status, &value)
}

/// SPEC section 3: RFC 6750 challenge; no `error` attribute when no token was sent.
fn unauthorized(reason: TokenError) -> Response<Body> {
    let (body, challenge) = match reason {
        TokenError::Missing => (
            json!({ "error": "missing_token", "reason": "missing_token" }),
            String::from("Bearer realm=\"sessiongate\""),
        ),
        reason => (
            json!({ "error": "invalid_token", "reason": reason.as_str() }),
            format!(
                "Bearer realm=\"sessiongate\", error=\"invalid_token\", error_description=\"{}\"",
                reason.as_str()
            ),
        ),
    };
    let mut response = body::json(StatusCode::UNAUTHORIZED, &body);
    let challenge =
        HeaderValue::from_str(&challenge).expect("challenge is built from ASCII constants");
    response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    response
}

/// RFC 9470: the step-up challenge, naming `max_age` or `acr_values` when the rule that
/// failed has one.
fn insufficient_authentication(refusal: &PolicyRefusal) -> Response<Body> {
    let reason = refusal.as_str();
    let body = json!({ "error": "insufficient_user_authentication", "reason": reason });
    let mut response = body::json(StatusCode::UNAUTHORIZED, &body);
    let base = format!(
        "Bearer realm=\"sessiongate\", error=\"insufficient_user_authentication\", error_description=\"{reason}\""
    );
    let extra = match refusal {
        PolicyRefusal::TooOld { max_age_secs } => format!(", max_age=\"{max_age_secs}\""),
        PolicyRefusal::SignInMethod {
            acr_values: Some(values),
        } => format!(", acr_values=\"{}\"", quoted_string(values)),
        PolicyRefusal::SignInMethod { acr_values: None } | PolicyRefusal::IpNotAllowed => {
            String::new()
        }
    };
    // An admin's acr value that cannot go in a header at all is left out of the challenge.
    let challenge = HeaderValue::from_str(&format!("{base}{extra}"))
        .or_else(|_| HeaderValue::from_str(&base))
        .expect("the base challenge is ASCII");
    response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    response
}

/// The inside of an RFC 9110 quoted-string.
fn quoted_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

// === impl From<Refused> ===

impl From<Refused> for GatewayError {
    /// A refusal without a login redirect (API clients, the admin API).
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Token(reason) => Self::unauthorized(reason),
            Refused::Policy(refusal) => Self::Policy {
                refusal,
                redirect: None,
            },
        }
    }
}

// === impl SignalRefusal ===

impl SignalRefusal {
    /// 401 for a push without the right `Authorization` (RFC 8935 section 2.4); else 400.
    fn status(&self) -> StatusCode {
        use SignalCode::*;
        match (self.protocol, self.code) {
            (SignalProtocol::SharedSignals, AuthenticationFailed) => StatusCode::UNAUTHORIZED,
            (SignalProtocol::SharedSignals, InvalidRequest | InvalidKey | InvalidIssuer)
            | (SignalProtocol::SharedSignals, InvalidAudience | AccessDenied)
            | (SignalProtocol::BackchannelLogout, _) => StatusCode::BAD_REQUEST,
        }
    }

    fn into_response(self) -> Response<Body> {
        let value = match self.protocol {
            SignalProtocol::BackchannelLogout => {
                json!({ "error": "invalid_request", "error_description": self.description })
            }
            SignalProtocol::SharedSignals => {
                json!({ "err": self.code.as_str(), "description": self.description })
            }
        };
        body::json(self.status(), &value)
    }
}

// === impl SignalCode ===

impl SignalCode {
    /// The wire name (RFC 8935 section 2.3).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AuthenticationFailed => "authentication_failed",
            Self::AccessDenied => "access_denied",
        }
    }
}

// === impl UpstreamError ===

impl UpstreamError {
    /// Classifies a client error: a connect that timed out is a timeout (504, SPEC
    /// section 4), everything else means the upstream is unreachable (502).
    pub fn from_client(error: impl Into<BoxError>) -> Self {
        let error = error.into();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
        while let Some(cause) = source {
            if cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return Self::ConnectTimeout(error);
            }
            source = cause.source();
        }
        Self::Unreachable(error)
    }

    /// Every `kind()`, for metrics that start at 0.
    pub const KINDS: [&'static str; 3] = ["unreachable", "connect_timeout", "timeout"];

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::ConnectTimeout(_) => "connect_timeout",
            Self::Timeout => "timeout",
        }
    }
}

// === impl LoginRedirect ===

impl LoginRedirect {
    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::FOUND;
        let headers = response.headers_mut();
        // Built from a configured URL plus a percent-encoded path, so always a valid value.
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            headers.insert(LOCATION, location);
        }
        if let Some(cookie) = self
            .clear_cookie
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(SET_COOKIE, cookie);
        }
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        response
    }
}
