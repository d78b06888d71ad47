//! WebSocket tunnels (SPEC sections 2 and 4): authenticated at the handshake, then spliced;
//! a tunnel is a session too, closed within 1 s when its token stops passing.
//!
//! The upstream is a tokio-tungstenite echo server written here; the harness's gateway is
//! pointed at it through a stand-in `support::Upstream` whose address is replaced.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Gateway, GatewayBuilder, admin, now, token};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async, client_async};

type Ws = WebSocketStream<TcpStream>;

/// How long a test waits for something that should happen well within 1 s.
const PATIENCE: Duration = Duration::from_secs(5);

// ============================================================================
// Echo upstream
// ============================================================================

/// A WebSocket server that echoes every text and binary message.
struct EchoUpstream {
    addr: SocketAddr,
    /// TCP connections accepted, handshake or not.
    connections: Arc<AtomicUsize>,
    /// Request headers of every completed handshake.
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> Vec<http::HeaderMap> {
        self.handshakes.lock().unwrap().clone()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_upstream() -> EchoUpstream {
    echo_upstream_answering_after(Duration::ZERO).await
}

/// An echo upstream that answers each handshake only after `delay`.
async fn echo_upstream_answering_after(delay: Duration) -> EchoUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let (count, log) = (connections.clone(), handshakes.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(echo(stream, log.clone(), delay));
        }
    });
    EchoUpstream {
        addr,
        connections,
        handshakes,
        task,
    }
}

