//! Validated, immutable configuration.
//!
//! `RawConfig` (serde mirror of the file) is turned into `Config` by `TryFrom`, so an
//! invalid `Config` cannot exist. Every error names the key at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

mod events;
mod paths;
pub mod raw;
mod signals;
mod summary;
mod validate;

pub use events::{EventsConfig, WebhookConfig};
pub use paths::{BadPath, PublicPaths, check_path, is_under};
pub use signals::{
    IssuerConfig, SIGNAL_ALGORITHMS, ScimAttribute, ScimConfig, ScimMatch, ScimTemplate,
    SignalsConfig,
};

use validate::invalid;

use raw::RawConfig;

/// Env overrides: `SESSIONGATE__SECTION__KEY`.
const ENV_PREFIX: &str = "SESSIONGATE";
/// Keys whose env override is a comma-separated list.
const LIST_KEYS: [&str; 7] = [
    "jwt.algorithms",
    "jwt.audience",
    "jwt.admin_roles",
    "auth.public_paths",
    "auth.allowed_origins",
    "server.trusted_proxies",
    "signals.scim.paths",
];

/// The gateway's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `ops.listen`; `None` when set to `""`.
    pub ops_listen: Option<SocketAddr>,
    pub upstream: UpstreamConfig,
    pub auth: AuthConfig,
    /// `admin.path_prefix`, without a trailing slash.
    pub admin_prefix: String,
    /// `admin.console`: serve the Security settings page (SPEC section 12).
    pub admin_console: bool,
    pub jwt: JwtConfig,
    pub sessions: SessionsConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    /// `[[events.webhooks]]`: where committed audit records are sent.
    pub events: EventsConfig,
    /// `[signals]`: identity providers that may revoke sessions, and the SCIM observer.
    pub signals: SignalsConfig,
    /// Valid settings that have no effect (logged at start, printed by `check`).
    pub warnings: Vec<ConfigWarning>,
}

/// A setting that is valid but does not apply, such as `upstream.ca_file` with an
/// `http://` upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigWarning {
    pub key: String,
    pub message: String,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `server.tls`: terminate TLS (h2 and http/1.1 by ALPN) when set.
    pub tls: Option<TlsConfig>,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

/// `[server.tls]`: PEM files, reloaded when they change.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[upstream]`
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority of the product.
    pub origin: http::uri::Uri,
    /// Path prefix of `upstream.url` (without trailing slash), prepended to every path.
    pub base_path: String,
    /// `upstream.ca_file`: trust these CAs instead of the system roots (https only).
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub forward_token: bool,
}

/// `[auth]`
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub cookie: Option<String>,
    pub cookie_path: String,
    pub public_paths: PublicPaths,
    pub login_url: Option<String>,
    /// Lower-case `scheme://host[:port]`, as browsers send in `Origin`.
    pub allowed_origins: Vec<String>,
}

/// `[jwt]`
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway_secs: f64,
    pub max_token_bytes: usize,
    pub workspace_claim: ClaimPath,
    pub roles_claim: ClaimPath,
    pub admin_roles: Vec<String>,
    pub keys: Vec<KeyConfig>,
    /// `jwt.verify_cache_entries`: verified tokens remembered (0 disables the cache).
    pub verify_cache_entries: u64,
}

/// A claim name; dots reach into nested objects (`org.workspace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

/// One `[[jwt.keys]]` entry.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// `jwt.keys[N]`, for error messages.
    pub key_name: String,
    pub kid: Option<String>,
    pub algorithm: Option<Algorithm>,
    pub source: KeySource,
}

/// Where a key's material comes from: exactly one per entry.
#[derive(Debug, Clone)]
pub enum KeySource {
    HmacEnv(String),
    HmacFile(PathBuf),
    PublicKeyFile(PathBuf),
    JwksFile { path: PathBuf, allow_hmac: bool },
    JwksUrl(RemoteJwksConfig),
}

/// A `jwks_url` entry: fetched at start, then every `refresh_secs` (or sooner when the
/// answer's `Cache-Control: max-age` says so).
#[derive(Debug, Clone)]
pub struct RemoteJwksConfig {
    pub url: http::Uri,
    pub refresh: Duration,
    pub ca_file: Option<PathBuf>,
    pub allow_hmac: bool,
}

/// `[sessions]`
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    pub time_claim: TimeClaim,
    /// `sessions.user_claim`: the claim naming the user of per-user cutoffs (`sub`).
    pub user_claim: ClaimPath,
    pub iat_backdate_secs: f64,
    pub invalidation_margin_secs: i64,
    /// `sessions.revoked_sid_ttl_secs`: how long a signal's revoked `sid` is refused (and
    /// how old a Security Event Token may be).
    pub revoked_sid_ttl_secs: i64,
}

