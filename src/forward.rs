//! The upstream side: `prepare` rewrites a request for the product (sync, no I/O), `send`
//! forwards it over a pooled keep-alive client and streams the answer back.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::token::{Claims, TokenSource};

/// Identity headers set from the verified token; a client's own copies are always removed.
pub const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
pub const X_AUTH_WORKSPACE: HeaderName = HeaderName::from_static("x-auth-workspace");
pub const X_AUTH_SESSION: HeaderName = HeaderName::from_static("x-auth-session");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

mod to_origin;

use to_origin::ToOrigin;

/// The product behind the gateway.
pub struct Upstream {
    client: Client<ToOrigin, Incoming>,
    config: UpstreamConfig,
}

/// The upstream's TLS trust could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("upstream.ca_file: {0}")]
pub struct UpstreamSetupError(#[from] crate::tls::RootsError);

/// What `prepare` needs to know about the request beyond the request itself.
pub struct Forwarding<'a> {
    pub identity: Option<&'a Claims>,
    /// Where the verified token came from, for `upstream.forward_token = false`.
    pub token_source: Option<TokenSource>,
    pub cookie_name: Option<&'a str>,
    /// The address this connection came from: appended to `X-Forwarded-For`.
    pub peer: IpAddr,
    pub tls: bool,
    /// The client's `Upgrade` header for a WebSocket handshake, kept through the hop-by-hop removal.
    pub upgrade: Option<HeaderValue>,
}

// === impl Upstream ===

impl Upstream {
    /// A pooled keep-alive client for `upstream.url`: HTTP/1.1, or HTTP/2 when an `https`
    /// upstream offers it by ALPN.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamSetupError> {
        let https = config.origin.scheme_str() == Some("https");
        let roots = crate::tls::client_roots(config.ca_file.as_deref(), https)?;
        let connector = ToOrigin::new(
            crate::tls::https_connector(roots, config.connect_timeout),
            config.origin.clone(),
        );
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self { client, config })
    }

    /// Rewrites `req` for the upstream: target URI, hop-by-hop headers, X-Forwarded-*,
    /// identity headers and (optionally) the token.
    pub fn prepare<B>(&self, req: &mut Request<B>, fwd: &Forwarding<'_>) {
        // HTTP/2 clients send the host as :authority; the upstream gets it as Host.
        let host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        *req.uri_mut() = self.target(req.uri(), host.as_ref());
        // The client may speak h2 while the upstream speaks HTTP/1.1; the pool picks.
        *req.version_mut() = http::Version::HTTP_11;
        let headers = req.headers_mut();
        remove_hop_by_hop(headers);
        if let Some(host) = &host {
            headers.insert(header::HOST, host.clone());
        }
        if let Some(upgrade) = &fwd.upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade.clone());
        }
        let forwarded_host = host;
        set_forwarded(headers, fwd, forwarded_host);
        set_identity(headers, fwd.identity);
        if !self.config.forward_token {
            remove_token(headers, fwd.token_source, fwd.cookie_name);
        }
    }

    /// Sends the request; connection failures are 502, no response headers in time is 504.
    /// A 101 keeps its `Connection`/`Upgrade` headers for the tunnel.
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, UpstreamError> {
        let mut response =
            tokio::time::timeout(self.config.response_timeout, self.client.request(req))
                .await
                .map_err(|_| UpstreamError::Timeout)?
                .map_err(UpstreamError::from_client)?;
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            remove_hop_by_hop(response.headers_mut());
        }
        Ok(response)
    }

    /// The upstream URI: upstream scheme, the client's host as authority (the connector
    /// dials the upstream anyway), base path + the request's path and query.
    fn target(&self, original: &Uri, host: Option<&HeaderValue>) -> Uri {
        let mut parts = self.config.origin.clone().into_parts();
        if let Some(authority) = host.and_then(|h| Authority::try_from(h.as_bytes()).ok()) {
            parts.authority = Some(authority);
        }
        parts.path_and_query = Some(
            match (self.config.base_path.as_str(), original.path_and_query()) {
                // The common case shares the request's bytes: no copy.
                ("", Some(path_and_query)) => path_and_query.clone(),
                (base, path_and_query) => {
                    let joined = format!("{base}{}", path_and_query.map_or("/", |pq| pq.as_str()));
                    // Both halves are valid path-and-query text, and so is their concatenation.
                    joined
                        .parse()
                        .expect("base path + request path is a valid path")
                }
            },
        );
        Uri::from_parts(parts).expect("scheme, authority and path are all set")
    }
}

/// Removes the headers that describe one hop only (RFC 9110 section 7.6.1).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named).chain(&proxy) {
        headers.remove(name);
    }
}

fn set_forwarded(headers: &mut HeaderMap, fwd: &Forwarding<'_>, host: Option<HeaderValue>) {
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let chain = match prior.is_empty() {
        true => fwd.peer.to_string(),
        false => format!("{}, {}", prior.join(", "), fwd.peer),
    };
    if let Ok(chain) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    let proto = if fwd.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

fn set_identity(headers: &mut HeaderMap, identity: Option<&Claims>) {
    headers.remove(X_AUTH_SUBJECT);
    headers.remove(X_AUTH_WORKSPACE);
    headers.remove(X_AUTH_SESSION);
    let Some(claims) = identity else { return };
    let identity = claims.identity();
    if let Some(subject) = &identity.subject {
        headers.insert(X_AUTH_SUBJECT, subject.clone());
    }
    headers.insert(X_AUTH_WORKSPACE, identity.workspace.clone());
    headers.insert(X_AUTH_SESSION, identity.session.clone());
}

fn remove_token(headers: &mut HeaderMap, source: Option<TokenSource>, cookie_name: Option<&str>) {
    match (source, cookie_name) {
        (Some(TokenSource::Header), _) => {
            headers.remove(header::AUTHORIZATION);
        }
        (Some(TokenSource::Cookie), Some(name)) => {
            let kept: Vec<String> = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(';'))
                .map(str::trim)
                .filter(|pair| {
                    !pair.is_empty() && pair.split_once('=').is_none_or(|(key, _)| key != name)
                })
                .map(str::to_string)
                .collect();
            headers.remove(header::COOKIE);
            if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
                && !kept.is_empty()
            {
                headers.insert(header::COOKIE, value);
            }
        }
        _ => {}
    }
}
