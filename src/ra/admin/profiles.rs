//! Certificate profiles. They are global: every MRAO and RAO sees them (an RAO needs them
//! to set up its accounts), only an MRAO changes them, and a DRAO has nothing to do with
//! them. The rules a profile must satisfy live here once, for the API and the CLI.

use serde_json::json;

use super::scope::unseen;
use super::{snapshot, Caller};
use crate::domain::{Id, KeyType, Profile, Role, SmimeType, SubjectSource};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{NewProfile, StoreError};

/// Whole-year terms a profile may offer.
pub const MAX_TERM_YEARS: u32 = 3;
/// Names are shown in lists and the form.
pub const MAX_NAME_CHARS: usize = 100;

/// A new profile; the defaults are the first key type and term when not given.
#[derive(Debug, Clone)]
pub struct ProfileRequest {
    pub name: String,
    pub subject_source: SubjectSource,
    pub key_types: Vec<KeyType>,
    pub default_key_type: Option<KeyType>,
    pub terms_years: Vec<u32>,
    pub default_term_years: Option<u32>,
    pub requires_approval: bool,
    pub smime: Option<SmimeType>,
}

/// A profile edit: `None` keeps a field; `smime: Some(None)` removes the S/MIME type.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    pub subject_source: Option<SubjectSource>,
    pub key_types: Option<Vec<KeyType>>,
    pub default_key_type: Option<KeyType>,
    pub terms_years: Option<Vec<u32>>,
    pub default_term_years: Option<u32>,
    pub requires_approval: Option<bool>,
    pub smime: Option<Option<SmimeType>>,
}

/// A display name: trimmed, not empty, not too long.
pub(crate) fn check_name(field: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("give a name of 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "a name has no control characters"));
    }
    Ok(name.to_string())
}

