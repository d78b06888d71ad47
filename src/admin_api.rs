//! The admin API under `admin.path_prefix`: log users out, read sessions and audit.
//!
//! Served on the main listener, never forwarded upstream. A logout answers 200 only after
//! the store has committed the new cutoff and its audit record.

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;

use crate::audit::{Action, AuditRecord, Category};
use crate::body::{self, Body};
use crate::clock;
use crate::error::{Forbidden, GatewayError};
use crate::gateway::{Caller, ConnInfo, authenticate, open_gate};
use crate::metrics::ActionLabels;
use crate::sessions::{Preserved, Scope};
use crate::state::AppState;
use crate::store::{Change, Committed};
use crate::token::{TokenSource, session_id_prefix};

const MAX_BODY_BYTES: usize = 16 * 1024;
/// How much of an oversized body is read and dropped before answering 413.
const DRAIN_BYTES: usize = 1024 * 1024;
const MAX_REASON_CHARS: usize = 1024;
const MAX_TICKET_CHARS: usize = 256;
const DEFAULT_AUDIT_LIMIT: usize = 50;
const MAX_AUDIT_LIMIT: usize = 1000;

/// An admin endpoint, parsed from the path after the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    LogoutAll { workspace: String },
    UserLogout { workspace: String, subject: String },
    LogoutOthers,
    Sessions { workspace: String },
    Audit { workspace: String },
}

/// The optional JSON body of every logout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    reason: Option<String>,
    category: Option<Category>,
    ticket: Option<String>,
}

/// Everything one logout needs besides the store.
struct Logout<'a> {
    action: Action,
    scope: Scope,
    caller: &'a Caller,
    preserve_caller: bool,
    body: LogoutBody,
    client_ip: String,
    user_agent: Option<String>,
}

/// Answers a request under the admin prefix.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let rest = &req.uri().path()[state.config.admin_prefix.len()..];
    let route = Route::parse(rest, req.method())?;
    open_gate(state)?;
    let caller = authenticate(state, req.headers())
        .await
        .map_err(GatewayError::unauthorized)?;
    let client_ip = crate::client_ip::client_ip(
        conn.peer,
        req.headers(),
        &state.config.server.trusted_proxies,
    );
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match route {
        Route::Sessions { workspace } => {
            require_admin(state, &caller, &workspace)?;
            Ok(sessions(state, &workspace))
        }
        Route::Audit { workspace } => {
            require_admin(state, &caller, &workspace)?;
            let limit = audit_limit(req.uri().query())?;
            let events = state.store.audit(&workspace, limit).await?;
            Ok(body::json(StatusCode::OK, &json!({ "events": events })))
        }
        route => {
            check_origin(state, &req, &caller)?;
            let (action, scope, preserve_caller) = logout_target(state, route, &caller)?;
            let body = read_body(req).await?;
            let client_ip = client_ip.to_string();
            logout(
                state,
                Logout {
                    action,
                    scope,
                    caller: &caller,
                    preserve_caller,
                    body,
                    client_ip,
                    user_agent,
                },
            )
            .await
        }
    }
}

/// Who may do which logout, and whose session survives it.
fn logout_target(
    state: &AppState,
    route: Route,
    caller: &Caller,
) -> Result<(Action, Scope, bool), GatewayError> {
    match route {
        Route::LogoutAll { workspace } => {
            require_admin(state, caller, &workspace)?;
            Ok((Action::LogoutAll, Scope::Workspace(workspace), true))
        }
        Route::UserLogout { workspace, subject } => {
            require_admin(state, caller, &workspace)?;
            let own = caller.claims.subject.as_deref() == Some(subject.as_str());
            Ok((Action::UserLogout, Scope::User { workspace, subject }, own))
        }
        Route::LogoutOthers => {
            let subject = caller
                .claims
                .subject
                .clone()
                .ok_or(GatewayError::Forbidden(Forbidden::NoSubject))?;
            let workspace = caller.claims.workspace.clone();
            Ok((
                Action::LogoutOthers,
                Scope::User { workspace, subject },
                true,
            ))
        }
        Route::Sessions { .. } | Route::Audit { .. } => {
            unreachable!("read routes are answered before")
        }
    }
}

