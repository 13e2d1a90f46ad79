//! The audit trail: events within the caller's scope, and the chain's verification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admins::RoleDoc;
use super::ApiQuery;
use super::{json, page, AdminCaller, ApiResult, Page, PageQuery, ProblemDoc};
use crate::domain::{AuditEvent, Id};
use crate::ra::admin::AuditFilter;
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_events))
        .routes(routes!(verify_audit))
}

/// One event, with its place in the hash chain.
#[derive(Serialize, ToSchema)]
pub struct AuditEventDoc {
    /// Position in the chain, from 1.
    pub seq: i64,
    pub at: i64,
    /// `admin:<email>`, `api-key:<id> (<email>)`, `cli:<name>`, a person or a device.
    pub actor: String,
    pub role: Option<RoleDoc>,
    pub action: String,
    pub object: String,
    pub detail: String,
    /// JSON of the object before and after the change, as hashed.
    pub before: Option<String>,
    pub after: Option<String>,
    /// The client address.
    pub source: String,
    pub request_id: Option<String>,
    pub organisation_id: Option<Id>,
    pub department_id: Option<Id>,
    pub prev_hash: String,
    pub hash: String,
}

fn event_doc(e: AuditEvent) -> AuditEventDoc {
    AuditEventDoc {
        seq: e.seq,
        at: e.at,
        actor: e.actor,
        role: e.role.map(Into::into),
        action: e.action,
        object: e.object,
        detail: e.detail,
        before: e.before,
        after: e.after,
        source: e.source,
        request_id: e.request_id,
        organisation_id: e.organisation_id,
        department_id: e.department_id,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditFilters {
    /// Events at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Events before this time (unix seconds).
    pub until: Option<i64>,
    /// Exactly this actor, as events name it.
    pub actor: Option<String>,
    /// Exactly this action (`certificate.revoked`, `order.approved`, …).
    pub action: Option<String>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Audit events in chain order within the caller's scope: an RAO's organisations, a
/// DRAO's departments, everything for an MRAO.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit",
    params(AuditFilters),
    responses((status = 200, body = Page<AuditEventDoc>), (status = 400, body = ProblemDoc),
              (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_audit_events(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(f): ApiQuery<AuditFilters>,
) -> ApiResult<Response> {
    let pq = PageQuery {
        limit: f.limit,
        cursor: f.cursor,
    };
    let filter = AuditFilter {
        after_seq: pq.after()?,
        since: f.since,
        until: f.until,
        actor: f.actor,
        action: f.action,
        organisations: None,
        departments: None,
        limit: pq.limit()?,
    };
    let events = state.ra.audit_events(&caller, filter).await?;
    Ok(json(
        StatusCode::OK,
        &page(events, &pq, |e| e.seq, event_doc)?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ChainReportDoc {
    /// Events checked before the first break (all of them when intact).
    pub checked: u64,
    /// The sequence number of the newest event, as the chain's head records it.
    pub head_seq: i64,
    pub intact: bool,
    /// The first removed, altered or reordered event, in words; null when intact.
    pub first_break: Option<String>,
}

/// Walk the whole hash chain and report the first break (MRAO only).
#[utoipa::path(get, path = "/api/v1/audit-events/verify", tag = "audit",
    responses((status = 200, body = ChainReportDoc), (status = 403, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn verify_audit(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> ApiResult<Response> {
    let r = state.ra.verify_audit(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &ChainReportDoc {
            checked: r.checked,
            head_seq: r.head_seq,
            intact: r.first_break.is_none(),
            first_break: r.first_break.map(|b| b.to_string()),
        },
    ))
}
