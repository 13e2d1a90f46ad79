//! RA tests of the certificate lifecycle (lifecycle.rs): the approval gate on every issuing
//! path (EST enroll and serverkeygen, `cert issue`, the form), the administrators' decision
//! and its races, revocation, and the re-checks of re-enrollment — against a real database
//! (SQLite, or PostgreSQL when `ESTGATE_TEST_DATABASE_URL` is set) with a fake clock and the
//! dev CA. Every certificate issued here is read back with x509-parser, not our signer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, PublicKeyData};
use x509_parser::prelude::*;

use super::*;
use crate::ca::dev::{ensure_dev_ca, PkiFiles};
use crate::domain::{
    generate_secret, CertificateRecord, Decision, Endpoint, Id, KeyType, Order, OrderStatus,
    Revocation, RevocationReason, WebSession,
};
use crate::error::ErrorKind;
use crate::store::{NewAccount, NewEndpoint, NewPerson, NewProfile, OrderFilter};
use crate::testing::{database_url, FakeClock};

const T0: i64 = 1_790_000_000;
const SRC: &str = "192.0.2.1:40000";
const PW: &str = "correct horse";
const APPROVERS: [&str; 2] = ["approver1@example.org", "approver2@example.org"];

struct World {
    ra: Ra,
    clock: Arc<FakeClock>,
    store: Store,
    url: String,
    main: Endpoint,
    sales: Id,
    other_org: Id,
    _dir: tempfile::TempDir,
}

/// Organisation "Org" (example.org) with departments Engineering and Sales, persons alice
/// (Engineering) and bob (Sales), both with secret IDs; organisation "Other". Profiles
/// "person" (no approval) and "reviewed" (approval; EC or RSA, one or two years). Accounts
/// on `main` (sign-in by secret ID), all authorized by secret ID: "review" (reviewed),
/// "staff" (person), "eng" (person, Engineering only). Two approvers are configured.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let files = PkiFiles::in_dir(dir.path());
    ensure_dev_ca(&files, T0).unwrap();
    let ca = Arc::new(Ca::load(&files.ca_chain, &files.ca_key).unwrap());
    let url = database_url(dir.path()).await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let clock = FakeClock::at(T0);
    let org = store
        .create_organisation("Org", &["example.org".into()], T0)
        .await
        .unwrap();
    let other = store
        .create_organisation("Other", &["other.test".into()], T0)
        .await
        .unwrap();
    let eng = store
        .create_department(org.id, "Engineering")
        .await
        .unwrap();
    let sales = store.create_department(org.id, "Sales").await.unwrap();
    for (email, first, last, dept, secret) in [
        (
            "alice@example.org",
            "Alice",
            "Smith",
            eng.id,
            "alice-secret",
        ),
        ("bob@example.org", "Bob", "Jones", sales.id, "bob-secret"),
    ] {
        store
            .create_person(
                NewPerson {
                    organisation_id: org.id,
                    department_id: Some(dept),
                    email: EmailAddress::parse(email).unwrap(),
                    first_name: first.into(),
                    middle_name: String::new(),
                    last_name: last.into(),
                    secret_id_hash: Some(hash_secret(&Secret::new(secret))),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let profile = |name: &str, approval: bool| NewProfile {
        name: name.into(),
        subject_source: SubjectSource::Person,
        key_types: vec![KeyType::EcP256, KeyType::Rsa { bits: 2048 }],
        default_key_type: KeyType::EcP256,
        terms_years: vec![1, 2],
        default_term_years: 1,
        requires_approval: approval,
        smime: None,
    };
    let person = store
        .create_profile(profile("person", false))
        .await
        .unwrap();
    let reviewed = store
        .create_profile(profile("reviewed", true))
        .await
        .unwrap();
    let main = store
        .create_endpoint(NewEndpoint {
            organisation_id: org.id,
            name: "Main".into(),
            uri_extension: generate_secret(20).expose().into(),
            auth_types: vec![AuthType::SecretId],
            help_link_text: String::new(),
            help_link_target: String::new(),
            help_text: String::new(),
            eula_text: "Be nice.".into(),
        })
        .await
        .unwrap();
    for (name, dept, profile) in [
        ("review", None, reviewed.id),
        ("staff", None, person.id),
        ("eng", Some(eng.id), person.id),
    ] {
        store
            .create_account(NewAccount {
                endpoint_id: main.id,
                organisation_id: org.id,
                department_id: dept,
                name: name.into(),
                csr_method: crate::domain::CsrMethod::Both,
                allow_empty_pkcs12_password: false,
                authorization: Authorization::None,
                access_code_hash: None,
                est_label: Some(name.into()),
                is_default: false,
                pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
                bind_device_names: false,
                profile_ids: vec![profile],
            })
            .await
            .unwrap();
    }
    let approvers = APPROVERS
        .iter()
        .map(|a| EmailAddress::parse(a).unwrap())
        .collect();
    World {
        // These tests change rows in SQL, as another process would, and expect the next
        // request to see it: nothing is kept (the bound itself is tested in cache.rs).
        ra: Ra::new(store.clone(), ca, clock.clone())
            .with_approvers(approvers)
            .with_read_cache(std::time::Duration::ZERO),
        clock,
        store,
        url,
        main,
        sales: sales.id,
        other_org: other.id,
        _dir: dir,
    }
}

fn creds(user: &str) -> Option<Credentials> {
    let secret = match user {
        "alice@example.org" => "alice-secret",
        "bob@example.org" => "bob-secret",
        other => panic!("no secret ID for {other}"),
    };
    Some(Credentials {
        username: user.into(),
        password: Secret::new(secret),
    })
}

/// A CSR with a fresh P-256 key; the RA takes the subject from the person record.
fn ec_csr() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "ignored");
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    (key, der)
}

