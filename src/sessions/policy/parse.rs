//! A policy document from an admin's JSON (SPEC section 9), checked field by field so
//! that every refusal names the field at fault.

use std::fmt::Display;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::config::ClaimPath;
use crate::store::{ClaimRule, PolicyDocument};

/// At most this many CIDRs in `ip_allowlist`.
const MAX_CIDRS: usize = 1000;
/// At most this many `require_claims` entries.
const MAX_CLAIM_RULES: usize = 16;
/// At most this many `any_of` values per entry.
const MAX_ANY_OF: usize = 64;
/// `max_session_age_secs` bounds: a minute to a year.
const MIN_AGE_SECS: i64 = 60;
const MAX_AGE_SECS: i64 = 31_536_000;
/// Longest claim path or accepted value: far beyond any real claim, short enough that a
/// document stays small.
const MAX_TEXT_CHARS: usize = 256;

/// The policy fields of a document; the caller decides what else its body may carry.
pub const FIELDS: [&str; 3] = ["ip_allowlist", "require_claims", "max_session_age_secs"];

/// A document that is not a valid policy: `field` (a JSON path such as
/// `require_claims[2].any_of`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

/// The policy in `body`'s three fields; a missing field is no rule of that kind.
pub fn parse_document(body: &Map<String, Value>) -> Result<PolicyDocument, PolicyError> {
    let ip_allowlist = match body.get("ip_allowlist") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_allowlist(value)?),
    };
    let require_claims = match body.get("require_claims") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => parse_claim_rules(value)?,
    };
    let max_session_age_secs = match body.get("max_session_age_secs") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_age(value)?),
    };
    Ok(PolicyDocument {
        ip_allowlist,
        require_claims,
        max_session_age_secs,
    })
}

/// 1 to 1000 CIDRs (a bare address is a /32 or /128), each stored in canonical form:
/// host bits cleared, so the document says what is enforced.
fn parse_allowlist(value: &Value) -> Result<Vec<String>, PolicyError> {
    let field = "ip_allowlist";
    let items = bounded_array(field, value, 1, MAX_CIDRS)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = item
                .as_str()
                .ok_or_else(|| refuse(format!("{field}[{i}]"), "must be a string"))?;
            parse_cidr(text)
                .map(|net| net.trunc().to_string())
                .ok_or_else(|| {
                    let shown: String = text.chars().take(64).collect();
                    refuse(
                        format!("{field}[{i}]"),
                        format!("{shown:?} is not an IPv4 or IPv6 CIDR"),
                    )
                })
        })
        .collect()
}

/// `203.0.113.0/24`, `2001:db8::/32`, or a bare address.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn parse_claim_rules(value: &Value) -> Result<Vec<ClaimRule>, PolicyError> {
    let items = bounded_array("require_claims", value, 0, MAX_CLAIM_RULES)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_claim_rule(&format!("require_claims[{i}]"), item))
        .collect()
}

fn parse_claim_rule(field: &str, value: &Value) -> Result<ClaimRule, PolicyError> {
    let entry = value
        .as_object()
        .ok_or_else(|| refuse(field, "must be an object with \"claim\" and \"any_of\""))?;
    if let Some(unknown) = entry.keys().find(|k| *k != "claim" && *k != "any_of") {
        return Err(refuse(format!("{field}.{unknown}"), "unknown field"));
    }
    let claim_field = format!("{field}.claim");
    let claim = entry
        .get("claim")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(&claim_field, "must be a string"))?;
    if claim.chars().count() > MAX_TEXT_CHARS || ClaimPath::dotted(claim).is_none() {
        return Err(refuse(
            claim_field,
            format!(
                "must be a claim name of at most {MAX_TEXT_CHARS} characters, dots separating nested objects"
            ),
        ));
    }
    let any_of_field = format!("{field}.any_of");
    let any_of = entry
        .get("any_of")
        .ok_or_else(|| refuse(&any_of_field, "is required"))?;
    let any_of = bounded_array(&any_of_field, any_of, 1, MAX_ANY_OF)?
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_str() {
            Some(text) if !text.is_empty() && text.chars().count() <= MAX_TEXT_CHARS => {
                Ok(text.to_string())
            }
            _ => Err(refuse(
                format!("{any_of_field}[{i}]"),
                format!("must be a non-empty string of at most {MAX_TEXT_CHARS} characters"),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(ClaimRule {
        claim: claim.to_string(),
        any_of,
    })
}

fn parse_age(value: &Value) -> Result<i64, PolicyError> {
    value
        .as_i64()
        .filter(|age| (MIN_AGE_SECS..=MAX_AGE_SECS).contains(age))
        .ok_or_else(|| {
            refuse(
                "max_session_age_secs",
                format!("must be null or a whole number from {MIN_AGE_SECS} to {MAX_AGE_SECS}"),
            )
        })
}

/// `value` as an array of `min` to `max` items.
fn bounded_array<'a>(
    field: &str,
    value: &'a Value,
    min: usize,
    max: usize,
) -> Result<&'a [Value], PolicyError> {
    match value.as_array() {
        Some(items) if (min..=max).contains(&items.len()) => Ok(items),
        Some(items) => Err(refuse(
            field,
            format!("has {} entries; {min} to {max} are allowed", items.len()),
        )),
        None => Err(refuse(field, "must be an array")),
    }
}

