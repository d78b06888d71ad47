//! HTTP/1.1 connections to a plain-http upstream, checked out and in per request.
//!
//! hyper-util's legacy client sends every request through a pool keyed by (scheme,
//! authority) under SipHash and an mpsc channel to a dispatch task; here a request takes a
//! ready connection off a queue and hands itself to that connection's own task. Checked in
//! as soon as the request is handed over: the connection is ready again once hyper has
//! read its response to the end, and until then a checkout passes it by. Only plain http
//! comes here; an https upstream (ALPN may pick HTTP/2) keeps the legacy client.
//! Measured against the legacy client in one interleaved `benches/load.sh` run (HS256,
//! cache warm): +18 % req/s, 55.7 -> 51.7 µs of gateway CPU per request
//! (docs/perf/issue-15.md).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tower_service::Service;

use super::to_origin::ToOrigin;
use crate::web::BoxError;

/// Connections kept beyond this are closed once their response is read (the upstream
/// sees at most this many idle ones from us).
const MAX_KEPT: usize = 1024;

/// Keep-alive HTTP/1.1 connections to one origin.
pub(super) struct H1Pool {
    connector: ToOrigin,
    origin: Uri,
    /// Oldest check-in first: the front is the likeliest to have finished.
    kept: Mutex<VecDeque<SendRequest<Incoming>>>,
}

// === impl H1Pool ===

impl H1Pool {
    /// A pool dialling `origin` through `connector` (which enforces the connect timeout).
    pub(super) fn new(connector: ToOrigin, origin: Uri) -> Self {
        Self {
            connector,
            origin,
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// Sends `req` on a ready connection, or a new one. A kept connection the upstream
    /// closed before the request went out is not an error: the request goes once more, on
    /// a new connection (as the legacy client retries it).
    pub(super) async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, BoxError> {
        to_origin_form(&mut req);
        let Some(mut kept) = self.checkout() else {
            return self.send_on_new(req).await;
        };
        let sent = kept.try_send_request(req);
        self.checkin(kept);
        match sent.await {
            Ok(response) => Ok(response),
            Err(mut failed) => match failed.take_message() {
                Some(req) => self.send_on_new(req).await,
                None => Err(failed.into_error().into()),
            },
        }
    }

    /// Boxed: dialling and the handshake make a future of kilobytes, which inline would
    /// be part of every request's future (allocated and copied per request) though only
    /// a new connection needs it.
    fn send_on_new(
        &self,
        req: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send + '_>> {
        Box::pin(self.send_on_new_inline(req))
    }

    async fn send_on_new_inline(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut fresh = self.connect().await?;
        let sent = fresh.send_request(req);
        self.checkin(fresh);
        Ok(sent.await?)
    }

    /// A kept connection that is ready for a request; closed ones are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<Incoming>> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..kept.len() {
            let sender = kept.pop_front()?;
            if sender.is_ready() {
                return Some(sender);
            }
            if !sender.is_closed() {
                kept.push_back(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Incoming>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < MAX_KEPT {
            kept.push_back(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, BoxError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(self.origin.clone()).await?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            // Upgrades: a 101 hands the socket to the WebSocket tunnel.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// An origin server gets the path and query in the request line (RFC 9112 section 3.2.1)
/// and the authority in `Host`.
fn to_origin_form<B>(req: &mut Request<B>) {
    if !req.headers().contains_key(header::HOST)
        && let Some(host) = req.uri().authority()
        && let Ok(host) = host.as_str().parse()
    {
        req.headers_mut().insert(header::HOST, host);
    }
    let path = req.uri().path_and_query().cloned();
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path.unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    *req.uri_mut() = Uri::from_parts(parts).expect("a path alone is a valid URI");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_carries_the_path_and_host_the_authority() {
        let mut req = Request::get("http://product.test:8080/a/b?c=d")
            .body(())
            .unwrap();
        to_origin_form(&mut req);
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(req.headers()[header::HOST], "product.test:8080");
        let mut req = Request::get("http://product.test/")
            .header(header::HOST, "client.test")
            .body(())
            .unwrap();
        to_origin_form(&mut req);
        assert_eq!(
            req.headers()[header::HOST],
            "client.test",
            "the client's Host stays"
        );
    }
}
