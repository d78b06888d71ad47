//! `sessiongate demo`: the whole product on one machine with no setup, for trying it out.
//!
//! A gateway, a small built-in upstream, an embedded store in a temporary directory and a
//! random HMAC key. Never for production: the key and the store vanish on exit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::mint::{MintError, TokenRequest, mint};
use crate::config::Config;
use crate::web::{self, Body};
use crate::{Listeners, RunError};

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("demo: {0}")]
    Mint(#[from] MintError),
    #[error("demo: {0}")]
    Run(#[from] RunError),
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let dir = tempfile::tempdir()?;
    let secret_path = dir.path().join("hmac.secret");
    std::fs::write(&secret_path, random_secret())?;
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(serve_upstream(upstream));
    // 8080 makes the printed commands predictable; any free port will do if it is taken.
    let main = match TcpListener::bind("127.0.0.1:8080").await {
        Ok(listener) => listener,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let text = format!(
        r#"
        upstream.url = "http://{upstream_addr}"
        ops.listen = ""
        log.format = "pretty"
        log.level = "warn"
        store.path = "{store}"
        jwt.algorithms = ["HS256"]
        [[jwt.keys]]
        hmac_secret_file = "{secret}"
        "#,
        store = dir.path().join("sessiongate.redb").display(),
        secret = secret_path.display(),
    );
    let config = Config::from_toml(&text, &[])?;
    crate::ops::init_logging(&config.log);
    let token = |subject: &str, roles: &[&str]| {
        let request = TokenRequest {
            subject: subject.into(),
            workspace: "acme".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl: Duration::from_secs(8 * 3600),
            issued_at: None,
        };
        mint(&config, &request)
    };
    print_walkthrough(
        main.local_addr()?,
        &token("alice", &[])?,
        &token("ada", &["admin"])?,
        &config.admin_prefix,
    );
    crate::run(config, Listeners { main, ops: None }, shutdown).await?;
    Ok(())
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
    hex::encode(bytes)
}

fn print_walkthrough(addr: SocketAddr, user: &str, admin: &str, prefix: &str) {
    let base = format!("http://{addr}");
    println!(
        r#"
sessiongate demo: gateway on {base}, workspace "acme" (Ctrl-C to stop)

  USER='{user}'
  ADMIN='{admin}'

1. alice's request passes; the upstream sees who she is:
  curl -s {base}/hello -H "Authorization: Bearer $USER"

2. ada (an admin of acme) logs every other user out:
  curl -s -X POST {base}{prefix}/v1/workspaces/acme/logout-all -H "Authorization: Bearer $ADMIN" -d '{{"reason": "demo", "category": "security_incident"}}'

3. alice's old token is refused (401 session_invalidated):
  curl -si {base}/hello -H "Authorization: Bearer $USER"

4. ada's own token still works:
  curl -s {base}/hello -H "Authorization: Bearer $ADMIN"

5. the audit trail:
  curl -s {base}{prefix}/v1/workspaces/acme/audit -H "Authorization: Bearer $ADMIN"
"#
    );
}

async fn serve_upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service_fn(|req| async move { Ok::<_, Infallible>(echo(&req)) });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// The demo product: says hello and shows the identity the gateway vouched for.
fn echo(req: &Request<Incoming>) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
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
