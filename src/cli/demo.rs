//! `sessiongate demo`: the whole product on one machine with no setup, for trying it out.
//!
//! A gateway, a small built-in product (a hello page and a sign-in page that sets the
//! token cookie), an embedded store in a temporary directory and a random HMAC key. Never
//! for production: the key and the store vanish on exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::mint::{MintError, TokenRequest, mint};
use crate::config::Config;
use crate::{Listeners, RunError};

mod product;

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
    // 8080 makes the printed commands predictable; any free port will do if it is taken.
    let main = match TcpListener::bind("127.0.0.1:8080").await {
        Ok(listener) => listener,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let base = format!("http://{}", main.local_addr()?);
    let text = format!(
        r#"
        upstream.url = "http://{upstream}"
        ops.listen = ""
        log.format = "pretty"
        log.level = "warn"
        store.path = "{store}"
        jwt.algorithms = ["HS256"]
        auth.cookie = "{cookie}"
        auth.login_url = "{base}{sign_in}"
        auth.public_paths = ["{sign_in}", "{sign_in}/*"]
        [[jwt.keys]]
        hmac_secret_file = "{secret}"
        "#,
        upstream = upstream.local_addr()?,
        store = dir.path().join("sessiongate.redb").display(),
        secret = secret_path.display(),
        cookie = product::COOKIE,
        sign_in = product::SIGN_IN,
    );
    let config = Config::from_toml(&text, &[])?;
    crate::ops::init_logging(&config.log);
    tokio::spawn(product::serve(upstream, Arc::new(config.clone())));
    print_walkthrough(
        main.local_addr()?,
        &token(&config, "alice", &[])?,
        &token(&config, "ada", &["admin"])?,
        &config.admin_prefix,
    );
    crate::run(config, Listeners { main, ops: None }, shutdown).await?;
    Ok(())
}

/// A token of workspace acme for `subject`, valid eight hours from now.
fn token(config: &Config, subject: &str, roles: &[&str]) -> Result<String, MintError> {
    let request = TokenRequest {
        subject: subject.into(),
        workspace: "acme".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ttl: Duration::from_secs(8 * 3600),
        issued_at: None,
    };
    mint(config, &request)
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

In a browser:
  1. open {base}/ in one window and sign in as alice (a user);
  2. open {base}/ in a private window (its own cookies) and sign in as ada (an admin);
  3. as ada, open Security settings ({base}{prefix}/console/), press "Log all users out",
     type acme and confirm;
  4. in alice's window, click "Another page": she lands on the sign-in page. ada's
     window still works.

With curl:

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
