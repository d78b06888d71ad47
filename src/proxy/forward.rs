//! The upstream side: `prepare` rewrites a request for the product (sync, no I/O), `send`
//! forwards it over a pooled keep-alive client and streams the answer back.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;

use crate::auth::{Caller, Claims, TokenSource};
use crate::config::{Config, UpstreamConfig};
use crate::web::{BoxError, ConnInfo, UpstreamError};

/// Identity headers set from the verified token; a client's own copies are always removed.
pub const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
pub const X_AUTH_WORKSPACE: HeaderName = HeaderName::from_static("x-auth-workspace");
pub const X_AUTH_SESSION: HeaderName = HeaderName::from_static("x-auth-session");
/// The time of the workspace's pending scheduled logout (SPEC section 10), set by the
/// gateway alone like the identity headers.
pub const X_AUTH_LOGOUT_AT: HeaderName = HeaderName::from_static("x-auth-logout-at");
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

mod pool;
mod to_origin;

use pool::H1Pool;
use to_origin::ToOrigin;

/// The product behind the gateway.
pub struct Upstream {
    client: Streaming,
    /// For requests the gateway read first (SCIM): their own pool, so the streaming
    /// client's body type stays `Incoming` (no box per request).
    buffered: Client<ToOrigin, Full<Bytes>>,
    config: UpstreamConfig,
    /// `auth.cookie`: removed from forwarded requests when `upstream.forward_token = false`.
    cookie: Option<String>,
    /// `server.trusted_proxies`: their `X-Forwarded-Proto` and `-Host` are kept.
    trusted_proxies: Vec<IpNet>,
}

/// The client of streamed requests (all but SCIM's).
enum Streaming {
    /// Plain http: HTTP/1.1 connections used directly (see `pool`).
    Pool(H1Pool),
    /// https: hyper-util's pool, which negotiates HTTP/2 or HTTP/1.1 by ALPN.
    Legacy(Client<ToOrigin, Incoming>),
}

/// The upstream's TLS trust could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("upstream.ca_file: {0}")]
pub struct UpstreamSetupError(#[from] crate::tls::RootsError);

/// What `prepare` needs to know about the request beyond the request itself.
pub(super) struct Forwarding<'a> {
    /// Who the verified token says the caller is; `None` on public paths.
    pub(super) caller: Option<&'a Caller>,
    pub(super) conn: &'a ConnInfo,
    /// The client's `Upgrade` header for a WebSocket handshake, kept through the hop-by-hop removal.
    pub(super) upgrade: Option<HeaderValue>,
    /// Unix seconds of the caller's workspace's pending scheduled logout.
    pub(super) logout_at: Option<i64>,
}

/// The `X-Forwarded-*` values of one request.
struct Forwarded<'a> {
    /// The address this connection came from: appended to `X-Forwarded-For`.
    peer: IpAddr,
    /// `peer` as text.
    peer_text: &'a HeaderValue,
    /// Whether the peer is a trusted proxy, whose own `-Proto` and `-Host` are kept.
    trusted: bool,
    tls: bool,
    host: Option<HeaderValue>,
}

// === impl Upstream ===

impl Upstream {
    /// A pooled keep-alive client for `upstream.url`: HTTP/1.1, or HTTP/2 when an `https`
    /// upstream offers it by ALPN.
    pub fn new(config: &Config) -> Result<Self, UpstreamSetupError> {
        let upstream = config.upstream.clone();
        let https = upstream.origin.scheme_str() == Some("https");
        let roots = crate::tls::client_roots(upstream.ca_file.as_deref(), https)?;
        let connector = ToOrigin::new(
            crate::tls::https_connector(roots, upstream.connect_timeout),
            upstream.origin.clone(),
        );
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60));
        let client = match https {
            true => Streaming::Legacy(builder.build(connector.clone())),
            false => Streaming::Pool(H1Pool::new(connector.clone(), upstream.origin.clone())),
        };
        Ok(Self {
            client,
            buffered: builder.build(connector),
            config: upstream,
            cookie: config.auth.cookie.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
        })
    }

    /// Rewrites `req` for the upstream: target URI, hop-by-hop headers, X-Forwarded-*,
    /// identity headers and (optionally) the token.
    pub(super) fn prepare<B>(&self, req: &mut Request<B>, fwd: &Forwarding<'_>) {
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
        let peer = fwd.conn.peer.ip().to_canonical();
        let forwarded = Forwarded {
            peer,
            peer_text: &fwd.conn.forwarded_for,
            trusted: self.trusted_proxies.iter().any(|net| net.contains(&peer)),
            tls: fwd.conn.tls,
            host,
        };
        set_forwarded(headers, forwarded);
        set_identity(headers, fwd.caller.map(|c| &*c.claims));
        headers.remove(X_AUTH_LOGOUT_AT);
        if let Some(at) = fwd.logout_at {
            headers.insert(X_AUTH_LOGOUT_AT, HeaderValue::from(at));
        }
        if !self.config.forward_token {
            let source = fwd.caller.map(|c| c.source);
            remove_token(headers, source, self.cookie.as_deref());
        }
    }

    /// Sends the request; connection failures are 502, no response headers in time is 504.
    /// A 101 keeps its `Connection`/`Upgrade` headers for the tunnel.
    pub(super) async fn send(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // The sending future goes straight into the timeout: passed to an `async fn`
        // first, it would take room twice in every request's future (1.7 kB each).
        let timeout = self.config.response_timeout;
        match &self.client {
            Streaming::Pool(pool) => answer(tokio::time::timeout(timeout, pool.send(req)).await),
            Streaming::Legacy(client) => {
                answer(tokio::time::timeout(timeout, client.request(req)).await)
            }
        }
    }

    /// `send` for a request whose body the gateway has read.
    pub(super) async fn send_buffered(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let sent = self.buffered.request(req);
        answer(tokio::time::timeout(self.config.response_timeout, sent).await)
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

/// The upstream's answer, or why there is none: connection failures are 502, no response
/// headers in time is 504.
fn answer<E: Into<BoxError>>(
    answered: Result<Result<Response<Incoming>, E>, tokio::time::error::Elapsed>,
) -> Result<Response<Incoming>, UpstreamError> {
    let mut response = answered
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(UpstreamError::from_client)?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(response.headers_mut());
    }
    Ok(response)
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
    // One pass over the names present rather than a hashed removal per hop-by-hop name:
    // a message carries one of them (`Connection`) or none.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in present.iter().chain(&named) {
        headers.remove(name);
    }
}

/// `X-Forwarded-For` gets the peer appended. `-Proto` and `-Host` describe this hop,
/// unless a trusted proxy already set them (it saw the client's scheme and host).
fn set_forwarded(headers: &mut HeaderMap, fwd: Forwarded<'_>) {
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let chain = match prior.is_empty() {
        true => Some(fwd.peer_text.clone()),
        false => HeaderValue::from_str(&format!("{}, {}", prior.join(", "), fwd.peer)).ok(),
    };
    if let Some(chain) = chain {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if fwd.trusted && headers.contains_key(&X_FORWARDED_PROTO) {
        keep_last(headers, &X_FORWARDED_PROTO);
    } else {
        let proto = if fwd.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if fwd.trusted && headers.contains_key(&X_FORWARDED_HOST) {
        keep_last(headers, &X_FORWARDED_HOST);
    } else {
        match fwd.host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
}

/// One value of `name`: the last, which the nearest (trusted) proxy appended.
fn keep_last(headers: &mut HeaderMap, name: &HeaderName) {
    if let Some(last) = headers.get_all(name).iter().next_back().cloned() {
        headers.insert(name, last);
    }
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