/// Which claim is the token's session time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeClaim {
    Iat,
    AuthTime,
}

/// `[store]`
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Embedded { path: PathBuf },
    Redis(RedisConfig),
    Memory,
}

/// `store.backend = "redis"`: one Redis shared by a fleet of gateways.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
    /// `store.redis_key_prefix`: every key and the pub/sub channel start with it.
    pub key_prefix: String,
    /// `store.redis_ca_file`: trust these CAs for `rediss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// `store.resync_secs`: time between full resyncs.
    pub resync: Duration,
    /// `store.max_staleness_secs`; `None` when 0 (enforce cached cutoffs however old).
    pub max_staleness: Option<Duration>,
    /// `store.redis_sentinels` and `store.redis_master_name`: `None` without Sentinels
    /// (the URL names the server).
    pub sentinel: Option<SentinelConfig>,
    /// `store.redis_min_replicas` and `store.redis_wait_timeout_ms`.
    pub replication: Replication,
}

/// Redis Sentinel: the primary is looked up through these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// `(host, port)` of each Sentinel.
    pub sentinels: Vec<(String, u16)>,
    pub master_name: String,
}

/// How many replicas must hold a commit before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// 0: answer once the primary has it (no `WAIT`).
    pub min_replicas: u32,
    pub wait_timeout: Duration,
}

/// `store.redis_url`, which may carry a password: `Debug` never shows it.
#[derive(Clone)]
pub struct RedisUrl(String);

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Read(#[source] config::ConfigError),
    #[error("{path}: {source}")]
    Shape {
        path: String,
        source: config::ConfigError,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

// === impl Config ===

impl Config {
    /// Reads the TOML file at `path`, then applies `SESSIONGATE__...` env overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = File::from(path).format(FileFormat::Toml);
        Self::build(config::Config::builder().add_source(file), None)
    }

    /// Parses a TOML string with the given env overrides (tests need no process env).
    pub fn from_toml(text: &str, env: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = File::from_str(text, FileFormat::Toml);
        Self::build(config::Config::builder().add_source(file), Some(env))
    }

    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let overrides = LIST_KEYS.iter().fold(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(","),
            |env, key| env.with_list_parse_key(key),
        );
        // `None` reads the process environment; tests pass their own map.
        let merged = builder.add_source(overrides.source(env)).build();
        let merged = merged.map_err(ConfigError::Read)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Shape {
                path: e.path().to_string(),
                source: e.into_inner(),
            })?;
        Self::try_from(raw)
    }
}

// === impl ClaimPath ===

impl ClaimPath {
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        Self::dotted(text)
            .ok_or_else(|| invalid(key, "must be a claim name, dots separating nested objects"))
    }

    /// `a.b.c`: a claim name, dots separating nested objects; `None` with an empty step.
    pub fn dotted(text: &str) -> Option<Self> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        (!segments.iter().any(String::is_empty)).then_some(Self(segments))
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in a claims object, if every step exists.
    pub fn lookup<'a>(
        &self,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter().try_fold(claims.get(first)?, |value, segment| {
            value.as_object()?.get(segment)
        })
    }
}

// === impl RedisUrl ===

