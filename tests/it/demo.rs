//! `serve --demo` run again on the same database: it finds what the first run made, makes
//! nothing twice, and prints fresh secrets that work while the old ones stop working.

use estgate::ra::admin::{AuditFilter, Caller, PersonQuery};
use estgate::ra::Ra;
use estgate_bench::{basic_auth, make_csrs, Response};
use estgate_protocol::transfer;
use x509_parser::prelude::*;

use crate::support::{openssl_verify, single_cert, start, Server};

/// Every object the demo makes, as the administration verbs list them, without what a run
/// is meant to change (secret hashes, versions): equal before and after a second run when
/// the second run reused everything.
async fn objects(ra: &Ra) -> Vec<String> {
    let op = Caller::operator("it");
    let mut out = Vec::new();
    for o in ra.organisations_in_sight(&op).await.unwrap() {
        out.push(format!(
            "{:?}",
            estgate::domain::Organisation { version: 0, ..o }
        ));
    }
    let (persons, more) = ra
        .persons_in_sight(
            &op,
            PersonQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!more);
    for p in persons {
        assert!(p.secret_id_hash.is_some(), "{}", p.email);
        out.push(format!(
            "{:?}",
            estgate::domain::Person {
                secret_id_hash: None,
                version: 0,
                ..p
            }
        ));
    }
    for p in ra.profiles(&op).await.unwrap() {
        out.push(format!(
            "{:?}",
            estgate::domain::Profile { version: 0, ..p }
        ));
    }
    for e in ra.endpoints(&op, None).await.unwrap() {
        out.push(format!(
            "{:?}",
            estgate::domain::Endpoint { version: 0, ..e }
        ));
    }
    for a in ra.accounts(&op, None, None).await.unwrap() {
        out.push(format!(
            "{:?}",
            estgate::domain::Account {
                access_code_hash: None,
                version: 0,
                ..a
            }
        ));
    }
    out
}

/// The actions the demo's operator has in the audit trail, in chain order.
async fn demo_actions(ra: &Ra) -> Vec<String> {
    ra.audit_events(
        &Caller::operator("it"),
        AuditFilter {
            actor: Some("cli:demo".into()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|e| e.action)
    .collect()
}

async fn enroll(s: &Server, label: &str, user: &str, pass: &str, csr: &[u8]) -> Response {
    let auth = basic_auth(user, pass);
    let body = transfer::encode_base64(csr, transfer::Wrap::Columns64);
    s.connect()
        .await
        .request(
            "POST",
            &format!("/.well-known/est/{label}/simpleenroll"),
            &[
                ("Content-Type", "application/pkcs10"),
                ("Authorization", &auth),
                ("User-Agent", "estgate-tests"),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap()
}

fn password(demo: &estgate::demo::Demo, label: &str) -> String {
    demo.accounts
        .iter()
        .find(|a| a.label == label)
        .unwrap()
        .password
        .clone()
}

#[tokio::test]
async fn a_second_demo_run_reuses_the_data_and_resets_only_the_secrets() {
    let s = start().await;
    let ra = &s.running.as_ref().unwrap().ra;
    let before = objects(ra).await;
    // One organisation, one person, two profiles, one endpoint, three accounts.
    assert_eq!(before.len(), 8, "{before:#?}");
    let mut first = demo_actions(ra).await;
    first.sort();
    assert_eq!(
        first,
        [
            "account.create",
            "account.create",
            "account.create",
            "endpoint.create",
            "organisation.create",
            "person.create",
            "profile.create",
            "profile.create",
        ],
        "the first run writes through the RA verbs, which audit each object"
    );

    // A second `serve --demo` on the same database, as main runs it: its own RA.
    let again = estgate::demo::seed(&estgate::app::admin_ra(&s.config).await.unwrap())
        .await
        .unwrap();
    assert_eq!(objects(ra).await, before, "nothing made twice or changed");
    assert_eq!(again.enroll_url, s.demo.enroll_url, "the same endpoint");
    let mut second = demo_actions(ra).await.split_off(first.len());
    second.sort();
    assert_eq!(
        second,
        [
            "account.rotate-access-code",
            "account.rotate-access-code",
            "person.set-secret-id",
        ],
        "the second run only resets the three demo secrets"
    );
    for label in ["staff", "devices", "visitors"] {
        assert_ne!(password(&again, label), password(&s.demo, label), "{label}");
    }

    let r = s
        .connect()
        .await
        .request(
            "GET",
            "/.well-known/est/cacerts",
            &[("User-Agent", "estgate-tests")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());

    let device = estgate::demo::DEVICE;
    let (csr, _) = make_csrs("ec-p256", device, 1).unwrap().remove(0);
    let old = enroll(&s, "devices", device, &password(&s.demo, "devices"), &csr).await;
    assert_eq!(old.status, 401, "the old access code: {}", old.body_text());
    let new = enroll(&s, "devices", device, &password(&again, "devices"), &csr).await;
    assert_eq!(new.status, 200, "the new access code: {}", new.body_text());
    let der = single_cert(&new);
    openssl_verify(&s, &der, Some("sslclient"));
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        format!("CN={device}, O={}", estgate::demo::ORG)
    );

    let person = estgate::demo::PERSON;
    let (csr, _) = make_csrs("ec-p256", "ignored.example.com", 1)
        .unwrap()
        .remove(0);
    let old = enroll(&s, "staff", person, &password(&s.demo, "staff"), &csr).await;
    assert_eq!(old.status, 401, "the old secret ID: {}", old.body_text());
    let new = enroll(&s, "staff", person, &password(&again, "staff"), &csr).await;
    assert_eq!(new.status, 200, "the new secret ID: {}", new.body_text());
    let der = single_cert(&new);
    openssl_verify(&s, &der, Some("smimesign"));
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert!(
        cert.subject().to_string().contains("Alice"),
        "{}",
        cert.subject()
    );
    s.stop().await;
}

/// An organisation without an organizationIdentifier (made before the demo set one, or
/// cleared by an operator) gets the demo's again: the person profile is sponsor-validated
/// S/MIME, whose certificates must name it.
#[tokio::test]
async fn a_second_demo_run_restores_a_missing_organization_identifier() {
    let s = start().await;
    let ra = &s.running.as_ref().unwrap().ra;
    let op = Caller::operator("it");
    let org = ra
        .organisation_named(&op, estgate::demo::ORG)
        .await
        .unwrap();
    let cleared = ra
        .edit_organisation(
            &op,
            org.id,
            None,
            estgate::ra::admin::OrganisationChanges {
                organization_identifier: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.organization_identifier, None);
    estgate::demo::seed(&estgate::app::admin_ra(&s.config).await.unwrap())
        .await
        .unwrap();
    let again = ra
        .organisation_named(&op, estgate::demo::ORG)
        .await
        .unwrap();
    assert_eq!(again.id, org.id);
    assert_eq!(
        again.organization_identifier.as_deref(),
        Some(estgate::demo::DEMO_ORGANIZATION_IDENTIFIER)
    );
    s.stop().await;
}
