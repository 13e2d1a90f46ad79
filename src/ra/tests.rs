//! RA rules against a real database (SQLite, or PostgreSQL when
//! `ESTGATE_TEST_DATABASE_URL` is set) with a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, SanType};

use crate::error::ErrorKind;
use x509_parser::prelude::*;

use super::*;
use crate::ca::dev::{ensure_dev_ca, PkiFiles};
use crate::domain::{generate_secret, Id, KeyType};
use crate::store::{NewAccount, NewEndpoint, NewPerson, NewProfile};
use crate::testing::{database_url, FakeClock};

const T0: i64 = 1_790_000_000;

struct World {
    ra: Ra,
    clock: Arc<FakeClock>,
    store: Store,
    alice_secret: &'static str,
    device_code: &'static str,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let files = PkiFiles::in_dir(dir.path());
    ensure_dev_ca(&files, T0).unwrap();
    let ca = Arc::new(Ca::load(&files.ca_chain, &files.ca_key).unwrap());
    let store = Store::open(&database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    let clock = FakeClock::at(T0);
    let org = store
        .create_organisation("Org", &["example.org".into(), "example.net".into()], T0)
        .await
        .unwrap();
    let eng = store
        .create_department(org.id, "Engineering")
        .await
        .unwrap();
    let sales = store.create_department(org.id, "Sales").await.unwrap();
    let person =
        |email: &str, first: &str, last: &str, dept: Option<i64>, secret: &str| NewPerson {
            organisation_id: org.id,
            department_id: dept,
            email: EmailAddress::parse(email).unwrap(),
            first_name: first.into(),
            middle_name: String::new(),
            last_name: last.into(),
            secret_id_hash: Some(hash_secret(&Secret::new(secret))),
        };
    store
        .create_person(
            person(
                "alice@example.org",
                "Alice",
                "Smith",
                Some(eng.id),
                "alice-secret",
            ),
            T0,
        )
        .await
        .unwrap();
    store
        .create_person(
            person(
                "bob@example.org",
                "Bob",
                "Jones",
                Some(sales.id),
                "bob-secret",
            ),
            T0,
        )
        .await
        .unwrap();
    // A person record whose address is outside the organisation's domains.
    store
        .create_person(
            person("carol@elsewhere.com", "Carol", "Out", None, "carol-secret"),
            T0,
        )
        .await
        .unwrap();
    let all = vec![KeyType::EcP256, KeyType::Rsa { bits: 2048 }];
    let person_profile = store
        .create_profile(NewProfile {
            name: "person".into(),
            subject_source: SubjectSource::Person,
            key_types: all.clone(),
            default_key_type: KeyType::EcP256,
            terms_years: vec![1, 2],
            default_term_years: 2,
            requires_approval: false,
            smime: None,
        })
        .await
        .unwrap();
    let device_profile = store
        .create_profile(NewProfile {
            name: "device".into(),
            subject_source: SubjectSource::Device,
            key_types: vec![KeyType::EcP256],
            default_key_type: KeyType::EcP256,
            terms_years: vec![1],
            default_term_years: 1,
            requires_approval: false,
            smime: None,
        })
        .await
        .unwrap();
    let ep = store
        .create_endpoint(NewEndpoint {
            organisation_id: org.id,
            name: "Main".into(),
            uri_extension: generate_secret(20).expose().into(),
            auth_types: vec![],
            help_link_text: String::new(),
            help_link_target: String::new(),
            help_text: String::new(),
            eula_text: String::new(),
        })
        .await
        .unwrap();
    let account = |label: &str,
                   authz: Authorization,
                   dept: Option<i64>,
                   code: Option<&str>,
                   profile: i64,
                   default: bool| NewAccount {
        endpoint_id: ep.id,
        organisation_id: org.id,
        department_id: dept,
        name: label.into(),
        csr_method: crate::domain::CsrMethod::Both,
        allow_empty_pkcs12_password: false,
        authorization: authz,
        access_code_hash: code.map(|c| hash_secret(&Secret::new(c))),
        est_label: Some(label.into()),
        is_default: default,
        pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
        bind_device_names: false,
        profile_ids: vec![profile],
    };
    store
        .create_account(account(
            "staff",
            Authorization::None,
            None,
            None,
            person_profile.id,
            true,
        ))
        .await
        .unwrap();
    store
        .create_account(account(
            "eng",
            Authorization::None,
            Some(eng.id),
            None,
            person_profile.id,
            false,
        ))
        .await
        .unwrap();
    store
        .create_account(account(
            "devices",
            Authorization::AccessCode,
            None,
            Some("device-code"),
            device_profile.id,
            false,
        ))
        .await
        .unwrap();
    store
        .create_account(account(
            "guests",
            Authorization::AccessCode,
            None,
            Some("guest-code"),
            person_profile.id,
            false,
        ))
        .await
        .unwrap();
    World {
        ra: Ra::new(store.clone(), ca, clock.clone()),
        clock,
        store,
        alice_secret: "alice-secret",
        device_code: "device-code",
        _dir: dir,
    }
}

fn csr_with(key: &KeyPair, cn: &str, dns: &[&str]) -> Vec<u8> {
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serialize_request(key).unwrap().der().to_vec()
}

fn ec_csr(cn: &str, dns: &[&str]) -> Vec<u8> {
    csr_with(
        &KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        cn,
        dns,
    )
}

fn creds(user: &str, pass: &str) -> Option<Credentials> {
    Some(Credentials {
        username: user.into(),
        password: Secret::new(pass),
    })
}

impl World {
    async fn account(&self, label: &str) -> Account {
        self.ra.account_for_label(Some(label)).await.unwrap()
    }

    async fn enroll(
        &self,
        label: &str,
        user: &str,
        pass: &str,
        csr: &[u8],
    ) -> Result<Issued, Error> {
        self.ra
            .enroll(
                self.account(label).await,
                creds(user, pass),
                csr,
                "127.0.0.1:1",
            )
            .await
    }

