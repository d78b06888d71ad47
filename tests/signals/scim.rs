//! SCIM deprovisioning seen on its way to the product (SPEC section 13): a test product
//! with its own SCIM endpoint behind the gateway, Okta's and Microsoft Entra's bodies
//! verbatim.

use serde_json::{Value, json};

use crate::idp::{PASSES, api, audit_lines, later, revoked, signals, until, user};
use crate::product::Product;
use crate::support::{self, Gateway, GatewayBuilder};

const SCIM_TOKEN: &str = "Bearer scim-credential-of-the-product";

/// Okta's "create user" body (Okta SCIM 2.0 reference).
fn okta_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// Okta's deactivation.
const OKTA_DEACTIVATE: &str = r#"{
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "replace",
            "value": {
                "active": false
            }
        }
    ]
}"#;

/// Microsoft Entra's "create user" body (Entra SCIM provisioning reference).
fn entra_user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{
            "primary": true,
            "type": "work",
            "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"
        }],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []
    })
}

/// Microsoft Entra's "disable user".
const ENTRA_DISABLE: &str = r#"{
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "Replace",
            "path": "active",
            "value": "False"
        }
    ]
}"#;

const ENTRA_ENABLE: &str = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}"#;

fn scim_gateway(product: &Product, attribute: &str) -> GatewayBuilder {
    support::gateway_to(&product.url())
        .set("signals.scim.paths = [\"/scim/v2/Users/{id}\"]")
        .set(&format!("signals.scim.subject_attribute = \"{attribute}\""))
}

