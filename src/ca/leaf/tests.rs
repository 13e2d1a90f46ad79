//! Leaf profiles checked by x509-parser and pkilint.

use x509_parser::extensions::{DistributionPointName, GeneralName as Gn, ParsedExtension};
use x509_parser::prelude::*;

use super::*;
use crate::ca::test_pki::{device_plan, person_plan, pkilint, test_pki};

fn extension<'a>(
    cert: &'a X509Certificate<'_>,
    oid: &x509_parser::der_parser::oid::Oid<'_>,
) -> Option<&'a X509Extension<'a>> {
    cert.extensions().iter().find(|e| &e.oid == oid)
}

fn policy_oids(cert: &X509Certificate<'_>) -> Vec<String> {
    let oid = x509_parser::oid_registry::OID_X509_EXT_CERTIFICATE_POLICIES;
    match extension(cert, &oid).map(|e| e.parsed_extension()) {
        Some(ParsedExtension::CertificatePolicies(p)) => {
            p.iter().map(|p| p.policy_id.to_id_string()).collect()
        }
        Some(other) => panic!("{other:?}"),
        None => Vec::new(),
    }
}

fn subject_attributes(cert: &X509Certificate<'_>) -> Vec<(String, String)> {
    cert.subject()
        .iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The publication URLs every leaf carries, as a relying party reads them.
fn assert_publication(cert: &X509Certificate<'_>) {
    use x509_parser::oid_registry as oids;
    let cdp = extension(cert, &oids::OID_X509_EXT_CRL_DISTRIBUTION_POINTS).unwrap();
    assert!(!cdp.critical);
    let ParsedExtension::CRLDistributionPoints(points) = cdp.parsed_extension() else {
        panic!("CDP not parsed: {cdp:?}");
    };
    let Some(DistributionPointName::FullName(names)) = &points.points[0].distribution_point else {
        panic!("no fullName");
    };
    assert!(matches!(names[..], [Gn::URI("http://pki.example.org/crl")]));

    let aia = extension(cert, &oids::OID_PKIX_AUTHORITY_INFO_ACCESS).unwrap();
    assert!(!aia.critical);
    let ParsedExtension::AuthorityInfoAccess(aia) = aia.parsed_extension() else {
        panic!("AIA not parsed");
    };
    let found: Vec<(String, String)> = aia
        .accessdescs
        .iter()
        .map(|d| match &d.access_location {
            Gn::URI(u) => (d.access_method.to_id_string(), u.to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "1.3.6.1.5.5.7.48.1".to_string(),
                "http://pki.example.org/ocsp".to_string()
            ),
            (
                "1.3.6.1.5.5.7.48.2".to_string(),
                "http://pki.example.org/ca.cer".to_string()
            ),
        ]
    );
}

fn smime_types() -> Vec<SmimeType> {
    let mut all = Vec::new();
    for &validation in SmimeValidation::ALL {
        for &generation in SmimeGeneration::ALL {
            all.push(SmimeType {
                validation,
                generation,
            });
        }
    }
    all
}

#[test]
fn smime_certificates_follow_their_type_and_lint_clean() {
    let pki = test_pki();
    let mut notices = Vec::new();
    for t in smime_types() {
        for key in [KeyType::EcP256, KeyType::Rsa { bits: 2048 }] {
            let der = pki.issue(&person_plan(key, Some(t)));
            let (_, cert) = parse_x509_certificate(&der).unwrap();
            assert_publication(&cert);

            let oids = policy_oids(&cert);
            let v = SmimeValidation::ALL
                .iter()
                .position(|v| *v == t.validation)
                .unwrap()
                + 1;
            let g = match t.generation {
                SmimeGeneration::Multipurpose => 2,
                SmimeGeneration::Strict => 3,
            };
            assert_eq!(oids, [format!("2.23.140.1.5.{v}.{g}")], "{t:?}");

            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.email_protection);
            assert_eq!(
                eku.client_auth,
                t.generation == SmimeGeneration::Multipurpose
            );

            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert_eq!(ku.key_encipherment(), matches!(key, KeyType::Rsa { .. }));
            assert_eq!(ku.key_agreement(), key == KeyType::EcP256);

            let cn = "2.5.4.3".to_string();
            let (gn, sn, o, ou, oi) = (
                "2.5.4.42".to_string(),
                "2.5.4.4".to_string(),
                "2.5.4.10".to_string(),
                "2.5.4.11".to_string(),
                "2.5.4.97".to_string(),
            );
            let s = |k: &String, v: &str| (k.clone(), v.to_string());
            let expected = match t.validation {
                SmimeValidation::Mailbox => vec![s(&cn, "erika@example.org")],
                SmimeValidation::Organization => vec![
                    s(&cn, "erika@example.org"),
                    s(&o, "Example Ltd"),
                    s(&ou, "Research"),
                    s(&oi, "NTRGB-01234567"),
                ],
                SmimeValidation::Sponsor => vec![
                    s(&cn, "Erika Mustermann"),
                    s(&gn, "Erika"),
                    s(&sn, "Mustermann"),
                    s(&o, "Example Ltd"),
                    s(&ou, "Research"),
                    s(&oi, "NTRGB-01234567"),
                ],
                SmimeValidation::Individual => vec![
                    s(&cn, "Erika Mustermann"),
                    s(&gn, "Erika"),
                    s(&sn, "Mustermann"),
                ],
            };
            assert_eq!(subject_attributes(&cert), expected, "{t:?}");

            match pkilint(pki.dir.path(), "lint_cabf_smime_cert", &["-d"], &der) {
                Some(found) => notices.push(format!("{t:?} {key:?}:\n{found}")),
                None => return,
            }
        }
    }
    println!("pkilint notices:\n{}", notices.join("\n"));
}

