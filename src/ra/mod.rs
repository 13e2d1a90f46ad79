//! Every decision: who is asking (authentication), which account they may use
//! (authorization), what may be issued (policy → `IssuancePlan`), and the issuance cycle
//! (record intent → sign → store).

mod plan;
mod throttle;

use std::sync::{Arc, OnceLock};

use estgate_protocol::{pkcs10, Csr};
use x509_parser::prelude::*;

use crate::ca::{Ca, IssuancePlan};
use crate::domain::{
    hash_secret, verify_secret, Account, Actor, Authorization, CertStatus, Clock, EmailAddress,
    Person, Profile, Secret, SecretHash, SubjectSource,
};
use crate::error::Error;
use crate::store::{AuditEntry, SignedCertificate, SigningIntent, Store};

pub use throttle::{MAX_FAILURES, WINDOW_SECS};

/// HTTP Basic credentials as EST presents them (DESIGN.md "EST mapping").
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub der: Vec<u8>,
    pub serial: String,
}

#[derive(Clone)]
pub struct Ra {
    store: Store,
    ca: Arc<Ca>,
    clock: Arc<dyn Clock>,
}

/// Who was authenticated, and for what, once the credentials checked out.
struct Authorized {
    account: Account,
    profile: Profile,
    person: Option<Person>,
    requester: String,
}

impl Ra {
    pub fn new(store: Store, ca: Arc<Ca>, clock: Arc<dyn Clock>) -> Ra {
        Ra { store, ca, clock }
    }

