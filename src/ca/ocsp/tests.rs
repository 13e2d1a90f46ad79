//! OCSP against OpenSSL: requests made by `openssl ocsp` are parsed here, and responses made
//! here are verified by `openssl ocsp` from the issuing CA to the root.

use std::path::PathBuf;

use x509_parser::prelude::*;

use super::*;
use crate::ca::test_pki::{now, openssl, person_plan, pkilint, test_pki, TestPki};
use crate::domain::KeyType;

const HOUR: i64 = 3600;

/// `openssl ocsp -issuer … -serial 0x… -reqout …` with extra flags.
fn openssl_request(pki: &TestPki, name: &str, serial: &[u8], extra: &[&str]) -> PathBuf {
    let req = pki.path(name);
    let serial = format!("0x{}", hex::encode(serial));
    // OpenSSL wants the digest flag before the serial it applies to.
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"ocsp"];
    for e in extra {
        args.push(e);
    }
    args.extend([
        &"-issuer" as &dyn AsRef<std::ffi::OsStr>,
        &pki.issuing_pem,
        &"-serial",
        &serial,
        &"-reqout",
        &req,
    ]);
    let (ok, text) = openssl(&args);
    assert!(ok, "{text}");
    req
}

/// `openssl ocsp -respin … -issuer issuing.pem -CAfile root.pem -resp_text`, with either
/// the request (`-reqin`, for the nonce check) or a serial (`-serial`, for the status summary;
/// with both, OpenSSL would compare against a fresh request of its own).
fn openssl_verify(pki: &TestPki, resp: &[u8], asked: Asked<'_>) -> (bool, String) {
    let resp = pki.write("resp.der", resp);
    let (req, serial) = match asked {
        Asked::Request(req) => (Some(req), None),
        Asked::Serial(s) => (None, Some(format!("0x{}", hex::encode(s)))),
    };
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"ocsp",
        &"-respin",
        &resp,
        &"-issuer",
        &pki.issuing_pem,
        &"-CAfile",
        &pki.root_pem,
        &"-resp_text",
    ];
    if let Some(req) = req {
        args.push(&"-reqin");
        args.push(req);
    }
    if let Some(serial) = &serial {
        args.push(&"-serial");
        args.push(serial);
    }
    openssl(&args)
}

enum Asked<'a> {
    Request(&'a PathBuf),
    Serial(&'a [u8]),
}

fn issued_leaf(pki: &TestPki) -> Vec<u8> {
    let plan = person_plan(KeyType::EcP256, None);
    pki.issue(&plan);
    plan.serial
}

#[test]
fn openssl_requests_parse_with_and_without_nonce_and_with_sha256() {
    let pki = test_pki();
    let serial = issued_leaf(&pki);
    for (name, extra, hash, nonce) in [
        ("default.der", &[][..], CertIdHash::Sha1, true),
        ("no-nonce.der", &["-no_nonce"][..], CertIdHash::Sha1, false),
        ("sha256.der", &["-sha256"][..], CertIdHash::Sha256, true),
    ] {
        let req = openssl_request(&pki, name, &serial, extra);
        let query = parse_request(&std::fs::read(&req).unwrap()).unwrap();
        assert_eq!(query.ids.len(), 1, "{name}");
        let id = &query.ids[0];
        assert_eq!(id.serial(), serial.as_slice(), "{name}");
        assert_eq!(id.hash(), hash, "{name}");
        assert!(pki.ca.issuer_matches(id), "{name}");
        assert_eq!(id, &pki.ca.cert_id(&serial, hash).unwrap(), "{name}");
        // OpenSSL's default nonce is 16 random octets.
        assert_eq!(
            query.nonce.as_ref().map(Vec::len),
            nonce.then_some(16),
            "{name}"
        );
    }
}

#[test]
fn a_serial_with_the_high_bit_set_compares_without_its_der_padding() {
    let pki = test_pki();
    let serial = [0x80, 0x01, 0x02];
    let req = openssl_request(&pki, "high.der", &serial, &["-no_nonce"]);
    let query = parse_request(&std::fs::read(&req).unwrap()).unwrap();
    assert_eq!(query.ids[0].serial(), serial);
}

#[test]
fn another_issuer_does_not_match() {
    let pki = test_pki();
    let other = test_pki();
    let req = openssl_request(&other, "other.der", &[1, 2, 3], &["-no_nonce"]);
    let query = parse_request(&std::fs::read(&req).unwrap()).unwrap();
    assert!(other.ca.issuer_matches(&query.ids[0]));
    assert!(!pki.ca.issuer_matches(&query.ids[0]));
}

#[test]
fn responder_certificate_is_a_delegated_ocsp_signer() {
    let pki = test_pki();
    let t = now();
    let responder = pki.ca.issue_ocsp_responder(t, 2 * 86_400).unwrap();
    assert_eq!(responder.not_after(), t + 2 * 86_400);
    assert_eq!(responder.serial().len(), 16);
    assert!(!format!("{responder:?}").contains("KeyPair"));

    let (_, cert) = parse_x509_certificate(responder.cert_der()).unwrap();
    assert_eq!(cert.raw_serial(), responder.serial());
    assert_eq!(cert.validity().not_after.timestamp(), t + 2 * 86_400);
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "estgate OCSP responder");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.ocsp_signing && !eku.client_auth && !eku.any);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let nocheck = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5")
        .unwrap();
    assert_eq!(nocheck.value, [0x05, 0x00], "the value is DER NULL");
    let (_, issuing) = parse_x509_certificate(&pki.ca.chain()[0]).unwrap();
    assert_eq!(cert.issuer(), issuing.subject());
    assert!(cert.verify_signature(Some(issuing.public_key())).is_ok());

    if let Some(found) = pkilint(pki.dir.path(), "lint_pkix_cert", &[], responder.cert_der()) {
        println!("pkilint notices for the responder certificate:\n{found}");
    }
    assert!(matches!(
        pki.ca.issue_ocsp_responder(t, 0),
        Err(CaError::Profile(_))
    ));
}