/// The rules of a profile, as the API and the CLI both apply them.
pub fn check_profile(p: &NewProfile) -> Result<(), Error> {
    check_name("name", &p.name)?;
    if p.key_types.is_empty() {
        return Err(Error::invalid("key_types", "give one or more key types"));
    }
    for (i, k) in p.key_types.iter().enumerate() {
        if p.key_types[..i].contains(k) {
            return Err(Error::invalid(
                &format!("key_types[{i}]"),
                format!("key type {k} is listed twice"),
            ));
        }
    }
    if !p.key_types.contains(&p.default_key_type) {
        return Err(Error::invalid(
            "default_key_type",
            format!(
                "the default key type {} must be one of the key types",
                p.default_key_type
            ),
        ));
    }
    if p.terms_years.is_empty() {
        return Err(Error::invalid("terms_years", "give one or more terms"));
    }
    for (i, t) in p.terms_years.iter().enumerate() {
        if !(1..=MAX_TERM_YEARS).contains(t) {
            return Err(Error::invalid(
                &format!("terms_years[{i}]"),
                format!("terms are whole years from 1 to {MAX_TERM_YEARS}, not {t}"),
            ));
        }
        if p.terms_years[..i].contains(t) {
            return Err(Error::invalid(
                &format!("terms_years[{i}]"),
                format!("the term of {t} years is listed twice"),
            ));
        }
    }
    if !p.terms_years.contains(&p.default_term_years) {
        return Err(Error::invalid(
            "default_term_years",
            format!(
                "the default term of {} years must be one of the terms",
                p.default_term_years
            ),
        ));
    }
    if let Some(t) = p.smime {
        if p.subject_source != SubjectSource::Person {
            return Err(Error::invalid(
                "smime",
                "an S/MIME type is for person profiles",
            ));
        }
        if let Some((i, long)) = p
            .terms_years
            .iter()
            .enumerate()
            .find(|(_, y)| **y > t.max_term_years())
        {
            return Err(Error::invalid(
                &format!("terms_years[{i}]"),
                format!(
                    "a term of {long} years is longer than S/MIME {} certificates may last \
                     (825 days): use terms up to {} years",
                    t.generation,
                    t.max_term_years()
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn profile_json(p: &NewProfile) -> serde_json::Value {
    json!({
        "name": p.name,
        "subject_source": p.subject_source.as_str(),
        "key_types": p.key_types.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "default_key_type": p.default_key_type.as_str(),
        "terms_years": p.terms_years,
        "default_term_years": p.default_term_years,
        "requires_approval": p.requires_approval,
        "smime": p.smime.map(|t| json!({
            "validation": t.validation.as_str(), "generation": t.generation.as_str(),
        })),
    })
}

fn as_new(p: &Profile) -> NewProfile {
    NewProfile {
        name: p.name.clone(),
        subject_source: p.subject_source,
        key_types: p.key_types.clone(),
        default_key_type: p.default_key_type,
        terms_years: p.terms_years.clone(),
        default_term_years: p.default_term_years,
        requires_approval: p.requires_approval,
        smime: p.smime,
    }
}

impl Ra {
    /// The profile, if the caller may see profiles at all.
    async fn reach_profile(&self, caller: &Caller, id: Id) -> Result<Profile, Error> {
        if caller.principal.role == Role::Drao {
            return Err(unseen("profile"));
        }
        match self.store.profile(id).await {
            Ok(p) => Ok(p),
            Err(StoreError::NotFound(_)) => Err(unseen("profile")),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a name another profile has, naming it.
    async fn check_profile_name_free(&self, name: &str, own: Option<Id>) -> Result<(), Error> {
        match self.store.profile_by_name(name).await {
            Ok(other) if Some(other.id) != own => Err(Error::conflict(format!(
                "profile {} {:?} already has this name",
                other.id, other.name
            ))
            .at("name")),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every term must end before the issuing CA does, counted from now: a profile must not
    /// offer what issuance will refuse (`Ra::check_ca_covers` refuses it again then, for
    /// the CA keeps ageing after the profile is saved).
    fn check_terms_covered(&self, p: &NewProfile) -> Result<(), Error> {
        let now = self.clock.now();
        let ca_end = self.ca.not_after();
        let Some((i, t)) = p
            .terms_years
            .iter()
            .enumerate()
            .find(|(_, t)| crate::ca::add_years(now, **t) > ca_end)
        else {
            return Ok(());
        };
        let longest = (1..*t)
            .rev()
            .find(|y| crate::ca::add_years(now, *y) <= ca_end);
        let advice = match longest {
            Some(1) => "offer terms of up to 1 year".to_string(),
            Some(y) => format!("offer terms of up to {y} years"),
            None => "no whole-year term fits; renew the CA first".to_string(),
        };
        Err(Error::invalid(
            &format!("terms_years[{i}]"),
            format!(
                "the issuing CA expires on {}, before a term of {t} years from today would \
                 end: {advice}",
                crate::ca::date(ca_end)
            ),
        ))
    }

    pub async fn add_profile(&self, caller: &Caller, r: ProfileRequest) -> Result<Profile, Error> {
        caller.require_not_drao("profiles")?;
        caller.require_mrao("profiles")?;
        let key_types = r.key_types;
        let terms = r.terms_years;
        let new = NewProfile {
            name: r.name.trim().to_string(),
            subject_source: r.subject_source,
            default_key_type: match r.default_key_type.or_else(|| key_types.first().copied()) {
                Some(k) => k,
                None => return Err(Error::invalid("key_types", "give one or more key types")),
            },
            key_types,
            default_term_years: match r.default_term_years.or_else(|| terms.first().copied()) {
                Some(t) => t,
                None => return Err(Error::invalid("terms_years", "give one or more terms")),
            },
            terms_years: terms,
            requires_approval: r.requires_approval,
            smime: r.smime,
        };
        check_profile(&new)?;
        self.check_terms_covered(&new)?;
        self.check_profile_name_free(&new.name, None).await?;
        let mut audit = caller.audit("profile.create", String::new(), None, None);
        audit.after = snapshot(&profile_json(&new));
        self.store
            .add_profile(&new, &audit, self.clock.now())
            .await
            .map_err(|e| name_taken(e, &new.name))
    }

    /// Every profile, for MRAOs and RAOs.
    pub async fn profiles(&self, caller: &Caller) -> Result<Vec<Profile>, Error> {
        caller.require_not_drao("profiles")?;
        Ok(self.store.profiles().await?)
    }

    pub async fn profile(&self, caller: &Caller, id: Id) -> Result<Profile, Error> {
        self.reach_profile(caller, id).await
    }

    pub async fn edit_profile(
        &self,
        caller: &Caller,
        id: Id,
        expected_version: Option<i64>,
        c: ProfileChanges,
    ) -> Result<Profile, Error> {
        let before = self.reach_profile(caller, id).await?;
        caller.require_mrao("profiles")?;
        let old = as_new(&before);
        let new = NewProfile {
            name: c
                .name
                .map(|n| n.trim().to_string())
                .unwrap_or(old.name.clone()),
            subject_source: c.subject_source.unwrap_or(old.subject_source),
            key_types: c.key_types.unwrap_or(old.key_types.clone()),
            default_key_type: c.default_key_type.unwrap_or(old.default_key_type),
            terms_years: c.terms_years.unwrap_or(old.terms_years.clone()),
            default_term_years: c.default_term_years.unwrap_or(old.default_term_years),
            requires_approval: c.requires_approval.unwrap_or(old.requires_approval),
            smime: c.smime.unwrap_or(old.smime),
        };
        check_profile(&new)?;
        self.check_terms_covered(&new)?;
        self.check_profile_name_free(&new.name, Some(id)).await?;
        let mut audit = caller.audit("profile.edit", format!("profile {id}"), None, None);
        audit.before = snapshot(&profile_json(&old));
        audit.after = snapshot(&profile_json(&new));
        self.store
            .replace_profile(id, expected_version, &new, &audit, self.clock.now())
            .await
            .map_err(|e| name_taken(e, &new.name))
    }

    /// Deletes a profile no account uses and no order references.
    pub async fn remove_profile(&self, caller: &Caller, id: Id) -> Result<(), Error> {
        let before = self.reach_profile(caller, id).await?;
        caller.require_mrao("profiles")?;
        let usage = self.store.profile_usage(id).await?;
        if let Some((aid, name)) = usage.accounts.first() {
            return Err(Error::conflict(format!(
                "profile {:?} is used by {} account(s), e.g. account {aid} {name:?}; \
                 take it off them first",
                before.name,
                usage.accounts.len()
            )));
        }
        if usage.orders > 0 {
            return Err(Error::conflict(format!(
                "profile {:?} is referenced by {} order(s), whose history it is part of",
                before.name, usage.orders
            )));
        }
        let mut audit = caller.audit("profile.delete", format!("profile {id}"), None, None);
        audit.before = snapshot(&profile_json(&as_new(&before)));
        self.store
            .remove_profile(id, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    Error::conflict("the profile was taken into use meanwhile; it stays")
                }
                e => e.into(),
            })
    }
}

/// A unique-name clash the pre-check missed (a concurrent create).
fn name_taken(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Conflict(_) => {
            Error::conflict(format!("a profile named {name:?} already exists")).at("name")
        }
        e => e.into(),
    }
}
