//! The certificate lifecycle: approval on every path (EST, the form, the CLI), the
//! administrators' decision, and revocation by the person or an administrator, with the
//! notices each step queues.
//!
//! An order of a profile with `requires_approval` is keyed by its request: the CSR's
//! SHA-256 for client-made keys, or `server-key:<requester>` when the server makes the key
//! (the form and `cert issue` send no CSR). Asking again with the same key finds the order:
//! pending → 202; approved → issued now (a server-made key is generated at that moment, so
//! no key or PKCS#12 password waits in the database); issued → the same certificate (a
//! client-made key) or a refusal (a server-made key is never kept, so cannot be re-sent);
//! rejected → 403 with the reason.

use super::{sha256_hex, Authorized, Issued, Ra};
use crate::domain::{
    Actor, CertStatus, CertificateRecord, Decision, EmailAddress, Id, KeyType, Order, OrderStatus,
    Revocation, RevocationReason,
};
use crate::error::{Error, ErrorKind};
use crate::store::{AuditEntry, Notice, NoticeKind, OrderFilter, SigningIntent};

/// How long an EST client is told to wait before asking again about an order that waits for
/// an administrator.
pub const APPROVAL_RETRY_AFTER_SECS: u64 = 300;
/// An order being signed right now: ask again in a moment.
const SIGNING_RETRY_AFTER_SECS: u64 = 5;

/// What an approval-requiring request may do now.
pub(super) enum Approval {
    /// The profile needs no approval: issue as usual.
    NotNeeded,
    /// An administrator approved this order: sign it (on this order, not a new one), with
    /// the term and key type that were approved.
    Approved(Order),
    /// The order's certificate was issued before: answer with the same one.
    AlreadyIssued(Issued),
}

/// One order, as the CLI and the API list it.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub order: Order,
    pub account: String,
    pub profile: String,
    /// The serial of its certificate, once issued.
    pub serial: Option<String>,
}

/// The request key of an order without a CSR.
pub(super) fn server_key_request(requester: &str) -> String {
    format!("server-key:{requester}")
}

impl Ra {
    /// The approval gate every issuing path passes before it signs (or generates a key).
    /// `request` is the CSR's hash or `server_key_request`; `csr_der` is kept with a new
    /// order when the client made the key, so that the approval can sign it.
    pub(super) async fn approval(
        &self,
        auth: &Authorized,
        request: &str,
        key_type: KeyType,
        csr_der: Option<&[u8]>,
        actor: &Actor,
    ) -> Result<Approval, Error> {
        if !auth.profile.requires_approval {
            return Ok(Approval::NotNeeded);
        }
        let server_key = csr_der.is_none();
        // A CSR names the request (EST); the form and `cert issue` send none, so each of
        // their requests after a decision is a new one.
        let resend = request != server_key_request(&auth.requester);
        if let Some(order) = self.store.order_for_csr(auth.account.id, request).await? {
            match order.status {
                OrderStatus::PendingApproval => return Err(waiting()),
                OrderStatus::Signing => {
                    return Err(Error::new(
                        ErrorKind::Pending {
                            retry_after: SIGNING_RETRY_AFTER_SECS,
                        },
                        "the certificate is being signed; ask again in a moment",
                    ))
                }
                OrderStatus::Approved => return Ok(Approval::Approved(order)),
                OrderStatus::Rejected if resend => return Err(rejected(&order)),
                OrderStatus::Issued if !server_key => {
                    let cert = self
                        .store
                        .certificate_of_order(order.id)
                        .await?
                        .ok_or_else(|| {
                            Error::internal(format!("order {} has no certificate", order.id))
                        })?;
                    return Ok(Approval::AlreadyIssued(Issued {
                        der: cert.der,
                        serial: cert.serial,
                    }));
                }
                OrderStatus::Issued if resend => {
                    // EST serverkeygen: the same CSR again. Its key went out once and is
                    // not kept; a second certificate for the same request is never made.
                    return Err(Error::new(
                        ErrorKind::AlreadyUsed,
                        "this request was approved and delivered already; the server keeps no \
                         copy of the key it generated, so send a new CSR for a new certificate",
                    ));
                }
                OrderStatus::Issued | OrderStatus::Rejected | OrderStatus::Failed => {}
            }
        }
        self.record_for_approval(auth, key_type, request, csr_der, actor.clone())
            .await?;
        Err(waiting())
    }

