//! A configured endpoint made usable at start: its secret read and checked, its action
//! names checked against the audit actions this build knows, its client built.

use bytes::Bytes;

use super::client::{AttemptError, Sender, Signed};
use super::signature::{BadSecret, Signer};
use crate::clock;
use crate::config::{EventsConfig, WebhookConfig};
use crate::store::Action;
use crate::tls::RootsError;

/// One `[[events.webhooks]]` entry, ready to send.
pub struct Webhook {
    pub(super) config: WebhookConfig,
    /// The URL as logs and metrics show it (no credentials, no query).
    pub(super) endpoint: String,
    signer: Signer,
    sender: Sender,
}

/// An entry that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{key}.secret_env: environment variable {var} is not set")]
    MissingSecret { key: String, var: String },
    #[error("{key}.secret_env: the value of {var} must start with whsec_")]
    SecretPrefix { key: String, var: String },
    #[error("{key}.secret_env: the value of {var} must be whsec_ followed by base64")]
    SecretBase64 { key: String, var: String },
    #[error("{key}.actions: unknown action {action:?}; known: {known}")]
    UnknownAction {
        key: String,
        action: String,
        known: String,
    },
    #[error("{key}.url: {source}")]
    Roots { key: String, source: RootsError },
}

/// Every configured webhook, checked; the first unusable one stops the start.
pub fn load(events: &EventsConfig) -> Result<Vec<Webhook>, WebhookError> {
    events.webhooks.iter().map(Webhook::load).collect()
}

// === impl Webhook ===

impl Webhook {
    fn load(config: &WebhookConfig) -> Result<Self, WebhookError> {
        let key = || config.key_name.clone();
        check_actions(config)?;
        let var = config.secret_env.clone();
        let text = std::env::var(&var).map_err(|_| WebhookError::MissingSecret {
            key: key(),
            var: var.clone(),
        })?;
        let (signer, short) = Signer::from_secret(&text).map_err(|bad| match bad {
            BadSecret::Prefix => WebhookError::SecretPrefix { key: key(), var },
            BadSecret::Base64 => WebhookError::SecretBase64 { key: key(), var },
        })?;
        if short {
            tracing::warn!(key = %config.key_name, "webhook secret is shorter than 24 bytes");
        }
        let sender = Sender::new(&config.url, config.timeout)
            .map_err(|source| WebhookError::Roots { key: key(), source })?;
        Ok(Self {
            endpoint: config.endpoint(),
            config: config.clone(),
            signer,
            sender,
        })
    }

    /// One attempt, timestamped and signed now.
    pub(super) async fn send(&self, id: &str, body: &Bytes) -> Result<(), AttemptError> {
        let timestamp = clock::now() as u64;
        let signed = Signed {
            id,
            timestamp,
            signature: self.signer.sign(id, timestamp, body),
        };
        self.sender.post(signed, body.clone()).await
    }
}

/// Every name in `actions` is an audit action: a typo would silently send nothing.
fn check_actions(config: &WebhookConfig) -> Result<(), WebhookError> {
    let unknown = config
        .actions
        .iter()
        .flatten()
        .find(|name| Action::parse(name).is_none());
    match unknown {
        None => Ok(()),
        Some(action) => Err(WebhookError::UnknownAction {
            key: config.key_name.clone(),
            action: action.clone(),
            known: Action::ALL.map(Action::as_str).join(", "),
        }),
    }
}
