//! OIDC Back-Channel Logout 1.0 (Keycloak, Auth0, authentik, PingOne): a form-posted
//! `logout_token` whose `sid` ends one identity-provider session, or whose `sub` (without
//! a `sid`) ends all of the user's.

use http::Request;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::Signals;
use super::claims::{self, Clock, MAX_SIGNAL_BYTES};
use super::commit::{self, Accepted, Outcome, Sender, Target};
use super::issuers::Issuer;
use super::refusal::{Failure, Refusal};
use crate::auth::Jws;
use crate::state::AppState;
use crate::store::Action;

/// The event a logout token carries (section 2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The `typ` values section 2.4 allows (or none).
const TYPES: &[&str] = &["logout+jwt", "jwt"];

/// What a valid logout token says.
struct LogoutToken<'a> {
    jti: &'a str,
    exp: f64,
    named: Named<'a>,
}

/// Whom a logout token logs out.
enum Named<'a> {
    /// One session (`sid`), of the user `sub` when it says.
    Session { sid: &'a str, sub: Option<&'a str> },
    /// Every session of the user `sub`.
    User(&'a str),
}

/// Checks every rule of section 2.6, then commits the logout.
pub(super) async fn receive(
    signals: &Signals,
    state: &AppState,
    req: Request<Incoming>,
    sender: &Sender,
) -> Result<Outcome, Failure> {
    claims::content_type(req.headers(), "application/x-www-form-urlencoded")?;
    let body = claims::read(req.into_body()).await?;
    let token = logout_token(&body)?;
    let jws = Jws::parse(&token, MAX_SIGNAL_BYTES).map_err(|_| Refusal::Malformed)?;
    claims::check_type(&jws.header, TYPES, false)?;
    let issuer = signals.issuers.find(&jws.payload)?;
    signals.issuers.verify(issuer, &jws).await?;
    let clock = signals.clock(state);
    let logout = LogoutToken::read(&jws.payload, issuer, clock)?;
    // Past `exp` (and the leeway) a replay is refused as expired anyway.
    let forget_after = (logout.exp + clock.leeway).ceil() as i64;
    let accepted = Accepted {
        target: logout.target(issuer),
        ..Accepted::signed(
            Action::BackchannelLogout,
            &issuer.config.issuer,
            logout.jti,
            forget_after,
        )
    };
    Ok(commit::commit(state, accepted, sender).await?)
}

/// The one `logout_token` of the form body.
fn logout_token(body: &[u8]) -> Result<String, Refusal> {
    let mut tokens = form_urlencoded::parse(body)
        .filter(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    match (tokens.next(), tokens.next()) {
        (Some(token), None) if !token.is_empty() => Ok(token),
        _ => Err(Refusal::Form),
    }
}

// === impl LogoutToken ===

impl<'a> LogoutToken<'a> {
    /// Section 2.6, after the signature: `aud`, `iat`, `exp`, `jti`, the event, `sub` or
    /// `sid`, and no `nonce` (an ID token is never a logout token).
    fn read(
        claims: &'a Map<String, Value>,
        issuer: &Issuer,
        clock: Clock,
    ) -> Result<Self, Refusal> {
        issuer.check_audience(claims)?;
        claims::issued_at(claims, clock)?;
        let exp = claims::required_number(claims, "exp")?;
        if clock.now >= exp + clock.leeway {
            return Err(Refusal::Expired);
        }
        let jti = claims::required_string(claims, "jti")?;
        let events = claims::events(claims, "the back-channel logout event")?;
        if !events.get(EVENT).is_some_and(Value::is_object) {
            return Err(Refusal::Events("the back-channel logout event"));
        }
        let named = match (
            claims::string(claims, "sid")?,
            claims::string(claims, "sub")?,
        ) {
            (Some(sid), sub) => Named::Session { sid, sub },
            (None, Some(sub)) => Named::User(sub),
            (None, None) => return Err(Refusal::Missing("sub or sid")),
        };
        if claims.contains_key("nonce") {
            return Err(Refusal::Forbidden("nonce"));
        }
        Ok(Self { jti, exp, named })
    }

    /// A `sid` names one session; a `sub` alone names the user, in the issuer's workspace
    /// or everywhere.
    fn target(&self, issuer: &Issuer) -> Target {
        let workspace = issuer.config.workspace.clone();
        match self.named {
            Named::Session { sid, sub } => Target::Session {
                workspace,
                sid: sid.to_string(),
                user: sub.map(str::to_string),
            },
            Named::User(user) => Target::User {
                workspace,
                user: user.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_carries_exactly_one_logout_token() {
        assert_eq!(logout_token(b"logout_token=a.b.c").unwrap(), "a.b.c");
        assert_eq!(logout_token(b"x=1&logout_token=a%2Eb.c").unwrap(), "a.b.c");
        for bad in [
            &b""[..],
            b"logout_token=",
            b"token=a.b.c",
            b"logout_token=a&logout_token=b",
        ] {
            assert_eq!(logout_token(bad), Err(Refusal::Form));
        }
    }
}
