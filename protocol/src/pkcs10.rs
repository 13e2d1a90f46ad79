//! PKCS#10 certification requests (RFC 2986): parse, verify the self-signature, and pull
//! out what the RA needs.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::AlgorithmIdentifier;

use aws_lc_rs::signature;

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
    /// The first of `common_names`.
    pub common_name: Option<String>,
    /// Every CN of the subject, in order: a subject may carry several, and policy must see
    /// each one rather than only the first.
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    /// Names the CSR asks for that estgate never certifies (IP addresses, URIs, other
    /// subjectAltName forms, CNs that are not text), described for a refusal sentence, so
    /// that a request is refused rather than issued with fewer names than it asked for.
    pub other_names: Vec<String>,
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
    // The key decides first: a key estgate would never certify is refused as such, not
    // reported as a signature that does not verify.
    if let KeyAlgorithm::Rsa { bits } = key {
        if bits < MIN_RSA_BITS {
            return Err(Error::UnsupportedKey(format!(
                "RSA keys need at least {MIN_RSA_BITS} bits, this one has {bits}"
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(Error::UnsupportedKey(format!(
                "RSA keys of more than {MAX_RSA_BITS} bits are not supported, this one has {bits}"
            )));
        }
    }
    let verifier = verification_algorithm(&csr.signature_algorithm, key)?;
    signature::UnparsedPublicKey::new(verifier, &spki.subject_public_key.data)
        .verify(info.raw, &csr.signature_value.data)
        .map_err(|_| Error::BadSignature)?;
    let mut common_names = Vec::new();
    let mut other_names = Vec::new();
    for cn in info.subject.iter_common_name() {
        match cn.as_str() {
            Ok(v) => common_names.push(v.to_string()),
            Err(_) => other_names.push("a CN that is not a text string".to_string()),
        }
    }
    let common_name = common_names.first().cloned();
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
                        other => other_names.push(describe(other)),
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
        common_names,
        dns_names,
        emails,
        other_names,
        has_subject_alt_name,
        decrypt_key_identifier,
    })
}

/// Smaller RSA keys are refused before their signature is looked at (NIST SP 800-131A).
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest modulus aws-lc-rs verifies.
pub const MAX_RSA_BITS: u32 = 8192;

const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
const SHA1_WITH_RSA_OIW: &str = "1.3.14.3.2.29";
const ECDSA_WITH_SHA1: &str = "1.2.840.10045.4.1";
const DSA_WITH_SHA1: &str = "1.2.840.10040.4.3";
const MD5_WITH_RSA: &str = "1.2.840.113549.1.1.4";
const MD2_WITH_RSA: &str = "1.2.840.113549.1.1.2";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const MGF1: &str = "1.2.840.113549.1.1.8";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";
const HASH_SHA1: &str = "1.3.14.3.2.26";
const HASH_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const HASH_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const HASH_SHA512: &str = "2.16.840.1.101.3.4.2.3";

// RSA-PSS with a salt as long as the hash (RFC 4055 §3.1 recommends it; OpenSSL's
// `rsa_pss_saltlen:digest`, the default of most signers) or as long as the key allows
// (OpenSSL's `max`, its default before 3.1).
static PSS_SHA256_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA384_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA512_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(signature::RsaPssSaltLength::Max);

