//! sessiongate: a stateless JWT auth gateway that can log every other user of a workspace
//! out at once.
//!
//! Each workspace has a *sessions-valid-after* cutoff; a token whose session time is
//! earlier is refused, except the one session the admin used to move the cutoff.
//!
//! ```text
//! proxy/server    accept -> [TLS, ALPN h2/http1.1] -> serve_connection_with_upgrades
//!                 (graceful-watched, connection-limited; hyper's own 431s logged here)
//! proxy/gateway   handle(req)  never fails; try_handle(req) -> Result<Response, GatewayError>
//!                   1 route      config::check_path -> 400; admin prefix -> signals | admin;
//!                                SCIM template -> forwarded without a token, watched (signals)
//!                   2 token      auth::authenticate: extract + Verifier::verify   401 + WWW-Authenticate
//!                                (verify cache; unknown key -> one shared JWKS refetch)
//!                   3 session    Sessions::check (memory only)         401 session_invalidated | revoked
//!                                (cutoffs C, U, U*; revoked identity-provider sids; a
//!                                scheduled logout whose time has come)
//!                                then the workspace policy (acceptance step 6)  403 ip_not_allowed |
//!                                401 insufficient_user_authentication (one map lookup without one)
//!                   4 rewrite    Upstream::prepare (sync, infallible; X-Auth-Logout-At
//!                                while a logout of the workspace is scheduled)
//!                   5 forward    Upstream::send                        502 | 504
//!                   6 respond    body guarded by the session (guard), or a WebSocket
//!                                tunnel (tunnel): closed when the session ends
//!                 Err(e) -> e.into_response()   (web/error: the only place an error becomes a response)
//!                 one access-log event + metrics per request (proxy/access)
//!                 (after step 3: Sessions::seen counts the session for activity)
//! admin           route -> authenticate (policy included) -> authorize -> Sessions::commit -> 200
//!                 console/: the Security settings page (static files, the API via fetch)
//! signals         {prefix}/v1/signals/*: logout token | SET -> issuer keys -> checks
//!                 -> Sessions::commit -> 200 | 202; SCIM paths: product 2xx deactivation
//!                 -> Sessions::commit -> the product's answer (no token check)
//! sessions        commit: store (fsync | Redis script + PUBLISH; the audit record queued in the
//!                 outbox in the same transaction) -> memory -> audit log line
//!                 keep_in_sync (redis): subscribe -> resync -> apply published changes
//!                 share_activity: prune activity windows; in a fleet, share them
//!                 apply_scheduled_logouts: at a schedule's time wake tunnels and streams (the
//!                 session rule already enforces it from memory), then commit it on condition
//!                 that it is still pending: the first instance of a fleet writes logout_all
//! events          per webhook: claim due outbox events (a lease, in a fleet) -> POST signed
//!                 -> 2xx finish | retry 1 s .. 10 min | drop after retry_for_secs
//! auth/keys/ring  (jwks_url) fetch at start -> refresh every refresh_secs -> publish a KeySet
//! ```
//!
//! Rooms, and the way their dependencies fall (none points back up):
//!
//! ```text
//! main -> run (here), cli -> proxy -> admin   -> state -> web -> auth -> sessions -> store -> config
//!                                 \-> signals -/
//!                              ops -----------/
//!                              events --------/   (beside admin: run starts it, nothing calls into it)
//! leaves every room may use: clock, tls, ops::GaugeGuard and the metrics registry
//! ```
//!
//! `web` holds what answering a request needs (bodies, the error -> response mapping, the
//! client's address); `config` holds the path rule, because it validates paths too.
//!
//! A request never waits on the store: cutoffs are loaded into memory before the gateway
//! reports ready, and every change is applied to memory right after its commit. With a
//! shared store the sync task also applies every other instance's commits as they are
//! published.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod events;
pub mod ops;
pub mod proxy;
pub mod sessions;
pub mod signals;
pub mod state;
pub mod store;
pub mod tls;
pub mod web;

pub use config::Config;

use state::AppState;

/// The sockets the gateway serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub main: TcpListener,
    pub ops: Option<TcpListener>,
}

