//! The ops listener: `/healthz`, `/readyz`, `/metrics`, apart from the traffic port.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use super::metrics::encode;
use crate::state::{AppState, StoreStatus};
use crate::web::{self, Body};

/// Serves the ops endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, registry: Arc<Registry>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (state, registry) = (state.clone(), registry.clone());
        let service = service_fn(move |req| {
            let (state, registry) = (state.clone(), registry.clone());
            async move { Ok::<_, Infallible>(answer(&state, &registry, &req)) }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

fn answer(state: &AppState, registry: &Registry, req: &Request<Incoming>) -> Response<Body> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => web::json(StatusCode::OK, &json!({ "status": "ok" })),
        ("GET", "/readyz") => readyz(state),
        ("GET", "/metrics") => {
            state.sessions.observe(&state.store);
            let mut response = Response::new(web::full(encode(registry)));
            let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            response
        }
        _ => web::json(StatusCode::NOT_FOUND, &json!({ "error": "not_found" })),
    }
}

/// 200 while proxied requests can pass: a degraded shared store still enforces the last
/// loaded cutoffs, so it stays ready; a stale one (`store.max_staleness_secs`) does not,
/// nor does an instance whose keys (remote JWKS) have not loaded yet.
fn readyz(state: &AppState) -> Response<Body> {
    let keys_ready = state.verifier.keys().is_ready();
    let keys = if keys_ready { "loaded" } else { "loading" };
    let (store_ready, store) = match state.store_status() {
        StoreStatus::Loading => (false, "loading"),
        StoreStatus::Loaded => (true, "loaded"),
        StoreStatus::Degraded => (true, "degraded"),
        StoreStatus::Stale => (false, "stale"),
    };
    // Draining at shutdown: tell the load balancer to stop sending before the listener goes.
    let draining = state.shutdown.is_cancelled();
    let ready = keys_ready && store_ready && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    web::json(
        status,
        &json!({ "ready": ready, "keys": keys, "store": store, "draining": draining }),
    )
}
