mod support;

use support::{gateway, token, upstream};

#[tokio::test]
async fn forwards_a_valid_token_with_identity_headers() {
    let upstream = upstream().await;
    let gw = gateway(&upstream).start().await;
    let jwt = token().sub("alice").sign();
    let rsp = gw.get("/hello?x=1").bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/hello?x=1");
    assert_eq!(seen.headers["x-auth-subject"], "alice");
    assert_eq!(seen.headers["x-auth-workspace"], "acme");
}