    async fn orders(&self) -> u64 {
        self.store.count_orders().await.unwrap()
    }
}

fn kind(r: Result<Issued, Error>) -> ErrorKind {
    r.expect_err("expected a refusal").kind
}

#[tokio::test]
async fn person_certificate_comes_from_the_person_record() {
    let w = world().await;
    let issued = w
        .enroll(
            "staff",
            "Alice@Example.org",
            w.alice_secret,
            &ec_csr("ignored", &["evil.com"]),
        )
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&issued.der).unwrap();
    let subject = cert.subject().to_string();
    assert!(subject.contains("CN=Alice Smith"), "{subject}");
    assert!(subject.contains("O=Org"), "{subject}");
    assert!(subject.contains("OU=Engineering"), "{subject}");
    assert!(!subject.contains("ignored"));
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, vec!["RFC822Name(alice@example.org)".to_string()]);
    // Profile default term is 2 years.
    assert_eq!(cert.validity().not_before.timestamp(), T0);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        crate::ca::add_years(T0, 2)
    );
    assert_eq!(
        cert.tbs_certificate
            .raw_serial_as_string()
            .replace(':', "")
            .to_uppercase(),
        issued.serial
    );
    // Recorded: one issued order, the certificate row, intent + issued audit events.
    let rec = w
        .store
        .certificate_by_sha256(&sha256_hex(&issued.der))
        .await
        .unwrap()
        .unwrap();
    let order = w.store.order(rec.order_id).await.unwrap();
    assert_eq!(order.status, crate::domain::OrderStatus::Issued);
    assert_eq!(order.requester, "alice@example.org");
    let actions: Vec<String> = w
        .store
        .audit_events(&crate::store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, vec!["enroll.issued"]);
}

#[tokio::test]
async fn refusals_change_nothing() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    let acc = w.account("staff").await;
    let none = w.ra.enroll(acc, None, &csr, "t").await;
    assert_eq!(kind(none), ErrorKind::Unauthorized);
    assert_eq!(
        kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(w.enroll("staff", "nobody@example.org", "x", &csr).await),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(w.enroll("staff", "not-an-email", "x", &csr).await),
        ErrorKind::Unauthorized
    );
    // Department mismatch: bob is in Sales, the account is limited to Engineering.
    assert_eq!(
        kind(w.enroll("eng", "bob@example.org", "bob-secret", &csr).await),
        ErrorKind::Forbidden
    );
    // Email domain outside the organisation's verified domains.
    assert_eq!(
        kind(
            w.enroll("staff", "carol@elsewhere.com", "carol-secret", &csr)
                .await
        ),
        ErrorKind::Forbidden
    );
    // Key type not allowed by the device profile (EC P-256 only).
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let r = w
        .enroll(
            "devices",
            "d1",
            w.device_code,
            &csr_with(&rsa, "d1.example.org", &["d1.example.org"]),
        )
        .await;
    assert_eq!(kind(r), ErrorKind::BadCsr);
    // Bad signature.
    let mut bad = ec_csr("x", &[]);
    let n = bad.len();
    bad[n - 3] ^= 0x01;
    assert_eq!(
        kind(
            w.enroll("staff", "alice@example.org", w.alice_secret, &bad)
                .await
        ),
        ErrorKind::BadCsr
    );
    // Garbage DER.
    assert_eq!(
        kind(
            w.enroll("staff", "alice@example.org", w.alice_secret, b"\x30\x03abc")
                .await
        ),
        ErrorKind::BadCsr
    );
    assert_eq!(w.orders().await, 0);
    assert!(w.store.certificates().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_label_and_default_account() {
    let w = world().await;
    assert_eq!(
        w.ra.account_for_label(Some("nosuch"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        w.ra.account_for_label(None)
            .await
            .unwrap()
            .est_label
            .as_deref(),
        Some("staff")
    );
}

#[tokio::test]
async fn devices_enroll_with_access_code_for_names_the_organisation_owns() {
    let w = world().await;
    let issued = w
        .enroll(
            "devices",
            "sensor-1",
            w.device_code,
            &ec_csr(
                "Sensor-1.example.org",
                &["sensor-1.example.org", "alt.example.net"],
            ),
        )
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&issued.der).unwrap();
    assert!(cert
        .subject()
        .to_string()
        .contains("CN=sensor-1.example.org"));
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let dns: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        dns,
        vec!["DNSName(sensor-1.example.org)", "DNSName(alt.example.net)"]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.email_protection);

    assert_eq!(
        kind(
            w.enroll(
                "devices",
                "sensor-1",
                "wrong-code",
                &ec_csr("a.example.org", &[])
            )
            .await
        ),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(
            w.enroll(
                "devices",
                "sensor-1",
                w.device_code,
                &ec_csr("evil.example.com", &[])
            )
            .await
        ),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(
            w.enroll(
                "devices",
                "sensor-1",
                w.device_code,
                &ec_csr("ok.example.org", &["badexample.org"])
            )
            .await
        ),
        ErrorKind::Forbidden
    );
    let guest = w
        .enroll(
            "guests",
            "alice@example.org",
            "guest-code",
            &ec_csr("x", &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(guest.kind, ErrorKind::Forbidden);
    assert!(
        guest.message.contains("email confirmation"),
        "{}",
        guest.message
    );
    assert_eq!(w.orders().await, 1);
}

#[tokio::test]
async fn five_failures_lock_the_username_until_the_window_passes() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await),
            ErrorKind::Unauthorized
        );
        w.clock.advance(10);
    }
    // Locked: even the right secret is refused, with the time left in the window.
    match kind(
        w.enroll("staff", "alice@example.org", w.alice_secret, &csr)
            .await,
    ) {
        ErrorKind::RateLimited { retry_after } => {
            assert_eq!(retry_after, (WINDOW_SECS - 50) as u64)
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // Another username on the same account is not affected.
    w.enroll("staff", "bob@example.org", "bob-secret", &csr)
        .await
        .unwrap();
    w.clock.advance(WINDOW_SECS);
    w.enroll("staff", "alice@example.org", w.alice_secret, &csr)
        .await
        .unwrap();
}

#[tokio::test]
async fn reenroll_keeps_subject_and_needs_the_current_certificate() {
    let w = world().await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let first = w
        .enroll(
            "devices",
            "d",
            w.device_code,
            &csr_with(&key, "d1.example.org", &["d1.example.org"]),
        )
        .await
        .unwrap();
    let (_, old) = parse_x509_certificate(&first.der).unwrap();
    // A CSR with exactly the current subject (CN, O) and SAN.
    let new_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec!["d1.example.org".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "d1.example.org");
    p.distinguished_name.push(DnType::OrganizationName, "Org");
    let same = p.serialize_request(&new_key).unwrap().der().to_vec();
    let acc = w.account("devices").await;
    let renewed =
        w.ra.reenroll(acc.clone(), Some(&first.der), &same, "t")
            .await
            .unwrap();
    let (_, new) = parse_x509_certificate(&renewed.der).unwrap();
    assert_eq!(new.subject().as_raw(), old.subject().as_raw());
    assert_ne!(renewed.serial, first.serial);
    assert_eq!(
        new.public_key().raw,
        new_key.subject_public_key_info().as_slice()
    );

    // Refusals: no certificate, unknown certificate, other subject, other SAN, other account.
    assert_eq!(
        kind(w.ra.reenroll(acc.clone(), None, &same, "t").await),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(
            w.ra.reenroll(acc.clone(), Some(b"not ours"), &same, "t")
                .await
        ),
        ErrorKind::Unauthorized
    );
    let other_subject = csr_with(&new_key, "d2.example.org", &["d1.example.org"]);
    assert_eq!(
        kind(
            w.ra.reenroll(acc.clone(), Some(&first.der), &other_subject, "t")
                .await
        ),
        ErrorKind::Forbidden
    );
    let mut p2 = CertificateParams::new(vec!["d9.example.org".to_string()]).unwrap();
    p2.distinguished_name
        .push(DnType::CommonName, "d1.example.org");
    p2.distinguished_name.push(DnType::OrganizationName, "Org");
    p2.subject_alt_names
        .push(SanType::DnsName("d1.example.org".try_into().unwrap()));
    let other_san = p2.serialize_request(&new_key).unwrap().der().to_vec();
    assert_eq!(
        kind(
            w.ra.reenroll(acc.clone(), Some(&first.der), &other_san, "t")
                .await
        ),
        ErrorKind::Forbidden
    );
    let staff = w.account("staff").await;
    assert_eq!(
        kind(w.ra.reenroll(staff, Some(&first.der), &same, "t").await),
        ErrorKind::Forbidden
    );
    // Expired current certificate.
    w.clock.advance(2 * 366 * 86_400);
    assert_eq!(
        kind(w.ra.reenroll(acc, Some(&first.der), &same, "t").await),
        ErrorKind::Unauthorized
    );
    assert_eq!(w.orders().await, 2);
}

#[tokio::test]
async fn allowed_key_types_follow_the_profiles() {
    let w = world().await;
    let staff = w.account("staff").await;
    assert_eq!(
        w.ra.allowed_key_types(&staff).await.unwrap(),
        vec![KeyType::EcP256, KeyType::Rsa { bits: 2048 }]
    );
}

#[tokio::test]
async fn a_success_forgets_earlier_failures() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    for round in 0..2 {
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(
                kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await),
                ErrorKind::Unauthorized
            );
        }
        w.enroll("staff", "alice@example.org", w.alice_secret, &csr)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
    }
}

