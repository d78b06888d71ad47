//! The checks a logout token and a Security Event Token share: the body, the media types,
//! the `typ` header, claim types and the issue time.

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::refusal::Refusal;
use crate::web;

/// Largest signal body accepted (SPEC section 13).
pub(super) const MAX_SIGNAL_BYTES: usize = 64 * 1024;

/// The gateway's clock as the time rules use it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) now: f64,
    /// `jwt.leeway_secs`.
    pub(super) leeway: f64,
}

/// The body, at most 64 KiB of it.
pub(super) async fn read(body: Incoming) -> Result<Bytes, Refusal> {
    web::read_limited(body, MAX_SIGNAL_BYTES)
        .await
        .map_err(Refusal::of_body)
}

/// The request's media type (parameters such as `charset` aside) is `expected`.
pub(super) fn content_type(headers: &HeaderMap, expected: &'static str) -> Result<(), Refusal> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    match essence {
        Some(essence) if essence.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(Refusal::ContentType(expected)),
    }
}

/// The `typ` header is one of `accepted` (media types: any case, `application/` optional),
/// or absent when `required` is false.
pub(super) fn check_type(
    header: &Map<String, Value>,
    accepted: &'static [&'static str],
    required: bool,
) -> Result<(), Refusal> {
    let wanted = Refusal::Type(accepted[0]);
    let typ = match header.get("typ") {
        None if required => return Err(wanted),
        None => return Ok(()),
        Some(Value::String(typ)) => typ.to_ascii_lowercase(),
        Some(_) => return Err(wanted),
    };
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    match accepted.iter().any(|a| a.eq_ignore_ascii_case(typ)) {
        true => Ok(()),
        false => Err(wanted),
    }
}

/// A string claim, if present.
pub(super) fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if !value.is_empty() => Ok(Some(value)),
        Some(_) => Err(Refusal::ClaimType(name)),
    }
}

/// A string claim that must be there.
pub(super) fn required_string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, Refusal> {
    string(claims, name)?.ok_or(Refusal::Missing(name))
}

/// A NumericDate claim that must be there.
pub(super) fn required_number(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<f64, Refusal> {
    match claims.get(name) {
        None => Err(Refusal::Missing(name)),
        Some(value) => value.as_f64().ok_or(Refusal::ClaimType(name)),
    }
}

/// `iat` is present and not in the future (beyond the leeway).
pub(super) fn issued_at(claims: &Map<String, Value>, clock: Clock) -> Result<f64, Refusal> {
    let iat = required_number(claims, "iat")?;
    if iat > clock.now + clock.leeway {
        return Err(Refusal::IssuedInFuture);
    }
    Ok(iat)
}

/// The `events` claim: a JSON object.
pub(super) fn events<'a>(
    claims: &'a Map<String, Value>,
    needed: &'static str,
) -> Result<&'a Map<String, Value>, Refusal> {
    match claims.get("events") {
        None => Err(Refusal::Missing("events")),
        Some(Value::Object(events)) => Ok(events),
        Some(_) => Err(Refusal::Events(needed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(typ: Option<&str>) -> Map<String, Value> {
        let mut header = Map::new();
        if let Some(typ) = typ {
            header.insert("typ".into(), Value::from(typ));
        }
        header
    }

    #[test]
    fn typ_is_a_media_type_in_any_case() {
        const LOGOUT: &[&str] = &["logout+jwt", "jwt"];
        for ok in ["logout+jwt", "application/logout+jwt", "JWT", "Logout+JWT"] {
            assert_eq!(check_type(&header(Some(ok)), LOGOUT, false), Ok(()), "{ok}");
        }
        assert_eq!(check_type(&header(None), LOGOUT, false), Ok(()));
        assert!(check_type(&header(Some("secevent+jwt")), LOGOUT, false).is_err());
        assert!(check_type(&header(None), &["secevent+jwt"], true).is_err());
    }
}
