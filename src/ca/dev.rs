//! The development PKI `serve` makes when no CA is configured: a root and an issuing CA
//! (EC P-256) and a TLS server certificate for localhost, written once with mode 0600 keys
//! and reused on every later start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

use super::{new_serial, to_time, CaError};
use crate::domain::UnixTime;

/// Paths of the files a data directory holds for the PKI.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// Trust anchor for clients (the root).
    pub trust_anchor: PathBuf,
    pub root_key: PathBuf,
    /// Issuing CA then root.
    pub ca_chain: PathBuf,
    pub ca_key: PathBuf,
    /// TLS server certificate then the issuing CA.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl PkiFiles {
    pub fn in_dir(dir: &Path) -> PkiFiles {
        PkiFiles {
            trust_anchor: dir.join("ca.pem"),
            root_key: dir.join("root-ca.key"),
            ca_chain: dir.join("ca-chain.pem"),
            ca_key: dir.join("issuing-ca.key"),
            tls_cert: dir.join("tls.pem"),
            tls_key: dir.join("tls.key"),
        }
    }
}

const YEAR: i64 = 365 * 86_400;

fn ca_params(
    cn: &str,
    path_len: u8,
    now: UnixTime,
    years: i64,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "estgate development");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(SerialNumber::from_slice(&new_serial()));
    p.not_before = to_time(now - 3600)?;
    p.not_after = to_time(now + years * YEAR)?;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn gen_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Key(e.to_string()))
}

fn sign_err(e: rcgen::Error) -> CaError {
    CaError::Sign(e.to_string())
}

/// Makes the development CA files that do not exist yet. Existing files are never
/// overwritten: if the CA exists, only a missing TLS certificate is (re)issued from it.
pub fn ensure_dev_ca(files: &PkiFiles, now: UnixTime) -> Result<bool, CaError> {
    if files.ca_chain.exists() || files.ca_key.exists() {
        return Ok(false);
    }
    let root_key = gen_key()?;
    let root_params = ca_params("estgate development root CA", 1, now, 20)?;
    let root = root_params.self_signed(&root_key).map_err(sign_err)?;
    let root_issuer = Issuer::new(root_params, root_key);
    let ca_key = gen_key()?;
    let ca_params = ca_params("estgate development issuing CA", 0, now, 10)?;
    let ca = ca_params
        .signed_by(&ca_key, &root_issuer)
        .map_err(sign_err)?;

    write_new(
        &files.root_key,
        root_issuer.key().serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&files.ca_key, ca_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&files.trust_anchor, root.pem().as_bytes(), 0o644)?;
    write_new(
        &files.ca_chain,
        format!("{}{}", ca.pem(), root.pem()).as_bytes(),
        0o644,
    )?;
    Ok(true)
}

/// Issues a TLS server certificate for localhost, 127.0.0.1 and ::1 from the configured
/// CA when the files are missing.
pub fn ensure_tls_cert(
    tls_cert: &Path,
    tls_key: &Path,
    ca_chain: &Path,
    ca_key: &Path,
    now: UnixTime,
) -> Result<bool, CaError> {
    if tls_cert.exists() || tls_key.exists() {
        return Ok(false);
    }
    let chain_pem = std::fs::read_to_string(ca_chain)?;
    let ca_key_pem = zeroize::Zeroizing::new(std::fs::read_to_string(ca_key)?);
    let key = KeyPair::from_pem(&ca_key_pem).map_err(|e| CaError::Key(e.to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(&chain_pem, key).map_err(sign_err)?;
    let mut p = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(sign_err)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.serial_number = Some(SerialNumber::from_slice(&new_serial()));
    p.not_before = to_time(now - 3600)?;
    p.not_after = to_time(now + 2 * YEAR)?;
    p.use_authority_key_identifier_extension = true;
    let key = gen_key()?;
    let cert = p.signed_by(&key, &issuer).map_err(sign_err)?;
    // The server presents its certificate and the issuing CA (the first of the chain file).
    let issuing = chain_pem
        .split_inclusive("-----END CERTIFICATE-----")
        .next()
        .unwrap_or("")
        .trim_start()
        .to_string();
    write_new(tls_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(
        tls_cert,
        format!("{}{}\n", cert.pem(), issuing).as_bytes(),
        0o644,
    )?;
    Ok(true)
}

/// Creates a file that must not exist yet, with the given mode from the first byte on.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