/// The verifier for the CSR's signature algorithm, or a sentence saying why the algorithm
/// is refused. SHA-1 and MD5 are refused by name: collisions against them are practical,
/// and a signature over them proves little about who holds the key.
fn verification_algorithm(
    alg: &AlgorithmIdentifier<'_>,
    key: KeyAlgorithm,
) -> Result<&'static dyn signature::VerificationAlgorithm, Error> {
    let oid = alg.algorithm.to_id_string();
    let rsa = matches!(key, KeyAlgorithm::Rsa { .. });
    let mismatch = |family: &str| {
        Error::UnsupportedSignature(format!(
            "the CSR is signed with {family}, which does not fit its {key} key"
        ))
    };
    match oid.as_str() {
        SHA1_WITH_RSA | SHA1_WITH_RSA_OIW | ECDSA_WITH_SHA1 | DSA_WITH_SHA1 => Err(sha1_refused()),
        MD5_WITH_RSA | MD2_WITH_RSA => Err(Error::UnsupportedSignature(
            "the CSR is signed with MD5 or MD2, which is not accepted: sign it with SHA-256 or stronger".into(),
        )),
        SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA if !rsa => Err(mismatch("RSA")),
        SHA256_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
        SHA384_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA384),
        SHA512_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
        RSASSA_PSS if !rsa => Err(mismatch("RSA-PSS")),
        RSASSA_PSS => pss_algorithm(alg, key),
        ECDSA_WITH_SHA256 | ECDSA_WITH_SHA384 | ECDSA_WITH_SHA512 => match (key, oid.as_str()) {
            (KeyAlgorithm::EcP256, ECDSA_WITH_SHA256) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (KeyAlgorithm::EcP256, ECDSA_WITH_SHA384) => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (KeyAlgorithm::EcP256, _) => Ok(&signature::ECDSA_P256_SHA512_ASN1),
            (KeyAlgorithm::EcP384, ECDSA_WITH_SHA256) => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (KeyAlgorithm::EcP384, ECDSA_WITH_SHA384) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            (KeyAlgorithm::EcP384, _) => Ok(&signature::ECDSA_P384_SHA512_ASN1),
            (KeyAlgorithm::Rsa { .. }, _) => Err(mismatch("ECDSA")),
        },
        other => Err(Error::UnsupportedSignature(format!(
            "the CSR's signature algorithm {other} is not supported: sign it with \
             RSA (PKCS#1 v1.5 or PSS) or ECDSA, with SHA-256 or stronger"
        ))),
    }
}

fn sha1_refused() -> Error {
    Error::UnsupportedSignature(
        "the CSR is signed with SHA-1, which is not accepted: sign it with SHA-256 or stronger"
            .into(),
    )
}

/// RSASSA-PSS (RFC 4055 §3.1): SHA-256/384/512, MGF1 with the same hash, trailer field 1,
/// and a salt as long as the hash or as long as the key allows. Anything else is refused
/// with a sentence instead of failing as a bad signature.
fn pss_algorithm(
    alg: &AlgorithmIdentifier<'_>,
    key: KeyAlgorithm,
) -> Result<&'static dyn signature::VerificationAlgorithm, Error> {
    let unusual = |what: String| {
        Error::UnsupportedSignature(format!(
            "the CSR's RSA-PSS parameters are not supported: {what}; use SHA-256, SHA-384 \
             or SHA-512 with MGF1 over the same hash and a salt as long as the hash"
        ))
    };
    // Absent parameters mean every default, that is SHA-1 (RFC 4055 §3.1).
    let Some(any) = alg.parameters.as_ref() else {
        return Err(sha1_refused());
    };
    let params = RsaSsaPssParams::try_from(any)
        .map_err(|_| Error::Der("malformed RSA-PSS parameters".into()))?;
    let hash = params.hash_algorithm_oid().to_id_string();
    let (hash_len, digest_salt, max_salt): (u32, &'static dyn signature::VerificationAlgorithm, _) =
        match hash.as_str() {
            HASH_SHA256 => (32, &signature::RSA_PSS_2048_8192_SHA256, &PSS_SHA256_MAX),
            HASH_SHA384 => (48, &signature::RSA_PSS_2048_8192_SHA384, &PSS_SHA384_MAX),
            HASH_SHA512 => (64, &signature::RSA_PSS_2048_8192_SHA512, &PSS_SHA512_MAX),
            HASH_SHA1 => return Err(sha1_refused()),
            other => return Err(unusual(format!("hash {other}"))),
        };
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| Error::Der("malformed RSA-PSS mask generation parameters".into()))?;
    if mgf.mgf.to_id_string() != MGF1 {
        return Err(unusual(format!("mask generation function {}", mgf.mgf)));
    }
    if mgf.hash.to_id_string() != hash {
        return Err(unusual(format!(
            "MGF1 over {} while the message hash is {hash}",
            mgf.hash
        )));
    }
    if params.trailer_field() != 1 {
        return Err(unusual(format!("trailer field {}", params.trailer_field())));
    }
    let KeyAlgorithm::Rsa { bits } = key else {
        return Err(unusual("a key that is not RSA".into()));
    };
    // RFC 8017 §9.1.1: emLen = ceil((modBits - 1) / 8); the longest salt is emLen - hLen - 2.
    let max = (bits - 1).div_ceil(8).saturating_sub(hash_len + 2);
    match params.salt_length() {
        s if s == hash_len => Ok(digest_salt),
        s if s == max => Ok(max_salt),
        s => Err(unusual(format!(
            "a salt of {s} bytes (accepted: {hash_len}, the hash length, or {max}, the maximum)"
        ))),
    }
}

