//! One access-log event and the metrics of every request, however it ended.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Response, StatusCode, Uri};

use super::metrics::{Outcome, ProxyMetrics};
use crate::auth::{self, Claims, TokenError};
use crate::web::{Body, GatewayError};

/// What the access log says about one request, filled in as the pipeline goes.
#[derive(Debug)]
pub(super) struct AccessRecord {
    started: Instant,
    method: Method,
    /// A `Uri` clone shares its bytes: the path is kept for the log without a copy.
    uri: Uri,
    pub(super) client_ip: IpAddr,
    pub(super) caller: Option<Arc<Claims>>,
    pub(super) upstream_status: Option<u16>,
    pub(super) upstream_elapsed: Option<Duration>,
    pub(super) admin: bool,
}

// === impl AccessRecord ===

impl AccessRecord {
    /// Starts the record (and the clock) of a request.
    pub(super) fn new(method: &Method, uri: &Uri, client_ip: IpAddr) -> Self {
        Self {
            started: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            client_ip,
            caller: None,
            upstream_status: None,
            upstream_elapsed: None,
            admin: false,
        }
    }

    /// Counts and logs the request once its answer is known.
    pub(super) fn finish(
        self,
        metrics: &ProxyMetrics,
        result: &Result<Response<Body>, GatewayError>,
    ) {
        let (status, reason) = match result {
            Ok(response) => {
                let outcome = if self.admin {
                    Outcome::Admin
                } else {
                    Outcome::Forwarded
                };
                metrics.request(outcome);
                (response.status(), None)
            }
            Err(error) => {
                count_error(metrics, error);
                (error.status(), error.reason())
            }
        };
        self.observe(metrics);
        self.log(status, reason);
    }

    fn observe(&self, metrics: &ProxyMetrics) {
        let elapsed = self.started.elapsed();
        metrics.request_duration.observe(elapsed);
        if let Some(upstream) = self.upstream_elapsed {
            metrics.upstream_duration.observe(upstream);
        }
        let ours = elapsed.saturating_sub(self.upstream_elapsed.unwrap_or_default());
        metrics.gateway_duration.observe(ours);
    }

    fn log(&self, status: StatusCode, reason: Option<TokenError>) {
        let claims = self.caller.as_deref();
        tracing::info!(
            target: "access",
            method = %self.method,
            path = self.uri.path(),
            client_ip = %self.client_ip,
            status = status.as_u16(),
            reason = reason.map(TokenError::as_str),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            workspace = claims.map(|c| c.workspace.as_str()),
            session = claims.map(|c| auth::session_id_prefix(&c.session_id)),
            upstream_status = self.upstream_status,
        );
    }
}

/// An answer hyper gave before any request was parsed (a 431): no method or path to log.
pub(super) fn unparsed(metrics: &ProxyMetrics, client_ip: IpAddr, status: StatusCode) {
    metrics.request(Outcome::Error);
    tracing::info!(
        target: "access",
        %client_ip,
        status = status.as_u16(),
        "request head not parsed"
    );
}

fn count_error(metrics: &ProxyMetrics, error: &GatewayError) {
    match error {
        GatewayError::Unauthorized { .. } | GatewayError::Policy { .. } => {
            if let Some(reason) = error.reason() {
                metrics.rejection(reason);
            }
            metrics.request(Outcome::Rejected);
        }
        GatewayError::Upstream(upstream) => {
            metrics.upstream_error(upstream);
            metrics.request(Outcome::Error);
        }
        _ => metrics.request(Outcome::Error),
    }
}