/// A CSR for re-enrollment: the current certificate's subject, a new key, no SAN.
fn renewal_csr(old_der: &[u8]) -> Vec<u8> {
    let (_, old) = parse_x509_certificate(old_der).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    for a in old.subject().iter_attributes() {
        let arcs: Vec<u64> = a.attr_type().iter().unwrap().collect();
        p.distinguished_name.push(
            DnType::from_oid(&arcs),
            DnValue::Utf8String(a.as_str().unwrap().into()),
        );
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    p.serialize_request(&key).unwrap().der().to_vec()
}

/// The serial as x509-parser reads it from the DER, in our upper-case hex.
fn parsed_serial(der: &[u8]) -> String {
    let (rest, cert) = parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty(), "trailing bytes after the certificate");
    cert.tbs_certificate
        .raw_serial_as_string()
        .replace(':', "")
        .to_uppercase()
}

fn refusal<T: std::fmt::Debug>(r: Result<T, Error>) -> Error {
    r.expect_err("expected a refusal")
}

fn pending() -> ErrorKind {
    ErrorKind::Pending {
        retry_after: APPROVAL_RETRY_AFTER_SECS,
    }
}

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        source: "cli".into(),
        ..Default::default()
    }
}

/// (kind, recipient, order, certificate) of one queued notice.
type Mail = (String, String, Option<Id>, Option<Id>);

fn mail(kind: &str, to: &str, order: Option<Id>, cert: Option<Id>) -> Mail {
    (kind.into(), to.into(), order, cert)
}

impl World {
    async fn account(&self, label: &str) -> Account {
        self.ra.account_for_label(Some(label)).await.unwrap()
    }

    async fn enroll(&self, label: &str, user: &str, csr: &[u8]) -> Result<Issued, Error> {
        let account = self.account(label).await;
        self.ra.enroll(account, creds(user), csr, SRC).await
    }

    async fn serverkeygen(
        &self,
        label: &str,
        user: &str,
        csr: &[u8],
    ) -> Result<ServerKeyIssued, Error> {
        let account = self.account(label).await;
        self.ra
            .enroll_with_server_key(account, creds(user), csr, SRC)
            .await
    }

    async fn orders(&self) -> Vec<Order> {
        self.store.orders(OrderFilter::All).await.unwrap()
    }

    async fn only_order(&self) -> Order {
        let mut all = self.orders().await;
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    async fn certificates(&self) -> Vec<CertificateRecord> {
        self.store.certificates().await.unwrap()
    }

    async fn certificate(&self, serial: &str) -> CertificateRecord {
        self.store
            .certificate_by_serial(serial)
            .await
            .unwrap()
            .unwrap()
    }

    /// The notices queued since the last call, in queue order (the mail worker's claim,
    /// then marked sent so that the next call sees only new ones).
    async fn mailed(&self) -> Vec<Mail> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for item in self.store.claim_outbox(now, 60, 100).await.unwrap() {
            self.store.outbox_sent(item.id, now).await.unwrap();
            out.push((
                item.kind,
                item.recipient,
                item.order_id,
                item.certificate_id,
            ));
        }
        out
    }

    /// Approvers' notices for one new order.
    fn approval_needed(order: Id) -> Vec<Mail> {
        APPROVERS
            .iter()
            .map(|a| mail("approval-needed", a, Some(order), None))
            .collect()
    }

