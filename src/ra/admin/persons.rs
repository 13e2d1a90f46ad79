//! Persons, as administrators keep them: add, edit names and department, disable and
//! enable, delete, set or reset the secret ID (shown once), lift a lockout. An MRAO reaches
//! every person, an RAO those of its organisations, a DRAO those of its departments.
//! Disabling or deleting a person revokes their valid certificates.

use serde_json::json;

use super::scope::{refused, unseen};
use super::{snapshot, Caller};
use crate::domain::{
    generate_secret, hash_secret, EmailAddress, Id, Organisation, Person, PersonStatus,
    RevocationReason, Secret, SECRET_LEN,
};
use crate::error::{Error, ErrorKind};
use crate::ra::{throttle, Ra};
use crate::store::{NewPerson, PersonChanges, PersonFilter, StoreError};

/// A secret ID an administrator chooses: at least this long. A secret ID alone (with an
/// email address anyone may know) signs a person in and gets certificates issued, so it must
/// resist guessing within the throttle's budget; generated ones have `SECRET_LEN` (20).
/// Access codes keep their own rule (accounts.rs).
pub const MIN_SECRET_ID: usize = 12;
pub const MAX_SECRET_ID: usize = 128;

/// How a new person's secret ID comes about.
#[derive(Debug, Clone)]
pub enum SecretIdChoice {
    None,
    Generate,
    Given(Secret),
}

#[derive(Debug, Clone)]
pub struct PersonRequest {
    pub organisation_id: Id,
    pub department_id: Option<Id>,
    pub email: String,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub secret_id: SecretIdChoice,
}

/// A person just added, with the secret ID generated for them (shown once).
#[derive(Debug, Clone)]
pub struct PersonAdded {
    pub person: Person,
    pub secret_id: Option<Secret>,
}

/// A person disabled or deleted, and the serials of the certificates that were revoked.
#[derive(Debug, Clone)]
pub struct PersonRetired {
    pub person: Person,
    pub revoked: Vec<String>,
}

/// Filters of the person list.
#[derive(Debug, Clone, Default)]
pub struct PersonQuery {
    pub organisation: Option<Id>,
    pub department: Option<Id>,
    pub email: Option<String>,
    pub q: Option<String>,
    pub status: Option<PersonStatus>,
    pub after: Option<Id>,
    pub limit: u64,
}

pub(crate) fn person_json(p: &Person) -> serde_json::Value {
    json!({
        "email": p.email.as_str(), "first_name": p.first_name, "middle_name": p.middle_name,
        "last_name": p.last_name, "organisation": p.organisation_id,
        "department": p.department_id, "status": p.status.as_str(),
        "has_secret_id": p.secret_id_hash.is_some(),
    })
}

/// A secret ID as an administrator may choose it: the one check for every place one is
/// given by hand (a new person, a reset, a CSV import line).
pub(crate) fn check_secret_id(field: &str, s: &Secret) -> Result<(), Error> {
    let n = s.expose().chars().count();
    if !(MIN_SECRET_ID..=MAX_SECRET_ID).contains(&n)
        || s.expose()
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(
            field,
            format!("a secret ID has {MIN_SECRET_ID} to {MAX_SECRET_ID} characters without spaces"),
        ));
    }
    Ok(())
}

/// Names by the one rule for names (`domain::clean_person_name`, as the form applies it):
/// at least a first or a last name.
pub(crate) fn check_names(
    first: &str,
    middle: &str,
    last: &str,
) -> Result<(String, String, String), Error> {
    let clean = |field: &str, s: &str| {
        crate::domain::clean_person_name(s).map_err(|why| Error::invalid(field, why.to_string()))
    };
    let (first, middle, last) = (
        clean("first_name", first)?,
        clean("middle_name", middle)?,
        clean("last_name", last)?,
    );
    if first.is_empty() && last.is_empty() {
        return Err(Error::invalid(
            "last_name",
            "give the person a first or a last name",
        ));
    }
    Ok((first, middle, last))
}