/// A subjectAltName entry estgate does not certify, for a refusal sentence.
fn describe(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!(
                "IP address {}",
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
            ),
            16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                format!("IP address {}", std::net::Ipv6Addr::from(o))
            }
            _ => "an IP address entry".to_string(),
        },
        GeneralName::URI(u) => format!("URI {u}"),
        GeneralName::DirectoryName(n) => format!("directory name {n}"),
        GeneralName::OtherName(oid, _) => format!("otherName {oid}"),
        GeneralName::RegisteredID(oid) => format!("registeredID {oid}"),
        _ => "a subjectAltName entry of an unsupported kind".to_string(),
    }
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

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn rsa_pss_requests_from_openssl_verify() {
        for (file, bits) in [
            ("csr-rsa-pss-sha256.der", 2048),
            ("csr-rsa-pss-sha384-max.der", 2048),
            ("csr-rsa-pss-sha512.der", 2048),
            ("csr-rsa3072-pss-default.der", 3072),
        ] {
            let c = parse(&vector(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(c.key, KeyAlgorithm::Rsa { bits }, "{file}");
            assert_eq!(c.dns_names, vec!["dev.example.org"], "{file}");
        }
    }

    #[test]
    fn rsa_pss_with_a_flipped_bit_does_not_verify() {
        let mut der = vector("csr-rsa-pss-sha256.der");
        let n = der.len();
        der[n - 3] ^= 0x01;
        assert_eq!(parse(&der).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn unusual_rsa_pss_parameters_are_refused_with_a_sentence() {
        let Error::UnsupportedSignature(salt) =
            parse(&vector("csr-rsa-pss-sha256-salt20.der")).unwrap_err()
        else {
            panic!("wrong error")
        };
        assert!(salt.contains("a salt of 20 bytes"), "{salt}");
        let Error::UnsupportedSignature(mgf) =
            parse(&vector("csr-rsa-pss-sha256-mgf1-sha1.der")).unwrap_err()
        else {
            panic!("wrong error")
        };
        assert!(mgf.contains("MGF1 over 1.3.14.3.2.26"), "{mgf}");
    }

    #[test]
    fn sha1_signatures_are_refused_by_name() {
        for file in ["csr-rsa-sha1.der", "csr-ec-sha1.der"] {
            let e = parse(&vector(file)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "the CSR is signed with SHA-1, which is not accepted: sign it with SHA-256 or stronger",
                "{file}"
            );
        }
    }

    #[test]
    fn a_small_rsa_key_is_refused_as_a_key_not_as_a_signature() {
        assert_eq!(
            parse(&vector("csr-rsa-1024.der")).unwrap_err(),
            Error::UnsupportedKey("RSA keys need at least 2048 bits, this one has 1024".into())
        );
    }

    #[test]
    fn every_cn_and_unsupported_san_is_reported() {
        let c = parse(&vector("csr-two-cns.der")).unwrap();
        assert_eq!(
            c.common_names,
            vec!["printer.example.org", "printer.evil.test"]
        );
        assert_eq!(c.common_name.as_deref(), Some("printer.example.org"));
        assert!(c.other_names.is_empty() && c.dns_names.is_empty());
        let c = parse(&vector("csr-ip-uri-san.der")).unwrap();
        assert_eq!(c.dns_names, vec!["printer.example.org"]);
        assert_eq!(
            c.other_names,
            vec!["IP address 10.0.0.1", "URI https://evil.test/"]
        );
    }

    #[test]
    fn key_names_round_trip() {
        for k in ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"] {
            assert_eq!(KeyAlgorithm::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(KeyAlgorithm::parse("ed25519"), None);
    }
}
