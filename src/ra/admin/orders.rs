//! Orders as administrators see and decide them. An MRAO reaches every order, an RAO the
//! orders of its organisations' accounts, a DRAO the orders of persons in its departments;
//! whoever reaches an order may approve or reject it. An order out of reach is `404`.

use super::scope::unseen;
use super::{Caller, Principal};
use crate::domain::{Id, Order, OrderStatus, Role};
use crate::error::{Error, ErrorKind};
use crate::ra::Ra;
use crate::store::{OrderSearch, Reach};

/// Which orders to list; a page after `after_id`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    /// Only orders waiting for a decision (the approvals queue).
    pub pending: bool,
    pub account_id: Option<Id>,
    pub after_id: Option<Id>,
    pub limit: u64,
}

/// One order with what an administrator needs to decide it.
#[derive(Debug, Clone)]
pub struct OrderDetails {
    pub order: Order,
    pub account: String,
    pub organisation_id: Id,
    /// The person's department (none for devices and persons outside departments).
    pub department_id: Option<Id>,
    pub profile: String,
    /// The person the order is for, with their email.
    pub person: Option<(Id, String)>,
    /// Its certificate, once issued.
    pub certificate_id: Option<Id>,
}

/// What a principal reaches, as the store's searches take it.
pub(super) fn reach(p: &Principal) -> Reach {
    match p.role {
        Role::Mrao => Reach::default(),
        Role::Rao => Reach {
            organisations: Some(p.organisations.clone()),
            departments: None,
        },
        Role::Drao => Reach {
            organisations: None,
            departments: p.department_filter(),
        },
    }
}

impl Ra {
    /// Orders the caller reaches, filtered: at most `limit + 1`, so that a front end can
    /// tell whether another page follows.
    pub async fn search_orders(
        &self,
        caller: &Caller,
        q: &OrderQuery,
    ) -> Result<Vec<OrderDetails>, Error> {
        let status = match (q.pending, q.status) {
            (true, Some(s)) if s != OrderStatus::PendingApproval => {
                return Err(Error::invalid(
                    "status",
                    format!("pending orders have status pending_approval, not {s}"),
                ))
            }
            (true, _) => Some(OrderStatus::PendingApproval),
            (false, s) => s,
        };
        let search = OrderSearch {
            status,
            account_id: q.account_id,
            reach: reach(&caller.principal),
            after_id: q.after_id,
            limit: q.limit.saturating_add(1),
        };
        let mut out = Vec::new();
        for order in self.store.search_orders(&search).await? {
            out.push(self.order_details(order).await?);
        }
        Ok(out)
    }

    /// One order the caller reaches.
    pub async fn show_order(&self, caller: &Caller, id: Id) -> Result<OrderDetails, Error> {
        let order = self.reach_order(caller, id).await?;
        self.order_details(order).await
    }

    /// Approves an order the caller reaches, as `Ra::approve` does for the CLI: a
    /// client-made key is signed at once. An order decided before answers `409`.
    pub async fn approve_order(
        &self,
        caller: &Caller,
        id: Id,
        reason: Option<String>,
    ) -> Result<OrderDetails, Error> {
        self.reach_order(caller, id).await?;
        let order = self
            .approve(id, caller.actor(), reason)
            .await
            .map_err(reason_at)?;
        self.order_details(order).await
    }

    /// Rejects an order the caller reaches; the reason, which the requester is told, is
    /// required. An order decided before answers `409`.
    pub async fn reject_order(
        &self,
        caller: &Caller,
        id: Id,
        reason: &str,
    ) -> Result<OrderDetails, Error> {
        self.reach_order(caller, id).await?;
        if reason.trim().is_empty() {
            return Err(Error::invalid(
                "reason",
                "say why the order is rejected: the requester is told",
            ));
        }
        let order = self
            .reject(id, caller.actor(), Some(reason.to_string()))
            .await
            .map_err(reason_at)?;
        self.order_details(order).await
    }

    /// The order, when the caller reaches it; `404` alike for one out of reach and one
    /// that does not exist.
    pub(super) async fn reach_order(&self, caller: &Caller, id: Id) -> Result<Order, Error> {
        let order = match self.store.order(id).await {
            Ok(o) => o,
            Err(crate::store::StoreError::NotFound(_)) => return Err(unseen("order")),
            Err(e) => return Err(e.into()),
        };
        if !self.reaches_order(caller, &order).await? {
            return Err(unseen("order"));
        }
        Ok(order)
    }

    pub(super) async fn reaches_order(
        &self,
        caller: &Caller,
        order: &Order,
    ) -> Result<bool, Error> {
        if caller.principal.is_mrao() {
            return Ok(true);
        }
        let (org, dept) = self.order_scope(order).await?;
        Ok(match caller.principal.role {
            // A DRAO reaches persons, never devices or the organisation at large.
            Role::Drao => {
                order.person_id.is_some() && caller.principal.manages_department(org, dept)
            }
            _ => caller.principal.manages_organisation(org),
        })
    }

    async fn order_details(&self, order: Order) -> Result<OrderDetails, Error> {
        let account = self.store.account(order.account_id).await?;
        let profile = self.store.profile(order.profile_id).await?.name;
        let (person, department_id) = match order.person_id {
            Some(id) => match self.store.person(id).await {
                Ok(p) => (Some((p.id, p.email.as_str().to_string())), p.department_id),
                Err(crate::store::StoreError::NotFound(_)) => (None, None),
                Err(e) => return Err(e.into()),
            },
            None => (None, None),
        };
        let certificate_id = match order.status {
            OrderStatus::Issued => self
                .store
                .certificate_of_order(order.id)
                .await?
                .map(|c| c.id),
            _ => None,
        };
        Ok(OrderDetails {
            organisation_id: account.organisation_id,
            account: account.name,
            department_id,
            profile,
            person,
            certificate_id,
            order,
        })
    }
}

/// The decision's own refusal of a bad reason, pinned on the field.
fn reason_at(e: Error) -> Error {
    if e.kind == ErrorKind::Malformed && e.field.is_none() {
        e.at("reason")
    } else {
        e
    }
}