/// The `listening` and `ready` log lines, which name the bound addresses (the test
/// harness and operators wait for them).
#[derive(Debug, Clone)]
pub struct Announce {
    listen: String,
    ops: Option<String>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Keys(#[from] auth::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Upstream(#[from] proxy::UpstreamSetupError),
    #[error(transparent)]
    Webhook(#[from] events::WebhookError),
    #[error(transparent)]
    Signals(#[from] signals::SignalsSetupError),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the gateway until `shutdown` resolves: loads keys and the store, serves ops, marks
/// ready once every cutoff is in memory, serves the main listener and drains.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    for warning in &config.warnings {
        tracing::warn!(key = warning.key, "{}", warning.message);
    }
    let keys = auth::KeyRing::load(&config.jwt.keys)?;
    let certs = config
        .server
        .tls
        .as_ref()
        .map(tls::CertStore::load)
        .transpose()?;
    let upstream = proxy::Upstream::new(&config)?;
    let webhooks = events::load(&config.events)?;
    let store = store::Store::open(&config.store, store::Outbox::new(&config.events)).await?;
    let mut registry = ops::registry();
    let state = Arc::new(AppState::new(config, keys, store, &mut registry));
    let auth_metrics = state.verifier.metrics().clone();
    let signals = signals::Signals::new(&state.config, auth_metrics, &mut registry)?;
    let events = events::spawn(webhooks, &state, &mut registry);
    state.verifier.spawn_refreshers(state.shutdown.clone());
    signals.spawn_refreshers(&state.shutdown);
    spawn_forgetting(&state);
    let proxy = Arc::new(proxy::Proxy::new(
        state.clone(),
        upstream,
        signals,
        &mut registry,
    ));
    let announce = Announce::new(&listeners);
    let registry = Arc::new(registry);
    let ops_task = listeners
        .ops
        .map(|listener| tokio::spawn(ops::serve(listener, state.clone(), registry)));
    let acceptor = certs
        .as_ref()
        .map(|certs| tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config())));
    spawn_hangup_handler(certs, &state)?;
    announce.listening();
    load_store(&state).await?;
    spawn_activity_sharing(&state);
    spawn_scheduled_logouts(&state);
    tokio::spawn(announce.when_ready(state.clone()));
    proxy::serve(listeners.main, proxy, acceptor, shutdown).await;
    events.stopped().await;
    if let Some(task) = ops_task {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP reloads the TLS certificate, and never kills the gateway. Registered before
/// `ready` is reported.
fn spawn_hangup_handler(
    certs: Option<Arc<tls::CertStore>>,
    state: &AppState,
) -> Result<(), RunError> {
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(RunError::Signal)?;
    match certs {
        Some(certs) => tokio::spawn(certs.watch(hangup, state.shutdown.clone())),
        None => tokio::spawn(tls::ignore_hangups(hangup)),
    };
    Ok(())
}

/// Expired revocations of identity-provider sessions leave memory in the background.
fn spawn_forgetting(state: &Arc<AppState>) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = state.sessions.forget_expired() => {}
            () = state.shutdown.cancelled() => {}
        }
    });
}

/// A local store is loaded here, and a failure stops the start. A shared one is loaded
/// by its sync task, which keeps retrying while the main listener answers 503.
async fn load_store(state: &Arc<AppState>) -> Result<(), RunError> {
    if state.store.shared().is_none() {
        state.sessions.load(&state.store).await?;
        return Ok(());
    }
    let state = state.clone();
    tokio::spawn(async move {
        let Some(store) = state.store.shared() else {
            return;
        };
        tokio::select! {
            () = sessions::keep_in_sync(&state.sessions, store) => {}
            () = state.shutdown.cancelled() => {}
        }
    });
    Ok(())
}

/// Activity windows are pruned (and, in a fleet, shared) in the background until shutdown.
fn spawn_activity_sharing(state: &Arc<AppState>) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = sessions::share_activity(&state.sessions, &state.store) => {}
            () = state.shutdown.cancelled() => {}
        }
    });
}

/// Scheduled logouts are applied at their time in the background until shutdown.
fn spawn_scheduled_logouts(state: &Arc<AppState>) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = sessions::apply_scheduled_logouts(&state.sessions, &state.store) => {}
            () = state.shutdown.cancelled() => {}
        }
    });
}

// === impl Announce ===

impl Announce {
    fn new(listeners: &Listeners) -> Self {
        let address = |listener: &TcpListener| listener.local_addr().ok().map(|a| a.to_string());
        Self {
            listen: address(&listeners.main).unwrap_or_default(),
            ops: listeners.ops.as_ref().and_then(address),
        }
    }

    /// Both listeners are bound; requests get 503 until `ready`.
    fn listening(&self) {
        tracing::info!(listen = %self.listen, ops = self.ops, "listening");
    }

    /// Logs `ready` once keys (remote JWKS included) and every stored cutoff are loaded.
    async fn when_ready(self, state: Arc<AppState>) {
        while !state.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let keys = state.verifier.keys().current().len();
        let cutoffs = state.sessions.loaded_count();
        tracing::info!(listen = %self.listen, ops = self.ops, cutoffs, keys, "ready");
    }
}
