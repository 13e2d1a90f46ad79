//! estgate-protocol: the EST (RFC 7030, RFC 8951) wire format, free of I/O. Paths, media
//! types, base64 transfer encoding, PKCS#10 parsing with signature verification, certs-only
//! PKCS#7, CSR attributes and multipart bodies.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod csrattrs;
pub mod der;
pub mod media;
pub mod multipart;
pub mod path;
pub mod pkcs10;
pub mod pkcs7;
pub mod transfer;

pub use pkcs10::{Csr, KeyAlgorithm};

/// Why a body could not be used. Messages are meant for the EST client and never carry
/// request data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("the body is not valid base64")]
    Base64,
    #[error("malformed DER: {0}")]
    Der(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The signature algorithm is refused before any signature is checked: a whole
    /// sentence saying which and why (SHA-1, unusual RSA-PSS parameters, a key mismatch).
    #[error("{0}")]
    UnsupportedSignature(String),
}
