//! The pipeline every request on the main listener goes through (see the diagram in lib.rs).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::sync::OwnedSemaphorePermit;

use crate::admin_api;
use crate::body::Body;
use crate::clock;
use crate::error::{GatewayError, LoginRedirect};
use crate::forward::Forwarding;
use crate::guard::{self, Guarded};
use crate::metrics::{KindLabels, Outcome};
use crate::paths;
use crate::state::AppState;
use crate::token::{self, Claims, Presented, TokenError, TokenSource};
use crate::tunnel::{self, websocket_upgrade};

/// Characters escaped in `return_to` (everything that is not unreserved).
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The hyper `Service` for one client connection.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<AppState>,
    conn: Arc<ConnInfo>,
    /// This connection's `server.max_connections` slot, shared with any WebSocket tunnel it
    /// opens: a tunnel is still a client connection after hyper lets go of it.
    slot: Arc<OwnedSemaphorePermit>,
}

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// A caller whose token passed the whole acceptance rule.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Arc<Claims>,
    pub source: TokenSource,
}

/// What the access log says about one request, filled in as the pipeline goes.
#[derive(Debug, Default)]
struct AccessRecord {
    caller: Option<Arc<Claims>>,
    upstream_status: Option<u16>,
    upstream_elapsed: Option<std::time::Duration>,
    admin: bool,
}

// === impl Gateway ===

impl Gateway {
    /// A service for one connection.
    pub fn new(state: Arc<AppState>, conn: ConnInfo, slot: OwnedSemaphorePermit) -> Self {
        Self {
            state,
            conn: Arc::new(conn),
            slot: Arc::new(slot),
        }
    }

