//! Streaming through the gateway (SPEC sections 2 and 4): SSE event by event, a stream of
//! a logged-out session is cut within 1 s, and 1 GiB each way in flat memory.
//!
//! The SSE upstream is a hyper server written here; the harness's gateway is pointed at it
//! through a stand-in `support::Upstream` whose address is replaced.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{Gateway, admin, now, token};
use tokio::net::TcpListener;

const MIB: usize = 1024 * 1024;
const GIB: usize = 1024 * MIB;

// ============================================================================
// SSE upstream
// ============================================================================

/// A server answering `GET /events/<count>/<ms>[/<delay_ms>]` with `count` events
/// `data: <n>\n\n`, the first at once and each next one `ms` later; the response head is
/// sent `delay_ms` after the request arrived (default 0).
struct SseUpstream {
    addr: SocketAddr,
    /// Requests received so far.
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SseUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sse_upstream() -> SseUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            let service = service_fn(move |req| {
                counter.fetch_add(1, Ordering::SeqCst);
                events(req)
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    SseUpstream {
        addr,
        requests,
        task,
    }
}

async fn events(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let mut params = req
        .uri()
        .path()
        .trim_start_matches("/events/")
        .split('/')
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let (count, gap) = (params.next().unwrap_or(0), params.next().unwrap_or(0));
    tokio::time::sleep(Duration::from_millis(params.next().unwrap_or(0))).await;
    let stream = futures_util::stream::unfold(0, move |n| async move {
        if n == count {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(gap)).await;
        }
        let event = Frame::data(Bytes::from(format!("data: {n}\n\n")));
        Some((Ok::<_, Infallible>(event), n + 1))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    Ok(response)
}

// ============================================================================
// Helpers
// ============================================================================

/// A gateway in front of `addr` (the harness takes a `support::Upstream`).
async fn gateway_to(addr: SocketAddr) -> Gateway {
    gateway_with(addr, &[]).await
}

async fn gateway_with(addr: SocketAddr, settings: &[&str]) -> Gateway {
    let mut stand_in = support::upstream().await;
    stand_in.addr = addr;
    settings
        .iter()
        .fold(support::gateway(&stand_in), |builder, line| {
            builder.set(line)
        })
        .start()
        .await
}

/// What a client saw of an event stream.
struct Received {
    /// Each complete event (without its blank line) and when it arrived.
    events: Vec<(String, Instant)>,
    /// How the body ended: `Ok` for a clean end, `Err` for an error (e.g. a cut connection).
    end: Result<(), String>,
    ended_at: Instant,
}

/// Reads an event stream to its end, calling `on_event` after each complete event.
async fn read_events(mut rsp: reqwest::Response, mut on_event: impl AsyncFnMut(usize)) -> Received {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let end = loop {
        match rsp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(error) => break Err(format!("{error:?}")),
        }
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let event = String::from_utf8(buf.drain(..i + 2).collect()).unwrap();
            events.push((event.trim_end().to_string(), Instant::now()));
            on_event(events.len()).await;
        }
    };
    Received {
        events,
        end,
        ended_at: Instant::now(),
    }
}

// ============================================================================
// Server-sent events
// ============================================================================

#[tokio::test]
async fn sse_events_arrive_one_by_one_not_at_the_end() {
    let upstream = sse_upstream().await;
    let gw = gateway_to(upstream.addr).await;
    let started = Instant::now();
    let rsp = gw
        .get("/events/5/300")
        .bearer_auth(token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["content-type"], "text/event-stream");
    let received = read_events(rsp, async |_| {}).await;
    assert_eq!(received.end, Ok(()), "the stream ends cleanly");
    let texts: Vec<&str> = received.events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        texts,
        ["data: 0", "data: 1", "data: 2", "data: 3", "data: 4"]
    );
    let first = received.events[0].1 - started;
    let whole = received.ended_at - started;
    println!("first event after {first:?}, whole stream {whole:?}");
    assert!(
        first < Duration::from_secs(1),
        "first event after {first:?}: the stream is buffered"
    );
    assert!(
        whole >= Duration::from_millis(1200),
        "whole stream in {whole:?}"
    );
}