    /// Raw SQL for changes no store verb makes (a person moved or deleted), on a
    /// connection of its own to the same database.
    async fn sql(&self, statements: &[&str]) {
        use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend};
        let mut opts = ConnectOptions::new(self.url.clone());
        // One connection, so that a session setting holds for the statements after it.
        opts.max_connections(1).min_connections(1);
        let db = Database::connect(opts).await.unwrap();
        // Orders keep their person's id: let the test remove the person all the same.
        let relax = match db.get_database_backend() {
            DatabaseBackend::Sqlite => "PRAGMA foreign_keys = OFF",
            _ => "SET session_replication_role = replica",
        };
        db.execute_unprepared(relax).await.unwrap();
        for s in statements {
            db.execute_unprepared(s).await.unwrap();
        }
        db.close().await.unwrap();
    }

    async fn person_id(&self, email: &str) -> Id {
        self.store
            .person_by_email(&EmailAddress::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// Signs `email` in with their secret ID and chooses the listed account `label`.
    async fn form_session(&self, email: &str, label: &str) -> WebSession {
        let secret = creds(email).unwrap().password;
        let cookie = self
            .ra
            .sign_in_with_secret_id(&self.main, email, &secret, SRC)
            .await
            .unwrap();
        let s = self
            .ra
            .web_session(&self.main, &cookie)
            .await
            .unwrap()
            .unwrap();
        let account = self.account(label).await;
        self.ra.choose_listed_account(&s, account.id).await.unwrap();
        self.ra
            .web_session(&self.main, &cookie)
            .await
            .unwrap()
            .unwrap()
    }
}

fn form_request(term: Option<u32>, key_type: Option<KeyType>) -> FormRequest {
    FormRequest {
        profile_id: None,
        term_years: term,
        key_type,
        first_name: "Alice".into(),
        middle_name: String::new(),
        last_name: "Smith".into(),
        password: Secret::new(PW),
        password_confirmation: Secret::new(PW),
        encryption: crate::domain::Pkcs12Encryption::Modern,
        csr_der: None,
        eula_accepted: true,
    }
}

/// The certificates in a PKCS#12 file, DER, as OpenSSL reads them with `password`.
fn openssl_pkcs12_certificates(file: &[u8], password: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("form.p12");
    std::fs::write(&path, file).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("pkcs12")
        .arg("-in")
        .arg(&path)
        .args(["-passin", &format!("pass:{password}"), "-nokeys"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    x509_parser::pem::Pem::iter_from_buffer(&out.stdout)
        .map(|b| b.unwrap().contents)
        .collect()
}

// ---- EST enroll with approval ----------------------------------------------------------

#[tokio::test]
async fn an_approved_csr_is_signed_at_once_and_the_same_csr_gets_the_same_certificate() {
    let w = world().await;
    let (key, csr) = ec_csr();
    let e = refusal(w.enroll("review", "alice@example.org", &csr).await);
    assert_eq!(e.kind, pending());
    assert!(e.message.contains("approval"), "{}", e.message);
    let order = w.only_order().await;
    assert_eq!(order.status, OrderStatus::PendingApproval);
    assert_eq!(order.csr_der.as_deref(), Some(csr.as_slice()));
    assert_eq!(order.csr_sha256, sha256_hex(&csr));
    assert_eq!(order.requester, "alice@example.org");
    assert_eq!(
        order.person_id,
        Some(w.person_id("alice@example.org").await)
    );
    assert_eq!((order.serial.clone(), order.decision.clone()), (None, None));
    assert!(w.certificates().await.is_empty());
    assert_eq!(w.mailed().await, World::approval_needed(order.id));

    // Asking again while it waits: the same answer, no second order, no new notice.
    let e = refusal(w.enroll("review", "alice@example.org", &csr).await);
    assert_eq!(e.kind, pending());
    assert_eq!(w.orders().await.len(), 1);
    assert!(w.mailed().await.is_empty());

    w.clock.advance(60);
    let approved =
        w.ra.approve(order.id, admin(), Some("checked by phone".into()))
            .await
            .unwrap();
    assert_eq!(approved.status, OrderStatus::Issued);
    assert_eq!(
        approved.decision,
        Some(Decision {
            by: "admin".into(),
            at: T0 + 60,
            reason: Some("checked by phone".into()),
        })
    );
    let certs = w.certificates().await;
    assert_eq!(certs.len(), 1);
    let cert = &certs[0];
    assert_eq!(cert.order_id, order.id);
    assert_eq!(approved.serial.as_deref(), Some(cert.serial.as_str()));
    assert_eq!(parsed_serial(&cert.der), cert.serial);
    let (_, parsed) = parse_x509_certificate(&cert.der).unwrap();
    assert!(
        parsed.subject().to_string().contains("CN=Alice Smith"),
        "{}",
        parsed.subject()
    );
    // The CSR kept with the order is what was signed: its key, not one of ours.
    assert_eq!(
        parsed.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert_eq!(parsed.validity().not_before.timestamp(), T0 + 60);
    assert_eq!(
        parsed.validity().not_after.timestamp(),
        crate::ca::add_years(T0 + 60, 1)
    );
    // The issue is announced (not the approval: the person has nothing to collect).
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "certificate-issued",
            "alice@example.org",
            Some(order.id),
            Some(cert.id)
        )]
    );

    // The client polls with the same CSR: the very same certificate, nothing new.
    let again = w.enroll("review", "alice@example.org", &csr).await.unwrap();
    assert_eq!(again.der, cert.der);
    assert_eq!(again.serial, cert.serial);
    assert_eq!(w.certificates().await.len(), 1);
    assert_eq!(w.orders().await.len(), 1);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn a_rejected_csr_is_refused_with_the_reason() {
    let w = world().await;
    let (_, csr) = ec_csr();
    assert_eq!(
        refusal(w.enroll("review", "bob@example.org", &csr).await).kind,
        pending()
    );
    let order = w.only_order().await;
    w.mailed().await;
    w.clock.advance(30);
    let rejected =
        w.ra.reject(order.id, admin(), Some("  not a staff member  ".into()))
            .await
            .unwrap();
    assert_eq!(rejected.status, OrderStatus::Rejected);
    assert_eq!(
        rejected.decision,
        Some(Decision {
            by: "admin".into(),
            at: T0 + 30,
            reason: Some("not a staff member".into()),
        })
    );
    assert_eq!(rejected.serial, None);
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "order-rejected",
            "bob@example.org",
            Some(order.id),
            None
        )]
    );

    let e = refusal(w.enroll("review", "bob@example.org", &csr).await);
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("not a staff member"), "{}", e.message);
    assert_eq!(w.orders().await.len(), 1);
    assert!(w.certificates().await.is_empty());
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn a_decision_reason_must_be_one_short_line_and_a_bad_one_decides_nothing() {
    let w = world().await;
    let (_, csr) = ec_csr();
    refusal(w.enroll("review", "alice@example.org", &csr).await);
    let order = w.only_order().await;
    w.mailed().await;
    for reason in ["two\nlines".to_string(), "x".repeat(501)] {
        let e = refusal(w.ra.reject(order.id, admin(), Some(reason)).await);
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("reason"), "{}", e.message);
    }
    let still = w.store.order(order.id).await.unwrap();
    assert_eq!(still.status, OrderStatus::PendingApproval);
    assert_eq!(still.decision, None);
    assert!(w.mailed().await.is_empty());
    // A blank reason is no reason; the person is told "no reason given".
    w.ra.reject(order.id, admin(), Some("   ".into()))
        .await
        .unwrap();
    let decided = w.store.order(order.id).await.unwrap();
    assert_eq!(decided.decision.unwrap().reason, None);
    let e = refusal(w.enroll("review", "alice@example.org", &csr).await);
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("no reason given"), "{}", e.message);
}

#[tokio::test]
async fn approvers_are_told_of_each_pending_order_once() {
    let w = world().await;
    let (_, a) = ec_csr();
    let (_, b) = ec_csr();
    refusal(w.enroll("review", "alice@example.org", &a).await);
    refusal(w.enroll("review", "bob@example.org", &b).await);
    refusal(w.enroll("review", "alice@example.org", &a).await);
    let orders = w.orders().await;
    assert_eq!(orders.len(), 2);
    let mut expected = World::approval_needed(orders[0].id);
    expected.extend(World::approval_needed(orders[1].id));
    assert_eq!(w.mailed().await, expected);
    // The pending listing names both, with their account and profile.
    let listed = w.ra.orders(true).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|v| (
                v.order.id,
                v.account.as_str(),
                v.profile.as_str(),
                v.serial.clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            (orders[0].id, "review", "reviewed", None),
            (orders[1].id, "review", "reviewed", None),
        ]
    );

    // Without approvers configured, nobody is mailed, and the order is still recorded.
    let quiet = w.ra.clone().with_approvers(Vec::new());
    let (_, c) = ec_csr();
    let account = w.account("review").await;
    let e = refusal(
        quiet
            .enroll(account, creds("bob@example.org"), &c, SRC)
            .await,
    );
    assert_eq!(e.kind, pending());
    assert_eq!(w.orders().await.len(), 3);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn a_profile_without_approval_issues_at_once() {
    let w = world().await;
    let (_, csr) = ec_csr();
    let issued = w.enroll("staff", "alice@example.org", &csr).await.unwrap();
    assert_eq!(parsed_serial(&issued.der), issued.serial);
    let order = w.only_order().await;
    assert_eq!(order.status, OrderStatus::Issued);
    assert_eq!((order.csr_der, order.decision), (None, None));
    assert!(w.mailed().await.is_empty());
}

