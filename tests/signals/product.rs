//! A product with its own SCIM 2.0 endpoint (`.../Users` and `.../Users/{id}`, under any
//! prefix), behind the gateway; every other path answers like the harness upstream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the product holds and how it answers.
#[derive(Default)]
struct State {
    users: HashMap<String, Value>,
    next_id: u64,
    /// Answer every SCIM change with this status instead (a product that refuses).
    refuse: Option<u16>,
    /// Answer a `PATCH` with 204 and no body (as Entra accepts).
    patch_no_content: bool,
    /// `(method, path, headers)` of every request received.
    received: Vec<(Method, String, HeaderMap)>,
}

/// The running product.
pub struct Product {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Product {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Product {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                let service = service_fn(move |req| answer(req, shared.clone()));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every SCIM change is refused with `status` from now on.
    pub fn refuse(&self, status: u16) {
        self.state.lock().unwrap().refuse = Some(status);
    }

    pub fn patch_answers_no_content(&self) {
        self.state.lock().unwrap().patch_no_content = true;
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    /// The headers of the last request.
    pub fn last_headers(&self) -> HeaderMap {
        let state = self.state.lock().unwrap();
        state.received.last().expect("a request arrived").2.clone()
    }

    /// The user resource `id` as the product holds it.
    pub fn user(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().users.get(id).cloned()
    }
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let mut state = state.lock().unwrap();
    state
        .received
        .push((parts.method.clone(), path.clone(), parts.headers));
    let segments: Vec<&str> = path.split('/').collect();
    let (status, body) = match segments.iter().rposition(|s| *s == "Users") {
        Some(at) if at + 1 == segments.len() => collection(&mut state, &parts.method, &bytes),
        Some(at) if at + 2 == segments.len() => {
            resource(&mut state, &parts.method, segments[at + 1], &bytes)
        }
        _ => (200, Some(json!({"ok": true}))),
    };
    let mut response = Response::new(Full::new(Bytes::from(
        body.map(|b| b.to_string()).unwrap_or_default(),
    )));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/scim+json".parse().unwrap());
    Ok(response)
}

fn collection(state: &mut State, method: &Method, body: &[u8]) -> (u16, Option<Value>) {
    match *method {
        Method::GET => {
            let resources: Vec<Value> = state.users.values().cloned().collect();
            let list = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": resources.len(),
                "Resources": resources,
            });
            (200, Some(list))
        }
        Method::POST => {
            if let Some(status) = state.refuse {
                return (status, Some(error(status)));
            }
            let mut user: Value = serde_json::from_slice(body).unwrap();
            state.next_id += 1;
            let id = format!("2819c223-{}", state.next_id);
            user["id"] = json!(id);
            user.as_object_mut()
                .unwrap()
                .entry("active")
                .or_insert(json!(true));
            state.users.insert(id, user.clone());
            (201, Some(user))
        }
        _ => (405, None),
    }
}

fn resource(state: &mut State, method: &Method, id: &str, body: &[u8]) -> (u16, Option<Value>) {
    if *method != Method::GET
        && let Some(status) = state.refuse
    {
        return (status, Some(error(status)));
    }
    let no_content = state.patch_no_content;
    let Some(user) = state.users.get_mut(id) else {
        return (404, Some(error(404)));
    };
    match *method {
        Method::GET => (200, Some(user.clone())),
        Method::PUT => {
            let mut replaced: Value = serde_json::from_slice(body).unwrap();
            replaced["id"] = json!(id);
            *user = replaced;
            (200, Some(user.clone()))
        }
        Method::PATCH => {
            let patch: Value = serde_json::from_slice(body).unwrap();
            for op in patch["Operations"].as_array().unwrap() {
                let value = &op["value"];
                let active = match (op["path"].as_str(), value) {
                    (Some(_), Value::String(text)) => text.eq_ignore_ascii_case("true"),
                    (Some(_), value) => value.as_bool().unwrap_or(true),
                    (None, value) => value["active"].as_bool().unwrap_or(true),
                };
                user["active"] = json!(active);
            }
            match no_content {
                true => (204, None),
                false => (200, Some(user.clone())),
            }
        }
        Method::DELETE => {
            state.users.remove(id);
            (204, None)
        }
        _ => (405, None),
    }
}

fn error(status: u16) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": "refused by the product",
    })
}
