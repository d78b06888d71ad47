//! `GET` and `PUT {prefix}/v1/workspaces/{ws}/policy` (SPEC section 9): read the policy
//! with its `ETag`, and replace it whole, guarded against locking the caller out and
//! against overwriting another admin's edit (`If-Match`).

use http::header::{ETAG, HeaderValue, IF_MATCH};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::body::{self, LogoutBody, MAX_REASON_CHARS, MAX_TICKET_CHARS};
use super::logout::{self, Origin};
use crate::auth::Caller;
use crate::clock;
use crate::sessions::{self, Policy, PolicyRefusal, policy};
use crate::state::AppState;
use crate::store::{
    Action, Category, Change, Committed, Effect, PolicyDocument, Record, Scope, StoreError,
    StoredPolicy,
};
use crate::web::{self, Body, ConnInfo, GatewayError, read_limited};

/// SPEC section 9: a policy body is at most 64 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// What a `PUT` body may carry besides the policy itself.
const CHANGE_FIELDS: [&str; 4] = ["logout", "reason", "category", "ticket"];

/// A `PUT` body, checked.
struct PolicyUpdate {
    document: PolicyDocument,
    logout: bool,
    why: LogoutBody,
}

/// `GET .../policy`: the policy in force (nulls and `[]` when there is none).
pub(super) fn read(state: &AppState, workspace: &str) -> Response<Body> {
    let stored = state.sessions.policy(workspace);
    with_etag(
        web::json(StatusCode::OK, &shape(workspace, &stored)),
        &stored,
    )
}

/// `PUT .../policy`: replaces the policy, and with `logout: true` moves the workspace
/// cutoff in the same commit (the caller's session preserved).
pub(super) async fn replace(
    state: &AppState,
    workspace: String,
    caller: &Caller,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let if_version = if_match(req.headers())?;
    let origin = Origin::of(state, &req, conn);
    let client_ip = web::client_ip(
        conn.peer,
        req.headers(),
        &state.config.server.trusted_proxies,
    );
    let update = parse_body(&read_limited(req.into_body(), MAX_BODY_BYTES).await?)?;
    let now = clock::now();
    let proposed = Policy::proposed(update.document.clone());
    if let Err(refusal) = proposed.check(&caller.claims.policy_request(client_ip), now) {
        return Err(GatewayError::WouldLockOutCaller(lockout_message(&refusal)));
    }
    let change = change(state, workspace, caller, update, (origin, now), if_version);
    let committed = match state.sessions.commit(&state.store, change).await {
        Err(StoreError::PolicyChanged) => return Err(GatewayError::PreconditionFailed),
        committed => committed?,
    };
    Ok(answer(&committed))
}

/// The policy effect, the optional cutoff, and the audit record with both documents.
fn change(
    state: &AppState,
    workspace: String,
    caller: &Caller,
    update: PolicyUpdate,
    (origin, now): (Origin, f64),
    if_version: Option<u64>,
) -> Change {
    let before = state.sessions.policy(&workspace).document;
    let scope = Scope::Workspace(workspace.clone());
    let mut audit = logout::audit_record(
        Action::PolicyUpdate,
        &scope,
        caller,
        &update.why,
        &origin,
        now,
    );
    audit.policy_before = Some(before);
    audit.policy_after = Some(update.document.clone());
    let mut effects = vec![Effect::Policy {
        workspace,
        document: update.document,
        updated_at: audit.at.clone(),
        updated_by: caller.claims.subject.clone(),
        if_version,
    }];
    if update.logout {
        let margin = state.config.sessions.invalidation_margin_secs;
        effects.push(Effect::Cutoff {
            scope,
            valid_after: sessions::cutoff_at(now, margin),
            preserved: Some(logout::preserved(caller)),
        });
    }
    Change { effects, audit }
}

/// The body: a JSON object of the policy fields and `logout`, `reason`, `category`,
/// `ticket`; any other field is a 400 naming it.
fn parse_body(bytes: &[u8]) -> Result<PolicyUpdate, GatewayError> {
    let bad = |message: String| GatewayError::BadRequest(message);
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let Value::Object(body) = value else {
        return Err(bad(
            "the body must be a JSON object (the whole policy)".into()
        ));
    };
    let known = |key: &String| {
        policy::FIELDS.contains(&key.as_str()) || CHANGE_FIELDS.contains(&key.as_str())
    };
    if let Some(unknown) = body.keys().find(|key| !known(key)) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(bad(format!("{shown}: unknown field")));
    }
    let document = policy::parse_document(&body).map_err(|e| bad(e.to_string()))?;
    let logout = match body.get("logout") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(logout)) => *logout,
        Some(_) => return Err(bad("logout: must be true or false".into())),
    };
    Ok(PolicyUpdate {
        document,
        logout,
        why: why(&body)?,
    })
}

