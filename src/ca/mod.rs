//! Signing only: turns an `IssuancePlan` and a verified public key into a certificate.
//! No database, no HTTP, no credentials. Also makes the development PKI for `serve`.

pub mod dev;
pub mod keys;
pub mod pkcs12;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::domain::{KeyType, UnixTime};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("CA certificate chain: {0}")]
    Chain(String),
    #[error("CA private key: {0}")]
    Key(String),
    #[error("CA key does not match the issuing certificate")]
    KeyMismatch,
    #[error("public key not usable: {0}")]
    PublicKey(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the subject of a certificate says. Built by the RA from the profile and person
/// record, never copied from a CSR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub common_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub organisation: Option<String>,
    pub organisational_unit: Option<String>,
}

impl Subject {
    /// One-line form for listings and audit: `CN=…, GN=…, SN=…, O=…, OU=…`.
    pub fn display(&self) -> String {
        let mut parts = vec![format!("CN={}", self.common_name)];
        let opt = [
            ("GN", &self.given_name),
            ("SN", &self.surname),
            ("O", &self.organisation),
            ("OU", &self.organisational_unit),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(", ")
    }
}

/// Which extension set a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// S/MIME and TLS client: EKU clientAuth + emailProtection.
    Person,
    /// Device TLS client: EKU clientAuth.
    Device,
}

#[derive(Debug, Clone)]
pub struct IssuancePlan {
    pub serial: Vec<u8>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub subject: Subject,
    pub emails: Vec<String>,
    pub dns_names: Vec<String>,
    pub usage: Usage,
    pub key: KeyType,
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Issuing CA first, then up to the root.
    chain: Vec<Vec<u8>>,
}

impl Ca {
    pub fn from_pem(chain_pem: &[u8], key_pem: &str) -> Result<Ca, CaError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::Chain(e.to_string()))?;
        let first = chain
            .first()
            .ok_or_else(|| CaError::Chain("no certificate in the PEM file".into()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Key(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| CaError::Chain(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(first.as_slice()), key)
            .map_err(|e| CaError::Chain(e.to_string()))?;
        Ok(Ca { issuer, chain })
    }

    pub fn load(chain_path: &std::path::Path, key_path: &std::path::Path) -> Result<Ca, CaError> {
        let chain = std::fs::read(chain_path)?;
        let key = zeroize::Zeroizing::new(std::fs::read_to_string(key_path)?);
        Ca::from_pem(&chain, &key)
    }

    /// Issuing CA first, root last.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    pub fn sign(&self, plan: &IssuancePlan, spki_der: &[u8]) -> Result<Vec<u8>, CaError> {
        let public_key = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CaError::PublicKey(e.to_string()))?;
        let params = leaf_params(plan)?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

fn leaf_params(plan: &IssuancePlan) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&plan.serial));
    p.not_before = to_time(plan.not_before)?;
    p.not_after = to_time(plan.not_after)?;
    p.distinguished_name = distinguished_name(&plan.subject);
    p.use_authority_key_identifier_extension = true;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, rcgen's subjectKeyIdentifier.
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    for e in &plan.emails {
        p.subject_alt_names.push(SanType::Rfc822Name(
            e.clone()
                .try_into()
                .map_err(|_| CaError::Sign(format!("bad email {e}")))?,
        ));
    }
    for d in &plan.dns_names {
        p.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| CaError::Sign(format!("bad DNS name {d}")))?,
        ));
    }
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
    p.extended_key_usages = match plan.usage {
        Usage::Person => vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::EmailProtection,
        ],
        Usage::Device => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    Ok(p)
}

fn distinguished_name(s: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, s.common_name.as_str());
    if let Some(v) = &s.given_name {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 42]), v.as_str());
    }
    if let Some(v) = &s.surname {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 4]), v.as_str());
    }
    if let Some(v) = &s.organisation {
        dn.push(DnType::OrganizationName, v.as_str());
    }
    if let Some(v) = &s.organisational_unit {
        dn.push(DnType::OrganizationalUnitName, v.as_str());
    }
    dn
}

pub(crate) fn to_time(t: UnixTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|e| CaError::Sign(e.to_string()))
}

/// A positive serial of 16 bytes from the CSPRNG: 127 bits of entropy (CA/B BR §7.1 asks
/// for at least 64), first byte non-zero so the DER length never shrinks.
pub fn new_serial() -> Vec<u8> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut s = [0u8; 16];
    // On the impossible failure of the system RNG, retrying is the only safe answer.
    while SystemRandom::new().fill(&mut s).is_err() {}
    s[0] = (s[0] & 0x7f) | 0x01;
    s.to_vec()
}

/// `not_before` plus whole calendar years (29 February maps to 28 February).
pub fn add_years(t: UnixTime, years: u32) -> UnixTime {
    let Ok(start) = OffsetDateTime::from_unix_timestamp(t) else {
        return t + i64::from(years) * 365 * 86_400;
    };
    let year = start.year() + years as i32;
    start
        .replace_year(year)
        .or_else(|_| start.replace_day(28).and_then(|d| d.replace_year(year)))
        .map(|d| d.unix_timestamp())
        .unwrap_or(t + i64::from(years) * 365 * 86_400)
}

/// A certificate as PEM with LF line endings and 64-column base64.
pub fn pem_certificate(der: &[u8]) -> String {
    let b64 =
        estgate_protocol::transfer::encode_base64(der, estgate_protocol::transfer::Wrap::Columns64);
    format!(
        "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
        b64.replace("\r\n", "\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = new_serial();
        let b = new_serial();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn add_years_handles_leap_day() {
        // 2024-02-29T00:00:00Z + 1 year = 2025-02-28T00:00:00Z
        assert_eq!(add_years(1_709_164_800, 1), 1_740_700_800);
        // 2025-01-01 + 3 years = 2028-01-01
        assert_eq!(add_years(1_735_689_600, 3), 1_830_297_600);
    }
}