async fn echo(stream: TcpStream, log: Arc<Mutex<Vec<http::HeaderMap>>>, delay: Duration) {
    tokio::time::sleep(delay).await;
    // The callback's error type is tungstenite's own (a full HTTP response).
    #[allow(clippy::result_large_err)]
    let record = move |req: &Request, rsp: Response| {
        log.lock().unwrap().push(req.headers().clone());
        Ok(rsp)
    };
    let Ok(mut ws) = accept_hdr_async(stream, record).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

// ============================================================================
// Helpers
// ============================================================================

/// A gateway builder whose `upstream.url` is `addr` (the harness takes a `support::Upstream`).
async fn gateway_to(addr: SocketAddr) -> GatewayBuilder {
    let mut stand_in = support::upstream().await;
    stand_in.addr = addr;
    support::gateway(&stand_in)
}

async fn start(upstream: &EchoUpstream) -> Gateway {
    gateway_to(upstream.addr).await.start().await
}

/// The WebSocket handshake through the gateway, with `jwt` as a bearer token if given.
async fn connect(gw: &Gateway, path: &str, jwt: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{}{path}", gw.addr)
        .into_client_request()
        .unwrap();
    if let Some(jwt) = jwt {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    }
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::timeout(PATIENCE, client_async(request, tcp))
        .await
        .expect("the handshake is answered")
        .map(|(ws, _)| ws)
}

async fn open(gw: &Gateway, jwt: &str) -> Ws {
    connect(gw, "/ws", Some(jwt))
        .await
        .expect("the handshake with a valid token succeeds")
}

/// Sends `message` and expects the very same message back.
async fn assert_echoes(ws: &mut Ws, message: Message, what: &str) {
    ws.send(message.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: send failed: {e}"));
    let echoed = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no echo within {PATIENCE:?}"));
    match echoed {
        Some(Ok(echoed)) => assert_eq!(echoed, message, "{what}"),
        other => panic!("{what}: the tunnel is closed: {other:?}"),
    }
}

/// Waits for the tunnel to be closed (EOF, reset or a close frame) and returns when.
async fn closed(ws: &mut Ws, what: &str) -> Instant {
    let next = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: the tunnel is still open after {PATIENCE:?}"));
    match next {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Instant::now(),
        Some(Ok(message)) => panic!("{what}: unexpected message {message:?}"),
    }
}

/// A `POST` to the admin API with a bearer token; panics unless it answers 200.
async fn admin_post(gw: &Gateway, path: &str, jwt: &str) -> Instant {
    let rsp = gw.post(path).bearer_auth(jwt).send().await.unwrap();
    let answered = Instant::now();
    let status = rsp.status();
    let body: Value = rsp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {body}");
    answered
}

fn assert_within_one_second(what: &str, elapsed: Duration) {
    println!("{what}: {:.0} ms", elapsed.as_secs_f64() * 1000.0);
    assert!(
        elapsed < Duration::from_secs(1),
        "{what}: {elapsed:?}, more than the promised 1 s"
    );
}

// ============================================================================
// Tunnelling
// ============================================================================

#[tokio::test]
async fn text_and_binary_messages_flow_both_ways_through_the_tunnel() {
    let upstream = echo_upstream().await;
    let gw = start(&upstream).await;
    let mut ws = open(&gw, &token().sub("alice").sign()).await;
    for round in 0..5 {
        assert_echoes(
            &mut ws,
            Message::text(format!("hello {round}")),
            "text round trip",
        )
        .await;
        let binary: Vec<u8> = (0..=255u8).cycle().take(70_000 + round).collect();
        assert_echoes(&mut ws, Message::binary(binary), "binary round trip").await;
    }
    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 1, "one handshake reached the upstream");
    assert_eq!(handshakes[0]["x-auth-subject"], "alice");
    assert_eq!(handshakes[0]["x-auth-workspace"], "acme");
    assert_eq!(handshakes[0]["upgrade"], "websocket");
}

#[tokio::test]
async fn handshake_without_a_valid_token_is_401_and_never_reaches_the_upstream() {
    let upstream = echo_upstream().await;
    let gw = start(&upstream).await;
    let cases = [
        (
            "no token",
            None,
            json!({"error": "missing_token", "reason": "missing_token"}),
        ),
        (
            "malformed token",
            Some("not-a-jwt"),
            json!({"error": "invalid_token", "reason": "malformed_token"}),
        ),
    ];
    for (what, jwt, expected) in cases {
        let refused = connect(&gw, "/ws", jwt).await;
        let Err(tungstenite::Error::Http(rsp)) = refused else {
            panic!("{what}: expected an HTTP refusal, got {refused:?}");
        };
        assert_eq!(rsp.status(), 401, "{what}");
        let body: Value = serde_json::from_slice(rsp.body().as_deref().unwrap_or_default())
            .unwrap_or(Value::Null);
        assert_eq!(body, expected, "{what}");
    }
    assert_eq!(upstream.connections(), 0, "the upstream saw nothing");
}

#[tokio::test]
async fn websocket_on_a_public_path_is_tunnelled_without_a_token() {
    let upstream = echo_upstream().await;
    let gw = gateway_to(upstream.addr)
        .await
        .set("auth.public_paths = [\"/public/*\"]")
        .start()
        .await;
    let mut ws = connect(&gw, "/public/ws", None)
        .await
        .expect("the public handshake succeeds without a token");
    assert_echoes(&mut ws, Message::text("public"), "public text").await;
    assert_echoes(&mut ws, Message::binary(vec![1, 2, 3]), "public binary").await;
    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 1);
    assert!(handshakes[0].get("x-auth-subject").is_none());
}

// ============================================================================
// Tunnels end with their session
// ============================================================================

#[tokio::test]
async fn logout_all_cuts_the_workspace_tunnels_within_a_second_but_not_the_admins_or_other_workspaces()
 {
    let upstream = echo_upstream().await;
    let gw = start(&upstream).await;
    let admin_jwt = admin("carol", "acme").sign();
    let mut alice = open(&gw, &token().sub("alice").sign()).await;
    let mut carol = open(&gw, &admin_jwt).await;
    let mut dave = open(&gw, &token().sub("dave").workspace("globex").sign()).await;
    for ws in [&mut alice, &mut carol, &mut dave] {
        assert_echoes(ws, Message::text("before"), "before the logout").await;
    }

    let answered = admin_post(
        &gw,
        "/_sessiongate/v1/workspaces/acme/logout-all",
        &admin_jwt,
    )
    .await;
    let cut = closed(&mut alice, "alice's tunnel after logout-all").await;
    assert_within_one_second(
        "alice's tunnel closed after the logout-all's 200",
        cut - answered,
    );

    assert_echoes(
        &mut carol,
        Message::text("admin after"),
        "the admin's preserved tunnel stays open",
    )
    .await;
    assert_echoes(
        &mut dave,
        Message::binary(vec![9; 10]),
        "another workspace's tunnel stays open",
    )
    .await;
}

