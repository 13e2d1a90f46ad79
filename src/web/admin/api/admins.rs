//! Sessions (password + TOTP sign-in), the caller itself, administrators and API keys.

use super::ApiQuery;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{bearer, request_id};
use super::idempotency::{once, IdempotencyKey};
use super::{
    done, json, page, tagged, AdminCaller, ApiJson, ApiResult, IfMatch, Page, PageQuery, ProblemDoc,
};
use crate::domain::{Admin, ApiKeyRecord, Id, Role, Secret};
use crate::error::Error;
use crate::ra::admin::{AdminChanges, AdminRequest};
use crate::web::{AppState, ConnInfo};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(list_admins, create_admin))
        .routes(routes!(show_admin, edit_admin, delete_admin))
        .routes(routes!(reset_credentials))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

/// An administrator's role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleDoc {
    Mrao,
    Rao,
    Drao,
}

impl From<RoleDoc> for Role {
    fn from(r: RoleDoc) -> Role {
        match r {
            RoleDoc::Mrao => Role::Mrao,
            RoleDoc::Rao => Role::Rao,
            RoleDoc::Drao => Role::Drao,
        }
    }
}

impl From<Role> for RoleDoc {
    fn from(r: Role) -> RoleDoc {
        match r {
            Role::Mrao => RoleDoc::Mrao,
            Role::Rao => RoleDoc::Rao,
            Role::Drao => RoleDoc::Drao,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminView {
    pub id: Id,
    pub name: String,
    pub email: String,
    pub role: RoleDoc,
    /// RAO: the organisations it administers.
    pub organisations: Vec<Id>,
    /// DRAO: the departments it administers.
    pub departments: Vec<Id>,
    pub disabled: bool,
    /// False for an API-key-only administrator.
    pub signs_in: bool,
    pub created_at: i64,
    pub version: i64,
}

fn admin_view(a: Admin) -> AdminView {
    AdminView {
        id: a.id,
        name: a.name,
        email: a.email.as_str().to_string(),
        role: a.role.into(),
        organisations: a.organisation_ids,
        departments: a.department_ids,
        disabled: a.disabled,
        signs_in: a.has_password,
        created_at: a.created_at,
        version: a.version,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    /// The 6-digit code of the authenticator app.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// Send as `Authorization: Bearer <token>`; shown once.
    pub token: String,
    pub expires_at: i64,
    /// The session also ends after this many seconds without a request.
    pub idle_timeout_secs: i64,
    pub admin: AdminView,
}

/// Sign in with email, password and TOTP code; answers a session token.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body = SignIn,
    responses((status = 201, body = SessionView), (status = 401, body = ProblemDoc),
              (status = 429, body = ProblemDoc)))]
async fn sign_in(
    State(state): State<AppState>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    ApiJson(body, _): ApiJson<SignIn>,
) -> ApiResult<Response> {
    let source = conn
        .map(|c| c.peer.to_string())
        .unwrap_or_else(|| "unknown".into());
    let s = state
        .ra
        .sign_in_admin(
            &body.email,
            &Secret::new(body.password),
            &body.code,
            &source,
            Some(request_id(&headers)),
        )
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &SessionView {
            token: s.token.expose().to_string(),
            expires_at: s.expires_at,
            idle_timeout_secs: crate::ra::admin::SESSION_IDLE_SECS,
            admin: admin_view(s.admin),
        },
    ))
}

