//! Self-enrollment decisions, shared by the browser form and EST email confirmation:
//! sign-in by emailed link or secret ID, web sessions, account choice (access code or the
//! listed accounts), the enrollment form's policy, and issuance from it.

use estgate_protocol::Csr;
use zeroize::Zeroizing;

use super::refusals::Refusal;
use super::{friendly_name, parse_csr, sha256_hex, throttle, Authorized, Ra};
use crate::domain::{
    clean_person_name, generate_secret, hash_token, Account, Actor, AuthType, Authorization,
    CertStatus, CertificateRecord, CsrMethod, Department, EmailAddress, EmailPurpose, Endpoint, Id,
    KeyType, Organisation, Person, Pkcs12Encryption, Profile, RevocationReason, Secret,
    SubjectSource, WebSession,
};
use crate::error::{Error, ErrorKind};
use crate::metrics::GuessRefusal;
use crate::store::{NewEmailToken, NewPerson, NewWebSession, TokenRefusal};

/// A web session lasts this long from sign-in: long enough to fill the form, short enough
/// that a forgotten browser tab is not a standing credential.
pub const SESSION_TTL_SECS: i64 = 30 * 60;

/// EST clients retry after this many seconds while a request waits for its confirmation.
const EST_RETRY_AFTER: u64 = 60;

/// What following an emailed link did.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Signed in to the form: the secret goes into the session cookie.
    Session(Secret),
    /// An EST request was confirmed; the client gets its certificate on its next try.
    EstConfirmed { account: String },
}

/// What an emailed link is about, shown before it is used, so that a person can tell a
/// request they made from one somebody else made in their name.
#[derive(Debug, Clone)]
pub struct LinkDescription {
    pub purpose: EmailPurpose,
    pub email: EmailAddress,
    /// For EST confirmations: the account the certificate would be issued on.
    pub account: Option<String>,
    /// The client address the request came from, and when.
    pub source: String,
    pub requested_at: i64,
}

/// What the form shows for the chosen account.
#[derive(Debug, Clone)]
pub struct EnrollmentForm {
    pub endpoint: Endpoint,
    pub organisation: Organisation,
    pub department: Option<Department>,
    pub account: Account,
    pub profiles: Vec<Profile>,
    pub email: EmailAddress,
    pub person: Option<Person>,
}

/// The form as submitted. Names are what the person typed; passwords are secrets.
#[derive(Debug)]
pub struct FormRequest {
    pub profile_id: Option<Id>,
    pub term_years: Option<u32>,
    pub key_type: Option<KeyType>,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub password: Secret,
    pub password_confirmation: Secret,
    pub encryption: Pkcs12Encryption,
    /// For client-side CSR generation: the CSR, DER (PEM is decoded by the web layer).
    pub csr_der: Option<Vec<u8>>,
    pub eula_accepted: bool,
}

/// Field name → what is wrong with it, in form order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Debug)]
pub enum FormError {
    /// Shown next to the fields; the form is shown again with what was typed.
    Fields(FieldErrors),
    Other(Error),
}

impl From<Error> for FormError {
    fn from(e: Error) -> Self {
        FormError::Other(e)
    }
}

#[derive(Debug)]
pub enum FormOutcome {
    /// A server-generated key and its certificate in one PKCS#12 file.
    Pkcs12 {
        file: Zeroizing<Vec<u8>>,
        filename: String,
        serial: String,
        encryption: Pkcs12Encryption,
    },
    /// A client-side CSR was signed: the certificate and the chain, PEM.
    Certificate {
        pem: String,
        filename: String,
        serial: String,
    },
    /// The profile needs an administrator's approval first.
    PendingApproval { order_id: Id },
}

fn token_refused(r: TokenRefusal) -> Error {
    match r {
        TokenRefusal::Unknown => {
            Error::unauthorized("this link is not valid: request a new one from the sign-in page")
        }
        TokenRefusal::AlreadyUsed => Error::new(
            ErrorKind::AlreadyUsed,
            "this link has already been used, or a newer one was sent: request a new one",
        ),
        TokenRefusal::Expired => Error::new(
            ErrorKind::Expired,
            "this link has expired: request a new one from the sign-in page",
        ),
    }
}