/// `reason`, `category` and `ticket`, within the limits of a logout's.
fn why(body: &Map<String, Value>) -> Result<LogoutBody, GatewayError> {
    let text = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(GatewayError::BadRequest(format!(
            "{field}: must be a string"
        ))),
    };
    let (reason, ticket) = (text("reason")?, text("ticket")?);
    body::too_long("reason", reason.as_deref(), MAX_REASON_CHARS)?;
    body::too_long("ticket", ticket.as_deref(), MAX_TICKET_CHARS)?;
    let category = match body.get("category") {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::from_value::<Category>(value.clone()).map_err(|_| {
            GatewayError::BadRequest(
                "category: must be one of security_incident, policy_change, personnel_change, routine_maintenance, other".into(),
            )
        })?),
    };
    Ok(LogoutBody {
        reason,
        category,
        ticket,
        subject: None,
        at: None,
    })
}

/// The version `If-Match` names: `None` without the header, or with `*` (any policy).
/// A tag this gateway never issued matches nothing: 412.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, GatewayError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| GatewayError::PreconditionFailed)?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix("\"v")
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or(GatewayError::PreconditionFailed)
}

/// The strong entity tag of a policy version.
fn etag(stored: &StoredPolicy) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{}\"", stored.version)).expect("digits are a valid header")
}

fn with_etag(mut response: Response<Body>, stored: &StoredPolicy) -> Response<Body> {
    response.headers_mut().insert(ETAG, etag(stored));
    response
}

/// The `GET` shape of SPEC section 9.
fn shape(workspace: &str, stored: &StoredPolicy) -> Value {
    let document = &stored.document;
    json!({
        "workspace": workspace,
        "ip_allowlist": document.ip_allowlist,
        "require_claims": document.require_claims,
        "max_session_age_secs": document.max_session_age_secs,
        "updated_at": stored.updated_at,
        "updated_by": stored.updated_by,
    })
}

/// The new policy as `GET` answers it, plus `audit_id` (and the cutoff when it moved).
fn answer(committed: &Committed) -> Response<Body> {
    let Some((workspace, stored)) = committed.records.iter().find_map(|record| match record {
        Record::Policy { workspace, policy } => Some((workspace, policy)),
        _ => None,
    }) else {
        unreachable!("a policy change always leaves its policy record")
    };
    let mut answer = shape(workspace, stored);
    answer["audit_id"] = json!(committed.audit.id);
    if let Some(cutoff) = committed.cutoff() {
        answer["sessions_valid_after"] = json!(cutoff.valid_after);
    }
    if let Some(notified) = committed.notified {
        answer["instances_notified"] = json!(notified);
    }
    with_etag(web::json(StatusCode::OK, &answer), stored)
}

/// The 409's message: which rule of the new policy the caller's own request fails.
fn lockout_message(refusal: &PolicyRefusal) -> String {
    let rule = match refusal {
        PolicyRefusal::IpNotAllowed => "your IP address is not in the new ip_allowlist",
        PolicyRefusal::SignInMethod { .. } => "your token does not meet the new require_claims",
        PolicyRefusal::TooOld { .. } => "your session is older than the new max_session_age_secs",
    };
    format!("{rule}: saving this policy would sign you out; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_our_tags_and_star_only() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_MATCH, value.parse().unwrap());
            headers
        };
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&headers("*")).unwrap(), None);
        assert_eq!(if_match(&headers("\"v17\"")).unwrap(), Some(17));
        for stale in ["W/\"v17\"", "\"17\"", "v17", "\"vx\""] {
            assert!(matches!(
                if_match(&headers(stale)),
                Err(GatewayError::PreconditionFailed)
            ));
        }
    }

    #[test]
    fn bodies_name_the_field_at_fault() {
        let message = |body: &str| match parse_body(body.as_bytes()) {
            Err(GatewayError::BadRequest(message)) => message,
            other => panic!("400 expected for {body}: {:?}", other.err()),
        };
        assert!(message(r#"{"ip_allowlist": null, "colour": 1}"#).starts_with("colour:"));
        assert!(message(r#"{"logout": "yes"}"#).starts_with("logout:"));
        assert!(message(r#"{"category": "whim"}"#).starts_with("category:"));
        assert!(message(r#"{"reason": 7}"#).starts_with("reason:"));
        assert!(message(r#"[1]"#).contains("JSON object"));
        assert!(message("{").contains("invalid JSON"));
        assert!(message(r#"{"ip_allowlist": ["x"]}"#).starts_with("ip_allowlist[0]:"));
        let long = format!(r#"{{"ticket": "{}"}}"#, "t".repeat(257));
        assert!(message(&long).starts_with("ticket"));
    }
}