#[tokio::test]
async fn reenroll_accepts_the_same_subject_in_another_string_encoding() {
    // strongSwan writes PrintableString where rcgen wrote UTF8String (divergences.md).
    let w = world().await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let first = w
        .enroll(
            "devices",
            "d",
            w.device_code,
            &csr_with(&key, "d1.example.org", &["d1.example.org"]),
        )
        .await
        .unwrap();
    let printable = |s: &str| rcgen::DnValue::PrintableString(s.try_into().unwrap());
    let mut p = CertificateParams::new(vec!["d1.example.org".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, printable("D1.example.org"));
    p.distinguished_name
        .push(DnType::OrganizationName, printable("Org"));
    let csr = p.serialize_request(&key).unwrap().der().to_vec();
    let acc = w.account("devices").await;
    w.ra.reenroll(acc.clone(), Some(&first.der), &csr, "t")
        .await
        .unwrap();
    // Same values in another order is another name.
    let mut q = CertificateParams::new(vec!["d1.example.org".to_string()]).unwrap();
    q.distinguished_name = rcgen::DistinguishedName::new();
    q.distinguished_name
        .push(DnType::OrganizationName, printable("Org"));
    q.distinguished_name
        .push(DnType::CommonName, printable("d1.example.org"));
    let swapped = q.serialize_request(&key).unwrap().der().to_vec();
    assert_eq!(
        kind(w.ra.reenroll(acc, Some(&first.der), &swapped, "t").await),
        ErrorKind::Forbidden
    );
}

#[tokio::test]
async fn respelling_the_username_does_not_reset_the_count() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    for user in [
        "alice@example.org",
        "ALICE@example.org",
        " Alice@Example.Org",
        "alice@EXAMPLE.org",
        "aLiCe@example.org",
    ] {
        assert_eq!(
            kind(w.enroll("staff", user, "wrong", &csr).await),
            ErrorKind::Unauthorized
        );
    }
    assert!(matches!(
        kind(
            w.enroll("staff", "Alice@Example.ORG", w.alice_secret, &csr)
                .await
        ),
        ErrorKind::RateLimited { .. }
    ));
}

