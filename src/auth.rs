//! Who is calling: the token found in a request (SPEC section 1, step 1), verified against
//! the keys and claim rules (steps 2-4), then held against the session rule (step 5) and
//! the workspace policy (step 6).
//!
//! Shared by everything that answers a token: the proxy path and the admin API.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::clock;
use crate::sessions::{PolicyRefusal, Sessions};

mod cache;
mod jws;
mod keys;
mod metrics;
mod token;
mod verify;

pub use jws::Jws;
pub use keys::{JwksError, KeyError, KeyRing, KeySet, Secret, hmac_secret};
pub use metrics::AuthMetrics;
pub use token::{
    Claims, IdentityHeaders, Presented, TokenError, TokenSource, extract, find_cookie, session_id,
    session_id_prefix,
};
pub use verify::{Verifier, folded_address};

/// A caller whose token passed the whole acceptance rule.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Arc<Claims>,
    pub source: TokenSource,
}

/// Steps 5 and 6 again for a token already verified (a long-lived exchange, a response
/// that took a while): a change may have landed since.
pub fn recheck(
    sessions: &Sessions,
    claims: &Claims,
    client_ip: IpAddr,
    now: f64,
) -> Result<(), Refused> {
    sessions
        .check(&claims.session(), now)
        .map_err(TokenError::from)?;
    sessions.check_policy(&claims.policy_request(client_ip), now)?;
    Ok(())
}

/// Why a request's token does not pass: a token reason, or its workspace's policy (which
/// carries what the challenge names: `max_age`, `acr_values`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
}

/// SPEC section 1 in full: find the token, verify it, then check the session cutoffs and
/// the workspace policy for a request from `client_ip`.
///
/// A token whose key is unknown may wait for one (shared, rate-limited) refetch of the
/// remote JWKS: an identity provider that just rotated its keys is believed at once.
pub async fn authenticate(
    verifier: &Verifier,
    sessions: &Sessions,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Result<Caller, Refused> {
    let presented = extract(headers, verifier.cookie()).ok_or(TokenError::Missing)?;
    let generation = verifier.keys().current().generation();
    let mut now = clock::now();
    let claims = match verifier.verify(presented.token, now) {
        Err(refused)
            if verifier.may_need_new_keys(presented.token, refused)
                && verifier.refetch_for_unknown_key(generation).await =>
        {
            now = clock::now();
            verifier.verify(presented.token, now)
        }
        verified => verified,
    }?;
    recheck(sessions, &claims, client_ip, now)?;
    Ok(Caller {
        claims,
        source: presented.source,
    })
}
