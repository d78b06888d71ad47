//! `[[events.webhooks]]` (SPEC section 14): where committed audit records are sent.
//!
//! The secrets themselves are read at start by `crate::events` (like `hmac_secret_env`
//! keys), which also checks the action names against the audit actions this build knows.

use std::net::IpAddr;
use std::time::Duration;

use super::raw::{RawEvents, RawWebhook};
use super::validate::{invalid, parse, warning};
use super::{ConfigError, ConfigWarning};

/// `[events]`
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    pub webhooks: Vec<WebhookConfig>,
}

/// One `[[events.webhooks]]` entry.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `events.webhooks[N]`, for messages.
    pub key_name: String,
    /// The endpoint's name in the store: derived from `url`, so reordering the entries
    /// keeps each endpoint's undelivered events.
    pub id: String,
    pub url: http::Uri,
    /// The env var holding the `whsec_...` secret (read at start, never shown).
    pub secret_env: String,
    /// The audit actions sent; `None`: every action.
    pub actions: Option<Vec<String>>,
    /// One attempt (connect, request, answer) may take this long.
    pub timeout: Duration,
    /// An event not delivered this long after it was committed is dropped.
    pub retry_for: Duration,
}

/// `[events]` validated: every entry has a usable URL and an env var for its secret.
pub(super) fn events(
    raw: RawEvents,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<EventsConfig, ConfigError> {
    let mut webhooks: Vec<WebhookConfig> = Vec::new();
    for (index, raw) in raw.webhooks.into_iter().enumerate() {
        let webhook = webhook(index, raw, warnings)?;
        if let Some(first) = webhooks.iter().find(|w| w.url == webhook.url) {
            return Err(invalid(
                &format!("{}.url", webhook.key_name),
                format!("the same URL as {}: one entry per endpoint", first.key_name),
            ));
        }
        webhooks.push(webhook);
    }
    Ok(EventsConfig { webhooks })
}

fn webhook(
    index: usize,
    raw: RawWebhook,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<WebhookConfig, ConfigError> {
    let key_name = format!("events.webhooks[{index}]");
    let at = |field: &str| format!("{key_name}.{field}");
    let text = raw.url.ok_or_else(|| invalid(&at("url"), "is required"))?;
    let url = webhook_url(&at("url"), &text, warnings)?;
    let secret_env = raw
        .secret_env
        .filter(|var| !var.is_empty())
        .ok_or_else(|| {
            invalid(
                &at("secret_env"),
                "is required: the env var holding the whsec_ secret",
            )
        })?;
    if raw.timeout_ms == 0 {
        return Err(invalid(&at("timeout_ms"), "must be at least 1"));
    }
    if raw.actions.as_ref().is_some_and(Vec::is_empty) {
        warnings.push(warning(
            &at("actions"),
            "is empty: this endpoint receives no events (leave it out for every action)",
        ));
    }
    Ok(WebhookConfig {
        id: endpoint_id(&text),
        key_name,
        url,
        secret_env,
        actions: raw.actions,
        timeout: Duration::from_millis(raw.timeout_ms),
        retry_for: Duration::from_secs(raw.retry_for_secs),
    })
}

/// `http://` or `https://` with a host. Plain `http://` beyond this machine is allowed
/// (an internal collector may have no TLS) but said, since the events travel unencrypted.
fn webhook_url(
    key: &str,
    text: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<http::Uri, ConfigError> {
    let url: http::Uri = parse(key, text)?;
    let https = match url.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(invalid(key, "must be an http:// or https:// URL")),
    };
    let Some(host) = url.host() else {
        return Err(invalid(key, "must name a host"));
    };
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid(
            key,
            "must not carry credentials (user:password@): they would not be sent; the signature authenticates each event",
        ));
    }
    if !https && !is_loopback(host) {
        let why = "http:// to a host that is not loopback: events and their signatures travel unencrypted; use https://";
        warnings.push(warning(key, why));
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8` or `::1` (as `http::Uri` writes it, in brackets).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// 16 hex digits of SHA-256 over the URL: short store keys that never show the URL.
fn endpoint_id(url: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, url.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

// === impl WebhookConfig ===

impl WebhookConfig {
    /// The URL without credentials or query (either may carry a secret): what logs,
    /// metrics and `check` show.
    pub fn endpoint(&self) -> String {
        let host = self.url.host().unwrap_or_default();
        let port = self.url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let scheme = self.url.scheme_str().unwrap_or("http");
        format!("{scheme}://{host}{port}{}", self.url.path())
    }

    /// Whether events of `action` go to this endpoint.
    pub fn wants(&self, action: &str) -> bool {
        self.actions
            .as_ref()
            .is_none_or(|actions| actions.iter().any(|a| a == action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::MINIMAL;

    fn with_webhooks(entries: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{MINIMAL}\n{entries}"), &[])
    }

    #[test]
    fn webhooks_get_their_defaults() {
        let config = with_webhooks(
            "[[events.webhooks]]\nurl = \"https://siem.example.com/hooks?k=1\"\nsecret_env = \"HOOK\"",
        )
        .unwrap();
        let [webhook] = config.events.webhooks.as_slice() else {
            panic!("one webhook expected");
        };
        assert_eq!(webhook.timeout, Duration::from_millis(5000));
        assert_eq!(webhook.retry_for, Duration::from_secs(86400));
        assert!(webhook.wants("logout_all") && webhook.wants("anything"));
        assert_eq!(webhook.endpoint(), "https://siem.example.com/hooks");
        assert_eq!(webhook.id.len(), 16);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn invalid_webhooks_name_their_key() {
        let cases = [
            ("secret_env = \"H\"", "events.webhooks[0].url"),
            (
                "url = \"ftp://h/x\"\nsecret_env = \"H\"",
                "events.webhooks[0].url",
            ),
            ("url = \"https://h/x\"", "events.webhooks[0].secret_env"),
            (
                "url = \"https://h/x\"\nsecret_env = \"H\"\ntimeout_ms = 0",
                "events.webhooks[0].timeout_ms",
            ),
            (
                "url = \"https://h/x\"\nsecret_env = \"H\"\nretries = 3",
                "events.webhooks[0]",
            ),
            (
                "url = \"https://u:p@h/x\"\nsecret_env = \"H\"",
                "events.webhooks[0].url",
            ),
        ];
        for (entry, key) in cases {
            let message = with_webhooks(&format!("[[events.webhooks]]\n{entry}"))
                .expect_err(entry)
                .to_string();
            assert!(message.contains(key), "{entry}: {message}");
        }
        let twice = "[[events.webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"A\"\n\
                     [[events.webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"B\"";
        let message = with_webhooks(twice).unwrap_err().to_string();
        assert!(message.starts_with("events.webhooks[1].url"), "{message}");
    }

    #[test]
    fn plain_http_beyond_loopback_is_a_warning() {
        let entries = [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:8/x",
            "http://collector.internal/x",
        ]
        .map(|url| format!("[[events.webhooks]]\nurl = \"{url}\"\nsecret_env = \"H\""));
        let config = with_webhooks(&entries.join("\n")).unwrap();
        let keys: Vec<&str> = config.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["events.webhooks[3].url"]);
        assert_eq!(config.events.webhooks.len(), 4);
    }

    #[test]
    fn actions_filter_what_an_endpoint_receives() {
        let config = with_webhooks(
            "[[events.webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"H\"\nactions = [\"logout_all\"]",
        )
        .unwrap();
        let webhook = &config.events.webhooks[0];
        assert!(webhook.wants("logout_all"));
        assert!(!webhook.wants("user_logout"));
    }
}
