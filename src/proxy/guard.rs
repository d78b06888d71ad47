//! Long-lived responses and tunnels are sessions too: they end when their token would no
//! longer pass (a cutoff moved, the token expired) or when the gateway shuts down.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::auth::{self, Claims};
use crate::clock;
use crate::state::AppState;
use crate::web::BoxError;

/// Why a long-lived exchange was ended by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Ended {
    #[error("the session was logged out")]
    Revoked,
    #[error("the token expired")]
    Expired,
    #[error("the gateway is shutting down")]
    Shutdown,
}

/// A boxed [`session_ended`] future.
pub(super) type EndSignal = Pin<Box<dyn Future<Output = Ended> + Send>>;

pin_project! {
    /// A response body that ends with an error (closing the stream) once its session ends.
    ///
    /// The session is only watched once the upstream keeps the client waiting, so a short
    /// response never allocates a watcher or arms a timer.
    pub(super) struct Guarded<B> {
        #[pin]
        inner: B,
        session: Watched,
        end: Option<EndSignal>,
    }
}

/// The session a long-lived exchange belongs to, and where its request came from (the
/// policy's allow-list looks at it).
#[derive(Clone)]
pub(super) struct Watched {
    pub(super) state: Arc<AppState>,
    pub(super) claims: Arc<Claims>,
    pub(super) client_ip: IpAddr,
}

/// Resolves when the claims stop passing the session rule or the workspace policy, or
/// expire. Shutdown is not an end
/// here: in-flight responses get the grace period to finish.
///
/// The session was checked when the request came in, but a logout may have landed while
/// the upstream was answering, so it is checked again first.
pub(super) fn session_ended(watched: Watched) -> EndSignal {
    let Watched {
        state,
        claims,
        client_ip,
    } = watched;
    let mut changes = state.sessions.subscribe();
    let leeway = state.config.jwt.leeway_secs;
    Box::pin(async move {
        loop {
            if auth::recheck(&state.sessions, &claims, client_ip, clock::now()).is_err() {
                return Ended::Revoked;
            }
            // The answer can change at `exp` (a preserved session ends there) and at
            // `exp + leeway` (the token itself is refused from then on).
            let now = clock::now();
            let next = if now < claims.expires_at {
                claims.expires_at
            } else {
                claims.expires_at + leeway
            };
            let wake = Instant::now() + Duration::from_secs_f64((next - now).clamp(0.0, 1e9));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {
                    if clock::now() >= claims.expires_at + leeway {
                        return Ended::Expired;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The state is gone: only possible when the process is ending.
                        return std::future::pending().await;
                    }
                }
            }
        }
    })
}

// === impl Guarded ===

impl<B> Guarded<B> {
    /// Wraps `inner` so it stops when the watched session ends.
    pub(super) fn new(inner: B, session: Watched) -> Self {
        Self {
            inner,
            session,
            end: None,
        }
    }
}

impl<B> HttpBody for Guarded<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let session = this.session;
        let end = this
            .end
            .get_or_insert_with(|| session_ended(session.clone()));
        match end.as_mut().poll(cx) {
            Poll::Ready(ended) => {
                tracing::info!(%ended, "closing a streaming response");
                Poll::Ready(Some(Err(Box::new(ended))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
