//! A remote JWKS (`jwks_url`): fetched over http(s), parsed, and kept until a good
//! replacement arrives.

use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{KeyError, VerifyKey, parse_jwks};
use crate::config::RemoteJwksConfig;

/// A JWKS document is a few KiB; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// A fetch that takes longer is abandoned (the last good keys stay).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One `jwks_url` entry and the keys it last served.
pub(super) struct RemoteJwks {
    /// `jwt.keys[N]`, for logs.
    pub(super) name: String,
    config: RemoteJwksConfig,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: ArcSwapOption<Vec<VerifyKey>>,
    /// Serialises fetches, so a slow older answer never overwrites a newer one; holds the
    /// SHA-256 of the document in force, so an unchanged answer changes nothing.
    in_force: tokio::sync::Mutex<Option<[u8; 32]>>,
}

/// A good answer from the identity provider.
pub(super) struct Fetched {
    pub(super) key_count: usize,
    /// `Cache-Control: max-age`, when the provider sent one.
    pub(super) max_age: Option<Duration>,
    /// Whether the document differs from the one in force.
    pub(super) changed: bool,
}

/// A parsed answer, before it is compared with the one in force.
struct Document {
    keys: Vec<VerifyKey>,
    digest: [u8; 32],
    max_age: Option<Duration>,
}

/// Why a fetch did not replace the keys.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("request failed: {0}")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("body unreadable or larger than {MAX_JWKS_BYTES} bytes")]
    Body,
    #[error("{0}")]
    Document(String),
}

// === impl RemoteJwks ===

impl RemoteJwks {
    pub(super) fn new(name: &str, config: &RemoteJwksConfig) -> Result<Self, KeyError> {
        let https = config.url.scheme_str() == Some("https");
        let roots =
            crate::tls::client_roots(config.ca_file.as_deref(), https).map_err(|source| {
                KeyError::Roots {
                    key: name.to_string(),
                    source,
                }
            })?;
        let connector = crate::tls::https_connector(roots, FETCH_TIMEOUT);
        Ok(Self {
            name: name.to_string(),
            config: config.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: ArcSwapOption::empty(),
            in_force: tokio::sync::Mutex::new(None),
        })
    }

    /// The keys of the last good answer; `None` until the first one.
    pub(super) fn keys(&self) -> Option<std::sync::Arc<Vec<VerifyKey>>> {
        self.keys.load_full()
    }

    /// How long to wait before the next scheduled refresh.
    pub(super) fn refresh_after(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .map_or(self.config.refresh, |age| age.min(self.config.refresh))
            .max(Duration::from_secs(1))
    }

    /// The configured refresh interval.
    pub(super) fn refresh_interval(&self) -> Duration {
        self.config.refresh
    }

    /// Fetches and parses the document; a good, different answer replaces the keys.
    pub(super) async fn refresh(&self) -> Result<Fetched, JwksError> {
        let mut in_force = self.in_force.lock().await;
        let document = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| JwksError::Timeout)??;
        let changed = *in_force != Some(document.digest);
        let key_count = document.keys.len();
        if changed {
            self.keys.store(Some(std::sync::Arc::new(document.keys)));
            *in_force = Some(document.digest);
        }
        Ok(Fetched {
            key_count,
            max_age: document.max_age,
            changed,
        })
    }

    async fn fetch(&self) -> Result<Document, JwksError> {
        let request = http::Request::get(self.config.url.clone())
            .header(ACCEPT, "application/json")
            .body(Empty::new())
            .expect("a GET to a validated URL is a valid request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(JwksError::Request)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|_| JwksError::Body)?;
        let body = body.to_bytes();
        let keys = parse_jwks(&body, self.config.allow_hmac).map_err(JwksError::Document)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let digest = digest
            .as_ref()
            .try_into()
            .expect("SHA-256 digests are 32 bytes");
        Ok(Document {
            keys,
            digest,
            max_age,
        })
    }
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .filter_map(|directive| directive.trim().split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("max-age"))
        .and_then(|(_, secs)| secs.trim_matches('"').parse().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_age_among_other_directives() {
        assert_eq!(
            max_age("public, max-age=60, must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("Max-Age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
