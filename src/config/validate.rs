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
    AuthConfig, ClaimPath, Config, ConfigError, JwtConfig, KeyConfig, KeySource, LogConfig,
    LogFormat, RedisConfig, RedisUrl, RemoteJwksConfig, ServerConfig, SessionsConfig, StoreConfig,
    TimeClaim, TlsConfig, UpstreamConfig,
};
use crate::web::{PublicPaths, check_path};

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
    if !prefix.starts_with('/') || check_path(prefix).is_err() {
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
        user_claim: ClaimPath::parse("sessions.user_claim", &raw.user_claim)?,
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

pub(super) fn parse<T: FromStr>(key: &str, text: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| invalid(key, format!("{text:?}: {e}")))
}

pub(super) fn invalid(key: &str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}
