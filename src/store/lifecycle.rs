//! Store verbs of the certificate lifecycle: orders waiting for approval and the decision on
//! them, revocation, the published CRL, pre-signed OCSP responses, and the notices these
//! queue in the outbox in the same transaction.
//!
//! Every state change is a compare-and-swap on the row's status, so two administrators
//! deciding the same order, or two processes revoking the same certificate, end with one
//! winner and one clear refusal.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

use super::entities::*;
use super::{certificate_from, conflict, insert_audit, order_from, AuditEntry, Result, Store};
use crate::domain::{
    Actor, CertStatus, CertificateRecord, Decision, Id, Order, OrderStatus, Revocation, UnixTime,
};

macro_rules! notice_kinds {
    ($($variant:ident = $text:literal),+ $(,)?) => {
        /// What an outbox notice says; the mail worker renders it from the order or
        /// certificate it names, at send time (the row holds no text and no secret).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum NoticeKind { $($variant),+ }

        impl NoticeKind {
            pub fn as_str(self) -> &'static str {
                match self { $(NoticeKind::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<NoticeKind> {
                match s { $($text => Some(NoticeKind::$variant),)+ _ => None }
            }
        }
    };
}

notice_kinds!(
    ApprovalNeeded = "approval-needed",
    OrderApproved = "order-approved",
    OrderRejected = "order-rejected",
    CertificateIssued = "certificate-issued",
    CertificateRevoked = "certificate-revoked",
    ExpiryReminder = "expiry-reminder",
);

/// One email to queue about an order or a certificate.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    pub recipient: String,
    pub order_id: Option<Id>,
    pub certificate_id: Option<Id>,
    /// Set for notices sent at most once (expiry reminders: certificate and threshold).
    pub dedupe_key: Option<String>,
}

/// Which orders a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFilter {
    All,
    Pending,
}

