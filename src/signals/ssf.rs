//! Shared Signals (SSF 1.0) push delivery (RFC 8935; Okta sends it): one Security Event
//! Token (RFC 8417) per request, carrying one CAEP or RISC event.

use http::Request;
use http::header::AUTHORIZATION;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::Signals;
use super::claims::{self, Clock, MAX_SIGNAL_BYTES};
use super::commit::{self, Accepted, Outcome, Sender, Target};
use super::issuers::Issuer;
use super::refusal::{Failure, Refusal};
use super::subject;
use crate::auth::Jws;
use crate::state::AppState;
use crate::store::Action;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// Events that end every session of their subject.
const REVOKING: [(&str, &str); 4] = [
    (CAEP, "session-revoked"),
    (RISC, "account-disabled"),
    (RISC, "account-purged"),
    (RISC, "account-credential-change-required"),
];
/// Ends the subject's sessions when the credential was revoked or deleted.
const CREDENTIAL_CHANGE: &str = "credential-change";
/// The longest `reason_admin` kept in the audit record, as for an admin's reason.
const MAX_REASON_CHARS: usize = 1024;

/// A Security Event Token that passed every rule.
struct Set<'a> {
    jti: &'a str,
    iat: f64,
    /// The one event's type URI and payload.
    uri: &'a str,
    event: &'a Map<String, Value>,
    /// RFC 9493 `sub_id`, which takes precedence over the event's own `subject`.
    sub_id: Option<&'a Value>,
}

/// Checks the push (content type, size, authorization) and the SET, then commits what its
/// event asks for.
pub(super) async fn receive(
    signals: &Signals,
    state: &AppState,
    req: Request<Incoming>,
    sender: &Sender,
) -> Result<Outcome, Failure> {
    claims::content_type(req.headers(), "application/secevent+jwt")?;
    let authorization = req.headers().get(AUTHORIZATION).cloned();
    let body = claims::read(req.into_body()).await?;
    let token = std::str::from_utf8(&body).map_err(|_| Refusal::Malformed)?;
    let jws = Jws::parse(token.trim(), MAX_SIGNAL_BYTES).map_err(|_| Refusal::Malformed)?;
    let issuer = signals.issuers.find(&jws.payload)?;
    issuer.check_push(authorization.as_ref())?;
    claims::check_type(&jws.header, &["secevent+jwt"], true)?;
    signals.issuers.verify(issuer, &jws).await?;
    let clock = signals.clock(state);
    let ttl = state.config.sessions.revoked_sid_ttl_secs;
    let set = Set::read(&jws.payload, issuer, clock, ttl)?;
    // Past this, `iat` is older than the TTL and a replay is refused anyway.
    let forget_after = set.iat.max(clock.now).ceil() as i64 + ttl + 1;
    let accepted = Accepted {
        event: Some(set.uri.to_string()),
        reason: set.reason(),
        target: set.target(issuer)?,
        ..Accepted::signed(
            Action::SsfEvent,
            &issuer.config.issuer,
            set.jti,
            forget_after,
        )
    };
    Ok(commit::commit(state, accepted, sender).await?)
}

// === impl Set ===

impl<'a> Set<'a> {
    /// RFC 8417 and SSF: `aud`, `jti`, `iat` (neither in the future nor older than
    /// `ttl`, so a captured SET cannot be replayed later), no `sub` or `exp`, and exactly
    /// one event.
    fn read(
        claims: &'a Map<String, Value>,
        issuer: &Issuer,
        clock: Clock,
        ttl: i64,
    ) -> Result<Self, Refusal> {
        issuer.check_audience(claims)?;
        let jti = claims::required_string(claims, "jti")?;
        let iat = claims::issued_at(claims, clock)?;
        if clock.now - iat > ttl as f64 {
            return Err(Refusal::TooOld);
        }
        for forbidden in ["sub", "exp"] {
            if claims.contains_key(forbidden) {
                return Err(Refusal::Forbidden(forbidden));
            }
        }
        let events = claims::events(claims, "exactly one event")?;
        let mut events = events.iter();
        let (uri, event) = match (events.next(), events.next()) {
            (Some((uri, Value::Object(event))), None) => (uri.as_str(), event),
            _ => return Err(Refusal::Events("exactly one event")),
        };
        Ok(Self {
            jti,
            iat,
            uri,
            event,
            sub_id: claims.get("sub_id"),
        })
    }

    /// Revoking events move their subject's cutoff to now (the gateway's clock: a late
    /// delivery is never more lenient); verification and every other event change nothing.
    fn target(&self, issuer: &Issuer) -> Result<Target, Refusal> {
        if !self.revokes()? {
            return Ok(Target::Nothing);
        }
        let subject = self
            .sub_id
            .or_else(|| self.event.get("subject"))
            .ok_or(Refusal::NoSubject)?;
        subject::resolve(subject, &issuer.config)
    }

    fn revokes(&self) -> Result<bool, Refusal> {
        let named = |(base, name): &(&str, &str)| {
            self.uri
                .strip_prefix(base)
                .is_some_and(|rest| rest == *name)
        };
        if REVOKING.iter().any(named) {
            return Ok(true);
        }
        if !named(&(CAEP, CREDENTIAL_CHANGE)) {
            return Ok(false);
        }
        match self.event.get("change_type") {
            Some(Value::String(change)) => Ok(matches!(change.as_str(), "revoke" | "delete")),
            Some(_) => Err(Refusal::ClaimType("change_type")),
            None => Err(Refusal::Missing("change_type")),
        }
    }

    /// CAEP's `reason_admin`: a string, or texts by language (English first).
    fn reason(&self) -> Option<String> {
        let text = match self.event.get("reason_admin")? {
            Value::String(text) => text,
            Value::Object(by_language) => by_language
                .get("en")
                .or_else(|| by_language.values().next())?
                .as_str()?,
            _ => return None,
        };
        Some(text.chars().take(MAX_REASON_CHARS).collect())
    }
}
