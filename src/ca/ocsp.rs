//! OCSP (RFC 6960) for the issuing CA: request parsing, the CertID match, and responses
//! signed by a delegated responder (`responder.rs`). I/O-free: the web layer hands in the
//! request body and sends back the bytes made here.

mod responder;
#[cfg(test)]
mod tests;

use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{OcspRequest, OcspResponse};

pub use responder::OcspResponder;

use super::{Ca, CaError};
use crate::domain::{RevocationReason, UnixTime};

/// More CertIDs than this in one request are refused: real clients ask for one, and each
/// answer costs a hash and a database look-up.
pub const MAX_IDS_PER_REQUEST: usize = 32;

/// RFC 8954 §2.1: nonces longer than this need not be echoed.
const MAX_NONCE_LEN: usize = 32;

/// Why a request body is not an OCSP request we answer. Each maps to `malformedRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    #[error("not a DER OCSPRequest: {0}")]
    Malformed(String),
    #[error("the request asks about no certificate")]
    Empty,
    #[error("the request asks about {0} certificates; at most {MAX_IDS_PER_REQUEST} are answered")]
    TooMany(usize),
    #[error("CertID hash algorithm {0} is not supported (SHA-1 and SHA-256 are)")]
    UnsupportedHash(String),
    #[error("CertID hash of {got} bytes where {alg:?} makes {want}")]
    HashLength {
        alg: CertIdHash,
        got: usize,
        want: usize,
    },
    #[error("the nonce extension is not an OCTET STRING of 1 to 32 octets")]
    BadNonce,
    /// RFC 6960 §4.4: an unrecognised extension marked critical must not be ignored.
    #[error("critical request extension {0} is not supported")]
    CriticalExtension(String),
}

impl OcspError {
    /// The OCSPResponseStatus to answer with (RFC 6960 §4.2.1).
    pub fn status(&self) -> OcspErrorStatus {
        OcspErrorStatus::MalformedRequest
    }
}

/// The hash algorithm of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertIdHash {
    /// What `openssl ocsp` and most clients send by default.
    Sha1,
    Sha256,
}

impl CertIdHash {
    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        let alg = match self {
            CertIdHash::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            CertIdHash::Sha256 => &aws_lc_rs::digest::SHA256,
        };
        aws_lc_rs::digest::digest(alg, bytes).as_ref().to_vec()
    }

    fn len(self) -> usize {
        match self {
            CertIdHash::Sha1 => 20,
            CertIdHash::Sha256 => 32,
        }
    }
}

/// One certificate a request asks about (RFC 6960 §4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    hash: CertIdHash,
    issuer_name_hash: Vec<u8>,
    issuer_key_hash: Vec<u8>,
    serial: Vec<u8>,
    /// As the request encoded it (e.g. with or without NULL hash parameters), so the
    /// response repeats exactly what the client will compare.
    wire: x509_ocsp::CertId,
}

impl CertId {
    pub fn hash(&self) -> CertIdHash {
        self.hash
    }

    pub fn issuer_name_hash(&self) -> &[u8] {
        &self.issuer_name_hash
    }

    pub fn issuer_key_hash(&self) -> &[u8] {
        &self.issuer_key_hash
    }

    /// Big-endian, without the sign padding DER adds, so it compares with `new_serial()`.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    fn from_wire(wire: x509_ocsp::CertId) -> Result<CertId, OcspError> {
        let oid = wire.hash_algorithm.oid;
        let hash = if oid == ID_SHA_1 {
            CertIdHash::Sha1
        } else if oid == ID_SHA_256 {
            CertIdHash::Sha256
        } else {
            return Err(OcspError::UnsupportedHash(oid.to_string()));
        };
        for h in [&wire.issuer_name_hash, &wire.issuer_key_hash] {
            let got = h.as_bytes().len();
            if got != hash.len() {
                return Err(OcspError::HashLength {
                    alg: hash,
                    got,
                    want: hash.len(),
                });
            }
        }
        Ok(CertId {
            hash,
            issuer_name_hash: wire.issuer_name_hash.as_bytes().to_vec(),
            issuer_key_hash: wire.issuer_key_hash.as_bytes().to_vec(),
            serial: unpadded(wire.serial_number.as_bytes()).to_vec(),
            wire,
        })
    }
}

/// DER INTEGERs carry a leading zero when the first bit is set; serials compare without it.
fn unpadded(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        if rest.is_empty() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// What a request asks: the certificates, and the nonce to echo (RFC 8954).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspQuery {
    pub ids: Vec<CertId>,
    pub nonce: Option<Vec<u8>>,
}