// ---- decision races ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_of_one_order_sign_it_once() {
    let w = world().await;
    for round in 0..4 {
        let (_, csr) = ec_csr();
        refusal(w.enroll("review", "alice@example.org", &csr).await);
        let order = w.orders().await.pop().unwrap();
        let spawn = |name: &str| {
            let ra = w.ra.clone();
            let actor = Actor {
                name: name.into(),
                source: "cli".into(),
                ..Default::default()
            };
            tokio::spawn(async move { ra.approve(order.id, actor, None).await })
        };
        let (a, b) = (spawn("ann"), spawn("abe"));
        let results = [a.await.unwrap(), b.await.unwrap()];
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(lost.kind, ErrorKind::AlreadyUsed, "{lost:?}");
        assert!(lost.message.contains("already decided"), "{}", lost.message);
        let now = w.store.order(order.id).await.unwrap();
        assert_eq!(now.status, OrderStatus::Issued);
        assert_eq!(
            now.decision.as_ref().unwrap().by,
            won[0].decision.as_ref().unwrap().by
        );
        let certs: Vec<_> = w
            .certificates()
            .await
            .into_iter()
            .filter(|c| c.order_id == order.id)
            .collect();
        assert_eq!(certs.len(), 1, "round {round}");
        assert_eq!(parsed_serial(&certs[0].der), certs[0].serial);
        let issued_notices = w
            .mailed()
            .await
            .into_iter()
            .filter(|m| m.0 == "certificate-issued")
            .count();
        assert_eq!(issued_notices, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_at_once_have_one_winner() {
    let w = world().await;
    for round in 0..4 {
        let (_, csr) = ec_csr();
        refusal(w.enroll("review", "alice@example.org", &csr).await);
        let order = w.orders().await.pop().unwrap();
        let ra = w.ra.clone();
        let approve = tokio::spawn(async move { ra.approve(order.id, admin(), None).await });
        let ra = w.ra.clone();
        let reject =
            tokio::spawn(async move { ra.reject(order.id, admin(), Some("no".into())).await });
        let (approved, rejected) = (approve.await.unwrap(), reject.await.unwrap());
        let certs = w
            .certificates()
            .await
            .into_iter()
            .filter(|c| c.order_id == order.id)
            .count();
        let status = w.store.order(order.id).await.unwrap().status;
        match (&approved, &rejected) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.kind, ErrorKind::AlreadyUsed, "{e:?}");
                assert_eq!((status, certs), (OrderStatus::Issued, 1), "round {round}");
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.kind, ErrorKind::AlreadyUsed, "{e:?}");
                assert_eq!((status, certs), (OrderStatus::Rejected, 0), "round {round}");
            }
            other => panic!("round {round}: expected one winner, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_decided_order_cannot_be_decided_again() {
    let w = world().await;
    let (_, a) = ec_csr();
    let (_, b) = ec_csr();
    refusal(w.enroll("review", "alice@example.org", &a).await);
    refusal(w.enroll("review", "alice@example.org", &b).await);
    let orders = w.orders().await;
    w.ra.approve(orders[0].id, admin(), None).await.unwrap();
    w.ra.reject(orders[1].id, admin(), None).await.unwrap();
    w.mailed().await;
    let before = (w.orders().await.len(), w.certificates().await.len());
    let other = Actor {
        name: "other-admin".into(),
        source: "cli".into(),
        ..Default::default()
    };
    for (id, status) in [(orders[0].id, "issued"), (orders[1].id, "rejected")] {
        for approve in [true, false] {
            let r = if approve {
                w.ra.approve(id, other.clone(), None).await
            } else {
                w.ra.reject(id, other.clone(), None).await
            };
            let e = refusal(r);
            assert_eq!(e.kind, ErrorKind::AlreadyUsed);
            assert!(
                e.message.contains("by admin") && e.message.contains(status),
                "{}",
                e.message
            );
        }
        assert_eq!(
            w.store.order(id).await.unwrap().decision.unwrap().by,
            "admin"
        );
    }
    assert_eq!(
        (w.orders().await.len(), w.certificates().await.len()),
        before
    );
    assert!(w.mailed().await.is_empty());
    // An order that does not exist is not found.
    assert_eq!(
        refusal(w.ra.approve(9_999, admin(), None).await).kind,
        ErrorKind::NotFound
    );
}

// ---- server-made keys with approval ----------------------------------------------------

#[tokio::test]
async fn serverkeygen_waits_for_approval_without_a_key_and_delivers_once() {
    let w = world().await;
    let (csr_key, csr) = ec_csr();
    let e = refusal(w.serverkeygen("review", "alice@example.org", &csr).await);
    assert_eq!(e.kind, pending());
    let order = w.only_order().await;
    assert_eq!(order.status, OrderStatus::PendingApproval);
    // Neither the client's CSR (its key is not the one certified) nor any key is kept.
    assert_eq!(order.csr_der, None);
    assert_eq!(order.serial, None);
    assert_eq!(order.csr_sha256, sha256_hex(&csr));
    assert!(w.certificates().await.is_empty());
    assert_eq!(
        refusal(w.serverkeygen("review", "alice@example.org", &csr).await).kind,
        pending()
    );
    assert_eq!(w.orders().await.len(), 1);
    assert_eq!(w.mailed().await, World::approval_needed(order.id));

    // Approval generates nothing: the key is made when the client comes back.
    w.clock.advance(120);
    let approved = w.ra.approve(order.id, admin(), None).await.unwrap();
    assert_eq!(approved.status, OrderStatus::Approved);
    assert_eq!(
        approved.decision,
        Some(Decision {
            by: "admin".into(),
            at: T0 + 120,
            reason: None,
        })
    );
    assert!(w.certificates().await.is_empty());
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "order-approved",
            "alice@example.org",
            Some(order.id),
            None
        )]
    );

    let out = w
        .serverkeygen("review", "alice@example.org", &csr)
        .await
        .unwrap();
    assert_eq!(parsed_serial(&out.issued.der), out.issued.serial);
    let (_, parsed) = parse_x509_certificate(&out.issued.der).unwrap();
    assert_eq!(parsed.public_key().raw, out.key.spki_der.as_slice());
    assert_ne!(
        parsed.public_key().raw,
        csr_key.subject_public_key_info().as_slice()
    );
    let issued = w.store.order(order.id).await.unwrap();
    assert_eq!(issued.status, OrderStatus::Issued);
    assert_eq!(issued.serial.as_deref(), Some(out.issued.serial.as_str()));
    let certs = w.certificates().await;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].order_id, order.id);
    assert_eq!(certs[0].der, out.issued.der);
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "certificate-issued",
            "alice@example.org",
            Some(order.id),
            Some(certs[0].id)
        )]
    );

    // The key went out once and is not kept: the same request again is refused.
    for _ in 0..2 {
        let e = refusal(w.serverkeygen("review", "alice@example.org", &csr).await);
        assert_eq!(e.kind, ErrorKind::AlreadyUsed);
        assert!(e.message.contains("new CSR"), "{}", e.message);
    }
    assert_eq!(w.certificates().await.len(), 1);
    assert_eq!(w.orders().await.len(), 1);
}