#[tokio::test]
async fn a_policy_change_cuts_the_tunnels_that_no_longer_pass_it_within_a_second() {
    let upstream = echo_upstream().await;
    let gw = start(&upstream).await;
    let admin_jwt = admin("carol", "acme").claim("amr", json!(["mfa"])).sign();
    let mut alice = open(&gw, &token().sub("alice").sign()).await;
    let mut carol = open(&gw, &admin_jwt).await;
    assert_echoes(&mut alice, Message::text("before"), "before the policy").await;

    let policy = json!({"require_claims": [{"claim": "amr", "any_of": ["mfa"]}]});
    let rsp = gw
        .put_policy("acme", &admin_jwt, &policy)
        .send()
        .await
        .unwrap();
    let answered = Instant::now();
    assert_eq!(rsp.status(), 200);
    let cut = closed(&mut alice, "alice's tunnel after the policy").await;
    assert_within_one_second(
        "alice's tunnel closed after the policy's 200",
        cut - answered,
    );
    assert_echoes(
        &mut carol,
        Message::text("admin after"),
        "a tunnel that meets the policy stays open",
    )
    .await;
}

#[tokio::test]
async fn user_logout_cuts_that_users_tunnel_only() {
    let upstream = echo_upstream().await;
    let gw = start(&upstream).await;
    let admin_jwt = admin("carol", "acme").sign();
    let mut alice = open(&gw, &token().sub("alice").sign()).await;
    let mut bob = open(&gw, &token().sub("bob").sign()).await;
    assert_echoes(&mut bob, Message::text("bob before"), "bob before").await;

    let answered = admin_post(
        &gw,
        "/_sessiongate/v1/workspaces/acme/users/bob/logout",
        &admin_jwt,
    )
    .await;
    let cut = closed(&mut bob, "bob's tunnel after his logout").await;
    assert_within_one_second(
        "bob's tunnel closed after the user logout's 200",
        cut - answered,
    );
    assert_echoes(
        &mut alice,
        Message::text("alice after"),
        "alice's tunnel stays open",
    )
    .await;
}

#[tokio::test]
async fn tunnel_is_cut_when_its_token_expires() {
    let upstream = echo_upstream().await;
    let gw = gateway_to(upstream.addr)
        .await
        .set("jwt.leeway_secs = 0")
        .start()
        .await;
    let exp = now() + 2.0;
    let mut ws = open(&gw, &token().exp(exp).sign()).await;
    assert_echoes(&mut ws, Message::text("before exp"), "before exp").await;
    closed(&mut ws, "the tunnel of an expiring token").await;
    let lag = now() - exp;
    println!("tunnel closed {:.0} ms after exp", lag * 1000.0);
    assert!(
        lag >= -0.05,
        "closed {:.3} s before the token expired",
        -lag
    );
    assert!(lag < 1.0, "closed {lag:.3} s after exp, more than ~1 s");
}

