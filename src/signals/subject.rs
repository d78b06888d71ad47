//! Subject identifiers (RFC 9493, SSF 1.0): whom an event is about, as a `Target`.
//!
//! `iss_sub` (of this issuer only), `opaque` and `email` name a user; SSF `complex` may add
//! a `session` (its opaque id is a `sid`) and a `tenant` (its opaque id is a workspace).

use serde_json::{Map, Value};

use super::commit::Target;
use super::refusal::Refusal;
use crate::config::IssuerConfig;

/// The members of a complex subject this gateway acts on.
const COMPLEX_MEMBERS: [&str; 3] = ["user", "session", "tenant"];

/// What `subject` names, within what `issuer` may reach.
pub(super) fn resolve(subject: &Value, issuer: &IssuerConfig) -> Result<Target, Refusal> {
    let subject = subject.as_object().ok_or(Refusal::SubjectFormat)?;
    let format = subject.get("format").and_then(Value::as_str);
    let complex = format == Some("complex")
        || format.is_none() && COMPLEX_MEMBERS.iter().any(|m| subject.contains_key(*m));
    if complex {
        return resolve_complex(subject, issuer);
    }
    Ok(Target::User {
        workspace: issuer.workspace.clone(),
        user: user(subject, issuer)?,
    })
}

/// A complex subject: a session wins over its user (it names one session only); a tenant
/// alone logs that workspace out, when the issuer may.
fn resolve_complex(subject: &Map<String, Value>, issuer: &IssuerConfig) -> Result<Target, Refusal> {
    let tenant = subject.get("tenant").map(opaque_id).transpose()?;
    let workspace = match (&tenant, &issuer.workspace) {
        (Some(tenant), Some(own)) if tenant != own => return Err(Refusal::OtherTenant),
        (Some(tenant), _) => Some(tenant.clone()),
        (None, own) => own.clone(),
    };
    let user = match subject.get("user") {
        Some(Value::Object(user_subject)) => Some(user(user_subject, issuer)?),
        Some(_) => return Err(Refusal::SubjectFormat),
        None => None,
    };
    let session = subject.get("session").map(opaque_id).transpose()?;
    match (session, user, tenant) {
        (Some(sid), user, _) => Ok(Target::Session {
            workspace,
            sid,
            user,
        }),
        (None, Some(user), _) => Ok(Target::User { workspace, user }),
        (None, None, Some(tenant)) if issuer.allow_workspace_logout => {
            Ok(Target::Workspace(tenant))
        }
        (None, None, Some(_)) => Err(Refusal::WorkspaceLogout),
        (None, None, None) => Err(Refusal::NoSubject),
    }
}

/// The user a simple subject names (`sessions.user_claim` is matched against it). An
/// address is kept in lower case: it is compared without regard to case.
fn user(subject: &Map<String, Value>, issuer: &IssuerConfig) -> Result<String, Refusal> {
    let member = |name: &str| {
        subject
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .ok_or(Refusal::SubjectFormat)
    };
    match subject.get("format").and_then(Value::as_str) {
        Some("iss_sub") if member("iss")? != issuer.issuer => Err(Refusal::ForeignSubject),
        Some("iss_sub") => Ok(member("sub")?.to_string()),
        Some("opaque") => Ok(member("id")?.to_string()),
        Some("email") => Ok(member("email")?.to_lowercase()),
        _ => Err(Refusal::SubjectFormat),
    }
}

/// The `id` of an `opaque` subject (sessions and tenants).
fn opaque_id(subject: &Value) -> Result<String, Refusal> {
    let subject = subject.as_object().ok_or(Refusal::SubjectFormat)?;
    match (
        subject.get("format").and_then(Value::as_str),
        subject.get("id").and_then(Value::as_str),
    ) {
        (Some("opaque"), Some(id)) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(Refusal::SubjectFormat),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{KeyConfig, KeySource};

    fn issuer(workspace: Option<&str>, allow_workspace_logout: bool) -> IssuerConfig {
        IssuerConfig {
            name: "signals.issuers[0]".into(),
            issuer: "https://idp.example".into(),
            audience: vec!["gw".into()],
            key: KeyConfig {
                key_name: "signals.issuers[0]".into(),
                kid: None,
                algorithm: None,
                source: KeySource::PublicKeyFile("k.pem".into()),
            },
            workspace: workspace.map(str::to_string),
            allow_workspace_logout,
            push_authorization_env: None,
        }
    }

    fn user(workspace: Option<&str>, user: &str) -> Target {
        Target::User {
            workspace: workspace.map(str::to_string),
            user: user.into(),
        }
    }

    #[test]
    fn simple_subjects_name_a_user() {
        let idp = issuer(None, false);
        let cases = [
            (json!({"format": "opaque", "id": "u1"}), user(None, "u1")),
            (
                json!({"format": "iss_sub", "iss": "https://idp.example", "sub": "u2"}),
                user(None, "u2"),
            ),
            (
                json!({"format": "email", "email": "Bob@Example.COM"}),
                user(None, "bob@example.com"),
            ),
        ];
        for (subject, expected) in cases {
            assert_eq!(resolve(&subject, &idp), Ok(expected), "{subject}");
        }
        let foreign = json!({"format": "iss_sub", "iss": "https://evil.example", "sub": "u"});
        assert_eq!(resolve(&foreign, &idp), Err(Refusal::ForeignSubject));
        for bad in [
            json!({"format": "phone_number", "phone_number": "+1"}),
            json!({"format": "opaque"}),
            json!("u1"),
        ] {
            assert_eq!(resolve(&bad, &idp), Err(Refusal::SubjectFormat), "{bad}");
        }
    }

    #[test]
    fn complex_subjects_narrow_to_a_session_or_a_tenant() {
        let idp = issuer(None, false);
        let session = json!({
            "format": "complex",
            "user": {"format": "opaque", "id": "u1"},
            "session": {"format": "opaque", "id": "s1"},
        });
        assert_eq!(
            resolve(&session, &idp),
            Ok(Target::Session {
                workspace: None,
                sid: "s1".into(),
                user: Some("u1".into())
            })
        );
        let in_tenant = json!({
            "user": {"format": "opaque", "id": "u1"},
            "tenant": {"format": "opaque", "id": "acme"},
        });
        assert_eq!(resolve(&in_tenant, &idp), Ok(user(Some("acme"), "u1")));
        let tenant = json!({"format": "complex", "tenant": {"format": "opaque", "id": "acme"}});
        assert_eq!(resolve(&tenant, &idp), Err(Refusal::WorkspaceLogout));
        let allowed = issuer(None, true);
        assert_eq!(
            resolve(&tenant, &allowed),
            Ok(Target::Workspace("acme".into()))
        );
        let scoped = issuer(Some("globex"), true);
        assert_eq!(resolve(&tenant, &scoped), Err(Refusal::OtherTenant));
        assert_eq!(
            resolve(&json!({"format": "complex"}), &idp),
            Err(Refusal::NoSubject)
        );
    }
}