    pub fn ca_chain(&self) -> &[Vec<u8>] {
        self.ca.chain()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The account an EST label names, or the default account when there is no label.
    pub async fn account_for_label(&self, label: Option<&str>) -> Result<Account, Error> {
        let found = match label {
            Some(l) => self.store.account_by_label(l).await?,
            None => self.store.default_account().await?,
        };
        found.ok_or_else(|| match label {
            Some(l) => Error::not_found(format!("unknown EST label {l:?}")),
            None => Error::not_found(
                "no default EST account is configured; use /.well-known/est/<label>/",
            ),
        })
    }

    /// Key types the account's profiles allow, in profile order, without repeats.
    pub async fn allowed_key_types(
        &self,
        account: &Account,
    ) -> Result<Vec<crate::domain::KeyType>, Error> {
        let mut out = Vec::new();
        for id in &account.profile_ids {
            for k in self.store.profile(*id).await?.key_types {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        Ok(out)
    }

    /// EST `/simpleenroll`: Basic credentials, then policy, then issuance.
    pub async fn enroll(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Issued, Error> {
        let credentials = credentials.ok_or_else(|| {
            Error::unauthorized("credentials required: HTTP Basic with your email (or device identifier) and secret")
        })?;
        let auth = self.authenticate(account, &credentials).await?;
        let csr = parse_csr(csr_der)?;
        let org = self
            .store
            .organisation(auth.account.organisation_id)
            .await?;
        let department = self.department_name(&auth).await?;
        let now = self.clock.now();
        let plan = match auth.profile.subject_source {
            SubjectSource::Person => {
                let person = auth.person.as_ref().ok_or_else(|| {
                    Error::forbidden("this account's profile issues person certificates, which need a person record")
                })?;
                plan::for_person(person, &org, department, &auth.profile, &csr, now)?
            }
            SubjectSource::Device => plan::for_device(&org, department, &auth.profile, &csr, now)?,
        };
        let actor = Actor {
            name: auth.requester.clone(),
            source: source.to_string(),
        };
        self.issue(&auth, &csr, plan, actor, "enroll").await
    }

    /// EST `/simplereenroll`: the TLS client certificate authenticates; subject and SAN stay.
    pub async fn reenroll(
        &self,
        account: Account,
        client_cert: Option<&[u8]>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Issued, Error> {
        let cert_der = client_cert.ok_or_else(|| {
            Error::unauthorized(
                "re-enrollment needs the current certificate as TLS client certificate",
            )
        })?;
        let record = self
            .store
            .certificate_by_sha256(&sha256_hex(cert_der))
            .await?
            .ok_or_else(|| {
                Error::unauthorized("the TLS client certificate was not issued by this server")
            })?;
        let now = self.clock.now();
        if record.status == CertStatus::Revoked {
            return Err(Error::forbidden("the TLS client certificate is revoked"));
        }
        if record.not_after < now {
            return Err(Error::unauthorized(
                "the TLS client certificate has expired",
            ));
        }
        let order = self.store.order(record.order_id).await?;
        if order.account_id != account.id {
            return Err(Error::forbidden(
                "the TLS client certificate belongs to another EST account",
            ));
        }
        let csr = parse_csr(csr_der)?;
        let (_, old) = parse_x509_certificate(&record.der)
            .map_err(|e| Error::internal(format!("stored certificate unparsable: {e}")))?;
        let profile = self.store.profile(order.profile_id).await?;
        let plan = plan::for_renewal(&old, &profile, &csr, now)?;
        let person = match order.person_id {
            Some(id) => Some(self.store.person(id).await?),
            None => None,
        };
        let auth = Authorized {
            account,
            profile,
            person,
            requester: order.requester.clone(),
        };
        let actor = Actor {
            name: format!("tls-client:{}", record.serial),
            source: source.to_string(),
        };
        self.issue(&auth, &csr, plan, actor, "reenroll").await
    }

    async fn department_name(&self, auth: &Authorized) -> Result<Option<String>, Error> {
        let id = auth
            .account
            .department_id
            .or_else(|| auth.person.as_ref().and_then(|p| p.department_id));
        match id {
            Some(id) => Ok(Some(self.store.department(id).await?.name)),
            None => Ok(None),
        }
    }

    /// Authentication and authorization as DESIGN.md's EST mapping table says.
    async fn authenticate(&self, account: Account, c: &Credentials) -> Result<Authorized, Error> {
        let now = self.clock.now();
        let recent_failures = throttle::check(&self.store, account.id, &c.username, now).await?;
        let profile_id = *account
            .profile_ids
            .first()
            .ok_or_else(|| Error::forbidden("this account has no certificate profile"))?;
        let profile = self.store.profile(profile_id).await?;
        match account.authorization {
            Authorization::None => {
                let email = EmailAddress::parse(&c.username);
                let person = match &email {
                    Some(e) => self.store.person_by_email(e).await?,
                    None => None,
                };
                let person = person.filter(|p| p.organisation_id == account.organisation_id);
                let hash = person.as_ref().and_then(|p| p.secret_id_hash.clone());
                // Verify against a dummy hash when there is no person, so the answer's
                // timing does not reveal which addresses exist.
                let ok = verify_off_executor(
                    &c.password,
                    hash.clone().unwrap_or_else(|| dummy_hash().clone()),
                )
                .await
                    && hash.is_some();
                let (Some(person), Some(email), true) = (person, email, ok) else {
                    throttle::fail(&self.store, account.id, &c.username, now).await?;
                    return Err(Error::unauthorized("wrong email address or secret ID"));
                };
                throttle::succeed(&self.store, account.id, &c.username, recent_failures).await?;
                let org = self.store.organisation(account.organisation_id).await?;
                if !org.owns(email.domain()) {
                    return Err(Error::forbidden(format!(
                        "the email domain {} is not a verified domain of {}",
                        email.domain(),
                        org.name
                    )));
                }
                if let Some(dept) = account.department_id {
                    if person.department_id != Some(dept) {
                        return Err(Error::forbidden(
                            "this account is limited to a department you do not belong to",
                        ));
                    }
                }
                Ok(Authorized {
                    account,
                    profile,
                    requester: email.to_string(),
                    person: Some(person),
                })
            }
            Authorization::AccessCode => {
                let ok = match account.access_code_hash.clone() {
                    Some(h) => verify_off_executor(&c.password, h).await,
                    None => false,
                };
                if !ok || c.username.trim().is_empty() {
                    throttle::fail(&self.store, account.id, &c.username, now).await?;
                    return Err(Error::unauthorized("wrong access code"));
                }
                throttle::succeed(&self.store, account.id, &c.username, recent_failures).await?;
                if profile.subject_source == SubjectSource::Person {
                    return Err(Error::forbidden(
                        "this account issues person certificates with an access code, which requires \
                         email confirmation; email confirmation over EST is not available yet",
                    ));
                }
                Ok(Authorized {
                    account,
                    profile,
                    person: None,
                    requester: c.username.trim().to_string(),
                })
            }
        }
    }

    /// The issuance cycle: record intent (serial reserved) → sign → store, mark issued.
    async fn issue(
        &self,
        auth: &Authorized,
        csr: &Csr,
        plan: IssuancePlan,
        actor: Actor,
        action: &str,
    ) -> Result<Issued, Error> {
        let now = self.clock.now();
        let serial = hex::encode_upper(&plan.serial);
        let subject = plan.subject.display();
        let intent = SigningIntent {
            account_id: auth.account.id,
            profile_id: auth.profile.id,
            person_id: auth.person.as_ref().map(|p| p.id),
            requester: auth.requester.clone(),
            key_type: plan.key,
            term_years: auth.profile.default_term_years,
            csr_sha256: sha256_hex(&csr.der),
            serial: serial.clone(),
        };
        let detail = format!(
            "account={} profile={} key={} serial={} subject={}",
            auth.account.name,
            auth.profile.name,
            plan.key.as_str(),
            serial,
            subject
        );
        let intent_audit = AuditEntry {
            actor: actor.clone(),
            action: format!("{action}.intent"),
            object: String::new(),
            detail: detail.clone(),
        };
        let order_id = self
            .store
            .record_intent(&intent, &intent_audit, now)
            .await?;
        let ca = self.ca.clone();
        let spki = csr.spki_der.clone();
        let plan_for_signer = plan.clone();
        let der = tokio::task::spawn_blocking(move || ca.sign(&plan_for_signer, &spki))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)?;
        let signed = SignedCertificate {
            serial: serial.clone(),
            subject,
            not_before: plan.not_before,
            not_after: plan.not_after,
            sha256: sha256_hex(&der),
            der: der.clone(),
        };
        let audit = AuditEntry {
            actor,
            action: format!("{action}.issued"),
            object: String::new(),
            detail,
        };
        self.store
            .store_certificate(order_id, &signed, &audit, self.clock.now())
            .await?;
        tracing::info!(serial = %serial, order = order_id, "{action}: certificate issued");
        Ok(Issued { der, serial })
    }
}

/// Argon2 is deliberately slow: it runs on the blocking pool so it never stalls other
/// requests on the async executor.
async fn verify_off_executor(secret: &Secret, hash: SecretHash) -> bool {
    let secret = secret.clone();
    tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .unwrap_or(false)
}

fn dummy_hash() -> &'static SecretHash {
    static DUMMY: OnceLock<SecretHash> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&crate::domain::generate_secret(20)))
}

/// Verifies the CSR's signature and maps its faults to 400s.
fn parse_csr(der: &[u8]) -> Result<Csr, Error> {
    pkcs10::parse(der).map_err(|e| match e {
        estgate_protocol::Error::BadSignature => {
            Error::bad_csr("the CSR signature does not verify")
        }
        other => Error::bad_csr(format!("the CSR is not acceptable: {other}")),
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

impl From<crate::ca::CaError> for Error {
    fn from(e: crate::ca::CaError) -> Self {
        Error::internal(e)
    }
}

#[cfg(test)]
mod tests;
