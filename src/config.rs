//! Validated, immutable configuration.
//!
//! `RawConfig` (serde mirror of the file) is turned into `Config` by `TryFrom`, so an
//! invalid `Config` cannot exist. Every error names the key at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{Environment, File, FileFormat};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::paths::PublicPaths;

pub mod raw;
mod summary;

use raw::{RawAuth, RawConfig, RawJwt, RawKey, RawServer, RawSessions, RawStore, RawUpstream};

/// Env overrides: `SESSIONGATE__SECTION__KEY`.
const ENV_PREFIX: &str = "SESSIONGATE";
/// Keys whose env override is a comma-separated list.
const LIST_KEYS: [&str; 6] = [
    "jwt.algorithms",
    "jwt.audience",
    "jwt.admin_roles",
    "auth.public_paths",
    "auth.allowed_origins",
    "server.trusted_proxies",
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
    pub jwt: JwtConfig,
    pub sessions: SessionsConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
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
#[derive(Debug, Clone, Copy)]
pub struct SessionsConfig {
    pub time_claim: TimeClaim,
    pub iat_backdate_secs: f64,
    pub invalidation_margin_secs: i64,
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

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            server: server(raw.server)?,
            ops_listen: match raw.ops.listen.as_str() {
                "" => None,
                addr => Some(parse("ops.listen", addr)?),
            },
            upstream: upstream(raw.upstream)?,
            auth: auth(raw.auth)?,
            admin_prefix: admin_prefix(&raw.admin.path_prefix)?,
            jwt: jwt(raw.jwt)?,
            sessions: sessions(raw.sessions)?,
            store: store(raw.store)?,
            log: LogConfig {
                format: match raw.log.format.as_str() {
                    "json" => LogFormat::Json,
                    "pretty" => LogFormat::Pretty,
                    _ => return Err(invalid("log.format", "must be \"json\" or \"pretty\"")),
                },
                level: log_level(raw.log.level)?,
            },
        })
    }
}

fn server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let tls = match raw.tls {
        Some(tls) if tls.cert.is_empty() => {
            return Err(invalid("server.tls.cert", "must be a PEM file path"));
        }
        Some(tls) if tls.key.is_empty() => {
            return Err(invalid("server.tls.key", "must be a PEM file path"));
        }
        Some(tls) => Some(TlsConfig {
            cert: tls.cert.into(),
            key: tls.key.into(),
        }),
        None => None,
    };
    if raw.max_header_bytes < 8192 {
        return Err(invalid("server.max_header_bytes", "must be at least 8192"));
    }
    if raw.max_connections == 0 {
        return Err(invalid("server.max_connections", "must be at least 1"));
    }
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .map(|cidr| parse_cidr(cidr))
        .collect::<Result<_, _>>()?;
    Ok(ServerConfig {
        listen: parse("server.listen", &raw.listen)?,
        tls,
        header_read_timeout: Duration::from_secs(raw.header_read_timeout_secs.max(1)),
        max_header_bytes: raw.max_header_bytes,
        max_connections: raw.max_connections,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
        trusted_proxies,
    })
}

/// A bare address is a /32 (or /128) network.
fn parse_cidr(text: &str) -> Result<IpNet, ConfigError> {
    IpNet::from_str(text)
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(
                "server.trusted_proxies",
                format!("{text:?} is not a CIDR or IP"),
            )
        })
}

