//! `RawConfig` -> `Config`: every section checked, every error naming its key.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use super::raw::{
    RawAuth, RawConfig, RawJwt, RawKey, RawServer, RawSessions, RawStore, RawUpstream,
};
use super::{
    AuthConfig, ClaimPath, Config, ConfigError, ConfigWarning, JwtConfig, KeyConfig, KeySource,
    LogConfig, LogFormat, RedisConfig, RedisUrl, RemoteJwksConfig, Replication, SentinelConfig,
    ServerConfig, SessionsConfig, StoreConfig, TimeClaim, TlsConfig, UpstreamConfig,
};
use super::{PublicPaths, check_path, signals};

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let admin_prefix = admin_prefix(&raw.admin.path_prefix)?;
        let signals = signals::signals(raw.signals, &admin_prefix, &mut warnings)?;
        Ok(Self {
            server: server(raw.server)?,
            ops_listen: match raw.ops.listen.as_str() {
                "" => None,
                addr => Some(parse("ops.listen", addr)?),
            },
            upstream: upstream(raw.upstream, &mut warnings)?,
            auth: auth(raw.auth)?,
            admin_prefix,
            admin_console: raw.admin.console,
            jwt: jwt(raw.jwt, &mut warnings)?,
            sessions: sessions(raw.sessions)?,
            signals,
            store: store(raw.store, &mut warnings)?,
            events: super::events::events(raw.events, &mut warnings)?,
            log: LogConfig {
                format: match raw.log.format.as_str() {
                    "json" => LogFormat::Json,
                    "pretty" => LogFormat::Pretty,
                    _ => return Err(invalid("log.format", "must be \"json\" or \"pretty\"")),
                },
                level: log_level(raw.log.level)?,
            },
            warnings,
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

fn upstream(
    raw: RawUpstream,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<UpstreamConfig, ConfigError> {
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
        let why = "ignored: only applies to https upstreams";
        warnings.push(warning("upstream.ca_file", why));
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
        ca_file: raw.ca_file.filter(|_| https).map(PathBuf::from),
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
    if !prefix.starts_with('/') || check_path(prefix).is_err() {
        return Err(invalid(
            "admin.path_prefix",
            "must be a clean absolute path such as /_sessiongate",
        ));
    }
    Ok(prefix.to_string())
}

fn jwt(raw: RawJwt, warnings: &mut Vec<ConfigWarning>) -> Result<JwtConfig, ConfigError> {
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
    let rules = KeyRules {
        algorithms: &algorithms,
        listed_in: "jwt.algorithms",
    };
    let keys = raw
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| key_config(format!("jwt.keys[{i}]"), key, &rules, warnings))
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

/// Which algorithms a key entry may name, and the key that lists them (for messages).
pub(super) struct KeyRules<'a> {
    pub(super) algorithms: &'a [Algorithm],
    pub(super) listed_in: &'static str,
}

/// One key entry, named `key_name` in messages (`jwt.keys[0]`, `signals.issuers[1]`).
pub(super) fn key_config(
    key_name: String,
    raw: RawKey,
    rules: &KeyRules<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<KeyConfig, ConfigError> {
    let at = |field: &str| format!("{key_name}.{field}");
    let algorithm = raw
        .algorithm
        .as_deref()
        .map(|name| key_algorithm(&at("algorithm"), name, rules))
        .transpose()?;
    let (kid, allow_hmac) = (raw.kid.clone(), raw.allow_hmac);
    let source = key_source(&key_name, raw, warnings)?;
    let jwks = matches!(source, KeySource::JwksFile { .. } | KeySource::JwksUrl(_));
    let mut ignored = |field: &str, why: &str| warnings.push(warning(&at(field), why));
    if jwks && kid.is_some() {
        ignored("kid", "ignored: a JWKS names its own keys");
    }
    if jwks && algorithm.is_some() {
        ignored("algorithm", "ignored: a JWKS gives each key's algorithm");
    }
    if allow_hmac && !jwks {
        ignored(
            "allow_hmac",
            "ignored: only applies to jwks_file and jwks_url",
        );
    }
    Ok(KeyConfig {
        key_name,
        kid: kid.filter(|_| !jwks),
        algorithm: algorithm.filter(|_| !jwks),
        source,
    })
}

/// `algorithm` of a single key: a known algorithm that the rules allow.
fn key_algorithm(key: &str, name: &str, rules: &KeyRules<'_>) -> Result<Algorithm, ConfigError> {
    let alg = algorithm(key, name)?;
    if !rules.algorithms.contains(&alg) {
        return Err(invalid(
            key,
            format!("{name} is not in {}", rules.listed_in),
        ));
    }
    Ok(alg)
}

/// Exactly one source per entry; `refresh_secs` and `ca_file` elsewhere than on a
/// `jwks_url` do not apply (a warning, not a refusal).
fn key_source(
    key_name: &str,
    raw: RawKey,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<KeySource, ConfigError> {
    let at = |field: &str| format!("{key_name}.{field}");
    let remote_only = [
        ("refresh_secs", raw.refresh_secs.is_some()),
        ("ca_file", raw.ca_file.is_some()),
    ];
    if raw.jwks_url.is_none() {
        for (field, _) in remote_only.iter().filter(|(_, set)| *set) {
            warnings.push(warning(&at(field), "ignored: only applies to jwks_url"));
        }
    }
    Ok(
        match (
            raw.hmac_secret_env,
            raw.hmac_secret_file,
            raw.public_key_file,
            raw.jwks_file,
            raw.jwks_url,
        ) {
            (Some(var), None, None, None, None) => KeySource::HmacEnv(var),
            (None, Some(path), None, None, None) => KeySource::HmacFile(path.into()),
            (None, None, Some(path), None, None) => KeySource::PublicKeyFile(path.into()),
            (None, None, None, Some(path), None) => KeySource::JwksFile {
                path: path.into(),
                allow_hmac: raw.allow_hmac,
            },
            (None, None, None, None, Some(url)) => {
                let remote = RemoteKey {
                    url,
                    refresh_secs: raw.refresh_secs,
                    ca_file: raw.ca_file,
                    allow_hmac: raw.allow_hmac,
                };
                KeySource::JwksUrl(jwks_url(key_name, remote, warnings)?)
            }
            _ => {
                return Err(invalid(
                    key_name,
                    "set exactly one of hmac_secret_env, hmac_secret_file, public_key_file, jwks_file, jwks_url",
                ));
            }
        },
    )
}

/// The fields of a `jwks_url` entry.
struct RemoteKey {
    url: String,
    refresh_secs: Option<u64>,
    ca_file: Option<String>,
    allow_hmac: bool,
}

fn jwks_url(
    key_name: &str,
    raw: RemoteKey,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<RemoteJwksConfig, ConfigError> {
    let at = |field: &str| format!("{key_name}.{field}");
    let uri: http::Uri = parse(&at("jwks_url"), &raw.url)?;
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
    if raw.ca_file.is_some() && !https {
        warnings.push(warning(
            &at("ca_file"),
            "ignored: only applies to https URLs",
        ));
    }
    let refresh = Duration::from_secs(raw.refresh_secs.unwrap_or(300));
    if refresh.is_zero() {
        return Err(invalid(&at("refresh_secs"), "must be at least 1"));
    }
    Ok(RemoteJwksConfig {
        url: uri,
        refresh,
        ca_file: raw.ca_file.filter(|_| https).map(PathBuf::from),
        allow_hmac: raw.allow_hmac,
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
    // Ten years at most: the revocation's end must stay a plain unix time.
    if !(1..=315_360_000).contains(&raw.revoked_sid_ttl_secs) {
        return Err(invalid(
            "sessions.revoked_sid_ttl_secs",
            "must be between 1 and 315360000",
        ));
    }
    Ok(SessionsConfig {
        time_claim,
        user_claim: ClaimPath::parse("sessions.user_claim", &raw.user_claim)?,
        iat_backdate_secs: raw.iat_backdate_secs as f64,
        invalidation_margin_secs: margin,
        revoked_sid_ttl_secs: raw.revoked_sid_ttl_secs as i64,
    })
}

fn store(raw: RawStore, warnings: &mut Vec<ConfigWarning>) -> Result<StoreConfig, ConfigError> {
    match raw.backend.as_str() {
        "embedded" if raw.path.is_empty() => Err(invalid("store.path", "must not be empty")),
        "embedded" => Ok(StoreConfig::Embedded {
            path: raw.path.into(),
        }),
        "memory" => Ok(StoreConfig::Memory),
        "redis" => Ok(StoreConfig::Redis(redis_store(raw, warnings)?)),
        _ => Err(invalid(
            "store.backend",
            "must be \"embedded\", \"redis\" or \"memory\"",
        )),
    }
}

fn redis_store(
    raw: RawStore,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<RedisConfig, ConfigError> {
    let url = RedisUrl::parse(&raw.redis_url)?;
    let tls = url.is_tls();
    if raw.redis_key_prefix.is_empty() {
        return Err(invalid(
            "store.redis_key_prefix",
            "must not be empty: the gateway's keys would mix with everything else in the database",
        ));
    }
    if raw.redis_ca_file.is_some() && !tls {
        let why = "ignored: only applies to rediss:// URLs";
        warnings.push(warning("store.redis_ca_file", why));
    }
    if raw.resync_secs == 0 {
        return Err(invalid("store.resync_secs", "must be at least 1"));
    }
    Ok(RedisConfig {
        url,
        key_prefix: raw.redis_key_prefix,
        ca_file: raw.redis_ca_file.filter(|_| tls).map(PathBuf::from),
        resync: Duration::from_secs(raw.resync_secs),
        max_staleness: (raw.max_staleness_secs > 0)
            .then(|| Duration::from_secs(raw.max_staleness_secs)),
        sentinel: sentinel(raw.redis_sentinels, raw.redis_master_name)?,
        replication: replication(raw.redis_min_replicas, raw.redis_wait_timeout_ms)?,
    })
}

/// No Sentinels: the URL names the server. Otherwise every entry must be `host:port`.
fn sentinel(
    sentinels: Vec<String>,
    master_name: String,
) -> Result<Option<SentinelConfig>, ConfigError> {
    if sentinels.is_empty() {
        return Ok(None);
    }
    let sentinels = sentinels
        .iter()
        .map(|entry| sentinel_address(entry))
        .collect::<Result<Vec<_>, _>>()?;
    if master_name.trim().is_empty() {
        return Err(invalid(
            "store.redis_master_name",
            "must name the primary the Sentinels monitor",
        ));
    }
    Ok(Some(SentinelConfig {
        sentinels,
        master_name,
    }))
}

fn sentinel_address(entry: &str) -> Result<(String, u16), ConfigError> {
    let bad = || {
        invalid(
            "store.redis_sentinels",
            format!("{entry:?} is not host:port (port 1 to 65535)"),
        )
    };
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `WAIT n 0` would block forever: a commit waits for a bounded time or not at all.
fn replication(min_replicas: u32, wait_timeout_ms: u64) -> Result<Replication, ConfigError> {
    if !(1..=60_000).contains(&wait_timeout_ms) {
        return Err(invalid(
            "store.redis_wait_timeout_ms",
            "must be 1 to 60000 (milliseconds)",
        ));
    }
    Ok(Replication {
        min_replicas,
        wait_timeout: Duration::from_millis(wait_timeout_ms),
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

pub(super) fn parse<T: FromStr>(key: &str, text: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| invalid(key, format!("{text:?}: {e}")))
}

/// A valid setting that has no effect here: said at start and by `check`, never fatal (an
/// env override elsewhere may be what made it moot).
pub(super) fn warning(key: &str, message: &str) -> ConfigWarning {
    ConfigWarning {
        key: key.to_string(),
        message: message.to_string(),
    }
}

pub(super) fn invalid(key: &str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}
