//! The browser self-enrollment form at `/enroll/<uri-extension>`: server-rendered pages
//! (askama templates compiled into the binary), working without JavaScript. Every decision
//! is the RA's; this module handles cookies, CSRF, form decoding and rendering.
//!
//! Cookies: `__Host-estgate-session` (HttpOnly, Secure, SameSite=Lax, the session secret;
//! the database keeps its hash) and `__Host-estgate-csrf` (a random value every form echoes
//! back: double-submit CSRF protection that needs no server state, so several processes can
//! serve one person).
//!
//! - `context`: cookies, CSRF, the per-request context and the page layout, error pages
//! - `sign_in`: sign-in (emailed link, secret ID), sign-out, the account choice
//! - `form`: the certificate request form, used once per showing (a one-time token)
//! - `certificates`: My certificates, self-service revocation, the help pages

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Implements `context::CsrfField` for forms with a `csrf` field.
macro_rules! csrf_field {
    ($($form:ty),+) => {
        $(impl super::context::CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

mod certificates;
mod context;
pub(crate) mod form;
mod sign_in;

/// Form bodies are a few fields and at most a CSR: 64 KiB, like EST.
const MAX_FORM: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(sign_in::routes())
        .merge(form::routes())
        .merge(certificates::routes())
        .route("/static/estgate.css", get(stylesheet))
        .route("/static/estgate.js", get(script))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers on every page of the form: no inline script or style, no framing, no referrer
/// (the confirmation link carries a token), HTTPS only, nothing cached.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

async fn stylesheet() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../static/estgate.css"),
    )
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../static/estgate.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn date_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{} at {:02}:{:02} UTC", date(t), d.hour(), d.minute()))
        .unwrap_or_default()
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}