fn upstream(raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let url = raw
        .url
        .ok_or_else(|| invalid("upstream.url", "is required"))?;
    let uri: http::Uri = parse("upstream.url", &url)?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(invalid(
                "upstream.url",
                "must start with http:// or https://",
            ));
        }
    };
    if uri.authority().is_none() || uri.query().is_some() {
        return Err(invalid(
            "upstream.url",
            "must be scheme://host[:port][/base-path] with no query",
        ));
    }
    if raw.ca_file.is_some() && !https {
        return Err(invalid(
            "upstream.ca_file",
            "only applies to https upstreams",
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    let origin = http::Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
        .path_and_query("/")
        .build()
        .map_err(|e| invalid("upstream.url", e))?;
    Ok(UpstreamConfig {
        origin,
        base_path,
        ca_file: raw.ca_file.map(PathBuf::from),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms.max(1)),
        response_timeout: Duration::from_secs(raw.response_timeout_secs.max(1)),
        forward_token: raw.forward_token,
    })
}

fn auth(raw: RawAuth) -> Result<AuthConfig, ConfigError> {
    if let Some(cookie) = &raw.cookie {
        let valid = !cookie.is_empty()
            && cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid {
            return Err(invalid("auth.cookie", "must be a valid cookie name"));
        }
    }
    if !raw.cookie_path.starts_with('/') {
        return Err(invalid("auth.cookie_path", "must start with /"));
    }
    let public_paths = PublicPaths::new(&raw.public_paths)
        .map_err(|path| invalid("auth.public_paths", format!("{path:?} must start with /")))?;
    let allowed_origins = raw
        .allowed_origins
        .iter()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    Ok(AuthConfig {
        cookie: raw.cookie,
        cookie_path: raw.cookie_path,
        public_paths,
        login_url: raw.login_url.filter(|url| !url.is_empty()),
        allowed_origins,
    })
}

fn admin_prefix(prefix: &str) -> Result<String, ConfigError> {
    let prefix = prefix.trim_end_matches('/');
    if !prefix.starts_with('/') || crate::paths::check(prefix).is_err() {
        return Err(invalid(
            "admin.path_prefix",
            "must be a clean absolute path such as /_sessiongate",
        ));
    }
    Ok(prefix.to_string())
}

fn jwt(raw: RawJwt) -> Result<JwtConfig, ConfigError> {
    let names = raw
        .algorithms
        .ok_or_else(|| invalid("jwt.algorithms", "is required"))?;
    let algorithms = names
        .iter()
        .map(|name| algorithm("jwt.algorithms", name))
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err(invalid(
            "jwt.algorithms",
            "must name at least one algorithm",
        ));
    }
    if raw.keys.is_empty() {
        return Err(invalid(
            "jwt.keys",
            "at least one [[jwt.keys]] entry is required",
        ));
    }
    let keys = raw
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| key_config(i, key, &algorithms))
        .collect::<Result<_, _>>()?;
    if raw.max_token_bytes < 64 {
        return Err(invalid("jwt.max_token_bytes", "must be at least 64"));
    }
    Ok(JwtConfig {
        algorithms,
        issuer: raw.issuer,
        audience: raw.audience,
        leeway_secs: raw.leeway_secs as f64,
        max_token_bytes: raw.max_token_bytes,
        workspace_claim: ClaimPath::parse("jwt.workspace_claim", &raw.workspace_claim)?,
        roles_claim: ClaimPath::parse("jwt.roles_claim", &raw.roles_claim)?,
        admin_roles: raw.admin_roles,
        keys,
        verify_cache_entries: raw.verify_cache_entries,
    })
}

fn algorithm(key: &str, name: &str) -> Result<Algorithm, ConfigError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(invalid(key, "\"none\" is never accepted"));
    }
    Algorithm::from_str(name).map_err(|_| invalid(key, format!("unknown algorithm {name:?}")))
}

fn key_config(index: usize, raw: RawKey, allowed: &[Algorithm]) -> Result<KeyConfig, ConfigError> {
    let key_name = format!("jwt.keys[{index}]");
    let at = |field: &str| format!("{key_name}.{field}");
    let sources = [
        &raw.hmac_secret_env,
        &raw.hmac_secret_file,
        &raw.public_key_file,
        &raw.jwks_file,
        &raw.jwks_url,
    ];
    if sources.iter().filter(|s| s.is_some()).count() != 1 {
        return Err(invalid(
            &key_name,
            "set exactly one of hmac_secret_env, hmac_secret_file, public_key_file, jwks_file, jwks_url",
        ));
    }
    if raw.jwks_url.is_none() && (raw.refresh_secs.is_some() || raw.ca_file.is_some()) {
        return Err(invalid(
            &key_name,
            "refresh_secs and ca_file only apply to jwks_url",
        ));
    }
    let algorithm = match &raw.algorithm {
        Some(name) => {
            let alg = algorithm(&at("algorithm"), name)?;
            if !allowed.contains(&alg) {
                return Err(invalid(
                    &at("algorithm"),
                    format!("{name} is not in jwt.algorithms"),
                ));
            }
            Some(alg)
        }
        None => None,
    };
    let single = raw.kid.is_some() || algorithm.is_some();
    let kid = raw.kid;
    let jwks = |source| -> Result<KeySource, ConfigError> {
        match single {
            true => Err(invalid(
                &key_name,
                "kid and algorithm come from the JWKS itself; set them only on single keys",
            )),
            false => Ok(source),
        }
    };
    let source = match (
        raw.hmac_secret_env,
        raw.hmac_secret_file,
        raw.public_key_file,
        raw.jwks_file,
        raw.jwks_url,
    ) {
        (Some(var), ..) => KeySource::HmacEnv(var),
        (_, Some(path), ..) => KeySource::HmacFile(path.into()),
        (_, _, Some(path), ..) => KeySource::PublicKeyFile(path.into()),
        (_, _, _, Some(path), _) => jwks(KeySource::JwksFile {
            path: path.into(),
            allow_hmac: raw.allow_hmac,
        })?,
        (.., Some(url)) => jwks(KeySource::JwksUrl(jwks_url(
            &at,
            url,
            raw.refresh_secs,
            raw.ca_file,
            raw.allow_hmac,
        )?))?,
        (None, None, None, None, None) => unreachable!("exactly one key source was checked above"),
    };
    if raw.allow_hmac && !matches!(source, KeySource::JwksFile { .. } | KeySource::JwksUrl(_)) {
        return Err(invalid(
            &at("allow_hmac"),
            "only applies to jwks_file and jwks_url",
        ));
    }
    Ok(KeyConfig {
        key_name,
        kid,
        algorithm,
        source,
    })
}

