//! Steps 2-4 of SPEC section 1: the signature, the time rules and the claims.
//!
//! Pure and synchronous: no sockets, no store. Signatures are checked by jsonwebtoken's
//! crypto (aws-lc-rs); parsing and the claim rules are ours, because the reasons, the
//! exact fractional time comparisons and the `crit` rule are part of the contract.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use super::cache::VerifyCache;
use super::jws::{self, Jws};
use super::keys::{KeyRing, KeySet};
use super::metrics::AuthMetrics;
use super::token::{self, Claims, TokenError};
use crate::config::{Config, JwtConfig, SessionsConfig, TimeClaim};

/// Verifies tokens with the configured keys and claim rules.
pub struct Verifier {
    jwt: JwtConfig,
    /// `auth.cookie`: where step 1 looks when there is no bearer header.
    cookie: Option<String>,
    sessions: SessionsConfig,
    keys: Arc<KeyRing>,
    /// Verified tokens, so signature and claim parsing run once per token.
    cache: Option<VerifyCache>,
    metrics: AuthMetrics,
}

/// The claims that name who and which session a token is.
struct Identity<'a> {
    workspace: &'a str,
    subject: Option<&'a str>,
    user: Option<&'a str>,
    jti: Option<&'a str>,
    sid: Option<&'a str>,
}

// === impl Verifier ===

impl Verifier {
    /// A verifier over the key ring, with a verified-token cache of
    /// `jwt.verify_cache_entries` entries.
    pub fn new(config: &Config, keys: Arc<KeyRing>, metrics: AuthMetrics) -> Self {
        let jwt = config.jwt.clone();
        let counters = (metrics.cache_hits.clone(), metrics.cache_misses.clone());
        Self {
            cache: VerifyCache::new(jwt.verify_cache_entries, jwt.leeway_secs, counters),
            sessions: config.sessions.clone(),
            cookie: config.auth.cookie.clone(),
            jwt,
            keys,
            metrics,
        }
    }

    /// Whether a refusal may be cured by fetching the identity provider's keys again: the
    /// token's key is unknown, or its `kid` names no key we have (it fell back to kid-less
    /// keys that did not verify it).
    pub fn may_need_new_keys(&self, token: &str, refused: TokenError) -> bool {
        jws::may_need_new_keys(token, &self.keys.current(), refused)
    }

    /// The key ring (for readiness and the `ready` line).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The auth room's metrics, shared with the key rings of identity-provider signals.
    pub fn metrics(&self) -> &AuthMetrics {
        &self.metrics
    }

    /// `auth.cookie`, the cookie step 1 reads.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Starts the background refresh of every remote JWKS; they stop at `shutdown`.
    pub fn spawn_refreshers(&self, shutdown: tokio_util::sync::CancellationToken) {
        self.keys.spawn_refreshers(self.metrics.clone(), shutdown);
    }

    /// One shared, rate-limited refetch of the remote keys for a token whose key is
    /// unknown; `seen` is the key-set generation it was verified with. Returns whether
    /// verifying again is worth it.
    pub async fn refetch_for_unknown_key(&self, seen: u64) -> bool {
        self.keys.refetch_for_unknown_key(seen, &self.metrics).await
    }

    /// Steps 1-4 of the acceptance rule at time `now`; the session step is `Sessions::check`.
    ///
    /// A token seen before skips signature and claim parsing, but the time rules (step 3)
    /// run on every call, and the session step is the caller's, on every request.
    pub fn verify(&self, token: &str, now: f64) -> Result<Arc<Claims>, TokenError> {
        if token.len() > self.jwt.max_token_bytes {
            return Err(TokenError::Malformed);
        }
        let keys = self.keys.current();
        let cache = self.cache.as_ref();
        if let Some(claims) = cache.and_then(|c| c.get(token, keys.generation())) {
            self.check_time_rules(claims.expires_at, claims.not_before, claims.issued_at, now)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token, &keys, now)?);
        if let Some(cache) = cache {
            cache.insert(token, claims.clone(), keys.generation(), now);
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, keys: &KeySet, now: f64) -> Result<Claims, TokenError> {
        let parts = Jws::parse(token, self.jwt.max_token_bytes)?;
        let alg = parts.algorithm(&self.jwt.algorithms)?;
        parts.check_signature(alg, keys)?;
        let claims = &parts.payload;
        let (expires_at, not_before, issued_at) = self.read_times(claims, now)?;
        self.check_issuer_and_audience(claims)?;
        let identity = self.identity(claims)?;
        Ok(Claims {
            workspace: identity.workspace.to_string(),
            subject: identity.subject.map(str::to_string),
            user: identity.user.map(str::to_string),
            user_folded: identity.user.and_then(folded_address),
            sid: identity.sid.map(str::to_string),
            // Computed once here and cached with the claims: a hit hashes nothing with SHA-256.
            session_id: token::session_id(token, identity.jti),
            session_time: self.session_time(claims)?,
            expires_at,
            issued_at,
            not_before,
            roles: self.roles(claims),
            // Moved, not cloned, once the borrows above are done: the clone was about 4 %
            // of a cache-off HS256 request's user-space CPU (perf, 2026-12-03).
            payload: parts.payload,
            identity: OnceLock::new(),
        })
    }