#[tokio::test]
async fn access_code_guesses_are_limited_per_address_whatever_the_device_name() {
    let w = world().await;
    let csr = ec_csr("d.example.org", &[]);
    let acc = w.account("devices").await;
    for i in 0..MAX_FAILURES_PER_ADDRESS {
        let r =
            w.ra.enroll(
                acc.clone(),
                creds(&format!("dev{i}"), "guess"),
                &csr,
                "192.0.2.9:4000",
            )
            .await;
        assert_eq!(kind(r), ErrorKind::Unauthorized, "attempt {i}");
    }
    let r =
        w.ra.enroll(
            acc.clone(),
            creds("dev-new", w.device_code),
            &csr,
            "192.0.2.9:4001",
        )
        .await;
    assert!(matches!(kind(r), ErrorKind::RateLimited { .. }));
    // Another address is not affected.
    w.ra.enroll(
        acc,
        creds("dev-new", w.device_code),
        &csr,
        "192.0.2.10:4000",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn csr_generation_method_decides_between_enroll_and_serverkeygen() {
    let w = world().await;
    let staff = w.account("staff").await;
    let csr = ec_csr("x", &[]);
    for (method, client_ok, server_ok) in [
        (crate::domain::CsrMethod::Client, true, false),
        (crate::domain::CsrMethod::Server, false, true),
    ] {
        let label = format!("only-{method}");
        let account = w
            .store
            .create_account(NewAccount {
                endpoint_id: staff.endpoint_id,
                organisation_id: staff.organisation_id,
                department_id: None,
                name: label.clone(),
                csr_method: method,
                allow_empty_pkcs12_password: false,
                authorization: Authorization::None,
                access_code_hash: None,
                est_label: Some(label.clone()),
                is_default: false,
                pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
                bind_device_names: false,
                profile_ids: staff.profile_ids.clone(),
            })
            .await
            .unwrap();
        let c = || creds("alice@example.org", w.alice_secret);
        let client = w.ra.enroll(account.clone(), c(), &csr, "t").await;
        let server =
            w.ra.enroll_with_server_key(account.clone(), c(), &csr, "t")
                .await;
        assert_eq!(client.is_ok(), client_ok, "{method}: {client:?}");
        assert_eq!(server.is_ok(), server_ok, "{method}");
        if !client_ok {
            assert_eq!(client.unwrap_err().kind, ErrorKind::Forbidden);
        }
        if !server_ok {
            assert_eq!(server.unwrap_err().kind, ErrorKind::Forbidden);
        }
    }
}

/// The audit events with `action`: (actor, object, detail, organisation).
async fn refusal_events(w: &World, action: &str) -> Vec<(String, String, String, Option<Id>)> {
    w.store
        .audit_events(&crate::store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| (e.actor, e.object, e.detail, e.organisation_id))
        .collect()
}

#[tokio::test]
async fn policy_refusals_of_authenticated_requests_are_audited_and_repeats_coalesce() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    let eng = w.account("eng").await;
    // Bob proves his secret, but the account is limited to another department.
    for _ in 0..3 {
        assert_eq!(
            kind(w.enroll("eng", "bob@example.org", "bob-secret", &csr).await),
            ErrorKind::Forbidden
        );
    }
    let events = refusal_events(&w, "enroll.refused").await;
    assert_eq!(
        events.len(),
        1,
        "repeats within a minute coalesce: {events:?}"
    );
    let (actor, object, detail, org) = &events[0];
    assert_eq!(actor, "bob@example.org");
    assert_eq!(object, &format!("account {}", eng.id));
    assert!(detail.contains("department"), "{detail}");
    assert_eq!(*org, Some(eng.organisation_id));
    // After the window the next one is written, counting the two skipped.
    w.clock.advance(refusals::COALESCE_SECS);
    kind(w.enroll("eng", "bob@example.org", "bob-secret", &csr).await);
    let events = refusal_events(&w, "enroll.refused").await;
    assert_eq!(events.len(), 2);
    assert!(
        events[1].2.contains("and 2 more like it"),
        "{}",
        events[1].2
    );
    // A CSR refused after authentication is a refusal too; a wrong secret is not (it is
    // counted by the throttle, and audited only when it locks).
    let mut bad = ec_csr("x", &[]);
    let n = bad.len();
    bad[n - 3] ^= 0x01;
    kind(
        w.enroll("staff", "alice@example.org", w.alice_secret, &bad)
            .await,
    );
    kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await);
    let events = refusal_events(&w, "enroll.refused").await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].0, "alice@example.org");
    assert!(events[2].2.contains("signature"), "{}", events[2].2);
    assert!(refusal_events(&w, "auth.locked").await.is_empty());
    // Nothing was issued or ordered by any of it.
    assert_eq!(w.orders().await, 0);
}

#[tokio::test]
async fn a_lockout_is_audited_once() {
    let w = world().await;
    let csr = ec_csr("x", &[]);
    for i in 0..MAX_FAILURES {
        kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await);
        let locked = refusal_events(&w, "auth.locked").await;
        let want = usize::from(i + 1 == MAX_FAILURES);
        assert_eq!(locked.len(), want, "after {} failures: {locked:?}", i + 1);
    }
    // Refused while locked: no further event.
    for _ in 0..3 {
        assert!(matches!(
            kind(w.enroll("staff", "alice@example.org", "wrong", &csr).await),
            ErrorKind::RateLimited { .. }
        ));
    }
    let locked = refusal_events(&w, "auth.locked").await;
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].0, "secret-id:alice@example.org");
    assert!(locked[0].2.contains("5 failed attempts"), "{}", locked[0].2);
    // An access-code account's username key is placed in the account's organisation.
    let devices = w.account("devices").await;
    for _ in 0..MAX_FAILURES {
        kind(w.enroll("devices", "d9", "wrong", &csr).await);
    }
    let locked = refusal_events(&w, "auth.locked").await;
    assert_eq!(locked.len(), 2, "{locked:?}");
    assert_eq!(locked[1].0, "d9");
    assert_eq!(locked[1].1, format!("account {}", devices.id));
    assert_eq!(locked[1].3, Some(devices.organisation_id));
}

// ---- bounds on guessing (issue 10) ------------------------------------------------------

