//! Searches over orders and certificates for the administration API: every filter and the
//! caller's scope become SQL (sub-queries on the order, its account and its person), so a
//! page costs one query however many certificates there are.

use sea_orm::sea_query::{Expr, Func, LikeExpr, Query, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::{account, cert_order, certificate, person};
use super::{certificate_from, order_from, Result, Store};
use crate::domain::{CertStatus, CertificateRecord, Id, Order, OrderStatus, UnixTime};

/// Where a scoped administrator may look: orders of accounts of these organisations (RAO),
/// or orders of persons in these departments (DRAO). `Default`: everywhere (MRAO).
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub organisations: Option<Vec<Id>>,
    pub departments: Option<Vec<Id>>,
}

/// Which orders to list: a page of ids after `after_id`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct OrderSearch {
    pub status: Option<OrderStatus>,
    pub account_id: Option<Id>,
    pub reach: Reach,
    pub after_id: Option<Id>,
    pub limit: u64,
}

/// Which certificates to list: a page of ids after `after_id`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CertificateSearch {
    /// Upper-case hex, exact.
    pub serial: Option<String>,
    /// The person's email or the order's requester, exact (emails are stored lower-case).
    pub email: Option<String>,
    /// A substring of the subject, in any case.
    pub subject: Option<String>,
    pub account_id: Option<Id>,
    pub status: Option<CertStatus>,
    /// notAfter at or after this time.
    pub expires_after: Option<UnixTime>,
    /// notAfter before this time.
    pub expires_before: Option<UnixTime>,
    pub reach: Reach,
    pub after_id: Option<Id>,
    pub limit: u64,
}

/// The reach as a condition on `cert_order` rows.
fn order_reach(r: &Reach) -> Condition {
    let mut c = Condition::all();
    if let Some(orgs) = &r.organisations {
        c = c.add(
            cert_order::Column::AccountId.in_subquery(
                Query::select()
                    .column(account::Column::Id)
                    .from(account::Entity)
                    .and_where(account::Column::OrganisationId.is_in(orgs.iter().copied()))
                    .to_owned(),
            ),
        );
    }
    if let Some(depts) = &r.departments {
        c = c.add(
            cert_order::Column::PersonId.in_subquery(
                Query::select()
                    .column(person::Column::Id)
                    .from(person::Entity)
                    .and_where(person::Column::DepartmentId.is_in(depts.iter().copied()))
                    .to_owned(),
            ),
        );
    }
    c
}

/// `%text%` for LIKE, with the wildcards in `text` taken literally.
fn contains_pattern(text: &str) -> LikeExpr {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    LikeExpr::new(p).escape('\\')
}

impl Store {
    /// A page of orders (at most `limit`), oldest first.
    pub async fn search_orders(&self, s: &OrderSearch) -> Result<Vec<Order>> {
        let mut q = cert_order::Entity::find().filter(order_reach(&s.reach));
        if let Some(status) = s.status {
            q = q.filter(cert_order::Column::Status.eq(status.as_str()));
        }
        if let Some(a) = s.account_id {
            q = q.filter(cert_order::Column::AccountId.eq(a));
        }
        if let Some(after) = s.after_id {
            q = q.filter(cert_order::Column::Id.gt(after));
        }
        q.order_by_asc(cert_order::Column::Id)
            .limit(s.limit.max(1))
            .all(&self.db)
            .await?
            .into_iter()
            .map(order_from)
            .collect()
    }

    /// A page of certificates (at most `limit`), oldest first.
    pub async fn search_certificates(
        &self,
        s: &CertificateSearch,
    ) -> Result<Vec<CertificateRecord>> {
        let mut orders = order_reach(&s.reach);
        if let Some(a) = s.account_id {
            orders = orders.add(cert_order::Column::AccountId.eq(a));
        }
        if let Some(email) = &s.email {
            orders = orders.add(
                Condition::any()
                    .add(cert_order::Column::Requester.eq(email.as_str()))
                    .add(
                        cert_order::Column::PersonId.in_subquery(
                            Query::select()
                                .column(person::Column::Id)
                                .from(person::Entity)
                                .and_where(person::Column::Email.eq(email.as_str()))
                                .to_owned(),
                        ),
                    ),
            );
        }
        let mut q = certificate::Entity::find();
        if !orders.is_empty() {
            q = q.filter(
                certificate::Column::OrderId.in_subquery(
                    Query::select()
                        .column(cert_order::Column::Id)
                        .from(cert_order::Entity)
                        .cond_where(orders)
                        .to_owned(),
                ),
            );
        }
        if let Some(serial) = &s.serial {
            q = q.filter(certificate::Column::Serial.eq(serial.as_str()));
        }
        if let Some(subject) = &s.subject {
            let lower: SimpleExpr = Func::lower(Expr::col(certificate::Column::Subject)).into();
            q = q.filter(Expr::expr(lower).like(contains_pattern(subject)));
        }
        if let Some(status) = s.status {
            q = q.filter(certificate::Column::Status.eq(status.as_str()));
        }
        if let Some(t) = s.expires_after {
            q = q.filter(certificate::Column::NotAfter.gte(t));
        }
        if let Some(t) = s.expires_before {
            q = q.filter(certificate::Column::NotAfter.lt(t));
        }
        if let Some(after) = s.after_id {
            q = q.filter(certificate::Column::Id.gt(after));
        }
        q.order_by_asc(certificate::Column::Id)
            .limit(s.limit.max(1))
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }
}
