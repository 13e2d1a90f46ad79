//! Certificate profiles: read by MRAOs and RAOs, changed by MRAOs.

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
use crate::domain::{
    Id, KeyType, Profile, SmimeGeneration, SmimeType, SmimeValidation, SubjectSource,
};
use crate::ra::admin::{ProfileChanges, ProfileRequest};
use crate::web::AppState;

/// A request enum with the wire names of a domain enum, so an unknown value is refused
/// with the list of the allowed ones.
macro_rules! wire_enum {
    ($(#[$m:meta])* $doc:ident => $dom:ty { $($v:ident = $text:literal => $dv:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub enum $doc { $(#[serde(rename = $text)] $v),+ }

        impl From<$doc> for $dom {
            fn from(d: $doc) -> $dom {
                match d { $($doc::$v => $dv),+ }
            }
        }
    };
}
pub(super) use wire_enum;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(show_profile, edit_profile, delete_profile))
}

wire_enum!(
    /// Where the subject comes from: the person record, or the device's request.
    SubjectSourceDoc => SubjectSource {
        Person = "person" => SubjectSource::Person,
        Device = "device" => SubjectSource::Device,
    }
);
wire_enum!(
    KeyTypeDoc => KeyType {
        Rsa2048 = "rsa-2048" => KeyType::Rsa { bits: 2048 },
        Rsa3072 = "rsa-3072" => KeyType::Rsa { bits: 3072 },
        Rsa4096 = "rsa-4096" => KeyType::Rsa { bits: 4096 },
        EcP256 = "ec-p256" => KeyType::EcP256,
        EcP384 = "ec-p384" => KeyType::EcP384,
    }
);
wire_enum!(
    /// S/MIME BR §7.1.6.1 validation type.
    SmimeValidationDoc => SmimeValidation {
        Mailbox = "mailbox" => SmimeValidation::Mailbox,
        Organization = "organization" => SmimeValidation::Organization,
        Sponsor = "sponsor" => SmimeValidation::Sponsor,
        Individual = "individual" => SmimeValidation::Individual,
    }
);
wire_enum!(
    /// S/MIME BR generation (`legacy` is not offered).
    SmimeGenerationDoc => SmimeGeneration {
        Multipurpose = "multipurpose" => SmimeGeneration::Multipurpose,
        Strict = "strict" => SmimeGeneration::Strict,
    }
);

/// The S/MIME BR type a person profile's certificates claim.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmimeDoc {
    pub validation: SmimeValidationDoc,
    /// Default `multipurpose`.
    pub generation: Option<SmimeGenerationDoc>,
}

