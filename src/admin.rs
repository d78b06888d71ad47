//! The admin API under `admin.path_prefix`: log users out, read and replace the workspace
//! policy, read sessions, activity and audit, tell a caller who it is; and the Security settings page built on that API.
//!
//! Served on the main listener, never forwarded upstream. Every call is authenticated
//! like a proxied request; a change answers only after the store has committed it. The
//! console's static files need no token: everything they show comes from the API.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth;
use crate::state::AppState;
use crate::web::{self, Body, ConnInfo, GatewayError};

mod access;
mod body;
mod console;
mod logout;
mod policy;
mod reads;
mod route;
mod schedule;

use route::Route;

/// Answers a request under the admin prefix.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let rest = &req.uri().path()[state.config.admin_prefix.len()..];
    if let Some(asset) = console::Asset::parse(rest) {
        return console::serve(state, asset, req.method());
    }
    let route = Route::parse(rest, req.method())?;
    state.open_gate()?;
    let trusted = &state.config.server.trusted_proxies;
    let client_ip = web::client_ip(conn.peer, req.headers(), trusted);
    // The admin API is itself subject to the workspace policy (SPEC section 9).
    let caller =
        auth::authenticate(&state.verifier, &state.sessions, req.headers(), client_ip).await?;
    match route {
        Route::Sessions { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            Ok(reads::sessions(state, &workspace))
        }
        Route::Me => Ok(reads::me(state, &caller, &req, conn)),
        Route::Activity { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            reads::activity(state, &workspace).await
        }
        Route::Audit { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            reads::audit(state, &workspace, req.uri().query()).await
        }
        Route::Policy { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            if req.method() == http::Method::GET {
                return Ok(policy::read(state, &workspace));
            }
            access::check_origin(state, &req, conn, &caller)?;
            policy::replace(state, workspace, &caller, req, conn).await
        }
        Route::Logout(target) => {
            access::check_origin(state, &req, conn, &caller)?;
            logout::handle(state, target, &caller, req, conn).await
        }
        Route::ScheduledLogout { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            access::check_origin(state, &req, conn, &caller)?;
            schedule::cancel(state, &workspace, &caller, req, conn).await
        }
    }
}
