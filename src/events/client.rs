//! One attempt: `POST` the record to the endpoint with the Standard Webhooks headers.
//!
//! hyper's client never follows redirects, so a 3xx is a failed attempt like any other
//! non-2xx answer: an event is never sent somewhere the operator did not configure.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, timeout_at};

use crate::tls::RootsError;

/// Read of an answer's body, only so the connection can be reused; its content is ignored.
const ANSWER_BYTES: usize = 64 * 1024;
const AGENT: &str = concat!("sessiongate/", env!("CARGO_PKG_VERSION"));

/// The client of one endpoint.
pub(super) struct Sender {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

/// The headers of one attempt, signed for its own timestamp.
pub(super) struct Signed<'a> {
    pub(super) id: &'a str,
    pub(super) timestamp: u64,
    pub(super) signature: String,
}

/// Why an attempt failed; every one is retried.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {}", chain(.0))]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("the audit id cannot be a header value")]
    Header(#[from] http::header::InvalidHeaderValue),
}

// === impl Sender ===

impl Sender {
    /// A pooled client for `url`; an `https` one trusts the system roots.
    pub(super) fn new(url: &Uri, timeout: Duration) -> Result<Self, RootsError> {
        let https = url.scheme_str() == Some("https");
        let roots = crate::tls::client_roots(None, https)?;
        let connector = crate::tls::https_connector(roots, timeout);
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            url: url.clone(),
            timeout,
        })
    }

    /// Sends `body`; a 2xx answer within the timeout is a delivery.
    pub(super) async fn post(&self, signed: Signed<'_>, body: Bytes) -> Result<(), AttemptError> {
        let request = Request::post(&self.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(AGENT))
            .header("webhook-id", HeaderValue::from_str(signed.id)?)
            .header("webhook-timestamp", signed.timestamp)
            .header(
                "webhook-signature",
                HeaderValue::from_str(&signed.signature)?,
            )
            .body(Full::new(body))
            .expect("a request with a valid URI and header values builds");
        let deadline = Instant::now() + self.timeout;
        let response = timeout_at(deadline, self.http.request(request))
            .await
            .map_err(|_| AttemptError::Timeout(self.timeout))?
            .map_err(AttemptError::Request)?;
        let status = response.status();
        let _ = timeout_at(
            deadline,
            Limited::new(response.into_body(), ANSWER_BYTES).collect(),
        )
        .await;
        match status.is_success() {
            true => Ok(()),
            false => Err(AttemptError::Status(status.as_u16())),
        }
    }
}

/// An error with its causes, `a: b: c`: hyper's own message alone says little.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