#[test]
fn openssl_verifies_good_revoked_and_unknown_answers_and_the_nonce() {
    let pki = test_pki();
    let serial = issued_leaf(&pki);
    let t = now();
    let responder = pki.ca.issue_ocsp_responder(t, 2 * 86_400).unwrap();
    let req = openssl_request(&pki, "req.der", &serial, &[]);
    let query = parse_request(&std::fs::read(&req).unwrap()).unwrap();
    let revoked_at = t - 2 * HOUR;
    for (status, line) in [
        (SingleStatus::Good, "Cert Status: good"),
        (
            SingleStatus::Revoked {
                at: revoked_at,
                reason: RevocationReason::KeyCompromise,
            },
            "Cert Status: revoked",
        ),
        (SingleStatus::Unknown, "Cert Status: unknown"),
    ] {
        let answers = [(query.ids[0].clone(), status)];
        let der = responder
            .sign_response(
                &pki.ca,
                &answers,
                t,
                t - HOUR,
                t + 86_400,
                query.nonce.as_deref(),
            )
            .unwrap();
        let (ok, text) = openssl_verify(&pki, &der, Asked::Request(&req));
        assert!(ok, "{status:?}\n{text}");
        assert!(text.contains("Response verify OK"), "{status:?}\n{text}");
        // With -reqin, OpenSSL compares the nonces and says so only when they differ.
        assert!(!text.contains("Nonce Verify error"), "{status:?}\n{text}");
        assert!(!text.contains("no nonce"), "{status:?}\n{text}");
        let echoed = format!("0410{}", hex::encode_upper(query.nonce.as_ref().unwrap()));
        assert!(text.contains(&echoed), "{text}");
        assert!(text.contains(line), "{status:?}\n{text}");
        if let SingleStatus::Revoked { .. } = status {
            assert!(
                text.contains("Revocation Reason: keyCompromise (0x1)"),
                "{text}"
            );
        }
        if let Some(found) = pkilint(pki.dir.path(), "lint_ocsp_response", &[], &der) {
            println!("pkilint notices for the {status:?} response:\n{found}");
        }
    }

    // A response without the request's nonce is noticed by OpenSSL: the echo is what passes.
    let der = responder
        .sign_response(
            &pki.ca,
            &[(query.ids[0].clone(), SingleStatus::Good)],
            t,
            t - HOUR,
            t + 86_400,
            None,
        )
        .unwrap();
    let (_, text) = openssl_verify(&pki, &der, Asked::Request(&req));
    assert!(text.contains("WARNING: no nonce in response"), "{text}");
}

