//! The demo's product behind the gateway: a hello page, and a sign-in page that stands in
//! for an identity provider (choose alice, a user, or ada, an admin of acme) and sets the
//! token cookie the gateway reads.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::web::{self, Body};

/// The cookie the demo gateway reads (`auth.cookie`).
pub(super) const COOKIE: &str = "sg_session";
/// The sign-in page, public through the gateway (`auth.login_url`, `auth.public_paths`).
pub(super) const SIGN_IN: &str = "/signin";

const SIGN_IN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in: sessiongate demo</title></head>
<body><main><h1>Sign in to acme</h1>
<p>This page stands in for your identity provider.</p>
<ul>
<li><a href="/signin/alice?return_to=RETURN_TO">Sign in as alice</a> (a user)</li>
<li><a href="/signin/ada?return_to=RETURN_TO">Sign in as ada</a> (an admin of acme)</li>
</ul></main></body></html>
"#;

/// Who may sign in, and with which roles.
const USERS: [(&str, &[&str]); 2] = [("alice", &[]), ("ada", &["admin"])];

/// Serves the demo product until the process ends; `config` signs its tokens.
pub(super) async fn serve(listener: TcpListener, config: Arc<Config>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let config = config.clone();
        let service = service_fn(move |req| {
            let answer = answer(&req, &config);
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

fn answer(req: &Request<Incoming>, config: &Config) -> Response<Body> {
    let path = req.uri().path();
    let return_to = return_to(req.uri().query());
    if path == SIGN_IN {
        let page = SIGN_IN_PAGE.replace("RETURN_TO", &encode(&return_to));
        return html(page);
    }
    match path
        .strip_prefix("/signin/")
        .and_then(|name| USERS.iter().find(|(user, _)| *user == name))
    {
        Some((user, roles)) => sign_in(config, user, roles, &return_to),
        None => hello(req),
    }
}

/// Sets the token cookie (`HttpOnly`, as a real product would) and goes back.
fn sign_in(config: &Config, user: &str, roles: &[&str], return_to: &str) -> Response<Body> {
    let Ok(token) = super::token(config, user, roles) else {
        return web::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "mint"}));
    };
    let mut response = Response::new(web::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax");
    if let (Ok(cookie), Ok(location)) = (
        HeaderValue::from_str(&cookie),
        HeaderValue::from_str(return_to),
    ) {
        headers.insert(SET_COOKIE, cookie);
        headers.insert(LOCATION, location);
    }
    response
}

/// The demo product: says hello and shows the identity the gateway vouched for, as a
/// page for browsers and as JSON for curl.
fn hello(req: &Request<Incoming>) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let browser = header("accept").is_some_and(|accept| accept.contains("text/html"));
    if browser {
        let who = header("x-auth-subject").unwrap_or_default();
        return html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>acme</title></head>\
             <body><h1>Hello {}</h1><p>You are signed in to acme through sessiongate.</p>\
             <p><a href=\"/next\">Another page</a> · \
             <a href=\"/_sessiongate/console/\">Security settings</a></p></body></html>",
            encode(&who)
        ));
    }
    web::json(
        StatusCode::OK,
        &json!({
            "message": "hello from the demo upstream",
            "path": req.uri().path(),
            "x-auth-subject": header("x-auth-subject"),
            "x-auth-workspace": header("x-auth-workspace"),
            "x-auth-session": header("x-auth-session"),
        }),
    )
}

/// Where to go after signing in: a local path only (never another site), else `/`.
fn return_to(query: Option<&str>) -> String {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("return_to="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        });
    value
        .filter(|path| path.starts_with('/') && !path.starts_with("//") && !path.contains('\\'))
        .unwrap_or_else(|| "/".into())
}

/// Text made safe for an HTML attribute or element (and for a query value).
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn html(page: String) -> Response<Body> {
    let mut response = Response::new(web::full(page));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(return_to(Some("return_to=%2Fnext%3Fa%3D1")), "/next?a=1");
        assert_eq!(return_to(Some("return_to=https%3A%2F%2Fevil")), "/");
        assert_eq!(return_to(Some("return_to=%2F%2Fevil")), "/");
        assert_eq!(return_to(None), "/");
    }
}
