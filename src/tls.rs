//! TLS termination with rustls from PEM files, reloaded without a restart.
//!
//! The certificate lives behind an `ArcSwap` read by every handshake. A background task
//! reloads it when either file changes (polled) or on SIGHUP; a bad new file keeps the
//! old certificate and says why in the log.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// How often the certificate files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The certificate every handshake presents; replaced whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    config: TlsConfig,
    /// The files' mtimes as of the last load attempt, read before the files themselves so
    /// a change made while loading is seen as a change.
    loaded_mtimes: Mutex<[Option<SystemTime>; 2]>,
}

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert: {path}: {problem}")]
    Cert { path: String, problem: String },
    #[error("server.tls.key: {path}: {problem}")]
    Key { path: String, problem: String },
}

/// The crypto every rustls config of the gateway uses (the same aws-lc-rs as jsonwebtoken).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// === impl CertStore ===

impl CertStore {
    /// Loads the certificate chain and key named by `server.tls`.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let mtimes = modified(config);
        let key = load_certified_key(config)?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(key),
            config: config.clone(),
            loaded_mtimes: Mutex::new(mtimes),
        }))
    }

    /// A rustls server config offering h2 and http/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    /// Reloads now; on error the old certificate stays.
    pub fn reload(&self) {
        *self
            .loaded_mtimes
            .lock()
            .expect("mtime lock is never poisoned") = modified(&self.config);
        match load_certified_key(&self.config) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(cert = %self.config.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; keeping the previous one")
            }
        }
    }

    /// Reloads when either file changes or on `hangup` (SIGHUP, registered by the caller
    /// before the gateway reports ready), until `stop` is cancelled.
    pub async fn watch(self: Arc<Self>, mut hangup: Signal, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = hangup.recv() => self.reload(),
                () = tokio::time::sleep(RELOAD_POLL) => {
                    let changed = modified(&self.config) != *self.loaded_mtimes.lock().expect("mtime lock is never poisoned");
                    if changed {
                        self.reload();
                    }
                }
            }
        }
    }
}

/// Without TLS there is nothing to reload: SIGHUP is logged, not fatal.
pub async fn ignore_hangups(mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: no TLS certificate to reload");
    }
}

fn modified(config: &TlsConfig) -> [Option<SystemTime>; 2] {
    let mtime = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [mtime(&config.cert), mtime(&config.key)]
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_certified_key(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let cert_error = |problem: String| TlsError::Cert {
        path: config.cert.display().to_string(),
        problem,
    };
    let key_error = |problem: String| TlsError::Key {
        path: config.key.display().to_string(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(&config.cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| key_error(e.to_string()))?;
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| key_error(e.to_string()))?;
    Ok(certified)
}

/// Why an outgoing TLS client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("{path}: {problem}")]
    CaFile { path: String, problem: String },
    #[error("no system root certificates found; set a ca_file")]
    NoSystemRoots,
}

/// The CAs an outgoing https connection trusts: `ca_file` when set, else the system's.
pub fn client_roots(
    ca_file: Option<&Path>,
    https: bool,
) -> Result<rustls::RootCertStore, RootsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let ca_error = |problem: String| RootsError::CaFile {
            path: path.display().to_string(),
            problem,
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
            roots
                .add(cert.map_err(|e| ca_error(e.to_string()))?)
                .map_err(|e| ca_error(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_error("no CERTIFICATE block".into()));
        }
        return Ok(roots);
    }
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 && https {
        return Err(RootsError::NoSystemRoots);
    }
    Ok(roots)
}

/// A client config trusting `roots`, without a client certificate.
pub fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A connector for `http://` and `https://` URLs (h2 or http/1.1 by ALPN).
pub fn https_connector(
    roots: rustls::RootCertStore,
    connect_timeout: Duration,
) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(roots))
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}
