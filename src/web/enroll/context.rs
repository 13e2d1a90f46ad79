//! What every page of the form shares: the session and CSRF cookies, the request's context
//! (endpoint, organisation, session), the layout's data, and error pages.

use askama::Template;
use axum::body::Body;
use axum::extract::{Form, Path};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::MAX_FORM;
use crate::domain::{generate_secret, Endpoint, Organisation, Secret, WebSession};
use crate::error::{Error, ErrorKind};
use crate::web::{observe, problem, AppState, ConnInfo};

const SESSION_COOKIE: &str = "__Host-estgate-session";
const CSRF_COOKIE: &str = "__Host-estgate-csrf";

// ---- cookies and CSRF ---------------------------------------------------------------------

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub(super) fn session_cookie(secret: &Secret) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        secret.expose(),
        crate::ra::SESSION_TTL_SECS
    )
}

pub(super) fn expired_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

/// The request's CSRF value, or a new one to set. Strict: it never travels cross-site.
fn csrf(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE).filter(|v| v.len() == 32) {
        Some(v) => (v, None),
        None => {
            let v = generate_secret(32).expose().to_string();
            let set = format!("{CSRF_COOKIE}={v}; Path=/; Secure; HttpOnly; SameSite=Strict");
            (v, Some(set))
        }
    }
}

/// Every POST must echo the CSRF cookie and, when the browser says where it comes from,
/// come from this site.
fn check_csrf(headers: &HeaderMap, submitted: &str) -> Result<(), Error> {
    let refused = || {
        Error::forbidden(
            "this form has expired or was not sent from this site: reload the page and try again",
        )
    };
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(refused());
    }
    let expected = cookie(headers, CSRF_COOKIE).ok_or_else(refused)?;
    let same = expected.len() == submitted.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            submitted.as_bytes(),
        ));
    if same {
        Ok(())
    } else {
        Err(refused())
    }
}

// ---- page context -------------------------------------------------------------------------

/// What the layout shows on every page.
pub(super) struct Chrome {
    pub base: String,
    pub endpoint_name: String,
    pub org_name: String,
    pub csrf: String,
    pub signed_in_as: Option<String>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    /// On a page answering a refusal, the request's id, shown at its foot so a person can
    /// quote it and an operator find the request's log line (other pages show none: two
    /// answers that must not differ, such as "check your email" for a known and an unknown
    /// address, stay byte-identical).
    pub reference: String,
}

/// The endpoint, its organisation, the CSRF value and, when signed in, the session.
pub(super) struct Ctx {
    pub(super) endpoint: Endpoint,
    pub(super) org: Organisation,
    pub(super) csrf: String,
    pub(super) set_cookies: Vec<String>,
    pub(super) session: Option<(WebSession, Secret)>,
    pub(super) source: String,
}

/// Every page handler starts from the endpoint its URL names: an extractor, so an unknown
/// endpoint is answered (404) before any handler runs.
impl axum::extract::FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Ctx, Response> {
        let params =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| e.into_response())?;
        let ext = params.get("ext").cloned().unwrap_or_default();
        let conn = parts
            .extensions
            .get::<ConnInfo>()
            .cloned()
            .ok_or_else(|| bare_error(&Error::internal("no connection info")))?;
        Ctx::load(state, &ext, &parts.headers, &conn).await
    }
}

impl Ctx {
    async fn load(
        state: &AppState,
        ext: &str,
        headers: &HeaderMap,
        conn: &ConnInfo,
    ) -> Result<Ctx, Response> {
        let endpoint = match state.ra.endpoint(ext).await {
            Ok(e) => e,
            Err(e) => return Err(bare_error(&e)),
        };
        let org = state
            .ra
            .organisation_of(&endpoint)
            .await
            .map_err(|e| bare_error(&e))?;
        let (csrf, set) = csrf(headers);
        let mut session = None;
        if let Some(v) = cookie(headers, SESSION_COOKIE) {
            let secret = Secret::new(v);
            if let Some(s) = state
                .ra
                .web_session(&endpoint, &secret)
                .await
                .map_err(|e| bare_error(&e))?
            {
                session = Some((s, secret));
            }
        }
        Ok(Ctx {
            endpoint,
            org,
            csrf,
            set_cookies: set.into_iter().collect(),
            session,
            source: conn.peer.to_string(),
        })
    }

    pub(super) fn base(&self) -> String {
        format!("/enroll/{}", self.endpoint.uri_extension)
    }

    pub(super) fn chrome(&self) -> Chrome {
        Chrome {
            base: self.base(),
            endpoint_name: self.endpoint.name.clone(),
            org_name: self.org.name.clone(),
            csrf: self.csrf.clone(),
            signed_in_as: self.session.as_ref().map(|(s, _)| s.email.to_string()),
            help_link_text: self.endpoint.help_link_text.clone(),
            help_link_target: self.endpoint.help_link_target.clone(),
            help_text: self.endpoint.help_text.clone(),
            reference: String::new(),
        }
    }

