//! RA tests of the enrollment setup verbs (profiles, endpoints, accounts): role scope,
//! unique names naming the holder, validation naming the field, optimistic locking, soft
//! deletes that stop enrollment, and the audit events — against a real database with a
//! fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::*;
use crate::ca::dev::{ensure_dev_ca, PkiFiles};
use crate::ca::Ca;
use crate::domain::{
    verify_secret, Account, AuthType, Authorization, CsrMethod, Endpoint, KeyType,
    Pkcs12Encryption, Secret, SmimeGeneration, SmimeType, SmimeValidation, SubjectSource,
};
use crate::error::{Error, ErrorKind};
use crate::ra::Ra;
use crate::store::{AuditFilter, Store};
use crate::testing::{database_url, FakeClock};

const T0: i64 = 1_790_000_000;

struct World {
    ra: Ra,
    store: Store,
    org_a: Id,
    org_b: Id,
    dept_a: Id,
    dept_b: Id,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let files = PkiFiles::in_dir(dir.path());
    ensure_dev_ca(&files, T0).unwrap();
    let ca = Arc::new(Ca::load(&files.ca_chain, &files.ca_key).unwrap());
    let url = database_url(dir.path()).await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let a = store
        .create_organisation("A", &["a.example".into()], T0)
        .await
        .unwrap();
    let b = store
        .create_organisation("B", &["b.example".into()], T0)
        .await
        .unwrap();
    let dept_a = store.create_department(a.id, "Eng").await.unwrap().id;
    let dept_b = store.create_department(b.id, "Ops").await.unwrap().id;
    let ra = Ra::new(store.clone(), ca, FakeClock::at(T0))
        .with_public_url("https://est.example:8443/".into());
    World {
        ra,
        store,
        org_a: a.id,
        org_b: b.id,
        dept_a,
        dept_b,
        _dir: dir,
    }
}

fn mrao() -> Caller {
    Caller::operator("test")
}

fn rao(org: Id) -> Caller {
    Caller {
        principal: Principal {
            admin_id: Some(1000 + org),
            name: format!("admin:rao{org}@example"),
            role: Role::Rao,
            organisations: vec![org],
            departments: Vec::new(),
        },
        source: "192.0.2.7".into(),
        request_id: Some("req-1".into()),
    }
}

fn drao(org: Id, dept: Id) -> Caller {
    Caller {
        principal: Principal {
            admin_id: Some(2000 + dept),
            name: format!("admin:drao{dept}@example"),
            role: Role::Drao,
            organisations: Vec::new(),
            departments: vec![(org, dept)],
        },
        source: "192.0.2.8".into(),
        request_id: None,
    }
}

fn profile_req(name: &str) -> ProfileRequest {
    ProfileRequest {
        name: name.into(),
        subject_source: SubjectSource::Person,
        key_types: vec![KeyType::EcP256, KeyType::Rsa { bits: 2048 }],
        default_key_type: None,
        terms_years: vec![1, 2],
        default_term_years: None,
        requires_approval: false,
        smime: None,
    }
}

fn endpoint_req(org: Id, name: &str) -> EndpointRequest {
    EndpointRequest {
        organisation_id: org,
        name: name.into(),
        auth_types: vec![AuthType::SecretId, AuthType::EmailConfirmation],
        help_link_text: "Help".into(),
        help_link_target: "https://help.example/".into(),
        help_text: "Ask us.".into(),
        eula_text: "Be nice.".into(),
        uri_extension: None,
    }
}

fn account_req(endpoint: Id, name: &str, profile: Id) -> AccountRequest {
    AccountRequest {
        endpoint_id: endpoint,
        department_id: None,
        name: name.into(),
        profile_ids: vec![profile],
        csr_method: CsrMethod::Both,
        allow_empty_pkcs12_password: false,
        authorization: Authorization::AccessCode,
        access_code: None,
        est_label: Some(name.to_ascii_lowercase()),
        is_default: false,
        pkcs12_encryption: Pkcs12Encryption::Modern,
        bind_device_names: false,
    }
}

fn kind(r: Result<impl std::fmt::Debug, Error>) -> (ErrorKind, Option<String>, String) {
    let e = r.expect_err("expected an error");
    (e.kind, e.field, e.message)
}