#[tokio::test]
async fn a_rejected_serverkeygen_request_is_refused_with_the_reason() {
    let w = world().await;
    let (_, csr) = ec_csr();
    refusal(w.serverkeygen("review", "alice@example.org", &csr).await);
    let order = w.only_order().await;
    w.ra.reject(order.id, admin(), Some("use a token".into()))
        .await
        .unwrap();
    let e = refusal(w.serverkeygen("review", "alice@example.org", &csr).await);
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("use a token"), "{}", e.message);
    assert_eq!(w.orders().await.len(), 1);
    assert!(w.certificates().await.is_empty());
}

#[tokio::test]
async fn cert_issue_waits_for_approval_too() {
    let w = world().await;
    let issue = || async {
        w.ra.issue_with_server_key_as_admin(
            w.account("review").await,
            "alice@example.org",
            None,
            admin(),
        )
        .await
    };
    assert_eq!(refusal(issue().await).kind, pending());
    let order = w.only_order().await;
    assert_eq!(order.status, OrderStatus::PendingApproval);
    assert_eq!(order.csr_der, None);
    assert_eq!(order.requester, "alice@example.org");
    assert_eq!(order.csr_sha256, "server-key:alice@example.org");
    assert!(w.certificates().await.is_empty());
    // Asking again while it waits records nothing new.
    assert_eq!(refusal(issue().await).kind, pending());
    assert_eq!(w.orders().await.len(), 1);

    let approved = w.ra.approve(order.id, admin(), None).await.unwrap();
    assert_eq!(approved.status, OrderStatus::Approved);
    assert!(w.certificates().await.is_empty());
    let out = issue().await.unwrap();
    assert_eq!(parsed_serial(&out.issued.der), out.issued.serial);
    let (_, parsed) = parse_x509_certificate(&out.issued.der).unwrap();
    assert_eq!(parsed.public_key().raw, out.key.spki_der.as_slice());
    let issued = w.store.order(order.id).await.unwrap();
    assert_eq!(issued.status, OrderStatus::Issued);
    assert_eq!(issued.serial.as_deref(), Some(out.issued.serial.as_str()));
    assert_eq!(w.certificates().await.len(), 1);

    // A later `cert issue` is a new request, which waits for its own approval.
    assert_eq!(refusal(issue().await).kind, pending());
    let orders = w.orders().await;
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[1].status, OrderStatus::PendingApproval);
    assert_eq!(w.certificates().await.len(), 1);
}

// ---- the form ----------------------------------------------------------------------------

#[tokio::test]
async fn the_form_waits_for_approval_then_issues_a_pkcs12_on_that_order() {
    let w = world().await;
    let s = w.form_session("alice@example.org", "review").await;
    let out =
        w.ra.enroll_from_form(&s, form_request(None, None), SRC)
            .await
            .unwrap();
    let FormOutcome::PendingApproval { order_id } = out else {
        panic!("expected a pending order, got {out:?}");
    };
    let order = w.only_order().await;
    assert_eq!(order.id, order_id);
    assert_eq!(order.status, OrderStatus::PendingApproval);
    assert_eq!(order.csr_der, None);
    assert_eq!(w.mailed().await, World::approval_needed(order_id));
    // Submitting again while it waits: the same order.
    let again =
        w.ra.enroll_from_form(&s, form_request(None, None), SRC)
            .await
            .unwrap();
    assert!(
        matches!(again, FormOutcome::PendingApproval { order_id: id } if id == order_id),
        "{again:?}"
    );
    assert_eq!(w.orders().await.len(), 1);

    w.ra.approve(order_id, admin(), None).await.unwrap();
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "order-approved",
            "alice@example.org",
            Some(order_id),
            None
        )]
    );
    assert!(w.certificates().await.is_empty());

    let out =
        w.ra.enroll_from_form(&s, form_request(None, None), SRC)
            .await
            .unwrap();
    let FormOutcome::Pkcs12 { file, serial, .. } = out else {
        panic!("expected a PKCS#12 file, got {out:?}");
    };
    let cert = w.certificate(&serial).await;
    assert_eq!(cert.order_id, order_id);
    assert_eq!(parsed_serial(&cert.der), serial);
    let in_file = openssl_pkcs12_certificates(&file, PW);
    assert_eq!(in_file.first(), Some(&cert.der), "the leaf comes first");
    let issued = w.store.order(order_id).await.unwrap();
    assert_eq!(issued.status, OrderStatus::Issued);
    assert_eq!(issued.serial.as_deref(), Some(serial.as_str()));
    assert_eq!(w.orders().await.len(), 1);
    assert_eq!(w.certificates().await.len(), 1);
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "certificate-issued",
            "alice@example.org",
            Some(order_id),
            Some(cert.id)
        )]
    );
}