/// First, middle and last name from a CSR's common name, for a person first seen through
/// EST email confirmation (EST carries no name fields). They go on the record and into every
/// later certificate, so they pass the same check as typed names.
fn names_from_common_name(
    cn: Option<&str>,
    email: &EmailAddress,
) -> Result<(String, String, String), Error> {
    let words: Vec<&str> = cn.unwrap_or("").split_whitespace().collect();
    let (first, middle, last) = match words.as_slice() {
        [] => (
            email.as_str().split('@').next().unwrap_or("").to_string(),
            String::new(),
            String::new(),
        ),
        [one] => (one.to_string(), String::new(), String::new()),
        [first, middle @ .., last] => (first.to_string(), middle.join(" "), last.to_string()),
    };
    let clean = |s: &str| {
        clean_person_name(s).map_err(|why| {
            Error::new(
                ErrorKind::BadCsr,
                format!("the CSR's common name cannot be a person's name: it {why}"),
            )
        })
    };
    Ok((clean(&first)?, clean(&middle)?, clean(&last)?))
}

impl Ra {
    /// The endpoint a form URL names.
    pub async fn endpoint(&self, uri_extension: &str) -> Result<Endpoint, Error> {
        self.store
            .endpoint_by_uri_extension(uri_extension)
            .await?
            .ok_or_else(|| Error::not_found("there is no enrollment page at this address"))
    }

    pub async fn organisation_of(&self, endpoint: &Endpoint) -> Result<Organisation, Error> {
        Ok(self.store.organisation(endpoint.organisation_id).await?)
    }

