//! Connection limits (SPEC sections 4 and 8): header read timeout against slowloris and
//! idle keep-alive connections, and `server.max_connections` (excess connections wait for
//! a slot, they are not refused).
//!
//! Raw TCP clients: only they control exactly when bytes are sent and connections close.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Gateway, gateway, token, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ============================================================================
// Raw HTTP/1.1 client
// ============================================================================

/// A `GET` with a valid token; keep-alive unless `close`.
fn request(path: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{connection}\r\n",
        token().sign()
    )
}

/// Reads one response with a `Content-Length` body; returns its status.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .expect("read the response head");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("the response has a Content-Length");
    let mut body = buf.len() - head_end;
    while body < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read the body");
        assert!(n > 0, "body cut short");
        body += n;
    }
    status
}

/// One request on a new connection that is then kept open, idle.
async fn idle_after_one_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(request("/x", false).as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .expect("answered");
    assert_eq!(status, 200);
    stream
}

/// Reads until the peer closes (EOF or reset) and returns when; `None` if still open at `limit`.
async fn closed_by_peer(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A gateway in front of the recording upstream, with extra settings.
async fn start(upstream: &support::Upstream, settings: &[&str]) -> Gateway {
    settings
        .iter()
        .fold(gateway(upstream), |builder, line| builder.set(line))
        .start()
        .await
}

// ============================================================================
// Header read timeout
// ============================================================================

#[tokio::test]
async fn slowloris_client_is_disconnected_at_the_header_read_timeout_and_others_are_served() {
    let upstream = upstream().await;
    let gw = start(&upstream, &["server.header_read_timeout_secs = 1"]).await;
    let jwt = token().sign();
    let started = Instant::now();
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let dribble = tokio::spawn(async move {
        for byte in b"GET /x HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789abcdef\r\n\r\n" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let served_meanwhile = gw.status_with("/x", &jwt).await;
    let mut rest = Vec::new();
    let disconnected = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
        .await
        .map(|_| started.elapsed());
    dribble.abort();
    let disconnected = disconnected.expect("the slow client is still connected after 10 s");
    println!("slowloris client disconnected after {disconnected:?}");
    assert_eq!(served_meanwhile, 200, "another client is served meanwhile");
    assert!(
        disconnected >= Duration::from_millis(900) && disconnected <= Duration::from_secs(3),
        "disconnected after {disconnected:?}, expected ~1-3 s with a 1 s header read timeout"
    );
    assert_eq!(
        upstream.requests().iter().filter(|r| r.uri == "/x").count(),
        1,
        "only the other client's request was forwarded"
    );
    assert_eq!(
        gw.status_with("/x", &jwt).await,
        200,
        "the gateway still serves"
    );
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let upstream = upstream().await;
    let gw = start(&upstream, &["server.header_read_timeout_secs = 1"]).await;
    let mut stream = idle_after_one_request(gw.addr).await;
    stream
        .write_all(request("/x", false).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await,
        200,
        "the connection is kept alive for a second request"
    );
    let idle_since = Instant::now();
    let closed = closed_by_peer(&mut stream, Duration::from_secs(10))
        .await
        .expect("the idle connection is still open after 10 s");
    let idle = closed - idle_since;
    println!("idle keep-alive connection closed after {idle:?}");
    assert!(
        idle >= Duration::from_millis(800) && idle <= Duration::from_secs(3),
        "closed after {idle:?} idle, expected ~1 s (the header read timeout)"
    );
}

// ============================================================================
// max_connections
// ============================================================================

/// With both slots held by `holders`, a third client's request waits until one closes.
async fn third_client_waits_for_a_slot(
    upstream: &support::Upstream,
    gw: &Gateway,
    holders: Vec<TcpStream>,
) {
    let forwarded = upstream.count();
    let mut third = TcpStream::connect(gw.addr)
        .await
        .expect("an excess connection is not refused");
    third
        .write_all(request("/third", false).as_bytes())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut third)).await;
    assert!(
        early.is_err(),
        "the third client was answered while both slots were held"
    );
    assert_eq!(
        upstream.count(),
        forwarded,
        "nothing of the third was forwarded"
    );

    let mut holders = holders.into_iter();
    drop(holders.next());
    let status = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third))
        .await
        .expect("the third client is answered once a slot is free");
    assert_eq!(status, 200);
    assert_eq!(upstream.last().uri, "/third");

    drop(third);
    drop(holders);
    let mut later = TcpStream::connect(gw.addr).await.unwrap();
    later
        .write_all(request("/later", true).as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), read_response(&mut later))
        .await
        .expect("the gateway is still up and serving");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn excess_connection_waits_while_two_keep_alive_connections_hold_both_slots() {
    let upstream = upstream().await;
    let gw = start(
        &upstream,
        &[
            "server.max_connections = 2",
            "server.header_read_timeout_secs = 30",
        ],
    )
    .await;
    let holders = vec![
        idle_after_one_request(gw.addr).await,
        idle_after_one_request(gw.addr).await,
    ];
    third_client_waits_for_a_slot(&upstream, &gw, holders).await;
}

#[tokio::test]
async fn excess_connection_waits_while_two_silent_connections_hold_both_slots() {
    let upstream = upstream().await;
    let gw = start(
        &upstream,
        &[
            "server.max_connections = 2",
            "server.header_read_timeout_secs = 30",
        ],
    )
    .await;
    let holders = vec![
        TcpStream::connect(gw.addr).await.unwrap(),
        TcpStream::connect(gw.addr).await.unwrap(),
    ];
    third_client_waits_for_a_slot(&upstream, &gw, holders).await;
}

#[tokio::test]
async fn fifty_concurrent_clients_are_all_answered_four_at_a_time() {
    const CLIENTS: usize = 50;
    const SLOTS: usize = 4;
    const SLOW_MS: u64 = 200;
    let upstream = upstream().await;
    let gw = start(&upstream, &["server.max_connections = 4"]).await;
    let addr = gw.addr;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(request(&format!("/slow/{SLOW_MS}"), true).as_bytes())
                    .await
                    .unwrap();
                read_response(&mut stream).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        let status = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("every client is answered within 30 s")
            .unwrap();
        statuses.push(status);
    }
    let elapsed = started.elapsed();
    println!("{CLIENTS} clients through {SLOTS} slots in {elapsed:?}");
    assert_eq!(statuses, vec![200; CLIENTS]);
    assert_eq!(upstream.count(), CLIENTS);
    let waves = CLIENTS.div_ceil(SLOTS) as u32;
    assert!(
        elapsed >= Duration::from_millis(SLOW_MS) * (waves - 1),
        "{CLIENTS} requests of {SLOW_MS} ms in {elapsed:?}: more than {SLOTS} were served at once"
    );
    assert_eq!(
        gw.status_with("/x", &token().sign()).await,
        200,
        "the gateway is still up"
    );
}