#[tokio::test]
async fn a_collected_form_order_is_issued_as_it_was_approved() {
    // The administrator approved one year with an EC key; the person must not get another
    // term or key type by choosing them when they come back to collect it: the approved
    // order is issued as approved, or the different choice is refused and the order waits.
    let w = world().await;
    let s = w.form_session("alice@example.org", "review").await;
    let out =
        w.ra.enroll_from_form(&s, form_request(Some(1), Some(KeyType::EcP256)), SRC)
            .await
            .unwrap();
    let FormOutcome::PendingApproval { order_id } = out else {
        panic!("expected a pending order, got {out:?}");
    };
    let order = w.store.order(order_id).await.unwrap();
    assert_eq!(
        (order.term_years, order.key_type.as_str()),
        (1, KeyType::EcP256.as_str())
    );
    w.ra.approve(order_id, admin(), None).await.unwrap();

    let collected =
        w.ra.enroll_from_form(
            &s,
            form_request(Some(2), Some(KeyType::Rsa { bits: 2048 })),
            SRC,
        )
        .await;
    match collected {
        Ok(FormOutcome::Pkcs12 { serial, .. }) => {
            let cert = w.certificate(&serial).await;
            assert_eq!(cert.order_id, order_id);
            assert_eq!(parsed_serial(&cert.der), serial);
            let (_, parsed) = parse_x509_certificate(&cert.der).unwrap();
            assert_eq!(
                parsed.validity().not_after.timestamp(),
                crate::ca::add_years(T0, 1),
                "issued for a term the administrator did not approve"
            );
            assert_eq!(
                parsed.public_key().algorithm.algorithm,
                x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY,
                "issued with a key type the administrator did not approve"
            );
        }
        Err(FormError::Fields(f)) if f.get("term").is_some() || f.get("key_type").is_some() => {
            assert!(w.certificates().await.is_empty());
            assert_eq!(
                w.store.order(order_id).await.unwrap().status,
                OrderStatus::Approved
            );
        }
        other => panic!("expected the approved certificate or a field error, got {other:?}"),
    }
}

// ---- revocation --------------------------------------------------------------------------

impl World {
    /// A certificate issued at once on `label` (a profile without approval).
    async fn issue(&self, label: &str, user: &str) -> Issued {
        let (_, csr) = ec_csr();
        let issued = self.enroll(label, user, &csr).await.unwrap();
        assert_eq!(parsed_serial(&issued.der), issued.serial);
        issued
    }

    async fn status(&self, serial: &str) -> CertStatus {
        self.certificate(serial).await.status
    }
}

