//! Graceful shutdown (SPEC section 4): on SIGTERM stop accepting, close WebSocket tunnels,
//! let in-flight requests finish for up to `server.shutdown_grace_secs`, exit 0.

mod support;

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{Gateway, Upstream, gateway, token, upstream};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, accept_async, client_async};

// ============================================================================
// Helpers
// ============================================================================

/// The gateway's exit and when it happened.
struct Exited {
    status: ExitStatus,
    at: Instant,
}

/// Sends SIGTERM (through the harness, which then waits for the exit) without blocking
/// the test; returns when the signal was sent and the pending exit.
fn sigterm(mut gw: Gateway) -> (Instant, JoinHandle<Exited>) {
    let sent = Instant::now();
    let exit = tokio::task::spawn_blocking(move || {
        let status = gw.terminate();
        Exited {
            status,
            at: Instant::now(),
        }
    });
    (sent, exit)
}

/// Waits for the gateway process to exit, at most `limit`.
async fn exited(exit: JoinHandle<Exited>, limit: Duration) -> Exited {
    tokio::time::timeout(limit, exit)
        .await
        .unwrap_or_else(|_| panic!("the gateway is still running {limit:?} after SIGTERM"))
        .unwrap()
}

/// `GET path` with a valid token, sent from a task; returns once the upstream has it.
async fn in_flight(
    gw: &Gateway,
    upstream: &Upstream,
    path: &str,
) -> JoinHandle<reqwest::Result<u16>> {
    let request = gw.get(path).bearer_auth(token().sign());
    let task = tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task
}

/// A WebSocket echo server; returns its address.
async fn echo_upstream() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

// ============================================================================
// Tests
// ============================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_and_the_process_exits_0_after_sigterm() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let request = in_flight(&gw, &upstream, "/slow/1500").await;
    let (_, exit) = sigterm(gw);
    let status = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(status, 200, "the in-flight request completes");
    let exited = exited(exit, Duration::from_secs(10)).await;
    assert_eq!(exited.status.code(), Some(0), "{:?}", exited.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_are_refused_after_sigterm_while_in_flight_requests_finish() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let addr = gw.addr;
    let request = in_flight(&gw, &upstream, "/slow/3000").await;
    let (sent, exit) = sigterm(gw);
    let refused = loop {
        match TcpStream::connect(addr).await {
            // A connect racing the listener's close may be reset instead of refused.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break sent.elapsed();
            }
            Err(error) => panic!("unexpected connect error {error}"),
            Ok(_) => {
                assert!(
                    sent.elapsed() < Duration::from_secs(1),
                    "still accepting connections 1 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    println!("connections refused {refused:?} after SIGTERM");
    assert!(
        !exit.is_finished(),
        "the process already exited: the in-flight request was not waited for"
    );
    let status = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(status, 200);
    let exited = exited(exit, Duration::from_secs(10)).await;
    assert_eq!(exited.status.code(), Some(0), "{:?}", exited.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_is_closed_promptly_at_sigterm() {
    let (ws_addr, _ws_task) = echo_upstream().await;
    let mut stand_in = upstream().await;
    stand_in.addr = ws_addr;
    let gw = gateway(&stand_in).start().await;

    let mut request = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token().sign()).parse().unwrap(),
    );
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, _): (WebSocketStream<TcpStream>, _) =
        client_async(request, tcp).await.expect("the tunnel opens");
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));

    let (sent, exit) = sigterm(gw);
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the tunnel is still open 5 s after SIGTERM (grace is 30 s)");
    let closed = sent.elapsed();
    assert!(
        matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "unexpected message {next:?}"
    );
    let exited = exited(exit, Duration::from_secs(10)).await;
    println!(
        "tunnel closed {closed:?} after SIGTERM, process exited after {:?}",
        exited.at - sent
    );
    assert!(
        closed < Duration::from_secs(1),
        "tunnel closed {closed:?} after SIGTERM"
    );
    assert_eq!(exited.status.code(), Some(0), "{:?}", exited.status);
    assert!(
        exited.at - sent < Duration::from_secs(3),
        "exit {:?} after SIGTERM: the closed tunnel still held the process",
        exited.at - sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_longer_than_the_grace_does_not_keep_the_process_alive() {
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("server.shutdown_grace_secs = 1")
        .start()
        .await;
    let _request = in_flight(&gw, &upstream, "/slow/5000").await;
    let (sent, exit) = sigterm(gw);
    let exited = exited(exit, Duration::from_secs(10)).await;
    let took = exited.at - sent;
    println!("exited {took:?} after SIGTERM with a 1 s grace");
    assert_eq!(exited.status.code(), Some(0), "{:?}", exited.status);
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}: the in-flight request did not get its 1 s grace"
    );
    assert!(
        took < Duration::from_millis(2500),
        "exited after {took:?}, expected ~1-2 s with a 1 s grace"
    );
}

#[tokio::test]
async fn sighup_without_tls_neither_stops_nor_disturbs_the_gateway() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The signal is handled asynchronously; a few requests later the process must still serve.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gw.status_with("/after-hup", &token().sign()).await, 200);
    }
    assert!(gw.logs().contains("SIGHUP received"), "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_draining_while_in_flight_requests_finish() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let ops = gw.ops.expect("ops listener");
    let request = in_flight(&gw, &upstream, "/slow/1500").await;
    let (sent, exit) = sigterm(gw);
    let client = support::client();
    let body = loop {
        let rsp = client
            .get(format!("http://{ops}/readyz"))
            .send()
            .await
            .unwrap();
        if rsp.status() == 503 {
            break rsp.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "/readyz still 200 one second after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(
        request.await.unwrap().expect("answered"),
        200,
        "the in-flight request still completes"
    );
    assert_eq!(
        exited(exit, Duration::from_secs(10)).await.status.code(),
        Some(0)
    );
}