impl RedisUrl {
    /// Accepts `redis://` and `rediss://` URLs the redis client can use. Errors never repeat
    /// the URL: it may hold a password.
    fn parse(text: &str) -> Result<Self, ConfigError> {
        const KEY: &str = "store.redis_url";
        if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
            return Err(invalid(KEY, "must start with redis:// or rediss://"));
        }
        if text.ends_with("#insecure") {
            return Err(invalid(KEY, "TLS certificate checks cannot be turned off"));
        }
        // The client's messages are fixed strings, never the URL itself.
        redis::IntoConnectionInfo::into_connection_info(text)
            .map_err(|error| invalid(KEY, format!("not a usable Redis URL: {error}")))?;
        Ok(Self(text.to_string()))
    }

    /// The URL with its password, for the redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL asks for TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }

    /// The URL without any `user:password@` part, for logs and `check`.
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("redis", &self.0));
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{rest}")
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid configuration; the config room's other tests build on it.
    pub(super) const MINIMAL: &str = r#"
        upstream.url = "http://127.0.0.1:3000"
        jwt.algorithms = ["HS256"]
        [[jwt.keys]]
        hmac_secret_env = "SECRET"
    "#;

    fn error(text: &str, env: &[(&str, &str)]) -> String {
        Config::from_toml(text, env)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn minimal_config_gets_spec_defaults() {
        let config = Config::from_toml(MINIMAL, &[]).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.ops_listen, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(config.admin_prefix, "/_sessiongate");
        assert_eq!(config.jwt.leeway_secs, 30.0);
        assert_eq!(config.jwt.max_token_bytes, 8192);
        assert_eq!(config.jwt.admin_roles, ["admin"]);
        assert!(
            matches!(config.store, StoreConfig::Embedded { ref path } if path == Path::new("data/sessiongate.redb"))
        );
        assert!(config.upstream.forward_token);
    }

    #[test]
    fn unknown_keys_are_named() {
        let message = error(&format!("{MINIMAL}\n[server]\nlisten_addr = \"x\""), &[]);
        assert!(message.contains("listen_addr"), "{message}");
        let message = error(MINIMAL, &[("SESSIONGATE__JWT__LEWAY_SECS", "3")]);
        assert!(message.contains("leway_secs"), "{message}");
    }

    #[test]
    fn env_overrides_the_file_including_lists() {
        let env = [
            ("SESSIONGATE__SERVER__LISTEN", "127.0.0.1:9999"),
            ("SESSIONGATE__JWT__ALGORITHMS", "HS256,HS384"),
            ("SESSIONGATE__JWT__LEEWAY_SECS", "5"),
            ("SESSIONGATE__OPS__LISTEN", ""),
        ];
        let config = Config::from_toml(MINIMAL, &env).unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.jwt.algorithms, [Algorithm::HS256, Algorithm::HS384]);
        assert_eq!(config.jwt.leeway_secs, 5.0);
        assert_eq!(config.ops_listen, None);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("SESSIONGATE__SERVER__LISTEN", "nowhere", "server.listen"),
            ("SESSIONGATE__JWT__ALGORITHMS", "none", "jwt.algorithms"),
            ("SESSIONGATE__JWT__ALGORITHMS", "HS999", "jwt.algorithms"),
            (
                "SESSIONGATE__SESSIONS__TIME_CLAIM",
                "exp",
                "sessions.time_claim",
            ),
            ("SESSIONGATE__STORE__BACKEND", "files", "store.backend"),
            ("SESSIONGATE__LOG__FORMAT", "xml", "log.format"),
            ("SESSIONGATE__LOG__LEVEL", "verbose", "log.level"),
            (
                "SESSIONGATE__SERVER__MAX_CONNECTIONS",
                "many",
                "server.max_connections",
            ),
            (
                "SESSIONGATE__SERVER__TRUSTED_PROXIES",
                "10.0.0.0/99",
                "server.trusted_proxies",
            ),
            (
                "SESSIONGATE__AUTH__PUBLIC_PATHS",
                "assets/*",
                "auth.public_paths",
            ),
        ];
        for (var, value, key) in cases {
            let message = error(MINIMAL, &[(var, value)]);
            assert!(message.starts_with(key), "{var}={value}: {message}");
        }
    }

    #[test]
    fn keys_need_exactly_one_source() {
        let two = MINIMAL.replace(
            "hmac_secret_env = \"SECRET\"",
            "hmac_secret_env = \"A\"\nhmac_secret_file = \"b\"",
        );
        assert!(error(&two, &[]).starts_with("jwt.keys[0]"));
        let none = MINIMAL.replace("hmac_secret_env = \"SECRET\"", "kid = \"a\"");
        assert!(error(&none, &[]).starts_with("jwt.keys[0]"));
        let bad_alg = MINIMAL.replace(
            "hmac_secret_env = \"SECRET\"",
            "hmac_secret_env = \"A\"\nalgorithm = \"RS256\"",
        );
        assert!(error(&bad_alg, &[]).starts_with("jwt.keys[0].algorithm"));
    }

    #[test]
    fn required_keys_are_named() {
        assert!(error("jwt.algorithms = [\"HS256\"]", &[]).starts_with("upstream.url"));
        assert!(error("upstream.url = \"http://a\"", &[]).starts_with("jwt.algorithms"));
    }

    #[test]
    fn redis_store_gets_its_defaults_and_hides_the_password() {
        let env = [
            ("SESSIONGATE__STORE__BACKEND", "redis"),
            (
                "SESSIONGATE__STORE__REDIS_URL",
                "redis://:hunter2@10.0.0.5:6380/2",
            ),
        ];
        let config = Config::from_toml(MINIMAL, &env).unwrap();
        let StoreConfig::Redis(redis) = &config.store else {
            panic!("redis backend expected: {:?}", config.store);
        };
        assert_eq!(redis.key_prefix, "sessiongate:");
        assert_eq!(redis.resync, Duration::from_secs(30));
        assert_eq!(redis.max_staleness, None);
        assert_eq!(redis.url.expose(), "redis://:hunter2@10.0.0.5:6380/2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://10.0.0.5:6380/2"), "{shown}");
    }

    #[test]
    fn invalid_redis_settings_name_their_key_never_the_password() {
        let redis = ("SESSIONGATE__STORE__BACKEND", "redis");
        let cases = [
            (
                "SESSIONGATE__STORE__REDIS_URL",
                "http://:hunter2@h",
                "store.redis_url",
            ),
            (
                "SESSIONGATE__STORE__REDIS_URL",
                "redis://:hunter2@h:x",
                "store.redis_url",
            ),
            (
                "SESSIONGATE__STORE__REDIS_KEY_PREFIX",
                "",
                "store.redis_key_prefix",
            ),
            ("SESSIONGATE__STORE__RESYNC_SECS", "0", "store.resync_secs"),
        ];
        for (var, value, key) in cases {
            let message = error(MINIMAL, &[redis, (var, value)]);
            assert!(message.starts_with(key), "{var}={value}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn sentinels_and_replicas_are_read_and_checked() {
        let text = format!(
            "{MINIMAL}\n[store]\nbackend = \"redis\"\nredis_sentinels = [\"10.0.0.1:26379\", \"s2:26380\"]\n\
             redis_master_name = \"primary\"\nredis_min_replicas = 1\nredis_wait_timeout_ms = 250\n"
        );
        let config = Config::from_toml(&text, &[("SECRET", "x")]).unwrap();
        let StoreConfig::Redis(redis) = &config.store else {
            panic!("redis backend expected");
        };
        let sentinel = redis.sentinel.as_ref().unwrap();
        assert_eq!(
            sentinel.sentinels,
            [("10.0.0.1".to_string(), 26379), ("s2".to_string(), 26380)]
        );
        assert_eq!(sentinel.master_name, "primary");
        assert_eq!(redis.replication.min_replicas, 1);
        assert_eq!(redis.replication.wait_timeout, Duration::from_millis(250));
        let bad = [
            ("redis_sentinels = [\"s1\"]", "store.redis_sentinels"),
            ("redis_sentinels = [\"s1:0\"]", "store.redis_sentinels"),
            ("redis_sentinels = [\":26379\"]", "store.redis_sentinels"),
            ("redis_sentinels = [\"s1:99999\"]", "store.redis_sentinels"),
            (
                "redis_sentinels = [\"s1:1\"]\nredis_master_name = \" \"",
                "store.redis_master_name",
            ),
            ("redis_wait_timeout_ms = 0", "store.redis_wait_timeout_ms"),
            (
                "redis_wait_timeout_ms = 60001",
                "store.redis_wait_timeout_ms",
            ),
        ];
        for (line, key) in bad {
            let text = format!("{MINIMAL}\n[store]\nbackend = \"redis\"\n{line}\n");
            let message = Config::from_toml(&text, &[("SECRET", "x")])
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(key), "{line}: {message}");
        }
        let text = format!("{MINIMAL}\n[store]\nbackend = \"redis\"\n");
        let store = Config::from_toml(&text, &[("SECRET", "x")]).unwrap().store;
        let StoreConfig::Redis(redis) = store else {
            panic!("redis backend expected: {store:?}");
        };
        assert_eq!(redis.sentinel, None, "no Sentinels by default");
        assert_eq!(redis.replication.min_replicas, 0);
    }

    #[test]
    fn settings_that_do_not_apply_are_warnings() {
        let env = [
            ("SESSIONGATE__STORE__BACKEND", "redis"),
            ("SESSIONGATE__STORE__REDIS_CA_FILE", "ca.pem"),
            ("SESSIONGATE__UPSTREAM__CA_FILE", "up.pem"),
        ];
        let config = Config::from_toml(MINIMAL, &env).unwrap();
        let keys: Vec<&str> = config.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["upstream.ca_file", "store.redis_ca_file"]);
        assert_eq!(config.upstream.ca_file, None, "a moot setting is not used");
    }

    #[test]
    fn claim_paths_reach_nested_objects() {
        let path = ClaimPath::parse("k", "org.workspace").unwrap();
        let claims = serde_json::json!({"org": {"workspace": "acme"}});
        assert_eq!(
            path.lookup(claims.as_object().unwrap()),
            Some(&serde_json::json!("acme"))
        );
        assert!(ClaimPath::parse("k", "org..x").is_err());
    }
}
