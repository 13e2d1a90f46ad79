//! Policy: what may be issued. Subjects and extensions come from the profile and the
//! person record (or, for devices, from CSR names the organisation owns), never copied
//! from the CSR as a whole.

use estgate_protocol::Csr;
use x509_parser::prelude::*;

use crate::ca::{add_years, new_serial, IssuancePlan, Subject, Usage};
use crate::domain::{
    is_dns_name, Organisation, Person, Profile, SmimeValidation, SubjectSource, UnixTime,
};
use crate::error::Error;

/// The profile must allow the CSR's key type.
pub fn check_key(profile: &Profile, csr: &Csr) -> Result<(), Error> {
    if profile.key_types.contains(&csr.key.into()) {
        return Ok(());
    }
    let allowed: Vec<_> = profile.key_types.iter().map(|k| k.as_str()).collect();
    Err(Error::bad_csr(format!(
        "key type {} is not allowed by profile {:?} (allowed: {})",
        csr.key.as_str(),
        profile.name,
        allowed.join(", ")
    )))
}

fn usage(profile: &Profile) -> Usage {
    match profile.subject_source {
        SubjectSource::Person => Usage::Person,
        SubjectSource::Device => Usage::Device,
    }
}

fn validity(term_years: u32, now: UnixTime) -> (UnixTime, UnixTime) {
    (now, add_years(now, term_years))
}

/// The profile must offer the term asked for (the form lets a person choose one).
fn check_term(profile: &Profile, term_years: u32) -> Result<(), Error> {
    if profile.terms_years.contains(&term_years) {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "profile {:?} does not offer a term of {term_years} years",
        profile.name
    )))
}

/// S/MIME BR rules the profile's type brings: a term the generation allows, and the
/// organisation's identifier for organization- and sponsor-validated certificates.
fn check_smime(profile: &Profile, org: &Organisation, term_years: u32) -> Result<(), Error> {
    let Some(t) = profile.smime else {
        return Ok(());
    };
    if term_years > t.max_term_years() {
        return Err(Error::forbidden(format!(
            "S/MIME {} certificates last at most 825 days: choose a term of up to {} years",
            t.generation,
            t.max_term_years()
        )));
    }
    let needs_id = matches!(
        t.validation,
        SmimeValidation::Organization | SmimeValidation::Sponsor
    );
    if needs_id && org.organization_identifier.is_none() {
        return Err(Error::forbidden(format!(
            "profile {:?} issues {}-validated S/MIME certificates, which name the \
             organisation's registration, and {} has none on record yet: an administrator \
             sets it with `estgate org set-identifier`",
            profile.name, t.validation, org.name
        )));
    }
    Ok(())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

/// Person certificates name the person on record. The CSR contributes only its key: its
/// subject and subjectAltNames are not read, so names in it are neither certified nor
/// refused (clients fill them with placeholders; DESIGN.md "never copied from the CSR").
pub fn for_person(
    person: &Person,
    org: &Organisation,
    department: Option<String>,
    profile: &Profile,
    term_years: u32,
    csr: &Csr,
    now: UnixTime,
) -> Result<IssuancePlan, Error> {
    check_key(profile, csr)?;
    check_term(profile, term_years)?;
    check_smime(profile, org, term_years)?;
    let (not_before, not_after) = validity(term_years, now);
    Ok(IssuancePlan {
        serial: new_serial(),
        not_before,
        not_after,
        subject: Subject {
            common_name: person.full_name(),
            given_name: non_empty(&person.first_name),
            surname: non_empty(&person.last_name),
            organisation: Some(org.name.clone()),
            organisational_unit: department,
            // Only S/MIME types name the registration; other profiles keep their subject.
            organization_identifier: profile.smime.and(org.organization_identifier.clone()),
        },
        emails: vec![person.email.to_string()],
        dns_names: Vec::new(),
        usage: usage(profile),
        key: csr.key.into(),
        smime: profile.smime,
    })
}

/// Device certificates name what the CSR asks for, once each name is checked against the
/// organisation's verified domains.
pub fn for_device(
    org: &Organisation,
    department: Option<String>,
    profile: &Profile,
    term_years: u32,
    csr: &Csr,
    now: UnixTime,
) -> Result<IssuancePlan, Error> {
    check_key(profile, csr)?;
    check_term(profile, term_years)?;
    let names = device_names(org, csr)?;
    let (not_before, not_after) = validity(term_years, now);
    Ok(IssuancePlan {
        serial: new_serial(),
        not_before,
        not_after,
        subject: Subject {
            common_name: names.common_name,
            organisation: Some(org.name.clone()),
            organisational_unit: department,
            ..Subject::default()
        },
        emails: Vec::new(),
        dns_names: names.dns_names,
        usage: usage(profile),
        key: csr.key.into(),
        smime: None,
    })
}

/// The names a device certificate carries: the subject's CN and the dNSNames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNames {
    pub common_name: String,
    /// Every name asked for, lower-cased, without repeats: the dNSNames in their order,
    /// then any CN they do not already hold (a second CN has no place in the subject, and
    /// would otherwise be dropped).
    pub dns_names: Vec<String>,
}

