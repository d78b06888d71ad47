//! Reading and checking the JSON body of an admin call.

use http::Request;
use hyper::body::Incoming;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::store::Category;
use crate::web::{GatewayError, read_limited};

const MAX_BODY_BYTES: usize = 16 * 1024;
pub(super) const MAX_REASON_CHARS: usize = 1024;
pub(super) const MAX_TICKET_CHARS: usize = 256;

/// The optional JSON body of every logout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogoutBody {
    pub(super) reason: Option<String>,
    pub(super) category: Option<Category>,
    pub(super) ticket: Option<String>,
    /// Only for `.../users/logout`, which names its user here.
    pub(super) subject: Option<String>,
    /// Only for logout-all: when to apply it (SPEC section 10), RFC 3339. Kept as sent
    /// (`null` included) so that anything but a time is refused, never read as "now".
    #[serde(default, deserialize_with = "present")]
    pub(super) at: Option<Value>,
}

/// Reads and checks a logout body: empty, or JSON within the SPEC section 2 limits.
pub(super) async fn logout_body(req: Request<Incoming>) -> Result<LogoutBody, GatewayError> {
    let bytes = read_limited(req.into_body(), MAX_BODY_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(LogoutBody::default());
    }
    let body: LogoutBody = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))?;
    too_long("reason", body.reason.as_deref(), MAX_REASON_CHARS)?;
    too_long("ticket", body.ticket.as_deref(), MAX_TICKET_CHARS)?;
    Ok(body)
}

/// A field that is there, whatever its value: `null` is `Some(Value::Null)`.
fn present<'de, D: Deserializer<'de>>(field: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(field).map(Some)
}

/// A text over `max` characters is a 400 naming `field`.
pub(super) fn too_long(field: &str, value: Option<&str>, max: usize) -> Result<(), GatewayError> {
    match value {
        Some(text) if text.chars().count() > max => Err(GatewayError::BadRequest(format!(
            "{field} is longer than {max} characters"
        ))),
        _ => Ok(()),
    }
}