/// Parses a DER OCSPRequest (the body of a POST, or the decoded path of a GET, RFC 6960
/// appendix A). A request signature, which RFC 6960 §4.1.2 makes optional, is not checked:
/// the answers are public.
pub fn parse_request(der: &[u8]) -> Result<OcspQuery, OcspError> {
    let request = OcspRequest::from_der(der).map_err(|e| OcspError::Malformed(e.to_string()))?;
    let tbs = request.tbs_request;
    match tbs.request_list.len() {
        0 => return Err(OcspError::Empty),
        n if n > MAX_IDS_PER_REQUEST => return Err(OcspError::TooMany(n)),
        _ => {}
    }
    let mut nonce = None;
    for ext in tbs.request_extensions.iter().flatten() {
        if ext.extn_id == ID_PKIX_OCSP_NONCE {
            // Nonce ::= OCTET STRING (SIZE(1..32)), itself inside extnValue (RFC 8954 §2.1).
            let value = OctetString::from_der(ext.extn_value.as_bytes())
                .map_err(|_| OcspError::BadNonce)?;
            match value.as_bytes().len() {
                0 => return Err(OcspError::BadNonce),
                // §2.1 lets a responder answer without the nonce rather than echo a long one.
                n if n > MAX_NONCE_LEN => {}
                _ => nonce = Some(value.as_bytes().to_vec()),
            }
        } else if ext.critical {
            return Err(OcspError::CriticalExtension(ext.extn_id.to_string()));
        }
    }
    let mut ids = Vec::with_capacity(tbs.request_list.len());
    for single in tbs.request_list {
        if let Some(ext) = single
            .single_request_extensions
            .iter()
            .flatten()
            .find(|e| e.critical)
        {
            return Err(OcspError::CriticalExtension(ext.extn_id.to_string()));
        }
        ids.push(CertId::from_wire(single.req_cert)?);
    }
    Ok(OcspQuery { ids, nonce })
}

/// The status of one certificate in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleStatus {
    Good,
    Revoked {
        at: UnixTime,
        reason: RevocationReason,
    },
    /// Not a certificate this CA issued, as far as the records go.
    Unknown,
}

/// The unsuccessful OCSPResponseStatus values (RFC 6960 §4.2.1) estgate sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspErrorStatus {
    MalformedRequest,
    InternalError,
    TryLater,
    Unauthorized,
}

/// An unsigned OCSPResponse carrying only the status (RFC 6960 §2.3).
pub fn error_response(status: OcspErrorStatus) -> Vec<u8> {
    let response = match status {
        OcspErrorStatus::MalformedRequest => OcspResponse::malformed_request(),
        OcspErrorStatus::InternalError => OcspResponse::internal_error(),
        OcspErrorStatus::TryLater => OcspResponse::try_later(),
        OcspErrorStatus::Unauthorized => OcspResponse::unauthorized(),
    };
    // A SEQUENCE of one ENUMERATED written into a Vec has no way to fail; should the encoder
    // ever refuse, an empty body is still no response a client would trust.
    response.to_der().unwrap_or_default()
}

impl Ca {
    /// Whether `id` names a certificate of this CA: its issuerNameHash and issuerKeyHash are
    /// those of the issuing CA certificate (RFC 6960 §4.1.1).
    pub fn issuer_matches(&self, id: &CertId) -> bool {
        id.issuer_name_hash == id.hash.digest(&self.issuer_name_der)
            && id.issuer_key_hash == id.hash.digest(&self.issuer_key_bits)
    }

    /// The CertID a client would send for one of this CA's certificates, e.g. to pre-sign
    /// responses before anyone asks.
    pub fn cert_id(&self, serial: &[u8], hash: CertIdHash) -> Result<CertId, CaError> {
        let oid = match hash {
            CertIdHash::Sha1 => ID_SHA_1,
            CertIdHash::Sha256 => ID_SHA_256,
        };
        let wire = x509_ocsp::CertId {
            // RFC 5754 §2 / what OpenSSL writes: the parameters are an explicit NULL.
            hash_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: Some(Null.into()),
            },
            issuer_name_hash: OctetString::new(hash.digest(&self.issuer_name_der))?,
            issuer_key_hash: OctetString::new(hash.digest(&self.issuer_key_bits))?,
            serial_number: SerialNumber::new(serial)?,
        };
        CertId::from_wire(wire).map_err(|e| CaError::Sign(e.to_string()))
    }
}