    /// The layout of a page answering the refusal `err`: with its reference.
    pub(super) fn refusal_chrome(&self, err: &Error) -> Chrome {
        let mut c = self.chrome();
        c.reference = reference(err);
        c
    }

    /// The session, when signed in; pages that need one redirect to the sign-in page.
    pub(super) fn signed_in(&self) -> Option<WebSession> {
        self.session.as_ref().map(|(s, _)| s.clone())
    }

    pub(super) fn redirect(&self, to: &str) -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&format!("{}{to}", self.base())) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        self.with_cookies(r)
    }

    pub(super) fn with_cookies(&self, mut r: Response) -> Response {
        for c in &self.set_cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    pub(super) fn page(&self, status: StatusCode, t: &impl Template) -> Response {
        match t.render() {
            Ok(html) => self.with_cookies(
                (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html,
                )
                    .into_response(),
            ),
            Err(e) => bare_error(&Error::internal(format!("template: {e}"))),
        }
    }

    /// A whole-page error in the site's layout, with the status for its kind.
    pub(super) fn error(&self, err: &Error) -> Response {
        let heading = match err.kind {
            ErrorKind::Expired => "Link expired",
            ErrorKind::AlreadyUsed => "Link already used",
            ErrorKind::RateLimited { .. } => "Please wait",
            ErrorKind::Unauthorized => "Not signed in",
            ErrorKind::NotFound => "Not found",
            ErrorKind::Forbidden => "Not allowed",
            _ => "Something went wrong",
        };
        self.error_page(heading, err, SIGN_IN_LINK)
    }

    /// An error page with its own heading and one link onwards (a path under the endpoint's
    /// base, and its text).
    pub(super) fn error_page(
        &self,
        heading: &'static str,
        err: &Error,
        next: (&'static str, &'static str),
    ) -> Response {
        self.refused(
            err,
            &MessagePage {
                c: self.refusal_chrome(err),
                heading,
                message: err.message.clone(),
                next,
            },
        )
    }

    /// A page answering a refusal: the status for its kind, `Retry-After` when it has one,
    /// and its sentence for the access line.
    pub(super) fn refused(&self, err: &Error, t: &impl Template) -> Response {
        let mut r = self.page(problem::status(err.kind), t);
        problem::retry_after(&mut r, err.kind);
        observe::with_reason(r, err.message.clone())
    }
}

/// The reference a refusal page shows: the request id, unless its sentence already names it.
pub(super) fn reference(err: &Error) -> String {
    problem::reference(err)
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// An error before there is a layout to show it in (unknown endpoint, database down).
fn bare_error(err: &Error) -> Response {
    let reference = problem::reference(err)
        .map(|id| {
            format!(
                "<p class=\"hint\">Reference {}</p>",
                crate::domain::escape_html(&id)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>estgate</title>\
         <link rel=\"stylesheet\" href=\"/static/estgate.css\"></head><body><main><h1>{}</h1>\
         {reference}</main></body></html>",
        crate::domain::escape_html(&err.message)
    );
    let resp = (
        problem::status(err.kind),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    observe::with_reason(resp, err.message.clone())
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    heading: &'static str,
    message: String,
    next: (&'static str, &'static str),
}

/// The link of most error pages: back to where one starts.
const SIGN_IN_LINK: (&str, &str) = ("", "Back to the sign-in page");

pub(super) trait CsrfField {
    fn csrf(&self) -> &str;
}

csrf_field!(CsrfOnly);

/// The decoded form once its CSRF value checked out, or the error page to answer with.
pub(super) fn accepted<T: CsrfField>(
    ctx: &Ctx,
    headers: &HeaderMap,
    form: Result<Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, Box<Response>> {
    let form = match form {
        Ok(Form(f)) => f,
        Err(r) => return Err(Box::new(ctx.error(&form_rejected(&r)))),
    };
    check_csrf(headers, form.csrf()).map_err(|e| Box::new(ctx.error(&e)))?;
    Ok(form)
}

fn form_rejected(r: &axum::extract::rejection::FormRejection) -> Error {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the form is larger than {} KiB", MAX_FORM / 1024),
        )
    } else {
        Error::malformed("the form could not be read")
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-estgate-csrf=abc; x__Host-estgate-csrf=no"),
        );
        assert_eq!(cookie(&h, CSRF_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_needs_the_cookie_value_and_same_site() {
        let value = "A".repeat(32);
        let mut h = HeaderMap::new();
        assert!(check_csrf(&h, &value).is_err(), "no cookie");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{CSRF_COOKIE}={value}")).unwrap(),
        );
        assert!(check_csrf(&h, &value).is_ok());
        assert!(check_csrf(&h, &"B".repeat(32)).is_err(), "other value");
        assert!(check_csrf(&h, "").is_err(), "empty");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&h, &value).is_err(), "cross-site");
    }
}
