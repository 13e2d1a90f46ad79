//! Full CRLs (RFC 5280 §5) of the issuing CA: version 2, with the CRL number and an authority
//! key identifier equal to the CA certificate's subjectKeyIdentifier, nextUpdate always
//! present (§5.1.2.5), and a reasonCode per entry.

use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};

use super::{to_time, Ca, CaError};
use crate::domain::{RevocationReason, UnixTime};

/// One revoked certificate as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Big-endian serial number, as `new_serial()` made it.
    pub serial: Vec<u8>,
    pub revoked_at: UnixTime,
    pub reason: RevocationReason,
}

impl Ca {
    /// A complete CRL (no issuing distribution point: it covers every certificate of the CA).
    /// `number` must grow with every CRL the CA publishes (RFC 5280 §5.2.3).
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: UnixTime,
        next_update: UnixTime,
        revoked: &[RevokedEntry],
    ) -> Result<Vec<u8>, CaError> {
        if next_update <= this_update {
            return Err(CaError::Sign(
                "a CRL's nextUpdate must follow its thisUpdate".into(),
            ));
        }
        let revoked_certs = revoked
            .iter()
            .map(|e| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&e.serial),
                    revocation_time: to_time(e.revoked_at)?,
                    // rcgen leaves out an `unspecified` reasonCode, as RFC 5280 §5.3.1 asks
                    // ("SHOULD be absent instead of using the unspecified (0) value") and
                    // the CA/B BR require.
                    reason_code: Some(crl_reason(e.reason)),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_time(this_update)?,
            next_update: to_time(next_update)?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_id.clone(),
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(crl.der().to_vec())
    }
}

fn crl_reason(r: RevocationReason) -> rcgen::RevocationReason {
    match r {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::*;

    use super::super::new_serial;
    use super::super::test_pki::{now, openssl, pkilint, test_pki};
    use super::*;

    #[test]
    fn the_crl_verifies_under_the_issuing_ca_and_lists_serials_and_reasons() {
        let pki = test_pki();
        let t = now();
        let entries: Vec<RevokedEntry> = RevocationReason::ALL
            .iter()
            .enumerate()
            .map(|(i, &reason)| RevokedEntry {
                serial: new_serial(),
                revoked_at: t - 3600 * (i as i64 + 1),
                reason,
            })
            .collect();
        let der = pki.ca.sign_crl(42, t, t + 7 * 86_400, &entries).unwrap();

        // OpenSSL: the signature verifies with the chain, and the text names every entry.
        let path = pki.write("ca.crl", &der);
        let (ok, text) = openssl(&[
            &"crl",
            &"-inform",
            &"DER",
            &"-in",
            &path,
            &"-CAfile",
            &pki.chain_pem,
            &"-verify",
            &"-noout",
            &"-text",
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("verify OK"), "{text}");
        assert!(text.contains("Version 2"), "{text}");
        assert!(
            text.contains("X509v3 CRL Number: \n                42"),
            "{text}"
        );
        let openssl_reason = |r: RevocationReason| match r {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some("Key Compromise"),
            RevocationReason::AffiliationChanged => Some("Affiliation Changed"),
            RevocationReason::Superseded => Some("Superseded"),
            RevocationReason::CessationOfOperation => Some("Cessation Of Operation"),
            RevocationReason::CertificateHold => Some("Certificate Hold"),
            RevocationReason::PrivilegeWithdrawn => Some("Privilege Withdrawn"),
        };
        for e in &entries {
            let serial = format!("Serial Number: {}", hex::encode_upper(&e.serial));
            let at = text
                .find(&serial)
                .unwrap_or_else(|| panic!("{serial}\n{text}"));
            let block = &text[at..];
            let block = &block[..block[1..].find("Serial Number").unwrap_or(block.len() - 1)];
            match openssl_reason(e.reason) {
                Some(reason) => assert!(block.contains(reason), "{block}"),
                None => assert!(!block.contains("CRL Reason Code"), "{block}"),
            }
        }

        // x509-parser: the same numbers, times and AKI = the CA's subjectKeyIdentifier.
        let (_, crl) = parse_x509_crl(&der).unwrap();
        assert_eq!(crl.version(), Some(X509Version::V2));
        assert_eq!(crl.crl_number().unwrap().to_u64_digits(), [42]);
        assert_eq!(crl.last_update().timestamp(), t);
        assert_eq!(crl.next_update().unwrap().timestamp(), t + 7 * 86_400);
        let listed: Vec<(Vec<u8>, i64, Option<u8>)> = crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    r.raw_serial().to_vec(),
                    r.revocation_date.timestamp(),
                    r.reason_code().map(|(_, c)| c.0),
                )
            })
            .collect();
        let expected: Vec<(Vec<u8>, i64, Option<u8>)> = entries
            .iter()
            .map(|e| {
                let code = (e.reason != RevocationReason::Unspecified).then(|| e.reason.code());
                (e.serial.clone(), e.revoked_at, code)
            })
            .collect();
        assert_eq!(listed, expected);
        let (_, issuing) = parse_x509_certificate(&pki.ca.chain()[0]).unwrap();
        let ski = issuing
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        let aki = crl
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski);
        assert!(crl.verify_signature(issuing.public_key()).is_ok());

        if let Some(found) = pkilint(
            pki.dir.path(),
            "lint_crl",
            &["-t", "CRL", "-p", "PKIX"],
            &der,
        ) {
            println!("pkilint (PKIX) notices for the CRL:\n{found}");
        }
        // The CA/B Forum profile prohibits certificateHold (TLS BR §7.2.2, S/MIME BR §7.2.2);
        // every other reason estgate records is allowed there.
        let without_hold: Vec<RevokedEntry> = entries
            .iter()
            .filter(|e| e.reason != RevocationReason::CertificateHold)
            .cloned()
            .collect();
        let der = pki
            .ca
            .sign_crl(43, t, t + 7 * 86_400, &without_hold)
            .unwrap();
        if let Some(found) = pkilint(pki.dir.path(), "lint_crl", &["-t", "CRL", "-p", "BR"], &der) {
            println!("pkilint (BR) notices for the CRL:\n{found}");
        }
    }

    #[test]
    fn an_empty_crl_has_no_revoked_list_and_a_reversed_window_is_refused() {
        let pki = test_pki();
        let t = now();
        let der = pki.ca.sign_crl(1, t, t + 86_400, &[]).unwrap();
        let (_, crl) = parse_x509_crl(&der).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
        assert!(matches!(
            pki.ca.sign_crl(2, t, t, &[]),
            Err(CaError::Sign(_))
        ));
    }
}