/// A SCIM request as the identity provider sends it: its own credential, no user token.
async fn scim(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = support::client()
        .request(method, gw.url(path))
        .header("authorization", SCIM_TOKEN)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let rsp = request.send().await.unwrap();
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

/// Creates `body` through the gateway; the new resource's id.
async fn create(gw: &Gateway, body: &Value) -> String {
    let (status, created) = scim(gw, "POST", "/scim/v2/Users", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_okta_deactivation_the_product_accepts_ends_the_users_sessions() {
    let product = Product::start().await;
    let gw = scim_gateway(&product, "userName").start().await;
    let id = create(&gw, &okta_user()).await;
    let headers = product.last_headers();
    assert_eq!(
        headers["authorization"], SCIM_TOKEN,
        "the product checks its own credential"
    );
    assert!(headers.get("x-auth-subject").is_none());
    let alice = user("test.user@okta.local", "acme").sign();
    let bob = user("bob@okta.local", "acme").sign();
    assert_eq!(api(&gw, &alice).await, PASSES);

    let path = format!("/scim/v2/Users/{id}");
    let (status, answer) = scim(&gw, "PATCH", &path, Some(OKTA_DEACTIVATE)).await;
    assert_eq!(status, 200, "the product's own answer: {answer}");
    assert_eq!(answer["active"], false);
    assert_eq!(product.user(&id).unwrap()["active"], false);
    assert_eq!(api(&gw, &alice).await, revoked());
    assert_eq!(api(&gw, &bob).await, PASSES, "another user is untouched");
    let fresh = user("test.user@okta.local", "acme").iat(later()).sign();
    assert_eq!(api(&gw, &fresh).await, PASSES, "a sign-in after it passes");

    let audit = audit_lines(&gw, "scim_deprovision", 1).await;
    assert_eq!(audit[0]["subject"], "test.user@okta.local");
    assert_eq!(signals(&gw, "accepted", "scim").await, 1.0);

    // Reactivation clears nothing.
    let reactivate = OKTA_DEACTIVATE.replace("false", "true");
    let (status, _) = scim(&gw, "PATCH", &path, Some(&reactivate)).await;
    assert_eq!(status, 200);
    assert_eq!(
        api(&gw, &alice).await,
        revoked(),
        "the old session stays ended"
    );
    audit_lines(&gw, "scim_deprovision", 1).await;
}

#[tokio::test]
async fn an_entra_disable_answered_204_uses_the_user_remembered_from_earlier_answers() {
    let product = Product::start().await;
    product.patch_answers_no_content();
    let gw = scim_gateway(&product, "externalId").start().await;
    // Entra looks the user up first, then creates it.
    let filter = "/scim/v2/Users?filter=userName%20eq%20%22Test_User_ab6490ee%22";
    let (status, list) = scim(&gw, "GET", filter, None).await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(0)));
    let id = create(&gw, &entra_user()).await;
    let victim = user("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "acme").sign();

    let path = format!("/scim/v2/Users/{id}");
    let (status, _) = scim(&gw, "PATCH", &path, Some(ENTRA_DISABLE)).await;
    assert_eq!(status, 204);
    assert_eq!(api(&gw, &victim).await, revoked());
    let (status, _) = scim(&gw, "PATCH", &path, Some(ENTRA_ENABLE)).await;
    assert_eq!(status, 204);
    assert_eq!(
        api(&gw, &victim).await,
        revoked(),
        "reactivation clears nothing"
    );
}

#[tokio::test]
async fn the_product_refusing_a_deactivation_changes_nothing() {
    let product = Product::start().await;
    let gw = scim_gateway(&product, "userName").start().await;
    let id = create(&gw, &okta_user()).await;
    let alice = user("test.user@okta.local", "acme").sign();
    product.refuse(403);
    let path = format!("/scim/v2/Users/{id}");
    for (method, body) in [
        ("PATCH", Some(OKTA_DEACTIVATE)),
        ("DELETE", None),
        (
            "PUT",
            Some(r#"{"userName": "test.user@okta.local", "active": false}"#),
        ),
    ] {
        let (status, answer) = scim(&gw, method, &path, body).await;
        assert_eq!(
            status, 403,
            "{method}: the product's refusal goes back: {answer}"
        );
        assert_eq!(answer["detail"], "refused by the product");
    }
    assert_eq!(api(&gw, &alice).await, PASSES);
    audit_lines(&gw, "scim_deprovision", 0).await;
}

/// A `DELETE` names only the id: the user comes from what the gateway remembered of it,
/// in the store (a restart forgets nothing).
#[tokio::test]
async fn delete_by_user_name_uses_the_mapping_kept_in_the_store() {
    let product = Product::start().await;
    let gw = scim_gateway(&product, "userName").start().await;
    let id = create(&gw, &okta_user()).await;
    let put = json!({"userName": "Test.User@Okta.local", "active": true}).to_string();
    assert_eq!(
        scim(&gw, "PUT", &format!("/scim/v2/Users/{id}"), Some(&put))
            .await
            .0,
        200
    );
    let gw = gw.crash_and_restart().await;
    let alice = user("Test.User@okta.local", "acme").sign();
    assert_eq!(api(&gw, &alice).await, PASSES);
    let (status, _) = scim(&gw, "DELETE", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        api(&gw, &alice).await,
        revoked(),
        "an address matches without regard to case"
    );
    let audit = audit_lines(&gw, "scim_deprovision", 1).await;
    assert_eq!(audit[0]["subject"], "test.user@okta.local");
}

#[tokio::test]
async fn a_workspace_template_and_the_id_attribute_reach_that_workspace_only() {
    let product = Product::start().await;
    let gw = support::gateway_to(&product.url())
        .set("signals.scim.paths = [\"/scim/v2/{workspace}/Users/{id}\"]")
        .start()
        .await;
    let (status, created) = scim(
        &gw,
        "POST",
        "/scim/v2/acme/Users",
        Some(&okta_user().to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    let acme = user(id, "acme").sign();
    let globex = user(id, "globex").sign();
    let (status, _) = scim(&gw, "DELETE", &format!("/scim/v2/acme/Users/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(api(&gw, &acme).await, revoked());
    assert_eq!(api(&gw, &globex).await, PASSES);
    let audit = audit_lines(&gw, "scim_deprovision", 1).await;
    assert_eq!(audit[0]["workspace"], "acme");
}

#[tokio::test]
async fn scim_paths_skip_the_token_check_only_there_and_bodies_over_1_mib_are_413() {
    let product = Product::start().await;
    let gw = scim_gateway(&product, "id").start().await;
    let (status, _) = scim(&gw, "GET", "/scim/v2/Users", None).await;
    assert_eq!(status, 200, "the collection");
    assert_eq!(
        gw.get("/scim/v2/Groups").send().await.unwrap().status(),
        401,
        "not a template"
    );
    assert_eq!(gw.get("/api").send().await.unwrap().status(), 401);
    let spoofed = gw
        .get("/scim/v2/Users/x")
        .header("x-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 404);
    assert!(
        product.last_headers().get("x-auth-subject").is_none(),
        "identity headers are always removed"
    );

    let before = product.count();
    let mut big = okta_user();
    big["displayName"] = json!("x".repeat(1024 * 1024));
    let (status, _) = scim(&gw, "POST", "/scim/v2/Users", Some(&big.to_string())).await;
    assert_eq!(status, 413);
    assert_eq!(product.count(), before, "not forwarded");
    let mut fits = okta_user();
    fits["displayName"] = json!("x".repeat(1000 * 1000));
    let (status, _) = scim(&gw, "POST", "/scim/v2/Users", Some(&fits.to_string())).await;
    assert_eq!(status, 201, "just under 1 MiB is read and forwarded");
}

#[tokio::test]
async fn a_deactivation_whose_cutoff_cannot_be_committed_answers_503_instead() {
    let Some(mut redis) = support::redis_server().start().await else {
        return;
    };
    let product = Product::start().await;
    let gw = scim_gateway(&product, "id").redis(&redis).start().await;
    let id = create(&gw, &okta_user()).await;
    let alice = user(&id, "acme").sign();
    redis.kill();
    until(
        "the store is out of reach",
        std::time::Duration::from_secs(10),
        || async {
            gw.ops_get("/readyz").await.json::<Value>().await.unwrap()["store"] == "degraded"
        },
    )
    .await;
    let before = product.count();
    let (status, answer) = scim(
        &gw,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(OKTA_DEACTIVATE),
    )
    .await;
    assert_eq!(status, 503, "the identity provider retries: {answer}");
    assert_eq!(answer["error"], "store_unavailable");
    assert_eq!(product.count(), before + 1, "the product did answer");
    assert_eq!(api(&gw, &alice).await, PASSES, "nothing changed");
}
