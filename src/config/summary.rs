//! The readable summary `sessiongate check` prints: the effective configuration, never a
//! secret (env var names and file paths only; Redis passwords masked by `StoreConfig`'s
//! `Debug`).

use std::fmt::Write;

use super::{Config, IssuerConfig, KeyConfig, KeySource, TimeClaim, WebhookConfig};

/// One `key value` line of the summary.
type Line = (String, String);

// === impl Config ===

impl Config {
    /// One line per setting an operator checks before a deploy, then the warnings.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let lines = [
            self.listener_lines(),
            self.auth_lines(),
            self.jwt_lines(),
            self.signals_lines(),
        ];
        let rest = self.store_lines().into_iter().chain(self.events_lines());
        for (key, value) in lines.into_iter().flatten().chain(rest) {
            let _ = writeln!(out, "  {key:<34} {value}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }

    fn listener_lines(&self) -> Vec<Line> {
        let server = &self.server;
        let tls = server.tls.as_ref().map_or("off (plain HTTP)".into(), |t| {
            format!("{} + {}", t.cert.display(), t.key.display())
        });
        let upstream = &self.upstream;
        vec![
            line("server.listen", server.listen),
            line("server.tls", tls),
            line(
                "server.trusted_proxies",
                format!("{:?}", server.trusted_proxies),
            ),
            line(
                "ops.listen",
                self.ops_listen.map_or("disabled".into(), |a| a.to_string()),
            ),
            line(
                "upstream.url",
                format!(
                    "{}{}",
                    upstream.origin,
                    upstream.base_path.trim_start_matches('/')
                ),
            ),
            line("upstream.forward_token", upstream.forward_token),
        ]
    }

    fn auth_lines(&self) -> Vec<Line> {
        let auth = &self.auth;
        let or =
            |value: &Option<String>, unset: &str| value.clone().unwrap_or_else(|| unset.into());
        vec![
            line(
                "auth.cookie",
                or(&auth.cookie, "unset (bearer header only)"),
            ),
            line("auth.login_url", or(&auth.login_url, "unset (401 JSON)")),
            line("admin.path_prefix", &self.admin_prefix),
            line("admin.console", self.admin_console),
        ]
    }

    fn jwt_lines(&self) -> Vec<Line> {
        let jwt = &self.jwt;
        let time_claim = match self.sessions.time_claim {
            TimeClaim::Iat => "iat",
            TimeClaim::AuthTime => "auth_time",
        };
        let sessions = &self.sessions;
        let mut lines = vec![
            line("jwt.algorithms", format!("{:?}", jwt.algorithms)),
            line("jwt.issuer", jwt.issuer.as_deref().unwrap_or("any")),
            line("jwt.audience", format!("{:?}", jwt.audience)),
            line("jwt.leeway_secs", jwt.leeway_secs),
            line("jwt.verify_cache_entries", jwt.verify_cache_entries),
        ];
        lines.extend(
            jwt.keys
                .iter()
                .map(|key| line(&key.key_name, describe(key))),
        );
        lines.extend([
            line("sessions.time_claim", time_claim),
            line(
                "sessions.user_claim",
                sessions.user_claim.segments().join("."),
            ),
            line("sessions.iat_backdate_secs", sessions.iat_backdate_secs),
            line(
                "sessions.invalidation_margin_secs",
                sessions.invalidation_margin_secs,
            ),
        ]);
        lines
    }

    fn signals_lines(&self) -> Vec<Line> {
        let signals = &self.signals;
        let mut lines = vec![line(
            "sessions.revoked_sid_ttl_secs",
            self.sessions.revoked_sid_ttl_secs,
        )];
        lines.extend(
            signals
                .issuers
                .iter()
                .map(|issuer| line(&issuer.name, describe_issuer(issuer))),
        );
        let scim = &signals.scim;
        let paths: Vec<&str> = scim.paths.iter().map(|t| t.as_str()).collect();
        let scim_line = match paths.is_empty() {
            true => "off".to_string(),
            false => format!(
                "{paths:?}, user from {}, workspace {}",
                scim.subject_attribute.as_str(),
                scim.workspace
                    .as_deref()
                    .unwrap_or("from the path, else subject-wide"),
            ),
        };
        lines.push(line("signals.scim.paths", scim_line));
        lines
    }

    fn store_lines(&self) -> Vec<Line> {
        vec![
            line("store", format!("{:?}", self.store)),
            line(
                "log",
                format!("{:?} at {}", self.log.format, self.log.level),
            ),
        ]
    }

    /// Each webhook by its endpoint; the secret only by the name of its env var.
    fn events_lines(&self) -> Vec<Line> {
        let describe = |webhook: &WebhookConfig| {
            let actions = webhook
                .actions
                .as_ref()
                .map_or("every action".into(), |a| a.join(", "));
            format!(
                "{} (secret from env {}, value not shown; {actions}; timeout {} ms; retried for {} s)",
                webhook.endpoint(),
                webhook.secret_env,
                webhook.timeout.as_millis(),
                webhook.retry_for.as_secs(),
            )
        };
        match self.events.webhooks.as_slice() {
            [] => vec![line("events.webhooks", "none")],
            webhooks => webhooks
                .iter()
                .map(|webhook| line(&webhook.key_name, describe(webhook)))
                .collect(),
        }
    }
}

fn line(key: &str, value: impl ToString) -> Line {
    (key.to_string(), value.to_string())
}

/// An identity provider's entry: who, which keys, what its signals may do; never a secret.
fn describe_issuer(issuer: &IssuerConfig) -> String {
    let reach = match &issuer.workspace {
        Some(workspace) => format!("workspace {workspace} only"),
        None => "subject-wide".into(),
    };
    let push = issuer
        .push_authorization_env
        .as_ref()
        .map_or("push authorization not required".to_string(), |var| {
            format!("push authorization from env {var} (value not shown)")
        });
    format!(
        "{} (aud {:?}): {}; {reach}; workspace logout {}; {push}",
        issuer.issuer,
        issuer.audience,
        describe(&issuer.key),
        if issuer.allow_workspace_logout {
            "allowed"
        } else {
            "refused"
        },
    )
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
            let every = remote.refresh.as_secs();
            format!(
                "JWKS {} every {every}s (oct keys: {})",
                remote.url, remote.allow_hmac
            )
        }
    };
    let kid = key.kid.as_deref().map(|kid| format!(", kid {kid}"));
    let alg = key.algorithm.map(|alg| format!(", only {alg:?}"));
    format!(
        "{source}{}{}",
        kid.unwrap_or_default(),
        alg.unwrap_or_default()
    )
}
