//! Every decision: who is asking (authentication), which account they may use
//! (authorization), what may be issued (policy → `IssuancePlan`), and the issuance cycle
//! (record intent → sign → store).

pub mod admin;
mod cache;
mod figures;
mod lifecycle;
mod plan;
pub mod publication;
mod refusals;
mod selfservice;
mod throttle;

use std::sync::{Arc, OnceLock};

use estgate_protocol::{pkcs10, Csr};
use x509_parser::prelude::*;

use crate::ca::keys::{GeneratedKey, KeyGenerator, KeygenError};
use crate::ca::{Ca, IssuancePlan};
use crate::domain::{
    hash_secret, verify_secret, Account, Actor, AuthType, Authorization, CertStatus, Clock,
    EmailAddress, Person, PersonStatus, Profile, Secret, SecretHash, SubjectSource,
};
use crate::error::{Error, ErrorKind};
use crate::metrics::{GuessRefusal, Metrics};
use crate::store::{AuditEntry, Issuance, OrderOf, SignedCertificate, SigningIntent, Store};

pub use lifecycle::{OrderView, APPROVAL_RETRY_AFTER_SECS};
pub use selfservice::{
    EnrollmentForm, FieldErrors, FormError, FormOutcome, FormRequest, LinkDescription,
    SignInOutcome, SESSION_TTL_SECS,
};
pub use throttle::{
    GuessLimits, MAX_FAILURES, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS,
    MAX_FAILURES_PER_CLIENT, WINDOW_SECS,
};

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
    keygen: KeyGenerator,
    /// How long an emailed link stays valid (config `email_link_ttl_minutes`).
    email_link_ttl: i64,
    /// Who is mailed that a request waits for approval (config `approver_emails`).
    approvers: Vec<EmailAddress>,
    /// Publishes revocations (CRL, OCSP) when this process serves them.
    publisher: Option<Arc<publication::Publisher>>,
    /// Seals administrators' TOTP secrets (a file in the data directory).
    seal_key: Option<admin::SealKey>,
    /// The server's public base URL, for the enrollment URLs the admin API answers.
    public_url: String,
    /// Refusals written recently, so repeats coalesce (refusals.rs).
    refusals: Arc<refusals::RefusalLog>,
    /// How much guessing is admitted (throttle.rs), and the Argon2 slots of this process.
    guess_limits: throttle::GuessLimits,
    verifications: Arc<throttle::Verifications>,
    /// Accounts, profiles, organisations and departments read recently (cache.rs).
    reads: Arc<cache::ReadCache>,
    /// This server's figures for `/metrics` (figures.rs).
    metrics: Arc<Metrics>,
}

/// A certificate for a key the server generated; the key exists only in this value.
#[derive(Debug)]
pub struct ServerKeyIssued {
    pub issued: Issued,
    pub key: GeneratedKey,
    /// For PKCS#12: "Name <email>" for persons, the CN for devices.
    pub friendly_name: String,
    pub allow_empty_pkcs12_password: bool,
}

pub const MIN_PKCS12_PASSWORD: usize = 8;

/// Who was authenticated, and for what, once the credentials checked out.
struct Authorized {
    account: Account,
    profile: Profile,
    /// The profile's default, or the term a person chose in the form.
    term_years: u32,
    person: Option<Person>,
    requester: String,
    /// Set for access-code accounts with a person profile: the email address that must
    /// confirm the request before it is issued (DESIGN.md EST mapping).
    confirm_email: Option<EmailAddress>,
}

