//! The delegated OCSP responder (RFC 6960 §4.2.2.2): a short-lived certificate from the
//! issuing CA for a key that exists only in this process, so the CA key signs a responder
//! certificate now and then instead of every response.

use const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
use const_oid::db::rfc6960::ID_PKIX_OCSP_NOCHECK;
use der::asn1::{BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::AsExtension;
use x509_cert::name::Name;
use x509_cert::Certificate;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspResponse, ResponderId, ResponseData,
    RevokedInfo, SingleResponse, Version,
};

use super::{CertId, CertIdHash, SingleStatus};
use crate::ca::{key_identifier, leaf, new_serial, to_time, Ca, CaError};
use crate::domain::{RevocationReason, UnixTime};

/// Relying parties whose clock runs a little slow still accept a freshly rotated responder.
const BACKDATE_SECS: i64 = 3600;

pub struct OcspResponder {
    key: KeyPair,
    cert_der: Vec<u8>,
    cert: Certificate,
    serial: Vec<u8>,
    not_after: UnixTime,
    /// SHA-1 of the responder's subjectPublicKey bits: its ResponderID byKey (RFC 6960
    /// §4.2.1), which is shorter than byName and does not depend on name encoding.
    key_hash: Vec<u8>,
}

impl std::fmt::Debug for OcspResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("serial", &hex::encode(&self.serial))
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// A delegated responder for a fresh EC P-256 key: EKU id-kp-OCSPSigning, keyUsage
    /// digitalSignature, CA:FALSE, and id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1) so clients
    /// do not ask about the responder's own status. Valid from `now` (backdated an hour) for
    /// `lifetime_secs`; the caller rotates it before `not_after()`.
    pub fn issue_ocsp_responder(
        &self,
        now: UnixTime,
        lifetime_secs: i64,
    ) -> Result<OcspResponder, CaError> {
        if lifetime_secs <= 0 {
            return Err(CaError::Profile(
                "an OCSP responder needs a positive lifetime".into(),
            ));
        }
        let not_after = now
            .checked_add(lifetime_secs)
            .ok_or_else(|| CaError::Profile("OCSP responder lifetime out of range".into()))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Key(e.to_string()))?;
        let serial = new_serial();
        let mut p = CertificateParams::default();
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.not_before = to_time(now - BACKDATE_SECS)?;
        p.not_after = to_time(not_after)?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "estgate OCSP responder");
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method =
            KeyIdMethod::PreSpecified(key_identifier(&key.subject_public_key_info())?);
        p.custom_extensions
            .push(leaf::extension(ID_PKIX_OCSP_NOCHECK, &Null)?);
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let cert_der = cert.der().to_vec();
        Ok(OcspResponder {
            cert: Certificate::from_der(&cert_der)?,
            cert_der,
            key_hash: CertIdHash::Sha1.digest(key.der_bytes()),
            key,
            serial,
            not_after,
        })
    }
}

impl OcspResponder {
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// A successful response with one SingleResponse per answer, in order; refused when
    /// `next_update` lies past the responder certificate's `not_after()`. An answer whose
    /// CertID does not name `ca` is sent as `unknown` whatever status it came with: this
    /// responder vouches for no other issuer (RFC 6960 §2.2).
    pub fn sign_response(
        &self,
        ca: &Ca,
        answers: &[(CertId, SingleStatus)],
        produced_at: UnixTime,
        this_update: UnixTime,
        next_update: UnixTime,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>, CaError> {
        if answers.is_empty() {
            return Err(CaError::Sign("an OCSP response answers something".into()));
        }
        if next_update <= this_update {
            return Err(CaError::Sign(
                "an OCSP response's nextUpdate must follow its thisUpdate".into(),
            ));
        }
        // A response that outlives the responder certificate would stop verifying while
        // clients still cache it: rotate the responder first.
        if produced_at > self.not_after || next_update > self.not_after {
            return Err(CaError::Sign(
                "the OCSP responder certificate expires before the response".into(),
            ));
        }
        let responses = answers
            .iter()
            .map(|(id, status)| {
                let status = if ca.issuer_matches(id) {
                    *status
                } else {
                    SingleStatus::Unknown
                };
                Ok(SingleResponse {
                    cert_id: id.wire.clone(),
                    cert_status: cert_status(status)?,
                    this_update: generalized(this_update)?,
                    next_update: Some(generalized(next_update)?),
                    single_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let response_extensions = match nonce {
            // RFC 8954 §2.1: the same nonce, in the same extension, non-critical.
            Some(n) => Some(vec![Nonce::new(n)?.to_extension(&Name::default(), &[])?]),
            None => None,
        };
        let tbs_response_data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(self.key_hash.clone())?),
            produced_at: generalized(produced_at)?,
            responses,
            response_extensions,
        };
        let signature = self
            .key
            .sign(&tbs_response_data.to_der()?)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let basic = BasicOcspResponse {
            tbs_response_data,
            // RFC 5758 §3.2: ecdsa-with-SHA256 has absent parameters.
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&signature)?,
            certs: Some(vec![self.cert.clone()]),
        };
        Ok(OcspResponse::successful(basic)?.to_der()?)
    }

    /// The response for one of `ca`'s certificates without a request, for pre-signing: a
    /// SHA-1 CertID (what `openssl ocsp` and most clients send) and no nonce.
    pub fn sign_for_serial(
        &self,
        ca: &Ca,
        serial: &[u8],
        status: SingleStatus,
        produced_at: UnixTime,
        this_update: UnixTime,
        next_update: UnixTime,
    ) -> Result<Vec<u8>, CaError> {
        let id = ca.cert_id(serial, CertIdHash::Sha1)?;
        self.sign_response(
            ca,
            &[(id, status)],
            produced_at,
            this_update,
            next_update,
            None,
        )
    }
}

fn cert_status(status: SingleStatus) -> Result<CertStatus, CaError> {
    Ok(match status {
        SingleStatus::Good => CertStatus::good(),
        SingleStatus::Unknown => CertStatus::unknown(),
        SingleStatus::Revoked { at, reason } => CertStatus::revoked(RevokedInfo {
            revocation_time: generalized(at)?,
            revocation_reason: crl_reason(reason),
        }),
    })
}

/// The same reasons the CRL states; `unspecified` is left out there (RFC 5280 §5.3.1) and so
/// here too, as the CA/B BR ask OCSP and CRL to agree.
fn crl_reason(r: RevocationReason) -> Option<CrlReason> {
    Some(match r {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    })
}

fn generalized(t: UnixTime) -> Result<OcspGeneralizedTime, CaError> {
    let secs = u64::try_from(t).map_err(|_| CaError::Sign(format!("time {t} before 1970")))?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_unix_duration(
        std::time::Duration::from_secs(secs),
    )?))
}
