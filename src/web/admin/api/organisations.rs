//! Organisations, their verified domains, and departments.

use std::collections::HashMap;

use super::ApiQuery;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admins::respond;
use super::idempotency::{once, IdempotencyKey};
use super::{
    done, double_option, json, page, tagged, AdminCaller, ApiJson, ApiResult, IfMatch, Page,
    PageQuery, ProblemDoc,
};
use crate::domain::{Department, Id, Organisation};
use crate::error::Error;
use crate::ra::admin::{OrganisationChanges, OrganisationRequest};
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organisations, create_organisation))
        .routes(routes!(
            show_organisation,
            edit_organisation,
            delete_organisation
        ))
        .routes(routes!(add_domain))
        .routes(routes!(remove_domain))
        .routes(routes!(list_departments, create_department))
        .routes(routes!(show_department, edit_department, delete_department))
}

#[derive(Serialize, ToSchema)]
pub struct OrganisationView {
    pub id: Id,
    pub name: String,
    /// Verified domains: persons' addresses and device names must sit in one of them.
    pub domains: Vec<String>,
    /// S/MIME BR organizationIdentifier, e.g. `VATDE-123456789`.
    pub organization_identifier: Option<String>,
    pub version: i64,
}

pub fn organisation_view(o: Organisation) -> OrganisationView {
    OrganisationView {
        id: o.id,
        name: o.name,
        domains: o.domains,
        organization_identifier: o.organization_identifier,
        version: o.version,
    }
}

#[derive(Serialize, ToSchema)]
pub struct DepartmentView {
    pub id: Id,
    pub name: String,
    pub organisation: Id,
    pub organisation_name: String,
    pub version: i64,
}

fn department_view(d: Department, organisation_name: String) -> DepartmentView {
    DepartmentView {
        id: d.id,
        name: d.name,
        organisation: d.organisation_id,
        organisation_name,
        version: d.version,
    }
}