impl Ra {
    pub fn new(store: Store, ca: Arc<Ca>, clock: Arc<dyn Clock>) -> Ra {
        // Key generation uses at most the machine's cores and queues 64 more requests.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ra {
            store,
            ca,
            clock,
            keygen: KeyGenerator::new(cores, 64),
            email_link_ttl: 60 * 60,
            approvers: Vec::new(),
            publisher: None,
            seal_key: None,
            public_url: String::new(),
            refusals: Arc::default(),
            guess_limits: throttle::GuessLimits::default(),
            verifications: Arc::new(throttle::Verifications::new(
                &throttle::GuessLimits::default(),
            )),
            reads: Arc::new(cache::ReadCache::new(cache::DEFAULT_MAX_AGE)),
            metrics: Metrics::new(),
        }
    }

    /// Where this RA and the front ends in front of it count what they do (one per
    /// running server).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Ra {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How long a value read for enrollment may be kept (config `read_cache_ms`; zero:
    /// not kept).
    pub fn with_read_cache(mut self, max_age: std::time::Duration) -> Ra {
        self.reads = Arc::new(cache::ReadCache::new(max_age));
        self
    }

    /// A profile, through the read cache.
    async fn kept_profile(&self, id: crate::domain::Id) -> Result<Profile, Error> {
        Ok(self.reads.profile(id, self.store.profile(id)).await?)
    }

    /// An organisation, through the read cache.
    async fn kept_organisation(
        &self,
        id: crate::domain::Id,
    ) -> Result<crate::domain::Organisation, Error> {
        Ok(self
            .reads
            .organisation(id, self.store.organisation(id))
            .await?)
    }

    /// The limits on guessing and on Argon2 work (config `argon2_concurrency`, …).
    pub fn with_guess_limits(mut self, limits: GuessLimits) -> Ra {
        self.verifications = Arc::new(throttle::Verifications::new(&limits));
        self.guess_limits = limits;
        self
    }

    pub fn with_approvers(mut self, approvers: Vec<EmailAddress>) -> Ra {
        self.approvers = approvers;
        self
    }

    pub fn with_public_url(mut self, url: String) -> Ra {
        self.public_url = url;
        self
    }

    pub fn with_seal_key(mut self, key: admin::SealKey) -> Ra {
        self.seal_key = Some(key);
        self
    }

    pub fn with_publisher(mut self, publisher: Arc<publication::Publisher>) -> Ra {
        self.publisher = Some(publisher);
        self
    }

    pub fn publisher(&self) -> Option<&Arc<publication::Publisher>> {
        self.publisher.as_ref()
    }

    pub fn email_link_ttl_secs(&self) -> i64 {
        self.email_link_ttl
    }

    pub fn with_email_link_ttl(mut self, secs: i64) -> Ra {
        self.email_link_ttl = secs;
        self
    }

    pub fn ca_chain(&self) -> &[Vec<u8>] {
        self.ca.chain()
    }

    /// The account an EST label names, or the default account when there is no label.
    pub async fn account_for_label(&self, label: Option<&str>) -> Result<Account, Error> {
        let found = match label {
            Some(l) => {
                self.reads
                    .account(label, self.store.account_by_label(l))
                    .await?
            }
            None => {
                self.reads
                    .account(None, self.store.default_account())
                    .await?
            }
        };
        found.ok_or_else(|| match label {
            Some(l) => Error::not_found(format!("unknown EST label {l:?}")),
            None => Error::not_found(
                "no default EST account is configured; use /.well-known/est/<label>/",
            ),
        })
    }

    /// Key types EST enrollment on this account accepts, for csrattrs (RFC 7030 §4.5): those
    /// of the profile EST uses, which is the account's first (`est_profile`). Advertising
    /// the key types of the other profiles would promise what simpleenroll refuses.
    pub async fn allowed_key_types(
        &self,
        account: &Account,
    ) -> Result<Vec<crate::domain::KeyType>, Error> {
        Ok(self.kept_profile(est_profile_id(account)?).await?.key_types)
    }

    /// EST `/simpleenroll`: Basic credentials, then policy, then issuance.
    pub async fn enroll(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Issued, Error> {
        let refusal =
            refusals::Refusal::on_account("enroll", &account, claimed(&credentials), source);
        let work = self.enroll_unrecorded(account, credentials, csr_der, source);
        self.refusals_audited(refusal, work).await
    }

    async fn enroll_unrecorded(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Issued, Error> {
        let auth = self
            .authenticate_basic(account, credentials, source)
            .await?;
        if !auth.account.csr_method.allows_client() {
            return Err(Error::forbidden(
                "this account only issues keys generated by the server: use serverkeygen",
            ));
        }
        let csr = parse_csr(csr_der)?;
        // Refusals the CSR alone decides come before any confirmation email is sent.
        plan::check_key(&auth.profile, &csr)?;
        let mut auth = auth;
        let confirmation = self
            .require_email_confirmation(&mut auth, &csr, source)
            .await?;
        let plan = self.plan(&auth, &csr).await?;
        let actor = Actor {
            name: auth.requester.clone(),
            source: source.to_string(),
            ..Default::default()
        };
        let request = sha256_hex(&csr.der);
        let order = match self
            .approval(&auth, &request, csr.key.into(), Some(&csr.der), &actor)
            .await?
        {
            lifecycle::Approval::AlreadyIssued(issued) => return Ok(issued),
            lifecycle::Approval::Approved(order) => Some(order.id),
            lifecycle::Approval::NotNeeded => None,
        };
        self.consume_confirmation(confirmation).await?;
        self.issue_on(&auth, &csr, plan, actor, "enroll", order)
            .await
    }

    /// EST `/serverkeygen` (RFC 7030 §4.4) and PKCS#12 downloads: authenticated like
    /// `enroll`; the CSR names the subject (devices) and, through its key's algorithm, the
    /// key type wanted — the profile default when the profile does not allow that one. The
    /// CSR's own key is not used.
    pub async fn enroll_with_server_key(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<ServerKeyIssued, Error> {
        let refusal =
            refusals::Refusal::on_account("serverkeygen", &account, claimed(&credentials), source);
        let work = self.enroll_with_server_key_unrecorded(account, credentials, csr_der, source);
        self.refusals_audited(refusal, work).await
    }

    async fn enroll_with_server_key_unrecorded(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<ServerKeyIssued, Error> {
        let auth = self
            .authenticate_basic(account, credentials, source)
            .await?;
        if !auth.account.csr_method.allows_server() {
            return Err(Error::forbidden(
                "this account does not allow server-side key generation: send your own CSR to simpleenroll",
            ));
        }
        let mut csr = parse_csr(csr_der)?;
        if csr.decrypt_key_identifier {
            // RFC 7030 §4.4.1.1/4.4.1.2: the client asks for the key to be encrypted to it;
            // answering with the key in clear instead would ignore that request.
            return Err(Error::new(
                ErrorKind::NotImplemented,
                "encrypting the returned private key (DecryptKeyIdentifier / AsymmetricDecryptKeyIdentifier) is not supported",
            ));
        }
        // Before a key is generated for nothing (the plan checks it again).
        if auth.profile.subject_source == SubjectSource::Device && binds_device_names(&auth.account)
        {
            plan::check_bound_names(&auth.requester, &csr)?;
        }
        let mut auth = auth;
        let confirmation = self
            .require_email_confirmation(&mut auth, &csr, source)
            .await?;
        let key_type = if auth.profile.key_types.contains(&csr.key.into()) {
            csr.key.into()
        } else {
            auth.profile.default_key_type
        };
        let actor = Actor {
            name: auth.requester.clone(),
            source: source.to_string(),
            ..Default::default()
        };
        // Before any key exists: an order waiting for approval keeps no key (and no CSR,
        // whose key is not the one that will be certified).
        let (order, key_type) = self
            .server_key_approval(&mut auth, &sha256_hex(&csr.der), key_type, &actor)
            .await?;
        let key = self.generate_key(key_type).await?;
        csr.key = key_type.into();
        csr.spki_der = key.spki_der.clone();
        let plan = self.plan(&auth, &csr).await?;
        let friendly_name = friendly_name(&plan);
        self.consume_confirmation(confirmation).await?;
        let issued = self
            .issue_on(&auth, &csr, plan, actor, "serverkeygen", order)
            .await?;
        Ok(ServerKeyIssued {
            issued,
            key,
            friendly_name,
            allow_empty_pkcs12_password: auth.account.allow_empty_pkcs12_password,
        })
    }

    /// An administrator issues a certificate with a server-generated key on an account, for
    /// a person (by email) or a device (by DNS name), with the same policy as EST but no
    /// credentials: the caller is trusted to run the admin CLI against this database.
    pub async fn issue_with_server_key_as_admin(
        &self,
        account: Account,
        subject: &str,
        key_type: Option<crate::domain::KeyType>,
        actor: Actor,
    ) -> Result<ServerKeyIssued, Error> {
        if !account.csr_method.allows_server() {
            return Err(Error::forbidden(
                "this account does not allow server-side key generation",
            ));
        }
        let profile_id = *account
            .profile_ids
            .first()
            .ok_or_else(|| Error::forbidden("this account has no certificate profile"))?;
        let profile = self.store.profile(profile_id).await?;
        let key_type = match key_type {
            Some(k) if profile.key_types.contains(&k) => k,
            Some(k) => {
                return Err(Error::bad_csr(format!(
                    "key type {} is not allowed by profile {:?}",
                    k.as_str(),
                    profile.name
                )))
            }
            None => profile.default_key_type,
        };
        let (person, requester, names) = match profile.subject_source {
            SubjectSource::Person => {
                let email = EmailAddress::parse(subject).ok_or_else(|| {
                    Error::malformed(format!("{subject:?} is not an email address"))
                })?;
                let person = self
                    .store
                    .person_by_email(&email)
                    .await?
                    .filter(|p| p.organisation_id == account.organisation_id)
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "no person {email} in this account's organisation"
                        ))
                    })?;
                Self::check_person_active(&person)?;
                if account.department_id.is_some() && person.department_id != account.department_id
                {
                    return Err(Error::forbidden(
                        "the person is not in this account's department",
                    ));
                }
                let org = self.kept_organisation(account.organisation_id).await?;
                Self::check_domain(&org, &email)?;
                (Some(person), email.to_string(), Vec::new())
            }
            SubjectSource::Device => (None, subject.to_string(), vec![subject.to_string()]),
        };
        let mut auth = Authorized {
            term_years: profile.default_term_years,
            account,
            profile,
            person,
            requester,
            confirm_email: None,
        };
        let request = lifecycle::server_key_request(&auth.requester);
        let (order, key_type) = self
            .server_key_approval(&mut auth, &request, key_type, &actor)
            .await?;
        let key = self.generate_key(key_type).await?;
        // The plan is built from a request of the administrator's making, so the same
        // policy code decides as for EST.
        let csr = csr_for_generated_key(&key.spki_der, key_type, names);
        let plan = self.plan(&auth, &csr).await?;
        let friendly_name = friendly_name(&plan);
        let issued = self
            .issue_on(&auth, &csr, plan, actor, "admin-issue", order)
            .await?;
        Ok(ServerKeyIssued {
            issued,
            key,
            friendly_name,
            allow_empty_pkcs12_password: auth.account.allow_empty_pkcs12_password,
        })
    }

    /// A key pair from the bounded keygen pool; a full queue is a 503 with Retry-After.
    async fn generate_key(&self, key_type: crate::domain::KeyType) -> Result<GeneratedKey, Error> {
        self.keygen.generate(key_type).await.map_err(|e| match e {
            KeygenError::Busy { retry_after } => Error::new(
                ErrorKind::Unavailable { retry_after },
                "the server is busy generating keys; try again shortly",
            ),
            other => Error::internal(other),
        })
    }

    /// The PKCS#12 file for a server-generated key: key, leaf and chain, encrypted with
    /// `password`. Runs on the blocking pool (100 000 PBKDF2 iterations take a while).
    pub async fn pkcs12(
        &self,
        issued: &ServerKeyIssued,
        password: &Secret,
        encryption: crate::domain::Pkcs12Encryption,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let key = issued.key.pkcs8.clone();
        let leaf = issued.issued.der.clone();
        let name = issued.friendly_name.clone();
        let password = password.clone();
        let ca = self.ca.clone();
        tokio::task::spawn_blocking(move || {
            crate::ca::pkcs12::build(
                &key,
                &leaf,
                ca.chain(),
                &name,
                password.expose(),
                encryption,
            )
            .map(zeroize::Zeroizing::new)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
    }

    /// RA policy for PKCS#12 passwords: at least 8 characters, or empty where the account
    /// allows an empty password. Checked before anything is generated or stored.
    pub fn check_pkcs12_password(&self, account: &Account, password: &str) -> Result<(), Error> {
        if password.is_empty() && account.allow_empty_pkcs12_password {
            return Ok(());
        }
        if password.chars().count() < MIN_PKCS12_PASSWORD {
            return Err(Error::malformed(if password.is_empty() {
                format!("this account requires a PKCS#12 password of at least {MIN_PKCS12_PASSWORD} characters")
            } else {
                format!("the PKCS#12 password needs at least {MIN_PKCS12_PASSWORD} characters")
            }));
        }
        Ok(())
    }

    async fn authenticate_basic(
        &self,
        account: Account,
        credentials: Option<Credentials>,
        source: &str,
    ) -> Result<Authorized, Error> {
        let credentials = credentials.ok_or_else(|| {
            Error::unauthorized("credentials required: HTTP Basic with your email (or device identifier) and secret")
        })?;
        self.authenticate(account, &credentials, source).await
    }

    /// What may be issued for this requester: subject from the person record, or device
    /// names from the CSR that the organisation owns.
    async fn plan(&self, auth: &Authorized, csr: &Csr) -> Result<IssuancePlan, Error> {
        let org = self.kept_organisation(auth.account.organisation_id).await?;
        let department = self.department_name(auth).await?;
        let now = self.clock.now();
        let plan = match auth.profile.subject_source {
            SubjectSource::Person => {
                let person = auth.person.as_ref().ok_or_else(|| {
                    Error::forbidden("this account's profile issues person certificates, which need a person record")
                })?;
                // Also for a form session that began before the person was disabled.
                Self::check_person_active(person)?;
                plan::for_person(
                    person,
                    &org,
                    department,
                    &auth.profile,
                    auth.term_years,
                    csr,
                    now,
                )
            }
            SubjectSource::Device => {
                if binds_device_names(&auth.account) {
                    plan::check_bound_names(&auth.requester, csr)?;
                }
                plan::for_device(&org, department, &auth.profile, auth.term_years, csr, now)
            }
        }?;
        self.check_ca_covers(&plan)?;
        Ok(plan)
    }

    /// A certificate never outlives its issuer (RFC 5280 §6.1: a path is valid only while
    /// every certificate in it is): a term the issuing CA cannot cover is refused, not cut
    /// short or issued to fail validation later.
    fn check_ca_covers(&self, plan: &IssuancePlan) -> Result<(), Error> {
        let ca_end = self.ca.not_after();
        if plan.not_after <= ca_end {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "the issuing CA expires on {}, before this certificate's term would end ({}): \
             choose a shorter term, or ask the operator to renew the CA",
            crate::ca::date(ca_end),
            crate::ca::date(plan.not_after)
        )))
    }

    /// A person an administrator disabled or deleted is refused wherever they present
    /// themselves: form sign-in, EST enrollment, re-enrollment, an administrator's issue.
    pub(crate) fn check_person_active(p: &Person) -> Result<(), Error> {
        match p.status {
            PersonStatus::Active => Ok(()),
            PersonStatus::Disabled => Err(Error::forbidden(
                "this person is disabled; ask your administrator",
            )),
            PersonStatus::Deleted => Err(Error::forbidden(
                "this person was removed; ask your administrator",
            )),
        }
    }

    /// EST `/simplereenroll`: the TLS client certificate authenticates; subject and SAN stay.
    pub async fn reenroll(
        &self,
        account: Account,
        client_cert: Option<&[u8]>,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Issued, Error> {
        // Named as issuance names it (`tls-client:<serial>`) once the certificate is known.
        let who = match client_cert {
            Some(der) => match parse_x509_certificate(der) {
                Ok((_, c)) => format!("tls-client:{}", hex::encode_upper(c.raw_serial())),
                Err(_) => "tls-client:unparsable".to_string(),
            },
            None => "anonymous".to_string(),
        };
        let refusal = refusals::Refusal::on_account("reenroll", &account, &who, source);
        let work = self.reenroll_unrecorded(account, client_cert, csr_der, source);
        self.refusals_audited(refusal, work).await
    }

    async fn reenroll_unrecorded(
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
        // The current rules decide, as for a first enrollment: the profile must still be
        // one of the account's, and a person still on record in the account's organisation
        // (and department, when the account names one), under a verified domain.
        if !account.profile_ids.contains(&order.profile_id) {
            return Err(Error::forbidden(
                "the certificate's profile is no longer offered by this account",
            ));
        }
        let profile = match self.store.profile(order.profile_id).await {
            Ok(p) => p,
            Err(crate::store::StoreError::NotFound(_)) => {
                return Err(Error::forbidden(
                    "the certificate's profile no longer exists",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let person = match order.person_id {
            Some(id) => match self.store.person(id).await {
                Ok(p) => Some(p),
                Err(crate::store::StoreError::NotFound(_)) => {
                    return Err(Error::forbidden("the person is no longer on record"))
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if let Some(p) = &person {
            Self::check_person_active(p)?;
            if p.organisation_id != account.organisation_id {
                return Err(Error::forbidden(
                    "the person no longer belongs to this account's organisation",
                ));
            }
            if account.department_id.is_some() && p.department_id != account.department_id {
                return Err(Error::forbidden(
                    "the person no longer belongs to this account's department",
                ));
            }
            let org = self.store.organisation(account.organisation_id).await?;
            Self::check_domain(&org, &p.email)?;
        }
        if profile.subject_source == SubjectSource::Device {
            // Device names must still sit in a verified domain of the organisation, and
            // still be the device's own where the account now binds them.
            if binds_device_names(&account) {
                plan::check_bound_names(&order.requester, &csr)?;
            }
            let org = self.store.organisation(account.organisation_id).await?;
            plan::for_device(&org, None, &profile, profile.default_term_years, &csr, now)?;
        }
        let plan = plan::for_renewal(&old, &profile, &csr, now)?;
        self.check_ca_covers(&plan)?;
        let auth = Authorized {
            term_years: profile.default_term_years,
            account,
            profile,
            person,
            requester: order.requester.clone(),
            confirm_email: None,
        };
        let actor = Actor {
            name: format!("tls-client:{}", record.serial),
            source: source.to_string(),
            ..Default::default()
        };
        let request = sha256_hex(&csr.der);
        let approved = match self
            .approval(&auth, &request, csr.key.into(), Some(&csr.der), &actor)
            .await?
        {
            lifecycle::Approval::AlreadyIssued(issued) => return Ok(issued),
            lifecycle::Approval::Approved(order) => Some(order.id),
            lifecycle::Approval::NotNeeded => None,
        };
        self.issue_on(&auth, &csr, plan, actor, "reenroll", approved)
            .await
    }

    async fn department_name(&self, auth: &Authorized) -> Result<Option<String>, Error> {
        let id = auth
            .account
            .department_id
            .or_else(|| auth.person.as_ref().and_then(|p| p.department_id));
        match id {
            Some(id) => Ok(Some(
                self.reads
                    .department(id, self.store.department(id))
                    .await?
                    .name,
            )),
            None => Ok(None),
        }
    }

    /// Authentication and authorization as DESIGN.md's EST mapping table says.
    async fn authenticate(
        &self,
        account: Account,
        c: &Credentials,
        source: &str,
    ) -> Result<Authorized, Error> {
        let now = self.clock.now();
        let limits = &self.guess_limits;
        let keys = match account.authorization {
            Authorization::None => vec![
                throttle::Key::secret_id(&c.username),
                throttle::Key::client(limits, source),
                throttle::Key::account(limits, account.id),
            ],
            Authorization::AccessCode => vec![
                throttle::Key::username(account.id, &c.username),
                throttle::Key::address(account.id, source),
                throttle::Key::client(limits, source),
                throttle::Key::account(limits, account.id),
            ],
        };
        let recent_failures = self.counted(
            throttle::check(&self.store, &keys, now).await,
            GuessRefusal::Locked,
        )?;
        let profile_id = *account
            .profile_ids
            .first()
            .ok_or_else(|| Error::forbidden("this account has no certificate profile"))?;
        let profile = self.kept_profile(profile_id).await?;
        match account.authorization {
            Authorization::None => {
                let email = EmailAddress::parse(&c.username);
                let person = match &email {
                    Some(e) => self.store.person_by_email(e).await?,
                    None => None,
                };
                let person = person.filter(|p| p.organisation_id == account.organisation_id);
                let hash = person.as_ref().and_then(|p| p.secret_id_hash.clone());
                let ok = self.verify_guess(&keys, &c.password, hash, source).await?;
                let (Some(person), Some(email), true) = (person, email, ok) else {
                    return Err(Error::unauthorized("wrong email address or secret ID"));
                };
                throttle::forget_failures(&self.store, &keys, &recent_failures).await?;
                Self::check_person_active(&person)?;
                let org = self.kept_organisation(account.organisation_id).await?;
                Self::check_domain(&org, &email)?;
                if let Some(dept) = account.department_id {
                    if person.department_id != Some(dept) {
                        return Err(Error::forbidden(
                            "this account is limited to a department you do not belong to",
                        ));
                    }
                }
                Ok(Authorized {
                    term_years: profile.default_term_years,
                    account,
                    profile,
                    requester: email.to_string(),
                    person: Some(person),
                    confirm_email: None,
                })
            }
            Authorization::AccessCode => {
                // A blank device name counts as a failure whatever the code.
                let hash = if c.username.trim().is_empty() {
                    None
                } else {
                    account.access_code_hash.clone()
                };
                if !self.verify_guess(&keys, &c.password, hash, source).await? {
                    return Err(Error::unauthorized("wrong access code"));
                }
                // Nothing is forgotten: the code is shared and the username anybody's, so a
                // right code must not reset the count of guesses (throttle.rs).
                if profile.subject_source == SubjectSource::Person {
                    // A shared access code does not say who is asking: the person proves
                    // the address by following an emailed link (selfservice.rs).
                    let endpoint = self.store.endpoint(account.endpoint_id).await?;
                    if !endpoint.auth_types.contains(&AuthType::EmailConfirmation) {
                        return Err(Error::forbidden(
                            "this account issues person certificates with an access code, which \
                             requires email confirmation, and its endpoint does not offer it",
                        ));
                    }
                    let email = EmailAddress::parse(&c.username).ok_or_else(|| {
                        Error::forbidden(
                            "the user name must be your email address: a confirmation link is sent to it",
                        )
                    })?;
                    let org = self.kept_organisation(account.organisation_id).await?;
                    Self::check_domain(&org, &email)?;
                    let person = self
                        .store
                        .person_on_record(&email)
                        .await?
                        .filter(|p| p.organisation_id == account.organisation_id);
                    if let Some(p) = &person {
                        Self::check_person_active(p)?;
                    }
                    // As in the form: a person on record must be in the account's department.
                    if let (Some(dept), Some(p)) = (account.department_id, &person) {
                        if p.department_id != Some(dept) {
                            return Err(Error::forbidden(
                                "this account is limited to a department you do not belong to",
                            ));
                        }
                    }
                    return Ok(Authorized {
                        term_years: profile.default_term_years,
                        account,
                        profile,
                        person,
                        requester: email.to_string(),
                        confirm_email: Some(email),
                    });
                }
                Ok(Authorized {
                    term_years: profile.default_term_years,
                    account,
                    profile,
                    person: None,
                    requester: c.username.trim().to_string(),
                    confirm_email: None,
                })
            }
        }
    }

    /// The issuance cycle: sign, then store the certificate with its order and audit event
    /// in the next group commit (store/batch.rs), and answer only once that is durable. A
    /// crash before the commit leaves nothing behind and delivers nothing: the certificate
    /// was never handed out. An `approved` order is first moved to `signing`, which only one
    /// caller wins.
    async fn issue_on(
        &self,
        auth: &Authorized,
        csr: &Csr,
        plan: IssuancePlan,
        actor: Actor,
        action: &str,
        approved: Option<crate::domain::Id>,
    ) -> Result<Issued, Error> {
        let now = self.clock.now();
        // Checked again here, the one door to signing: an order approved after the CA
        // came close to its end must not be signed past it either.
        self.check_ca_covers(&plan)?;
        let serial = hex::encode_upper(&plan.serial);
        let subject = plan.subject.display();
        let intent = SigningIntent {
            account_id: auth.account.id,
            profile_id: auth.profile.id,
            person_id: auth.person.as_ref().map(|p| p.id),
            requester: auth.requester.clone(),
            key_type: plan.key,
            term_years: auth.term_years,
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
        let order = match approved {
            None => OrderOf::New(intent),
            Some(id) => {
                let intent_audit = AuditEntry {
                    actor: actor.clone(),
                    action: format!("{action}.intent"),
                    object: String::new(),
                    detail: detail.clone(),
                    organisation_id: Some(auth.account.organisation_id),
                    department_id: auth.person.as_ref().and_then(|p| p.department_id),
                    ..Default::default()
                };
                if !self
                    .store
                    .begin_signing(id, &serial, &intent_audit, now)
                    .await?
                {
                    return Err(Error::new(
                        ErrorKind::Pending { retry_after: 5 },
                        "the certificate is being signed; ask again in a moment",
                    ));
                }
                OrderOf::Signing(id)
            }
        };
        let der = if self.ca.signs_quickly() {
            self.ca
                .sign(&plan, &csr.spki_der)
                .map_err(Error::internal)?
        } else {
            let ca = self.ca.clone();
            let spki = csr.spki_der.clone();
            let plan_for_signer = plan.clone();
            tokio::task::spawn_blocking(move || ca.sign(&plan_for_signer, &spki))
                .await
                .map_err(Error::internal)?
                .map_err(Error::internal)?
        };
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
            organisation_id: Some(auth.account.organisation_id),
            department_id: auth.person.as_ref().and_then(|p| p.department_id),
            ..Default::default()
        };
        // Orders that waited for approval tell the person when the certificate exists.
        let mut notices = Vec::new();
        if let OrderOf::Signing(order_id) = &order {
            if let Some(to) = self
                .requester_email(&self.store.order(*order_id).await?)
                .await?
            {
                notices.push(crate::store::Notice {
                    kind: crate::store::NoticeKind::CertificateIssued,
                    recipient: to.to_string(),
                    order_id: Some(*order_id),
                    certificate_id: None,
                    dedupe_key: None,
                });
            }
        }
        let stored = self
            .store
            .store_issuance(Issuance {
                order,
                cert: signed,
                audit,
                notices,
                now: self.clock.now(),
            })
            .await?;
        let order_id = stored.order_id;
        self.metrics.issued(&auth.account.name, &auth.profile.name);
        tracing::info!(serial = %serial, order = order_id, "{action}: certificate issued");
        Ok(Issued { der, serial })
    }
}

impl Ra {
    /// `r`, after counting a refusal before any check (429 of a throttle, 503 of the
    /// Argon2 slots) for `/metrics`.
    fn counted<T>(&self, r: Result<T, Error>, why: GuessRefusal) -> Result<T, Error> {
        if let Err(e) = &r {
            if matches!(
                e.kind,
                ErrorKind::RateLimited { .. } | ErrorKind::Unavailable { .. }
            ) {
                self.metrics.guess_refused(why);
            }
        }
        r
    }

    /// Verifies a guessed secret against `hash` — or a dummy hash when there is none, so
    /// the answer's timing does not reveal which names exist — counted under the throttle
    /// `keys`.
    async fn verify_guess(
        &self,
        keys: &[throttle::Key],
        secret: &Secret,
        hash: Option<SecretHash>,
        source: &str,
    ) -> Result<bool, Error> {
        Ok(self
            .verify_guess_among(keys, secret, hash.as_slice(), source)
            .await?
            .is_some())
    }

    /// Which of `hashes` a guessed secret matches: one guess under the throttle `keys`
    /// however many hashes it is tried against (throttle.rs: guesses under one key take
    /// turns), in one verification slot. With no hash at all a dummy is verified, for the
    /// timing. A secret verified moments ago is let through without a turn, a slot or a
    /// write. No free slot: 503, and the guess is not counted.
    async fn verify_guess_among(
        &self,
        keys: &[throttle::Key],
        secret: &Secret,
        hashes: &[SecretHash],
        source: &str,
    ) -> Result<Option<usize>, Error> {
        let known = || {
            hashes
                .iter()
                .position(|h| crate::domain::recently_verified(secret, h))
        };
        if let Some(i) = known() {
            return Ok(Some(i));
        }
        let _turn = throttle::take_turn(keys).await;
        // The count may have grown while this guess waited for its turn.
        let counts = self.counted(
            throttle::check(&self.store, keys, self.clock.now()).await,
            GuessRefusal::Locked,
        )?;
        if let Some(i) = known() {
            return Ok(Some(i));
        }
        let slot = self.counted(self.verifications.slot().await, GuessRefusal::Busy)?;
        let matched = verify_off_executor(slot, secret, hashes).await;
        if matched.is_none() {
            throttle::fail(&self.store, keys, self.clock.now()).await?;
            self.record_lockouts(keys, &counts, source).await?;
        }
        Ok(matched)
    }
}

/// The profile EST uses on an account: its first. Enrollment (`authenticate`) and csrattrs
/// (`allowed_key_types`) both follow this rule, so csrattrs promises exactly what
/// simpleenroll accepts.
fn est_profile_id(account: &Account) -> Result<crate::domain::Id, Error> {
    account
        .profile_ids
        .first()
        .copied()
        .ok_or_else(|| Error::forbidden("this account has no certificate profile"))
}

/// Whether a device CSR on this account may name only the Basic username: the option is
/// read only where the username is a device identifier (access-code accounts).
fn binds_device_names(account: &Account) -> bool {
    account.bind_device_names && account.authorization == Authorization::AccessCode
}

/// The identity a request claims, for the audit of its refusal.
fn claimed(credentials: &Option<Credentials>) -> &str {
    credentials
        .as_ref()
        .map(|c| c.username.as_str())
        .unwrap_or("anonymous")
}

/// Which of `hashes` the secret matches (none given: a dummy is verified, for the timing).
/// Argon2 is deliberately slow: it runs on the blocking pool so it never stalls other
/// requests on the async executor, and holds its verification slot until it ends, even if
/// the request is abandoned meanwhile (throttle.rs `Verifications`).
async fn verify_off_executor(
    slot: throttle::Slot,
    secret: &Secret,
    hashes: &[SecretHash],
) -> Option<usize> {
    fn verify(secret: &Secret, hashes: &[SecretHash]) -> Option<usize> {
        if hashes.is_empty() {
            verify_secret(secret, dummy_hash());
            return None;
        }
        hashes.iter().position(|h| verify_secret(secret, h))
    }
    // A thread of its own at a lower priority (throttle::yield_to_requests): under a flood
    // of guesses the Argon2 work takes what the requests leave, so right secrets and
    // everything else keep being answered. Starting a thread costs tens of microseconds
    // against Argon2's milliseconds.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (s, h) = (secret.clone(), hashes.to_vec());
    let spawned = std::thread::Builder::new()
        .name("estgate-argon2".into())
        .spawn(move || {
            let _slot = slot;
            throttle::yield_to_requests();
            let _ = tx.send(verify(&s, &h));
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or(None),
        // No thread to be had: on the blocking pool, at normal priority.
        Err(_) => {
            let (s, h) = (secret.clone(), hashes.to_vec());
            tokio::task::spawn_blocking(move || verify(&s, &h))
                .await
                .unwrap_or(None)
        }
    }
}

/// A request of the server's own making for a key it generated, so that the same policy
/// code decides as for a client's CSR. `names` are device names (empty for persons).
fn csr_for_generated_key(
    spki_der: &[u8],
    key_type: crate::domain::KeyType,
    names: Vec<String>,
) -> Csr {
    Csr {
        der: spki_der.to_vec(),
        spki_der: spki_der.to_vec(),
        key: key_type.into(),
        subject_der: Vec::new(),
        common_name: names.first().cloned(),
        common_names: names.first().cloned().into_iter().collect(),
        dns_names: names,
        emails: Vec::new(),
        other_names: Vec::new(),
        has_subject_alt_name: false,
        decrypt_key_identifier: false,
    }
}

/// PKCS#12 friendlyName: "Name <email>" for persons, the CN for devices.
fn friendly_name(plan: &IssuancePlan) -> String {
    match plan.emails.first() {
        Some(e) => format!("{} <{e}>", plan.subject.common_name),
        None => plan.subject.common_name.clone(),
    }
}

fn dummy_hash() -> &'static SecretHash {
    static DUMMY: OnceLock<SecretHash> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&crate::domain::generate_secret(20)))
}

/// The key algorithm a CSR carries (the wire format's type) as the model's key type.
impl From<estgate_protocol::KeyAlgorithm> for crate::domain::KeyType {
    fn from(k: estgate_protocol::KeyAlgorithm) -> Self {
        use estgate_protocol::KeyAlgorithm as A;
        match k {
            A::Rsa { bits } => Self::Rsa { bits },
            A::EcP256 => Self::EcP256,
            A::EcP384 => Self::EcP384,
        }
    }
}

/// The model's key type in the wire format (a CSR made for a generated key, csrattrs).
impl From<crate::domain::KeyType> for estgate_protocol::KeyAlgorithm {
    fn from(k: crate::domain::KeyType) -> Self {
        use crate::domain::KeyType as K;
        match k {
            K::Rsa { bits } => Self::Rsa { bits },
            K::EcP256 => Self::EcP256,
            K::EcP384 => Self::EcP384,
        }
    }
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
mod lifecycle_tests;
#[cfg(test)]
mod selfservice_tests;
#[cfg(test)]
mod tests;
