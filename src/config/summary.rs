//! The readable summary `sessiongate check` prints: the effective configuration, never a
//! secret (env var names and file paths only; Redis passwords masked by `StoreConfig`'s
//! `Debug`).

use std::fmt::Write;

use super::{Config, KeyConfig, KeySource, TimeClaim};

// === impl Config ===

impl Config {
    /// One line per setting an operator checks before a deploy.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "  {key:<34} {value}");
        };
        line("server.listen", self.server.listen.to_string());
        line(
            "server.tls",
            self.server
                .tls
                .as_ref()
                .map_or("off (plain HTTP)".into(), |t| {
                    format!("{} + {}", t.cert.display(), t.key.display())
                }),
        );
        line(
            "server.trusted_proxies",
            format!("{:?}", self.server.trusted_proxies),
        );
        line(
            "ops.listen",
            self.ops_listen.map_or("disabled".into(), |a| a.to_string()),
        );
        line(
            "upstream.url",
            format!(
                "{}{}",
                self.upstream.origin,
                self.upstream.base_path.trim_start_matches('/')
            ),
        );
        line(
            "upstream.forward_token",
            self.upstream.forward_token.to_string(),
        );
        line(
            "auth.cookie",
            self.auth
                .cookie
                .clone()
                .unwrap_or_else(|| "unset (bearer header only)".into()),
        );
        line(
            "auth.login_url",
            self.auth
                .login_url
                .clone()
                .unwrap_or_else(|| "unset (401 JSON)".into()),
        );
        line("admin.path_prefix", self.admin_prefix.clone());
        line("jwt.algorithms", format!("{:?}", self.jwt.algorithms));
        line(
            "jwt.issuer",
            self.jwt.issuer.clone().unwrap_or_else(|| "any".into()),
        );
        line("jwt.audience", format!("{:?}", self.jwt.audience));
        line("jwt.leeway_secs", self.jwt.leeway_secs.to_string());
        line(
            "jwt.verify_cache_entries",
            self.jwt.verify_cache_entries.to_string(),
        );
        for key in &self.jwt.keys {
            line(&key.key_name, describe(key));
        }
        let time_claim = match self.sessions.time_claim {
            TimeClaim::Iat => "iat",
            TimeClaim::AuthTime => "auth_time",
        };
        line("sessions.time_claim", time_claim.into());
        line(
            "sessions.user_claim",
            self.sessions.user_claim.segments().join("."),
        );
        line(
            "sessions.iat_backdate_secs",
            self.sessions.iat_backdate_secs.to_string(),
        );
        line(
            "sessions.invalidation_margin_secs",
            self.sessions.invalidation_margin_secs.to_string(),
        );
        line("store", format!("{:?}", self.store));
        line(
            "log",
            format!("{:?} at {}", self.log.format, self.log.level),
        );
        out
    }
}

/// A key entry without its material.
fn describe(key: &KeyConfig) -> String {
    let source = match &key.source {
        KeySource::HmacEnv(var) => format!("HMAC secret from env {var} (value not shown)"),
        KeySource::HmacFile(path) => {
            format!("HMAC secret from file {} (value not shown)", path.display())
        }
        KeySource::PublicKeyFile(path) => format!("public key {}", path.display()),
        KeySource::JwksFile { path, allow_hmac } => {
            format!("JWKS file {} (oct keys: {allow_hmac})", path.display())
        }
        KeySource::JwksUrl(remote) => {
            format!(
                "JWKS {} every {}s (oct keys: {})",
                remote.url,
                remote.refresh.as_secs(),
                remote.allow_hmac
            )
        }
    };
    let kid = key
        .kid
        .as_deref()
        .map(|kid| format!(", kid {kid}"))
        .unwrap_or_default();
    let alg = key
        .algorithm
        .map(|alg| format!(", only {alg:?}"))
        .unwrap_or_default();
    format!("{source}{kid}{alg}")
}