/// Every name a device CSR asks for — each CN, each dNSName — must be a DNS name in a
/// verified domain of the organisation, and it may ask for nothing else (emails, IP
/// addresses, URIs). A request is refused naming every name that fails, never issued with
/// the names that pass: a certificate with fewer names than asked for hides the refusal
/// from the client and the operator alike.
pub fn device_names(org: &Organisation, csr: &Csr) -> Result<DeviceNames, Error> {
    let mut asked: Vec<String> = Vec::new();
    for n in csr.dns_names.iter().chain(csr.common_names.iter()) {
        let n = n.to_ascii_lowercase();
        if !asked.contains(&n) {
            asked.push(n);
        }
    }
    let Some(first) = csr
        .common_names
        .first()
        .or_else(|| csr.dns_names.first())
        .map(|n| n.to_ascii_lowercase())
    else {
        return Err(Error::bad_csr(
            "the CSR names no device: give a CN or a dNSName",
        ));
    };
    let mut refused: Vec<String> = Vec::new();
    for name in &asked {
        if !is_dns_name(name) {
            refused.push(format!("{name:?} (not a DNS name)"));
        } else if !org.owns(name) {
            refused.push(format!(
                "{name} (not within a verified domain of {})",
                org.name
            ));
        }
    }
    for e in &csr.emails {
        refused.push(format!(
            "email {e} (device certificates carry DNS names only)"
        ));
    }
    for o in &csr.other_names {
        refused.push(format!("{o} (device certificates carry DNS names only)"));
    }
    if !refused.is_empty() {
        return Err(Error::forbidden(format!(
            "the CSR asks for names this account may not certify: {}",
            refused.join("; ")
        )));
    }
    Ok(DeviceNames {
        common_name: first,
        dns_names: asked,
    })
}

/// With `bind_device_names` on an access-code account, the Basic username is the device's
/// identity: the CSR's CN and every dNSName must be that username (ASCII case ignored, the
/// username trimmed), so one holder of a shared access code cannot obtain a certificate
/// for another device's name.
pub fn check_bound_names(username: &str, csr: &Csr) -> Result<(), Error> {
    let user = username.trim().to_ascii_lowercase();
    let mut others: Vec<String> = Vec::new();
    for n in csr.common_names.iter().chain(csr.dns_names.iter()) {
        let n = n.to_ascii_lowercase();
        if n != user && !others.contains(&n) {
            others.push(n);
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "this account binds certificates to the device name given as user name ({user}): \
         the CSR may only name {user}, not {}",
        others.join(", ")
    )))
}

/// RFC 7030 §4.2.2: the new certificate keeps the current subject and subjectAltName; a CSR
/// that asks for others is refused.
pub fn for_renewal(
    old: &X509Certificate<'_>,
    profile: &Profile,
    csr: &Csr,
    now: UnixTime,
) -> Result<IssuancePlan, Error> {
    check_key(profile, csr)?;
    if let Some(o) = csr.other_names.first() {
        // Such a name would be dropped from the new certificate, not kept from the old.
        return Err(Error::forbidden(format!(
            "re-enrollment must keep the names of the current certificate, and the CSR \
             also asks for {o}"
        )));
    }
    if !same_name(&csr.subject_der, old.subject()) {
        return Err(Error::forbidden(
            "re-enrollment must keep the subject of the current certificate",
        ));
    }
    let mut emails = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = old.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                _ => {}
            }
        }
    }
    // A CSR without subjectAltName asks for nothing new; one with it must match exactly.
    if csr.has_subject_alt_name {
        let same = |a: &[String], b: &[String]| {
            let mut a: Vec<_> = a.iter().map(|s| s.to_ascii_lowercase()).collect();
            let mut b: Vec<_> = b.iter().map(|s| s.to_ascii_lowercase()).collect();
            a.sort();
            b.sort();
            a == b
        };
        if !same(&csr.emails, &emails) || !same(&csr.dns_names, &dns_names) {
            return Err(Error::forbidden(
                "re-enrollment must keep the subjectAltName of the current certificate",
            ));
        }
    }
    let attr = |oid: &x509_parser::der_parser::oid::Oid<'_>| {
        old.subject()
            .iter_attributes()
            .find(|a| a.attr_type() == oid)
            .and_then(|a| a.as_str().ok())
            .map(str::to_string)
    };
    use x509_parser::oid_registry as oids;
    let subject = Subject {
        common_name: attr(&oids::OID_X509_COMMON_NAME).unwrap_or_default(),
        given_name: attr(&oids::OID_X509_GIVEN_NAME),
        surname: attr(&oids::OID_X509_SURNAME),
        organisation: attr(&oids::OID_X509_ORGANIZATION_NAME),
        organisational_unit: attr(&oids::OID_X509_ORGANIZATIONAL_UNIT),
        organization_identifier: old
            .subject()
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == "2.5.4.97")
            .and_then(|a| a.as_str().ok())
            .map(str::to_string),
    };
    let (not_before, not_after) = validity(profile.default_term_years, now);
    Ok(IssuancePlan {
        serial: new_serial(),
        not_before,
        not_after,
        subject,
        emails,
        dns_names,
        usage: usage(profile),
        key: csr.key.into(),
        smime: profile.smime,
    })
}

/// RFC 5280 §7.1 name comparison, simplified: the same attribute types in the same order
/// with values equal after trimming and case folding. Clients re-encode the subject they
/// copy (strongSwan writes PrintableString where we wrote UTF8String), so bytes differ.
fn same_name(csr_subject_der: &[u8], old: &X509Name<'_>) -> bool {
    let Ok((_, new)) = X509Name::from_der(csr_subject_der) else {
        return false;
    };
    let flat = |n: &X509Name<'_>| -> Option<Vec<(String, String)>> {
        n.iter_attributes()
            .map(|a| {
                let v = a.as_str().ok()?;
                Some((a.attr_type().to_id_string(), v.trim().to_lowercase()))
            })
            .collect()
    };
    match (flat(&new), flat(old)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
