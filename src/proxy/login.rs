//! Browser navigations with a refused token go to the sign-in page (SPEC section 3)
//! instead of a 401 the user cannot act on.

use http::{Method, Request};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::auth::{self, Refused, TokenSource};
use crate::config::AuthConfig;
use crate::sessions::PolicyRefusal;
use crate::web::{GatewayError, LoginRedirect};

/// Characters escaped in `return_to` (everything that is not unreserved).
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A refused token: 401, or a redirect to `auth.login_url` for a browser navigation. A
/// request outside the policy's allow-list is 403 and never redirected: signing in again
/// does not help.
pub(super) fn reject<B>(auth: &AuthConfig, req: &Request<B>, refused: Refused) -> GatewayError {
    let step_up = match &refused {
        Refused::Policy(PolicyRefusal::IpNotAllowed) => return refused.into(),
        Refused::Policy(refusal) => step_up_query(refusal),
        Refused::Token(_) => String::new(),
    };
    let redirect = auth
        .login_url
        .as_ref()
        .filter(|_| is_navigation(req))
        .map(|login_url| redirect(auth, login_url, req, &step_up));
    match refused {
        Refused::Token(reason) => GatewayError::Unauthorized { reason, redirect },
        Refused::Policy(refusal) => GatewayError::Policy { refusal, redirect },
    }
}

/// What the sign-in page needs to ask the identity provider for (RFC 9470's parameters),
/// as `&name=value` query pairs.
fn step_up_query(refusal: &PolicyRefusal) -> String {
    match refusal {
        PolicyRefusal::TooOld { max_age_secs } => format!("&max_age={max_age_secs}"),
        PolicyRefusal::SignInMethod {
            acr_values: Some(values),
        } => format!("&acr_values={}", utf8_percent_encode(values, QUERY_VALUE)),
        PolicyRefusal::SignInMethod { acr_values: None } | PolicyRefusal::IpNotAllowed => {
            String::new()
        }
    }
}

/// `GET` with `Accept` containing `text/html`.
fn is_navigation<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get_all(http::header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// `login_url` with `return_to`, clearing the token cookie when the token came from it.
fn redirect<B>(
    auth: &AuthConfig,
    login_url: &str,
    req: &Request<B>,
    step_up: &str,
) -> LoginRedirect {
    let original = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let separator = if login_url.contains('?') { '&' } else { '?' };
    let from_cookie = auth::extract(req.headers(), auth.cookie.as_deref())
        .is_some_and(|presented| presented.source == TokenSource::Cookie);
    LoginRedirect {
        location: format!(
            "{login_url}{separator}return_to={}{step_up}",
            utf8_percent_encode(original, QUERY_VALUE)
        ),
        clear_cookie: auth
            .cookie
            .as_ref()
            .filter(|_| from_cookie)
            .map(|name| format!("{name}=; Max-Age=0; Path={}", auth.cookie_path)),
    }
}
