//! The admin endpoints, parsed from the path after the prefix.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::web::GatewayError;

/// An admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Logout(LogoutRoute),
    Sessions {
        workspace: String,
    },
    Activity {
        workspace: String,
    },
    Audit {
        workspace: String,
    },
    /// The caller itself: what the console needs to know about it.
    Me,
    /// `DELETE`: cancels the workspace's scheduled logout.
    ScheduledLogout {
        workspace: String,
    },
    /// `GET` reads, `PUT` replaces the workspace policy.
    Policy {
        workspace: String,
    },
}

/// Which logout a `POST` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogoutRoute {
    All {
        workspace: String,
    },
    /// The user named in the path.
    User {
        workspace: String,
        subject: String,
    },
    /// The user named by `"subject"` in the body: names that cannot be a path segment.
    UserInBody {
        workspace: String,
    },
    Others,
}

// === impl Route ===

impl Route {
    /// Maps the path after the prefix to a route: unknown paths 404, wrong methods 405.
    pub(super) fn parse(rest: &str, method: &Method) -> Result<Self, GatewayError> {
        let segments: Vec<String> = rest
            .trim_start_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (route, allow) = Self::from_segments(&segments).ok_or(GatewayError::NotFound)?;
        if !allow.split(", ").any(|allowed| allowed == method.as_str()) {
            return Err(GatewayError::MethodNotAllowed { allow });
        }
        Ok(route)
    }

    fn from_segments(segments: &[&str]) -> Option<(Self, &'static str)> {
        let named = |name: &&str| !name.is_empty();
        let ws = |ws: &str| ws.to_string();
        Some(match segments {
            ["v1", "workspaces", w, "logout-all"] if named(w) => {
                (Self::Logout(LogoutRoute::All { workspace: ws(w) }), "POST")
            }
            ["v1", "workspaces", w, "users", "logout"] if named(w) => (
                Self::Logout(LogoutRoute::UserInBody { workspace: ws(w) }),
                "POST",
            ),
            ["v1", "workspaces", w, "users", sub, "logout"] if named(w) && named(sub) => {
                let user = LogoutRoute::User {
                    workspace: ws(w),
                    subject: sub.to_string(),
                };
                (Self::Logout(user), "POST")
            }
            ["v1", "me", "logout-others"] => (Self::Logout(LogoutRoute::Others), "POST"),
            ["v1", "me"] => (Self::Me, "GET"),
            ["v1", "workspaces", w, "activity"] if named(w) => {
                (Self::Activity { workspace: ws(w) }, "GET")
            }
            ["v1", "workspaces", w, "sessions"] if named(w) => {
                (Self::Sessions { workspace: ws(w) }, "GET")
            }
            ["v1", "workspaces", w, "policy"] if named(w) => {
                (Self::Policy { workspace: ws(w) }, "GET, PUT")
            }
            ["v1", "workspaces", w, "audit"] if named(w) => {
                (Self::Audit { workspace: ws(w) }, "GET")
            }
            ["v1", "workspaces", w, "scheduled-logout"] if named(w) => {
                (Self::ScheduledLogout { workspace: ws(w) }, "DELETE")
            }
            _ => return None,
        })
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
            Route::Logout(LogoutRoute::User {
                workspace: "acme".into(),
                subject: "auth0|42".into()
            })
        );
        assert_eq!(
            Route::parse("/v1/workspaces/acme/users/logout", &Method::POST).unwrap(),
            Route::Logout(LogoutRoute::UserInBody {
                workspace: "acme".into()
            })
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
            Route::parse("/v1/workspaces/acme/scheduled-logout", &Method::POST),
            Err(GatewayError::MethodNotAllowed { allow: "DELETE" })
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
}
