//! Enrollment accounts; a generated access code is answered once, in `access_code`.

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
    done, double_option, json, page, tagged, AdminCaller, ApiJson, ApiResult, IfMatch, Page,
    PageQuery, ProblemDoc,
};
use crate::domain::{Account, Authorization, CsrMethod, Id, Pkcs12Encryption, Secret};
use crate::ra::admin::{AccountChanges, AccountRequest, AccountSaved};
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(show_account, edit_account, delete_account))
        .routes(routes!(rotate_access_code))
}

wire_enum!(
    /// Who makes the key pair: the client (a CSR), the server, or either.
    CsrMethodDoc => CsrMethod {
        Server = "server" => CsrMethod::Server,
        Client = "client" => CsrMethod::Client,
        Both = "both" => CsrMethod::Both,
    }
);
wire_enum!(
    /// `access-code`: the account needs its access code; `none`: listed to the
    /// organisation's authenticated persons.
    AuthorizationDoc => Authorization {
        AccessCode = "access-code" => Authorization::AccessCode,
        None = "none" => Authorization::None,
    }
);
wire_enum!(
    /// `modern` (AES-256) or `legacy` (3DES, for older keychains).
    Pkcs12EncryptionDoc => Pkcs12Encryption {
        Modern = "modern" => Pkcs12Encryption::Modern,
        Legacy = "legacy" => Pkcs12Encryption::Legacy,
    }
);

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: Id,
    pub endpoint: Id,
    pub organisation: Id,
    pub department: Option<Id>,
    pub name: String,
    /// Profile ids in order; EST uses the first.
    pub profiles: Vec<Id>,
    pub csr_method: String,
    pub allow_empty_pkcs12_password: bool,
    pub authorization: String,
    pub est_label: Option<String>,
    pub is_default: bool,
    pub pkcs12_encryption: String,
    /// Device CSRs may name only the Basic username (the device identifier).
    pub bind_device_names: bool,
    pub version: i64,
    /// A generated access code; present only in the answer that made it, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
}

fn account_view(a: Account) -> AccountView {
    AccountView {
        id: a.id,
        endpoint: a.endpoint_id,
        organisation: a.organisation_id,
        department: a.department_id,
        name: a.name,
        profiles: a.profile_ids,
        csr_method: a.csr_method.as_str().into(),
        allow_empty_pkcs12_password: a.allow_empty_pkcs12_password,
        authorization: a.authorization.as_str().into(),
        est_label: a.est_label,
        is_default: a.is_default,
        pkcs12_encryption: a.pkcs12_encryption.as_str().into(),
        bind_device_names: a.bind_device_names,
        version: a.version,
        access_code: None,
    }
}

