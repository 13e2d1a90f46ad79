//! The administration API: JSON over HTTPS, described by an OpenAPI 3.1 document that is
//! generated from the handlers themselves (`utoipa`), so a route cannot exist undocumented.
//!
//! Conventions every resource follows:
//! - authentication: `Authorization: Bearer <API key or session token>` (`extract.rs`);
//! - bodies: `application/json`, unknown fields refused, the field at fault named;
//! - errors: RFC 9457 `application/problem+json` (`web/problem.rs`);
//! - single objects carry an `ETag` (their version); `If-Match` on PATCH/DELETE makes a
//!   lost update answer `412`;
//! - lists: `?limit=&cursor=` and `next_cursor` in the answer;
//! - POSTs that create, issue or revoke honour `Idempotency-Key` (`idempotency.rs`).

mod accounts;
mod admins;
mod audit;
mod certificates;
mod endpoints;
mod extract;
mod idempotency;
mod orders;
mod organisations;
mod persons;
mod profiles;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::super::{problem, AppState};
use crate::error::Error;

use extract::CallerSlot;
pub use extract::{AdminCaller, ApiJson, ApiQuery, IfMatch};

/// JSON bodies of the API are small; a bulk import has its own, larger limit.
pub const MAX_JSON: usize = 256 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "estgate administration API",
        version = "1",
        description = "Organisations, persons, profiles, enrollment endpoints, accounts, \
                       orders, certificates, administrators and the audit trail. \
                       Authenticate with `Authorization: Bearer <API key or session token>`."
    ),
    components(schemas(ProblemDoc)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes and its OpenAPI document, built from the same list.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admins::routes())
        .merge(orders::routes())
        .merge(certificates::routes())
        .merge(audit::routes())
        .merge(profiles::routes())
        .merge(endpoints::routes())
        .merge(accounts::routes())
        .merge(organisations::routes())
        .merge(persons::routes())
        .split_for_parts();
    (router, doc)
}

pub fn routes() -> Router<AppState> {
    let (router, doc) = api();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()).into_response() }
            }),
        )
        .route("/api/{*rest}", any(no_route))
        .layer(axum::middleware::from_fn(audit_refusals))
        .layer(axum::middleware::map_response(api_headers))
}

/// A request of an authenticated administrator answered 403 or 404 is written to the audit
/// trail (coalesced: `ra/refusals.rs`). Unauthenticated ones are not: nobody unknown
/// decides how much the trail grows.
async fn audit_refusals(mut req: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let route = format!("{} {template}", req.method());
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if let (Some((caller, ra)), Some(problem::Refused(reason))) =
        (slot.0.get(), resp.extensions().get::<problem::Refused>())
    {
        ra.record_admin_refusal(caller, &route, &path, resp.status().as_u16(), reason)
            .await;
    }
    resp
}

/// Unknown paths under `/api/` answer a problem document too.
async fn no_route() -> Response {
    problem::admin(&Error::not_found(
        "no such API route; see /api/v1/openapi.json",
    ))
}

async fn api_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An RFC 9457 problem document, as the API answers every error.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An RA error as the API answers it.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem::admin(&self.0)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `?limit=&cursor=` on every list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;

impl PageQuery {
    pub fn limit(&self) -> Result<u64, Error> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(Error::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            )),
        }
    }

    /// The last id of the previous page (cursors are opaque to clients).
    pub fn after(&self) -> Result<Option<i64>, Error> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => decode_cursor(c)
                .map(Some)
                .ok_or_else(|| Error::invalid("cursor", "the cursor is not one this API gave")),
        }
    }
}

pub fn encode_cursor(after: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("after:")?
        .parse()
        .ok()
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Pages an id-ordered list the RA returned in full. `id` gives each item's id.
pub fn page<T: ToSchema, U>(
    items: Vec<U>,
    q: &PageQuery,
    id: impl Fn(&U) -> i64,
    view: impl Fn(U) -> T,
) -> Result<Page<T>, Error> {
    let limit = q.limit()? as usize;
    let after = q.after()?;
    let mut rest: Vec<U> = items
        .into_iter()
        .filter(|u| after.is_none_or(|a| id(u) > a))
        .collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next_cursor = if more {
        rest.last().map(|u| encode_cursor(id(u)))
    } else {
        None
    };
    Ok(Page {
        items: rest.into_iter().map(view).collect(),
        next_cursor,
    })
}

/// A JSON answer with an `ETag` of the object's version.
pub fn tagged<T: Serialize>(status: StatusCode, version: i64, body: &T) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"v{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `204 No Content`.
pub fn done() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// For PATCH bodies: an absent field is `None`, `null` is `Some(None)`.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