/// A world with one profile, an endpoint in each organisation and an account on A's.
struct Setup {
    w: World,
    profile: Id,
    ep_a: Endpoint,
    ep_b: Endpoint,
    acc_a: Account,
    acc_b: Account,
}

async fn setup() -> Setup {
    let w = world().await;
    let profile =
        w.ra.add_profile(&mrao(), profile_req("person"))
            .await
            .unwrap()
            .id;
    let ep_a =
        w.ra.add_endpoint(&rao(w.org_a), endpoint_req(w.org_a, "Main"))
            .await
            .unwrap();
    let ep_b =
        w.ra.add_endpoint(&mrao(), endpoint_req(w.org_b, "Main"))
            .await
            .unwrap();
    let acc_a =
        w.ra.add_account(&rao(w.org_a), account_req(ep_a.id, "Staff", profile))
            .await
            .unwrap()
            .account;
    let acc_b =
        w.ra.add_account(&mrao(), account_req(ep_b.id, "Ops", profile))
            .await
            .unwrap()
            .account;
    Setup {
        w,
        profile,
        ep_a,
        ep_b,
        acc_a,
        acc_b,
    }
}

#[tokio::test]
async fn profiles_are_for_mraos_to_change_and_raos_to_read() {
    let s = setup().await;
    let (ra, a) = (&s.w.ra, s.w.org_a);
    assert_eq!(
        kind(ra.add_profile(&rao(a), profile_req("mine")).await).0,
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(
            ra.edit_profile(&rao(a), s.profile, None, ProfileChanges::default())
                .await
        )
        .0,
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(ra.remove_profile(&rao(a), s.profile).await).0,
        ErrorKind::Forbidden
    );
    assert_eq!(ra.profiles(&rao(a)).await.unwrap().len(), 1);
    assert_eq!(ra.profile(&rao(a), s.profile).await.unwrap().name, "person");
    let d = drao(a, s.w.dept_a);
    assert_eq!(kind(ra.profiles(&d).await).0, ErrorKind::Forbidden);
    assert_eq!(kind(ra.profile(&d, s.profile).await).0, ErrorKind::NotFound);
    assert_eq!(
        kind(ra.add_profile(&d, profile_req("x")).await).0,
        ErrorKind::Forbidden
    );
}

#[tokio::test]
async fn profile_rules_name_the_field() {
    let w = world().await;
    let ra = &w.ra;
    let mut r = profile_req("p");
    r.default_key_type = Some(KeyType::EcP384);
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("default_key_type")
    );
    let mut r = profile_req("p");
    r.terms_years = vec![1, 4];
    let (k, f, m) = kind(ra.add_profile(&mrao(), r).await);
    assert_eq!(
        (k, f.as_deref()),
        (ErrorKind::Malformed, Some("terms_years[1]"))
    );
    assert!(m.contains("1 to 3"), "{m}");
    let mut r = profile_req("p");
    r.default_term_years = Some(3);
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("default_term_years")
    );
    let mut r = profile_req("p");
    r.key_types = Vec::new();
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("key_types")
    );
    let smime = SmimeType {
        validation: SmimeValidation::Mailbox,
        generation: SmimeGeneration::Strict,
    };
    let mut r = profile_req("p");
    r.terms_years = vec![1, 3];
    r.smime = Some(smime);
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("terms_years[1]")
    );
    let mut r = profile_req("p");
    r.subject_source = SubjectSource::Device;
    r.smime = Some(smime);
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("smime")
    );
    let mut r = profile_req("  ");
    r.name = "  ".into();
    assert_eq!(
        kind(ra.add_profile(&mrao(), r).await).1.as_deref(),
        Some("name")
    );
    // Nothing was created by any of these.
    assert!(ra.profiles(&mrao()).await.unwrap().is_empty());
    // A good one gets its defaults from the lists.
    let p = ra.add_profile(&mrao(), profile_req("p")).await.unwrap();
    assert_eq!(
        (p.default_key_type, p.default_term_years),
        (KeyType::EcP256, 1)
    );
    let (k, f, m) = kind(ra.add_profile(&mrao(), profile_req("p")).await);
    assert_eq!((k, f.as_deref()), (ErrorKind::AlreadyUsed, Some("name")));
    assert!(m.contains(&format!("profile {} \"p\"", p.id)), "{m}");
}