#[tokio::test]
async fn an_administrator_revokes_by_serial_in_any_case_once() {
    let w = world().await;
    let a = w.issue("staff", "alice@example.org").await;
    let b = w.issue("staff", "alice@example.org").await;
    w.clock.advance(3_600);
    let revoked =
        w.ra.revoke_serial(
            &a.serial.to_lowercase(),
            RevocationReason::KeyCompromise,
            admin(),
        )
        .await
        .unwrap();
    assert_eq!(revoked.serial, a.serial);
    assert_eq!(revoked.status, CertStatus::Revoked);
    let expected = Some(Revocation {
        at: T0 + 3_600,
        reason: RevocationReason::KeyCompromise,
        by: "admin".into(),
    });
    assert_eq!(revoked.revocation, expected);
    assert_eq!(w.certificate(&a.serial).await.revocation, expected);
    assert_eq!(w.status(&b.serial).await, CertStatus::Valid);
    let order = w.store.order(revoked.order_id).await.unwrap();
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "certificate-revoked",
            "alice@example.org",
            Some(order.id),
            Some(revoked.id)
        )]
    );
    assert_eq!(
        w.store
            .audit_events(&crate::store::AuditFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == "certificate.revoked")
            .count(),
        1
    );

    // Again, later, by another administrator and for another reason: nothing changes.
    w.clock.advance(60);
    let other = Actor {
        name: "other-admin".into(),
        source: "cli".into(),
        ..Default::default()
    };
    let e = refusal(
        w.ra.revoke_serial(&a.serial, RevocationReason::Superseded, other)
            .await,
    );
    assert_eq!(e.kind, ErrorKind::AlreadyUsed);
    assert!(e.message.contains("already revoked"), "{}", e.message);
    assert_eq!(w.certificate(&a.serial).await.revocation, expected);
    assert!(w.mailed().await.is_empty());

    let e = refusal(
        w.ra.revoke_serial("00DEADBEEF", RevocationReason::Unspecified, admin())
            .await,
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("00DEADBEEF"), "{}", e.message);
    assert_eq!(w.status(&b.serial).await, CertStatus::Valid);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn an_expired_certificate_is_not_revoked() {
    let w = world().await;
    let a = w.issue("staff", "alice@example.org").await;
    w.clock.advance(2 * 366 * 86_400);
    let e = refusal(
        w.ra.revoke_serial(&a.serial, RevocationReason::Unspecified, admin())
            .await,
    );
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("expired"), "{}", e.message);
    assert_eq!(w.certificate(&a.serial).await.revocation, None);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn revoking_a_person_or_an_account_revokes_only_their_valid_certificates() {
    let w = world().await;
    let a1 = w.issue("staff", "alice@example.org").await;
    let a2 = w.issue("staff", "alice@example.org").await;
    let a3 = w.issue("eng", "alice@example.org").await;
    let b1 = w.issue("staff", "bob@example.org").await;
    let b2 = w.issue("staff", "bob@example.org").await;
    w.ra.revoke_serial(&a1.serial, RevocationReason::Superseded, admin())
        .await
        .unwrap();
    w.mailed().await;

    let mut serials =
        w.ra.revoke_person(
            "Bob@Example.org",
            RevocationReason::AffiliationChanged,
            admin(),
        )
        .await
        .unwrap();
    serials.sort();
    let mut expected = vec![b1.serial.clone(), b2.serial.clone()];
    expected.sort();
    assert_eq!(serials, expected);
    for s in [&b1.serial, &b2.serial] {
        let c = w.certificate(s).await;
        assert_eq!(
            c.revocation.map(|r| (r.reason, r.by)),
            Some((RevocationReason::AffiliationChanged, "admin".to_string()))
        );
    }
    for s in [&a2.serial, &a3.serial] {
        assert_eq!(w.status(s).await, CertStatus::Valid);
    }
    let mailed = w.mailed().await;
    assert_eq!(mailed.len(), 2, "{mailed:?}");
    assert!(mailed
        .iter()
        .all(|m| m.0 == "certificate-revoked" && m.1 == "bob@example.org"));

    // The account: only a2 is still valid there (a1 and bob's were revoked before); a3 is
    // on another account and stays valid.
    let serials =
        w.ra.revoke_account("staff", RevocationReason::CessationOfOperation, admin())
            .await
            .unwrap();
    assert_eq!(serials, vec![a2.serial.clone()]);
    assert_eq!(
        w.certificate(&a1.serial).await.revocation.unwrap().reason,
        RevocationReason::Superseded,
        "an earlier revocation keeps its reason"
    );
    assert_eq!(w.status(&a2.serial).await, CertStatus::Revoked);
    assert_eq!(w.status(&a3.serial).await, CertStatus::Valid);
    let a2_id = w.certificate(&a2.serial).await.id;
    let mailed = w.mailed().await;
    assert_eq!(mailed.len(), 1, "{mailed:?}");
    assert_eq!(
        (mailed[0].0.as_str(), mailed[0].1.as_str(), mailed[0].3),
        ("certificate-revoked", "alice@example.org", Some(a2_id))
    );

    // Nothing left to revoke: an empty list, not an error.
    assert!(w
        .ra
        .revoke_account("staff", RevocationReason::Unspecified, admin())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        refusal(
            w.ra.revoke_account("nope", RevocationReason::Unspecified, admin())
                .await
        )
        .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        refusal(
            w.ra.revoke_person("nobody@example.org", RevocationReason::Unspecified, admin())
                .await
        )
        .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        refusal(
            w.ra.revoke_person("not an address", RevocationReason::Unspecified, admin())
                .await
        )
        .kind,
        ErrorKind::Malformed
    );
    assert_eq!(w.status(&a3.serial).await, CertStatus::Valid);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn a_person_revokes_only_their_own_certificate_for_an_offered_reason() {
    let w = world().await;
    let alice = w.person_id("alice@example.org").await;
    let mine = w.issue("staff", "alice@example.org").await;
    let bobs = w.issue("staff", "bob@example.org").await;
    let mine_id = w.certificate(&mine.serial).await.id;
    let bobs_id = w.certificate(&bobs.serial).await.id;
    let me = Actor {
        name: "alice@example.org".into(),
        source: SRC.into(),
        ..Default::default()
    };

    // Another person's certificate, and one that does not exist: the same answer.
    for id in [bobs_id, 9_999] {
        let e = refusal(
            w.ra.revoke_own(alice, id, RevocationReason::KeyCompromise, me.clone())
                .await,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "no such certificate of yours");
    }
    assert_eq!(w.status(&bobs.serial).await, CertStatus::Valid);

    // Reasons only an administrator may give.
    for reason in [
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
    ] {
        assert!(!RevocationReason::SELF_SERVICE.contains(&reason));
        let e = refusal(w.ra.revoke_own(alice, mine_id, reason, me.clone()).await);
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
    assert_eq!(w.status(&mine.serial).await, CertStatus::Valid);
    assert!(w.mailed().await.is_empty());

    w.clock.advance(10);
    let revoked =
        w.ra.revoke_own(alice, mine_id, RevocationReason::KeyCompromise, me.clone())
            .await
            .unwrap();
    assert_eq!(
        revoked.revocation,
        Some(Revocation {
            at: T0 + 10,
            reason: RevocationReason::KeyCompromise,
            by: "alice@example.org".into(),
        })
    );
    assert_eq!(w.status(&bobs.serial).await, CertStatus::Valid);
    assert_eq!(
        w.mailed().await,
        vec![mail(
            "certificate-revoked",
            "alice@example.org",
            Some(revoked.order_id),
            Some(mine_id)
        )]
    );
    assert_eq!(
        refusal(
            w.ra.revoke_own(alice, mine_id, RevocationReason::Superseded, me)
                .await
        )
        .kind,
        ErrorKind::AlreadyUsed
    );
}

// ---- re-enrollment re-checks -------------------------------------------------------------

impl World {
    /// A certificate of alice's on `label` and a CSR that renews it.
    async fn renewable(&self, label: &str) -> (Issued, Vec<u8>) {
        let issued = self.issue(label, "alice@example.org").await;
        let csr = renewal_csr(&issued.der);
        (issued, csr)
    }

    async fn reenroll(&self, label: &str, old: &Issued, csr: &[u8]) -> Result<Issued, Error> {
        let account = self.account(label).await;
        self.ra.reenroll(account, Some(&old.der), csr, SRC).await
    }

    /// Re-enrollment is refused with `kind` and a message containing `says`, and records
    /// nothing.
    async fn refused_renewal(
        &self,
        label: &str,
        old: &Issued,
        csr: &[u8],
        kind: ErrorKind,
        says: &str,
    ) {
        let before = (self.orders().await.len(), self.certificates().await.len());
        let e = refusal(self.reenroll(label, old, csr).await);
        assert_eq!(e.kind, kind, "{e:?}");
        assert!(e.message.contains(says), "{}", e.message);
        assert_eq!(
            (self.orders().await.len(), self.certificates().await.len()),
            before
        );
    }
}

#[tokio::test]
async fn reenrollment_renews_a_valid_certificate_of_a_person_still_in_place() {
    let w = world().await;
    let (old, csr) = w.renewable("eng").await;
    let new = w.reenroll("eng", &old, &csr).await.unwrap();
    assert_ne!(new.serial, old.serial);
    assert_eq!(parsed_serial(&new.der), new.serial);
    let (_, a) = parse_x509_certificate(&old.der).unwrap();
    let (_, b) = parse_x509_certificate(&new.der).unwrap();
    assert_eq!(a.subject().as_raw(), b.subject().as_raw());
}

#[tokio::test]
async fn reenrollment_refuses_a_revoked_certificate() {
    let w = world().await;
    let (old, csr) = w.renewable("staff").await;
    w.ra.revoke_serial(&old.serial, RevocationReason::KeyCompromise, admin())
        .await
        .unwrap();
    w.refused_renewal("staff", &old, &csr, ErrorKind::Forbidden, "revoked")
        .await;
}

#[tokio::test]
async fn reenrollment_refuses_an_expired_certificate() {
    let w = world().await;
    let (old, csr) = w.renewable("staff").await;
    let not_after = w.certificate(&old.serial).await.not_after;
    w.clock.advance(not_after - T0 + 1);
    w.refused_renewal("staff", &old, &csr, ErrorKind::Unauthorized, "expired")
        .await;
}

#[tokio::test]
async fn reenrollment_refuses_a_person_no_longer_on_record() {
    let w = world().await;
    let (old, csr) = w.renewable("staff").await;
    let alice = w.person_id("alice@example.org").await;
    w.sql(&[&format!("DELETE FROM person WHERE id = {alice}")])
        .await;
    w.refused_renewal(
        "staff",
        &old,
        &csr,
        ErrorKind::Forbidden,
        "no longer on record",
    )
    .await;
}

#[tokio::test]
async fn reenrollment_refuses_a_person_moved_to_another_department() {
    let w = world().await;
    let (old, csr) = w.renewable("eng").await;
    let alice = w.person_id("alice@example.org").await;
    w.sql(&[&format!(
        "UPDATE person SET department_id = {} WHERE id = {alice}",
        w.sales
    )])
    .await;
    w.refused_renewal("eng", &old, &csr, ErrorKind::Forbidden, "department")
        .await;
}

#[tokio::test]
async fn reenrollment_refuses_a_person_moved_to_another_organisation() {
    let w = world().await;
    let (old, csr) = w.renewable("staff").await;
    let alice = w.person_id("alice@example.org").await;
    w.sql(&[&format!(
        "UPDATE person SET organisation_id = {}, department_id = NULL WHERE id = {alice}",
        w.other_org
    )])
    .await;
    w.refused_renewal("staff", &old, &csr, ErrorKind::Forbidden, "organisation")
        .await;
}

#[tokio::test]
async fn reenrollment_refuses_a_profile_the_account_no_longer_offers() {
    let w = world().await;
    let (old, csr) = w.renewable("staff").await;
    let staff = w.account("staff").await;
    let reviewed = w.store.profile_by_name("reviewed").await.unwrap();
    w.sql(&[&format!(
        "UPDATE account_profile SET profile_id = {} WHERE account_id = {}",
        reviewed.id, staff.id
    )])
    .await;
    assert_eq!(w.account("staff").await.profile_ids, vec![reviewed.id]);
    w.refused_renewal(
        "staff",
        &old,
        &csr,
        ErrorKind::Forbidden,
        "no longer offered",
    )
    .await;
}

#[tokio::test]
async fn a_hold_is_refused_and_changes_nothing() {
    let w = world().await;
    let a = w.issue("staff", "alice@example.org").await;
    let e =
        w.ra.revoke_serial(&a.serial, RevocationReason::CertificateHold, admin())
            .await
            .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
    assert!(e.message.contains("certificateHold"), "{}", e.message);
    assert_eq!(w.status(&a.serial).await, CertStatus::Valid);
    assert!(w.mailed().await.is_empty());
}

#[tokio::test]
async fn an_expiry_reminder_is_queued_once_per_certificate_and_threshold() {
    let w = world().await;
    let a = w.issue("staff", "alice@example.org").await;
    let cert = w.certificate(&a.serial).await;
    let order = w.store.order(cert.order_id).await.unwrap();
    let days = [30, 7, 1];
    // Not yet within 30 days: nothing.
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 0);
    w.clock
        .advance(cert.not_after - w.clock.now() - 20 * 86_400);
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 1);
    // Again, and from a second process on the same database: the unique key refuses it.
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 0);
    let other = Ra::new(w.store.clone(), w.ra.ca.clone(), w.clock.clone());
    assert_eq!(other.queue_expiry_reminders(&days).await.unwrap(), 0);
    let reminder = mail(
        "expiry-reminder",
        "alice@example.org",
        Some(order.id),
        Some(cert.id),
    );
    assert_eq!(w.mailed().await, vec![reminder.clone()]);
    // Housekeeping keeps the sent reminder's row, so it is not queued again a week later.
    w.clock.advance(8 * 86_400);
    let now = w.clock.now();
    w.store.sweep_expired(now, now - 7 * 86_400).await.unwrap();
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 0);
    // Five days before: the 7-day reminder, once.
    w.clock.advance(7 * 86_400);
    assert_eq!(
        w.ra.queue_expiry_reminders(&days).await.unwrap(),
        1,
        "the 7-day one"
    );
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 0);
    assert_eq!(w.mailed().await, vec![reminder]);
    // A revoked certificate is not reminded of.
    w.ra.revoke_serial(&a.serial, RevocationReason::Superseded, admin())
        .await
        .unwrap();
    w.clock.advance(4 * 86_400 + 3_600);
    assert_eq!(w.ra.queue_expiry_reminders(&days).await.unwrap(), 0);
}
