//! The Security settings page (SPEC section 12): static files built into the binary,
//! served under `{prefix}/console/`.
//!
//! The page is plain HTML, CSS and one ES module (the files in `console/`, no build
//! step); everything it shows comes from the admin API, which it calls with `fetch`. It
//! needs no token to be served: it asks `GET {prefix}/v1/me` who the browser's cookie
//! belongs to and says so when it is nobody, or not an admin.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Method, Response, StatusCode};
use serde_json::json;

use crate::state::AppState;
use crate::web::{self, Body, GatewayError};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// SPEC section 12, on every console response: no inline script or style, nothing from
/// another origin, never framed, never cached, no referrer leaking the admin's URL.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (X_FRAME_OPTIONS, "DENY"),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (REFERRER_POLICY, "no-referrer"),
    (CACHE_CONTROL, "no-store"),
];

/// A path of the console, after the admin prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asset {
    /// `{prefix}`, `{prefix}/` and `{prefix}/console`: redirected to the page.
    Entry,
    Page,
    Script,
    Style,
    /// What the page cannot learn from the API: where to sign in.
    Settings,
}

// === impl Asset ===

impl Asset {
    /// The console path `rest` (the path after the prefix) names, if any.
    pub(super) fn parse(rest: &str) -> Option<Self> {
        Some(match rest {
            "" | "/" | "/console" => Self::Entry,
            "/console/" => Self::Page,
            "/console/app.js" => Self::Script,
            "/console/style.css" => Self::Style,
            "/console/settings.json" => Self::Settings,
            _ => return None,
        })
    }
}

/// Answers a console path: 404 when `admin.console` is off, 405 for anything but `GET`,
/// the security headers on every answer.
pub(super) fn serve(
    state: &AppState,
    asset: Asset,
    method: &Method,
) -> Result<Response<Body>, GatewayError> {
    if !state.config.admin_console {
        return Err(GatewayError::NotFound);
    }
    let mut response = if method == Method::GET {
        answer(state, asset)
    } else {
        GatewayError::MethodNotAllowed { allow: "GET" }.into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

fn answer(state: &AppState, asset: Asset) -> Response<Body> {
    let (content_type, text) = match asset {
        Asset::Entry => return redirect(&format!("{}/console/", state.config.admin_prefix)),
        Asset::Settings => {
            let settings = json!({ "login_url": state.config.auth.login_url });
            return web::json(StatusCode::OK, &settings);
        }
        Asset::Page => ("text/html; charset=utf-8", INDEX_HTML),
        Asset::Script => ("text/javascript; charset=utf-8", APP_JS),
        Asset::Style => ("text/css; charset=utf-8", STYLE_CSS),
    };
    let mut response = Response::new(web::full(text));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(web::empty());
    *response.status_mut() = StatusCode::FOUND;
    // The prefix was validated as a clean absolute path, so it is always a valid value.
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_paths_are_recognised_and_nothing_else() {
        assert_eq!(Asset::parse(""), Some(Asset::Entry));
        assert_eq!(Asset::parse("/"), Some(Asset::Entry));
        assert_eq!(Asset::parse("/console"), Some(Asset::Entry));
        assert_eq!(Asset::parse("/console/"), Some(Asset::Page));
        assert_eq!(Asset::parse("/console/app.js"), Some(Asset::Script));
        assert_eq!(Asset::parse("/console/../v1"), None);
        assert_eq!(Asset::parse("/console/secret"), None);
        assert_eq!(Asset::parse("/v1/me"), None);
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style_and_never_uses_markup_sinks() {
        assert!(!INDEX_HTML.contains("<script>"), "inline script");
        assert!(!INDEX_HTML.contains("style="), "inline style");
        assert!(!INDEX_HTML.contains("<style"), "inline style sheet");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(sink), "{sink} in app.js");
        }
        assert!(
            !APP_JS.contains("document.cookie"),
            "the page never reads the cookie"
        );
    }
}
