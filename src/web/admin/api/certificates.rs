//! Certificates: search, one certificate, its PEM and DER, and revocation.

use super::ApiQuery;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admins::respond;
use super::idempotency::{once, IdempotencyKey};
use super::{json, page, AdminCaller, ApiJson, ApiResult, Page, PageQuery, ProblemDoc};
use crate::domain::{CertStatus, Id, RevocationReason};
use crate::ra::admin::{CertificateDetails, CertificateQuery};
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_certificates))
        .routes(routes!(show_certificate))
        .routes(routes!(certificate_pem))
        .routes(routes!(certificate_der))
        .routes(routes!(revoke_certificate))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CertStatusDoc {
    Valid,
    Revoked,
}

impl From<CertStatusDoc> for CertStatus {
    fn from(s: CertStatusDoc) -> CertStatus {
        match s {
            CertStatusDoc::Valid => CertStatus::Valid,
            CertStatusDoc::Revoked => CertStatus::Revoked,
        }
    }
}

impl From<CertStatus> for CertStatusDoc {
    fn from(s: CertStatus) -> CertStatusDoc {
        match s {
            CertStatus::Valid => CertStatusDoc::Valid,
            CertStatus::Revoked => CertStatusDoc::Revoked,
        }
    }
}

/// RFC 5280 §5.3.1 CRLReason, as its ASN.1 names spell it. `certificateHold` is refused:
/// a certificate cannot be suspended, only revoked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ReasonDoc {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl From<ReasonDoc> for RevocationReason {
    fn from(r: ReasonDoc) -> RevocationReason {
        match r {
            ReasonDoc::Unspecified => RevocationReason::Unspecified,
            ReasonDoc::KeyCompromise => RevocationReason::KeyCompromise,
            ReasonDoc::AffiliationChanged => RevocationReason::AffiliationChanged,
            ReasonDoc::Superseded => RevocationReason::Superseded,
            ReasonDoc::CessationOfOperation => RevocationReason::CessationOfOperation,
            ReasonDoc::CertificateHold => RevocationReason::CertificateHold,
            ReasonDoc::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl From<RevocationReason> for ReasonDoc {
    fn from(r: RevocationReason) -> ReasonDoc {
        match r {
            RevocationReason::Unspecified => ReasonDoc::Unspecified,
            RevocationReason::KeyCompromise => ReasonDoc::KeyCompromise,
            RevocationReason::AffiliationChanged => ReasonDoc::AffiliationChanged,
            RevocationReason::Superseded => ReasonDoc::Superseded,
            RevocationReason::CessationOfOperation => ReasonDoc::CessationOfOperation,
            RevocationReason::CertificateHold => ReasonDoc::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => ReasonDoc::PrivilegeWithdrawn,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RevocationDoc {
    pub at: i64,
    pub reason: ReasonDoc,
    /// Who revoked it, as the audit trail names them.
    pub by: String,
}

#[derive(Serialize, ToSchema)]
pub struct CertificateDoc {
    pub id: Id,
    /// Upper-case hex.
    pub serial: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub status: CertStatusDoc,
    pub revocation: Option<RevocationDoc>,
    pub order_id: Id,
    pub account_id: Id,
    pub account: String,
    pub organisation_id: Id,
    pub person_id: Option<Id>,
    pub person_email: Option<String>,
    pub requester: String,
}

fn certificate_doc(d: CertificateDetails) -> CertificateDoc {
    let c = d.certificate;
    CertificateDoc {
        id: c.id,
        serial: c.serial,
        subject: c.subject,
        not_before: c.not_before,
        not_after: c.not_after,
        status: c.status.into(),
        revocation: c.revocation.map(|r| RevocationDoc {
            at: r.at,
            reason: r.reason.into(),
            by: r.by,
        }),
        order_id: c.order_id,
        account_id: d.account_id,
        account: d.account,
        organisation_id: d.organisation_id,
        person_id: d.person.as_ref().map(|p| p.0),
        person_email: d.person.map(|p| p.1),
        requester: d.requester,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CertificateFilters {
    /// Hex, any case, colons allowed.
    pub serial: Option<String>,
    /// The person's email or the requester.
    pub email: Option<String>,
    /// Part of the subject, any case.
    pub subject: Option<String>,
    /// Certificates of this account (id).
    pub account: Option<Id>,
    pub status: Option<CertStatusDoc>,
    /// notAfter at or after this time (unix seconds).
    pub expires_after: Option<i64>,
    /// notAfter before this time (unix seconds).
    pub expires_before: Option<i64>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Certificates the caller reaches, oldest first, filtered.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates",
    params(CertificateFilters),
    responses((status = 200, body = Page<CertificateDoc>), (status = 400, body = ProblemDoc),
              (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_certificates(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(f): ApiQuery<CertificateFilters>,
) -> ApiResult<Response> {
    let pq = PageQuery {
        limit: f.limit,
        cursor: f.cursor,
    };
    let q = CertificateQuery {
        serial: f.serial,
        email: f.email,
        subject: f.subject,
        account_id: f.account,
        status: f.status.map(Into::into),
        expires_after: f.expires_after,
        expires_before: f.expires_before,
        after_id: pq.after()?,
        limit: pq.limit()?,
    };
    let found = state.ra.search_certificates(&caller, &q).await?;
    Ok(json(
        StatusCode::OK,
        &page(found, &pq, |c| c.certificate.id, certificate_doc)?,
    ))
}

/// One certificate.
#[utoipa::path(get, path = "/api/v1/certificates/{id}", tag = "certificates",
    params(("id" = Id, Path)),
    responses((status = 200, body = CertificateDoc), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_certificate(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let c = state.ra.show_certificate(&caller, id).await?;
    Ok(json(StatusCode::OK, &certificate_doc(c)))
}

fn download(media: &'static str, serial: &str, ext: &str, body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, media)], body).into_response();
    // The serial is hex, so the header value is plain ASCII.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{serial}.{ext}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// The certificate in PEM, followed by the issuing CA chain (RFC 8555 §9.1).
#[utoipa::path(get, path = "/api/v1/certificates/{id}/pem", tag = "certificates",
    params(("id" = Id, Path)),
    responses((status = 200, content_type = "application/pem-certificate-chain", body = String),
              (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn certificate_pem(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let (serial, text) = state.ra.certificate_pem_chain(&caller, id).await?;
    Ok(download(
        "application/pem-certificate-chain",
        &serial,
        "pem",
        text.into_bytes(),
    ))
}

/// The certificate alone, DER (RFC 2585).
#[utoipa::path(get, path = "/api/v1/certificates/{id}/der", tag = "certificates",
    params(("id" = Id, Path)),
    responses((status = 200, content_type = "application/pkix-cert", body = Vec<u8>),
              (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn certificate_der(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let c = state.ra.show_certificate(&caller, id).await?.certificate;
    Ok(download("application/pkix-cert", &c.serial, "cer", c.der))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeDoc {
    pub reason: ReasonDoc,
}

/// Revoke a certificate; the CRL and OCSP say so within seconds. One revoked before
/// answers `409`.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/revoke", tag = "certificates",
    params(("id" = Id, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    request_body = RevokeDoc,
    responses((status = 200, body = CertificateDoc), (status = 400, body = ProblemDoc),
              (status = 403, body = ProblemDoc), (status = 404, body = ProblemDoc),
              (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn revoke_certificate(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<RevokeDoc>,
) -> Response {
    let what = format!("POST /api/v1/certificates/{id}/revoke");
    once(&state, &caller, key, &what, &digest, async {
        respond(
            state
                .ra
                .revoke_certificate(&caller, id, body.reason.into())
                .await
                .map(certificate_doc),
            StatusCode::OK,
        )
    })
    .await
}
