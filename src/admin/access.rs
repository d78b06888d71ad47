//! Who may call what: admins of the workspace, and the CSRF rule for cookie tokens.

use http::{HeaderMap, Request};

use crate::auth::{Caller, TokenSource};
use crate::state::AppState;
use crate::web::{ConnInfo, Forbidden, GatewayError};

/// The caller's token belongs to `workspace` and carries one of `jwt.admin_roles`.
pub(super) fn require_admin(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
) -> Result<(), GatewayError> {
    if caller.claims.workspace != workspace {
        return Err(GatewayError::Forbidden(Forbidden::OtherWorkspace));
    }
    if !is_admin(state, caller) {
        return Err(GatewayError::Forbidden(Forbidden::NotAdmin));
    }
    Ok(())
}

/// Whether the caller's roles include one of `jwt.admin_roles` (of its own workspace).
pub(super) fn is_admin(state: &AppState, caller: &Caller) -> bool {
    let admin_roles = &state.config.jwt.admin_roles;
    caller
        .claims
        .roles
        .iter()
        .any(|role| admin_roles.contains(role))
}

/// CSRF defence for cookie tokens (SPEC section 2): `Origin` (else `Referer`'s origin)
/// must be one of `auth.allowed_origins` or the gateway's own origin for this request.
pub(super) fn check_origin<B>(
    state: &AppState,
    req: &Request<B>,
    conn: &ConnInfo,
    caller: &Caller,
) -> Result<(), GatewayError> {
    if caller.source != TokenSource::Cookie {
        return Ok(());
    }
    let headers = req.headers();
    let origin = match header(headers, http::header::ORIGIN) {
        Some(origin) => Some(origin.trim_end_matches('/').to_ascii_lowercase()),
        None => header(headers, http::header::REFERER).and_then(referer_origin),
    };
    let allowed = |origin: &String| {
        state.config.auth.allowed_origins.contains(origin)
            || own_origin(state, req, conn).as_ref() == Some(origin)
    };
    match origin {
        Some(origin) if allowed(&origin) => Ok(()),
        _ => Err(GatewayError::Forbidden(Forbidden::CrossOrigin)),
    }
}

/// `scheme://host` of this request as the browser addressed it: `https` on TLS, or when
/// a trusted proxy says the client used it; the host from `Host` (`:authority` on h2).
fn own_origin<B>(state: &AppState, req: &Request<B>, conn: &ConnInfo) -> Option<String> {
    let peer = conn.peer.ip().to_canonical();
    let trusted = state
        .config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer));
    let proxied_https = trusted
        && header(req.headers(), "x-forwarded-proto")
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let scheme = if conn.tls || proxied_https {
        "https"
    } else {
        "http"
    };
    let host = header(req.headers(), http::header::HOST)
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))?;
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

fn header<K: http::header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn referer_origin(referer: &str) -> Option<String> {
    let uri: http::Uri = referer.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referer_gives_its_origin() {
        assert_eq!(
            referer_origin("https://App.example.com:8443/a/b?c"),
            Some("https://app.example.com:8443".into())
        );
        assert_eq!(referer_origin("/relative"), None);
    }
}