/// End the session whose token authenticates this request.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions",
    responses((status = 204), (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn sign_out(
    State(state): State<AppState>,
    AdminCaller(_caller): AdminCaller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = bearer(&headers) {
        state.ra.sign_out_admin(&token).await?;
    }
    Ok(done())
}

#[derive(Serialize, ToSchema)]
pub struct MeView {
    /// As the audit trail names this caller.
    pub actor: String,
    pub role: RoleDoc,
    pub admin: Option<AdminView>,
}

/// Who the caller is: its role and scope.
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions",
    responses((status = 200, body = MeView), (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn me(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> ApiResult<Response> {
    let admin = match caller.principal.admin_id {
        Some(id) => Some(admin_view(state.ra.admin(&caller, id).await?)),
        None => None,
    };
    Ok(json(
        StatusCode::OK,
        &MeView {
            actor: caller.principal.name.clone(),
            role: caller.principal.role.into(),
            admin,
        },
    ))
}

/// Administrators the caller may see.
#[utoipa::path(get, path = "/api/v1/admins", tag = "administrators",
    params(PageQuery),
    responses((status = 200, body = Page<AdminView>), (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_admins(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let admins = state.ra.admins(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &page(admins, &q, |a| a.id, admin_view)?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminDoc {
    pub name: String,
    pub email: String,
    pub role: RoleDoc,
    /// RAO: its organisations (ids).
    #[serde(default)]
    pub organisations: Vec<Id>,
    /// DRAO: its departments (ids).
    #[serde(default)]
    pub departments: Vec<Id>,
    /// For an administrator who signs in (with a TOTP secret answered once); omit for
    /// one that only uses API keys.
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminCreated {
    pub admin: AdminView,
    /// The TOTP secret (base32) for the authenticator app; shown once.
    pub totp_secret: Option<String>,
    /// The same as an `otpauth://` URI; shown once.
    pub totp_uri: Option<String>,
}

/// Appoint an administrator.
#[utoipa::path(post, path = "/api/v1/admins", tag = "administrators",
    request_body = NewAdminDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = AdminCreated), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_admin(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewAdminDoc>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/admins",
        &digest,
        async {
            let r = AdminRequest {
                name: body.name,
                email: body.email,
                role: body.role.into(),
                organisation_ids: body.organisations,
                department_ids: body.departments,
                password: body.password.map(Secret::new),
            };
            match state.ra.add_admin(&caller, r).await {
                Ok((admin, totp)) => json(
                    StatusCode::CREATED,
                    &AdminCreated {
                        admin: admin_view(admin),
                        totp_secret: totp.as_ref().map(|t| t.secret.expose().to_string()),
                        totp_uri: totp.as_ref().map(|t| t.uri.expose().to_string()),
                    },
                ),
                Err(e) => crate::web::problem::admin(&e),
            }
        },
    )
    .await
}

/// One administrator.
#[utoipa::path(get, path = "/api/v1/admins/{id}", tag = "administrators",
    params(("id" = Id, Path)),
    responses((status = 200, body = AdminView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_admin(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let a = state.ra.admin(&caller, id).await?;
    Ok(tagged(StatusCode::OK, a.version, &admin_view(a)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminPatch {
    pub name: Option<String>,
    pub role: Option<RoleDoc>,
    pub organisations: Option<Vec<Id>>,
    pub departments: Option<Vec<Id>>,
    /// A disabled administrator cannot sign in or use its API keys; its sessions end.
    pub disabled: Option<bool>,
}

/// Change an administrator's name, role, scope, or disable it.
#[utoipa::path(patch, path = "/api/v1/admins/{id}", tag = "administrators",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = AdminPatch,
    responses((status = 200, body = AdminView), (status = 403, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_admin(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<AdminPatch>,
) -> ApiResult<Response> {
    let changes = AdminChanges {
        name: body.name,
        role: body.role.map(Into::into),
        organisation_ids: body.organisations,
        department_ids: body.departments,
        disabled: body.disabled,
    };
    let a = state.ra.edit_admin(&caller, id, version, changes).await?;
    Ok(tagged(StatusCode::OK, a.version, &admin_view(a)))
}

/// Remove an administrator with its sessions and API keys.
#[utoipa::path(delete, path = "/api/v1/admins/{id}", tag = "administrators",
    params(("id" = Id, Path)),
    responses((status = 204), (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_admin(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    state.ra.delete_admin(&caller, id).await?;
    Ok(done())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsDoc {
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpView {
    /// Shown once.
    pub totp_secret: String,
    /// Shown once.
    pub totp_uri: String,
}

/// Set a new password and TOTP secret; the administrator's sessions end.
#[utoipa::path(post, path = "/api/v1/admins/{id}/credentials", tag = "administrators",
    params(("id" = Id, Path)),
    request_body = CredentialsDoc,
    responses((status = 200, body = TotpView), (status = 403, body = ProblemDoc),
              (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn reset_credentials(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    ApiJson(body, _): ApiJson<CredentialsDoc>,
) -> ApiResult<Response> {
    let t = state
        .ra
        .reset_admin_credentials(&caller, id, &Secret::new(body.password))
        .await?;
    Ok(json(
        StatusCode::OK,
        &TotpView {
            totp_secret: t.secret.expose().to_string(),
            totp_uri: t.uri.expose().to_string(),
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Id,
    pub admin: Id,
    pub name: String,
    /// The public part of the key, as in `eg_<key_id>_…`.
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

fn key_view(k: ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: k.id,
        admin: k.admin_id,
        name: k.name,
        key_id: k.key_id,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        last_used_at: k.last_used_at,
    }
}

/// API keys the caller may see: its own and those of administrators it manages.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "administrators",
    params(PageQuery),
    responses((status = 200, body = Page<ApiKeyView>), (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let keys = state.ra.api_keys(&caller).await?;
    Ok(json(StatusCode::OK, &page(keys, &q, |k| k.id, key_view)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    /// The administrator whose role and scope the key carries (default: the caller).
    pub admin: Option<Id>,
    /// 1 to 366 days (default 90).
    pub expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreatedView {
    pub key: ApiKeyView,
    /// The key itself, for `Authorization: Bearer`; shown once, stored only hashed.
    pub token: String,
}

/// Make an API key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "administrators",
    request_body = NewApiKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = ApiKeyCreatedView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewApiKey>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/api-keys",
        &digest,
        async {
            respond(
                state
                    .ra
                    .create_api_key(
                        &caller,
                        body.admin,
                        &body.name,
                        body.expires_in_days.unwrap_or(90),
                    )
                    .await
                    .map(|k| ApiKeyCreatedView {
                        token: k.token.expose().to_string(),
                        key: key_view(k.record),
                    }),
                StatusCode::CREATED,
            )
        },
    )
    .await
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "administrators",
    params(("id" = Id, Path)),
    responses((status = 204), (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn revoke_api_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    state.ra.revoke_api_key(&caller, id).await?;
    Ok(done())
}

/// An RA result as an answer with `status`, or its problem document.
pub fn respond<T: Serialize>(r: Result<T, Error>, status: StatusCode) -> Response {
    match r {
        Ok(v) => json(status, &v),
        Err(e) => crate::web::problem::admin(&e),
    }
}
