//! A connector that always dials `upstream.url`, whatever authority the request URI has.
//!
//! The request URI carries the client's `Host` (HTTP/2 sends it as `:authority`, which
//! must agree with `Host`), while the socket, SNI and certificate check are the product's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::web::BoxError;

/// Dials `origin` for every request.
#[derive(Clone)]
pub struct ToOrigin {
    inner: HttpsConnector<HttpConnector>,
    origin: Uri,
}

// === impl ToOrigin ===

impl ToOrigin {
    /// Wraps `inner` so it always connects to `origin` (scheme and authority).
    pub fn new(inner: HttpsConnector<HttpConnector>, origin: Uri) -> Self {
        Self { inner, origin }
    }
}

impl Service<Uri> for ToOrigin {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        self.inner.call(self.origin.clone())
    }
}
