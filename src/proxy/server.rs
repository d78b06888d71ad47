//! The accept loop: connection limit, optional TLS, HTTP/1.1 and HTTP/2 on one listener,
//! and a graceful drain at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use std::net::SocketAddr;

use http::StatusCode;

use super::Proxy;
use super::access;
use super::gateway::Gateway;
use crate::config::ServerConfig;
use crate::ops::GaugeGuard;
use crate::web::ConnInfo;

/// How often an idle HTTP/2 client is pinged, so dead peers free their slot.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves the proxy and admin API on `listener` until `shutdown` resolves. Then: stop
/// accepting, close WebSocket tunnels, let in-flight requests finish for up to
/// `server.shutdown_grace_secs`, and return.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let config = &proxy.state.config.server;
    let builder = Arc::new(connection_builder(config));
    let graceful = GracefulShutdown::new();
    // Taking a slot before accepting leaves excess connections waiting in the backlog.
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (proxy, builder, tls, watcher) = (
            proxy.clone(),
            builder.clone(),
            tls.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let _open = GaugeGuard::new(&proxy.metrics.open_connections);
            let timeout = proxy.state.config.server.header_read_timeout;
            let Some(io) = handshake(stream, tls, timeout).await else {
                return;
            };
            let conn = ConnInfo::new(peer, matches!(io, Either::Left(_)));
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                Gateway::new(proxy.clone(), conn, permit),
            );
            if let Err(error) = watcher.watch(connection).await {
                answered_by_hyper(&proxy, peer, &*error);
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain(&proxy, graceful).await;
}

/// Request heads over `server.max_header_bytes` are answered 431 by hyper itself, before
/// the gateway sees a request: they are logged and counted here like every other answer.
fn answered_by_hyper(proxy: &Proxy, peer: SocketAddr, error: &(dyn std::error::Error + 'static)) {
    let too_large = error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_parse_too_large);
    if too_large {
        // No headers were read, so `X-Forwarded-For` cannot say more than the peer.
        let client_ip = peer.ip().to_canonical();
        access::unparsed(
            &proxy.metrics,
            client_ip,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        );
    }
}

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(H2_KEEPALIVE));
    builder
}

/// The TLS handshake, bounded by the header read timeout so a silent client cannot hold
/// a connection slot.
async fn handshake(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
) -> Option<Either<tokio_rustls::server::TlsStream<TcpStream>, TcpStream>> {
    let Some(acceptor) = tls else {
        return Some(Either::Right(stream));
    };
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(Either::Left(stream)),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn drain(proxy: &Proxy, graceful: GracefulShutdown) {
    proxy.state.shutdown.cancel();
    proxy.tunnels.close();
    let grace = proxy.state.config.server.shutdown_grace;
    let drained = async {
        graceful.shutdown().await;
        proxy.tunnels.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period; closing them"
        );
    }
}