    /// The email address must be in one of the organisation's verified domains.
    pub(super) fn check_domain(org: &Organisation, email: &EmailAddress) -> Result<(), Error> {
        if org.owns(email.domain()) {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "{} is not an address of {}: use an address at {}",
            email,
            org.name,
            org.domains.join(", ")
        )))
    }

    /// Mails a one-time sign-in link. For addresses in the organisation's domains the
    /// answer is the same whether or not a person record exists.
    pub async fn start_email_confirmation(
        &self,
        endpoint: &Endpoint,
        email: &str,
        source: &str,
    ) -> Result<EmailAddress, Error> {
        if !endpoint.auth_types.contains(&AuthType::EmailConfirmation) {
            return Err(Error::forbidden(
                "this enrollment page does not offer email confirmation",
            ));
        }
        let email = EmailAddress::parse(email)
            .ok_or_else(|| Error::malformed("enter a valid email address"))?;
        let org = self.organisation_of(endpoint).await?;
        Self::check_domain(&org, &email)?;
        let now = self.clock.now();
        self.counted(
            throttle::allow_mail(&self.store, email.as_str(), source, now).await,
            GuessRefusal::Mail,
        )?;
        self.store
            .create_email_token(
                &NewEmailToken {
                    endpoint_id: endpoint.id,
                    email: email.clone(),
                    purpose: EmailPurpose::SignIn,
                    account_id: None,
                    csr_sha256: None,
                    source: source.to_string(),
                    expires_at: now + self.email_link_ttl,
                },
                now,
            )
            .await?;
        tracing::info!(endpoint = endpoint.id, "sign-in link queued");
        Ok(email)
    }

    /// Describes a link without using it (the page behind the link asks before it acts).
    pub async fn describe_email_link(
        &self,
        endpoint: &Endpoint,
        token: &Secret,
    ) -> Result<LinkDescription, Error> {
        let now = self.clock.now();
        let t = self
            .store
            .email_token_by_hash(&hash_token(token), endpoint.id)
            .await?
            .ok_or_else(|| token_refused(TokenRefusal::Unknown))?;
        if t.consumed_at.is_some() || t.confirmed_at.is_some() {
            return Err(token_refused(TokenRefusal::AlreadyUsed));
        }
        if t.expires_at <= now {
            return Err(token_refused(TokenRefusal::Expired));
        }
        let account = match t.account_id {
            Some(id) => Some(self.store.account(id).await?.name),
            None => None,
        };
        Ok(LinkDescription {
            purpose: t.purpose,
            email: t.email,
            account,
            source: throttle::host(&t.source),
            requested_at: t.created_at,
        })
    }

    /// Follows an emailed link: once only, before it expires, at the endpoint it was
    /// sent for.
    pub async fn follow_email_link(
        &self,
        endpoint: &Endpoint,
        token: &Secret,
        source: &str,
    ) -> Result<SignInOutcome, Error> {
        let now = self.clock.now();
        let hash = hash_token(token);
        let token = self
            .store
            .use_email_token(&hash, endpoint.id, now)
            .await?
            .map_err(token_refused)?;
        match token.purpose {
            EmailPurpose::SignIn => {
                let org = self.organisation_of(endpoint).await?;
                let person = self
                    .store
                    .person_on_record(&token.email)
                    .await?
                    .filter(|p| p.organisation_id == org.id);
                if let Some(p) = &person {
                    Self::check_person_active(p)?;
                }
                let secret = self
                    .new_session(
                        endpoint,
                        &token.email,
                        person.map(|p| p.id),
                        AuthType::EmailConfirmation,
                        source,
                    )
                    .await?;
                Ok(SignInOutcome::Session(secret))
            }
            EmailPurpose::Est => {
                let account = match token.account_id {
                    Some(id) => self.store.account(id).await?.name,
                    None => String::new(),
                };
                self.audit(
                    &token.email.to_string(),
                    source,
                    "est.email-confirmed",
                    &format!("account={account}"),
                )
                .await?;
                Ok(SignInOutcome::EstConfirmed { account })
            }
        }
    }

    /// Signs in with email and secret ID (persons an administrator created), throttled
    /// per person like EST's secrets (one count for both), and per client address.
    pub async fn sign_in_with_secret_id(
        &self,
        endpoint: &Endpoint,
        email: &str,
        secret_id: &Secret,
        source: &str,
    ) -> Result<Secret, Error> {
        if !endpoint.auth_types.contains(&AuthType::SecretId) {
            return Err(Error::forbidden(
                "this enrollment page does not offer sign-in with a secret ID",
            ));
        }
        let now = self.clock.now();
        let keys = [
            throttle::Key::secret_id(email),
            throttle::Key::client(&self.guess_limits, source),
        ];
        let counts = self.counted(
            throttle::check(&self.store, &keys, now).await,
            GuessRefusal::Locked,
        )?;
        let org = self.organisation_of(endpoint).await?;
        let parsed = EmailAddress::parse(email);
        let person = match &parsed {
            Some(e) => self
                .store
                .person_by_email(e)
                .await?
                .filter(|p| p.organisation_id == org.id),
            None => None,
        };
        let hash = person.as_ref().and_then(|p| p.secret_id_hash.clone());
        let ok = self.verify_guess(&keys, secret_id, hash, source).await?;
        let (Some(person), Some(email), true) = (person, parsed, ok) else {
            return Err(Error::unauthorized("wrong email address or secret ID"));
        };
        throttle::forget_failures(&self.store, &keys, &counts).await?;
        // The secret ID was right: what stops this person now is policy, which is audited.
        if let Err(e) = Self::check_person_active(&person).and(Self::check_domain(&org, &email)) {
            let refusal = Refusal::at_endpoint("web.sign-in", endpoint, email.as_str(), source);
            self.record_if_refused(refusal, &e).await;
            return Err(e);
        }
        self.new_session(
            endpoint,
            &email,
            Some(person.id),
            AuthType::SecretId,
            source,
        )
        .await
    }

    /// A fresh session (a new secret at every sign-in, so a session id planted before
    /// sign-in is worth nothing after it).
    async fn new_session(
        &self,
        endpoint: &Endpoint,
        email: &EmailAddress,
        person_id: Option<Id>,
        auth_type: AuthType,
        source: &str,
    ) -> Result<Secret, Error> {
        let now = self.clock.now();
        let secret = generate_secret(32);
        self.store
            .create_web_session(
                &NewWebSession {
                    token_hash: hash_token(&secret),
                    endpoint_id: endpoint.id,
                    email: email.clone(),
                    person_id,
                    auth_type,
                    expires_at: now + SESSION_TTL_SECS,
                },
                now,
            )
            .await?;
        self.audit(
            email.as_str(),
            source,
            "web.sign-in",
            &format!("endpoint={} method={}", endpoint.name, auth_type),
        )
        .await?;
        Ok(secret)
    }

    /// The live session a cookie names, at this endpoint.
    pub async fn web_session(
        &self,
        endpoint: &Endpoint,
        cookie: &Secret,
    ) -> Result<Option<WebSession>, Error> {
        let s = self
            .store
            .web_session(&hash_token(cookie), self.clock.now())
            .await?;
        Ok(s.filter(|s| s.endpoint_id == endpoint.id))
    }

    pub async fn sign_out(&self, cookie: &Secret) -> Result<(), Error> {
        Ok(self.store.delete_web_session(&hash_token(cookie)).await?)
    }

    /// Accounts with authorization `none`, listed only to persons of the organisation
    /// (and of the account's department, when it names one).
    pub async fn listed_accounts(&self, session: &WebSession) -> Result<Vec<Account>, Error> {
        let Some(person_id) = session.person_id else {
            return Ok(Vec::new());
        };
        let person = self.store.person(person_id).await?;
        let endpoint = self.store.endpoint(session.endpoint_id).await?;
        Ok(self
            .store
            .accounts_of_endpoint(endpoint.id)
            .await?
            .into_iter()
            .filter(|a| a.authorization == Authorization::None)
            .filter(|a| a.organisation_id == person.organisation_id)
            .filter(|a| a.department_id.is_none() || a.department_id == person.department_id)
            .collect())
    }

    /// "Enroll with Access Code": the code selects the account it protects.
    pub async fn choose_account_with_code(
        &self,
        session: &WebSession,
        code: &Secret,
        source: &str,
    ) -> Result<Account, Error> {
        let now = self.clock.now();
        let keys = [
            throttle::Key::web_access_code(session.endpoint_id, session.email.as_str()),
            throttle::Key::address(throttle::SHARED_SCOPE, source),
            throttle::Key::client(&self.guess_limits, source),
            throttle::Key::endpoint_access_codes(&self.guess_limits, session.endpoint_id),
        ];
        self.counted(
            throttle::check(&self.store, &keys, now).await,
            GuessRefusal::Locked,
        )?;
        let trimmed = Secret::new(code.expose().trim());
        let candidates: Vec<Account> = self
            .store
            .accounts_of_endpoint(session.endpoint_id)
            .await?
            .into_iter()
            .filter(|a| {
                a.authorization == Authorization::AccessCode && a.access_code_hash.is_some()
            })
            .collect();
        // A blank code is tried against nothing (and so fails), but still counted.
        let hashes: Vec<_> = if trimmed.expose().is_empty() {
            Vec::new()
        } else {
            candidates
                .iter()
                .filter_map(|a| a.access_code_hash.clone())
                .collect()
        };
        let chosen = self
            .verify_guess_among(&keys, &trimmed, &hashes, source)
            .await?
            .and_then(|i| candidates.get(i).cloned());
        // No forgetting of earlier failures here: knowing one shared code must not reset
        // the count of guesses at the others (none of these keys is personal).
        let Some(account) = chosen else {
            return Err(Error::unauthorized("this access code is not valid here"));
        };
        self.check_account_for(session, &account).await?;
        self.store
            .set_session_account(session.id, Some(account.id))
            .await?;
        Ok(account)
    }

    /// "Select Enrollment Account": one of the listed accounts.
    pub async fn choose_listed_account(
        &self,
        session: &WebSession,
        account_id: Id,
    ) -> Result<Account, Error> {
        let account = self
            .listed_accounts(session)
            .await?
            .into_iter()
            .find(|a| a.id == account_id)
            .ok_or_else(|| Error::forbidden("this account is not available to you"))?;
        self.store
            .set_session_account(session.id, Some(account.id))
            .await?;
        Ok(account)
    }

    /// Policy that holds whatever way an account was chosen: the person, when on record,
    /// must be in the account's department if it names one.
    async fn check_account_for(
        &self,
        session: &WebSession,
        account: &Account,
    ) -> Result<(), Error> {
        if let (Some(dept), Some(pid)) = (account.department_id, session.person_id) {
            let person = self.store.person(pid).await?;
            if person.department_id != Some(dept) {
                return Err(Error::forbidden(
                    "this account is limited to a department you do not belong to",
                ));
            }
        }
        Ok(())
    }

    /// What the form shows for the session's chosen account.
    pub async fn enrollment_form(&self, session: &WebSession) -> Result<EnrollmentForm, Error> {
        let account_id = session
            .account_id
            .ok_or_else(|| Error::forbidden("choose an enrollment account first"))?;
        // A deleted account no longer enrolls, even for a session that chose it before.
        let account = self.store.live_account(account_id).await?;
        if account.endpoint_id != session.endpoint_id {
            return Err(Error::forbidden(
                "this account belongs to another enrollment page",
            ));
        }
        let endpoint = self.store.endpoint(session.endpoint_id).await?;
        let organisation = self.store.organisation(account.organisation_id).await?;
        let person = match session.person_id {
            Some(id) => Some(self.store.person(id).await?),
            None => None,
        };
        // The department the certificate will carry: the account's, else the person's
        // (as `Ra::department_name` decides at issuance).
        let department = match account
            .department_id
            .or_else(|| person.as_ref().and_then(|p| p.department_id))
        {
            Some(id) => Some(self.store.department(id).await?),
            None => None,
        };
        let mut profiles = Vec::new();
        for id in &account.profile_ids {
            let p = self.store.profile(*id).await?;
            // The form makes person certificates; device profiles are for EST.
            if p.subject_source == SubjectSource::Person {
                profiles.push(p);
            }
        }
        if profiles.is_empty() {
            return Err(Error::forbidden(
                "this account has no person certificate profile to enroll for",
            ));
        }
        Ok(EnrollmentForm {
            endpoint,
            organisation,
            department,
            account,
            profiles,
            email: session.email.clone(),
            person,
        })
    }

    /// Checks the form, then issues (or records the order for approval). Nothing is stored
    /// when a field is wrong. The key pair, when the server makes it, lives only in the
    /// returned PKCS#12 file.
    pub async fn enroll_from_form(
        &self,
        session: &WebSession,
        req: FormRequest,
        source: &str,
    ) -> Result<FormOutcome, FormError> {
        let result = self.enroll_from_form_unrecorded(session, req, source).await;
        // Field errors are typing to correct; a policy refusal is audited.
        if let Err(FormError::Other(e)) = &result {
            if let Ok(endpoint) = self.store.endpoint(session.endpoint_id).await {
                let who = session.email.as_str();
                let refusal = Refusal::at_endpoint("web.enroll", &endpoint, who, source);
                self.record_if_refused(refusal, e).await;
            }
        }
        result
    }

    async fn enroll_from_form_unrecorded(
        &self,
        session: &WebSession,
        req: FormRequest,
        source: &str,
    ) -> Result<FormOutcome, FormError> {
        let form = self.enrollment_form(session).await?;
        let mut errors = FieldErrors::default();
        let profile = match req.profile_id {
            Some(id) => form.profiles.iter().find(|p| p.id == id),
            None => form.profiles.first(),
        };
        let Some(profile) = profile.cloned() else {
            errors.add("profile", "choose one of the offered profiles");
            return Err(FormError::Fields(errors));
        };
        let term = req.term_years.unwrap_or(profile.default_term_years);
        if !profile.terms_years.contains(&term) {
            errors.add("term", "choose one of the offered terms");
        }
        let key_type = req.key_type.unwrap_or(profile.default_key_type);
        // A person on record keeps the names on record (an administrator's, or those they
        // typed when their record was made): the form shows them read-only and what it sends
        // for them is ignored, so nobody renames themselves into a certificate. A person
        // created now types them once.
        let [first, middle, last] = match &form.person {
            Some(p) => [
                p.first_name.clone(),
                p.middle_name.clone(),
                p.last_name.clone(),
            ],
            None => {
                let names = [
                    ("first_name", &req.first_name),
                    ("middle_name", &req.middle_name),
                    ("last_name", &req.last_name),
                ]
                .map(|(field, value)| match clean_person_name(value) {
                    Ok(v) => v,
                    Err(why) => {
                        errors.add(field, why.to_string());
                        String::new()
                    }
                });
                if names[0].is_empty() && errors.get("first_name").is_none() {
                    errors.add("first_name", "enter your first name");
                }
                if names[2].is_empty() && errors.get("last_name").is_none() {
                    errors.add("last_name", "enter your last name");
                }
                names
            }
        };
        let server_key = form.account.csr_method != CsrMethod::Client && req.csr_der.is_none();
        let csr = if server_key {
            if !profile.key_types.contains(&key_type) {
                errors.add("key_type", "choose one of the offered key types");
            }
            if let Err(e) = self.check_pkcs12_password(&form.account, req.password.expose()) {
                errors.add("password", e.message);
            } else if req.password.expose() != req.password_confirmation.expose() {
                errors.add("password_confirmation", "the two passwords differ");
            }
            None
        } else {
            match req.csr_der.as_deref() {
                None => {
                    errors.add("csr", "upload your certificate signing request (PKCS#10)");
                    None
                }
                // EST refuses this too (`Ra::enroll`): the account's keys are the server's.
                Some(_) if !form.account.csr_method.allows_client() => {
                    errors.add(
                        "csr",
                        "this account only issues keys generated by the server",
                    );
                    None
                }
                Some(der) => match parse_csr(der) {
                    Ok(csr) if !profile.key_types.contains(&csr.key.into()) => {
                        errors.add(
                            "csr",
                            format!(
                                "the CSR's key ({}) is not one this profile allows",
                                csr.key.as_str()
                            ),
                        );
                        None
                    }
                    Ok(csr) => Some(csr),
                    Err(e) => {
                        errors.add("csr", e.message);
                        None
                    }
                },
            }
        };
        if !req.eula_accepted {
            errors.add("eula", "you must accept the agreement to continue");
        }
        if !errors.0.is_empty() {
            return Err(FormError::Fields(errors));
        }
        // The person: on record, or created now (email-confirmed addresses of the domain).
        let person = match &form.person {
            Some(p) => p.clone(),
            None => {
                let p = self
                    .store
                    .create_person(
                        NewPerson {
                            organisation_id: form.organisation.id,
                            department_id: form.account.department_id,
                            email: form.email.clone(),
                            first_name: first.clone(),
                            middle_name: middle.clone(),
                            last_name: last.clone(),
                            secret_id_hash: None,
                        },
                        self.clock.now(),
                    )
                    .await
                    .map_err(Error::from)?;
                self.store
                    .set_session_person(session.id, p.id)
                    .await
                    .map_err(Error::from)?;
                p
            }
        };
        let auth = Authorized {
            term_years: term,
            account: form.account.clone(),
            profile: profile.clone(),
            person: Some(person),
            requester: form.email.to_string(),
            confirm_email: None,
        };
        let actor = Actor {
            name: form.email.to_string(),
            source: source.to_string(),
            ..Default::default()
        };
        // Approval (lifecycle.rs): a CSR is its own request; a server-made key is asked for
        // by the person, and generated only once the order is approved and they are back.
        let der = csr.as_ref().map(|c| c.der.clone());
        let request = super::lifecycle::request_key(der.as_deref(), &auth.requester);
        let key = csr.as_ref().map(|c| c.key.into()).unwrap_or(key_type);
        let approval = match self
            .approval(&auth, &request, key, der.as_deref(), &actor)
            .await
        {
            Ok(a) => a,
            Err(e) if matches!(e.kind, crate::error::ErrorKind::Pending { .. }) => {
                let order_id = self
                    .store
                    .order_for_csr(auth.account.id, &request)
                    .await
                    .map_err(Error::from)?
                    .map(|o| o.id)
                    .unwrap_or_default();
                return Ok(FormOutcome::PendingApproval { order_id });
            }
            Err(e) => return Err(e.into()),
        };
        let mut auth = auth;
        let mut key_type = key_type;
        let (approved, already) = match approval {
            super::lifecycle::Approval::NotNeeded => (None, None),
            super::lifecycle::Approval::Approved(order) => {
                // What the administrator approved is issued, whatever was chosen now.
                let (key, term) = super::lifecycle::approved_choice(&order)?;
                key_type = key;
                auth.term_years = term;
                (Some(order.id), None)
            }
            super::lifecycle::Approval::AlreadyIssued(i) => (None, Some(i)),
        };
        match csr {
            Some(csr) => {
                let issued = match already {
                    Some(i) => i,
                    None => {
                        let plan = self.plan(&auth, &csr).await?;
                        self.issue_on(&auth, &csr, plan, actor, "web-enroll", approved)
                            .await?
                    }
                };
                let mut pem = crate::ca::pem_certificate(&issued.der);
                for c in self.ca.chain() {
                    pem.push_str(&crate::ca::pem_certificate(c));
                }
                Ok(FormOutcome::Certificate {
                    pem,
                    filename: format!("{}.pem", form.email),
                    serial: issued.serial,
                })
            }
            None => {
                let key = self.generate_key(key_type).await?;
                let csr = super::csr_for_generated_key(&key.spki_der, key_type, Vec::new());
                let plan = self.plan(&auth, &csr).await?;
                let friendly = friendly_name(&plan);
                let issued = self
                    .issue_on(&auth, &csr, plan, actor, "web-serverkeygen", approved)
                    .await?;
                let out = super::ServerKeyIssued {
                    issued,
                    key,
                    friendly_name: friendly,
                    allow_empty_pkcs12_password: form.account.allow_empty_pkcs12_password,
                };
                let file = self
                    .pkcs12(&out, &req.password, req.encryption)
                    .await
                    .map_err(FormError::Other)?;
                Ok(FormOutcome::Pkcs12 {
                    file,
                    filename: format!("{}.p12", form.email),
                    serial: out.issued.serial,
                    encryption: req.encryption,
                })
            }
        }
    }

    /// The person's certificates, newest first, with their profile's name.
    pub async fn my_certificates(
        &self,
        session: &WebSession,
    ) -> Result<Vec<(CertificateRecord, String)>, Error> {
        match session.person_id {
            Some(id) => Ok(self.store.certificates_of_person(id).await?),
            None => Ok(Vec::new()),
        }
    }

    /// A one-time token for the form about to be shown. Only its hash is kept, in the
    /// session; showing the form again replaces it, so one session has one open form.
    pub async fn open_form(&self, session: &WebSession) -> Result<Secret, Error> {
        let token = generate_secret(32);
        self.store
            .set_form_token(session.id, &hash_token(&token))
            .await?;
        Ok(token)
    }

    /// `enroll_from_form`, at most once per form shown: the token is consumed before
    /// anything is checked or stored, so a double click, a reload of the result page or a
    /// resubmission from the browser's history issues nothing more. A form with field errors
    /// is shown again with a new token (`open_form`).
    pub async fn enroll_from_form_once(
        &self,
        session: &WebSession,
        form_token: &Secret,
        req: FormRequest,
        source: &str,
    ) -> Result<FormOutcome, FormError> {
        self.use_form_token(session, form_token).await?;
        self.enroll_from_form(session, req, source).await
    }

    async fn use_form_token(&self, session: &WebSession, token: &Secret) -> Result<(), Error> {
        if token.expose().is_empty() {
            return Err(Error::malformed(
                "this form is incomplete: open the certificate request form again",
            ));
        }
        // The database compares SHA-256 hashes of a 190-bit random value: how long the
        // comparison takes says nothing useful about the token.
        if self
            .store
            .consume_form_token(session.id, &hash_token(token))
            .await?
        {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::AlreadyUsed,
            "this form was already submitted (or a newer copy of it was opened), so nothing \
             more was issued: see My certificates for what you have",
        ))
    }

    /// One of the person's own certificates that they may still revoke, with its profile's
    /// name, for the page that asks them to confirm. Others' certificates are "not found",
    /// as ones that do not exist; `revoke_mine` decides again when they confirm.
    pub async fn revocable_certificate(
        &self,
        session: &WebSession,
        certificate_id: Id,
    ) -> Result<(CertificateRecord, String), Error> {
        let (cert, profile) = self
            .my_certificates(session)
            .await?
            .into_iter()
            .find(|(c, _)| c.id == certificate_id)
            .ok_or_else(|| Error::not_found("no such certificate of yours"))?;
        self.check_revocable(&cert)?;
        Ok((cert, profile))
    }

    /// Whether a certificate can still be revoked: valid and unexpired. "My certificates"
    /// offers revocation only then.
    pub fn check_revocable(&self, cert: &CertificateRecord) -> Result<(), Error> {
        if cert.status == CertStatus::Revoked {
            return Err(Error::new(
                ErrorKind::AlreadyUsed,
                format!("certificate {} is already revoked", cert.serial),
            ));
        }
        if cert.not_after <= self.clock.now() {
            return Err(Error::forbidden(format!(
                "certificate {} has expired; it is no longer listed as valid anywhere",
                cert.serial
            )));
        }
        Ok(())
    }

    /// The person revokes one of their own certificates, on record as revoked by them.
    pub async fn revoke_mine(
        &self,
        session: &WebSession,
        certificate_id: Id,
        reason: RevocationReason,
        source: &str,
    ) -> Result<CertificateRecord, Error> {
        let person_id = session
            .person_id
            .ok_or_else(|| Error::not_found("no such certificate of yours"))?;
        let actor = Actor {
            name: session.email.to_string(),
            source: source.to_string(),
            ..Default::default()
        };
        self.revoke_own(person_id, certificate_id, reason, actor)
            .await
    }

    /// EST with an access code on a person profile: the request (keyed by its CSR's hash)
    /// waits until the person follows the emailed link, then the same CSR is issued once.
    /// Returns the confirmation to consume when the certificate is issued (see
    /// `consume_confirmation`), so that a later failure (a busy key pool, a database error)
    /// leaves it for the client's retry.
    pub(super) async fn require_email_confirmation(
        &self,
        auth: &mut Authorized,
        csr: &Csr,
        source: &str,
    ) -> Result<Option<Id>, Error> {
        let Some(email) = auth.confirm_email.clone() else {
            return Ok(None);
        };
        // The names a new person's record would get: refused before any mail is sent.
        let names = match auth.person {
            None => Some(names_from_common_name(csr.common_name.as_deref(), &email)?),
            Some(_) => None,
        };
        let now = self.clock.now();
        let csr_hash = sha256_hex(&csr.der);
        let pending = self
            .store
            .est_confirmation(auth.account.id, &email, &csr_hash)
            .await?;
        let waiting = || {
            Error::new(
                ErrorKind::Pending {
                    retry_after: EST_RETRY_AFTER,
                },
                format!(
                    "a confirmation link was sent to {email}; follow it, then send the same request again"
                ),
            )
        };
        let confirmed = match pending {
            Some(t)
                if t.confirmed_at
                    .is_some_and(|c| c + self.email_link_ttl > now) =>
            {
                t.id
            }
            Some(t) if t.confirmed_at.is_none() && t.expires_at > now => return Err(waiting()),
            _ => {
                self.counted(
                    throttle::allow_mail(&self.store, email.as_str(), source, now).await,
                    GuessRefusal::Mail,
                )?;
                self.store
                    .create_email_token(
                        &NewEmailToken {
                            endpoint_id: auth.account.endpoint_id,
                            email: email.clone(),
                            purpose: EmailPurpose::Est,
                            account_id: Some(auth.account.id),
                            csr_sha256: Some(csr_hash),
                            source: source.to_string(),
                            expires_at: now + self.email_link_ttl,
                        },
                        now,
                    )
                    .await?;
                return Err(waiting());
            }
        };
        if let Some((first, middle, last)) = names {
            let p = self
                .store
                .create_person(
                    NewPerson {
                        organisation_id: auth.account.organisation_id,
                        department_id: auth.account.department_id,
                        email: email.clone(),
                        first_name: first,
                        middle_name: middle,
                        last_name: last,
                        secret_id_hash: None,
                    },
                    now,
                )
                .await?;
            auth.person = Some(p);
        }
        Ok(Some(confirmed))
    }

    /// Marks a confirmation used, just before the certificate it allows is signed; of two
    /// concurrent requests only one gets past this.
    pub(super) async fn consume_confirmation(&self, token: Option<Id>) -> Result<(), Error> {
        let Some(id) = token else {
            return Ok(());
        };
        if self
            .store
            .consume_est_confirmation(id, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::AlreadyUsed,
                "this confirmed request was already issued",
            ))
        }
    }

    async fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), Error> {
        Ok(self
            .store
            .audit(
                &crate::store::AuditEntry {
                    actor: Actor {
                        name: actor.to_string(),
                        source: source.to_string(),
                        ..Default::default()
                    },
                    action: action.to_string(),
                    object: String::new(),
                    detail: detail.to_string(),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_common_name() {
        let e = EmailAddress::parse("ada@example.org").unwrap();
        assert_eq!(
            names_from_common_name(Some("Ada King Lovelace"), &e).unwrap(),
            ("Ada".into(), "King".into(), "Lovelace".into())
        );
        assert_eq!(
            names_from_common_name(Some("Ada"), &e).unwrap(),
            ("Ada".into(), String::new(), String::new())
        );
        assert_eq!(
            names_from_common_name(None, &e).unwrap(),
            ("ada".into(), String::new(), String::new())
        );
        assert_eq!(
            names_from_common_name(Some("\u{202E}yrolF Mallory"), &e)
                .unwrap_err()
                .kind,
            ErrorKind::BadCsr
        );
        assert!(names_from_common_name(Some("Director <director@example.org>"), &e).is_err());
    }
}
