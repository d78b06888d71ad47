//! The leanest reverse proxy hyper makes, for benches/load.sh's `hyper-floor` row: no
//! auth, no header rewriting, no metrics, no logging, each client connection forwarding
//! over one upstream connection of its own. What it costs per request is what hyper,
//! tokio and the kernel cost; what sessiongate costs beyond it is ours.
//!
//! `hyper_floor <listen addr> <upstream addr>` (not a benchmark itself).

use std::net::SocketAddr;

use hyper::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper_floor <listen addr> <upstream addr>";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = args.next().ok_or(usage)?.parse()?;
    // The same runtime sessiongate runs on: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> Result<(), BoxError> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        // wrk drops its connections mid-request when a run ends: not worth a line.
        tokio::spawn(async move { proxy_connection(stream, upstream).await.ok() });
    }
}

/// Serves one client connection, each request sent on this connection's own upstream one.
async fn proxy_connection(stream: TcpStream, upstream: SocketAddr) -> Result<(), BoxError> {
    let origin = TcpStream::connect(upstream).await?;
    origin.set_nodelay(true)?;
    let (sender, connection) = client::handshake(TokioIo::new(origin)).await?;
    tokio::spawn(connection);
    let sender = &Mutex::new(sender);
    let service = service_fn(|req: Request<Incoming>| async move {
        let mut sender = sender.lock().await;
        sender.ready().await?;
        sender.send_request(req).await
    });
    let io = TokioIo::new(stream);
    server::Builder::new().serve_connection(io, service).await?;
    Ok(())
}