#[tokio::test]
async fn profile_edit_is_locked_and_delete_waits_for_its_users() {
    let s = setup().await;
    let ra = &s.w.ra;
    let p = ra.profile(&mrao(), s.profile).await.unwrap();
    let changed = ra
        .edit_profile(
            &mrao(),
            p.id,
            Some(p.version),
            ProfileChanges {
                requires_approval: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(changed.requires_approval);
    assert_eq!(changed.version, p.version + 1);
    assert_eq!(
        kind(
            ra.edit_profile(
                &mrao(),
                p.id,
                Some(p.version),
                ProfileChanges {
                    requires_approval: Some(false),
                    ..Default::default()
                }
            )
            .await
        )
        .0,
        ErrorKind::PreconditionFailed
    );
    assert!(ra.profile(&mrao(), p.id).await.unwrap().requires_approval);
    let (k, _, m) = kind(ra.remove_profile(&mrao(), p.id).await);
    assert_eq!(k, ErrorKind::AlreadyUsed);
    assert!(m.contains("account"), "{m}");
    ra.remove_account(&mrao(), s.acc_a.id).await.unwrap();
    ra.remove_account(&mrao(), s.acc_b.id).await.unwrap();
    ra.remove_profile(&mrao(), p.id).await.unwrap();
    assert_eq!(kind(ra.profile(&mrao(), p.id).await).0, ErrorKind::NotFound);
}

#[tokio::test]
async fn endpoints_and_accounts_stay_within_the_organisation() {
    let s = setup().await;
    let (ra, a) = (&s.w.ra, s.w.org_a);
    let r = rao(a);
    // Another organisation's objects do not exist for this RAO.
    assert_eq!(
        kind(ra.managed_endpoint(&r, s.ep_b.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.account(&r, s.acc_b.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            ra.edit_endpoint(&r, s.ep_b.id, None, EndpointChanges::default())
                .await
        )
        .0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.remove_account(&r, s.acc_b.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.rotate_access_code(&r, s.acc_b.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.add_endpoint(&r, endpoint_req(s.w.org_b, "Sneaky")).await).1,
        Some("organisation".into())
    );
    assert_eq!(
        kind(
            ra.add_account(&r, account_req(s.ep_b.id, "Sneaky", s.profile))
                .await
        )
        .1,
        Some("endpoint".into())
    );
    // Lists show only its own.
    let eps = ra.endpoints(&r, None).await.unwrap();
    assert_eq!(
        eps.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![s.ep_a.id]
    );
    assert!(ra.endpoints(&r, Some(s.w.org_b)).await.unwrap().is_empty());
    let accs = ra.accounts(&r, None, None).await.unwrap();
    assert_eq!(
        accs.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![s.acc_a.id]
    );
    assert_eq!(ra.endpoints(&mrao(), None).await.unwrap().len(), 2);
    assert_eq!(
        ra.accounts(&mrao(), None, Some(s.ep_b.id))
            .await
            .unwrap()
            .len(),
        1
    );
    // A DRAO: the collections are refused, the objects unseen.
    let d = drao(a, s.w.dept_a);
    assert_eq!(kind(ra.endpoints(&d, None).await).0, ErrorKind::Forbidden);
    assert_eq!(
        kind(ra.accounts(&d, None, None).await).0,
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(ra.managed_endpoint(&d, s.ep_a.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.account(&d, s.acc_a.id).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.add_endpoint(&d, endpoint_req(a, "D")).await).0,
        ErrorKind::Forbidden
    );
    // An account's department must be of its organisation.
    let mut req = account_req(s.ep_a.id, "Dept", s.profile);
    req.department_id = Some(s.w.dept_b);
    assert_eq!(
        kind(ra.add_account(&r, req).await).1.as_deref(),
        Some("department")
    );
    let mut req = account_req(s.ep_a.id, "Dept", s.profile);
    req.department_id = Some(s.w.dept_a);
    assert_eq!(
        ra.add_account(&r, req).await.unwrap().account.department_id,
        Some(s.w.dept_a)
    );
}

#[tokio::test]
async fn duplicate_names_and_labels_name_the_holder() {
    let s = setup().await;
    let (ra, a) = (&s.w.ra, s.w.org_a);
    let (k, f, m) = kind(ra.add_endpoint(&mrao(), endpoint_req(a, "Main")).await);
    assert_eq!((k, f.as_deref()), (ErrorKind::AlreadyUsed, Some("name")));
    assert!(
        m.contains(&format!("endpoint {} \"Main\"", s.ep_a.id)),
        "{m}"
    );
    // The same name in another organisation is fine (B has one already).
    assert_eq!(s.ep_b.name, "Main");
    // Renaming onto a taken name too.
    let other = ra
        .add_endpoint(&mrao(), endpoint_req(a, "Second"))
        .await
        .unwrap();
    let (k, _, m) = kind(
        ra.edit_endpoint(
            &mrao(),
            other.id,
            None,
            EndpointChanges {
                name: Some("Main".into()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(k, ErrorKind::AlreadyUsed);
    assert!(m.contains(&s.ep_a.id.to_string()), "{m}");

    let mut dup = account_req(other.id, "Staff", s.profile);
    dup.est_label = None;
    let (k, f, m) = kind(ra.add_account(&mrao(), dup).await);
    assert_eq!((k, f.as_deref()), (ErrorKind::AlreadyUsed, Some("name")));
    assert!(
        m.contains(&format!("account {} \"Staff\"", s.acc_a.id)),
        "{m}"
    );

    let mut dup = account_req(s.ep_a.id, "Other", s.profile);
    dup.est_label = Some("staff".into());
    let (k, f, m) = kind(ra.add_account(&rao(a), dup).await);
    assert_eq!(
        (k, f.as_deref()),
        (ErrorKind::AlreadyUsed, Some("est_label"))
    );
    assert!(
        m.contains(&format!("account {} \"Staff\"", s.acc_a.id)),
        "{m}"
    );
    // Held in another organisation: refused without naming it.
    let mut dup = account_req(s.ep_a.id, "Other", s.profile);
    dup.est_label = Some("ops".into());
    let (k, _, m) = kind(ra.add_account(&rao(a), dup).await);
    assert_eq!(k, ErrorKind::AlreadyUsed);
    assert!(!m.contains("Ops"), "{m}");
}

#[tokio::test]
async fn endpoint_and_account_input_is_checked_field_by_field() {
    let s = setup().await;
    let (ra, a) = (&s.w.ra, s.w.org_a);
    let mut r = endpoint_req(a, "X");
    r.uri_extension = Some("short".into());
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).1.as_deref(),
        Some("uri_extension")
    );
    let mut r = endpoint_req(a, "X");
    r.uri_extension = Some("not-base62-but-long-enough".into());
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).1.as_deref(),
        Some("uri_extension")
    );
    let mut r = endpoint_req(a, "X");
    r.uri_extension = Some(s.ep_b.uri_extension.clone());
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).0,
        ErrorKind::AlreadyUsed
    );
    let mut r = endpoint_req(a, "X");
    r.help_link_target = "javascript:alert(1)".into();
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).1.as_deref(),
        Some("help_link_target")
    );
    let mut r = endpoint_req(a, "X");
    r.auth_types = Vec::new();
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).1.as_deref(),
        Some("auth_types")
    );
    let mut r = endpoint_req(a, "X");
    r.uri_extension = Some("abcdefghijABCDEFGHIJ0123".into());
    let e = ra.add_endpoint(&mrao(), r).await.unwrap();
    assert_eq!(
        ra.enrollment_url(&e),
        "https://est.example:8443/enroll/abcdefghijABCDEFGHIJ0123"
    );

    for (label, why) in [
        ("simpleenroll", "operation"),
        ("Bad", "case"),
        ("api", "path"),
    ] {
        let mut r = account_req(s.ep_a.id, "L", s.profile);
        r.est_label = Some(label.into());
        assert_eq!(
            kind(ra.add_account(&mrao(), r).await).1.as_deref(),
            Some("est_label"),
            "{why}"
        );
    }
    let mut r = account_req(s.ep_a.id, "L", s.profile);
    r.profile_ids = vec![s.profile, 9999];
    assert_eq!(
        kind(ra.add_account(&mrao(), r).await).1.as_deref(),
        Some("profiles[1]")
    );
    let mut r = account_req(s.ep_a.id, "L", s.profile);
    r.access_code = Some(Secret::new("short"));
    assert_eq!(
        kind(ra.add_account(&mrao(), r).await).1.as_deref(),
        Some("access_code")
    );
    let mut r = account_req(s.ep_a.id, "L", s.profile);
    r.authorization = Authorization::None;
    r.access_code = Some(Secret::new("long enough code"));
    assert_eq!(
        kind(ra.add_account(&mrao(), r).await).1.as_deref(),
        Some("access_code")
    );
    assert_eq!(ra.accounts(&mrao(), Some(a), None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_edit_is_refused() {
    let s = setup().await;
    let ra = &s.w.ra;
    let r = rao(s.w.org_a);
    let e = ra
        .edit_endpoint(
            &r,
            s.ep_a.id,
            Some(s.ep_a.version),
            EndpointChanges {
                help_text: Some("New help".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(e.help_text, "New help");
    let stale = ra
        .edit_endpoint(
            &r,
            s.ep_a.id,
            Some(s.ep_a.version),
            EndpointChanges {
                help_text: Some("Lost".into()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(kind(stale).0, ErrorKind::PreconditionFailed);
    let acc = ra
        .edit_account(
            &r,
            s.acc_a.id,
            Some(s.acc_a.version),
            AccountChanges {
                csr_method: Some(CsrMethod::Server),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(acc.account.csr_method, CsrMethod::Server);
    assert!(acc.access_code.is_none());
    let stale = ra
        .edit_account(
            &r,
            s.acc_a.id,
            Some(s.acc_a.version),
            AccountChanges {
                csr_method: Some(CsrMethod::Client),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(kind(stale).0, ErrorKind::PreconditionFailed);
    assert_eq!(
        ra.account(&r, s.acc_a.id).await.unwrap().csr_method,
        CsrMethod::Server
    );
    assert_eq!(
        ra.managed_endpoint(&r, s.ep_a.id).await.unwrap().help_text,
        "New help"
    );
}

#[tokio::test]
async fn access_codes_are_shown_once_and_rotate() {
    let s = setup().await;
    let ra = &s.w.ra;
    let saved = ra
        .add_account(&mrao(), account_req(s.ep_a.id, "Coded", s.profile))
        .await
        .unwrap();
    let first = saved.access_code.unwrap();
    let hash = saved.account.access_code_hash.clone().unwrap();
    assert!(verify_secret(&first, &hash));
    let rotated = ra
        .rotate_access_code(&rao(s.w.org_a), saved.account.id)
        .await
        .unwrap();
    let second = rotated.access_code.unwrap();
    let hash = rotated.account.access_code_hash.unwrap();
    assert!(verify_secret(&second, &hash) && !verify_secret(&first, &hash));
    // A given code is not echoed.
    let mut r = account_req(s.ep_a.id, "Given", s.profile);
    r.access_code = Some(Secret::new("given-code-123"));
    let given = ra.add_account(&mrao(), r).await.unwrap();
    assert!(given.access_code.is_none());
    // No access code on a `none` account.
    let mut r = account_req(s.ep_a.id, "Open", s.profile);
    r.authorization = Authorization::None;
    let open = ra.add_account(&mrao(), r).await.unwrap();
    assert_eq!(
        kind(ra.rotate_access_code(&mrao(), open.account.id).await).0,
        ErrorKind::AlreadyUsed
    );
    // The audit trail never holds the code or its hash.
    let events =
        s.w.store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
    let rotation = events
        .iter()
        .find(|e| e.action == "account.rotate-access-code")
        .unwrap();
    assert_eq!(rotation.organisation_id, Some(s.w.org_a));
    assert_eq!(rotation.request_id.as_deref(), Some("req-1"));
    for e in &events {
        let all = format!("{:?}{:?}{}", e.before, e.after, e.detail);
        assert!(!all.contains(second.expose()) && !all.contains(first.expose()));
        assert!(!all.contains("argon2"), "{all}");
    }
}

#[tokio::test]
async fn a_deleted_account_no_longer_enrolls_but_keeps_its_rows() {
    let s = setup().await;
    let ra = &s.w.ra;
    let mut r = account_req(s.ep_a.id, "Default", s.profile);
    r.is_default = true;
    let def = ra.add_account(&mrao(), r).await.unwrap().account;
    assert_eq!(ra.account_for_label(None).await.unwrap().id, def.id);
    assert_eq!(
        ra.account_for_label(Some("staff")).await.unwrap().id,
        s.acc_a.id
    );
    ra.remove_account(&rao(s.w.org_a), s.acc_a.id)
        .await
        .unwrap();
    ra.remove_account(&mrao(), def.id).await.unwrap();
    assert_eq!(
        kind(ra.account_for_label(Some("staff")).await).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(ra.account_for_label(None).await).0,
        ErrorKind::NotFound
    );
    assert!(s
        .w
        .store
        .accounts_of_endpoint(s.ep_a.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        kind(ra.account(&mrao(), s.acc_a.id).await).0,
        ErrorKind::NotFound
    );
    // The row stays (orders and certificates point at it), label and default cleared.
    let row = s.w.store.account(s.acc_a.id).await.unwrap();
    assert_eq!(row.name, "Staff");
    assert!(row.est_label.is_none() && !row.is_default);
    // Its name and label are free again.
    let again = ra
        .add_account(&mrao(), account_req(s.ep_a.id, "Staff", s.profile))
        .await
        .unwrap();
    assert_eq!(again.account.est_label.as_deref(), Some("staff"));
    // The audit event carries the organisation and the before image.
    let events =
        s.w.store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
    let del = events
        .iter()
        .find(|e| e.action == "account.delete" && e.object == format!("account {}", s.acc_a.id))
        .unwrap();
    assert_eq!(del.organisation_id, Some(s.w.org_a));
    assert!(del.before.as_deref().unwrap().contains("\"Staff\""));
}

#[tokio::test]
async fn a_deleted_endpoint_no_longer_serves_its_form() {
    let s = setup().await;
    let ra = &s.w.ra;
    let ext = s.ep_a.uri_extension.clone();
    assert_eq!(ra.endpoint(&ext).await.unwrap().id, s.ep_a.id);
    let (k, _, m) = kind(ra.remove_endpoint(&mrao(), s.ep_a.id).await);
    assert_eq!(k, ErrorKind::AlreadyUsed);
    assert!(m.contains("1 account"), "{m}");
    ra.remove_account(&mrao(), s.acc_a.id).await.unwrap();
    ra.remove_endpoint(&rao(s.w.org_a), s.ep_a.id)
        .await
        .unwrap();
    assert_eq!(kind(ra.endpoint(&ext).await).0, ErrorKind::NotFound);
    assert!(ra
        .endpoints(&mrao(), Some(s.w.org_a))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        kind(ra.managed_endpoint(&mrao(), s.ep_a.id).await).0,
        ErrorKind::NotFound
    );
    // Its name is free again; its URI extension is never reused.
    ra.add_endpoint(&mrao(), endpoint_req(s.w.org_a, "Main"))
        .await
        .unwrap();
    let mut r = endpoint_req(s.w.org_a, "Third");
    r.uri_extension = Some(ext);
    assert_eq!(
        kind(ra.add_endpoint(&mrao(), r).await).0,
        ErrorKind::AlreadyUsed
    );
}

#[tokio::test]
async fn a_new_uri_extension_retires_the_old_address() {
    let s = setup().await;
    let ra = &s.w.ra;
    let old = s.ep_a.uri_extension.clone();
    let e = ra
        .regenerate_uri_extension(&rao(s.w.org_a), s.ep_a.id)
        .await
        .unwrap();
    assert_ne!(e.uri_extension, old);
    assert!(e.uri_extension.len() >= 20);
    assert_eq!(kind(ra.endpoint(&old).await).0, ErrorKind::NotFound);
    assert_eq!(ra.endpoint(&e.uri_extension).await.unwrap().id, e.id);
    let events =
        s.w.store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
    let ev = events
        .iter()
        .find(|x| x.action == "endpoint.uri-extension")
        .unwrap();
    assert_eq!(ev.organisation_id, Some(s.w.org_a));
    assert!(ev.before.as_deref().unwrap().contains(&old));
}

#[tokio::test]
async fn only_an_mrao_moves_another_organisations_default() {
    let s = setup().await;
    let ra = &s.w.ra;
    let mut r = account_req(s.ep_b.id, "DefaultB", s.profile);
    r.is_default = true;
    ra.add_account(&mrao(), r).await.unwrap();
    let mut r = account_req(s.ep_a.id, "DefaultA", s.profile);
    r.is_default = true;
    assert_eq!(
        kind(ra.add_account(&rao(s.w.org_a), r.clone()).await).0,
        ErrorKind::Forbidden
    );
    let a = ra.add_account(&mrao(), r).await.unwrap().account;
    assert_eq!(ra.account_for_label(None).await.unwrap().id, a.id);
}

#[tokio::test]
async fn a_form_session_that_chose_a_deleted_account_cannot_enroll() {
    let s = setup().await;
    let ra = &s.w.ra;
    let session = crate::domain::WebSession {
        id: 1,
        endpoint_id: s.ep_a.id,
        email: crate::domain::EmailAddress::parse("p@a.example").unwrap(),
        person_id: None,
        account_id: Some(s.acc_a.id),
        auth_type: AuthType::EmailConfirmation,
        created_at: T0,
        expires_at: T0 + 3600,
    };
    assert_eq!(
        ra.enrollment_form(&session).await.unwrap().account.id,
        s.acc_a.id
    );
    ra.remove_account(&mrao(), s.acc_a.id).await.unwrap();
    assert_eq!(
        kind(ra.enrollment_form(&session).await).0,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn names_resolve_within_scope_and_a_shared_name_is_refused_naming_the_organisations() {
    let s = setup().await;
    let w = &s.w;
    // Both organisations have an endpoint "Main": without an organisation that is refused,
    // naming both, never the first picked.
    let (k, field, msg) = kind(w.ra.endpoint_named(&mrao(), None, "Main").await);
    assert_eq!(
        (k, field.as_deref()),
        (ErrorKind::Malformed, Some("organisation"))
    );
    assert!(msg.contains("\"A\"") && msg.contains("\"B\""), "{msg}");
    let e =
        w.ra.endpoint_named(&mrao(), Some(w.org_b), " Main ")
            .await
            .unwrap();
    assert_eq!(e.id, s.ep_b.id);
    // An RAO sees only its own, so for it the name is unambiguous.
    let e =
        w.ra.endpoint_named(&rao(w.org_a), None, "Main")
            .await
            .unwrap();
    assert_eq!(e.id, s.ep_a.id);
    let (k, _, _) = kind(
        w.ra.endpoint_named(&rao(w.org_a), Some(w.org_b), "Main")
            .await,
    );
    assert_eq!(k, ErrorKind::NotFound);
    let (k, _, msg) = kind(w.ra.endpoint_named(&mrao(), Some(w.org_a), "Nope").await);
    assert!(
        k == ErrorKind::NotFound && msg.contains("\"Nope\""),
        "{msg}"
    );

    let a = w.ra.account_named(&mrao(), None, "Ops").await.unwrap();
    assert_eq!(a.id, s.acc_b.id);
    let (k, _, _) = kind(w.ra.account_named(&rao(w.org_a), None, "Ops").await);
    assert_eq!(k, ErrorKind::NotFound);
    let a =
        w.ra.account_named(&rao(w.org_a), None, "Staff")
            .await
            .unwrap();
    assert_eq!(a.id, s.acc_a.id);
    // A deleted account is no longer found by its name.
    w.ra.remove_account(&mrao(), s.acc_a.id).await.unwrap();
    let (k, _, _) = kind(w.ra.account_named(&mrao(), None, "Staff").await);
    assert_eq!(k, ErrorKind::NotFound);

    assert_eq!(
        w.ra.profile_named(&rao(w.org_a), "person")
            .await
            .unwrap()
            .id,
        s.profile
    );
    let (k, _, _) = kind(w.ra.profile_named(&drao(w.org_a, w.dept_a), "person").await);
    assert_eq!(k, ErrorKind::Forbidden);
    let (k, _, _) = kind(w.ra.profile_named(&mrao(), "nosuch").await);
    assert_eq!(k, ErrorKind::NotFound);

    let p =
        w.ra.add_person(
            &mrao(),
            PersonRequest {
                organisation_id: w.org_a,
                department_id: Some(w.dept_a),
                email: "ann@a.example".into(),
                first_name: "Ann".into(),
                middle_name: String::new(),
                last_name: "A".into(),
                secret_id: SecretIdChoice::None,
            },
        )
        .await
        .unwrap()
        .person;
    assert_eq!(
        w.ra.person_by_email(&drao(w.org_a, w.dept_a), "ANN@a.example")
            .await
            .unwrap()
            .id,
        p.id
    );
    let (k, _, _) = kind(w.ra.person_by_email(&rao(w.org_b), "ann@a.example").await);
    assert_eq!(k, ErrorKind::NotFound);
    let (k, field, _) = kind(w.ra.person_by_email(&mrao(), "not an address").await);
    assert_eq!((k, field.as_deref()), (ErrorKind::Malformed, Some("email")));
}
