//! The HTTP vocabulary the rooms that answer requests share: the response body type, the
//! one place an error becomes a response, and who the client is.

mod body;
mod client_ip;
mod error;

pub use body::{Body, BoxError, empty, full, json, read_limited};
pub use client_ip::{ConnInfo, client_ip};
pub use error::{
    Forbidden, GatewayError, LoginRedirect, SignalCode, SignalProtocol, SignalRefusal,
    UpstreamError,
};
