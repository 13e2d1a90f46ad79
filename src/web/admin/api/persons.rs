//! Persons: list with filters, create (with a secret ID shown once), edit, disable, enable,
//! delete, set or reset the secret ID, lift a lockout, and the CSV import.

use std::collections::HashMap;

use super::ApiQuery;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{body_bytes, parse_json};
use super::idempotency::{once, IdempotencyKey};
use super::organisations::Names;
use super::{
    double_option, encode_cursor, json, tagged, AdminCaller, ApiJson, ApiResult, IfMatch, Page,
    PageQuery, ProblemDoc, MAX_JSON,
};
use crate::domain::{Id, Person, PersonStatus, Secret};
use crate::error::{Error, ErrorKind};
use crate::ra::admin::{
    Caller, ImportReport, PersonChanges, PersonQuery, PersonRequest, PersonRetired, SecretIdChoice,
    MAX_IMPORT_BYTES,
};
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_persons, create_person))
        .routes(routes!(show_person, edit_person, delete_person))
        .routes(routes!(disable_person))
        .routes(routes!(enable_person))
        .routes(routes!(set_secret_id))
        .routes(routes!(unlock_person))
        .routes(routes!(import_persons))
}

/// A person's status.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PersonStatusDoc {
    Active,
    Disabled,
    Deleted,
}