/// The address of a new person: an address in one of the organisation's verified domains.
pub(crate) fn check_email(
    field: &str,
    org: &Organisation,
    email: &str,
) -> Result<EmailAddress, Error> {
    let e = EmailAddress::parse(email)
        .ok_or_else(|| Error::invalid(field, format!("{email:?} is not an email address")))?;
    Ra::check_domain(org, &e).map_err(|d| Error::invalid(field, d.message))?;
    Ok(e)
}

fn retired(e: Error) -> Error {
    if e.kind == ErrorKind::NotFound {
        unseen("person")
    } else {
        e
    }
}

impl Ra {
    /// A person the caller reaches (404 otherwise, for a person out of its scope too).
    pub async fn person_in_sight(&self, caller: &Caller, id: Id) -> Result<Person, Error> {
        let p = match self.store.person(id).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => return Err(unseen("person")),
            Err(e) => return Err(e.into()),
        };
        if !caller.principal.manages_person(&p) {
            return Err(unseen("person"));
        }
        Ok(p)
    }

    /// A person the caller may change: not deleted.
    async fn person_to_change(&self, caller: &Caller, id: Id) -> Result<Person, Error> {
        let p = self.person_in_sight(caller, id).await?;
        if p.status == PersonStatus::Deleted {
            return Err(Error::conflict(format!("person {id} is deleted")));
        }
        Ok(p)
    }

    /// The department a person is to be in: one of the organisation's, within the
    /// caller's reach (403 outside it).
    pub(crate) async fn check_person_department(
        &self,
        caller: &Caller,
        field: &str,
        org: &Organisation,
        department: Option<Id>,
    ) -> Result<(), Error> {
        if let Some(d) = department {
            match self.store.department(d).await {
                Ok(dept) if dept.organisation_id == org.id => {}
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    return Err(Error::invalid(
                        field,
                        format!("organisation {:?} has no department {d}", org.name),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !caller.principal.manages_department(org.id, department) {
            return Err(refused(match department {
                Some(_) => "you do not administer that department",
                None => "a DRAO keeps its persons in its departments: name one",
            }));
        }
        Ok(())
    }

    /// Persons within the caller's reach that match `q`, in id order; the flag says
    /// whether more follow.
    pub async fn persons_in_sight(
        &self,
        caller: &Caller,
        q: PersonQuery,
    ) -> Result<(Vec<Person>, bool), Error> {
        let f = PersonFilter {
            organisations: caller.principal.organisation_filter(),
            departments: caller.principal.department_filter(),
            organisation: q.organisation,
            department: q.department,
            email: q.email,
            q: q.q,
            status: q.status,
            after: q.after,
            limit: q.limit + 1,
        };
        let mut items = self.store.find_persons(&f).await?;
        let more = items.len() as u64 > q.limit;
        items.truncate(q.limit as usize);
        Ok((items, more))
    }

    /// A secret ID as chosen: none, generated, or given (checked).
    fn chosen_secret(choice: &SecretIdChoice) -> Result<Option<(Secret, bool)>, Error> {
        Ok(match choice {
            SecretIdChoice::None => None,
            SecretIdChoice::Generate => Some((generate_secret(SECRET_LEN), true)),
            SecretIdChoice::Given(s) => {
                check_secret_id("secret_id", s)?;
                Some((s.clone(), false))
            }
        })
    }

    pub async fn add_person(
        &self,
        caller: &Caller,
        r: PersonRequest,
    ) -> Result<PersonAdded, Error> {
        let org = self
            .organisation_in_sight(caller, r.organisation_id)
            .await
            .map_err(|e| e.at("organisation"))?;
        self.check_person_department(caller, "department", &org, r.department_id)
            .await?;
        let email = check_email("email", &org, &r.email)?;
        let (first, middle, last) = check_names(&r.first_name, &r.middle_name, &r.last_name)?;
        let secret = Self::chosen_secret(&r.secret_id)?;
        if self.store.person_by_email(&email).await?.is_some() {
            return Err(duplicate(&email));
        }
        let new = NewPerson {
            organisation_id: org.id,
            department_id: r.department_id,
            email,
            first_name: first,
            middle_name: middle,
            last_name: last,
            secret_id_hash: secret.as_ref().map(|(s, _)| hash_secret(s)),
        };
        let mut audit = caller.audit(
            "person.create",
            String::new(),
            Some(org.id),
            r.department_id,
        );
        audit.after = snapshot(&json!({
            "email": new.email.as_str(), "first_name": new.first_name,
            "middle_name": new.middle_name, "last_name": new.last_name,
            "organisation": org.id, "department": new.department_id,
            "has_secret_id": secret.is_some(),
        }));
        let person = self
            .store
            .add_person(&new, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => duplicate(&new.email),
                e => e.into(),
            })?;
        Ok(PersonAdded {
            person,
            secret_id: secret.and_then(|(s, generated)| generated.then_some(s)),
        })
    }

    /// Changes names and department. Moving a person needs reach over both departments.
    pub async fn edit_person(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
        changes: PersonChanges,
    ) -> Result<Person, Error> {
        let before = self.person_to_change(caller, id).await?;
        if let Some(dept) = changes.department_id {
            if dept != before.department_id {
                let org = self.store.organisation(before.organisation_id).await?;
                self.check_person_department(caller, "department", &org, dept)
                    .await?;
            }
        }
        let (first, middle, last) = check_names(
            changes.first_name.as_deref().unwrap_or(&before.first_name),
            changes
                .middle_name
                .as_deref()
                .unwrap_or(&before.middle_name),
            changes.last_name.as_deref().unwrap_or(&before.last_name),
        )?;
        let c = PersonChanges {
            first_name: changes.first_name.map(|_| first),
            middle_name: changes.middle_name.map(|_| middle),
            last_name: changes.last_name.map(|_| last),
            department_id: changes.department_id,
        };
        let mut audit = caller.audit(
            "person.edit",
            format!("person {id}"),
            Some(before.organisation_id),
            c.department_id.unwrap_or(before.department_id),
        );
        audit.before = snapshot(&person_json(&before));
        let mut after = person_json(&before);
        for (k, v) in [
            ("first_name", &c.first_name),
            ("middle_name", &c.middle_name),
            ("last_name", &c.last_name),
        ] {
            if let Some(v) = v {
                after[k] = json!(v);
            }
        }
        if let Some(d) = c.department_id {
            after["department"] = json!(d);
        }
        audit.after = snapshot(&after);
        Ok(self
            .store
            .update_person(id, expected, &c, &audit, self.clock.now())
            .await?)
    }

    /// Serials of a person's certificates that are valid now (those a retirement revokes).
    async fn valid_serials(&self, person_id: Id) -> Result<Vec<String>, Error> {
        let now = self.clock.now();
        Ok(self
            .store
            .certificates_of_person(person_id)
            .await?
            .into_iter()
            .filter(|(c, _)| c.status == crate::domain::CertStatus::Valid && c.not_after > now)
            .map(|(c, _)| c.serial)
            .collect())
    }

    /// Revokes what `valid_serials` listed, once the person can no longer obtain more.
    async fn revoke_serials(
        &self,
        caller: &Caller,
        serials: &[String],
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for s in serials {
            match self
                .revoke_serial(s, RevocationReason::AffiliationChanged, caller.actor())
                .await
            {
                Ok(_) => out.push(s.clone()),
                // Revoked or expired meanwhile: no longer valid, which was the point.
                Err(e) if matches!(e.kind, ErrorKind::AlreadyUsed | ErrorKind::Forbidden) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Disables a person: no sign-in, enrollment or re-enrollment, and their valid
    /// certificates are revoked (affiliationChanged).
    pub async fn disable_person(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
    ) -> Result<PersonRetired, Error> {
        let before = self.person_to_change(caller, id).await?;
        let serials = self.valid_serials(id).await?;
        let mut audit = caller.audit(
            "person.disable",
            format!("person {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        audit.before = snapshot(&json!({ "status": before.status.as_str() }));
        audit.after = snapshot(&json!({
            "status": PersonStatus::Disabled.as_str(),
            "revoking": serials, "revocation_reason": "affiliationChanged",
        }));
        let person = self
            .store
            .set_person_disabled(id, expected, true, &audit, self.clock.now())
            .await?;
        let revoked = self.revoke_serials(caller, &serials).await?;
        Ok(PersonRetired { person, revoked })
    }

    pub async fn enable_person(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
    ) -> Result<Person, Error> {
        let before = self.person_to_change(caller, id).await?;
        let mut audit = caller.audit(
            "person.enable",
            format!("person {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        audit.before = snapshot(&json!({ "status": before.status.as_str() }));
        audit.after = snapshot(&json!({ "status": PersonStatus::Active.as_str() }));
        Ok(self
            .store
            .set_person_disabled(id, expected, false, &audit, self.clock.now())
            .await?)
    }

    /// Deletes a person: the record stays (their orders refer to it) under a tombstone
    /// address, so the address is free for someone new; their valid certificates are
    /// revoked.
    pub async fn remove_person(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
    ) -> Result<PersonRetired, Error> {
        let before = self.person_to_change(caller, id).await?;
        let serials = self.valid_serials(id).await?;
        let mut audit = caller.audit(
            "person.delete",
            format!("person {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        audit.before = snapshot(&person_json(&before));
        audit.after = snapshot(&json!({
            "status": PersonStatus::Deleted.as_str(),
            "revoking": serials, "revocation_reason": "affiliationChanged",
        }));
        self.store
            .remove_person(id, expected, &audit, self.clock.now())
            .await?;
        let revoked = self.revoke_serials(caller, &serials).await?;
        let person = self.store.person(id).await.map_err(|e| retired(e.into()))?;
        Ok(PersonRetired { person, revoked })
    }

    /// Sets the given secret ID, or a generated one; either way it is answered once.
    pub async fn reset_person_secret_id(
        &self,
        caller: &Caller,
        id: Id,
        given: Option<Secret>,
    ) -> Result<Secret, Error> {
        let before = self.person_to_change(caller, id).await?;
        let secret = match given {
            Some(s) => {
                check_secret_id("secret_id", &s)?;
                s
            }
            None => generate_secret(SECRET_LEN),
        };
        let mut audit = caller.audit(
            "person.set-secret-id",
            format!("person {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        audit.before = snapshot(&json!({ "has_secret_id": before.secret_id_hash.is_some() }));
        audit.after = snapshot(&json!({ "has_secret_id": true }));
        let hash = hash_secret(&secret);
        self.store
            .put_person_secret_id(id, Some(&hash), &audit, self.clock.now())
            .await?;
        Ok(secret)
    }

    /// Lifts a lockout: forgets the failed guesses at the person's secret ID, at access
    /// codes in the form, and at EST access-code accounts under their address. Returns how
    /// many were forgotten.
    pub async fn unlock_person(&self, caller: &Caller, id: Id) -> Result<u64, Error> {
        let p = self.person_to_change(caller, id).await?;
        let email = p.email.as_str();
        let secret = throttle::Key::secret_id(email);
        // Access-code keys of the form carry the endpoint: `web-access-code:<id>:<email>`.
        let form = throttle::Key::web_access_code(0, email);
        let pattern = form.name.replacen(":0:", ":%:", 1);
        let mut audit = caller.audit(
            "person.unlock",
            format!("person {id}"),
            Some(p.organisation_id),
            p.department_id,
        );
        audit.detail = format!("email={email}");
        Ok(self
            .store
            .forget_failures_of(
                &[(secret.scope, secret.name)],
                email,
                &pattern,
                &audit,
                self.clock.now(),
            )
            .await?)
    }
}

fn duplicate(email: &EmailAddress) -> Error {
    Error::conflict(format!("a person with email {email} already exists")).at("email")
}
