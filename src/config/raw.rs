//! The serde mirror of the TOML file: every key with its default, nothing validated yet.
//!
//! `deny_unknown_fields` everywhere, so a typo in a key fails at start instead of being
//! silently ignored.

use serde::Deserialize;

/// The whole file, as written by the operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub ops: RawOps,
    pub upstream: RawUpstream,
    pub auth: RawAuth,
    pub admin: RawAdmin,
    pub jwt: RawJwt,
    pub sessions: RawSessions,
    pub store: RawStore,
    pub log: RawLog,
    pub events: RawEvents,
    pub signals: RawSignals,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub tls: Option<RawTls>,
    pub header_read_timeout_secs: u64,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    pub trusted_proxies: Vec<String>,
}

/// `[server.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

/// `[ops]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOps {
    pub listen: String,
}

/// `[upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub connect_timeout_ms: u64,
    pub response_timeout_secs: u64,
    pub forward_token: bool,
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub cookie: Option<String>,
    pub cookie_path: String,
    pub public_paths: Vec<String>,
    pub login_url: Option<String>,
    pub allowed_origins: Vec<String>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub path_prefix: String,
    /// Serve the Security settings page under the prefix (SPEC section 12).
    pub console: bool,
}

/// `[jwt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway_secs: u64,
    pub max_token_bytes: usize,
    pub workspace_claim: String,
    pub roles_claim: String,
    pub admin_roles: Vec<String>,
    pub keys: Vec<RawKey>,
    pub verify_cache_entries: u64,
}

/// One `[[jwt.keys]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKey {
    pub kid: Option<String>,
    pub algorithm: Option<String>,
    pub hmac_secret_env: Option<String>,
    pub hmac_secret_file: Option<String>,
    pub public_key_file: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub refresh_secs: Option<u64>,
    pub ca_file: Option<String>,
    /// Accept `oct` (HMAC) keys from a JWKS; off by default because a JWKS is usually public.
    pub allow_hmac: bool,
}

/// `[sessions]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessions {
    pub time_claim: String,
    pub user_claim: String,
    pub iat_backdate_secs: u64,
    pub invalidation_margin_secs: u64,
    pub revoked_sid_ttl_secs: u64,
}

/// `[signals]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSignals {
    pub issuers: Vec<RawIssuer>,
    pub scim: RawScim,
}

/// One `[[signals.issuers]]` entry: its key source has the fields of a `[[jwt.keys]]`
/// entry, without the HMAC ones (signals are signed with asymmetric keys only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub audience: Option<OneOrMany>,
    pub jwks_url: Option<String>,
    pub refresh_secs: Option<u64>,
    pub ca_file: Option<String>,
    pub jwks_file: Option<String>,
    pub public_key_file: Option<String>,
    pub kid: Option<String>,
    pub algorithm: Option<String>,
    pub workspace: Option<String>,
    pub allow_workspace_logout: bool,
    pub push_authorization_env: Option<String>,
}

/// A string, or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[signals.scim]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScim {
    pub paths: Vec<String>,
    pub subject_attribute: String,
    pub workspace: Option<String>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub backend: String,
    pub path: String,
    pub redis_url: String,
    pub redis_key_prefix: String,
    /// PEM bundle trusted for `rediss://` instead of the system roots (a private CA).
    pub redis_ca_file: Option<String>,
    pub resync_secs: u64,
    pub max_staleness_secs: u64,
    /// `host:port` of Redis Sentinels: the primary is found through them.
    pub redis_sentinels: Vec<String>,
    pub redis_master_name: String,
    pub redis_min_replicas: u32,
    pub redis_wait_timeout_ms: u64,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

/// `[events]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub webhooks: Vec<RawWebhook>,
}

/// One `[[events.webhooks]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub actions: Option<Vec<String>>,
    pub timeout_ms: u64,
    pub retry_for_secs: u64,
}

// === defaults (SPEC section 8) ===

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls: None,
            header_read_timeout_secs: 10,
            max_header_bytes: 16384,
            max_connections: 10000,
            shutdown_grace_secs: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for RawOps {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".into(),
        }
    }
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            ca_file: None,
            connect_timeout_ms: 2000,
            response_timeout_secs: 60,
            forward_token: true,
        }
    }
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            cookie: None,
            cookie_path: "/".into(),
            public_paths: Vec::new(),
            login_url: None,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            path_prefix: "/_sessiongate".into(),
            console: true,
        }
    }
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            algorithms: None,
            issuer: None,
            audience: Vec::new(),
            leeway_secs: 30,
            max_token_bytes: 8192,
            workspace_claim: "workspace_id".into(),
            roles_claim: "roles".into(),
            admin_roles: vec!["admin".into()],
            keys: Vec::new(),
            verify_cache_entries: 100_000,
        }
    }
}

impl Default for RawSessions {
    fn default() -> Self {
        Self {
            time_claim: "iat".into(),
            user_claim: "sub".into(),
            iat_backdate_secs: 0,
            invalidation_margin_secs: 0,
            revoked_sid_ttl_secs: 86400,
        }
    }
}

impl Default for RawScim {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            subject_attribute: "id".into(),
            workspace: None,
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: "embedded".into(),
            path: "data/sessiongate.redb".into(),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_key_prefix: "sessiongate:".into(),
            redis_ca_file: None,
            resync_secs: 30,
            max_staleness_secs: 0,
            redis_sentinels: Vec::new(),
            redis_master_name: "mymaster".into(),
            redis_min_replicas: 0,
            redis_wait_timeout_ms: 1000,
        }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

impl Default for RawWebhook {
    fn default() -> Self {
        Self {
            url: None,
            secret_env: None,
            actions: None,
            timeout_ms: 5000,
            retry_for_secs: 86400,
        }
    }
}
