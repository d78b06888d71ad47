//! The admin API under `admin.path_prefix`: log users out, read sessions and audit.
//!
//! Served on the main listener, never forwarded upstream. Every call is authenticated
//! like a proxied request; a change answers only after the store has committed it.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth;
use crate::state::AppState;
use crate::web::{Body, ConnInfo, GatewayError};

mod access;
mod body;
mod logout;
mod reads;
mod route;

use route::Route;

/// Answers a request under the admin prefix.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Body>, GatewayError> {
    let rest = &req.uri().path()[state.config.admin_prefix.len()..];
    let route = Route::parse(rest, req.method())?;
    state.open_gate()?;
    let caller = auth::authenticate(&state.verifier, &state.sessions, req.headers())
        .await
        .map_err(GatewayError::unauthorized)?;
    match route {
        Route::Sessions { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            Ok(reads::sessions(state, &workspace))
        }
        Route::Audit { workspace } => {
            access::require_admin(state, &caller, &workspace)?;
            reads::audit(state, &workspace, req.uri().query()).await
        }
        Route::Logout(target) => {
            access::check_origin(state, &req, conn, &caller)?;
            logout::handle(state, target, &caller, req, conn).await
        }
    }
}
