//! WebSocket: the `Upgrade` handshake is authenticated like any request, then the two
//! upgraded connections are spliced until either side closes or the session ends.

use std::sync::Arc;

use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use super::Proxy;
use super::guard::{EndSignal, Ended};
use crate::ops::GaugeGuard;
use crate::web::{self, Body};

/// The client's `Upgrade: websocket` value, when `req` is an HTTP/1.1 WebSocket handshake.
pub(super) fn websocket_upgrade<B>(req: &Request<B>) -> Option<HeaderValue> {
    let connection_upgrade = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = req.headers().get(UPGRADE)?;
    let websocket = upgrade
        .to_str()
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    (connection_upgrade && websocket && req.version() == http::Version::HTTP_11)
        .then(|| upgrade.clone())
}

/// Answers the client with the upstream's 101 and splices the two connections in a
/// tracked task that ends with the session (`end`, none on public paths) or at shutdown.
pub(super) fn splice(
    proxy: &Proxy,
    client: OnUpgrade,
    mut upstream: Response<Incoming>,
    end: Option<EndSignal>,
    slot: Arc<OwnedSemaphorePermit>,
) -> Response<Body> {
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let shutdown = proxy.state.shutdown.clone();
    let open_tunnels = proxy.metrics.open_tunnels.clone();
    proxy.tunnels.spawn(async move {
        // Held until the tunnel ends: the connection slot is released with it.
        let _slot = slot;
        let _open = GaugeGuard::new(&open_tunnels);
        let (client, upstream) = match tokio::try_join!(client, upstream_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "WebSocket tunnel ended with an error");
                }
            }
            ended = session(end) => tracing::info!(%ended, "closing a WebSocket tunnel"),
            () = shutdown.cancelled() => tracing::info!(ended = %Ended::Shutdown, "closing a WebSocket tunnel"),
        }
        let _ = client.shutdown().await;
        let _ = upstream.shutdown().await;
    });
    let (mut parts, _) = upstream.into_parts();
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    Response::from_parts(parts, web::empty())
}

async fn session(end: Option<EndSignal>) -> Ended {
    match end {
        Some(end) => end.await,
        None => std::future::pending().await,
    }
}