fn refuse(field: impl Into<String>, message: impl Display) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<PolicyDocument, PolicyError> {
        parse_document(value.as_object().unwrap())
    }

    fn field_of(value: Value) -> String {
        parse(value).unwrap_err().field
    }

    #[test]
    fn a_full_document_parses_to_canonical_cidrs() {
        let document = parse(json!({
            "ip_allowlist": ["203.0.113.7/24", "2001:db8::1", " 10.0.0.1 "],
            "require_claims": [{"claim": "amr", "any_of": ["mfa"]}],
            "max_session_age_secs": 60,
        }))
        .unwrap();
        assert_eq!(
            document.ip_allowlist.unwrap(),
            ["203.0.113.0/24", "2001:db8::1/128", "10.0.0.1/32"]
        );
        assert_eq!(document.require_claims[0].claim, "amr");
        assert_eq!(document.max_session_age_secs, Some(60));
        assert_eq!(parse(json!({})).unwrap(), PolicyDocument::default());
    }

    #[test]
    fn every_refusal_names_its_field() {
        assert_eq!(field_of(json!({"ip_allowlist": []})), "ip_allowlist");
        assert_eq!(
            field_of(json!({"ip_allowlist": "10.0.0.0/8"})),
            "ip_allowlist"
        );
        assert_eq!(
            field_of(json!({"ip_allowlist": ["1.2.3.4", "1.2.3.400"]})),
            "ip_allowlist[1]"
        );
        assert_eq!(
            field_of(json!({"ip_allowlist": ["10.0.0.0/33"]})),
            "ip_allowlist[0]"
        );
        assert_eq!(field_of(json!({"ip_allowlist": [7]})), "ip_allowlist[0]");
        let many: Vec<String> = (0..1001)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert_eq!(field_of(json!({"ip_allowlist": many})), "ip_allowlist");
        let rule = json!({"claim": "amr", "any_of": ["mfa"]});
        let rules: Vec<Value> = (0..17).map(|_| rule.clone()).collect();
        assert_eq!(field_of(json!({"require_claims": rules})), "require_claims");
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "a..b", "any_of": ["x"]}]})),
            "require_claims[0].claim"
        );
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "amr", "any_of": []}]})),
            "require_claims[0].any_of"
        );
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "amr", "any_of": [""]}]})),
            "require_claims[0].any_of[0]"
        );
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "amr"}]})),
            "require_claims[0].any_of"
        );
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "amr", "any_of": ["x"], "x": 1}]})),
            "require_claims[0].x"
        );
        assert_eq!(
            field_of(json!({"require_claims": [{"claim": "a".repeat(257), "any_of": ["x"]}]})),
            "require_claims[0].claim"
        );
        for age in [
            json!(59),
            json!(31_536_001),
            json!(600.5),
            json!("600"),
            json!(-1),
        ] {
            assert_eq!(
                field_of(json!({"max_session_age_secs": age})),
                "max_session_age_secs"
            );
        }
        assert!(parse(json!({"max_session_age_secs": 31_536_000})).is_ok());
    }
}