async fn logout(state: &AppState, logout: Logout<'_>) -> Result<Response<Body>, GatewayError> {
    let Logout {
        action,
        scope,
        caller,
        preserve_caller,
        body,
        client_ip,
        user_agent,
    } = logout;
    let now = clock::now();
    let claims = &caller.claims;
    let preserved = preserve_caller.then(|| Preserved {
        session_id: claims.session_id.clone(),
        expires_at: claims.expires_at,
    });
    let (workspace, subject) = match &scope {
        Scope::Workspace(ws) => (ws.clone(), None),
        Scope::User { workspace, subject } => (workspace.clone(), Some(subject.clone())),
    };
    let change = Change {
        scope: scope.clone(),
        valid_after: now.floor() as i64 + 1 + state.config.sessions.invalidation_margin_secs,
        preserved,
    };
    let record = AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: clock::rfc3339(now),
        workspace,
        action,
        subject,
        actor_subject: claims.subject.clone(),
        actor_session: session_id_prefix(&claims.session_id).to_string(),
        category: body.category,
        ticket: body.ticket,
        reason: body.reason,
        client_ip,
        user_agent,
        sessions_valid_after: 0,
    };
    let Committed {
        cutoff,
        audit: record,
        notified,
    } = state
        .store
        .commit(change, record)
        .await
        .inspect_err(|error| {
            tracing::error!(%error, action = action.as_str(), "logout not committed");
        })?;
    state.sessions.apply(&scope, cutoff.clone());
    state
        .metrics
        .logouts
        .get_or_create(&ActionLabels {
            action: action.as_str(),
        })
        .inc();
    log_audit(&record);
    let mut answer = json!({
        "workspace": record.workspace,
        "sessions_valid_after": cutoff.valid_after,
        "invalidated_at": record.at,
        "preserved_session": cutoff.preserved.as_ref().map(|p| session_id_prefix(&p.session_id)),
        "audit_id": record.id,
    });
    if let Some(subject) = record.subject {
        answer["subject"] = json!(subject);
    }
    if let Some(notified) = notified {
        answer["instances_notified"] = json!(notified);
    }
    Ok(body::json(StatusCode::OK, &answer))
}

/// One `audit` event per logout, with every field of the record.
fn log_audit(record: &AuditRecord) {
    tracing::info!(
        target: "audit",
        audit_id = record.id,
        at = record.at,
        workspace = record.workspace,
        action = record.action.as_str(),
        subject = record.subject,
        actor_subject = record.actor_subject,
        actor_session = record.actor_session,
        category = record.category.map(Category::as_str),
        ticket = record.ticket,
        reason = record.reason,
        client_ip = record.client_ip,
        user_agent = record.user_agent,
        sessions_valid_after = record.sessions_valid_after,
        "{} committed",
        record.action.as_str(),
    );
}

fn sessions(state: &AppState, workspace: &str) -> Response<Body> {
    let cutoff = state.sessions.get(&Scope::Workspace(workspace.to_string()));
    let now = clock::now();
    let answer = json!({
        "workspace": workspace,
        "sessions_valid_after": cutoff.as_ref().map(|c| c.valid_after),
        "preserved_session": cutoff.as_ref().and_then(|c| c.preserved_at(now)).map(|p| session_id_prefix(&p.session_id)),
    });
    body::json(StatusCode::OK, &answer)
}

fn require_admin(state: &AppState, caller: &Caller, workspace: &str) -> Result<(), GatewayError> {
    if caller.claims.workspace != workspace {
        return Err(GatewayError::Forbidden(Forbidden::OtherWorkspace));
    }
    let admin_roles = &state.config.jwt.admin_roles;
    if !caller
        .claims
        .roles
        .iter()
        .any(|role| admin_roles.contains(role))
    {
        return Err(GatewayError::Forbidden(Forbidden::NotAdmin));
    }
    Ok(())
}

