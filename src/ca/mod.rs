//! Signing only: turns an `IssuancePlan` and a verified public key into a certificate.
//! No database, no HTTP, no credentials. Also makes the development PKI for `serve`.

pub mod crl;
pub mod dev;
pub mod keys;
mod leaf;
pub mod ocsp;
pub mod pkcs12;
#[cfg(test)]
mod test_pki;

use rcgen::{Issuer, KeyIdMethod, KeyPair, PublicKeyData, SubjectPublicKeyInfo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::domain::{KeyType, SmimeType, UnixTime};

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
    /// The plan asks for a certificate its profile cannot express (e.g. an S/MIME
    /// sponsor-validated certificate without an organizationIdentifier).
    #[error("certificate profile: {0}")]
    Profile(String),
    #[error("DER encoding: {0}")]
    Encoding(String),
    /// The RA checks the term first; this is the last guard before a signature.
    #[error("the certificate would end on {leaf}, after the issuing CA ({ca})")]
    OutlivesIssuer { leaf: String, ca: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<der::Error> for CaError {
    fn from(e: der::Error) -> Self {
        CaError::Encoding(e.to_string())
    }
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
    /// X.520 organizationIdentifier (2.5.4.97), e.g. `NTRGB-12345678` or `VATDE-123456789`:
    /// scheme, country, `-`, registration reference (S/MIME BR §7.1.4.2.2 (d)).
    pub organization_identifier: Option<String>,
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
            ("organizationIdentifier", &self.organization_identifier),
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
    /// `Some` for person certificates under the CA/B Forum S/MIME BR: the policy OID, the
    /// EKU and the subject attributes follow the validation type and generation.
    pub smime: Option<SmimeType>,
}

/// Where relying parties fetch revocation data and the issuing CA certificate, written into
/// every leaf (RFC 5280 §4.2.1.13 CRL distribution point, §4.2.2.1 authority information
/// access). Plain `http:` URLs: RFC 5280 §8 and the S/MIME BR expect them, and the fetch must
/// not depend on a TLS certificate that may itself be checked against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationUrls {
    pub crl: String,
    pub ocsp: String,
    pub ca_issuers: String,
}

impl PublicationUrls {
    /// `{base}/crl`, `{base}/ocsp` and `{base}/ca.cer`; trailing slashes of `http_base` are
    /// dropped so a configured `http://host/` does not yield `//crl`.
    pub fn from_base(http_base: &str) -> PublicationUrls {
        let base = http_base.trim_end_matches('/');
        PublicationUrls {
            crl: format!("{base}/crl"),
            ocsp: format!("{base}/ocsp"),
            ca_issuers: format!("{base}/ca.cer"),
        }
    }
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Issuing CA first, then up to the root.
    chain: Vec<Vec<u8>>,
    publication: Option<PublicationUrls>,
    /// The issuing CA's subjectKeyIdentifier, so the AKI of CRLs matches it (rcgen would
    /// otherwise derive a fresh identifier that need not equal the one in the certificate).
    key_id: KeyIdMethod,
    /// What OCSP CertIDs hash (RFC 6960 §4.1.1): the issuing CA's subject as encoded in its
    /// certificate, and the value of its subjectPublicKey BIT STRING.
    issuer_name_der: Vec<u8>,
    issuer_key_bits: Vec<u8>,
    /// The issuing CA's notAfter: no leaf may end later.
    not_after: UnixTime,
    /// Whether one signature takes microseconds (ECDSA, Ed25519) rather than milliseconds
    /// (RSA): see `signs_quickly`.
    quick: bool,
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
        let quick = !key.is_compatible(&rcgen::PKCS_RSA_SHA256)
            && !key.is_compatible(&rcgen::PKCS_RSA_SHA384)
            && !key.is_compatible(&rcgen::PKCS_RSA_SHA512);
        let (_, cert) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| CaError::Chain(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::KeyMismatch);
        }
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            // RFC 5280 §4.2.1.2 makes the SKI a MUST for CA certificates; for one without,
            // the RFC 7093 method rcgen also uses for the leaves' AKI keeps them consistent.
            .unwrap_or(KeyIdMethod::Sha256);
        let issuer_name_der = cert.tbs_certificate.subject.as_raw().to_vec();
        let issuer_key_bits = cert.public_key().subject_public_key.data.to_vec();
        let not_after = cert.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(first.as_slice()), key)
            .map_err(|e| CaError::Chain(e.to_string()))?;
        Ok(Ca {
            issuer,
            quick,
            chain,
            publication: None,
            key_id,
            issuer_name_der,
            issuer_key_bits,
            not_after,
        })
    }

    pub fn load(chain_path: &std::path::Path, key_path: &std::path::Path) -> Result<Ca, CaError> {
        let chain = std::fs::read(chain_path)?;
        let key = zeroize::Zeroizing::new(std::fs::read_to_string(key_path)?);
        Ca::from_pem(&chain, &key)
    }

    /// Whether a certificate is signed in tens of microseconds (an ECDSA or Ed25519 CA key),
    /// so that signing may run on the request's own thread: handing it to another thread
    /// and back costs more than the signature. An RSA key's milliseconds go off the executor.
    pub fn signs_quickly(&self) -> bool {
        self.quick
    }

    /// Issuing CA first, root last.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// From now on every leaf names these URLs for its CRL, OCSP and caIssuers.
    pub fn with_publication(mut self, urls: PublicationUrls) -> Ca {
        self.publication = Some(urls);
        self
    }

    pub fn publication(&self) -> Option<&PublicationUrls> {
        self.publication.as_ref()
    }

    /// The issuing CA certificate's notAfter; every leaf ends on or before it.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    pub fn sign(&self, plan: &IssuancePlan, spki_der: &[u8]) -> Result<Vec<u8>, CaError> {
        if plan.not_after > self.not_after {
            return Err(CaError::OutlivesIssuer {
                leaf: date(plan.not_after),
                ca: date(self.not_after),
            });
        }
        let public_key = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CaError::PublicKey(e.to_string()))?;
        let mut params = leaf::params(plan, self.publication.as_ref())?;
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(spki_der)?);
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

/// RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
/// rcgen's own derivation hashes the whole SubjectPublicKeyInfo, which no verifier or linter
/// recognises as a standard method.
pub(crate) fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, CaError> {
    use x509_parser::prelude::FromDer as _;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CaError::PublicKey(e.to_string()))?;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki.subject_public_key.data);
    Ok(hash.as_ref().iter().take(20).copied().collect())
}

pub(crate) fn to_time(t: UnixTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|e| CaError::Sign(e.to_string()))
}

/// A date for sentences people read: `2031-05-04 12:00 UTC`.
pub fn date(t: UnixTime) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => format!("{t} (Unix time)"),
    }
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
    fn a_leaf_ending_after_the_issuing_ca_is_not_signed() {
        let pki = test_pki::test_pki();
        let mut plan = test_pki::device_plan(KeyType::EcP256);
        plan.not_after = pki.ca.not_after();
        let der = pki.issue(&plan);
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(leaf.validity().not_after.timestamp(), pki.ca.not_after());
        plan.not_after = pki.ca.not_after() + 1;
        let key = keys::generate(plan.key).unwrap();
        let e = pki.ca.sign(&plan, &key.spki_der).unwrap_err();
        assert!(matches!(e, CaError::OutlivesIssuer { .. }), "{e}");
    }

    #[test]
    fn add_years_handles_leap_day() {
        // 2024-02-29T00:00:00Z + 1 year = 2025-02-28T00:00:00Z
        assert_eq!(add_years(1_709_164_800, 1), 1_740_700_800);
        // 2025-01-01 + 3 years = 2028-01-01
        assert_eq!(add_years(1_735_689_600, 3), 1_830_297_600);
    }
}