fn saved(status: StatusCode, s: AccountSaved) -> Response {
    let version = s.account.version;
    let mut view = account_view(s.account);
    view.access_code = s.access_code.map(|c| c.expose().to_string());
    tagged(status, version, &view)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// Only the accounts of this organisation.
    pub organisation: Option<Id>,
    /// Only the accounts of this endpoint.
    pub endpoint: Option<Id>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Accounts of the organisations the caller manages.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    params(AccountQuery),
    responses((status = 200, body = Page<AccountView>), (status = 403, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_accounts(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<AccountQuery>,
) -> ApiResult<Response> {
    let all = state
        .ra
        .accounts(&caller, q.organisation, q.endpoint)
        .await?;
    let pq = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(json(
        StatusCode::OK,
        &page(all, &pq, |a| a.id, account_view)?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountDoc {
    pub endpoint: Id,
    /// The department certificates carry and persons must belong to.
    pub department: Option<Id>,
    pub name: String,
    /// Profile ids in order; EST uses the first.
    pub profiles: Vec<Id>,
    pub csr_method: CsrMethodDoc,
    #[serde(default)]
    pub allow_empty_pkcs12_password: bool,
    pub authorization: AuthorizationDoc,
    /// For `access-code`: 8 to 128 characters; generated (and answered once) when absent.
    pub access_code: Option<String>,
    /// `[a-z0-9-]{1,64}`, not an EST operation name.
    pub est_label: Option<String>,
    /// The account for EST requests without a label.
    #[serde(default)]
    pub is_default: bool,
    /// Default `modern`.
    pub pkcs12_encryption: Option<Pkcs12EncryptionDoc>,
    /// Access-code accounts with a device profile first: the CSR's CN and every dNSName
    /// must equal the Basic username (ASCII case ignored). Default `false`.
    #[serde(default)]
    pub bind_device_names: bool,
}

/// Create an account on an endpoint.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = NewAccountDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = AccountView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_account(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewAccountDoc>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/accounts",
        &digest,
        async {
            let r = AccountRequest {
                endpoint_id: body.endpoint,
                department_id: body.department,
                name: body.name,
                profile_ids: body.profiles,
                csr_method: body.csr_method.into(),
                allow_empty_pkcs12_password: body.allow_empty_pkcs12_password,
                authorization: body.authorization.into(),
                access_code: body.access_code.map(Secret::new),
                est_label: body.est_label,
                is_default: body.is_default,
                pkcs12_encryption: body
                    .pkcs12_encryption
                    .map(Into::into)
                    .unwrap_or(Pkcs12Encryption::Modern),
                bind_device_names: body.bind_device_names,
            };
            match state.ra.add_account(&caller, r).await {
                Ok(s) => saved(StatusCode::CREATED, s),
                Err(e) => crate::web::problem::admin(&e),
            }
        },
    )
    .await
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = Id, Path)),
    responses((status = 200, body = AccountView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_account(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let a = state.ra.account(&caller, id).await?;
    Ok(tagged(StatusCode::OK, a.version, &account_view(a)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub name: Option<String>,
    /// `null`: no department.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Id>)]
    pub department: Option<Option<Id>>,
    pub profiles: Option<Vec<Id>>,
    pub csr_method: Option<CsrMethodDoc>,
    pub allow_empty_pkcs12_password: Option<bool>,
    /// Switching to `access-code` without an `access_code` generates one (answered once).
    pub authorization: Option<AuthorizationDoc>,
    pub access_code: Option<String>,
    /// `null`: no EST label.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub est_label: Option<Option<String>>,
    pub is_default: Option<bool>,
    pub pkcs12_encryption: Option<Pkcs12EncryptionDoc>,
    /// See `NewAccountDoc::bind_device_names`.
    pub bind_device_names: Option<bool>,
}

/// Change an account.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = AccountPatch,
    responses((status = 200, body = AccountView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_account(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<AccountPatch>,
) -> ApiResult<Response> {
    let c = AccountChanges {
        name: body.name,
        department_id: body.department,
        profile_ids: body.profiles,
        csr_method: body.csr_method.map(Into::into),
        allow_empty_pkcs12_password: body.allow_empty_pkcs12_password,
        authorization: body.authorization.map(Into::into),
        access_code: body.access_code.map(Secret::new),
        est_label: body.est_label,
        is_default: body.is_default,
        pkcs12_encryption: body.pkcs12_encryption.map(Into::into),
        bind_device_names: body.bind_device_names,
    };
    let s = state.ra.edit_account(&caller, id, version, c).await?;
    Ok(saved(StatusCode::OK, s))
}

/// Delete an account: it no longer enrolls; its orders and certificates stay.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = Id, Path)),
    responses((status = 204), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_account(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    state.ra.remove_account(&caller, id).await?;
    Ok(done())
}

/// A new access code, answered once in `access_code`; the old one stops working.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/access-code", tag = "accounts",
    params(("id" = Id, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 200, body = AccountView), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn rotate_access_code(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    Path(id): Path<Id>,
) -> Response {
    let what = format!("POST /api/v1/accounts/{id}/access-code");
    once(&state, &caller, key, &what, "", async {
        match state.ra.rotate_access_code(&caller, id).await {
            Ok(s) => saved(StatusCode::OK, s),
            Err(e) => crate::web::problem::admin(&e),
        }
    })
    .await
}
