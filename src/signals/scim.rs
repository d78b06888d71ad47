//! SCIM deprovisioning, seen on its way to the product: requests to the `[signals.scim]`
//! paths are forwarded without the token check (the product checks its own SCIM
//! credentials); when the product answers 2xx to a deactivation, the user's cutoff moves
//! to now before the answer goes back, or the identity provider gets 503 and retries.
//!
//! Request and response bodies are read up to 1 MiB: a larger request is 413 and not
//! forwarded; a larger response streams through unread. Every 2xx answer that names a
//! resource's `id` and its `subject_attribute` is remembered in the store, so a later
//! `DELETE` (which carries neither) still knows its user.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use moka::sync::Cache;
use serde_json::Value;

use super::commit::{self, Accepted, Outcome, Sender, Target};
use super::deactivation::{attribute, is_deactivation};
use super::metrics::SignalMetrics;
use crate::auth::folded_address;
use crate::config::{ScimAttribute, ScimConfig, ScimMatch};
use crate::state::AppState;
use crate::store::{Action, Category, ScimUser, StoreError};
use crate::web::{self, Body, BoxError, GatewayError};

/// SCIM bodies are read up to this size (SPEC section 13).
const MAX_SCIM_BYTES: usize = 1024 * 1024;
/// Mappings already in the store, so an unchanged answer writes nothing.
const KNOWN_MAPPINGS: u64 = 100_000;

/// The observer of the product's SCIM endpoints.
pub(super) struct Observer {
    config: ScimConfig,
    /// `(workspace, id) -> user` as last written to the store.
    known: Cache<(Option<String>, String), String>,
}

/// A SCIM request on its way to the product: what the answer is checked against.
#[derive(Debug)]
pub struct ScimExchange {
    route: ScimMatch,
    /// The template's `{workspace}`, else `signals.scim.workspace`; `None`: subject-wide.
    workspace: Option<String>,
    method: Method,
    path: String,
    /// The request body, when it is JSON.
    request: Option<Value>,
    deactivation: bool,
    sender: Sender,
}

// === impl Observer ===

impl Observer {
    pub(super) fn new(config: &ScimConfig) -> Self {
        Self {
            config: config.clone(),
            known: Cache::new(KNOWN_MAPPINGS),
        }
    }

    /// Whether `path` is one of the product's SCIM resources or collections.
    pub(super) fn route(&self, path: &str) -> Option<ScimMatch> {
        self.config.matches(path)
    }

    /// Reads the request body (413 past 1 MiB, and nothing is forwarded) and notes
    /// whether it deactivates the resource.
    pub(super) async fn request(
        &self,
        req: Request<Incoming>,
        route: ScimMatch,
        sender: Sender,
    ) -> Result<(Request<Full<Bytes>>, ScimExchange), GatewayError> {
        let (parts, body) = req.into_parts();
        let bytes = web::read_limited(body, MAX_SCIM_BYTES).await?;
        // Parsed whatever the Content-Type says (scim+json, json or none): a deactivation
        // the product accepts must not slip by on a media type.
        let request = serde_json::from_slice::<Value>(&bytes).ok();
        let exchange = ScimExchange {
            workspace: route
                .workspace
                .clone()
                .or_else(|| self.config.workspace.clone()),
            route,
            deactivation: is_deactivation(&parts.method, request.as_ref()),
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            request,
            sender,
        };
        Ok((Request::from_parts(parts, Full::new(bytes)), exchange))
    }

