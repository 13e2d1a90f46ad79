//! RA tests of the administrators' order, certificate and audit verbs (orders.rs,
//! certificates.rs, audit.rs): who reaches what across organisation and department
//! boundaries, the search filters, decisions and revocation — against a real database with
//! a fake clock and the dev CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair};

use super::{AuditFilter, Caller, CertificateQuery, OrderQuery, Principal};
use crate::ca::dev::{ensure_dev_ca, PkiFiles};
use crate::ca::Ca;
use crate::domain::{
    hash_secret, AuthType, Authorization, CertStatus, EmailAddress, Id, KeyType, OrderStatus,
    RevocationReason, Role, Secret, SubjectSource,
};
use crate::error::{Error, ErrorKind};
use crate::ra::{Credentials, Ra};
use crate::store::{NewAccount, NewEndpoint, NewPerson, NewProfile, Store};
use crate::testing::{database_url, FakeClock};

const T0: i64 = 1_790_000_000;
const SRC: &str = "192.0.2.1:40000";
const DAY: i64 = 86_400;

struct World {
    ra: Ra,
    alpha: Id,
    beta: Id,
    eng: Id,
    _dir: tempfile::TempDir,
}

/// Organisation Alpha (alpha.example) with departments Engineering (alice) and Sales
/// (bob); organisation Beta (beta.example) with carol, in no department. Each organisation
/// has an account "<org>-staff" (no approval) and "<org>-review" (approval), all signed in
/// with secret IDs.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let files = PkiFiles::in_dir(dir.path());
    ensure_dev_ca(&files, T0).unwrap();
    let ca = Arc::new(Ca::load(&files.ca_chain, &files.ca_key).unwrap());
    let store = Store::open(&database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    let alpha = store
        .create_organisation("Alpha", &["alpha.example".into()], T0)
        .await
        .unwrap();
    let beta = store
        .create_organisation("Beta", &["beta.example".into()], T0)
        .await
        .unwrap();
    let eng = store
        .create_department(alpha.id, "Engineering")
        .await
        .unwrap();
    let sales = store.create_department(alpha.id, "Sales").await.unwrap();
    for (org, dept, email, first) in [
        (alpha.id, Some(eng.id), "alice@alpha.example", "Alice"),
        (alpha.id, Some(sales.id), "bob@alpha.example", "Bob"),
        (beta.id, None, "carol@beta.example", "Carol"),
    ] {
        store
            .create_person(
                NewPerson {
                    organisation_id: org,
                    department_id: dept,
                    email: EmailAddress::parse(email).unwrap(),
                    first_name: first.into(),
                    middle_name: String::new(),
                    last_name: "Tester".into(),
                    secret_id_hash: Some(hash_secret(&Secret::new(secret_of(email)))),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let profile = |name: &str, approval: bool| NewProfile {
        name: name.into(),
        subject_source: SubjectSource::Person,
        key_types: vec![KeyType::EcP256],
        default_key_type: KeyType::EcP256,
        terms_years: vec![1],
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
    for (org, prefix) in [(alpha.id, "alpha"), (beta.id, "beta")] {
        let endpoint = store
            .create_endpoint(NewEndpoint {
                organisation_id: org,
                name: "Main".into(),
                uri_extension: crate::domain::generate_secret(20).expose().into(),
                auth_types: vec![AuthType::SecretId],
                help_link_text: String::new(),
                help_link_target: String::new(),
                help_text: String::new(),
                eula_text: "Be nice.".into(),
            })
            .await
            .unwrap();
        for (suffix, profile) in [("staff", person.id), ("review", reviewed.id)] {
            let name = format!("{prefix}-{suffix}");
            store
                .create_account(NewAccount {
                    endpoint_id: endpoint.id,
                    organisation_id: org,
                    department_id: None,
                    name: name.clone(),
                    csr_method: crate::domain::CsrMethod::Both,
                    allow_empty_pkcs12_password: false,
                    authorization: Authorization::None,
                    access_code_hash: None,
                    est_label: Some(name),
                    is_default: false,
                    pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
                    bind_device_names: false,
                    profile_ids: vec![profile],
                })
                .await
                .unwrap();
        }
    }
    World {
        ra: Ra::new(store, ca, FakeClock::at(T0)),
        alpha: alpha.id,
        beta: beta.id,
        eng: eng.id,
        _dir: dir,
    }
}

fn secret_of(email: &str) -> String {
    format!("{}-secret-id", email.split('@').next().unwrap())
}

fn csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "ignored");
    p.serialize_request(&key).unwrap().der().to_vec()
}

fn caller(name: &str, role: Role, organisations: Vec<Id>, departments: Vec<(Id, Id)>) -> Caller {
    Caller {
        principal: Principal {
            admin_id: None,
            name: name.into(),
            role,
            organisations,
            departments,
        },
        source: SRC.into(),
        request_id: Some(format!("req-{name}")),
    }
}

fn refusal<T: std::fmt::Debug>(r: Result<T, Error>) -> Error {
    r.expect_err("expected a refusal")
}

impl World {
    fn mrao(&self) -> Caller {
        Caller::operator("ops")
    }
    fn rao_alpha(&self) -> Caller {
        caller("rao-alpha", Role::Rao, vec![self.alpha], vec![])
    }
    fn rao_beta(&self) -> Caller {
        caller("rao-beta", Role::Rao, vec![self.beta], vec![])
    }
    fn drao_eng(&self) -> Caller {
        caller("drao-eng", Role::Drao, vec![], vec![(self.alpha, self.eng)])
    }

    /// Enrolls `email` on the account labelled `label`: the certificate's id, or the
    /// refusal (a pending order answers `Pending`).
    async fn enroll(&self, label: &str, email: &str) -> Result<Id, Error> {
        let account = self.ra.account_for_label(Some(label)).await.unwrap();
        let creds = Credentials {
            username: email.into(),
            password: Secret::new(secret_of(email)),
        };
        let issued = self.ra.enroll(account, Some(creds), &csr(), SRC).await?;
        Ok(self.cert_id(&issued.serial).await)
    }

    async fn cert_id(&self, serial: &str) -> Id {
        let q = CertificateQuery {
            serial: Some(serial.into()),
            limit: 10,
            ..Default::default()
        };
        let found = self.ra.search_certificates(&self.mrao(), &q).await.unwrap();
        assert_eq!(found.len(), 1);
        found[0].certificate.id
    }

    /// The one pending order of `email`, enrolled on `label`.
    async fn pending(&self, label: &str, email: &str) -> Id {
        let e = refusal(self.enroll(label, email).await);
        assert!(matches!(e.kind, ErrorKind::Pending { .. }), "{e:?}");
        let q = OrderQuery {
            pending: true,
            limit: 100,
            ..Default::default()
        };
        self.ra
            .search_orders(&self.mrao(), &q)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .find(|o| o.person.as_ref().map(|p| p.1.as_str()) == Some(email))
            .unwrap()
            .order
            .id
    }

    async fn certificates(&self, who: &Caller, q: CertificateQuery) -> Vec<Id> {
        let q = CertificateQuery {
            limit: if q.limit == 0 { 100 } else { q.limit },
            ..q
        };
        self.ra
            .search_certificates(who, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.certificate.id)
            .collect()
    }

    async fn events(&self, who: &Caller, action: &str) -> Vec<crate::domain::AuditEvent> {
        self.ra
            .audit_events(
                who,
                AuditFilter {
                    action: Some(action.into()),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn an_rao_reaches_only_its_organisations_certificates_and_orders() {
    let w = world().await;
    let alice = w
        .enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    let carol = w.enroll("beta-staff", "carol@beta.example").await.unwrap();
    let carol_order = w.pending("beta-review", "carol@beta.example").await;
    let rao = w.rao_alpha();

    assert_eq!(
        refusal(w.ra.show_certificate(&rao, carol).await).kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        refusal(w.ra.show_order(&rao, carol_order).await).kind,
        ErrorKind::NotFound
    );
    // Out of reach reads the same as not there at all.
    assert_eq!(
        refusal(w.ra.show_order(&rao, 99_999).await).message,
        refusal(w.ra.show_order(&rao, carol_order).await).message
    );
    for r in [
        w.ra.approve_order(&rao, carol_order, None)
            .await
            .map(|_| ()),
        w.ra.reject_order(&rao, carol_order, "no").await.map(|_| ()),
        w.ra.revoke_certificate(&rao, carol, RevocationReason::Superseded)
            .await
            .map(|_| ()),
    ] {
        assert_eq!(refusal(r).kind, ErrorKind::NotFound);
    }
    let shown = w.ra.show_certificate(&rao, alice).await.unwrap();
    assert_eq!(shown.organisation_id, w.alpha);
    assert_eq!(shown.account, "alpha-staff");
    assert_eq!(shown.person.unwrap().1, "alice@alpha.example");
    assert_eq!(
        w.certificates(&rao, CertificateQuery::default()).await,
        vec![alice]
    );
    assert_eq!(
        w.certificates(&w.rao_beta(), CertificateQuery::default())
            .await,
        vec![carol]
    );
    assert_eq!(
        w.certificates(&w.mrao(), CertificateQuery::default()).await,
        vec![alice, carol]
    );
    let orders = |who: Caller| {
        let ra = &w.ra;
        async move {
            ra.search_orders(
                &who,
                &OrderQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.organisation_id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(orders(w.rao_alpha()).await, vec![w.alpha]);
    assert_eq!(orders(w.rao_beta()).await, vec![w.beta, w.beta]);
}

#[tokio::test]
async fn a_drao_reaches_only_its_departments_persons() {
    let w = world().await;
    let alice = w
        .enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    let bob = w.enroll("alpha-staff", "bob@alpha.example").await.unwrap();
    let drao = w.drao_eng();
    assert_eq!(
        refusal(w.ra.show_certificate(&drao, bob).await).kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        refusal(
            w.ra.revoke_certificate(&drao, bob, RevocationReason::Superseded)
                .await
        )
        .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        w.ra.show_certificate(&drao, alice)
            .await
            .unwrap()
            .certificate
            .id,
        alice
    );
    assert_eq!(
        w.certificates(&drao, CertificateQuery::default()).await,
        vec![alice]
    );
    let bob_order = w.pending("alpha-review", "bob@alpha.example").await;
    assert_eq!(
        refusal(w.ra.approve_order(&drao, bob_order, None).await).kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_drao_approves_its_departments_order_once_and_the_event_is_in_its_scope() {
    let w = world().await;
    let order = w.pending("alpha-review", "alice@alpha.example").await;
    let drao = w.drao_eng();
    let pending = w.ra.show_order(&drao, order).await.unwrap();
    assert_eq!(pending.order.status, OrderStatus::PendingApproval);
    assert_eq!(pending.department_id, Some(w.eng));
    assert_eq!(pending.profile, "reviewed");

    let approved =
        w.ra.approve_order(&drao, order, Some("known to me".into()))
            .await
            .unwrap();
    // A client-made key is signed at once.
    assert_eq!(approved.order.status, OrderStatus::Issued);
    assert!(approved.certificate_id.is_some());
    let decision = approved.order.decision.unwrap();
    assert_eq!(
        (decision.by.as_str(), decision.reason.as_deref()),
        ("drao-eng", Some("known to me"))
    );
    let again = refusal(w.ra.approve_order(&drao, order, None).await);
    assert_eq!(again.kind, ErrorKind::AlreadyUsed);
    assert!(
        again.message.contains("already decided"),
        "{}",
        again.message
    );
    let again = refusal(w.ra.reject_order(&w.mrao(), order, "too late").await);
    assert_eq!(again.kind, ErrorKind::AlreadyUsed);

    let events = w.events(&drao, "order.approved").await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (
            e.actor.as_str(),
            e.role,
            e.organisation_id,
            e.department_id,
            e.request_id.as_deref(),
            e.source.as_str()
        ),
        (
            "drao-eng",
            Some(Role::Drao),
            Some(w.alpha),
            Some(w.eng),
            Some("req-drao-eng"),
            SRC
        )
    );
    // Issuance on the approval is placed alike; Beta's RAO sees none of it.
    assert_eq!(w.events(&drao, "approved.issued").await.len(), 1);
    assert!(w.events(&w.rao_beta(), "order.approved").await.is_empty());
    assert_eq!(w.events(&w.rao_alpha(), "order.approved").await.len(), 1);
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_is_told_as_given() {
    let w = world().await;
    let order = w.pending("alpha-review", "bob@alpha.example").await;
    let rao = w.rao_alpha();
    let e = refusal(w.ra.reject_order(&rao, order, "   ").await);
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Malformed, Some("reason"))
    );
    let e = refusal(w.ra.reject_order(&rao, order, &"x".repeat(501)).await);
    assert_eq!(e.field.as_deref(), Some("reason"));
    assert_eq!(
        w.ra.show_order(&rao, order).await.unwrap().order.status,
        OrderStatus::PendingApproval
    );
    let rejected =
        w.ra.reject_order(&rao, order, "not a staff member")
            .await
            .unwrap();
    assert_eq!(rejected.order.status, OrderStatus::Rejected);
    let d = rejected.order.decision.unwrap();
    assert_eq!(
        (d.by.as_str(), d.reason.as_deref()),
        ("rao-alpha", Some("not a staff member"))
    );
}

#[tokio::test]
async fn order_filters_pending_status_and_account_with_pages() {
    let w = world().await;
    w.enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    let p1 = w.pending("alpha-review", "alice@alpha.example").await;
    let p2 = w.pending("alpha-review", "bob@alpha.example").await;
    let ids = |q: OrderQuery| {
        let ra = &w.ra;
        async move {
            ra.search_orders(&Caller::operator("ops"), &q)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.order.id)
                .collect::<Vec<_>>()
        }
    };
    let review =
        w.ra.account_for_label(Some("alpha-review"))
            .await
            .unwrap()
            .id;
    assert_eq!(
        ids(OrderQuery {
            pending: true,
            limit: 10,
            ..Default::default()
        })
        .await,
        vec![p1, p2]
    );
    assert_eq!(
        ids(OrderQuery {
            status: Some(OrderStatus::Issued),
            limit: 10,
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        ids(OrderQuery {
            account_id: Some(review),
            limit: 10,
            ..Default::default()
        })
        .await,
        vec![p1, p2]
    );
    // One past the page says another follows; the cursor continues after it.
    assert_eq!(
        ids(OrderQuery {
            pending: true,
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![p1, p2]
    );
    assert_eq!(
        ids(OrderQuery {
            pending: true,
            after_id: Some(p1),
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![p2]
    );
    let e = refusal(
        w.ra.search_orders(
            &w.mrao(),
            &OrderQuery {
                pending: true,
                status: Some(OrderStatus::Issued),
                limit: 10,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(e.field.as_deref(), Some("status"));
}

#[tokio::test]
async fn certificate_search_by_serial_email_subject_account_status_and_expiry() {
    let w = world().await;
    let alice = w
        .enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    let bob = w.enroll("alpha-staff", "bob@alpha.example").await.unwrap();
    let carol = w.enroll("beta-staff", "carol@beta.example").await.unwrap();
    let m = w.mrao();
    let shown = w.ra.show_certificate(&m, bob).await.unwrap().certificate;
    let q = CertificateQuery::default;

    let serial = shown.serial.to_lowercase();
    let colons = serial
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for s in [shown.serial.clone(), serial, colons] {
        assert_eq!(
            w.certificates(
                &m,
                CertificateQuery {
                    serial: Some(s),
                    ..q()
                }
            )
            .await,
            vec![bob]
        );
    }
    assert_eq!(
        w.certificates(
            &m,
            CertificateQuery {
                email: Some("Carol@Beta.Example".into()),
                ..q()
            }
        )
        .await,
        vec![carol]
    );
    // The subject carries the person's name; any case matches, and LIKE's wildcards are
    // taken literally.
    assert!(shown.subject.contains("Bob"), "{}", shown.subject);
    for (text, want) in [
        ("bob tester", vec![bob]),
        ("TESTER", vec![alice, bob, carol]),
        ("%", vec![]),
        ("_ob", vec![]),
    ] {
        assert_eq!(
            w.certificates(
                &m,
                CertificateQuery {
                    subject: Some(text.into()),
                    ..q()
                }
            )
            .await,
            want,
            "{text}"
        );
    }
    let staff = w.ra.account_for_label(Some("beta-staff")).await.unwrap().id;
    assert_eq!(
        w.certificates(
            &m,
            CertificateQuery {
                account_id: Some(staff),
                ..q()
            }
        )
        .await,
        vec![carol]
    );
    w.ra.revoke_certificate(&m, alice, RevocationReason::KeyCompromise)
        .await
        .unwrap();
    for (status, want) in [
        (CertStatus::Revoked, vec![alice]),
        (CertStatus::Valid, vec![bob, carol]),
    ] {
        assert_eq!(
            w.certificates(
                &m,
                CertificateQuery {
                    status: Some(status),
                    ..q()
                }
            )
            .await,
            want
        );
    }
    let not_after = shown.not_after;
    for (after, before, want) in [
        (
            Some(not_after - DAY),
            Some(not_after + DAY),
            vec![alice, bob, carol],
        ),
        (Some(not_after + DAY), None, vec![]),
        (None, Some(not_after - DAY), vec![]),
    ] {
        assert_eq!(
            w.certificates(
                &m,
                CertificateQuery {
                    expires_after: after,
                    expires_before: before,
                    ..q()
                }
            )
            .await,
            want
        );
    }
    // Filters combine with the scope and with each other.
    assert_eq!(
        w.certificates(
            &w.rao_beta(),
            CertificateQuery {
                subject: Some("tester".into()),
                status: Some(CertStatus::Valid),
                ..q()
            }
        )
        .await,
        vec![carol]
    );
    assert_eq!(
        w.certificates(
            &m,
            CertificateQuery {
                limit: 1,
                after_id: Some(alice),
                ..q()
            }
        )
        .await,
        vec![bob, carol]
    );
    for (bad, field) in [
        (
            CertificateQuery {
                serial: Some("xyz".into()),
                ..q()
            },
            "serial",
        ),
        (
            CertificateQuery {
                email: Some("not-an-email".into()),
                ..q()
            },
            "email",
        ),
        (
            CertificateQuery {
                subject: Some("  ".into()),
                ..q()
            },
            "subject",
        ),
        (
            CertificateQuery {
                expires_after: Some(T0 + DAY),
                expires_before: Some(T0),
                ..q()
            },
            "expires_before",
        ),
    ] {
        let e = refusal(w.ra.search_certificates(&m, &bad).await);
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Malformed, Some(field))
        );
    }
}

#[tokio::test]
async fn revoking_twice_answers_conflict_and_hold_is_refused() {
    let w = world().await;
    let alice = w
        .enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    let drao = w.drao_eng();
    let e = refusal(
        w.ra.revoke_certificate(&drao, alice, RevocationReason::CertificateHold)
            .await,
    );
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Malformed, Some("reason"))
    );
    let revoked =
        w.ra.revoke_certificate(&drao, alice, RevocationReason::AffiliationChanged)
            .await
            .unwrap();
    assert_eq!(revoked.certificate.status, CertStatus::Revoked);
    let r = revoked.certificate.revocation.unwrap();
    assert_eq!(
        (r.reason, r.by.as_str(), r.at),
        (RevocationReason::AffiliationChanged, "drao-eng", T0)
    );
    let again = refusal(
        w.ra.revoke_certificate(&w.mrao(), alice, RevocationReason::KeyCompromise)
            .await,
    );
    assert_eq!(again.kind, ErrorKind::AlreadyUsed);
    let events = w.events(&drao, "certificate.revoked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].organisation_id, events[0].department_id),
        (Some(w.alpha), Some(w.eng))
    );
}

#[tokio::test]
async fn audit_events_verify_and_export_within_scope() {
    let w = world().await;
    w.enroll("alpha-staff", "alice@alpha.example")
        .await
        .unwrap();
    w.enroll("alpha-staff", "bob@alpha.example").await.unwrap();
    w.enroll("beta-staff", "carol@beta.example").await.unwrap();
    let all = |who: Caller| {
        let ra = &w.ra;
        async move {
            ra.audit_events(
                &who,
                AuditFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let everything = all(w.mrao()).await;
    // One event per issuance (issue_on stores it with the certificate).
    assert!(everything.len() >= 3, "{everything:?}");
    let beta = all(w.rao_beta()).await;
    assert!(!beta.is_empty());
    assert!(beta.iter().all(|e| e.organisation_id == Some(w.beta)));
    let eng = all(w.drao_eng()).await;
    // Alice's issuance; Bob's is Sales'.
    assert_eq!(eng.len(), 1, "{eng:?}");
    assert!(eng.iter().all(|e| e.department_id == Some(w.eng)));
    // An RAO asking for another organisation gets nothing of it.
    let asked =
        w.ra.audit_events(
            &w.rao_beta(),
            AuditFilter {
                organisations: Some(vec![w.alpha]),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(asked.is_empty());
    // The cursor: after the first event's seq.
    let page =
        w.ra.audit_events(
            &w.mrao(),
            AuditFilter {
                after_seq: Some(everything[0].seq),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![everything[1].seq, everything[2].seq]
    );

    let report = w.ra.verify_audit(&w.mrao()).await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.checked, everything.len() as u64);
    assert_eq!(
        refusal(w.ra.verify_audit(&w.rao_alpha()).await).kind,
        ErrorKind::Forbidden
    );

    let lines =
        w.ra.export_audit(&w.mrao(), None, Some(w.beta))
            .await
            .unwrap();
    assert_eq!(lines.len(), beta.len());
    for (line, e) in lines.iter().zip(&beta) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], e.seq);
        assert_eq!(v["hash"], e.hash.as_str());
        assert_eq!(v["prev_hash"], e.prev_hash.as_str());
        assert_eq!(v["organisation_id"], w.beta);
        assert_eq!(v["action"], e.action.as_str());
    }
    let since =
        w.ra.export_audit(&w.mrao(), Some(T0 + 1), None)
            .await
            .unwrap();
    assert!(since.is_empty());
    assert_eq!(
        refusal(w.ra.export_audit(&w.rao_alpha(), None, Some(w.beta)).await).kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        w.ra.export_audit(&w.drao_eng(), None, None)
            .await
            .unwrap()
            .len(),
        1
    );
}
