//! The pipeline every request on the main listener goes through (see the diagram in lib.rs).

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::OwnedSemaphorePermit;

use super::Proxy;
use super::access::AccessRecord;
use super::forward::Forwarding;
use super::guard::{self, Guarded};
use super::login;
use super::tunnel::{self, websocket_upgrade};
use crate::admin;
use crate::auth::{self, Caller};
use crate::clock;
use crate::config;
use crate::web::{self, Body, ConnInfo, GatewayError};

/// The hyper `Service` for one client connection.
#[derive(Clone)]
pub(super) struct Gateway {
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    /// This connection's `server.max_connections` slot, shared with any WebSocket tunnel it
    /// opens: a tunnel is still a client connection after hyper lets go of it.
    slot: Arc<OwnedSemaphorePermit>,
}

// === impl Gateway ===

impl Gateway {
    /// A service for one connection.
    pub(super) fn new(proxy: Arc<Proxy>, conn: ConnInfo, slot: OwnedSemaphorePermit) -> Self {
        Self {
            proxy,
            conn: Arc::new(conn),
            slot: Arc::new(slot),
        }
    }

    /// Never fails: errors become responses here, and every request is logged and counted.
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let trusted = &self.proxy.state.config.server.trusted_proxies;
        let client_ip = web::client_ip(self.conn.peer, req.headers(), trusted);
        let mut record = AccessRecord::new(req.method(), req.uri(), client_ip);
        let result = self.try_handle(req, &mut record).await;
        record.finish(&self.proxy.metrics, &result);
        result.unwrap_or_else(GatewayError::into_response)
    }

    /// Steps 1 to 6 of the diagram in lib.rs, as a `?` chain.
    async fn try_handle(
        &self,
        mut req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let state = &self.proxy.state;
        let path = req.uri().path();
        config::check_path(path)?;
        if config::is_under(path, &state.config.admin_prefix) {
            record.admin = true;
            // Boxed: these futures are large and rare; inline they would make every
            // request's future (moved on each poll setup) that much bigger.
            return Box::pin(self.answer_under_prefix(req)).await;
        }
        state.open_gate()?;
        if let Some(route) = self.proxy.signals.scim_route(path) {
            return Box::pin(self.forward_scim(req, route, record)).await;
        }
        let client_ip = record.client_ip;
        let caller = self.authenticate(&req, client_ip).await?;
        if let Some(caller) = &caller {
            state.sessions.seen(&caller.claims.session(), clock::now());
        }
        record.caller = caller.as_ref().map(|c| c.claims.clone());
        let upgrade = websocket_upgrade(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let logout_at = caller
            .as_ref()
            .and_then(|c| state.sessions.logout_at(&c.claims.workspace, clock::now()));
        let forwarding = Forwarding {
            caller: caller.as_ref(),
            conn: &self.conn,
            upgrade,
            logout_at,
        };
        self.proxy.upstream.prepare(&mut req, &forwarding);
        let sent = Instant::now();
        let response = self.proxy.upstream.send(req).await?;
        record.upstream_elapsed = Some(sent.elapsed());
        record.upstream_status = Some(response.status().as_u16());
        self.recheck(caller.as_ref(), client_ip)?;
        Ok(self.respond(response, client_upgrade, caller, client_ip))
    }

    /// The gateway's own endpoints: signals need no user token, so they are routed before
    /// the admin API authenticates.
    async fn answer_under_prefix(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let (state, signals) = (&self.proxy.state, &self.proxy.signals);
        match signals.handles(req.uri().path()) {
            true => signals.handle(state, req, &self.conn).await,
            false => admin::handle(state, req, &self.conn).await,
        }
    }

    /// A SCIM request of the identity provider: forwarded without the token check (the
    /// product checks its SCIM credentials), its answer watched by the signals room.
    async fn forward_scim(
        &self,
        req: Request<Incoming>,
        route: config::ScimMatch,
        record: &mut AccessRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let (state, signals) = (&self.proxy.state, &self.proxy.signals);
        let (mut req, exchange) = signals.scim_request(state, req, route, &self.conn).await?;
        let forwarding = Forwarding {
            caller: None,
            conn: &self.conn,
            upgrade: None,
            logout_at: None,
        };
        self.proxy.upstream.prepare(&mut req, &forwarding);
        let sent = Instant::now();
        let response = self.proxy.upstream.send_buffered(req).await?;
        record.upstream_elapsed = Some(sent.elapsed());
        record.upstream_status = Some(response.status().as_u16());
        signals.scim_response(state, exchange, response).await
    }

    /// Steps 2 to 6 of the acceptance rule, unless the path is public (`None`).
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        client_ip: IpAddr,
    ) -> Result<Option<Caller>, GatewayError> {
        let state = &self.proxy.state;
        if state.config.auth.public_paths.matches(req.uri().path()) {
            return Ok(None);
        }
        auth::authenticate(&state.verifier, &state.sessions, req.headers(), client_ip)
            .await
            .map(Some)
            .map_err(|reason| login::reject(&state.config.auth, req, reason))
    }

    /// A logout or a policy may have landed while the upstream was answering: nothing has
    /// been sent to the client yet, so it gets the plain refusal instead of a cut-off
    /// stream.
    fn recheck(&self, caller: Option<&Caller>, client_ip: IpAddr) -> Result<(), GatewayError> {
        let Some(caller) = caller else {
            return Ok(());
        };
        let sessions = &self.proxy.state.sessions;
        auth::recheck(sessions, &caller.claims, client_ip, clock::now()).map_err(Into::into)
    }

    /// Step 6: the upstream's answer, as a guarded stream or a WebSocket tunnel.
    fn respond(
        &self,
        response: Response<Incoming>,
        client_upgrade: Option<OnUpgrade>,
        caller: Option<Caller>,
        client_ip: IpAddr,
    ) -> Response<Body> {
        let state = &self.proxy.state;
        let watched = |caller: Caller| guard::Watched {
            state: state.clone(),
            claims: caller.claims,
            client_ip,
        };
        match (client_upgrade, caller) {
            (Some(client), caller) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let end = caller.map(|caller| guard::session_ended(watched(caller)));
                tunnel::splice(&self.proxy, client, response, end, self.slot.clone())
            }
            (_, Some(caller)) => {
                response.map(|body| Guarded::new(body, watched(caller)).boxed_unsync())
            }
            (_, None) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let gateway = self.clone();
        Box::pin(async move { Ok(gateway.handle(req).await) })
    }
}
