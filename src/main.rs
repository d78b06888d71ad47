//! The `sessiongate` command: serve | check | token | demo | logout-all | policy clear
//! (SPEC section 7).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sessiongate::Listeners;
use sessiongate::auth::{AuthMetrics, KeySet};
use sessiongate::cli::{BreakGlass, Operation, TokenRequest, mint};
use sessiongate::config::Config;
use sessiongate::signals::Signals;
use tokio::net::TcpListener;

/// mimalloc: the request path allocates and frees small buffers on every request, and
/// glibc's allocator showed up at ~7% of the gateway's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// EX_USAGE: the configuration cannot be used.
const EXIT_CONFIG: u8 = 64;
const DEFAULT_CONFIG: &str = "config/sessiongate.toml";

#[derive(Parser)]
#[command(
    name = "sessiongate",
    version,
    about = "Stateless JWT auth gateway with workspace-wide logout"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration and keys, print a summary, exit 0 or 1.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Mint a token with a configured HMAC key (development and tests).
    Token {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        workspace: String,
        /// Comma-separated roles, e.g. `admin`.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Lifetime, e.g. `1h`, `30m`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Issued-at, unix seconds (default: now).
        #[arg(long)]
        iat: Option<i64>,
    },
    /// Run a self-contained demo and print curl commands to try it.
    Demo,
    /// Break glass: log every user of a workspace out, straight in the store.
    LogoutAll {
        #[command(flatten)]
        target: Target,
    },
    /// Break glass on workspace policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Remove a workspace's policy, straight in the store.
    Clear {
        #[command(flatten)]
        target: Target,
    },
}

/// The workspace a break-glass command changes, and why.
#[derive(clap::Args)]
struct Target {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[arg(long)]
    workspace: String,
    /// Goes into the audit record.
    #[arg(long)]
    reason: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Token {
            config,
            sub,
            workspace,
            roles,
            ttl,
            iat,
        } => {
            let request = TokenRequest {
                subject: sub,
                workspace,
                roles,
                ttl,
                issued_at: iat,
            };
            token(&config, &request)
        }
        Command::LogoutAll { target } => break_glass(Operation::LogoutAll, target),
        Command::Policy {
            command: PolicyCommand::Clear { target },
        } => break_glass(Operation::ClearPolicy, target),
        Command::Demo => runtime().block_on(async {
            match sessiongate::cli::demo(shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(1, &error),
            }
        }),
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    runtime().block_on(async {
        // First of all: a SIGTERM while the config loads or the listeners bind then ends
        // the start cleanly (exit 0 once it serves) instead of killing it.
        let shutdown = shutdown_signal();
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(error) => return fail(EXIT_CONFIG, &error),
        };
        sessiongate::ops::init_logging(&config.log);
        let listeners = match bind(&config).await {
            Ok(listeners) => listeners,
            Err(error) => return fail(1, &error),
        };
        match sessiongate::run(config, listeners, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                fail(EXIT_CONFIG, &error)
            }
        }
    })
}

async fn bind(config: &Config) -> Result<Listeners, String> {
    let main = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("server.listen: cannot bind {}: {e}", config.server.listen))?;
    let ops = match config.ops_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("ops.listen: cannot bind {addr}: {e}"))?,
        ),
        None => None,
    };
    Ok(Listeners { main, ops })
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return fail(1, &error),
    };
    let keys = match KeySet::load(&config.jwt.keys) {
        Ok(keys) => keys,
        Err(error) => return fail(1, &error),
    };
    if let Err(error) = sessiongate::events::load(&config.events) {
        return fail(1, &error);
    }
    // The signal issuers' key files and push secrets, loaded as `serve` would.
    let mut registry = prometheus_client::registry::Registry::default();
    let auth_metrics = AuthMetrics::register(&mut registry);
    if let Err(error) = Signals::new(&config, auth_metrics, &mut registry) {
        return fail(1, &error);
    }
    println!(
        "configuration {} is valid ({} keys loaded now)",
        path.display(),
        keys.len()
    );
    print!("{}", config.summary());
    ExitCode::SUCCESS
}

fn token(path: &std::path::Path, request: &TokenRequest) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error),
    };
    match mint(&config, request) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(1, &error),
    }
}

/// Commits an operator's change and prints what was committed, as one JSON line.
fn break_glass(operation: Operation, target: Target) -> ExitCode {
    let config = match Config::load(&target.config) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error),
    };
    let request = BreakGlass {
        operation,
        workspace: target.workspace,
        reason: target.reason,
    };
    match runtime().block_on(sessiongate::cli::break_glass(&config, request)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(1, &error),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn fail(code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sessiongate: {error}");
    ExitCode::from(code)
}

/// SIGTERM or SIGINT. Both handlers are installed when this is called, not when the future
/// is first polled: the gateway polls it only once it serves, and a SIGTERM that arrived
/// before that took the default action and killed it mid-start (exit by signal 15, not 0).
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutdown signal received");
    }
}
