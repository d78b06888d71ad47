//! The read endpoints: the caller itself, a workspace's session state, its activity and
//! its audit trail.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::access;
use crate::auth::{Caller, session_id_prefix};
use crate::clock;
use crate::sessions::WINDOW_SECS;
use crate::state::AppState;
use crate::store::Scope;
use crate::web::{self, Body, ConnInfo, GatewayError};

const DEFAULT_AUDIT_LIMIT: usize = 50;
const MAX_AUDIT_LIMIT: usize = 1000;

/// `GET .../sessions`: the cutoff in force and the session it preserves.
pub(super) fn sessions(state: &AppState, workspace: &str) -> Response<Body> {
    let cutoff = state.sessions.get(&Scope::Workspace(workspace.to_string()));
    let preserved = cutoff
        .as_ref()
        .and_then(|c| c.preserved_at(clock::now()))
        .map(|p| session_id_prefix(&p.session_id));
    let scheduled = state.sessions.scheduled_logout(workspace).map(|logout| {
        json!({
            "at": clock::rfc3339_exact_millis(logout.at),
            "audit_id": logout.audit_id,
            "actor_subject": logout.scheduler.subject,
        })
    });
    let answer = json!({
        "workspace": workspace,
        "sessions_valid_after": cutoff.as_ref().map(|c| c.valid_after),
        "preserved_session": preserved,
        "scheduled_logout": scheduled,
    });
    web::json(StatusCode::OK, &answer)
}

/// `GET .../v1/me`: who the token is, for a page that cannot read an `HttpOnly` cookie.
pub(super) fn me<B>(
    state: &AppState,
    caller: &Caller,
    req: &Request<B>,
    conn: &ConnInfo,
) -> Response<Body> {
    let claims = &caller.claims;
    let trusted = &state.config.server.trusted_proxies;
    let answer = json!({
        "workspace": claims.workspace,
        "subject": claims.subject,
        "session": session_id_prefix(&claims.session_id),
        "is_admin": access::is_admin(state, caller),
        "client_ip": web::client_ip(conn.peer, req.headers(), trusted).to_string(),
    });
    web::json(StatusCode::OK, &answer)
}

/// `GET .../activity`: distinct sessions and users of the last hour, fleet-wide.
pub(super) async fn activity(
    state: &AppState,
    workspace: &str,
) -> Result<Response<Body>, GatewayError> {
    let counted = state.sessions.activity(&state.store, workspace).await?;
    let answer = json!({
        "workspace": workspace,
        "window_secs": WINDOW_SECS,
        "active_sessions": counted.sessions,
        "active_users": counted.users,
    });
    Ok(web::json(StatusCode::OK, &answer))
}

/// `GET .../audit?limit=N`: the newest records first, from the store.
pub(super) async fn audit(
    state: &AppState,
    workspace: &str,
    query: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let limit = audit_limit(query)?;
    let events = state.store.audit(workspace, limit).await?;
    Ok(web::json(StatusCode::OK, &json!({ "events": events })))
}

/// `limit=N`: default 50, clamped to 1000.
fn audit_limit(query: Option<&str>) -> Result<usize, GatewayError> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="));
    match value {
        None => Ok(DEFAULT_AUDIT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .map(|n| n.min(MAX_AUDIT_LIMIT))
            .map_err(|_| GatewayError::BadRequest("limit must be a non-negative integer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_limit_defaults_and_clamps() {
        assert_eq!(audit_limit(None).unwrap(), 50);
        assert_eq!(audit_limit(Some("limit=5")).unwrap(), 5);
        assert_eq!(audit_limit(Some("x=1&limit=5000")).unwrap(), 1000);
        assert!(audit_limit(Some("limit=-1")).is_err());
    }
}
