//! What a leaf certificate says, from an `IssuancePlan`: subject, subjectAltName, key usage,
//! EKU, and the policy and publication extensions. Person certificates with an S/MIME type
//! follow the CA/B Forum S/MIME Baseline Requirements (§7.1.2.3 extensions, §7.1.4.2
//! subject); everything else stays a plain RFC 5280 profile.

use const_oid::db::rfc5280::{
    ID_AD_CA_ISSUERS, ID_AD_OCSP, ID_CE_CERTIFICATE_POLICIES, ID_PE_AUTHORITY_INFO_ACCESS,
};
use const_oid::ObjectIdentifier;
use der::asn1::Ia5String;
use der::Encode;
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CertificatePolicies};

use super::{to_time, CaError, IssuancePlan, PublicationUrls, Usage};
use crate::domain::{KeyType, SmimeGeneration, SmimeType, SmimeValidation};

const MAX_SMIME_VALIDITY_SECS: i64 = 825 * 86_400;

pub(super) fn params(
    plan: &IssuancePlan,
    publication: Option<&PublicationUrls>,
) -> Result<CertificateParams, CaError> {
    if plan.smime.is_some() && plan.usage != Usage::Person {
        return Err(CaError::Profile(
            "an S/MIME type applies to person certificates only".into(),
        ));
    }
    // S/MIME BR §6.3.2: multipurpose and strict certificates live at most 825 days, counted
    // inclusively as RFC 5280 §4.1.2.5 counts validity.
    if plan.smime.is_some() && plan.not_after - plan.not_before + 1 > MAX_SMIME_VALIDITY_SECS {
        return Err(CaError::Profile(
            "an S/MIME certificate lives at most 825 days".into(),
        ));
    }
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&plan.serial));
    p.not_before = to_time(plan.not_before)?;
    p.not_after = to_time(plan.not_after)?;
    // The names first: the S/MIME subject takes its mailbox from them.
    p.subject_alt_names = subject_alt_names(plan)?;
    p.distinguished_name = distinguished_name(plan)?;
    p.use_authority_key_identifier_extension = true;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, rcgen's subjectKeyIdentifier.
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    // RFC 5280 §4.2.1.3 / RFC 8550: RSA keys encrypt the content-encryption key, EC keys
    // agree on it, so the second bit differs by key type.
    let second = match plan.key {
        KeyType::Rsa { .. } => KeyUsagePurpose::KeyEncipherment,
        KeyType::EcP256 | KeyType::EcP384 => KeyUsagePurpose::KeyAgreement,
    };
    p.key_usages = match plan.usage {
        Usage::Person => vec![KeyUsagePurpose::DigitalSignature, second],
        Usage::Device => vec![KeyUsagePurpose::DigitalSignature],
    };
    p.extended_key_usages = match (plan.usage, plan.smime.map(|t| t.generation)) {
        // S/MIME BR §7.1.2.3 (f): strict allows emailProtection and nothing else.
        (Usage::Person, Some(SmimeGeneration::Strict)) => {
            vec![ExtendedKeyUsagePurpose::EmailProtection]
        }
        (Usage::Person, _) => vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::EmailProtection,
        ],
        (Usage::Device, _) => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    if let Some(smime) = plan.smime {
        let policies = CertificatePolicies(vec![PolicyInformation {
            policy_identifier: smime_policy(smime),
            policy_qualifiers: None,
        }]);
        p.custom_extensions
            .push(extension(ID_CE_CERTIFICATE_POLICIES, &policies)?);
    }
    if let Some(urls) = publication {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![urls.crl.clone()],
        }];
        let aia = AuthorityInfoAccessSyntax(vec![
            access(ID_AD_OCSP, &urls.ocsp)?,
            access(ID_AD_CA_ISSUERS, &urls.ca_issuers)?,
        ]);
        p.custom_extensions
            .push(extension(ID_PE_AUTHORITY_INFO_ACCESS, &aia)?);
    }
    Ok(p)
}

/// The reserved policy OID of S/MIME BR §7.1.6.1: 2.23.140.1.5.{validation}.{generation}.
fn smime_policy(t: SmimeType) -> ObjectIdentifier {
    const MAILBOX_MULTIPURPOSE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.1.2");
    const MAILBOX_STRICT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.1.3");
    const ORGANIZATION_MULTIPURPOSE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.23.140.1.5.2.2");
    const ORGANIZATION_STRICT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.2.3");
    const SPONSOR_MULTIPURPOSE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.3.2");
    const SPONSOR_STRICT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.3.3");
    const INDIVIDUAL_MULTIPURPOSE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.23.140.1.5.4.2");
    const INDIVIDUAL_STRICT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.140.1.5.4.3");
    use SmimeGeneration::{Multipurpose, Strict};
    use SmimeValidation::{Individual, Mailbox, Organization, Sponsor};
    match (t.validation, t.generation) {
        (Mailbox, Multipurpose) => MAILBOX_MULTIPURPOSE,
        (Mailbox, Strict) => MAILBOX_STRICT,
        (Organization, Multipurpose) => ORGANIZATION_MULTIPURPOSE,
        (Organization, Strict) => ORGANIZATION_STRICT,
        (Sponsor, Multipurpose) => SPONSOR_MULTIPURPOSE,
        (Sponsor, Strict) => SPONSOR_STRICT,
        (Individual, Multipurpose) => INDIVIDUAL_MULTIPURPOSE,
        (Individual, Strict) => INDIVIDUAL_STRICT,
    }
}