#[test]
fn the_response_is_signed_by_the_responder_key_and_names_it_by_key_hash() {
    let pki = test_pki();
    let serial = issued_leaf(&pki);
    let t = now();
    let responder = pki.ca.issue_ocsp_responder(t, 86_400).unwrap();
    let der = responder
        .sign_for_serial(
            &pki.ca,
            &serial,
            SingleStatus::Revoked {
                at: t - HOUR,
                reason: RevocationReason::Unspecified,
            },
            t,
            t,
            t + HOUR,
        )
        .unwrap();
    let response = OcspResponse::from_der(&der).unwrap();
    assert_eq!(
        response.response_status,
        x509_ocsp::OcspResponseStatus::Successful
    );
    let bytes = response.response_bytes.unwrap();
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
    let (_, responder_cert) = parse_x509_certificate(responder.cert_der()).unwrap();
    let key_hash = CertIdHash::Sha1.digest(&responder_cert.public_key().subject_public_key.data);
    assert_eq!(
        basic.tbs_response_data.responder_id,
        x509_ocsp::ResponderId::ByKey(OctetString::new(key_hash).unwrap())
    );
    assert_eq!(basic.certs.as_ref().unwrap().len(), 1);
    assert_eq!(
        basic.certs.as_ref().unwrap()[0].to_der().unwrap(),
        responder.cert_der()
    );
    let single = &basic.tbs_response_data.responses[0];
    assert_eq!(single.cert_id.serial_number.as_bytes(), serial.as_slice());
    // `unspecified` is stated by leaving the reason out, as on the CRL.
    let x509_ocsp::CertStatus::Revoked(info) = single.cert_status else {
        panic!("{:?}", single.cert_status);
    };
    assert_eq!(info.revocation_reason, None);
    assert_eq!(
        info.revocation_time.0.to_unix_duration().as_secs() as i64,
        t - HOUR
    );
    assert!(basic.tbs_response_data.response_extensions.is_none());

    // The signature verifies with the responder's public key (aws-lc-rs, not our signer).
    let tbs = basic.tbs_response_data.to_der().unwrap();
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        &responder_cert.public_key().subject_public_key.data,
    );
    key.verify(&tbs, basic.signature.raw_bytes()).unwrap();

    // And OpenSSL agrees, from the SHA-1 CertID it would send itself.
    let (ok, text) = openssl_verify(&pki, &der, Asked::Serial(&serial));
    assert!(ok && text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": revoked"), "{text}");
}

#[test]
fn a_foreign_certid_is_answered_unknown_whatever_the_caller_says() {
    let pki = test_pki();
    let other = test_pki();
    let t = now();
    let responder = pki.ca.issue_ocsp_responder(t, 86_400).unwrap();
    let foreign = other.ca.cert_id(&[7, 7, 7], CertIdHash::Sha1).unwrap();
    let der = responder
        .sign_response(
            &pki.ca,
            &[(foreign, SingleStatus::Good)],
            t,
            t,
            t + HOUR,
            None,
        )
        .unwrap();
    let response = OcspResponse::from_der(&der).unwrap();
    let basic = x509_ocsp::BasicOcspResponse::from_der(
        response.response_bytes.unwrap().response.as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        basic.tbs_response_data.responses[0].cert_status,
        x509_ocsp::CertStatus::Unknown(_)
    ));
}

#[test]
fn a_response_outliving_the_responder_or_with_a_reversed_window_is_refused() {
    let pki = test_pki();
    let t = now();
    let responder = pki.ca.issue_ocsp_responder(t, HOUR).unwrap();
    let serial = [1, 2, 3];
    let sign = |produced: i64, this: i64, next: i64| {
        responder.sign_for_serial(&pki.ca, &serial, SingleStatus::Good, produced, this, next)
    };
    assert!(sign(t, t, t + HOUR).is_ok());
    assert!(matches!(
        sign(t + 2 * HOUR, t, t + 3 * HOUR),
        Err(CaError::Sign(_))
    ));
    assert!(matches!(sign(t, t, t), Err(CaError::Sign(_))));
}