    /// Never fails: errors become responses here, and every request is logged and counted.
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        // A `Uri` clone shares its bytes: the path is kept for the log without a copy.
        let uri = req.uri().clone();
        let trusted = &self.state.config.server.trusted_proxies;
        let client_ip = crate::client_ip::client_ip(self.conn.peer, req.headers(), trusted);
        let mut record = AccessRecord::default();
        let result = self.try_handle(req, &mut record).await;
        let metrics = &self.state.metrics;
        let (status, reason) = match &result {
            Ok(response) => {
                metrics.request(if record.admin {
                    Outcome::Admin
                } else {
                    Outcome::Forwarded
                });
                (response.status(), None)
            }
            Err(error) => {
                self.count_error(error);
                (error.status(), error.reason())
            }
        };
        let elapsed = started.elapsed();
        metrics.request_duration.observe(elapsed.as_secs_f64());
        if let Some(upstream) = record.upstream_elapsed {
            metrics.upstream_duration.observe(upstream.as_secs_f64());
        }
        metrics.gateway_duration.observe(
            elapsed
                .saturating_sub(record.upstream_elapsed.unwrap_or_default())
                .as_secs_f64(),
        );
        let claims = record.caller.as_deref();
        tracing::info!(
            target: "access",
            %method,
            path = uri.path(),
            %client_ip,
            status = status.as_u16(),
            reason = reason.map(TokenError::as_str),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            workspace = claims.map(|c| c.workspace.as_str()),
            session = claims.map(|c| token::session_id_prefix(&c.session_id)),
            upstream_status = record.upstream_status,
        );
        result.unwrap_or_else(GatewayError::into_response)
    }

    fn count_error(&self, error: &GatewayError) {
        let metrics = &self.state.metrics;
        match error {
            GatewayError::Unauthorized { reason, .. } => {
                metrics.rejection(*reason);
                metrics.request(Outcome::Rejected);
            }
            GatewayError::Upstream(upstream) => {
                metrics
                    .upstream_errors
                    .get_or_create(&KindLabels {
                        kind: upstream.kind(),
                    })
                    .inc();
                metrics.request(Outcome::Error);
            }
            _ => metrics.request(Outcome::Error),
        }
    }

    async fn try_handle(
        &self,
        mut req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let config = &self.state.config;
        let path = req.uri().path();
        paths::check(path)?;
        if paths::is_under(path, &config.admin_prefix) {
            record.admin = true;
            // Boxed: the admin future is large and rare; inline it would make every
            // request's future (moved on each poll setup) that much bigger.
            return Box::pin(admin_api::handle(&self.state, req, &self.conn)).await;
        }
        open_gate(&self.state)?;
        let caller = match config.auth.public_paths.matches(path) {
            true => None,
            false => Some(
                authenticate(&self.state, req.headers())
                    .await
                    .map_err(|reason| self.reject(&req, reason))?,
            ),
        };
        record.caller = caller.as_ref().map(|c| c.claims.clone());
        let upgrade = websocket_upgrade(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let forwarding = Forwarding {
            identity: caller.as_ref().map(|c| &*c.claims),
            token_source: caller.as_ref().map(|c| c.source),
            cookie_name: config.auth.cookie.as_deref(),
            peer: self.conn.peer.ip().to_canonical(),
            tls: self.conn.tls,
            upgrade,
        };
        self.state.upstream.prepare(&mut req, &forwarding);
        let sent = Instant::now();
        let response = self.state.upstream.send(req).await?;
        record.upstream_elapsed = Some(sent.elapsed());
        record.upstream_status = Some(response.status().as_u16());
        // A logout may have landed while the upstream was answering: nothing has been sent
        // to the client yet, so it gets the plain refusal instead of a cut-off stream.
        if let Some(caller) = &caller {
            self.state
                .sessions
                .check(&caller.claims, clock::now())
                .map_err(GatewayError::unauthorized)?;
        }
        match (client_upgrade, caller) {
            (Some(client), caller) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let end =
                    caller.map(|caller| guard::session_ended(self.state.clone(), caller.claims));
                Ok(tunnel::splice(
                    &self.state,
                    client,
                    response,
                    end,
                    self.slot.clone(),
                ))
            }
            (_, Some(caller)) => Ok(response
                .map(|body| Guarded::new(body, self.state.clone(), caller.claims).boxed_unsync())),
            (_, None) => Ok(response.map(|body| body.map_err(Into::into).boxed_unsync())),
        }
    }

    /// A refused token: 401, or a redirect to `auth.login_url` for a browser navigation.
    fn reject(&self, req: &Request<Incoming>, reason: TokenError) -> GatewayError {
        let auth = &self.state.config.auth;
        let navigation = req.method() == Method::GET
            && req
                .headers()
                .get_all(http::header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")));
        let redirect = auth
            .login_url
            .as_ref()
            .filter(|_| navigation)
            .map(|login_url| {
                let original = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let separator = if login_url.contains('?') { '&' } else { '?' };
                let from_cookie = token::extract(req.headers(), auth.cookie.as_deref())
                    .is_some_and(|p: Presented<'_>| p.source == TokenSource::Cookie);
                LoginRedirect {
                    location: format!(
                        "{login_url}{separator}return_to={}",
                        utf8_percent_encode(original, QUERY_VALUE)
                    ),
                    clear_cookie: auth
                        .cookie
                        .as_ref()
                        .filter(|_| from_cookie)
                        .map(|name| format!("{name}=; Max-Age=0; Path={}", auth.cookie_path)),
                }
            });
        GatewayError::Unauthorized { reason, redirect }
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

/// Fail closed: 503 until every cutoff is loaded, and while the cutoffs in memory are older
/// than `store.max_staleness_secs` allows.
pub fn open_gate(state: &AppState) -> Result<(), GatewayError> {
    if !state.is_ready() {
        return Err(GatewayError::NotReady);
    }
    if state.store.shared().is_some_and(|store| store.is_stale()) {
        return Err(GatewayError::StoreStale);
    }
    Ok(())
}

/// SPEC section 1 in full: find the token, verify it, then check the session cutoffs.
///
/// A token whose key is unknown may wait for one (shared, rate-limited) refetch of the
/// remote JWKS: an identity provider that just rotated its keys is believed at once.
pub async fn authenticate(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Result<Caller, TokenError> {
    let presented =
        token::extract(headers, state.config.auth.cookie.as_deref()).ok_or(TokenError::Missing)?;
    let verifier = &state.verifier;
    let generation = verifier.keys().current().generation();
    let mut now = clock::now();
    let claims = match verifier.verify(presented.token, now) {
        Err(refused)
            if verifier.may_need_new_keys(presented.token, refused)
                && verifier
                    .keys()
                    .refetch_for_unknown_key(generation, &state.metrics.jwks_refreshes)
                    .await =>
        {
            now = clock::now();
            verifier.verify(presented.token, now)
        }
        verified => verified,
    }?;
    state.sessions.check(&claims, now)?;
    Ok(Caller {
        claims,
        source: presented.source,
    })
}