#[test]
fn device_and_plain_person_certificates_lint_clean_under_pkix() {
    let pki = test_pki();
    for plan in [
        device_plan(KeyType::EcP256),
        device_plan(KeyType::Rsa { bits: 2048 }),
        person_plan(KeyType::EcP256, None),
    ] {
        let der = pki.issue(&plan);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        assert_publication(&cert);
        assert!(policy_oids(&cert).is_empty());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert_eq!(eku.email_protection, plan.usage == Usage::Person);
        if let Some(found) = pkilint(pki.dir.path(), "lint_pkix_cert", &[], &der) {
            println!("pkilint notices for {:?}:\n{found}", plan.usage);
        }
    }
}

#[test]
fn without_publication_urls_a_leaf_names_none() {
    let pki = test_pki();
    let ca = crate::ca::Ca::from_pem(
        &std::fs::read(&pki.chain_pem).unwrap(),
        &std::fs::read_to_string(pki.path("issuing-ca.key")).unwrap(),
    )
    .unwrap();
    assert!(ca.publication().is_none());
    let plan = device_plan(KeyType::EcP256);
    let key = crate::ca::keys::generate(plan.key).unwrap();
    let der = ca.sign(&plan, &key.spki_der).unwrap();
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    use x509_parser::oid_registry as oids;
    assert!(extension(&cert, &oids::OID_X509_EXT_CRL_DISTRIBUTION_POINTS).is_none());
    assert!(extension(&cert, &oids::OID_PKIX_AUTHORITY_INFO_ACCESS).is_none());
}

#[test]
fn a_subject_the_smime_type_cannot_express_is_refused() {
    let pki = test_pki();
    let key = crate::ca::keys::generate(KeyType::EcP256).unwrap();
    let sponsor = SmimeType {
        validation: SmimeValidation::Sponsor,
        generation: SmimeGeneration::Strict,
    };
    let mut plan = person_plan(KeyType::EcP256, Some(sponsor));
    plan.subject.organization_identifier = None;
    let err = pki.ca.sign(&plan, &key.spki_der).unwrap_err();
    assert!(
        matches!(&err, CaError::Profile(m) if m.contains("organizationIdentifier")),
        "{err}"
    );

    let mut plan = person_plan(KeyType::EcP256, Some(sponsor));
    plan.subject.given_name = None;
    plan.subject.surname = None;
    assert!(matches!(
        pki.ca.sign(&plan, &key.spki_der),
        Err(CaError::Profile(_))
    ));

    let mut plan = person_plan(KeyType::EcP256, Some(sponsor));
    plan.emails.clear();
    assert!(matches!(
        pki.ca.sign(&plan, &key.spki_der),
        Err(CaError::Profile(_))
    ));

    let mut plan = person_plan(KeyType::EcP256, Some(sponsor));
    plan.not_after = plan.not_before + 825 * 86_400;
    assert!(matches!(
        pki.ca.sign(&plan, &key.spki_der),
        Err(CaError::Profile(m)) if m.contains("825 days")
    ));
    plan.not_after -= 1;
    assert!(pki.ca.sign(&plan, &key.spki_der).is_ok());

    let mut plan = device_plan(KeyType::EcP256);
    plan.smime = Some(sponsor);
    assert!(matches!(
        pki.ca.sign(&plan, &key.spki_der),
        Err(CaError::Profile(_))
    ));
}

#[test]
fn publication_urls_come_from_the_base_without_a_double_slash() {
    for base in ["http://h.example/pki", "http://h.example/pki/"] {
        assert_eq!(
            PublicationUrls::from_base(base),
            PublicationUrls {
                crl: "http://h.example/pki/crl".into(),
                ocsp: "http://h.example/pki/ocsp".into(),
                ca_issuers: "http://h.example/pki/ca.cer".into(),
            }
        );
    }
}
