//! Certificates as administrators find, fetch and revoke them. Each is reached through its
//! order, as orders are (`orders.rs`): an MRAO everything, an RAO its organisations'
//! accounts, a DRAO its departments' persons. One out of reach is `404`.

use super::orders::reach;
use super::scope::unseen;
use super::Caller;
use crate::domain::{CertStatus, CertificateRecord, EmailAddress, Id, RevocationReason, UnixTime};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::CertificateSearch;

/// Longest subject text searched for.
const MAX_SUBJECT_QUERY: usize = 256;

/// Which certificates to list; a page after `after_id`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CertificateQuery {
    /// Hex, any case, colons allowed.
    pub serial: Option<String>,
    /// The person's email or the order's requester.
    pub email: Option<String>,
    /// Part of the subject, any case.
    pub subject: Option<String>,
    pub account_id: Option<Id>,
    pub status: Option<CertStatus>,
    /// notAfter at or after (unix seconds).
    pub expires_after: Option<UnixTime>,
    /// notAfter before (unix seconds).
    pub expires_before: Option<UnixTime>,
    pub after_id: Option<Id>,
    pub limit: u64,
}

/// A certificate with where it came from.
#[derive(Debug, Clone)]
pub struct CertificateDetails {
    pub certificate: CertificateRecord,
    pub account_id: Id,
    pub account: String,
    pub organisation_id: Id,
    /// The person it was issued to, with their email.
    pub person: Option<(Id, String)>,
    pub requester: String,
}

fn serial_query(s: &str) -> Result<String, Error> {
    let hex: String = s.trim().chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "serial",
            format!("{s:?} is not a serial number in hex"),
        ));
    }
    Ok(hex.to_ascii_uppercase())
}

impl Ra {
    /// Certificates the caller reaches, filtered: at most `limit + 1`, so that a front end
    /// can tell whether another page follows.
    pub async fn search_certificates(
        &self,
        caller: &Caller,
        q: &CertificateQuery,
    ) -> Result<Vec<CertificateDetails>, Error> {
        let serial = q.serial.as_deref().map(serial_query).transpose()?;
        let email = match &q.email {
            Some(e) => Some(
                EmailAddress::parse(e.trim())
                    .ok_or_else(|| {
                        Error::invalid("email", format!("{e:?} is not an email address"))
                    })?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let subject = match &q.subject {
            Some(s) if s.trim().is_empty() || s.chars().count() > MAX_SUBJECT_QUERY => {
                return Err(Error::invalid(
                    "subject",
                    format!("search for 1 to {MAX_SUBJECT_QUERY} characters of the subject"),
                ))
            }
            Some(s) => Some(s.trim().to_string()),
            None => None,
        };
        if let (Some(a), Some(b)) = (q.expires_after, q.expires_before) {
            if a >= b {
                return Err(Error::invalid(
                    "expires_before",
                    "expires_before must be later than expires_after",
                ));
            }
        }
        let search = CertificateSearch {
            serial,
            email,
            subject,
            account_id: q.account_id,
            status: q.status,
            expires_after: q.expires_after,
            expires_before: q.expires_before,
            reach: reach(&caller.principal),
            after_id: q.after_id,
            limit: q.limit.saturating_add(1),
        };
        let mut out = Vec::new();
        for c in self.store.search_certificates(&search).await? {
            out.push(self.certificate_details(c).await?);
        }
        Ok(out)
    }

    /// One certificate the caller reaches, with its DER.
    pub async fn show_certificate(
        &self,
        caller: &Caller,
        id: Id,
    ) -> Result<CertificateDetails, Error> {
        let cert = self.reach_certificate(caller, id).await?;
        self.certificate_details(cert).await
    }

    /// A certificate the caller reaches in PEM, followed by the CA chain `/cacerts` sends,
    /// as `application/pem-certificate-chain` carries it (RFC 8555 §9.1): (serial, text).
    pub async fn certificate_pem_chain(
        &self,
        caller: &Caller,
        id: Id,
    ) -> Result<(String, String), Error> {
        let cert = self.reach_certificate(caller, id).await?;
        let mut text = crate::ca::pem_certificate(&cert.der);
        for ca in self.ca_chain() {
            text.push_str(&crate::ca::pem_certificate(ca));
        }
        Ok((cert.serial, text))
    }

    /// Revokes a certificate the caller reaches. certificateHold is refused (lifecycle.rs),
    /// and a certificate revoked before answers `409`.
    pub async fn revoke_certificate(
        &self,
        caller: &Caller,
        id: Id,
        reason: RevocationReason,
    ) -> Result<CertificateDetails, Error> {
        let cert = self.reach_certificate(caller, id).await?;
        let revoked = self
            .revoke(cert, reason, caller.actor())
            .await
            .map_err(|e| {
                if e.kind == crate::error::ErrorKind::Malformed {
                    e.at("reason")
                } else {
                    e
                }
            })?;
        self.certificate_details(revoked).await
    }

    async fn reach_certificate(&self, caller: &Caller, id: Id) -> Result<CertificateRecord, Error> {
        let cert = match self.store.certificate(id).await {
            Ok(c) => c,
            Err(crate::store::StoreError::NotFound(_)) => return Err(unseen("certificate")),
            Err(e) => return Err(e.into()),
        };
        let order = self.store.order(cert.order_id).await?;
        if !self.reaches_order(caller, &order).await? {
            return Err(unseen("certificate"));
        }
        Ok(cert)
    }

    async fn certificate_details(
        &self,
        certificate: CertificateRecord,
    ) -> Result<CertificateDetails, Error> {
        let order = self.store.order(certificate.order_id).await?;
        let account = self.store.account(order.account_id).await?;
        let person = match order.person_id {
            Some(id) => match self.store.person(id).await {
                Ok(p) => Some((p.id, p.email.as_str().to_string())),
                Err(crate::store::StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        Ok(CertificateDetails {
            certificate,
            account_id: account.id,
            account: account.name,
            organisation_id: account.organisation_id,
            person,
            requester: order.requester,
        })
    }
}