    /// The approval gate for a key the server is about to make: the approved order to sign
    /// on, if any, and the key type to generate. An approved order's key type and term are
    /// what the administrator approved, whatever the requester asks for now.
    pub(super) async fn server_key_approval(
        &self,
        auth: &mut Authorized,
        request: &str,
        key_type: KeyType,
        actor: &Actor,
    ) -> Result<(Option<Id>, KeyType), Error> {
        match self.approval(auth, request, key_type, None, actor).await? {
            Approval::NotNeeded => Ok((None, key_type)),
            Approval::Approved(order) => {
                let (key, term) = approved_choice(&order)?;
                auth.term_years = term;
                Ok((Some(order.id), key))
            }
            Approval::AlreadyIssued(_) => Err(Error::internal(
                "a server-key order answered with a certificate",
            )),
        }
    }

    /// An order that waits for approval: recorded, audited and announced to the approvers;
    /// nothing signed and, for server-made keys, nothing generated.
    pub(super) async fn record_for_approval(
        &self,
        auth: &Authorized,
        key_type: KeyType,
        request: &str,
        csr_der: Option<&[u8]>,
        actor: Actor,
    ) -> Result<Id, Error> {
        let intent = SigningIntent {
            account_id: auth.account.id,
            profile_id: auth.profile.id,
            person_id: auth.person.as_ref().map(|p| p.id),
            requester: auth.requester.clone(),
            key_type,
            term_years: auth.term_years,
            csr_sha256: request.to_string(),
            serial: String::new(),
        };
        let audit = AuditEntry {
            actor,
            action: "order.pending-approval".into(),
            object: String::new(),
            detail: format!(
                "account={} profile={} key={} term={} requester={}",
                auth.account.name,
                auth.profile.name,
                key_type.as_str(),
                auth.term_years,
                auth.requester
            ),
            organisation_id: Some(auth.account.organisation_id),
            department_id: auth.person.as_ref().and_then(|p| p.department_id),
            ..Default::default()
        };
        let notices: Vec<Notice> = self
            .approvers
            .iter()
            .map(|a| Notice {
                kind: NoticeKind::ApprovalNeeded,
                recipient: a.to_string(),
                order_id: None,
                certificate_id: None,
                dedupe_key: None,
            })
            .collect();
        let id = self
            .store
            .record_pending_order(&intent, csr_der, &audit, &notices, self.clock.now())
            .await?;
        tracing::info!(order = id, "order waits for approval");
        Ok(id)
    }

    /// Orders, with their account and profile names; `pending` lists only those waiting.
    pub async fn orders(&self, pending: bool) -> Result<Vec<OrderView>, Error> {
        let filter = if pending {
            OrderFilter::Pending
        } else {
            OrderFilter::All
        };
        let mut out = Vec::new();
        for order in self.store.orders(filter).await? {
            let account = self.store.account(order.account_id).await?.name;
            let profile = self.store.profile(order.profile_id).await?.name;
            let serial = match order.status {
                OrderStatus::Issued => self
                    .store
                    .certificate_of_order(order.id)
                    .await?
                    .map(|c| c.serial),
                _ => None,
            };
            out.push(OrderView {
                order,
                account,
                profile,
                serial,
            });
        }
        Ok(out)
    }

    /// An administrator approves an order. A client-made key is signed at once (the person
    /// is mailed the certificate's issue); for a server-made key the person is mailed a
    /// link back to the form, where the key is generated when they collect it.
    pub async fn approve(
        &self,
        order_id: Id,
        actor: Actor,
        reason: Option<String>,
    ) -> Result<Order, Error> {
        let order = self.decide(order_id, true, &actor, reason).await?;
        if order.csr_der.is_some() {
            self.sign_approved(&order, actor).await?;
        }
        Ok(self.store.order(order_id).await?)
    }

    /// An administrator rejects an order, with the reason the requester is told.
    pub async fn reject(
        &self,
        order_id: Id,
        actor: Actor,
        reason: Option<String>,
    ) -> Result<Order, Error> {
        self.decide(order_id, false, &actor, reason).await?;
        Ok(self.store.order(order_id).await?)
    }

