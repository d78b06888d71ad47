//! Scheduled logouts (SPEC section 10): `"at"` on logout-all, and
//! `DELETE .../scheduled-logout`.
//!
//! Scheduling commits the schedule with its `logout_scheduled` record and nothing else;
//! the sessions room applies it at its time.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::body::{self, LogoutBody};
use super::logout::{Origin, audit_record};
use crate::auth::{Caller, session_id_prefix};
use crate::clock;
use crate::sessions;
use crate::state::AppState;
use crate::store::{Action, Change, Effect, ScheduledLogout, Scheduler, Scope, StoreError};
use crate::web::{self, Body, ConnInfo, GatewayError};

/// How far ahead a logout may be scheduled.
const MAX_AHEAD_SECS: f64 = 90.0 * 86_400.0;

/// Commits a logout-all scheduled for `at` (the body's text), replacing any pending one;
/// 202 once committed.
pub(super) async fn schedule(
    state: &AppState,
    scope: Scope,
    caller: &Caller,
    body: LogoutBody,
    origin: Origin,
    at: &Value,
) -> Result<Response<Body>, GatewayError> {
    let Scope::Workspace(workspace) = scope else {
        return Err(bad_request("at is only accepted by .../logout-all"));
    };
    let now = clock::now();
    let at = scheduled_time(at, now)?;
    let mut audit = audit_record(
        Action::LogoutScheduled,
        &Scope::Workspace(workspace.clone()),
        caller,
        &body,
        &origin,
        now,
    );
    audit.scheduled_at = Some(clock::rfc3339_exact_millis(at));
    let margin = state.config.sessions.invalidation_margin_secs;
    let pending = ScheduledLogout {
        at,
        valid_after: sessions::cutoff_at(at, margin),
        audit_id: audit.id.clone(),
        scheduler: scheduler(caller, origin),
        category: body.category,
        ticket: body.ticket,
        reason: body.reason,
    };
    let effect = Effect::Schedule {
        workspace: workspace.clone(),
        pending: Some(Box::new(pending)),
    };
    let change = Change {
        effects: vec![effect],
        audit,
    };
    let committed = state.sessions.commit(&state.store, change).await?;
    let answer = json!({
        "workspace": workspace,
        "status": "scheduled",
        "scheduled_at": clock::rfc3339_exact_millis(at),
        "audit_id": committed.audit.id,
    });
    Ok(web::json(StatusCode::ACCEPTED, &answer))
}

/// `DELETE .../scheduled-logout`: cancels the pending logout, 404 when none is.
pub(super) async fn cancel(
    state: &AppState,
    workspace: &str,
    caller: &Caller,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let origin = Origin::of(state, &req, conn);
    let body = body::logout_body(req).await?;
    if body.subject.is_some() || body.at.is_some() {
        return Err(bad_request(
            "a cancel takes only reason, category and ticket",
        ));
    }
    let now = clock::now();
    // Its time has come: it is being applied, too late to cancel.
    let pending = state
        .sessions
        .scheduled_logout(workspace)
        .filter(|pending| now < pending.at)
        .ok_or(GatewayError::NotFound)?;
    let scope = Scope::Workspace(workspace.to_string());
    let mut audit = audit_record(Action::LogoutCancelled, &scope, caller, &body, &origin, now);
    audit.scheduled_at = Some(clock::rfc3339_exact_millis(pending.at));
    let effect = Effect::Schedule {
        workspace: workspace.to_string(),
        pending: None,
    };
    let change = Change {
        effects: vec![effect],
        audit,
    };
    let committed = match state.sessions.commit(&state.store, change).await {
        // Applied, cancelled or replaced elsewhere since memory last heard.
        Err(StoreError::NotPending) => return Err(GatewayError::NotFound),
        committed => committed?,
    };
    let answer = json!({
        "workspace": workspace,
        "cancelled": true,
        "audit_id": committed.audit.id,
    });
    Ok(web::json(StatusCode::OK, &answer))
}

/// The body's `at`: RFC 3339, after `now` and at most 90 days ahead.
fn scheduled_time(at: &Value, now: f64) -> Result<f64, GatewayError> {
    let at = at
        .as_str()
        .and_then(clock::parse_rfc3339)
        .ok_or_else(|| bad_request("at must be an RFC 3339 time, such as 2026-12-24T18:00:00Z"))?;
    if at <= now {
        return Err(bad_request("at must be in the future"));
    }
    if at > now + MAX_AHEAD_SECS {
        return Err(bad_request("at must be at most 90 days ahead"));
    }
    // Held to the millisecond, as answers show it.
    Ok((at * 1000.0).round() / 1000.0)
}

/// What the logout needs of the caller's token when it applies.
fn scheduler(caller: &Caller, origin: Origin) -> Scheduler {
    let claims = &caller.claims;
    Scheduler {
        subject: claims.subject.clone(),
        session_id: claims.session_id.clone(),
        actor_session: session_id_prefix(&claims.session_id).to_string(),
        expires_at: claims.expires_at,
        time: claims.session_time,
        user: claims.user.clone(),
        user_folded: claims.user_folded.clone(),
        sid: claims.sid.clone(),
        client_ip: origin.client_ip,
        user_agent: origin.user_agent,
        claims: claims.payload.clone(),
    }
}

fn bad_request(message: &str) -> GatewayError {
    GatewayError::BadRequest(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_times_must_be_ahead_but_not_too_far() {
        let now = 1_796_212_800.0;
        assert_eq!(
            scheduled_time(&json!("2026-12-02T12:00:01Z"), now).ok(),
            Some(now + 1.0)
        );
        let ninety_days = json!("2027-03-02T12:00:00Z");
        assert_eq!(
            scheduled_time(&ninety_days, now).ok(),
            Some(now + MAX_AHEAD_SECS)
        );
        for bad in [
            json!("2026-12-02T12:00:00Z"),
            json!("2026-12-02T11:59:59Z"),
            json!("2027-03-02T12:00:00.001Z"),
            json!("soon"),
            json!(null),
            json!(1_796_212_900),
        ] {
            let Err(GatewayError::BadRequest(message)) = scheduled_time(&bad, now) else {
                panic!("{bad} accepted");
            };
            assert!(message.starts_with("at "), "{message}");
        }
    }
}