/// Streams 100 events to `jwt`, makes `change` (`what`) after the first one, and asserts
/// that the stream ends within a second of the change's 200.
/// `GET /events/<count>/200` (an event every 200 ms) with `jwt`, answered 200.
async fn open_events(gw: &Gateway, jwt: &str, count: usize) -> reqwest::Response {
    let rsp = gw
        .get(&format!("/events/{count}/200"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    rsp
}

async fn assert_cut_within_a_second(
    what: &str,
    jwt: &str,
    change: impl AsyncFn(&Gateway) -> reqwest::Response,
) {
    const EVENTS: usize = 100;
    let upstream = sse_upstream().await;
    let gw = gateway_to(upstream.addr).await;
    let rsp = open_events(&gw, jwt, EVENTS).await;
    let mut answered = None;
    let received = read_events(rsp, async |n| {
        if n == 1 {
            let answer = change(&gw).await;
            answered = Some(Instant::now());
            assert_eq!(answer.status(), 200, "{what}");
        }
    })
    .await;
    let answered = answered.expect("the first event arrived and the change was made");
    let cut = received.ended_at - answered;
    println!(
        "SSE stream ended {:.0} ms after the {what}'s 200 ({:?}), {} events",
        cut.as_secs_f64() * 1000.0,
        received.end,
        received.events.len()
    );
    assert!(
        received.events.len() < EVENTS,
        "all {EVENTS} events arrived: the stream was not cut"
    );
    assert!(
        cut < Duration::from_secs(1),
        "stream ended {cut:?} after the {what}, more than the promised 1 s"
    );
}

#[tokio::test]
async fn sse_stream_is_cut_within_a_second_of_logout_all() {
    let admin_jwt = admin("carol", "acme").sign();
    let alice = token().sub("alice").sign();
    assert_cut_within_a_second("logout-all", &alice, async |gw| {
        gw.logout_all("acme", &admin_jwt).await
    })
    .await;
}

#[tokio::test]
async fn sse_stream_is_cut_within_a_second_of_a_scheduled_logouts_time() {
    const EVENTS: usize = 100;
    let upstream = sse_upstream().await;
    let gw = gateway_to(upstream.addr).await;
    let at = now() + 1.5;
    let admin_jwt = admin("carol", "acme").sign();
    let scheduled = gw
        .schedule_logout("acme", &admin_jwt, &support::rfc3339(at))
        .await;
    assert_eq!(scheduled.status(), 202);
    let rsp = open_events(&gw, &token().sub("alice").sign(), EVENTS).await;
    let received = read_events(rsp, async |_| {}).await;
    let cut = now() - at;
    println!(
        "SSE stream ended {:.0} ms after the scheduled time ({:?}), {} events",
        cut * 1000.0,
        received.end,
        received.events.len()
    );
    assert!(received.events.len() < EVENTS, "the stream was not cut");
    assert!(cut >= 0.0, "cut {cut} s before the scheduled time");
    assert!(
        cut < 1.0,
        "cut {cut} s after the scheduled time, more than 1 s"
    );
}

#[tokio::test]
async fn sse_stream_is_cut_within_a_second_of_a_policy_it_fails() {
    let admin_jwt = admin("carol", "acme").sign();
    let old = token().sub("alice").iat(support::now().floor() - 120.0);
    let policy = serde_json::json!({"max_session_age_secs": 60});
    assert_cut_within_a_second("policy", &old.sign(), async |gw| {
        let put = gw.put_policy("acme", &admin_jwt, &policy);
        put.send().await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn sse_stream_whose_session_was_logged_out_while_the_upstream_answered_is_cut() {
    let upstream = sse_upstream().await;
    let gw = gateway_to(upstream.addr).await;
    let admin_jwt = admin("carol", "acme").sign();
    let request = gw
        .get("/events/100/200/700")
        .bearer_auth(token().sub("alice").sign());
    let pending = tokio::spawn(async move { request.send().await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.requests.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The token passed; the logout lands while the upstream prepares its answer.
    let logout = gw.logout_all("acme", &admin_jwt).await;
    let answered = Instant::now();
    assert_eq!(logout.status(), 200);
    let rsp = pending.await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(5), read_events(rsp, async |_| {}))
        .await
        .unwrap_or_else(|_| {
            panic!("the stream of a logged-out session still runs 5 s after the logout-all")
        });
    let cut = received.ended_at - answered;
    println!(
        "SSE stream (request in flight at the logout-all) ended {:.0} ms after the logout's 200, {} events",
        cut.as_secs_f64() * 1000.0,
        received.events.len()
    );
    assert!(
        cut < Duration::from_secs(1),
        "stream ended {cut:?} after the logout-all, more than the promised 1 s"
    );
}

#[tokio::test]
async fn sse_stream_is_cut_when_its_token_expires() {
    let upstream = sse_upstream().await;
    let gw = gateway_with(upstream.addr, &["jwt.leeway_secs = 0"]).await;
    let exp = now() + 2.0;
    let rsp = gw
        .get("/events/100/200")
        .bearer_auth(token().exp(exp).sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let received = tokio::time::timeout(Duration::from_secs(10), read_events(rsp, async |_| {}))
        .await
        .expect("the stream of an expired token is cut");
    let lag = now() - exp;
    println!(
        "SSE stream ended {:.0} ms after exp, {} events",
        lag * 1000.0,
        received.events.len()
    );
    assert!(lag >= -0.05, "cut {:.3} s before exp", -lag);
    assert!(lag < 1.0, "cut {lag:.3} s after exp, more than ~1 s");
}

// ============================================================================
// Long downloads
// ============================================================================

/// Starts an endless download, reads `before` bytes, calls logout-all, then reads on
/// (pausing `pause` between chunks) and returns how long after the logout's 200 it ended.
async fn download_cut_after_logout_all(pause: Duration) -> Duration {
    const ENDLESS: usize = 1 << 40;
    let upstream = support::upstream().await;
    let gw = support::gateway(&upstream).start().await;
    let admin_jwt = admin("carol", "acme").sign();
    let mut rsp = gw
        .get(&format!("/download/{ENDLESS}"))
        .bearer_auth(token().sub("alice").sign())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let mut received = 0;
    while received < 8 * MIB {
        received += rsp.chunk().await.unwrap().expect("the download runs").len();
    }
    let logout = gw.logout_all("acme", &admin_jwt).await;
    let answered = Instant::now();
    assert_eq!(logout.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rsp.chunk().await {
                Ok(Some(chunk)) => received += chunk.len(),
                Ok(None) | Err(_) => return Instant::now(),
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the download of a logged-out session still runs 10 s after the logout-all ({received} bytes)")
    });
    assert!(received < ENDLESS);
    ended - answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_read_at_full_speed_is_cut_within_a_second_of_logout_all() {
    let cut = download_cut_after_logout_all(Duration::ZERO).await;
    println!(
        "fast download ended {:.0} ms after the logout-all's 200",
        cut.as_secs_f64() * 1000.0
    );
    assert!(
        cut < Duration::from_secs(1),
        "download ended {cut:?} after the logout-all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_read_slowly_is_cut_within_a_second_of_logout_all() {
    let cut = download_cut_after_logout_all(Duration::from_millis(2)).await;
    println!(
        "slow download ended {:.0} ms after the logout-all's 200",
        cut.as_secs_f64() * 1000.0
    );
    assert!(
        cut < Duration::from_secs(1),
        "download ended {cut:?} after the logout-all"
    );
}

// ============================================================================
// Large bodies
// ============================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_upload_and_download_pass_in_flat_memory() {
    let upstream = support::upstream().await;
    let gw = support::gateway(&upstream).start().await;
    let jwt = token().sign();

    let started = Instant::now();
    assert_eq!(gw.upload(&jwt, GIB).await, GIB);
    assert_eq!(upstream.last().body_len, GIB);
    let upload = started.elapsed();

    let started = Instant::now();
    assert_eq!(gw.download(&jwt, GIB).await, GIB);
    let download = started.elapsed();

    let peak = gw.peak_rss_bytes();
    println!(
        "gateway peak RSS (VmHWM) after 1 GiB up ({upload:?}) and 1 GiB down ({download:?}): {:.1} MiB",
        peak as f64 / MIB as f64
    );
    assert!(
        peak < 64 * MIB,
        "peak RSS {peak} bytes: bodies are being buffered"
    );
}