/// Organisations the caller sees.
#[utoipa::path(get, path = "/api/v1/organisations", tag = "organisations",
    params(PageQuery),
    responses((status = 200, body = Page<OrganisationView>), (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_organisations(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let orgs = state.ra.organisations_in_sight(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &page(orgs, &q, |o| o.id, organisation_view)?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    pub name: String,
    /// One or more DNS domains, none of another organisation's.
    pub domains: Vec<String>,
    pub organization_identifier: Option<String>,
}

/// Create an organisation (MRAO).
#[utoipa::path(post, path = "/api/v1/organisations", tag = "organisations",
    request_body = NewOrganisation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = OrganisationView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_organisation(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewOrganisation>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/organisations",
        &digest,
        async {
            let r = OrganisationRequest {
                name: body.name,
                domains: body.domains,
                organization_identifier: body.organization_identifier,
            };
            respond(
                state
                    .ra
                    .add_organisation(&caller, r)
                    .await
                    .map(organisation_view),
                StatusCode::CREATED,
            )
        },
    )
    .await
}

/// One organisation.
#[utoipa::path(get, path = "/api/v1/organisations/{id}", tag = "organisations",
    params(("id" = Id, Path)),
    responses((status = 200, body = OrganisationView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_organisation(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let o = state.ra.organisation_in_sight(&caller, id).await?;
    Ok(tagged(StatusCode::OK, o.version, &organisation_view(o)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationPatch {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub organization_identifier: Option<Option<String>>,
}

/// Rename an organisation or set its organizationIdentifier (MRAO).
#[utoipa::path(patch, path = "/api/v1/organisations/{id}", tag = "organisations",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = OrganisationPatch,
    responses((status = 200, body = OrganisationView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_organisation(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<OrganisationPatch>,
) -> ApiResult<Response> {
    let changes = OrganisationChanges {
        name: body.name,
        organization_identifier: body.organization_identifier,
    };
    let o = state
        .ra
        .edit_organisation(&caller, id, version, changes)
        .await?;
    Ok(tagged(StatusCode::OK, o.version, &organisation_view(o)))
}

/// Delete an organisation nothing refers to any more (MRAO).
#[utoipa::path(delete, path = "/api/v1/organisations/{id}", tag = "organisations",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_organisation(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
) -> ApiResult<Response> {
    state.ra.remove_organisation(&caller, id, version).await?;
    Ok(done())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// A DNS domain, e.g. `example.org`; stored lower-case.
    pub domain: String,
}

/// Add a verified domain (MRAO).
#[utoipa::path(post, path = "/api/v1/organisations/{id}/domains", tag = "organisations",
    params(("id" = Id, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = NewDomain,
    responses((status = 201, body = OrganisationView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn add_domain(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewDomain>,
) -> Response {
    let what = format!("POST /api/v1/organisations/{id}/domains");
    once(&state, &caller, key, &what, &digest, async {
        match state
            .ra
            .add_organisation_domain(&caller, id, &body.domain)
            .await
        {
            Ok(o) => tagged(StatusCode::CREATED, o.version, &organisation_view(o)),
            Err(e) => crate::web::problem::admin(&e),
        }
    })
    .await
}

/// Remove a verified domain; the last one stays (MRAO).
#[utoipa::path(delete, path = "/api/v1/organisations/{id}/domains/{domain}", tag = "organisations",
    params(("id" = Id, Path), ("domain" = String, Path)),
    responses((status = 200, body = OrganisationView), (status = 403, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn remove_domain(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path((id, domain)): Path<(Id, String)>,
) -> ApiResult<Response> {
    let o = state
        .ra
        .remove_organisation_domain(&caller, id, &domain)
        .await?;
    Ok(tagged(StatusCode::OK, o.version, &organisation_view(o)))
}

/// The organisation's departments the caller reaches.
#[utoipa::path(get, path = "/api/v1/organisations/{id}/departments", tag = "departments",
    params(("id" = Id, Path), PageQuery),
    responses((status = 200, body = Page<DepartmentView>), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_departments(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let org = state.ra.organisation_in_sight(&caller, id).await?;
    let depts = state.ra.departments_in_sight(&caller, id).await?;
    Ok(json(
        StatusCode::OK,
        &page(
            depts,
            &q,
            |d| d.id,
            |d| department_view(d, org.name.clone()),
        )?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    /// Unique within the organisation.
    pub name: String,
}

/// Add a department (MRAO, or the organisation's RAO).
#[utoipa::path(post, path = "/api/v1/organisations/{id}/departments", tag = "departments",
    params(("id" = Id, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = NewDepartment,
    responses((status = 201, body = DepartmentView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_department(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewDepartment>,
) -> Response {
    let what = format!("POST /api/v1/organisations/{id}/departments");
    once(&state, &caller, key, &what, &digest, async {
        let r = async {
            let d = state.ra.add_department(&caller, id, &body.name).await?;
            let org = state.ra.organisation_in_sight(&caller, id).await?;
            Ok::<_, Error>(department_view(d, org.name))
        }
        .await;
        match r {
            Ok(v) => tagged(StatusCode::CREATED, v.version, &v),
            Err(e) => crate::web::problem::admin(&e),
        }
    })
    .await
}

async fn department_answer(
    state: &AppState,
    caller: &crate::ra::admin::Caller,
    d: Department,
    status: StatusCode,
) -> ApiResult<Response> {
    let org = state
        .ra
        .organisation_in_sight(caller, d.organisation_id)
        .await?;
    let v = department_view(d, org.name);
    Ok(tagged(status, v.version, &v))
}

/// One department.
#[utoipa::path(get, path = "/api/v1/departments/{id}", tag = "departments",
    params(("id" = Id, Path)),
    responses((status = 200, body = DepartmentView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_department(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let d = state.ra.department_in_sight(&caller, id).await?;
    department_answer(&state, &caller, d, StatusCode::OK).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentPatch {
    pub name: String,
}

/// Rename a department (MRAO, or the organisation's RAO).
#[utoipa::path(patch, path = "/api/v1/departments/{id}", tag = "departments",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = DepartmentPatch,
    responses((status = 200, body = DepartmentView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_department(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<DepartmentPatch>,
) -> ApiResult<Response> {
    let d = state
        .ra
        .rename_department(&caller, id, version, &body.name)
        .await?;
    department_answer(&state, &caller, d, StatusCode::OK).await
}

/// Delete a department no person, account or DRAO refers to.
#[utoipa::path(delete, path = "/api/v1/departments/{id}", tag = "departments",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_department(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
) -> ApiResult<Response> {
    state.ra.remove_department(&caller, id, version).await?;
    Ok(done())
}

/// Names of organisations and departments by id, for views that show them next to ids.
#[derive(Default)]
pub struct Names {
    organisations: HashMap<Id, String>,
    departments: HashMap<Id, String>,
}

impl Names {
    pub async fn of(
        state: &AppState,
        caller: &crate::ra::admin::Caller,
        organisations: impl IntoIterator<Item = Id>,
    ) -> Result<Names, Error> {
        let mut names = Names::default();
        for org in organisations {
            if names.organisations.contains_key(&org) {
                continue;
            }
            let o = state.ra.organisation_in_sight(caller, org).await?;
            names.organisations.insert(o.id, o.name);
            for d in state.ra.departments_in_sight(caller, org).await? {
                names.departments.insert(d.id, d.name);
            }
        }
        Ok(names)
    }

    pub fn organisation(&self, id: Id) -> String {
        self.organisations.get(&id).cloned().unwrap_or_default()
    }

    pub fn department(&self, id: Option<Id>) -> Option<String> {
        id.and_then(|d| self.departments.get(&d).cloned())
    }
}