impl World {
    /// The same world with other limits on guessing.
    fn with_limits(mut self, change: impl FnOnce(&mut GuessLimits)) -> World {
        let mut limits = GuessLimits::default();
        change(&mut limits);
        self.ra = self.ra.clone().with_guess_limits(limits);
        self
    }

    async fn enroll_from(
        &self,
        label: &str,
        user: &str,
        pass: &str,
        source: &str,
    ) -> Result<Issued, Error> {
        let csr = ec_csr("d.example.org", &[]);
        self.ra
            .enroll(self.account(label).await, creds(user, pass), &csr, source)
            .await
    }

    /// Failures on record under one key.
    async fn failures(&self, key: &throttle::Key) -> u64 {
        self.store
            .recent_failures(key.scope, &key.name, 0)
            .await
            .unwrap()
            .0
    }
}

#[tokio::test]
async fn a_right_access_code_does_not_reset_the_count_of_wrong_ones() {
    // 19 wrong codes (each under a new device name, so only the address count can stop
    // them), then the right one, three times over: the right code once reset the address
    // count, which let 57 wrong codes through against a limit of 20.
    let w = world().await;
    let mut answers = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        for _ in 0..MAX_FAILURES_PER_ADDRESS - 1 {
            n += 1;
            let user = format!("dev{n}");
            let r = w
                .enroll_from("devices", &user, "guess", "192.0.2.9:1")
                .await;
            answers.push(r.err().map(|e| e.kind));
        }
        let right = w
            .enroll_from("devices", "dev-ok", w.device_code, "192.0.2.9:2")
            .await;
        answers.push(right.err().map(|e| e.kind));
    }
    let wrong = answers
        .iter()
        .filter(|k| **k == Some(ErrorKind::Unauthorized))
        .count() as u64;
    assert_eq!(wrong, MAX_FAILURES_PER_ADDRESS, "{answers:?}");
    // The first right code is issued (no error); from the 22nd request on, with the
    // twentieth wrong code behind them, everything is refused with 429.
    assert_eq!(answers[19], None, "the first right code");
    assert!(
        answers[21..]
            .iter()
            .all(|k| matches!(k, Some(ErrorKind::RateLimited { .. }))),
        "{answers:?}"
    );
    let account = w.account("devices").await;
    let address = throttle::Key::address(account.id, "192.0.2.9:1");
    assert_eq!(w.failures(&address).await, MAX_FAILURES_PER_ADDRESS);
}

#[tokio::test]
async fn a_right_secret_id_forgets_only_the_persons_own_count() {
    let w = world().await.with_limits(|l| l.failures_per_client = 13);
    let src = "198.51.100.4:1";
    for round in 0..3 {
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(
                kind(
                    w.enroll_from("staff", "alice@example.org", "wrong", src)
                        .await
                ),
                ErrorKind::Unauthorized
            );
        }
        // The person's own count is forgotten, so she is let in every time ...
        w.enroll_from("staff", "alice@example.org", w.alice_secret, src)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
    }
    assert_eq!(
        w.failures(&throttle::Key::secret_id("alice@example.org"))
            .await,
        0
    );
    // ... but the address keeps all twelve failures: one more, and it is refused, right
    // secret or not.
    let client = throttle::Key::client(&w.ra.guess_limits, src);
    assert_eq!(w.failures(&client).await, 12);
    assert_eq!(
        kind(
            w.enroll_from("staff", "alice@example.org", "wrong", src)
                .await
        ),
        ErrorKind::Unauthorized
    );
    let e = w
        .enroll_from("staff", "bob@example.org", "bob-secret", src)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e:?}");
    assert!(
        e.message.contains("from your network address"),
        "{}",
        e.message
    );
    // The account-wide count kept them too.
    let staff = w.account("staff").await;
    let everybody = throttle::Key::account(&w.ra.guess_limits, staff.id);
    assert_eq!(w.failures(&everybody).await, 13);
}

