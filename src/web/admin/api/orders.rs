//! Orders: the approvals queue, one order, and the decision on it.

use super::ApiQuery;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admins::respond;
use super::idempotency::{once, IdempotencyKey};
use super::{json, page, AdminCaller, ApiJson, ApiResult, Page, PageQuery, ProblemDoc};
use crate::domain::{Id, OrderStatus};
use crate::ra::admin::{OrderDetails, OrderQuery};
use crate::web::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(show_order))
        .routes(routes!(approve_order))
        .routes(routes!(reject_order))
}

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusDoc {
    PendingApproval,
    Approved,
    Signing,
    Issued,
    Rejected,
    Failed,
}

impl From<OrderStatusDoc> for OrderStatus {
    fn from(s: OrderStatusDoc) -> OrderStatus {
        match s {
            OrderStatusDoc::PendingApproval => OrderStatus::PendingApproval,
            OrderStatusDoc::Approved => OrderStatus::Approved,
            OrderStatusDoc::Signing => OrderStatus::Signing,
            OrderStatusDoc::Issued => OrderStatus::Issued,
            OrderStatusDoc::Rejected => OrderStatus::Rejected,
            OrderStatusDoc::Failed => OrderStatus::Failed,
        }
    }
}

impl From<OrderStatus> for OrderStatusDoc {
    fn from(s: OrderStatus) -> OrderStatusDoc {
        match s {
            OrderStatus::PendingApproval => OrderStatusDoc::PendingApproval,
            OrderStatus::Approved => OrderStatusDoc::Approved,
            OrderStatus::Signing => OrderStatusDoc::Signing,
            OrderStatus::Issued => OrderStatusDoc::Issued,
            OrderStatus::Rejected => OrderStatusDoc::Rejected,
            OrderStatus::Failed => OrderStatusDoc::Failed,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderDoc {
    pub id: Id,
    pub status: OrderStatusDoc,
    pub account_id: Id,
    pub account: String,
    pub organisation_id: Id,
    /// The person's department.
    pub department_id: Option<Id>,
    pub profile_id: Id,
    pub profile: String,
    pub person_id: Option<Id>,
    pub person_email: Option<String>,
    /// Who asked: the person's email or a device identifier.
    pub requester: String,
    pub key_type: String,
    pub term_years: u32,
    /// Reserved when signing begins.
    pub serial: Option<String>,
    /// Once issued.
    pub certificate_id: Option<Id>,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
}

fn order_doc(d: OrderDetails) -> OrderDoc {
    let o = d.order;
    let decision = o.decision;
    OrderDoc {
        id: o.id,
        status: o.status.into(),
        account_id: o.account_id,
        account: d.account,
        organisation_id: d.organisation_id,
        department_id: d.department_id,
        profile_id: o.profile_id,
        profile: d.profile,
        person_id: d.person.as_ref().map(|p| p.0),
        person_email: d.person.map(|p| p.1),
        requester: o.requester,
        key_type: o.key_type,
        term_years: o.term_years,
        serial: o.serial,
        certificate_id: d.certificate_id,
        created_at: o.created_at,
        decided_by: decision.as_ref().map(|x| x.by.clone()),
        decided_at: decision.as_ref().map(|x| x.at),
        decision_reason: decision.and_then(|x| x.reason),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderFilters {
    pub status: Option<OrderStatusDoc>,
    /// Orders of this account (id).
    pub account: Option<Id>,
    /// Only orders waiting for a decision.
    #[serde(default)]
    pub pending: bool,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Orders the caller reaches, oldest first; `pending=true` is the approvals queue.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(OrderFilters),
    responses((status = 200, body = Page<OrderDoc>), (status = 400, body = ProblemDoc),
              (status = 401, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(f): ApiQuery<OrderFilters>,
) -> ApiResult<Response> {
    let pq = PageQuery {
        limit: f.limit,
        cursor: f.cursor,
    };
    let q = OrderQuery {
        status: f.status.map(Into::into),
        pending: f.pending,
        account_id: f.account,
        after_id: pq.after()?,
        limit: pq.limit()?,
    };
    let found = state.ra.search_orders(&caller, &q).await?;
    Ok(json(
        StatusCode::OK,
        &page(found, &pq, |o| o.order.id, order_doc)?,
    ))
}

/// One order.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = Id, Path)),
    responses((status = 200, body = OrderDoc), (status = 404, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn show_order(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
) -> ApiResult<Response> {
    let o = state.ra.show_order(&caller, id).await?;
    Ok(json(StatusCode::OK, &order_doc(o)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveDoc {
    /// Kept with the decision (one line, at most 500 characters).
    pub reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectDoc {
    /// Told to the requester (one line, at most 500 characters).
    pub reason: String,
}

/// Approve a waiting order; a CSR the client sent is signed at once. An order decided
/// before answers `409`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/approve", tag = "orders",
    params(("id" = Id, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    request_body = ApproveDoc,
    responses((status = 200, body = OrderDoc), (status = 400, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn approve_order(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<ApproveDoc>,
) -> Response {
    let what = format!("POST /api/v1/orders/{id}/approve");
    once(&state, &caller, key, &what, &digest, async {
        respond(
            state
                .ra
                .approve_order(&caller, id, body.reason)
                .await
                .map(order_doc),
            StatusCode::OK,
        )
    })
    .await
}

/// Reject a waiting order with the reason the requester is told. An order decided before
/// answers `409`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/reject", tag = "orders",
    params(("id" = Id, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    request_body = RejectDoc,
    responses((status = 200, body = OrderDoc), (status = 400, body = ProblemDoc),
              (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)),
    security(("bearer" = [])))]
async fn reject_order(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<Id>,
    key: IdempotencyKey,
    ApiJson(body, digest): ApiJson<RejectDoc>,
) -> Response {
    let what = format!("POST /api/v1/orders/{id}/reject");
    once(&state, &caller, key, &what, &digest, async {
        respond(
            state
                .ra
                .reject_order(&caller, id, &body.reason)
                .await
                .map(order_doc),
            StatusCode::OK,
        )
    })
    .await
}