fn jwks_url(
    at: &dyn Fn(&str) -> String,
    url: String,
    refresh_secs: Option<u64>,
    ca_file: Option<String>,
    allow_hmac: bool,
) -> Result<RemoteJwksConfig, ConfigError> {
    let uri: http::Uri = parse(&at("jwks_url"), &url)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(invalid(
                &at("jwks_url"),
                "must be an http:// or https:// URL",
            ));
        }
    };
    if uri.authority().is_none() {
        return Err(invalid(&at("jwks_url"), "must name a host"));
    }
    if ca_file.is_some() && !https {
        return Err(invalid(&at("ca_file"), "only applies to https URLs"));
    }
    let refresh = Duration::from_secs(refresh_secs.unwrap_or(300));
    if refresh.is_zero() {
        return Err(invalid(&at("refresh_secs"), "must be at least 1"));
    }
    Ok(RemoteJwksConfig {
        url: uri,
        refresh,
        ca_file: ca_file.map(PathBuf::from),
        allow_hmac,
    })
}

fn sessions(raw: RawSessions) -> Result<SessionsConfig, ConfigError> {
    let time_claim = match raw.time_claim.as_str() {
        "iat" => TimeClaim::Iat,
        "auth_time" => TimeClaim::AuthTime,
        _ => {
            return Err(invalid(
                "sessions.time_claim",
                "must be \"iat\" or \"auth_time\"",
            ));
        }
    };
    let margin = i64::try_from(raw.invalidation_margin_secs)
        .map_err(|_| invalid("sessions.invalidation_margin_secs", "is too large"))?;
    Ok(SessionsConfig {
        time_claim,
        iat_backdate_secs: raw.iat_backdate_secs as f64,
        invalidation_margin_secs: margin,
    })
}

fn store(raw: RawStore) -> Result<StoreConfig, ConfigError> {
    match raw.backend.as_str() {
        "embedded" if raw.path.is_empty() => Err(invalid("store.path", "must not be empty")),
        "embedded" => Ok(StoreConfig::Embedded {
            path: raw.path.into(),
        }),
        "memory" => Ok(StoreConfig::Memory),
        "redis" => Ok(StoreConfig::Redis(redis_store(raw)?)),
        _ => Err(invalid(
            "store.backend",
            "must be \"embedded\", \"redis\" or \"memory\"",
        )),
    }
}

fn redis_store(raw: RawStore) -> Result<RedisConfig, ConfigError> {
    let url = RedisUrl::parse(&raw.redis_url)?;
    if raw.redis_key_prefix.is_empty() {
        return Err(invalid(
            "store.redis_key_prefix",
            "must not be empty: the gateway's keys would mix with everything else in the database",
        ));
    }
    if raw.redis_ca_file.is_some() && !url.is_tls() {
        return Err(invalid(
            "store.redis_ca_file",
            "only applies to rediss:// URLs",
        ));
    }
    if raw.resync_secs == 0 {
        return Err(invalid("store.resync_secs", "must be at least 1"));
    }
    Ok(RedisConfig {
        url,
        key_prefix: raw.redis_key_prefix,
        ca_file: raw.redis_ca_file.map(PathBuf::from),
        resync: Duration::from_secs(raw.resync_secs),
        max_staleness: (raw.max_staleness_secs > 0)
            .then(|| Duration::from_secs(raw.max_staleness_secs)),
    })
}

/// A `tracing` filter (`info`, `warn,sessiongate=debug`, ...), checked now rather than
/// silently replaced at start.
fn log_level(level: String) -> Result<String, ConfigError> {
    // A bare word is a valid filter (a target name), so a typo like "verbose" would quietly
    // log nothing: only a level, or directives naming their level, are accepted.
    let plain_level = level.parse::<tracing::Level>().is_ok() || level.eq_ignore_ascii_case("off");
    let directives = level.contains('=') && tracing_subscriber::EnvFilter::try_new(&level).is_ok();
    match plain_level || directives {
        true => Ok(level),
        false => Err(invalid(
            "log.level",
            "must be trace, debug, info, warn, error, off or target=level directives",
        )),
    }
}

fn parse<T: FromStr>(key: &str, text: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| invalid(key, format!("{text:?}: {e}")))
}

fn invalid(key: &str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

// === impl ClaimPath ===

impl ClaimPath {
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(
                key,
                "must be a claim name, dots separating nested objects",
            ));
        }
        Ok(Self(segments))
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

    const MINIMAL: &str = r#"
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
            (
                "SESSIONGATE__STORE__REDIS_CA_FILE",
                "ca.pem",
                "store.redis_ca_file",
            ),
        ];
        for (var, value, key) in cases {
            let message = error(MINIMAL, &[redis, (var, value)]);
            assert!(message.starts_with(key), "{var}={value}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
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