#[tokio::test]
async fn tunnel_whose_session_was_logged_out_while_the_upstream_answered_the_handshake_is_cut() {
    let upstream = echo_upstream_answering_after(Duration::from_millis(700)).await;
    let gw = start(&upstream).await;
    let admin_jwt = admin("carol", "acme").sign();
    let alice = token().sub("alice").sign();
    let handshake = {
        let gw_addr = gw.addr;
        tokio::spawn(async move {
            let mut request = format!("ws://{gw_addr}/ws").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {alice}").parse().unwrap());
            let tcp = TcpStream::connect(gw_addr).await.unwrap();
            client_async(request, tcp).await.map(|(ws, _)| ws)
        })
    };
    let deadline = Instant::now() + PATIENCE;
    while upstream.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "the handshake never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The token passed at the handshake; the logout lands while the upstream answers.
    let answered = admin_post(
        &gw,
        "/_sessiongate/v1/workspaces/acme/logout-all",
        &admin_jwt,
    )
    .await;
    let cut = match handshake.await.unwrap() {
        Ok(mut ws) => {
            closed(
                &mut ws,
                "the tunnel opened after its session was logged out",
            )
            .await
        }
        Err(_) => Instant::now(),
    };
    assert_within_one_second(
        "tunnel (handshake in flight at the logout-all) closed after the logout-all's 200",
        cut - answered,
    );
}

#[tokio::test]
async fn tunnel_lives_through_the_leeway_but_a_preserved_tunnel_ends_at_exp() {
    let upstream = echo_upstream().await;
    let gw = gateway_to(upstream.addr)
        .await
        .set("jwt.leeway_secs = 2")
        .start()
        .await;
    let exp = now() + 2.0;
    let admin_jwt = admin("carol", "acme").exp(exp).sign();
    let mut carol = open(&gw, &admin_jwt).await;
    let mut dave = open(
        &gw,
        &token().sub("dave").workspace("globex").exp(exp).sign(),
    )
    .await;
    admin_post(
        &gw,
        "/_sessiongate/v1/workspaces/acme/logout-all",
        &admin_jwt,
    )
    .await;
    assert_echoes(
        &mut carol,
        Message::text("preserved"),
        "the preserved tunnel is open",
    )
    .await;

    closed(&mut carol, "the preserved tunnel after its exp").await;
    let carol_lag = now() - exp;
    assert_echoes(
        &mut dave,
        Message::text("in leeway"),
        "a tunnel within the leeway",
    )
    .await;
    closed(&mut dave, "the tunnel after exp + leeway").await;
    let dave_lag = now() - exp;
    println!(
        "preserved tunnel closed {:.0} ms after exp; ordinary tunnel {:.0} ms after exp (leeway 2 s)",
        carol_lag * 1000.0,
        dave_lag * 1000.0
    );
    assert!(
        (-0.05..1.0).contains(&carol_lag),
        "the preserved tunnel closed {carol_lag:.3} s after exp, expected at exp"
    );
    assert!(
        (1.95..3.0).contains(&dave_lag),
        "the ordinary tunnel closed {dave_lag:.3} s after exp, expected at exp + 2 s leeway"
    );
}

// ============================================================================
// Connection limit
// ============================================================================

#[tokio::test]
async fn open_tunnels_hold_their_connection_slots() {
    let upstream = echo_upstream().await;
    let gw = gateway_to(upstream.addr)
        .await
        .set("server.max_connections = 2")
        .start()
        .await;
    let jwt = token().sign();
    let mut first = open(&gw, &jwt).await;
    let mut second = open(&gw, &jwt).await;
    assert_echoes(&mut first, Message::text("one"), "first tunnel").await;
    assert_echoes(&mut second, Message::text("two"), "second tunnel").await;

    let third = {
        let gw_addr = gw.addr;
        let jwt = jwt.clone();
        tokio::spawn(async move {
            let mut request = format!("ws://{gw_addr}/ws").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
            let tcp = TcpStream::connect(gw_addr).await.unwrap();
            client_async(request, tcp).await.map(|(ws, _)| ws)
        })
    };
    let early = tokio::time::timeout(Duration::from_secs(1), async {
        while !third.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a third connection was served while two tunnels held both slots of max_connections = 2"
    );
    assert_eq!(upstream.connections(), 2);

    first.close(None).await.unwrap();
    drop(first);
    let mut third = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("the third handshake is answered once a tunnel closes")
        .unwrap()
        .expect("the third handshake succeeds");
    assert_echoes(&mut third, Message::text("three"), "third tunnel").await;
}
