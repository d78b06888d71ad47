//! Who is calling: the token found in a request (SPEC section 1, step 1), verified against
//! the keys and claim rules (steps 2-4), then held against the session rule (step 5).
//!
//! Shared by everything that answers a token: the proxy path and the admin API.

use std::sync::Arc;

use http::HeaderMap;

use crate::clock;
use crate::sessions::Sessions;

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

/// SPEC section 1 in full: find the token, verify it, then check the session cutoffs.
///
/// A token whose key is unknown may wait for one (shared, rate-limited) refetch of the
/// remote JWKS: an identity provider that just rotated its keys is believed at once.
pub async fn authenticate(
    verifier: &Verifier,
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<Caller, TokenError> {
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
    sessions.check(&claims.session(), now)?;
    Ok(Caller {
        claims,
        source: presented.source,
    })
}