/// Queues notices; one whose dedupe key was queued before is skipped. Returns how many were
/// queued.
pub(super) async fn queue(
    db: &impl ConnectionTrait,
    notices: &[Notice],
    now: UnixTime,
) -> Result<u64> {
    let mut queued = 0;
    for n in notices {
        let row = outbox::ActiveModel {
            kind: Set(n.kind.as_str().to_string()),
            recipient: Set(n.recipient.clone()),
            email_token_id: Set(None),
            created_at: Set(now),
            attempts: Set(0),
            next_attempt_at: Set(now),
            locked_until: Set(None),
            sent_at: Set(None),
            last_error: Set(None),
            order_id: Set(n.order_id),
            certificate_id: Set(n.certificate_id),
            dedupe_key: Set(n.dedupe_key.clone()),
            ..Default::default()
        };
        let r = outbox::Entity::insert(row)
            .on_conflict(
                OnConflict::column(outbox::Column::DedupeKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        queued += r;
    }
    Ok(queued)
}

impl Store {
    /// Records an order that waits for an administrator's approval, with the CSR when the
    /// client made the key (so the approval can sign it) and the approvers' notices.
    pub async fn record_pending_order(
        &self,
        intent: &super::SigningIntent,
        csr_der: Option<&[u8]>,
        audit: &AuditEntry,
        notices: &[Notice],
        now: UnixTime,
    ) -> Result<Id> {
        let txn = self.db.begin().await?;
        let mut row = super::new_order(intent, OrderStatus::PendingApproval, None, now);
        row.csr_der = Set(csr_der.map(<[u8]>::to_vec));
        let order = row.insert(&txn).await?;
        insert_audit(&txn, audit, &format!("order {}", order.id), now).await?;
        let notices: Vec<Notice> = notices
            .iter()
            .cloned()
            .map(|mut n| {
                n.order_id = Some(order.id);
                n
            })
            .collect();
        queue(&txn, &notices, now).await?;
        txn.commit().await?;
        Ok(order.id)
    }

    /// The newest order of this account for this CSR, in any state.
    pub async fn order_for_csr(&self, account_id: Id, csr_sha256: &str) -> Result<Option<Order>> {
        cert_order::Entity::find()
            .filter(cert_order::Column::AccountId.eq(account_id))
            .filter(cert_order::Column::CsrSha256.eq(csr_sha256))
            .order_by_desc(cert_order::Column::Id)
            .one(self.reader())
            .await?
            .map(order_from)
            .transpose()
    }

    /// Orders, oldest first.
    pub async fn orders(&self, filter: OrderFilter) -> Result<Vec<Order>> {
        let mut q = cert_order::Entity::find().order_by_asc(cert_order::Column::Id);
        if filter == OrderFilter::Pending {
            q = q.filter(cert_order::Column::Status.eq(OrderStatus::PendingApproval.as_str()));
        }
        q.all(&self.db).await?.into_iter().map(order_from).collect()
    }

    /// Orders of one person waiting for them to collect a server-generated key: approved,
    /// with no CSR kept.
    pub async fn approved_server_key_orders(&self, person_id: Id) -> Result<Vec<Order>> {
        cert_order::Entity::find()
            .filter(cert_order::Column::PersonId.eq(person_id))
            .filter(cert_order::Column::Status.eq(OrderStatus::Approved.as_str()))
            .filter(cert_order::Column::CsrDer.is_null())
            .order_by_asc(cert_order::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(order_from)
            .collect()
    }

    /// Approves or rejects an order still waiting: true when this call decided it, false
    /// when it had already left `pending_approval` (another administrator was first).
    pub async fn decide_order(
        &self,
        order_id: Id,
        approve: bool,
        decision: &Decision,
        audit: &AuditEntry,
        notices: &[Notice],
        now: UnixTime,
    ) -> Result<bool> {
        let to = if approve {
            OrderStatus::Approved
        } else {
            OrderStatus::Rejected
        };
        let txn = self.db.begin().await?;
        let r = cert_order::Entity::update_many()
            .col_expr(cert_order::Column::Status, Expr::value(to.as_str()))
            .col_expr(
                cert_order::Column::DecidedBy,
                Expr::value(decision.by.as_str()),
            )
            .col_expr(cert_order::Column::DecidedAt, Expr::value(decision.at))
            .col_expr(
                cert_order::Column::DecisionReason,
                Expr::value(decision.reason.clone()),
            )
            .col_expr(cert_order::Column::UpdatedAt, Expr::value(now))
            .filter(cert_order::Column::Id.eq(order_id))
            .filter(cert_order::Column::Status.eq(OrderStatus::PendingApproval.as_str()))
            .exec(&txn)
            .await?;
        if r.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        insert_audit(&txn, audit, &format!("order {order_id}"), now).await?;
        queue(&txn, notices, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Moves an approved order to `signing` with its reserved serial (the intent of the
    /// issuance cycle). False when it is no longer approved: it was signed already.
    pub async fn begin_signing(
        &self,
        order_id: Id,
        serial: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<bool> {
        let txn = self.db.begin().await?;
        let r = cert_order::Entity::update_many()
            .col_expr(
                cert_order::Column::Status,
                Expr::value(OrderStatus::Signing.as_str()),
            )
            .col_expr(cert_order::Column::Serial, Expr::value(serial))
            .col_expr(cert_order::Column::UpdatedAt, Expr::value(now))
            .filter(cert_order::Column::Id.eq(order_id))
            .filter(cert_order::Column::Status.eq(OrderStatus::Approved.as_str()))
            .exec(&txn)
            .await
            .map_err(conflict("serial"))?;
        if r.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        insert_audit(&txn, audit, &format!("order {order_id}"), now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Orders left in `signing` by a process that stopped between recording the intent and
    /// storing the certificate (DESIGN.md issuance cycle) become `failed` once their last
    /// change is older than `before`, each with an `order.failed` audit event in the same
    /// transaction. Returns the orders settled, in id order.
    ///
    /// Each change is a compare-and-swap on `signing`: of two processes settling at once,
    /// or a settle racing a signer that finishes after all, one wins and only it audits.
    pub async fn settle_interrupted(&self, before: UnixTime, now: UnixTime) -> Result<Vec<Id>> {
        let txn = self.db.begin().await?;
        let stuck = cert_order::Entity::find()
            .filter(cert_order::Column::Status.eq(OrderStatus::Signing.as_str()))
            .filter(cert_order::Column::UpdatedAt.lt(before))
            .order_by_asc(cert_order::Column::Id)
            .all(&txn)
            .await?;
        let mut settled = Vec::new();
        for order in stuck {
            let r = cert_order::Entity::update_many()
                .col_expr(
                    cert_order::Column::Status,
                    Expr::value(OrderStatus::Failed.as_str()),
                )
                .col_expr(cert_order::Column::UpdatedAt, Expr::value(now))
                .filter(cert_order::Column::Id.eq(order.id))
                .filter(cert_order::Column::Status.eq(OrderStatus::Signing.as_str()))
                .exec(&txn)
                .await?;
            if r.rows_affected != 1 {
                continue;
            }
            // Scoped administrators see the event of their organisation and department.
            let organisation_id = account::Entity::find_by_id(order.account_id)
                .one(&txn)
                .await?
                .map(|a| a.organisation_id);
            let department_id = match order.person_id {
                Some(id) => person::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .and_then(|p| p.department_id),
                None => None,
            };
            let audit = AuditEntry {
                actor: Actor {
                    name: "system".into(),
                    source: "local".into(),
                    ..Default::default()
                },
                action: "order.failed".into(),
                object: String::new(),
                detail: format!(
                    "interrupted while signing (the process stopped before the certificate \
                     was stored): serial={} stays reserved and no certificate was delivered; \
                     requester={}",
                    order.serial.as_deref().unwrap_or("-"),
                    order.requester
                ),
                organisation_id,
                department_id,
                ..Default::default()
            };
            insert_audit(&txn, &audit, &format!("order {}", order.id), now).await?;
            settled.push(order.id);
        }
        txn.commit().await?;
        Ok(settled)
    }

    pub async fn certificate_of_order(&self, order_id: Id) -> Result<Option<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::OrderId.eq(order_id))
            .one(&self.db)
            .await?
            .map(certificate_from)
            .transpose()
    }

    pub async fn certificate(&self, id: Id) -> Result<CertificateRecord> {
        certificate::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(certificate_from)
            .transpose()?
            .ok_or_else(|| super::StoreError::NotFound(format!("certificate {id}")))
    }

    /// Serials are stored as upper-case hex; the lookup takes any case.
    pub async fn certificate_by_serial(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::Serial.eq(serial.to_ascii_uppercase()))
            .one(&self.db)
            .await?
            .map(certificate_from)
            .transpose()
    }

    /// Certificates issued on orders of this account, oldest first.
    pub async fn certificates_of_account(&self, account_id: Id) -> Result<Vec<CertificateRecord>> {
        let orders: Vec<Id> = cert_order::Entity::find()
            .filter(cert_order::Column::AccountId.eq(account_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect();
        certificate::Entity::find()
            .filter(certificate::Column::OrderId.is_in(orders))
            .order_by_asc(certificate::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Revokes a valid certificate: true when this call revoked it, false when it was not
    /// valid any more (revoked before, perhaps by another process at the same moment).
    pub async fn revoke(
        &self,
        certificate_id: Id,
        revocation: &Revocation,
        audit: &AuditEntry,
        notices: &[Notice],
    ) -> Result<bool> {
        let txn = self.db.begin().await?;
        let r = certificate::Entity::update_many()
            .col_expr(
                certificate::Column::Status,
                Expr::value(CertStatus::Revoked.as_str()),
            )
            .col_expr(certificate::Column::RevokedAt, Expr::value(revocation.at))
            .col_expr(
                certificate::Column::RevocationReason,
                Expr::value(revocation.reason.as_str()),
            )
            .col_expr(
                certificate::Column::RevokedBy,
                Expr::value(revocation.by.as_str()),
            )
            .filter(certificate::Column::Id.eq(certificate_id))
            .filter(certificate::Column::Status.eq(CertStatus::Valid.as_str()))
            .exec(&txn)
            .await?;
        if r.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        insert_audit(
            &txn,
            audit,
            &format!("certificate {certificate_id}"),
            revocation.at,
        )
        .await?;
        queue(&txn, notices, revocation.at).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Revoked certificates that have not expired yet: what a CRL lists (RFC 5280 §3.3
    /// lets a CRL drop entries once the certificate has expired).
    pub async fn revoked_unexpired(&self, now: UnixTime) -> Result<Vec<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::Status.eq(CertStatus::Revoked.as_str()))
            .filter(certificate::Column::NotAfter.gt(now))
            .order_by_asc(certificate::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Certificates revoked at or after `since` (by any process), oldest first.
    pub async fn revoked_since(&self, since: UnixTime) -> Result<Vec<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::Status.eq(CertStatus::Revoked.as_str()))
            .filter(certificate::Column::RevokedAt.gte(since))
            .order_by_asc(certificate::Column::RevokedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Valid certificates whose notAfter falls in `(from, until]`, oldest expiry first.
    pub async fn expiring(
        &self,
        from: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::Status.eq(CertStatus::Valid.as_str()))
            .filter(certificate::Column::NotAfter.gt(from))
            .filter(certificate::Column::NotAfter.lte(until))
            .order_by_asc(certificate::Column::NotAfter)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Queues a notice unless one with its dedupe key was queued before, by any process:
    /// true when this call queued it.
    pub async fn queue_notice_once(&self, notice: &Notice, now: UnixTime) -> Result<bool> {
        Ok(queue(&self.db, std::slice::from_ref(notice), now).await? == 1)
    }

    // ---- CRL and OCSP -------------------------------------------------------------------

    /// The newest CRL: (number, thisUpdate, nextUpdate, DER).
    pub async fn latest_crl(&self) -> Result<Option<(i64, UnixTime, UnixTime, Vec<u8>)>> {
        Ok(crl::Entity::find()
            .order_by_desc(crl::Column::Number)
            .one(&self.db)
            .await?
            .map(|m| (m.number, m.this_update, m.next_update, m.der)))
    }

    /// Stores a CRL under its number. False when another process stored that number first
    /// (the caller then signs again with the next number, or serves the other one).
    pub async fn store_crl(
        &self,
        number: i64,
        this_update: UnixTime,
        next_update: UnixTime,
        der: &[u8],
    ) -> Result<bool> {
        let r = crl::ActiveModel {
            number: Set(number),
            this_update: Set(this_update),
            next_update: Set(next_update),
            der: Set(der.to_vec()),
            ..Default::default()
        }
        .insert(&self.db)
        .await;
        match r {
            Ok(_) => {
                // Older CRLs are superseded; keep a few for an auditor's look.
                crl::Entity::delete_many()
                    .filter(crl::Column::Number.lt(number - 10))
                    .exec(&self.db)
                    .await?;
                Ok(true)
            }
            Err(e) => match conflict("crl number")(e) {
                super::StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The pre-signed OCSP response for a serial: (DER, thisUpdate, nextUpdate).
    pub async fn ocsp_response(
        &self,
        serial: &str,
    ) -> Result<Option<(Vec<u8>, UnixTime, UnixTime)>> {
        Ok(ocsp_response::Entity::find()
            .filter(ocsp_response::Column::Serial.eq(serial))
            .one(&self.db)
            .await?
            .map(|m| (m.der, m.this_update, m.next_update)))
    }

    /// Stores (or replaces) the pre-signed OCSP response for a serial.
    pub async fn put_ocsp_response(
        &self,
        serial: &str,
        der: &[u8],
        this_update: UnixTime,
        next_update: UnixTime,
    ) -> Result<()> {
        let row = ocsp_response::ActiveModel {
            serial: Set(serial.to_string()),
            der: Set(der.to_vec()),
            this_update: Set(this_update),
            next_update: Set(next_update),
            ..Default::default()
        };
        ocsp_response::Entity::insert(row)
            .on_conflict(
                OnConflict::column(ocsp_response::Column::Serial)
                    .update_columns([
                        ocsp_response::Column::Der,
                        ocsp_response::Column::ThisUpdate,
                        ocsp_response::Column::NextUpdate,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Unexpired certificates whose pre-signed OCSP response is missing or is to be
    /// refreshed before `refresh_before` (its nextUpdate comes earlier), at most `limit`.
    pub async fn ocsp_due(
        &self,
        now: UnixTime,
        refresh_before: UnixTime,
        limit: u64,
    ) -> Result<Vec<CertificateRecord>> {
        let fresh: Vec<String> = ocsp_response::Entity::find()
            .filter(ocsp_response::Column::NextUpdate.gt(refresh_before))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.serial)
            .collect();
        use sea_orm::QuerySelect;
        certificate::Entity::find()
            .filter(certificate::Column::NotAfter.gt(now))
            .filter(certificate::Column::Serial.is_not_in(fresh))
            .order_by_asc(certificate::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Drops pre-signed responses of certificates that expired before `before`.
    pub async fn sweep_ocsp(&self, before: UnixTime) -> Result<u64> {
        Ok(ocsp_response::Entity::delete_many()
            .filter(ocsp_response::Column::NextUpdate.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
