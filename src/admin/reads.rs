//! The read endpoints: a workspace's session state and its audit trail.

use http::{Response, StatusCode};
use serde_json::json;

use crate::auth::session_id_prefix;
use crate::clock;
use crate::state::AppState;
use crate::store::Scope;
use crate::web::{self, Body, GatewayError};

const DEFAULT_AUDIT_LIMIT: usize = 50;
const MAX_AUDIT_LIMIT: usize = 1000;

/// `GET .../sessions`: the cutoff in force and the session it preserves.
pub(super) fn sessions(state: &AppState, workspace: &str) -> Response<Body> {
    let cutoff = state.sessions.get(&Scope::Workspace(workspace.to_string()));
    let preserved = cutoff
        .as_ref()
        .and_then(|c| c.preserved_at(clock::now()))
        .map(|p| session_id_prefix(&p.session_id));
    let answer = json!({
        "workspace": workspace,
        "sessions_valid_after": cutoff.as_ref().map(|c| c.valid_after),
        "preserved_session": preserved,
    });
    web::json(StatusCode::OK, &answer)
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