    async fn decide(
        &self,
        order_id: Id,
        approve: bool,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Order, Error> {
        let order = self.store.order(order_id).await?;
        if order.status != OrderStatus::PendingApproval {
            return Err(already_decided(&order));
        }
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if let Some(r) = &reason {
            if r.chars().count() > 500 || r.chars().any(char::is_control) {
                return Err(Error::malformed(
                    "the reason must be one line of at most 500 characters",
                ));
            }
        }
        let now = self.clock.now();
        let decision = Decision {
            by: actor.name.clone(),
            at: now,
            reason: reason.clone(),
        };
        let (action, kind) = if approve {
            ("order.approved", NoticeKind::OrderApproved)
        } else {
            ("order.rejected", NoticeKind::OrderRejected)
        };
        let mut notices = Vec::new();
        // A client-made key is signed right away and its issue is announced instead.
        let announce = !approve || order.csr_der.is_none();
        if let (true, Some(to)) = (announce, self.requester_email(&order).await?) {
            notices.push(Notice {
                kind,
                recipient: to.to_string(),
                order_id: Some(order_id),
                certificate_id: None,
                dedupe_key: None,
            });
        }
        let (organisation_id, department_id) = self.order_scope(&order).await?;
        let audit = AuditEntry {
            actor: actor.clone(),
            action: action.into(),
            object: String::new(),
            detail: format!(
                "requester={} reason={}",
                order.requester,
                reason.as_deref().unwrap_or("")
            ),
            organisation_id: Some(organisation_id),
            department_id,
            ..Default::default()
        };
        if !self
            .store
            .decide_order(order_id, approve, &decision, &audit, &notices, now)
            .await?
        {
            // Another administrator decided between our read and our write.
            let now_order = self.store.order(order_id).await?;
            return Err(already_decided(&now_order));
        }
        Ok(self.store.order(order_id).await?)
    }

    /// Signs an approved order whose CSR the client made, as its requester would have had
    /// it signed at the time: the policy of today decides (the person, names, domains).
    async fn sign_approved(&self, order: &Order, actor: Actor) -> Result<Issued, Error> {
        let der = order
            .csr_der
            .as_deref()
            .ok_or_else(|| Error::internal(format!("order {} keeps no CSR", order.id)))?;
        let csr = super::parse_csr(der)?;
        let account = self.store.account(order.account_id).await?;
        let profile = self.store.profile(order.profile_id).await?;
        let person = match order.person_id {
            Some(id) => Some(self.store.person(id).await?),
            None => None,
        };
        let auth = Authorized {
            term_years: order.term_years,
            account,
            profile,
            person,
            requester: order.requester.clone(),
            confirm_email: None,
        };
        let plan = self.plan(&auth, &csr).await?;
        self.issue_on(&auth, &csr, plan, actor, "approved", Some(order.id))
            .await
    }

    /// The organisation (its account's) and department (its person's) an order belongs
    /// to: where its audit events are placed, and what scoped administrators reach. A
    /// person removed since is no longer in any department.
    pub(crate) async fn order_scope(&self, order: &Order) -> Result<(Id, Option<Id>), Error> {
        let organisation_id = self.store.account(order.account_id).await?.organisation_id;
        let department_id = match order.person_id {
            Some(id) => match self.store.person(id).await {
                Ok(p) => p.department_id,
                Err(crate::store::StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        Ok((organisation_id, department_id))
    }

    /// Where notices about an order go: the person's address, or a requester that is an
    /// email address. Devices get none.
    pub(super) async fn requester_email(
        &self,
        order: &Order,
    ) -> Result<Option<EmailAddress>, Error> {
        if let Some(id) = order.person_id {
            return Ok(Some(self.store.person(id).await?.email));
        }
        Ok(EmailAddress::parse(&order.requester))
    }

    // ---- expiry reminders ---------------------------------------------------------------

    /// Queues a reminder for each valid certificate of a person whose notAfter is within one
    /// of `days` (largest first): one per certificate and threshold, ever — the outbox's
    /// unique dedupe key decides between processes. A certificate first seen inside several
    /// thresholds gets only the nearest one. Returns how many were queued.
    pub async fn queue_expiry_reminders(&self, days: &[u32]) -> Result<u64, Error> {
        let now = self.clock.now();
        let Some(widest) = days.iter().max() else {
            return Ok(0);
        };
        let mut queued = 0;
        for cert in self
            .store
            .expiring(now, now + i64::from(*widest) * 86_400)
            .await?
        {
            let left = cert.not_after - now;
            let Some(threshold) = days
                .iter()
                .filter(|d| i64::from(**d) * 86_400 >= left)
                .min()
            else {
                continue;
            };
            let order = self.store.order(cert.order_id).await?;
            let Some(to) = self.requester_email(&order).await? else {
                continue;
            };
            let notice = Notice {
                kind: NoticeKind::ExpiryReminder,
                recipient: to.to_string(),
                order_id: Some(order.id),
                certificate_id: Some(cert.id),
                dedupe_key: Some(format!("expiry:{}:{threshold}", cert.id)),
            };
            if self.store.queue_notice_once(&notice, now).await? {
                queued += 1;
            }
        }
        Ok(queued)
    }

    // ---- revocation ---------------------------------------------------------------------

    /// An administrator revokes one certificate by serial (hex, any case).
    pub async fn revoke_serial(
        &self,
        serial: &str,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<CertificateRecord, Error> {
        let cert = self
            .store
            .certificate_by_serial(serial.trim())
            .await?
            .ok_or_else(|| Error::not_found(format!("no certificate with serial {serial}")))?;
        self.revoke(cert, reason, actor).await
    }

    /// An administrator revokes every valid certificate of a person (by email): returns the
    /// serials revoked.
    pub async fn revoke_person(
        &self,
        email: &str,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<Vec<String>, Error> {
        let email = EmailAddress::parse(email)
            .ok_or_else(|| Error::malformed(format!("{email:?} is not an email address")))?;
        let person = self
            .store
            .person_by_email(&email)
            .await?
            .ok_or_else(|| Error::not_found(format!("no person {email}")))?;
        let certs = self.store.certificates_of_person(person.id).await?;
        self.revoke_all(certs.into_iter().map(|(c, _)| c).collect(), reason, actor)
            .await
    }

    /// An administrator revokes every valid certificate issued on an account (by its EST
    /// label or its name): returns the serials revoked.
    pub async fn revoke_account(
        &self,
        account: &str,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<Vec<String>, Error> {
        let found = match self.store.account_by_label(account).await? {
            Some(a) => a,
            None => {
                let named: Vec<_> = self
                    .store
                    .accounts()
                    .await?
                    .into_iter()
                    .filter(|a| a.name == account)
                    .collect();
                match named.len() {
                    1 => named
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::internal("vanished"))?,
                    0 => return Err(Error::not_found(format!("no account {account:?}"))),
                    _ => {
                        return Err(Error::malformed(format!(
                            "several accounts are named {account:?}: name it by its EST label"
                        )))
                    }
                }
            }
        };
        let certs = self.store.certificates_of_account(found.id).await?;
        self.revoke_all(certs, reason, actor).await
    }

    async fn revoke_all(
        &self,
        certs: Vec<CertificateRecord>,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for c in certs.into_iter().filter(|c| c.status == CertStatus::Valid) {
            let serial = c.serial.clone();
            match self.revoke(c, reason, actor.clone()).await {
                Ok(_) => out.push(serial),
                // Revoked meanwhile by someone else: it is revoked, which was the point.
                Err(e) if e.kind == ErrorKind::AlreadyUsed => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A person revokes one of their own certificates from the form. Only a valid
    /// certificate of an order made for this person qualifies; the reasons are the five a
    /// person may pick.
    pub async fn revoke_own(
        &self,
        person_id: Id,
        certificate_id: Id,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<CertificateRecord, Error> {
        if !RevocationReason::SELF_SERVICE.contains(&reason) {
            return Err(Error::malformed("choose one of the offered reasons"));
        }
        let cert = match self.store.certificate(certificate_id).await {
            Ok(c) => c,
            Err(crate::store::StoreError::NotFound(_)) => {
                return Err(Error::not_found("no such certificate of yours"))
            }
            Err(e) => return Err(e.into()),
        };
        let order = self.store.order(cert.order_id).await?;
        if order.person_id != Some(person_id) {
            // The same answer as for a certificate that does not exist: nothing is told
            // about other people's certificates.
            return Err(Error::not_found("no such certificate of yours"));
        }
        self.revoke(cert, reason, actor).await
    }

    pub(super) async fn revoke(
        &self,
        cert: CertificateRecord,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<CertificateRecord, Error> {
        let now = self.clock.now();
        if reason == RevocationReason::CertificateHold {
            // A hold is a revocation that may be lifted; the CA/Browser Forum S/MIME and TLS
            // BRs prohibit it (pkilint's BR CRL lint rejects the reason code), and estgate
            // never lifts one.
            return Err(Error::malformed(
                "certificateHold is not offered: a certificate cannot be suspended, only revoked \
                 (use privilegeWithdrawn or another reason)",
            ));
        }
        if cert.status == CertStatus::Revoked {
            return Err(Error::new(
                ErrorKind::AlreadyUsed,
                format!("certificate {} is already revoked", cert.serial),
            ));
        }
        if cert.not_after <= now {
            return Err(Error::forbidden(format!(
                "certificate {} has expired; it is no longer listed as valid anywhere",
                cert.serial
            )));
        }
        let order = self.store.order(cert.order_id).await?;
        let revocation = Revocation {
            at: now,
            reason,
            by: actor.name.clone(),
        };
        let mut notices = Vec::new();
        if let Some(to) = self.requester_email(&order).await? {
            notices.push(Notice {
                kind: NoticeKind::CertificateRevoked,
                recipient: to.to_string(),
                order_id: Some(order.id),
                certificate_id: Some(cert.id),
                dedupe_key: None,
            });
        }
        let (organisation_id, department_id) = self.order_scope(&order).await?;
        let audit = AuditEntry {
            actor,
            action: "certificate.revoked".into(),
            object: format!("certificate {}", cert.serial),
            detail: format!("serial={} reason={}", cert.serial, reason.as_str()),
            organisation_id: Some(organisation_id),
            department_id,
            ..Default::default()
        };
        if !self
            .store
            .revoke(cert.id, &revocation, &audit, &notices)
            .await?
        {
            return Err(Error::new(
                ErrorKind::AlreadyUsed,
                format!("certificate {} is already revoked", cert.serial),
            ));
        }
        tracing::info!(serial = %cert.serial, reason = reason.as_str(), "certificate revoked");
        self.published(&cert.serial).await;
        Ok(self.store.certificate(cert.id).await?)
    }

    /// After a revocation: a new CRL and a new OCSP response for the serial, so relying
    /// parties see it within seconds. A failure here is logged and left to the schedule,
    /// which publishes again soon; the revocation itself is on record.
    async fn published(&self, serial: &str) {
        if let Some(p) = &self.publisher {
            if let Err(e) = p.after_revocation(serial).await {
                tracing::warn!(serial, "publishing the revocation: {e}");
            }
        }
    }
}

fn waiting() -> Error {
    Error::new(
        ErrorKind::Pending {
            retry_after: APPROVAL_RETRY_AFTER_SECS,
        },
        "the request waits for an administrator's approval; you will be notified",
    )
}

fn rejected(order: &Order) -> Error {
    let reason = order
        .decision
        .as_ref()
        .and_then(|d| d.reason.clone())
        .unwrap_or_else(|| "no reason given".into());
    Error::forbidden(format!("the request was rejected: {reason}"))
}

fn already_decided(order: &Order) -> Error {
    let who = order
        .decision
        .as_ref()
        .map(|d| format!(" by {}", d.by))
        .unwrap_or_default();
    Error::new(
        ErrorKind::AlreadyUsed,
        format!(
            "order {} was already decided{who}: it is {}",
            order.id,
            order.status.as_str()
        ),
    )
}

/// The key type and term an approved order was approved with: what is issued on it,
/// whatever the requester chooses when collecting it.
pub(super) fn approved_choice(order: &Order) -> Result<(KeyType, u32), Error> {
    let key = KeyType::parse(&order.key_type).ok_or_else(|| {
        Error::internal(format!(
            "order {} has key type {:?}",
            order.id, order.key_type
        ))
    })?;
    Ok((key, order.term_years))
}

/// The request key for an order, as `approval` expects it.
pub(super) fn request_key(csr_der: Option<&[u8]>, requester: &str) -> String {
    match csr_der {
        Some(der) => sha256_hex(der),
        None => server_key_request(requester),
    }
}