    /// The workspace (required), `sub`, `jti` and the user claim. The first three become
    /// identity headers upstream: a control character could split them.
    fn identity<'a>(&self, claims: &'a Map<String, Value>) -> Result<Identity<'a>, TokenError> {
        let workspace = match self.jwt.workspace_claim.lookup(claims) {
            None => return Err(TokenError::MissingClaim),
            Some(Value::String(ws)) if !ws.is_empty() && header_safe(ws) => ws.as_str(),
            Some(_) => return Err(TokenError::Malformed),
        };
        let subject = optional_string(claims.get("sub"))?;
        let jti = optional_string(claims.get("jti"))?;
        if !subject.into_iter().chain(jti).all(header_safe) {
            return Err(TokenError::Malformed);
        }
        let user = optional_string(self.sessions.user_claim.lookup(claims))?;
        let sid = optional_string(claims.get("sid"))?;
        Ok(Identity {
            workspace,
            subject,
            user,
            jti,
            sid,
        })
    }

    /// Step 3 while reading the claims: a missing `iat` only matters if `exp` passed.
    fn read_times(
        &self,
        claims: &Map<String, Value>,
        now: f64,
    ) -> Result<(f64, Option<f64>, f64), TokenError> {
        let exp = required_number(claims, "exp")?;
        self.check_expiry(exp, now)?;
        let nbf = optional_number(claims, "nbf")?;
        self.check_not_before(nbf, now)?;
        let iat = required_number(claims, "iat")?;
        self.check_issued_at(iat, now)?;
        Ok((exp, nbf, iat))
    }

    /// Step 3 on known values: runs on every request, cached or not.
    fn check_time_rules(
        &self,
        exp: f64,
        nbf: Option<f64>,
        iat: f64,
        now: f64,
    ) -> Result<(), TokenError> {
        self.check_expiry(exp, now)?;
        self.check_not_before(nbf, now)?;
        self.check_issued_at(iat, now)
    }

    fn check_expiry(&self, exp: f64, now: f64) -> Result<(), TokenError> {
        if now < exp + self.jwt.leeway_secs {
            Ok(())
        } else {
            Err(TokenError::Expired)
        }
    }

    fn check_not_before(&self, nbf: Option<f64>, now: f64) -> Result<(), TokenError> {
        match nbf {
            Some(nbf) if nbf > now + self.jwt.leeway_secs => Err(TokenError::NotYetValid),
            _ => Ok(()),
        }
    }

    /// The cutoff logic trusts `iat`, so a token from the future is refused.
    fn check_issued_at(&self, iat: f64, now: f64) -> Result<(), TokenError> {
        if iat <= now + self.jwt.leeway_secs {
            Ok(())
        } else {
            Err(TokenError::IssuedInFuture)
        }
    }

    fn check_issuer_and_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(issuer) = &self.jwt.issuer {
            match claims.get("iss") {
                Some(Value::String(iss)) if iss == issuer => {}
                None | Some(Value::String(_)) => return Err(TokenError::WrongIssuer),
                Some(_) => return Err(TokenError::Malformed),
            }
        }
        if self.jwt.audience.is_empty() {
            return Ok(());
        }
        let accepted = |aud: &str| self.jwt.audience.iter().any(|a| a == aud);
        let found = match claims.get("aud") {
            None => false,
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(list)) => {
                let names: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
                names
                    .ok_or(TokenError::Malformed)?
                    .into_iter()
                    .any(accepted)
            }
            Some(_) => return Err(TokenError::Malformed),
        };
        if found {
            Ok(())
        } else {
            Err(TokenError::WrongAudience)
        }
    }

    fn session_time(&self, claims: &Map<String, Value>) -> Result<f64, TokenError> {
        let claim = match self.sessions.time_claim {
            TimeClaim::Iat => "iat",
            TimeClaim::AuthTime => "auth_time",
        };
        Ok(required_number(claims, claim)? + self.sessions.iat_backdate_secs)
    }

    /// Roles are only needed by the admin API, so a roles claim of the wrong type means
    /// "no roles" rather than a refused token.
    fn roles(&self, claims: &Map<String, Value>) -> Vec<String> {
        match self.jwt.roles_claim.lookup(claims) {
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn header_safe(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// An e-mail address in lower case, when that differs from `user` (see `Session`).
pub fn folded_address(user: &str) -> Option<String> {
    let folded = user.to_lowercase();
    (user.contains('@') && folded != user).then_some(folded)
}

fn required_number(claims: &Map<String, Value>, name: &str) -> Result<f64, TokenError> {
    optional_number(claims, name)?.ok_or(TokenError::MissingClaim)
}

fn optional_number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(TokenError::Malformed),
    }
}

fn optional_string(value: Option<&Value>) -> Result<Option<&str>, TokenError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_are_folded() {
        assert_eq!(
            folded_address("Bob@Example.com").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(folded_address("bob@example.com"), None);
        assert_eq!(
            folded_address("Bob"),
            None,
            "other names stay case-sensitive"
        );
    }
}
