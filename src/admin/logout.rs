//! The logouts: logout-all, one user, and "sign out my other sessions".
//!
//! Each becomes one cutoff change with its audit record, committed through the sessions
//! room's write path; the answer goes out only after the commit.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::access;
use super::body::{self, LogoutBody};
use super::route::LogoutRoute;
use super::schedule;
use crate::auth::{Caller, session_id_prefix};
use crate::clock;
use crate::sessions;
use crate::state::AppState;
use crate::store::{Action, AuditRecord, Change, Committed, Preserved, Scope};
use crate::web::{self, Body, ConnInfo, Forbidden, GatewayError};

/// Who a logout applies to, once the caller may do it.
enum Target {
    Workspace(String),
    /// A user of the workspace; `None` until the body names it.
    User {
        workspace: String,
        subject: Option<String>,
    },
    /// The caller's own user (logout-others).
    Own {
        workspace: String,
        user: String,
    },
}

/// Where the request came from, for the audit record.
pub(super) struct Origin {
    pub(super) client_ip: String,
    pub(super) user_agent: Option<String>,
}

/// Authorizes, reads the body, commits and answers one logout.
pub(super) async fn handle(
    state: &AppState,
    route: LogoutRoute,
    caller: &Caller,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let target = authorize(state, route, caller)?;
    let origin = Origin::of(state, &req, conn);
    let mut body = body::logout_body(req).await?;
    let (action, scope) = target.resolve(body.subject.take())?;
    if let Some(at) = body.at.take() {
        return schedule::schedule(state, scope, caller, body, origin, &at).await;
    }
    let preserve = match &scope {
        Scope::Workspace(_) => true,
        Scope::User { subject, .. } => caller.claims.user.as_ref() == Some(subject),
        // Only identity-provider signals set subject-wide cutoffs, and they preserve none.
        Scope::Subject(_) => false,
    };
    let now = clock::now();
    let valid_after = sessions::cutoff_at(now, state.config.sessions.invalidation_margin_secs);
    let record = audit_record(action, &scope, caller, &body, &origin, now);
    let preserved = preserve.then(|| preserved(caller));
    let change = Change::cutoff(scope, valid_after, preserved, record);
    let committed = state.sessions.commit(&state.store, change).await?;
    Ok(answer(committed))
}

/// Who may do which logout (SPEC section 2).
fn authorize(
    state: &AppState,
    route: LogoutRoute,
    caller: &Caller,
) -> Result<Target, GatewayError> {
    match route {
        LogoutRoute::All { workspace } => {
            access::require_admin(state, caller, &workspace)?;
            Ok(Target::Workspace(workspace))
        }
        LogoutRoute::User { workspace, subject } => {
            access::require_admin(state, caller, &workspace)?;
            let subject = Some(subject);
            Ok(Target::User { workspace, subject })
        }
        LogoutRoute::UserInBody { workspace } => {
            access::require_admin(state, caller, &workspace)?;
            Ok(Target::User {
                workspace,
                subject: None,
            })
        }
        LogoutRoute::Others => {
            let claims = &caller.claims;
            let user = claims
                .user
                .clone()
                .ok_or(GatewayError::Forbidden(Forbidden::NoUser))?;
            let workspace = claims.workspace.clone();
            Ok(Target::Own { workspace, user })
        }
    }
}

/// The caller's own session, spared until its token expires.
pub(super) fn preserved(caller: &Caller) -> Preserved {
    Preserved {
        session_id: caller.claims.session_id.clone(),
        expires_at: caller.claims.expires_at,
    }
}

/// The audit record of an admin's change, at `now`.
pub(super) fn audit_record(
    action: Action,
    scope: &Scope,
    caller: &Caller,
    body: &LogoutBody,
    origin: &Origin,
    now: f64,
) -> AuditRecord {
    let claims = &caller.claims;
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: clock::rfc3339(now),
        workspace: scope.workspace().map(str::to_string),
        action,
        subject: scope.subject().map(str::to_string),
        sid: None,
        event: None,
        actor_subject: claims.subject.clone(),
        actor_session: session_id_prefix(&claims.session_id).to_string(),
        category: body.category,
        ticket: body.ticket.clone(),
        reason: body.reason.clone(),
        client_ip: origin.client_ip.clone(),
        user_agent: origin.user_agent.clone(),
        sessions_valid_after: None,
        scheduled_at: None,
        policy_before: None,
        policy_after: None,
    }
}

/// The 200 body of SPEC section 2.
fn answer(committed: Committed) -> Response<Body> {
    let cutoff = committed.cutoff();
    let preserved = cutoff
        .and_then(|c| c.preserved.as_ref())
        .map(|p| session_id_prefix(&p.session_id));
    let audit = &committed.audit;
    let mut answer = json!({
        "workspace": audit.workspace,
        "sessions_valid_after": cutoff.map(|c| c.valid_after),
        "invalidated_at": audit.at,
        "preserved_session": preserved,
        "audit_id": audit.id,
    });
    if let Some(subject) = &audit.subject {
        answer["subject"] = json!(subject);
    }
    if let Some(notified) = committed.notified {
        answer["instances_notified"] = json!(notified);
    }
    web::json(StatusCode::OK, &answer)
}

// === impl Target ===

impl Target {
    /// The action and scope, taking the user from the body where the route wants it
    /// there (and refusing a body `subject` anywhere else).
    fn resolve(self, from_body: Option<String>) -> Result<(Action, Scope), GatewayError> {
        let refuse = |message: &str| Err(GatewayError::BadRequest(message.into()));
        match (self, from_body) {
            (
                Self::User {
                    workspace,
                    subject: None,
                },
                Some(subject),
            ) if !subject.is_empty() => {
                Ok((Action::UserLogout, Scope::User { workspace, subject }))
            }
            (Self::User { subject: None, .. }, _) => {
                refuse("subject: a non-empty user name is required")
            }
            (_, Some(_)) => refuse("subject is only accepted by .../users/logout"),
            (Self::Workspace(workspace), None) => {
                Ok((Action::LogoutAll, Scope::Workspace(workspace)))
            }
            (
                Self::User {
                    workspace,
                    subject: Some(subject),
                },
                None,
            ) => Ok((Action::UserLogout, Scope::User { workspace, subject })),
            (Self::Own { workspace, user }, None) => {
                let scope = Scope::User {
                    workspace,
                    subject: user,
                };
                Ok((Action::LogoutOthers, scope))
            }
        }
    }
}

// === impl Origin ===

impl Origin {
    pub(super) fn of<B>(state: &AppState, req: &Request<B>, conn: &ConnInfo) -> Self {
        let trusted = &state.config.server.trusted_proxies;
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Self {
            client_ip: web::client_ip(conn.peer, req.headers(), trusted).to_string(),
            user_agent,
        }
    }
}