#[tokio::test]
async fn random_usernames_from_one_address_stop_being_recorded_at_the_client_limit() {
    // On an account with authorization `none` every username is its own key; the client
    // address's count ends the burst, and once it is reached nothing more is written.
    let w = world().await.with_limits(|l| l.failures_per_client = 10);
    let src = "[2001:db8:7:7::1]:5000";
    let mut answers = Vec::new();
    for i in 0..40 {
        // Each from another address of the same /64, as a client may choose them.
        let from = format!("[2001:db8:7:7::{:x}]:5000", i + 1);
        let user = format!("{}@example.org", generate_secret(12).expose());
        answers.push(kind(w.enroll_from("staff", &user, "guess", &from).await));
    }
    let wrong = answers
        .iter()
        .filter(|k| **k == ErrorKind::Unauthorized)
        .count();
    assert_eq!(wrong, 10, "{answers:?}");
    assert!(answers[10..]
        .iter()
        .all(|k| matches!(k, ErrorKind::RateLimited { .. })));
    let staff = w.account("staff").await;
    let limits = w.ra.guess_limits;
    assert_eq!(w.failures(&throttle::Key::client(&limits, src)).await, 10);
    // Every recorded failure is also in the account's count: ten, not forty.
    assert_eq!(
        w.failures(&throttle::Key::account(&limits, staff.id)).await,
        10
    );
    let locked = refusal_events(&w, "auth.locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0].0, "client:2001:db8:7:7::/64");
    // Another /64 is another client.
    w.enroll_from(
        "staff",
        "alice@example.org",
        w.alice_secret,
        "[2001:db8:7:8::1]:5000",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_account_is_locked_for_everybody_after_its_cap() {
    let w = world().await.with_limits(|l| l.failures_per_account = 8);
    let devices = w.account("devices").await;
    // Eight wrong codes, each from another address under another device name.
    for i in 0..8 {
        let r = w
            .enroll_from(
                "devices",
                &format!("dev{i}"),
                "guess",
                &format!("203.0.113.{i}:1"),
            )
            .await;
        assert_eq!(kind(r), ErrorKind::Unauthorized, "attempt {i}");
    }
    // A fresh address and name with the right code: locked, and told so.
    let e = w
        .enroll_from("devices", "fresh", w.device_code, "203.0.113.99:1")
        .await
        .unwrap_err();
    let ErrorKind::RateLimited { retry_after } = e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(retry_after, WINDOW_SECS as u64);
    assert_eq!(
        e.message,
        format!(
            "this account is temporarily locked for everybody after too many failed \
             attempts; try again in {retry_after} seconds"
        )
    );
    // The lockout is audited once, in the account's organisation.
    let locked = refusal_events(&w, "auth.locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0].0, "everybody:account");
    assert_eq!(locked[0].1, format!("account {}", devices.id));
    assert_eq!(locked[0].3, Some(devices.organisation_id));
    // Another account is not affected; the account opens again once the window passes.
    w.enroll_from(
        "staff",
        "alice@example.org",
        w.alice_secret,
        "203.0.113.99:1",
    )
    .await
    .unwrap();
    w.clock.advance(WINDOW_SECS);
    w.enroll_from("devices", "fresh", w.device_code, "203.0.113.99:1")
        .await
        .unwrap();
}

#[tokio::test]
async fn beyond_the_verification_slots_a_guess_is_answered_503_and_not_counted() {
    let w = world().await.with_limits(|l| {
        l.argon2_concurrency = 1;
        l.argon2_queue = 0;
    });
    let src = "192.0.2.77:1";
    // Alice's secret is verified once, so it is known for a few minutes.
    w.enroll_from("staff", "alice@example.org", w.alice_secret, src)
        .await
        .unwrap();
    // Every slot taken (as by a verification running) and no queue: refused at once.
    let held = w.ra.verifications.slot().await.unwrap();
    for user in ["bob@example.org", "nobody@example.org"] {
        let e = w
            .enroll_from("staff", user, "wrong", src)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable { retry_after: 1 }, "{e:?}");
    }
    let limits = w.ra.guess_limits;
    let staff = w.account("staff").await;
    assert_eq!(w.failures(&throttle::Key::client(&limits, src)).await, 0);
    assert_eq!(
        w.failures(&throttle::Key::secret_id("bob@example.org"))
            .await,
        0
    );
    assert_eq!(
        w.failures(&throttle::Key::account(&limits, staff.id)).await,
        0
    );
    // A secret verified moments ago needs no slot.
    w.enroll_from("staff", "alice@example.org", w.alice_secret, src)
        .await
        .unwrap();
    // With the slot free again, a wrong guess is verified and counted.
    drop(held);
    assert_eq!(
        kind(
            w.enroll_from("staff", "bob@example.org", "wrong", src)
                .await
        ),
        ErrorKind::Unauthorized
    );
    assert_eq!(w.failures(&throttle::Key::client(&limits, src)).await, 1);
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/protocol/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn dns_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_device_csr_naming_a_foreign_name_is_refused_naming_each_one() {
    let w = world().await;
    // CN=printer.example.org plus a second CN=printer.evil.test (made by openssl).
    let e = w
        .enroll(
            "devices",
            "printer",
            w.device_code,
            &vector("csr-two-cns.der"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message
            .contains("printer.evil.test (not within a verified domain of Org)")
            && !e.message.contains("printer.example.org"),
        "{}",
        e.message
    );
    // IP and URI subjectAltNames are named too, not dropped.
    let e = w
        .enroll(
            "devices",
            "printer",
            w.device_code,
            &vector("csr-ip-uri-san.der"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message.contains("IP address 10.0.0.1") && e.message.contains("URI https://evil.test/"),
        "{}",
        e.message
    );
    // Every failing name at once, and an email SAN on a device is one of them.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec![
        "ok.example.org".to_string(),
        "a.evil.test".to_string(),
        "b.evil.test".to_string(),
    ])
    .unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "ok.example.org");
    p.subject_alt_names
        .push(SanType::Rfc822Name("x@example.org".try_into().unwrap()));
    let csr = p.serialize_request(&key).unwrap().der().to_vec();
    let e = w
        .enroll("devices", "printer", w.device_code, &csr)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    for name in ["a.evil.test", "b.evil.test", "email x@example.org"] {
        assert!(e.message.contains(name), "{name}: {}", e.message);
    }
    assert_eq!(w.orders().await, 0);

    // Names that pass are all certified: a CN outside the dNSNames joins them.
    let issued = w
        .enroll(
            "devices",
            "printer",
            w.device_code,
            &ec_csr("Main.example.org", &["alt.example.net"]),
        )
        .await
        .unwrap();
    assert_eq!(
        dns_sans(&issued.der),
        vec!["alt.example.net", "main.example.org"]
    );
}

/// An access-code device account with `bind_device_names`, on the world's device profile.
async fn bound_account(w: &World) -> Account {
    let devices = w.account("devices").await;
    w.store
        .create_account(NewAccount {
            endpoint_id: devices.endpoint_id,
            organisation_id: devices.organisation_id,
            department_id: None,
            name: "bound".into(),
            csr_method: crate::domain::CsrMethod::Both,
            allow_empty_pkcs12_password: false,
            authorization: Authorization::AccessCode,
            access_code_hash: Some(hash_secret(&Secret::new("bound-code"))),
            est_label: Some("bound".into()),
            is_default: false,
            pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
            bind_device_names: true,
            profile_ids: devices.profile_ids.clone(),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn bound_device_accounts_certify_only_the_username() {
    let w = world().await;
    let bound = bound_account(&w).await;
    assert!(bound.bind_device_names);
    let enroll = |user: &'static str, csr: Vec<u8>| {
        let ra = w.ra.clone();
        let bound = bound.clone();
        async move {
            ra.enroll(bound, creds(user, "bound-code"), &csr, "127.0.0.1:1")
                .await
        }
    };
    // Case aside, the username is the name.
    let first = enroll(
        "Cam-1.Example.org",
        ec_csr("cam-1.example.org", &["CAM-1.example.org"]),
    )
    .await
    .unwrap();
    assert_eq!(dns_sans(&first.der), vec!["cam-1.example.org"]);
    // Another device's name, or one more name, is refused naming the intruder.
    let e = enroll("cam-1.example.org", ec_csr("cam-2.example.org", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message
            .contains("only name cam-1.example.org, not cam-2.example.org"),
        "{}",
        e.message
    );
    let e = enroll(
        "cam-1.example.org",
        ec_csr(
            "cam-1.example.org",
            &["cam-1.example.org", "door.example.org"],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("not door.example.org"), "{}", e.message);
    // serverkeygen names the subject through its CSR just the same.
    let e =
        w.ra.enroll_with_server_key(
            bound.clone(),
            creds("cam-1.example.org", "bound-code"),
            &ec_csr("cam-9.example.org", &[]),
            "127.0.0.1:1",
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(w.orders().await, 1);
    // The unbound account keeps letting the code holder name any host it owns.
    w.enroll(
        "devices",
        "cam-1.example.org",
        w.device_code,
        &ec_csr("cam-2.example.org", &[]),
    )
    .await
    .unwrap();
    // Re-enrollment keeps the names, which are the username it was first issued to.
    let (_, cert) = parse_x509_certificate(&first.der).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for a in cert.subject().iter_attributes() {
        let t = a.attr_type().to_id_string();
        let v = a.as_str().unwrap().to_string();
        match t.as_str() {
            "2.5.4.3" => p.distinguished_name.push(DnType::CommonName, v),
            "2.5.4.10" => p.distinguished_name.push(DnType::OrganizationName, v),
            _ => {}
        }
    }
    let renewal = p.serialize_request(&key).unwrap().der().to_vec();
    w.ra.reenroll(bound, Some(&first.der), &renewal, "127.0.0.1:1")
        .await
        .unwrap();
}

#[tokio::test]
async fn csrattrs_advertises_exactly_what_enrollment_accepts() {
    let w = world().await;
    let devices = w.account("devices").await;
    let ec = w
        .store
        .create_profile(NewProfile {
            name: "ec devices".into(),
            subject_source: SubjectSource::Device,
            key_types: vec![KeyType::EcP256, KeyType::EcP384],
            default_key_type: KeyType::EcP256,
            terms_years: vec![1],
            default_term_years: 1,
            requires_approval: false,
            smime: None,
        })
        .await
        .unwrap();
    let rsa = w
        .store
        .create_profile(NewProfile {
            name: "rsa devices".into(),
            subject_source: SubjectSource::Device,
            key_types: vec![KeyType::Rsa { bits: 2048 }],
            default_key_type: KeyType::Rsa { bits: 2048 },
            terms_years: vec![1],
            default_term_years: 1,
            requires_approval: false,
            smime: None,
        })
        .await
        .unwrap();
    let mixed = w
        .store
        .create_account(NewAccount {
            endpoint_id: devices.endpoint_id,
            organisation_id: devices.organisation_id,
            department_id: None,
            name: "mixed".into(),
            csr_method: crate::domain::CsrMethod::Both,
            allow_empty_pkcs12_password: false,
            authorization: Authorization::AccessCode,
            access_code_hash: Some(hash_secret(&Secret::new("mixed-code"))),
            est_label: Some("mixed".into()),
            is_default: false,
            pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
            bind_device_names: false,
            profile_ids: vec![ec.id, rsa.id],
        })
        .await
        .unwrap();
    let advertised = w.ra.allowed_key_types(&mixed).await.unwrap();
    assert_eq!(advertised, vec![KeyType::EcP256, KeyType::EcP384]);
    for (k, alg) in [
        (KeyType::EcP256, &rcgen::PKCS_ECDSA_P256_SHA256),
        (KeyType::EcP384, &rcgen::PKCS_ECDSA_P384_SHA384),
    ] {
        let csr = csr_with(&KeyPair::generate_for(alg).unwrap(), "m.example.org", &[]);
        let issued = w.enroll("mixed", "m", "mixed-code", &csr).await.unwrap();
        let (_, cert) = parse_x509_certificate(&issued.der).unwrap();
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1",
            "{k}"
        );
    }
    // The second profile's RSA is not advertised, and not accepted either.
    let rsa_key =
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let e = w
        .enroll(
            "mixed",
            "m",
            "mixed-code",
            &csr_with(&rsa_key, "m.example.org", &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadCsr);
    assert!(!advertised.contains(&KeyType::Rsa { bits: 2048 }));
}

#[tokio::test]
async fn csr_faults_are_named_before_the_signature_is_checked() {
    let w = world().await;
    let e = w
        .enroll(
            "staff",
            "alice@example.org",
            w.alice_secret,
            &vector("csr-rsa-1024.der"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadCsr);
    assert!(
        e.message.contains("RSA keys need at least 2048 bits"),
        "{}",
        e.message
    );
    let e = w
        .enroll(
            "staff",
            "alice@example.org",
            w.alice_secret,
            &vector("csr-rsa-sha1.der"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadCsr);
    assert!(e.message.contains("signed with SHA-1"), "{}", e.message);
    assert_eq!(w.orders().await, 0);
    // An RSA-PSS request (openssl, salt of 32 bytes) is issued.
    let issued = w
        .enroll(
            "staff",
            "alice@example.org",
            w.alice_secret,
            &vector("csr-rsa-pss-sha256.der"),
        )
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&issued.der).unwrap();
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1"
    );
}

#[tokio::test]
async fn no_certificate_outlives_the_issuing_ca() {
    let w = world().await;
    let ca_end = w.ra.ca.not_after();
    // 200 days before the CA ends, a one-year device term no longer fits.
    w.clock.advance(ca_end - T0 - 200 * 86_400);
    let e = w
        .enroll(
            "devices",
            "sensor",
            w.device_code,
            &ec_csr("sensor.example.org", &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message.contains(&format!(
            "the issuing CA expires on {}",
            crate::ca::date(ca_end)
        )),
        "{}",
        e.message
    );
    assert_eq!(w.orders().await, 0);
    // Nor may a profile offer such a term from now on.
    let caller = crate::ra::admin::Caller::operator("test");
    let request = |terms: Vec<u32>| crate::ra::admin::ProfileRequest {
        name: "late".into(),
        subject_source: SubjectSource::Device,
        key_types: vec![KeyType::EcP256],
        default_key_type: None,
        terms_years: terms,
        default_term_years: None,
        requires_approval: false,
        smime: None,
    };
    let e =
        w.ra.add_profile(&caller, request(vec![1]))
            .await
            .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("terms_years[0]"));
    assert!(
        e.message.contains("no whole-year term fits"),
        "{}",
        e.message
    );
    // A year and a half before the end, a 3-year term is refused with the one that fits.
    w.clock.advance(200 * 86_400 - 548 * 86_400);
    let e =
        w.ra.add_profile(&caller, request(vec![1, 3]))
            .await
            .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("terms_years[1]"));
    assert!(
        e.message.contains("offer terms of up to 1 year"),
        "{}",
        e.message
    );
    w.ra.add_profile(&caller, request(vec![1])).await.unwrap();
    let devices = w.account("devices").await;
    let id = devices.profile_ids[0];
    let e =
        w.ra.edit_profile(
            &caller,
            id,
            None,
            crate::ra::admin::ProfileChanges {
                terms_years: Some(vec![3]),
                default_term_years: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("terms_years[0]"));
}

/// An issuance of a new order on `account`, its certificate a stand-in (the store does not
/// parse it): what `issue_on` hands the group commit.
fn issuance(account: &Account, serial: &str) -> Issuance {
    Issuance {
        order: OrderOf::New(SigningIntent {
            account_id: account.id,
            profile_id: account.profile_ids[0],
            person_id: None,
            requester: "printer".into(),
            key_type: KeyType::EcP256,
            term_years: 1,
            csr_sha256: sha256_hex(serial.as_bytes()),
            serial: serial.into(),
        }),
        cert: SignedCertificate {
            serial: serial.into(),
            subject: "CN=printer".into(),
            not_before: T0,
            not_after: T0 + 86_400,
            der: serial.as_bytes().to_vec(),
            sha256: sha256_hex(serial.as_bytes()),
        },
        audit: AuditEntry {
            action: "enroll.issued".into(),
            detail: format!("serial={serial}"),
            ..Default::default()
        },
        notices: Vec::new(),
        now: T0,
    }
}

/// Sends every issuance at once, each from its own task, and returns the answers in order.
async fn store_all(
    store: &Store,
    issuances: Vec<Issuance>,
) -> Vec<Result<crate::store::Stored, crate::store::StoreError>> {
    let tasks: Vec<_> = issuances
        .into_iter()
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.store_issuance(i).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn concurrent_issuances_share_commits_and_keep_the_audit_chain() {
    let w = world().await;
    let devices = w.account("devices").await;
    let before = w.store.count_orders().await.unwrap();
    let serials: Vec<String> = (0..40).map(|i| format!("0B{i:02X}")).collect();
    let answers = store_all(
        &w.store,
        serials.iter().map(|s| issuance(&devices, s)).collect(),
    )
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let stats = w.store.batch_stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(commits < 40, "40 issuances took {commits} commits");
    assert!(stats.largest.load(std::sync::atomic::Ordering::Relaxed) > 1);
    assert_eq!(w.store.count_orders().await.unwrap(), before + 40);
    for (s, a) in serials.iter().zip(&answers) {
        let stored = a.as_ref().unwrap();
        let order = w.store.order(stored.order_id).await.unwrap();
        assert_eq!(order.status, crate::domain::OrderStatus::Issued);
        assert_eq!(order.serial.as_deref(), Some(s.as_str()));
        let rec = w
            .store
            .certificate_by_sha256(&sha256_hex(s.as_bytes()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.id, stored.certificate_id);
    }
    let report = w.store.verify_audit_chain().await.unwrap();
    assert_eq!(report.first_break, None);
    let issued = w
        .store
        .audit_events(&crate::store::AuditFilter {
            action: Some("enroll.issued".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issued.len(), 40);
}

#[tokio::test]
async fn an_issuance_that_cannot_be_stored_fails_alone_in_its_batch() {
    let w = world().await;
    let devices = w.account("devices").await;
    let answers = store_all(
        &w.store,
        vec![
            issuance(&devices, "0C01"),
            issuance(&devices, "0C02"),
            // The same serial again: refused, and only it.
            issuance(&devices, "0C02"),
            issuance(&devices, "0C03"),
        ],
    )
    .await;
    assert!(answers[0].is_ok() && answers[1].is_ok() && answers[3].is_ok());
    assert!(
        matches!(answers[2], Err(crate::store::StoreError::Conflict(_))),
        "{:?}",
        answers[2]
    );
    let report = w.store.verify_audit_chain().await.unwrap();
    assert_eq!(report.first_break, None);
}

#[tokio::test]
async fn a_batch_whose_commit_fails_stores_none_and_says_ask_again() {
    use sea_orm::ConnectionTrait;
    let w = world().await;
    let devices = w.account("devices").await;
    let before = w.store.count_orders().await.unwrap();
    // Without the audit chain's head no event can be appended, so the transaction that
    // carries the batch fails as a whole.
    w.store
        .db()
        .execute_unprepared("DELETE FROM audit_head")
        .await
        .unwrap();
    let answers = store_all(
        &w.store,
        vec![issuance(&devices, "0D01"), issuance(&devices, "0D02")],
    )
    .await;
    for a in answers {
        let e: Error = a.unwrap_err().into();
        assert!(
            matches!(e.kind, ErrorKind::Unavailable { retry_after: 1 }),
            "{e:?}"
        );
    }
    assert_eq!(w.store.count_orders().await.unwrap(), before);
    assert!(w
        .store
        .certificate_by_sha256(&sha256_hex(b"0D01"))
        .await
        .unwrap()
        .is_none());
}
