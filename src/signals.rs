//! Signals from identity providers and provisioning systems (SPEC section 13): OIDC
//! Back-Channel Logout, Shared Signals (CAEP/RISC) pushes, and the SCIM deactivations the
//! product accepts. This room only reads and checks what was sent; each accepted signal
//! becomes one `Change` through the sessions room's write path, like an admin's logout,
//! committed with its audit record before it is acknowledged.
//!
//! ```text
//! {prefix}/v1/signals/backchannel-logout  form -> logout token checks -> Change -> 200
//! {prefix}/v1/signals/ssf                 SET -> push auth -> SET checks -> event -> Change -> 202
//! [signals.scim] paths (from the proxy)   request (<= 1 MiB) -> product -> 2xx deactivation
//!                                           -> Change -> the product's answer (503 if not committed)
//! ```
//!
//! Signal endpoints need no user token and no workspace policy: a logout token or SET is
//! verified with its own issuer's keys (`auth::KeyRing`, loaded and refreshed like
//! `jwt.keys`), which never hold back the gateway's readiness.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthMetrics;
use crate::clock;
use crate::config::{Config, ScimMatch};
use crate::state::AppState;
use crate::web::{self, Body, ConnInfo, GatewayError, SignalProtocol};

mod backchannel;
mod claims;
mod commit;
mod deactivation;
mod issuers;
mod metrics;
mod refusal;
mod scim;
mod ssf;
mod subject;

pub use issuers::SignalsSetupError;
pub use scim::ScimExchange;

use claims::Clock;
use commit::{Outcome, Sender};
use issuers::Issuers;
use metrics::SignalMetrics;
use refusal::Failure;

/// The signals room's handles: issuers and their keys, the SCIM observer, metrics.
pub struct Signals {
    issuers: Issuers,
    scim: scim::Observer,
    metrics: SignalMetrics,
    /// `{admin.path_prefix}/v1/signals`.
    prefix: String,
}

// === impl Signals ===

impl Signals {
    /// Loads every issuer's fixed keys and push secret (remote JWKS load once
    /// `spawn_refreshers` runs); metrics go in `registry`.
    pub fn new(
        config: &Config,
        auth_metrics: AuthMetrics,
        registry: &mut Registry,
    ) -> Result<Self, SignalsSetupError> {
        Ok(Self {
            issuers: Issuers::load(&config.signals.issuers, auth_metrics)?,
            scim: scim::Observer::new(&config.signals.scim),
            metrics: SignalMetrics::register(registry),
            prefix: format!("{}/v1/signals", config.admin_prefix),
        })
    }

    /// How many issuers are configured.
    pub fn issuer_count(&self) -> usize {
        self.issuers.len()
    }

    /// Starts the JWKS refreshes of every issuer; they stop at `shutdown`.
    pub fn spawn_refreshers(&self, shutdown: &CancellationToken) {
        self.issuers.spawn_refreshers(shutdown);
    }

    /// Whether a (checked) request path is a signal endpoint.
    pub fn handles(&self, path: &str) -> bool {
        crate::config::is_under(path, &self.prefix)
    }

    /// Answers a signal endpoint: the acknowledgement once committed, or the refusal in the
    /// sender's protocol (logged and counted by reason).
    pub async fn handle(
        &self,
        state: &AppState,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Response<Body>, GatewayError> {
        let protocol = match &req.uri().path()[self.prefix.len()..] {
            "/backchannel-logout" => SignalProtocol::BackchannelLogout,
            "/ssf" => SignalProtocol::SharedSignals,
            _ => return Err(GatewayError::NotFound),
        };
        if req.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed { allow: "POST" });
        }
        let sender = Sender::of(state, req.headers(), conn);
        let received = match protocol {
            SignalProtocol::BackchannelLogout => {
                backchannel::receive(self, state, req, &sender).await
            }
            SignalProtocol::SharedSignals => ssf::receive(self, state, req, &sender).await,
        };
        self.answer(protocol, received)
    }

    /// The SCIM resource or collection `path` is, if any: forwarded without the token check.
    pub fn scim_route(&self, path: &str) -> Option<ScimMatch> {
        self.scim.route(path)
    }

    /// Reads a SCIM request for forwarding (413 past 1 MiB: not forwarded).
    pub async fn scim_request(
        &self,
        state: &AppState,
        req: Request<Incoming>,
        route: ScimMatch,
        conn: &ConnInfo,
    ) -> Result<(Request<Full<Bytes>>, ScimExchange), GatewayError> {
        let sender = Sender::of(state, req.headers(), conn);
        self.scim.request(req, route, sender).await
    }

    /// The product's answer to a SCIM request, after acting on an accepted deactivation
    /// (503 instead when its cutoff cannot be committed).
    pub async fn scim_response(
        &self,
        state: &AppState,
        exchange: ScimExchange,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        self.scim
            .response(state, &self.metrics, exchange, response)
            .await
    }

    fn clock(&self, state: &AppState) -> Clock {
        Clock {
            now: clock::now(),
            leeway: state.config.jwt.leeway_secs,
        }
    }

    fn answer(
        &self,
        protocol: SignalProtocol,
        received: Result<Outcome, Failure>,
    ) -> Result<Response<Body>, GatewayError> {
        let (signal, status) = match protocol {
            SignalProtocol::BackchannelLogout => (SignalMetrics::BACKCHANNEL, StatusCode::OK),
            SignalProtocol::SharedSignals => (SignalMetrics::SSF, StatusCode::ACCEPTED),
        };
        match received {
            Ok(Outcome::Committed) => self.metrics.accepted(signal),
            Ok(Outcome::Replayed) => {
                self.metrics.replayed(signal);
                tracing::info!(
                    signal,
                    "signal accepted before: acknowledged, nothing changed"
                );
            }
            Err(Failure::Refused(refusal)) => {
                self.metrics.refused(signal, refusal);
                tracing::warn!(
                    signal,
                    reason = refusal.reason(),
                    "signal refused: {refusal}"
                );
                return Err(refusal.into_error(protocol));
            }
            // The write path logged why.
            Err(Failure::Store(error)) => return Err(GatewayError::StoreUnavailable(error)),
        }
        Ok(acknowledged(status))
    }
}

/// An empty acknowledgement that no cache keeps.
fn acknowledged(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(web::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