fn subject_alt_names(plan: &IssuancePlan) -> Result<Vec<SanType>, CaError> {
    if plan.smime.is_some() {
        // S/MIME BR §7.1.2.3 (h): at least one mailbox address, and a mailbox certificate
        // names mailboxes, not hosts.
        if plan.emails.is_empty() {
            return Err(CaError::Profile(
                "an S/MIME certificate needs an email address".into(),
            ));
        }
        if !plan.dns_names.is_empty() {
            return Err(CaError::Profile(
                "an S/MIME certificate names no DNS names".into(),
            ));
        }
    }
    let mut names = Vec::with_capacity(plan.emails.len() + plan.dns_names.len());
    for e in &plan.emails {
        names.push(SanType::Rfc822Name(
            e.clone()
                .try_into()
                .map_err(|_| CaError::Sign(format!("bad email {e}")))?,
        ));
    }
    for d in &plan.dns_names {
        names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| CaError::Sign(format!("bad DNS name {d}")))?,
        ));
    }
    Ok(names)
}

/// The subject attributes one certificate carries, in the order they are written.
#[derive(Default)]
struct Attributes<'a> {
    common_name: &'a str,
    given_name: Option<&'a str>,
    surname: Option<&'a str>,
    organisation: Option<&'a str>,
    organisational_unit: Option<&'a str>,
    organization_identifier: Option<&'a str>,
}

/// S/MIME BR §7.1.4.2.2 allows a different set of attributes per validation type; the plan's
/// subject is the person record, so the attributes a type does not allow are left out, and
/// one that a type requires but the record lacks is refused.
fn distinguished_name(plan: &IssuancePlan) -> Result<DistinguishedName, CaError> {
    let s = &plan.subject;
    let given_name = s.given_name.as_deref();
    let surname = s.surname.as_deref();
    let organisational_unit = s.organisational_unit.as_deref();
    let Some(smime) = plan.smime else {
        return Ok(write(&Attributes {
            common_name: &s.common_name,
            given_name,
            surname,
            organisation: s.organisation.as_deref(),
            organisational_unit,
            organization_identifier: s.organization_identifier.as_deref(),
        }));
    };
    fn required<'a>(
        v: &'a Option<String>,
        smime: SmimeType,
        what: &str,
    ) -> Result<&'a str, CaError> {
        v.as_deref().ok_or_else(|| {
            CaError::Profile(format!(
                "a {}-validated S/MIME certificate needs {what}",
                smime.validation
            ))
        })
    }
    // §7.1.4.2.2 (a): the CN of mailbox- and organization-validated certificates is a
    // mailbox address that the subjectAltName also holds.
    let mailbox = plan.emails.first().map(String::as_str).unwrap_or_default();
    let personal_name = || {
        if given_name.is_none() && surname.is_none() {
            return Err(CaError::Profile(format!(
                "a {}-validated S/MIME certificate needs a given name or a surname",
                smime.validation
            )));
        }
        Ok(())
    };
    let attributes = match smime.validation {
        // §7.1.4.2.2 table: mailbox-validated allows only commonName and emailAddress.
        SmimeValidation::Mailbox => Attributes {
            common_name: mailbox,
            ..Attributes::default()
        },
        // No personal names: the certificate speaks for the organisation's mailbox.
        SmimeValidation::Organization => Attributes {
            common_name: mailbox,
            organisation: Some(required(&s.organisation, smime, "an organisation name")?),
            organisational_unit,
            organization_identifier: Some(required(
                &s.organization_identifier,
                smime,
                "an organizationIdentifier",
            )?),
            ..Attributes::default()
        },
        SmimeValidation::Sponsor => {
            personal_name()?;
            Attributes {
                common_name: &s.common_name,
                given_name,
                surname,
                organisation: Some(required(&s.organisation, smime, "an organisation name")?),
                organisational_unit,
                organization_identifier: Some(required(
                    &s.organization_identifier,
                    smime,
                    "an organizationIdentifier",
                )?),
            }
        }
        // Individual-validated speaks for the person alone: no organisation attributes.
        SmimeValidation::Individual => {
            personal_name()?;
            Attributes {
                common_name: &s.common_name,
                given_name,
                surname,
                ..Attributes::default()
            }
        }
    };
    Ok(write(&attributes))
}

fn write(a: &Attributes<'_>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, a.common_name);
    if let Some(v) = a.given_name {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 42]), v);
    }
    if let Some(v) = a.surname {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 4]), v);
    }
    if let Some(v) = a.organisation {
        dn.push(DnType::OrganizationName, v);
    }
    if let Some(v) = a.organisational_unit {
        dn.push(DnType::OrganizationalUnitName, v);
    }
    if let Some(v) = a.organization_identifier {
        // X.520 organizationIdentifier; rcgen writes it as a UTF8String, which §7.1.4.2.2 (d)
        // allows.
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 97]), v);
    }
    dn
}

fn access(method: ObjectIdentifier, url: &str) -> Result<AccessDescription, CaError> {
    Ok(AccessDescription {
        access_method: method,
        access_location: GeneralName::UniformResourceIdentifier(
            Ia5String::new(url).map_err(|e| CaError::Profile(format!("URL {url:?}: {e}")))?,
        ),
    })
}

/// A non-critical extension whose value is the DER of a typed `x509-cert` value.
pub(super) fn extension(
    oid: ObjectIdentifier,
    value: &impl Encode,
) -> Result<CustomExtension, CaError> {
    let arcs: Vec<u64> = oid.arcs().map(u64::from).collect();
    Ok(CustomExtension::from_oid_content(&arcs, value.to_der()?))
}

#[cfg(test)]
mod tests;