impl From<SmimeDoc> for SmimeType {
    fn from(s: SmimeDoc) -> SmimeType {
        SmimeType {
            validation: s.validation.into(),
            generation: s
                .generation
                .map(Into::into)
                .unwrap_or(SmimeGeneration::Multipurpose),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SmimeView {
    pub validation: String,
    pub generation: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    pub id: Id,
    pub name: String,
    /// `person` or `device`.
    pub subject_source: String,
    /// `rsa-2048`, `rsa-3072`, `rsa-4096`, `ec-p256`, `ec-p384`.
    pub key_types: Vec<String>,
    pub default_key_type: String,
    /// Whole years.
    pub terms_years: Vec<u32>,
    pub default_term_years: u32,
    pub requires_approval: bool,
    pub smime: Option<SmimeView>,
    pub version: i64,
}

fn profile_view(p: Profile) -> ProfileView {
    ProfileView {
        id: p.id,
        name: p.name,
        subject_source: p.subject_source.as_str().into(),
        key_types: p.key_types.iter().map(|k| k.as_str().into()).collect(),
        default_key_type: p.default_key_type.as_str().into(),
        terms_years: p.terms_years,
        default_term_years: p.default_term_years,
        requires_approval: p.requires_approval,
        smime: p.smime.map(|t| SmimeView {
            validation: t.validation.as_str().into(),
            generation: t.generation.as_str().into(),
        }),
        version: p.version,
    }
}

/// Every profile (MRAO and RAO).
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles",
    params(PageQuery),
    responses((status = 200, body = Page<ProfileView>), (status = 403, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_profiles(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let all = state.ra.profiles(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &page(all, &q, |p| p.id, profile_view)?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfileDoc {
    pub name: String,
    pub subject_source: SubjectSourceDoc,
    pub key_types: Vec<KeyTypeDoc>,
    /// Default: the first key type.
    pub default_key_type: Option<KeyTypeDoc>,
    /// Whole years, 1 to 3 (S/MIME types: up to 2).
    pub terms_years: Vec<u32>,
    /// Default: the first term.
    pub default_term_years: Option<u32>,
    #[serde(default)]
    pub requires_approval: bool,
    pub smime: Option<SmimeDoc>,
}

/// Create a profile (MRAO).
#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles",
    request_body = NewProfileDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = ProfileView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn create_profile(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<NewProfileDoc>,
) -> Response {
    once(
        &state,
        &caller,
        key,
        "POST /api/v1/profiles",
        &digest,
        async {
            let r = ProfileRequest {
                name: body.name,
                subject_source: body.subject_source.into(),
                key_types: body.key_types.into_iter().map(Into::into).collect(),
                default_key_type: body.default_key_type.map(Into::into),
                terms_years: body.terms_years,
                default_term_years: body.default_term_years,
                requires_approval: body.requires_approval,
                smime: body.smime.map(Into::into),
            };
            respond(
                state.ra.add_profile(&caller, r).await.map(profile_view),
                StatusCode::CREATED,
            )
        },
    )
    .await
}

/// One profile.
#[utoipa::path(get, path = "/api/v1/profiles/{id}", tag = "profiles",
    params(("id" = Id, Path)),
    responses((status = 200, body = ProfileView), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_profile(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let p = state.ra.profile(&caller, id).await?;
    Ok(tagged(StatusCode::OK, p.version, &profile_view(p)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub name: Option<String>,
    pub subject_source: Option<SubjectSourceDoc>,
    pub key_types: Option<Vec<KeyTypeDoc>>,
    pub default_key_type: Option<KeyTypeDoc>,
    pub terms_years: Option<Vec<u32>>,
    pub default_term_years: Option<u32>,
    pub requires_approval: Option<bool>,
    /// `null` removes the S/MIME type.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<SmimeDoc>)]
    pub smime: Option<Option<SmimeDoc>>,
}

/// Change a profile (MRAO); certificates already issued keep what they were issued with.
#[utoipa::path(patch, path = "/api/v1/profiles/{id}", tag = "profiles",
    params(("id" = Id, Path), ("If-Match" = Option<String>, Header)),
    request_body = ProfilePatch,
    responses((status = 200, body = ProfileView), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc), (status = 412, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn edit_profile(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    IfMatch(version): IfMatch,
    ApiJson(body, _): ApiJson<ProfilePatch>,
) -> ApiResult<Response> {
    let c = ProfileChanges {
        name: body.name,
        subject_source: body.subject_source.map(Into::into),
        key_types: body
            .key_types
            .map(|k| k.into_iter().map(Into::into).collect()),
        default_key_type: body.default_key_type.map(Into::into),
        terms_years: body.terms_years,
        default_term_years: body.default_term_years,
        requires_approval: body.requires_approval,
        smime: body.smime.map(|s| s.map(Into::into)),
    };
    let p = state.ra.edit_profile(&caller, id, version, c).await?;
    Ok(tagged(StatusCode::OK, p.version, &profile_view(p)))
}

/// Delete a profile no account uses and no order references (MRAO).
#[utoipa::path(delete, path = "/api/v1/profiles/{id}", tag = "profiles",
    params(("id" = Id, Path)),
    responses((status = 204), (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn delete_profile(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    state.ra.remove_profile(&caller, id).await?;
    Ok(done())
}