/// CSRF defence for cookie tokens: `Origin` (else `Referer`'s origin) must be allowed.
fn check_origin(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
) -> Result<(), GatewayError> {
    if caller.source != TokenSource::Cookie {
        return Ok(());
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    let origin = match header(http::header::ORIGIN) {
        Some(origin) => Some(origin.trim_end_matches('/').to_ascii_lowercase()),
        None => header(http::header::REFERER).and_then(referer_origin),
    };
    let allowed = &state.config.auth.allowed_origins;
    match origin {
        Some(origin) if allowed.contains(&origin) => Ok(()),
        _ => Err(GatewayError::Forbidden(Forbidden::CrossOrigin)),
    }
}

fn referer_origin(referer: &str) -> Option<String> {
    let uri: http::Uri = referer.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?).to_ascii_lowercase())
}

async fn read_body(req: Request<Incoming>) -> Result<LogoutBody, GatewayError> {
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| GatewayError::BadRequest("could not read the request body".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        // Past the limit, keep reading (and dropping) a little longer before the 413: a
        // client still sending when the connection closes would never see the answer.
        if received > DRAIN_BYTES {
            break;
        }
        if received <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&data);
        }
    }
    if received > MAX_BODY_BYTES {
        return Err(GatewayError::PayloadTooLarge);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(LogoutBody::default());
    }
    let body: LogoutBody = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(GatewayError::BadRequest(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if body
        .ticket
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TICKET_CHARS)
    {
        return Err(GatewayError::BadRequest(format!(
            "ticket is longer than {MAX_TICKET_CHARS} characters"
        )));
    }
    Ok(body)
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

// === impl Route ===

impl Route {
    /// Maps the path after the prefix to a route: unknown paths 404, wrong methods 405.
    fn parse(rest: &str, method: &Method) -> Result<Self, GatewayError> {
        let segments: Vec<String> = rest
            .trim_start_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (route, allow) = match segments.as_slice() {
            ["v1", "workspaces", ws, "logout-all"] if !ws.is_empty() => (
                Self::LogoutAll {
                    workspace: ws.to_string(),
                },
                "POST",
            ),
            ["v1", "workspaces", ws, "users", sub, "logout"]
                if !ws.is_empty() && !sub.is_empty() =>
            {
                (
                    Self::UserLogout {
                        workspace: ws.to_string(),
                        subject: sub.to_string(),
                    },
                    "POST",
                )
            }
            ["v1", "me", "logout-others"] => (Self::LogoutOthers, "POST"),
            ["v1", "workspaces", ws, "sessions"] if !ws.is_empty() => (
                Self::Sessions {
                    workspace: ws.to_string(),
                },
                "GET",
            ),
            ["v1", "workspaces", ws, "audit"] if !ws.is_empty() => (
                Self::Audit {
                    workspace: ws.to_string(),
                },
                "GET",
            ),
            _ => return Err(GatewayError::NotFound),
        };
        if method.as_str() != allow {
            return Err(GatewayError::MethodNotAllowed { allow });
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_segments_and_check_methods() {
        let route =
            Route::parse("/v1/workspaces/acme/users/auth0%7C42/logout", &Method::POST).unwrap();
        assert_eq!(
            route,
            Route::UserLogout {
                workspace: "acme".into(),
                subject: "auth0|42".into()
            }
        );
        assert!(matches!(
            Route::parse("/v1/workspaces/acme/logout-all", &Method::GET),
            Err(GatewayError::MethodNotAllowed { allow: "POST" })
        ));
        assert!(matches!(
            Route::parse("/v1/workspaces/acme/audit", &Method::POST),
            Err(GatewayError::MethodNotAllowed { allow: "GET" })
        ));
        assert!(matches!(
            Route::parse("/v1/workspaces//logout-all", &Method::POST),
            Err(GatewayError::NotFound)
        ));
        assert!(matches!(
            Route::parse("", &Method::GET),
            Err(GatewayError::NotFound)
        ));
    }

    #[test]
    fn audit_limit_defaults_and_clamps() {
        assert_eq!(audit_limit(None).unwrap(), 50);
        assert_eq!(audit_limit(Some("limit=5")).unwrap(), 5);
        assert_eq!(audit_limit(Some("x=1&limit=5000")).unwrap(), 1000);
        assert!(audit_limit(Some("limit=-1")).is_err());
    }

    #[test]
    fn referer_gives_its_origin() {
        assert_eq!(
            referer_origin("https://App.example.com:8443/a/b?c"),
            Some("https://app.example.com:8443".into())
        );
        assert_eq!(referer_origin("/relative"), None);
    }
}