#[test]
fn error_responses_carry_only_their_status() {
    for (status, openssl_name, code) in [
        (OcspErrorStatus::MalformedRequest, "malformedrequest", 1),
        (OcspErrorStatus::InternalError, "internalerror", 2),
        (OcspErrorStatus::TryLater, "trylater", 3),
        (OcspErrorStatus::Unauthorized, "unauthorized", 6),
    ] {
        let der = error_response(status);
        let parsed = OcspResponse::from_der(&der).unwrap();
        assert_eq!(parsed.response_status as u32, code);
        assert!(parsed.response_bytes.is_none());
        let pki_dir = tempfile::tempdir().unwrap();
        let path = crate::ca::test_pki::write(pki_dir.path(), "err.der", &der);
        let (_, text) = openssl(&[&"ocsp", &"-respin", &path, &"-resp_text", &"-noverify"]);
        assert!(
            text.contains(&format!("Responder Error: {openssl_name} ({code})")),
            "{text}"
        );
    }
}

#[test]
fn requests_we_do_not_answer_are_refused_with_a_reason() {
    let pki = test_pki();
    assert!(matches!(
        parse_request(b"not DER"),
        Err(OcspError::Malformed(_))
    ));

    let id = pki.ca.cert_id(&[1], CertIdHash::Sha256).unwrap();
    let request = |ids: Vec<x509_ocsp::CertId>, extensions| {
        x509_ocsp::OcspRequest {
            tbs_request: x509_ocsp::TbsRequest {
                version: x509_ocsp::Version::V1,
                requestor_name: None,
                request_list: ids
                    .into_iter()
                    .map(|req_cert| x509_ocsp::Request {
                        req_cert,
                        single_request_extensions: None,
                    })
                    .collect(),
                request_extensions: extensions,
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    };

    assert_eq!(parse_request(&request(vec![], None)), Err(OcspError::Empty));
    let many = vec![id.wire.clone(); MAX_IDS_PER_REQUEST + 1];
    assert_eq!(
        parse_request(&request(many, None)),
        Err(OcspError::TooMany(MAX_IDS_PER_REQUEST + 1))
    );

    // SHA-384 (2.16.840.1.101.3.4.2.2) is valid RFC 6960 but not offered.
    let mut sha384 = id.wire.clone();
    sha384.hash_algorithm.oid = const_oid::db::rfc5912::ID_SHA_384;
    assert!(matches!(
        parse_request(&request(vec![sha384], None)),
        Err(OcspError::UnsupportedHash(oid)) if oid == "2.16.840.1.101.3.4.2.2"
    ));

    let mut short = id.wire.clone();
    short.issuer_key_hash = OctetString::new(vec![0; 20]).unwrap();
    assert!(matches!(
        parse_request(&request(vec![short], None)),
        Err(OcspError::HashLength {
            got: 20,
            want: 32,
            ..
        })
    ));

    let ext = |oid, critical, value: Vec<u8>| x509_cert::ext::Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    };
    let empty_nonce = OctetString::new(Vec::new()).unwrap().to_der().unwrap();
    assert_eq!(
        parse_request(&request(
            vec![id.wire.clone()],
            Some(vec![ext(ID_PKIX_OCSP_NONCE, false, empty_nonce)])
        )),
        Err(OcspError::BadNonce)
    );
    // RFC 8954 §2.1: a nonce longer than 32 octets may go unanswered rather than refused.
    let long_nonce = OctetString::new(vec![9; 40]).unwrap().to_der().unwrap();
    let query = parse_request(&request(
        vec![id.wire.clone()],
        Some(vec![ext(ID_PKIX_OCSP_NONCE, false, long_nonce)]),
    ))
    .unwrap();
    assert_eq!(query.nonce, None);

    let unknown = const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.4");
    assert!(matches!(
        parse_request(&request(
            vec![id.wire.clone()],
            Some(vec![ext(unknown, true, Null.to_der().unwrap())])
        )),
        Err(OcspError::CriticalExtension(_))
    ));
    // Non-critical ones are ignored (RFC 6960 §4.4).
    assert!(parse_request(&request(
        vec![id.wire.clone()],
        Some(vec![ext(unknown, false, Null.to_der().unwrap())])
    ))
    .is_ok());
}
