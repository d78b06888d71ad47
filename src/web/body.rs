//! The one response body type: upstream bodies stream through it, our own are small.

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use super::GatewayError;

/// How much of an oversized body is read and dropped before answering 413.
const DRAIN_BYTES: usize = 1024 * 1024;

/// Errors carried by response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response the gateway sends has this body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// No body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with `Cache-Control: no-store` (answers about sessions are never cached).
pub fn json(status: http::StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// A request body's bytes, at most `limit` of them: 413 beyond. Nothing past the limit is
/// kept: a longer body is read (and dropped) no further than a little past it, and one
/// declared longer than that is refused before anything is read.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, GatewayError> {
    let drain_limit = limit.saturating_add(DRAIN_BYTES);
    if body.size_hint().lower() > drain_limit as u64 {
        return Err(GatewayError::PayloadTooLarge);
    }
    let mut bytes = BytesMut::new();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| GatewayError::BadRequest("could not read the request body".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        // Past the limit, keep reading (and dropping) a little longer before the 413: a
        // client still sending when the connection closes would never see the answer.
        if received > drain_limit {
            break;
        }
        if received <= limit {
            bytes.extend_from_slice(&data);
        }
    }
    if received > limit {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(bytes.freeze())
}
