//! The configured identity providers: each with its own key ring (loaded and refreshed by
//! the same code as `jwt.keys`: remote JWKS, rotation, one refetch for an unknown `kid`),
//! its audience, and the secret its pushes must present.

use std::sync::Arc;

use http::HeaderValue;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::refusal::Refusal;
use crate::auth::{AuthMetrics, Jws, KeyError, KeyRing, Secret};
use crate::config::{IssuerConfig, SIGNAL_ALGORITHMS};

/// Every `[[signals.issuers]]` entry, ready to verify.
pub(super) struct Issuers {
    list: Vec<Issuer>,
    metrics: AuthMetrics,
}

/// One identity provider.
pub(super) struct Issuer {
    pub(super) config: IssuerConfig,
    keys: Arc<KeyRing>,
    /// `push_authorization_env`'s value, read at start.
    push_authorization: Option<Secret>,
}

/// An issuer that cannot be set up; the message names its key.
#[derive(Debug, thiserror::Error)]
pub enum SignalsSetupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{key}: environment variable {var} is not set, empty or not UTF-8")]
    MissingEnv { key: String, var: String },
}

// === impl Issuers ===

impl Issuers {
    /// Loads every issuer's fixed keys and push secret; remote keys load in the background.
    pub(super) fn load(
        configs: &[IssuerConfig],
        metrics: AuthMetrics,
    ) -> Result<Self, SignalsSetupError> {
        let list = configs.iter().map(Issuer::load).collect::<Result<_, _>>()?;
        Ok(Self { list, metrics })
    }

    /// How many issuers there are.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Starts each issuer's JWKS refreshes; they stop at `shutdown`.
    pub(super) fn spawn_refreshers(&self, shutdown: &CancellationToken) {
        for issuer in &self.list {
            issuer
                .keys
                .spawn_refreshers(self.metrics.clone(), shutdown.clone());
        }
    }

    /// The issuer the (not yet verified) `iss` claim names: it picks the keys to verify with.
    pub(super) fn find(&self, payload: &Map<String, Value>) -> Result<&Issuer, Refusal> {
        let iss = match payload.get("iss") {
            None => return Err(Refusal::Missing("iss")),
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(Refusal::ClaimType("iss")),
        };
        self.list
            .iter()
            .find(|issuer| issuer.config.issuer == *iss)
            .ok_or(Refusal::UnknownIssuer)
    }

    /// Checks `jws`'s signature with `issuer`'s keys; 503 until they have loaded (an
    /// issuer's JWKS never holds back the gateway's readiness).
    pub(super) async fn verify(&self, issuer: &Issuer, jws: &Jws<'_>) -> Result<(), Refusal> {
        if !issuer.keys.is_ready() {
            return Err(Refusal::KeysLoading);
        }
        jws.verify(&SIGNAL_ALGORITHMS, &issuer.keys, &self.metrics)
            .await
            .map_err(Refusal::of_signature)
    }
}

// === impl Issuer ===

impl Issuer {
    fn load(config: &IssuerConfig) -> Result<Self, SignalsSetupError> {
        let push_authorization = config
            .push_authorization_env
            .as_ref()
            .map(|var| {
                let value = std::env::var(var).ok().filter(|value| !value.is_empty());
                value
                    .map(|value| Secret::new(value.into_bytes()))
                    .ok_or_else(|| SignalsSetupError::MissingEnv {
                        key: format!("{}.push_authorization_env", config.name),
                        var: var.clone(),
                    })
            })
            .transpose()?;
        Ok(Self {
            config: config.clone(),
            keys: Arc::new(KeyRing::load(std::slice::from_ref(&config.key))?),
            push_authorization,
        })
    }

    /// RFC 8935 section 2.4: when the issuer has a push secret, the `Authorization` header
    /// must equal it (compared in constant time).
    pub(super) fn check_push(&self, authorization: Option<&HeaderValue>) -> Result<(), Refusal> {
        let Some(expected) = &self.push_authorization else {
            return Ok(());
        };
        let given = authorization.map_or(&[][..], HeaderValue::as_bytes);
        aws_lc_rs::constant_time::verify_slices_are_equal(given, expected.expose())
            .map_err(|_| Refusal::PushAuthorization)
    }

    /// `aud` (a string or a list) names one of the issuer's audiences.
    pub(super) fn check_audience(&self, payload: &Map<String, Value>) -> Result<(), Refusal> {
        let accepted = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| self.config.audience.iter().any(|a| a == aud))
        };
        let found = match payload.get("aud") {
            None => false,
            Some(Value::Array(list)) => list.iter().any(accepted),
            Some(aud) => accepted(aud),
        };
        found.then_some(()).ok_or(Refusal::Audience)
    }
}
