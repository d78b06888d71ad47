//! The HTTP vocabulary every room shares: the response body type, the one place an error
//! becomes a response, the path rule, and who the client is.

mod body;
mod client_ip;
mod error;
mod paths;

pub use body::{Body, BoxError, empty, full, json};
pub use client_ip::{ConnInfo, client_ip};
pub use error::{Forbidden, GatewayError, LoginRedirect, UpstreamError};
pub use paths::{BadPath, PublicPaths, check_path, is_under};
