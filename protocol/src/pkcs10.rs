//! PKCS#10 certification requests (RFC 2986): parse, verify the self-signature, and pull
//! out what the RA needs.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa { bits: u32 },
    EcP256,
    EcP384,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa { bits: 2048 } => "rsa-2048",
            KeyAlgorithm::Rsa { bits: 3072 } => "rsa-3072",
            KeyAlgorithm::Rsa { bits: 4096 } => "rsa-4096",
            KeyAlgorithm::Rsa { .. } => "rsa",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
        }
    }

    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        Some(match s {
            "rsa-2048" => KeyAlgorithm::Rsa { bits: 2048 },
            "rsa-3072" => KeyAlgorithm::Rsa { bits: 3072 },
            "rsa-4096" => KeyAlgorithm::Rsa { bits: 4096 },
            "ec-p256" => KeyAlgorithm::EcP256,
            "ec-p384" => KeyAlgorithm::EcP384,
            _ => return None,
        })
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Csr {
    pub der: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub key: KeyAlgorithm,
    pub subject_der: Vec<u8>,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    pub has_subject_alt_name: bool,
    /// DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier (RFC 7030 §4.4.1.1/4.4.1.2).
    pub decrypt_key_identifier: bool,
}

/// 1.2.840.113549.1.9.16.2.37 and .54, as OID content bytes.
const DECRYPT_KEY_ID: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x25,
];
const ASYM_DECRYPT_KEY_ID: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x36,
];

pub fn parse(der: &[u8]) -> Result<Csr, Error> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| Error::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Der("trailing bytes after the CSR".into()));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key = if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyAlgorithm::Rsa {
                bits: rsa.key_size() as u32,
            },
            _ => return Err(Error::Der("malformed RSA public key".into())),
        }
    } else if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| Error::UnsupportedKey("EC key without a named curve".into()))?;
        if curve == OID_EC_P256 {
            KeyAlgorithm::EcP256
        } else if curve == OID_NIST_EC_P384 {
            KeyAlgorithm::EcP384
        } else {
            return Err(Error::UnsupportedKey(format!("EC curve {curve}")));
        }
    } else {
        return Err(Error::UnsupportedKey(format!(
            "algorithm {}",
            spki.algorithm.algorithm
        )));
    };
    csr.verify_signature().map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
            Error::UnsupportedKey("signature algorithm".into())
        }
        _ => Error::BadSignature,
    })?;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let mut dns_names = Vec::new();
    let mut emails = Vec::new();
    let mut has_subject_alt_name = false;
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                has_subject_alt_name = true;
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                        GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    let decrypt_key_identifier = info.iter_attributes().any(|a| {
        let oid = a.oid.as_bytes();
        oid == DECRYPT_KEY_ID || oid == ASYM_DECRYPT_KEY_ID
    });
    Ok(Csr {
        der: der.to_vec(),
        spki_der: spki.raw.to_vec(),
        key,
        subject_der: info.subject.as_raw().to_vec(),
        common_name,
        dns_names,
        emails,
        has_subject_alt_name,
        decrypt_key_identifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(alg: &'static rcgen::SignatureAlgorithm, rsa: bool) -> Vec<u8> {
        let key = if rsa {
            rcgen::KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            rcgen::KeyPair::generate_for(alg).unwrap()
        };
        let mut p = rcgen::CertificateParams::new(vec!["dev.example.org".into()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "dev.example.org");
        p.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn rsa_and_ec_requests_parse_and_verify() {
        for (alg, rsa, want) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, false, KeyAlgorithm::EcP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, false, KeyAlgorithm::EcP384),
            (
                &rcgen::PKCS_RSA_SHA256,
                true,
                KeyAlgorithm::Rsa { bits: 2048 },
            ),
        ] {
            let c = parse(&csr(alg, rsa)).unwrap();
            assert_eq!(c.key, want);
            assert_eq!(c.common_name.as_deref(), Some("dev.example.org"));
            assert_eq!(c.dns_names, vec!["dev.example.org"]);
            assert!(c.has_subject_alt_name && c.emails.is_empty() && !c.decrypt_key_identifier);
            assert_eq!(c.spki_der[0], 0x30);
        }
    }

    #[test]
    fn tampered_and_truncated_requests_are_refused() {
        let mut der = csr(&rcgen::PKCS_ECDSA_P256_SHA256, false);
        let n = der.len();
        der[n - 2] ^= 0x01;
        assert_eq!(parse(&der).unwrap_err(), Error::BadSignature);
        let good = csr(&rcgen::PKCS_ECDSA_P256_SHA256, false);
        assert!(matches!(parse(&good[..good.len() - 5]), Err(Error::Der(_))));
        assert!(matches!(parse(b"\x30\x03abc"), Err(Error::Der(_))));
    }

    #[test]
    fn openssl_made_vector() {
        let der = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/csr-ec-p256.der"
        ))
        .to_vec();
        let c = parse(&der).unwrap();
        assert_eq!(c.key, KeyAlgorithm::EcP256);
        assert_eq!(c.common_name.as_deref(), Some("vector.example.org"));
        assert_eq!(c.dns_names, vec!["vector.example.org"]);
    }

    #[test]
    fn key_names_round_trip() {
        for k in ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"] {
            assert_eq!(KeyAlgorithm::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(KeyAlgorithm::parse("ed25519"), None);
    }
}
