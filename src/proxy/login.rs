//! Browser navigations with a refused token go to the sign-in page (SPEC section 3)
//! instead of a 401 the user cannot act on.

use http::{Method, Request};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::auth::{self, TokenError, TokenSource};
use crate::config::AuthConfig;
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

/// A refused token: 401, or a redirect to `auth.login_url` for a browser navigation.
pub(super) fn reject<B>(auth: &AuthConfig, req: &Request<B>, reason: TokenError) -> GatewayError {
    let redirect = auth
        .login_url
        .as_ref()
        .filter(|_| is_navigation(req))
        .map(|login_url| redirect(auth, login_url, req));
    GatewayError::Unauthorized { reason, redirect }
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
fn redirect<B>(auth: &AuthConfig, login_url: &str, req: &Request<B>) -> LoginRedirect {
    let original = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let separator = if login_url.contains('?') { '&' } else { '?' };
    let from_cookie = auth::extract(req.headers(), auth.cookie.as_deref())
        .is_some_and(|presented| presented.source == TokenSource::Cookie);
    LoginRedirect {
        location: format!(
            "{login_url}{separator}return_to={}",
            utf8_percent_encode(original, QUERY_VALUE)
        ),
        clear_cookie: auth
            .cookie
            .as_ref()
            .filter(|_| from_cookie)
            .map(|name| format!("{name}=; Max-Age=0; Path={}", auth.cookie_path)),
    }
}
