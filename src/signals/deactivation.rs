//! Which SCIM requests deactivate a user (SPEC section 13): the forms Okta and Microsoft
//! Entra send, and `DELETE`. SCIM attribute names are case-insensitive (RFC 7643 section
//! 2.1), and so are the PatchOp `op` values Entra capitalises.

use http::Method;
use serde_json::{Map, Value};

/// Whether `method` with this (JSON) body deactivates the resource: `DELETE`, `PUT` with
/// `active: false`, or a `PATCH` whose PatchOp sets `active` to false.
pub(super) fn is_deactivation(method: &Method, body: Option<&Value>) -> bool {
    let object = body.and_then(Value::as_object);
    match *method {
        Method::DELETE => true,
        Method::PUT => object
            .and_then(|user| attribute(user, "active"))
            .is_some_and(is_false),
        Method::PATCH => object
            .and_then(|patch| attribute(patch, "Operations"))
            .and_then(Value::as_array)
            .is_some_and(|operations| operations.iter().any(sets_inactive)),
        _ => false,
    }
}

/// An attribute of a SCIM object, its name in any case.
pub(super) fn attribute<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find_map(|(key, value)| key.eq_ignore_ascii_case(name).then_some(value))
    })
}

/// `replace` or `add` (any case) of `active` to false: with `path: "active"` (or its
/// fully qualified name) and the value, or without a path and a value object (Okta).
fn sets_inactive(operation: &Value) -> bool {
    let Some(operation) = operation.as_object() else {
        return false;
    };
    let op = attribute(operation, "op").and_then(Value::as_str);
    if !op.is_some_and(|op| op.eq_ignore_ascii_case("replace") || op.eq_ignore_ascii_case("add")) {
        return false;
    }
    let value = attribute(operation, "value");
    match attribute(operation, "path").and_then(Value::as_str) {
        Some(path) => names_active(path) && value.is_some_and(is_false),
        None => value
            .and_then(Value::as_object)
            .and_then(|user| attribute(user, "active"))
            .is_some_and(is_false),
    }
}

fn names_active(path: &str) -> bool {
    let name = path.rsplit(':').next().unwrap_or(path);
    name.eq_ignore_ascii_case("active")
}

/// `false`, `"false"` or `"False"` (Entra sends the string).
fn is_false(value: &Value) -> bool {
    match value {
        Value::Bool(active) => !active,
        Value::String(text) => text.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(body: Value) -> bool {
        is_deactivation(&Method::PATCH, Some(&body))
    }

    #[test]
    fn okta_and_entra_deactivations_are_recognised() {
        let okta = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        });
        let entra = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        });
        let qualified = json!({"Operations": [{"op": "add",
            "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": "false"}]});
        for body in [okta, entra, qualified] {
            assert!(patch(body.clone()), "{body}");
        }
        assert!(is_deactivation(&Method::DELETE, None));
        let put = json!({"userName": "bob", "active": false});
        assert!(is_deactivation(&Method::PUT, Some(&put)));
    }

    #[test]
    fn reactivations_and_other_changes_are_not_deactivations() {
        for body in [
            json!({"Operations": [{"op": "replace", "value": {"active": true}}]}),
            json!({"Operations": [{"op": "Replace", "path": "active", "value": "True"}]}),
            json!({"Operations": [{"op": "remove", "path": "active"}]}),
            json!({"Operations": [{"op": "replace", "path": "displayName", "value": "false"}]}),
            json!({"Operations": "nope"}),
        ] {
            assert!(!patch(body.clone()), "{body}");
        }
        let put = json!({"userName": "bob", "active": true});
        assert!(!is_deactivation(&Method::PUT, Some(&put)));
        assert!(!is_deactivation(
            &Method::POST,
            Some(&json!({"active": false}))
        ));
        assert!(!is_deactivation(&Method::PATCH, None));
    }
}
