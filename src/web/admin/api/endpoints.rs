//! Enrollment endpoints of organisations; each answer carries its form's full URL.

use super::ApiQuery;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::idempotency::{once, IdempotencyKey};
use super::profiles::wire_enum;
use super::{
    done, page, tagged, AdminCaller, ApiJson, ApiResult, IfMatch, Page, PageQuery, ProblemDoc,
};
use crate::domain::{AuthType, Endpoint, Id};
use crate::ra::admin::{EndpointChanges, EndpointRequest};
use crate::ra::Ra;
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(show_endpoint, edit_endpoint, delete_endpoint))
        .routes(routes!(new_uri_extension))
}

wire_enum!(
    /// How a person authenticates at the endpoint.
    AuthTypeDoc => AuthType {
        EmailConfirmation = "email-confirmation" => AuthType::EmailConfirmation,
        SecretId = "secret-id" => AuthType::SecretId,
    }
);

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: Id,
    pub organisation: Id,
    pub name: String,
    pub uri_extension: String,
    /// The full URL of the enrollment form.
    pub enrollment_url: String,
    /// `email-confirmation`, `secret-id`.
    pub auth_types: Vec<String>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    pub eula_text: String,
    pub version: i64,
}

fn endpoint_view(ra: &Ra, e: Endpoint) -> EndpointView {
    EndpointView {
        enrollment_url: ra.enrollment_url(&e),
        id: e.id,
        organisation: e.organisation_id,
        name: e.name,
        uri_extension: e.uri_extension,
        auth_types: e.auth_types.iter().map(|a| a.as_str().into()).collect(),
        help_link_text: e.help_link_text,
        help_link_target: e.help_link_target,
        help_text: e.help_text,
        eula_text: e.eula_text,
        version: e.version,
    }
}

fn answer(ra: &Ra, status: StatusCode, e: Endpoint) -> Response {
    let version = e.version;
    tagged(status, version, &endpoint_view(ra, e))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EndpointQuery {
    /// Only the endpoints of this organisation.
    pub organisation: Option<Id>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Endpoints of the organisations the caller manages.
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "endpoints",
    params(EndpointQuery),
    responses((status = 200, body = Page<EndpointView>), (status = 403, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<EndpointQuery>,
) -> ApiResult<Response> {
    let all = state.ra.endpoints(&caller, q.organisation).await?;
    let pq = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let ra = &state.ra;
    Ok(super::json(
        StatusCode::OK,
        &page(all, &pq, |e| e.id, |e| endpoint_view(ra, e))?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointDoc {
    pub organisation: Id,
    pub name: String,
    pub auth_types: Vec<AuthTypeDoc>,
    #[serde(default)]
    pub help_link_text: String,
    /// An https://, http:// or mailto: address.
    #[serde(default)]
    pub help_link_target: String,
    #[serde(default)]
    pub help_text: String,
    #[serde(default)]
    pub eula_text: String,
    /// 20 to 64 letters and digits; generated when absent.
    pub uri_extension: Option<String>,
}

/// Create an endpoint (MRAO, or an RAO of the organisation).
#[utoipa::path(post, path = "/api/v1/endpoints", tag = "endpoints",
    request_body = NewEndpointDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = EndpointView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewEndpointDoc>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/endpoints",
        &digest,
        async {
            let r = EndpointRequest {
                organisation_id: body.organisation,
                name: body.name,
                auth_types: body.auth_types.into_iter().map(Into::into).collect(),
                help_link_text: body.help_link_text,
                help_link_target: body.help_link_target,
                help_text: body.help_text,
                eula_text: body.eula_text,
                uri_extension: body.uri_extension,
            };
            match state.ra.add_endpoint(&caller, r).await {
                Ok(e) => answer(&state.ra, StatusCode::CREATED, e),
                Err(e) => crate::web::problem::admin(&e),
            }
        },
    )
    .await
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = Id, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_endpoint(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let e = state.ra.managed_endpoint(&caller, id).await?;
    Ok(answer(&state.ra, StatusCode::OK, e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub name: Option<String>,
    pub auth_types: Option<Vec<AuthTypeDoc>>,
    pub help_link_text: Option<String>,
    pub help_link_target: Option<String>,
    pub help_text: Option<String>,
    pub eula_text: Option<String>,
    /// A URI extension of your choice (20 to 64 letters and digits); the old form address
    /// stops working.
    pub uri_extension: Option<String>,
}

/// Change an endpoint.
#[utoipa::path(patch, path = "/api/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = EndpointPatch,
    responses((status = 200, body = EndpointView), (status = 400, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc),
              (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_endpoint(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<EndpointPatch>,
) -> ApiResult<Response> {
    let c = EndpointChanges {
        name: body.name,
        auth_types: body
            .auth_types
            .map(|a| a.into_iter().map(Into::into).collect()),
        help_link_text: body.help_link_text,
        help_link_target: body.help_link_target,
        help_text: body.help_text,
        eula_text: body.eula_text,
        uri_extension: body.uri_extension,
    };
    let e = state.ra.edit_endpoint(&caller, id, version, c).await?;
    Ok(answer(&state.ra, StatusCode::OK, e))
}

/// Delete an endpoint without accounts; its form is no longer served.
#[utoipa::path(delete, path = "/api/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = Id, Path)),
    responses((status = 204), (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    state.ra.remove_endpoint(&caller, id).await?;
    Ok(done())
}

/// Generate a new URI extension; the old form address stops working.
#[utoipa::path(post, path = "/api/v1/endpoints/{id}/uri-extension", tag = "endpoints",
    params(("id" = Id, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ProblemDoc),
              (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn new_uri_extension(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let e = state.ra.regenerate_uri_extension(&caller, id).await?;
    Ok(answer(&state.ra, StatusCode::OK, e))
}