impl From<PersonStatus> for PersonStatusDoc {
    fn from(s: PersonStatus) -> Self {
        match s {
            PersonStatus::Active => PersonStatusDoc::Active,
            PersonStatus::Disabled => PersonStatusDoc::Disabled,
            PersonStatus::Deleted => PersonStatusDoc::Deleted,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PersonView {
    pub id: Id,
    /// A deleted person's row keeps a tombstone address (`person-<id>@deleted.invalid`).
    pub email: String,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub organisation: Id,
    pub organisation_name: String,
    pub department: Option<Id>,
    pub department_name: Option<String>,
    pub status: PersonStatusDoc,
    pub has_secret_id: bool,
    pub version: i64,
}

fn person_view(p: Person, names: &Names) -> PersonView {
    PersonView {
        id: p.id,
        organisation_name: names.organisation(p.organisation_id),
        department_name: names.department(p.department_id),
        email: p.email.as_str().to_string(),
        first_name: p.first_name,
        middle_name: p.middle_name,
        last_name: p.last_name,
        organisation: p.organisation_id,
        department: p.department_id,
        status: p.status.into(),
        has_secret_id: p.secret_id_hash.is_some(),
        version: p.version,
    }
}

async fn view_of(state: &AppState, caller: &Caller, p: Person) -> Result<PersonView, Error> {
    let names = Names::of(state, caller, [p.organisation_id]).await?;
    Ok(person_view(p, &names))
}

/// Filters of `GET /api/v1/persons` (documentation; parsed by `person_query`).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PersonListParams {
    pub organisation: Option<Id>,
    pub department: Option<Id>,
    /// A part of the email address.
    pub email: Option<String>,
    /// A part of a name or of the email address.
    pub q: Option<String>,
    /// `active`, `disabled` or `deleted`; without it, active and disabled persons.
    pub status: Option<String>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const LIST_PARAMS: &[&str] = &[
    "organisation",
    "department",
    "email",
    "q",
    "status",
    "limit",
    "cursor",
];

fn number<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, Error> {
    v.parse()
        .map_err(|_| Error::invalid(field, format!("{field} must be a number, not {v:?}")))
}

/// The query string parsed by hand, so that every refusal names its parameter.
fn person_query(q: &HashMap<String, String>) -> Result<(PersonQuery, PageQuery), Error> {
    if let Some(k) = q.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(Error::invalid(
            k,
            format!(
                "unknown query parameter {k:?}; allowed: {}",
                LIST_PARAMS.join(", ")
            ),
        ));
    }
    let page = PageQuery {
        limit: q.get("limit").map(|v| number("limit", v)).transpose()?,
        cursor: q.get("cursor").cloned(),
    };
    let status = match q.get("status").map(String::as_str) {
        None => None,
        Some(s) => Some(PersonStatus::parse(s).ok_or_else(|| {
            Error::invalid(
                "status",
                format!("unknown status {s:?}; allowed: active, disabled, deleted"),
            )
        })?),
    };
    Ok((
        PersonQuery {
            organisation: q
                .get("organisation")
                .map(|v| number("organisation", v))
                .transpose()?,
            department: q
                .get("department")
                .map(|v| number("department", v))
                .transpose()?,
            email: q.get("email").cloned(),
            q: q.get("q").cloned(),
            status,
            after: page.after()?,
            limit: page.limit()?,
        },
        page,
    ))
}

/// Persons the caller reaches, filtered, in id order.
#[utoipa::path(get, path = "/api/v1/persons", tag = "persons",
    params(PersonListParams),
    responses((status = 200, body = Page<PersonView>), (status = 400, body = ProblemDoc),
              (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_persons(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(raw): ApiQuery<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (q, _) = person_query(&raw)?;
    let (items, more) = state.ra.persons_in_sight(&caller, q).await?;
    let mut orgs: Vec<Id> = items.iter().map(|p| p.organisation_id).collect();
    orgs.sort();
    orgs.dedup();
    let names = Names::of(&state, &caller, orgs).await?;
    let next_cursor = if more {
        items.last().map(|p| encode_cursor(p.id))
    } else {
        None
    };
    Ok(json(
        StatusCode::OK,
        &Page {
            items: items.into_iter().map(|p| person_view(p, &names)).collect(),
            next_cursor,
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersonDoc {
    pub organisation: Id,
    pub department: Option<Id>,
    /// In one of the organisation's verified domains.
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub middle_name: String,
    #[serde(default)]
    pub last_name: String,
    /// `"generate"` for a generated secret ID (answered once), another value to set that
    /// one (12 to 128 characters, no spaces), or absent for none.
    pub secret_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PersonCreated {
    pub person: PersonView,
    /// The generated secret ID; shown once.
    pub secret_id: Option<String>,
}

/// Add a person.
#[utoipa::path(post, path = "/api/v1/persons", tag = "persons",
    request_body = NewPersonDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = PersonCreated), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewPersonDoc>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/persons",
        &digest,
        async {
            let r = PersonRequest {
                organisation_id: body.organisation,
                department_id: body.department,
                email: body.email,
                first_name: body.first_name,
                middle_name: body.middle_name,
                last_name: body.last_name,
                secret_id: match body.secret_id {
                    None => SecretIdChoice::None,
                    Some(s) if s == "generate" => SecretIdChoice::Generate,
                    Some(s) => SecretIdChoice::Given(Secret::new(s)),
                },
            };
            let r = async {
                let added = state.ra.add_person(&caller, r).await?;
                Ok::<_, Error>(PersonCreated {
                    secret_id: added.secret_id.map(|s| s.expose().to_string()),
                    person: view_of(&state, &caller, added.person).await?,
                })
            }
            .await;
            match r {
                Ok(v) => tagged(StatusCode::CREATED, v.person.version, &v),
                Err(e) => crate::web::problem::admin(&e),
            }
        },
    )
    .await
}

/// One person.
#[utoipa::path(get, path = "/api/v1/persons/{id}", tag = "persons",
    params(("id" = Id, Path)),
    responses((status = 200, body = PersonView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let p = state.ra.person_in_sight(&caller, id).await?;
    let v = view_of(&state, &caller, p).await?;
    Ok(tagged(StatusCode::OK, v.version, &v))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonPatch {
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    /// A department of the person's organisation; `null` for none.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Id>)]
    pub department: Option<Option<Id>>,
}

/// Change a person's names or department.
#[utoipa::path(patch, path = "/api/v1/persons/{id}", tag = "persons",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = PersonPatch,
    responses((status = 200, body = PersonView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<PersonPatch>,
) -> ApiResult<Response> {
    let changes = PersonChanges {
        first_name: body.first_name,
        middle_name: body.middle_name,
        last_name: body.last_name,
        department_id: body.department,
    };
    let p = state.ra.edit_person(&caller, id, version, changes).await?;
    let v = view_of(&state, &caller, p).await?;
    Ok(tagged(StatusCode::OK, v.version, &v))
}

#[derive(Serialize, ToSchema)]
pub struct PersonRetiredView {
    pub person: PersonView,
    /// Serials of the certificates revoked (affiliationChanged).
    pub revoked_certificates: Vec<String>,
}

async fn retired_answer(
    state: &AppState,
    caller: &Caller,
    r: Result<PersonRetired, Error>,
) -> Response {
    let r = async {
        let r = r?;
        Ok::<_, Error>(PersonRetiredView {
            person: view_of(state, caller, r.person).await?,
            revoked_certificates: r.revoked,
        })
    }
    .await;
    match r {
        Ok(v) => tagged(StatusCode::OK, v.person.version, &v),
        Err(e) => crate::web::problem::admin(&e),
    }
}

/// Delete a person: their valid certificates are revoked, the address is freed, the
/// record stays for the history.
#[utoipa::path(delete, path = "/api/v1/persons/{id}", tag = "persons",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = PersonRetiredView), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
) -> Response {
    let r = state.ra.remove_person(&caller, id, version).await;
    retired_answer(&state, &caller, r).await
}

/// Disable a person: no sign-in, enrollment or re-enrollment; valid certificates are
/// revoked.
#[utoipa::path(post, path = "/api/v1/persons/{id}/disable", tag = "persons",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header),
           ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = PersonRetiredView), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn disable_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    key: IdempotencyKey,
) -> Response {
    let what = format!("POST /api/v1/persons/{id}/disable");
    once(&state, &caller, key, &what, "", async {
        let r = state.ra.disable_person(&caller, id, version).await;
        retired_answer(&state, &caller, r).await
    })
    .await
}

/// Enable a disabled person again.
#[utoipa::path(post, path = "/api/v1/persons/{id}/enable", tag = "persons",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = PersonView), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn enable_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
) -> ApiResult<Response> {
    let p = state.ra.enable_person(&caller, id, version).await?;
    let v = view_of(&state, &caller, p).await?;
    Ok(tagged(StatusCode::OK, v.version, &v))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretIdDoc {
    /// The secret ID to set (12 to 128 characters, no spaces); absent for a generated one.
    pub secret_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SecretIdView {
    /// Shown once.
    pub secret_id: String,
}

/// A body that may be absent: none at all, or JSON.
async fn optional_json<T: serde::de::DeserializeOwned>(
    req: Request,
) -> Result<(Option<T>, String), Error> {
    let empty = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if empty || !req.headers().contains_key(header::CONTENT_TYPE) {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!("the body is larger than {MAX_JSON} bytes"),
                )
            })?;
        if bytes.is_empty() {
            return Ok((None, String::new()));
        }
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "send the body as application/json",
        ));
    }
    let bytes = body_bytes(req, "application/json", MAX_JSON).await?;
    if bytes.is_empty() {
        return Ok((None, String::new()));
    }
    Ok((Some(parse_json(&bytes)?), crate::ra::sha256_hex(&bytes)))
}

/// Set the given secret ID, or generate one; answered once.
#[utoipa::path(post, path = "/api/v1/persons/{id}/secret-id", tag = "persons",
    params(("id" = Id, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Option<SecretIdDoc>, description = "Optional"),
    responses((status = 200, body = SecretIdView), (status = 400, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn set_secret_id(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    req: Request,
) -> Response {
    let (body, digest) = match optional_json::<SecretIdDoc>(req).await {
        Ok(b) => b,
        Err(e) => return crate::web::problem::admin(&e),
    };
    let what = format!("POST /api/v1/persons/{id}/secret-id");
    once(&state, &caller, key, &what, &digest, async {
        let given = body.and_then(|b| b.secret_id).map(Secret::new);
        match state.ra.reset_person_secret_id(&caller, id, given).await {
            Ok(s) => json(
                StatusCode::OK,
                &SecretIdView {
                    secret_id: s.expose().to_string(),
                },
            ),
            Err(e) => crate::web::problem::admin(&e),
        }
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct UnlockView {
    /// Failed attempts forgotten.
    pub cleared_failures: u64,
}

/// Lift a lockout: forget the person's failed secret-ID and access-code attempts.
#[utoipa::path(post, path = "/api/v1/persons/{id}/unlock", tag = "persons",
    params(("id" = Id, Path)),
    responses((status = 200, body = UnlockView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn unlock_person(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let n = state.ra.unlock_person(&caller, id).await?;
    Ok(json(
        StatusCode::OK,
        &UnlockView {
            cleared_failures: n,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ImportErrorView {
    /// 1 is the header.
    pub line: usize,
    pub field: String,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ImportedView {
    pub line: usize,
    pub id: Id,
    pub email: String,
    /// Generated on request; shown once.
    pub secret_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportView {
    /// False for a dry run, or when a line has errors (then nothing was changed).
    pub applied: bool,
    pub rows: usize,
    pub errors: Vec<ImportErrorView>,
    pub created: Vec<ImportedView>,
}

fn import_view(r: ImportReport) -> ImportView {
    ImportView {
        applied: r.applied,
        rows: r.rows,
        errors: r
            .errors
            .into_iter()
            .map(|e| ImportErrorView {
                line: e.line,
                field: e.field,
                reason: e.reason,
            })
            .collect(),
        created: r
            .created
            .into_iter()
            .map(|c| ImportedView {
                line: c.line,
                id: c.id,
                email: c.email,
                secret_id: c.secret_id.map(|s| s.expose().to_string()),
            })
            .collect(),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Check every line and report, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Import persons from CSV (`email,first_name,middle_name,last_name,department,secret_id`;
/// `secret_id` empty for none, `generate` for a generated one). A dry run reports every bad
/// line; an apply adds everyone or, when a line is bad, nobody (422 with the lines).
#[utoipa::path(post, path = "/api/v1/organisations/{id}/persons/import", tag = "persons",
    params(("id" = Id, Path), ImportQuery, ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportView), (status = 201, body = ImportView),
              (status = 404, body = ProblemDoc), (status = 413, body = ProblemDoc),
              (status = 415, body = ProblemDoc), (status = 422, body = ImportView)),
    security(("bearer" = [])))]
async fn import_persons(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    key: IdempotencyKey,
    req: Request,
) -> Response {
    let bytes = match body_bytes(req, "text/csv", MAX_IMPORT_BYTES).await {
        Ok(b) => b,
        Err(e) => return crate::web::problem::admin(&e),
    };
    let digest = crate::ra::sha256_hex(&bytes);
    let what = format!(
        "POST /api/v1/organisations/{id}/persons/import?dry_run={}",
        q.dry_run
    );
    once(&state, &caller, key, &what, &digest, async {
        match state
            .ra
            .import_persons(&caller, id, &bytes, !q.dry_run)
            .await
        {
            Ok(r) if !r.errors.is_empty() && !q.dry_run => {
                let mut body = serde_json::to_value(import_view(r)).unwrap_or_default();
                body["type"] = "about:blank".into();
                body["title"] = "Unprocessable Content".into();
                body["status"] = 422.into();
                body["detail"] =
                    "some lines are not acceptable (see errors); nothing was imported".into();
                body["field"] = "body".into();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    body.to_string(),
                )
                    .into_response()
            }
            Ok(r) => {
                let status = if r.applied {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                json(status, &import_view(r))
            }
            Err(e) => crate::web::problem::admin(&e),
        }
    })
    .await
}