    /// The product's answer: remembered, acted on when it accepts a deactivation, and
    /// passed back (or 503 when the cutoff cannot be committed).
    pub(super) async fn response(
        &self,
        state: &AppState,
        metrics: &SignalMetrics,
        exchange: ScimExchange,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            let body = body.map_err(Into::into).boxed_unsync();
            return Ok(Response::from_parts(parts, body));
        }
        let (body, bytes) = read_up_to(body, MAX_SCIM_BYTES).await;
        let answer = bytes.and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        self.remember(state, &exchange, answer.as_ref()).await;
        if exchange.deactivation {
            let status = parts.status.as_u16();
            self.deprovision(state, metrics, &exchange, answer.as_ref(), status)
                .await
                .map_err(GatewayError::StoreUnavailable)?;
        }
        Ok(Response::from_parts(parts, body))
    }

    /// Stores the users the answer names (a resource, or a list response's `Resources`)
    /// that the store does not hold yet. A failure is logged: the answer still goes back.
    async fn remember(&self, state: &AppState, exchange: &ScimExchange, answer: Option<&Value>) {
        if self.config.subject_attribute == ScimAttribute::Id {
            return;
        }
        let fresh: Vec<ScimUser> = resources(answer)
            .into_iter()
            .filter_map(|resource| {
                let id = member(Some(resource), ScimAttribute::Id)?;
                let user = member(Some(resource), self.config.subject_attribute)?;
                let known = self.known.get(&(exchange.workspace.clone(), id.clone()));
                (known.as_ref() != Some(&user)).then(|| ScimUser {
                    workspace: exchange.workspace.clone(),
                    id,
                    user,
                })
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        match state.store.remember_scim_users(fresh.clone()).await {
            Ok(()) => fresh.into_iter().for_each(|mapping| {
                self.known
                    .insert((mapping.workspace, mapping.id), mapping.user)
            }),
            Err(error) => tracing::warn!(%error, "cannot remember SCIM users for a later DELETE"),
        }
    }

    /// Moves the deactivated user's cutoff to now (no session preserved).
    async fn deprovision(
        &self,
        state: &AppState,
        metrics: &SignalMetrics,
        exchange: &ScimExchange,
        answer: Option<&Value>,
        status: u16,
    ) -> Result<(), StoreError> {
        let Some(user) = self.user(state, exchange, answer).await? else {
            metrics.scim_unknown_user();
            tracing::warn!(
                method = %exchange.method,
                path = exchange.path,
                "SCIM deactivation of a user the gateway cannot name: nothing revoked"
            );
            return Ok(());
        };
        let accepted = exchange.deprovisioning(user, status);
        if let Outcome::Committed = commit::commit(state, accepted, &exchange.sender).await? {
            metrics.accepted(SignalMetrics::SCIM);
        }
        Ok(())
    }

    /// The resource's `subject_attribute`: the path's `{id}` when that is the attribute;
    /// else from the answer, the request body, or what was remembered of that `{id}`.
    async fn user(
        &self,
        state: &AppState,
        exchange: &ScimExchange,
        answer: Option<&Value>,
    ) -> Result<Option<String>, StoreError> {
        let attribute = self.config.subject_attribute;
        if attribute == ScimAttribute::Id {
            let id = exchange.route.id.as_deref().map(fold);
            return Ok(id.or_else(|| member(answer, attribute)));
        }
        let named =
            member(answer, attribute).or_else(|| member(exchange.request.as_ref(), attribute));
        if named.is_some() {
            return Ok(named);
        }
        let Some(id) = &exchange.route.id else {
            return Ok(None);
        };
        if let Some(user) = self.known.get(&(exchange.workspace.clone(), id.clone())) {
            return Ok(Some(user));
        }
        state
            .store
            .scim_user(exchange.workspace.as_deref(), id)
            .await
    }
}

// === impl ScimExchange ===

impl ScimExchange {
    /// The deprovisioning of `user` after the product answered `status`: no session kept.
    fn deprovisioning(&self, user: String, status: u16) -> Accepted {
        Accepted {
            action: Action::ScimDeprovision,
            actor: "scim".into(),
            actor_session: format!("scim:{}", self.route.id.as_deref().unwrap_or("")),
            once: None,
            event: None,
            reason: Some(format!(
                "SCIM {} {} answered {status}",
                self.method, self.path
            )),
            category: Some(Category::PersonnelChange),
            target: Target::User {
                workspace: self.workspace.clone(),
                user,
            },
        }
    }
}

/// The resources an answer names: a list response's `Resources`, else the answer itself.
fn resources(answer: Option<&Value>) -> Vec<&Value> {
    answer
        .and_then(Value::as_object)
        .and_then(|list| attribute(list, "Resources"))
        .and_then(Value::as_array)
        .map_or_else(
            || answer.into_iter().collect(),
            |list| list.iter().collect(),
        )
}

/// A non-empty string attribute of a SCIM resource, an address in lower case.
fn member(resource: Option<&Value>, name: ScimAttribute) -> Option<String> {
    let resource = resource?.as_object()?;
    let value = attribute(resource, name.as_str())?.as_str()?;
    (!value.is_empty()).then(|| fold(value))
}

/// Addresses are compared without regard to case, so they are kept folded.
fn fold(user: &str) -> String {
    folded_address(user).unwrap_or_else(|| user.to_string())
}

/// The body whole when it is at most `limit` bytes; else (or when it fails midway) a body
/// that replays what was read and passes the rest through, and no bytes.
async fn read_up_to(mut body: Incoming, limit: usize) -> (Body, Option<Bytes>) {
    let mut frames = Vec::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let failed = futures_util::stream::iter([Err(BoxError::from(error))]);
                return (replay(frames, failed), None);
            }
        };
        size += frame.data_ref().map_or(0, Bytes::len);
        frames.push(frame);
        if size > limit {
            let rest = BodyStream::new(body).map(|frame| frame.map_err(BoxError::from));
            return (replay(frames, rest), None);
        }
    }
    let mut bytes = BytesMut::with_capacity(size);
    for frame in &frames {
        if let Some(data) = frame.data_ref() {
            bytes.extend_from_slice(data);
        }
    }
    let bytes = bytes.freeze();
    (web::full(bytes.clone()), Some(bytes))
}

fn replay(
    frames: Vec<Frame<Bytes>>,
    rest: impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static,
) -> Body {
    let read = futures_util::stream::iter(frames.into_iter().map(Ok));
    StreamBody::new(read.chain(rest)).boxed_unsync()
}
