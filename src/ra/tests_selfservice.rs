//! Self-enrollment (selfservice.rs, throttle.rs) against a real database (SQLite, or
//! PostgreSQL when `ESTGATE_TEST_DATABASE_URL` is set) with a fake clock: sign-in by emailed
//! link or secret ID, web sessions, account choice, the form, and EST email confirmation.
//!
//! There is no mail worker here: `World::deliver` does its part exactly as the worker will,
//! claiming the outbox and minting each link's secret at send time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::*;
use crate::ca::dev::{ensure_dev_ca, PkiFiles};
use crate::domain::{generate_secret, hash_token, Endpoint, Id, KeyType, WebSession};
use crate::error::ErrorKind;
use crate::store::{NewAccount, NewEndpoint, NewPerson, NewProfile, OutboxItem};
use crate::testing::{database_url, FakeClock};

const T0: i64 = 1_790_000_000;
const SRC: &str = "192.0.2.1:40000";

struct World {
    ra: Ra,
    clock: Arc<FakeClock>,
    store: Store,
    /// Offers both sign-in methods.
    main: Endpoint,
    /// Offers sign-in with a secret ID only.
    secret_only: Endpoint,
    /// Offers email confirmation only.
    email_only: Endpoint,
    eng: Id,
    _dir: tempfile::TempDir,
}

/// An account on `endpoint` with the common settings; tests change fields by struct update.
fn account(endpoint: &Endpoint, name: &str, code: Option<&str>, profiles: &[Id]) -> NewAccount {
    NewAccount {
        endpoint_id: endpoint.id,
        organisation_id: endpoint.organisation_id,
        department_id: None,
        name: name.into(),
        csr_method: crate::domain::CsrMethod::Both,
        allow_empty_pkcs12_password: false,
        authorization: match code {
            Some(_) => Authorization::AccessCode,
            None => Authorization::None,
        },
        access_code_hash: code.map(|c| hash_secret(&Secret::new(c))),
        est_label: Some(name.into()),
        is_default: false,
        pkcs12_encryption: crate::domain::Pkcs12Encryption::Modern,
        profile_ids: profiles.to_vec(),
    }
}

/// Organisation "Org" (example.org, example.net) with departments Engineering and Sales;
/// persons alice (Engineering, secret ID), bob (Sales, secret ID), carol (no department, no
/// secret ID); organisation "Other" (other.test) with dave (secret ID). Accounts on `main`:
/// staff, eng (Engineering) listed; guests, eng-guests (Engineering), open (empty PKCS#12
/// password allowed), approval, server-only by access code. On `secret_only`: no-confirm.
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
    let other = store
        .create_organisation("Other", &["other.test".into()], T0)
        .await
        .unwrap();
    let eng = store
        .create_department(org.id, "Engineering")
        .await
        .unwrap();
    let sales = store.create_department(org.id, "Sales").await.unwrap();
    for (org_id, email, first, last, dept, secret) in [
        (
            org.id,
            "alice@example.org",
            "Alice",
            "Smith",
            Some(eng.id),
            Some("alice-secret"),
        ),
        (
            org.id,
            "bob@example.org",
            "Bob",
            "Jones",
            Some(sales.id),
            Some("bob-secret"),
        ),
        (org.id, "carol@example.org", "Carol", "King", None, None),
        (
            other.id,
            "dave@other.test",
            "Dave",
            "Else",
            None,
            Some("dave-secret"),
        ),
    ] {
        store
            .create_person(
                NewPerson {
                    organisation_id: org_id,
                    department_id: dept,
                    email: EmailAddress::parse(email).unwrap(),
                    first_name: first.into(),
                    middle_name: String::new(),
                    last_name: last.into(),
                    secret_id_hash: secret.map(|s| hash_secret(&Secret::new(s))),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let profile = |name: &str, keys: Vec<KeyType>, terms: Vec<u32>, approval: bool| NewProfile {
        name: name.into(),
        subject_source: SubjectSource::Person,
        default_key_type: keys[0],
        key_types: keys,
        default_term_years: terms[0],
        terms_years: terms,
        requires_approval: approval,
    };
    let person = store
        .create_profile(profile(
            "person",
            vec![KeyType::EcP256, KeyType::Rsa { bits: 2048 }],
            vec![1, 2, 3],
            false,
        ))
        .await
        .unwrap();
    let smime = store
        .create_profile(profile("smime", vec![KeyType::EcP256], vec![1], false))
        .await
        .unwrap();
    let approval = store
        .create_profile(profile("approval", vec![KeyType::EcP256], vec![1], true))
        .await
        .unwrap();
    let endpoint = |name: &str, auth_types: Vec<AuthType>| NewEndpoint {
        organisation_id: org.id,
        name: name.into(),
        uri_extension: generate_secret(20).expose().into(),
        auth_types,
        help_link_text: String::new(),
        help_link_target: String::new(),
        help_text: String::new(),
        eula_text: "Be nice.".into(),
    };
    let main = store
        .create_endpoint(endpoint(
            "Main",
            vec![AuthType::EmailConfirmation, AuthType::SecretId],
        ))
        .await
        .unwrap();
    let secret_only = store
        .create_endpoint(endpoint("Secret only", vec![AuthType::SecretId]))
        .await
        .unwrap();
    let email_only = store
        .create_endpoint(endpoint("Email only", vec![AuthType::EmailConfirmation]))
        .await
        .unwrap();
    let p = [person.id];
    for a in [
        account(&main, "staff", None, &[person.id, smime.id]),
        NewAccount {
            department_id: Some(eng.id),
            ..account(&main, "eng", None, &p)
        },
        account(&main, "guests", Some("guest-code"), &p),
        NewAccount {
            department_id: Some(eng.id),
            ..account(&main, "eng-guests", Some("eng-code"), &p)
        },
        NewAccount {
            allow_empty_pkcs12_password: true,
            ..account(&main, "open", Some("open-code"), &p)
        },
        account(&main, "approval", Some("approval-code"), &[approval.id]),
        NewAccount {
            csr_method: crate::domain::CsrMethod::Server,
            ..account(&main, "server-only", Some("server-code"), &p)
        },
        account(&secret_only, "no-confirm", Some("noconfirm-code"), &p),
    ] {
        store.create_account(a).await.unwrap();
    }
    World {
        ra: Ra::new(store.clone(), ca, clock.clone()),
        clock,
        store,
        main,
        secret_only,
        email_only,
        eng: eng.id,
        _dir: dir,
    }
}

/// What a refusal must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Rows {
    orders: u64,
    certificates: usize,
    persons: usize,
    outbox_pending: u64,
    sign_ins: usize,
}

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
    r.expect_err("expected a refusal").kind
}

fn secret(s: &str) -> Secret {
    Secret::new(s)
}

impl World {
    async fn rows(&self) -> Rows {
        Rows {
            orders: self.store.count_orders().await.unwrap(),
            certificates: self.store.certificates().await.unwrap().len(),
            persons: self.store.persons().await.unwrap().len(),
            outbox_pending: self.store.outbox_pending().await.unwrap(),
            sign_ins: self.audited("web.sign-in").await,
        }
    }

    async fn audited(&self, action: &str) -> usize {
        self.store
            .audit_events()
            .await
            .unwrap()
            .iter()
            .filter(|e| e.2 == action)
            .count()
    }

    async fn person(&self, email: &str) -> Option<Person> {
        self.store
            .person_by_email(&EmailAddress::parse(email).unwrap())
            .await
            .unwrap()
    }

    async fn account(&self, name: &str) -> Account {
        self.ra.account_for_label(Some(name)).await.unwrap()
    }

    /// The mail worker's part: claims the due messages, mints each link's secret at send
    /// time, and marks the message sent. Returns what was "mailed", in queue order.
    async fn deliver(&self) -> Vec<(OutboxItem, Secret)> {
        let now = self.clock.now();
        let mut mailed = Vec::new();
        for item in self.store.claim_outbox(now, 60, 10).await.unwrap() {
            let link = generate_secret(32);
            let token = item
                .email_token_id
                .expect("an email-confirmation row names its token");
            assert!(
                self.store
                    .mint_email_token(token, &hash_token(&link), now)
                    .await
                    .unwrap(),
                "the link of {} is no longer usable",
                item.recipient
            );
            self.store.outbox_sent(item.id, now).await.unwrap();
            mailed.push((item, link));
        }
        mailed
    }

    /// Asks for a sign-in link at `endpoint` and returns the one secret that was mailed.
    async fn link(&self, endpoint: &Endpoint, email: &str) -> Secret {
        self.ra
            .start_email_confirmation(endpoint, email, SRC)
            .await
            .unwrap();
        let mut mailed = self.deliver().await;
        assert_eq!(mailed.len(), 1);
        let (item, link) = mailed.remove(0);
        assert_eq!(item.recipient, email.to_lowercase());
        link
    }

    /// Signs in by emailed link; returns the session cookie's secret.
    async fn sign_in(&self, endpoint: &Endpoint, email: &str) -> Secret {
        let link = self.link(endpoint, email).await;
        match self
            .ra
            .follow_email_link(endpoint, &link, SRC)
            .await
            .unwrap()
        {
            SignInOutcome::Session(cookie) => cookie,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    async fn sign_in_with_secret(&self, email: &str, secret_id: &str) -> Secret {
        self.ra
            .sign_in_with_secret_id(&self.main, email, &secret(secret_id), SRC)
            .await
            .unwrap()
    }

    async fn session(&self, endpoint: &Endpoint, cookie: &Secret) -> WebSession {
        self.ra
            .web_session(endpoint, cookie)
            .await
            .unwrap()
            .expect("a live session")
    }
}

// ---- sign-in by emailed link ----------------------------------------------------------

#[tokio::test]
async fn email_sign_in_is_offered_for_the_organisations_addresses_only() {
    let w = world().await;
    let before = w.rows().await;
    let out =
        w.ra.start_email_confirmation(&w.main, "eve@elsewhere.com", SRC)
            .await
            .unwrap_err();
    assert_eq!(out.kind, ErrorKind::Forbidden);
    assert!(
        out.message.contains("example.org, example.net"),
        "{}",
        out.message
    );
    assert_eq!(
        kind(
            w.ra.start_email_confirmation(&w.main, "not an address", SRC)
                .await
        ),
        ErrorKind::Malformed
    );
    assert_eq!(
        kind(
            w.ra.start_email_confirmation(&w.secret_only, "carol@example.org", SRC)
                .await
        ),
        ErrorKind::Forbidden
    );
    assert_eq!(w.rows().await, before);

    // On record or not, an address of the organisation gets the same answer.
    let known =
        w.ra.start_email_confirmation(&w.main, "carol@example.org", SRC)
            .await
            .unwrap();
    assert_eq!(w.store.outbox_pending().await.unwrap(), 1);
    let unknown =
        w.ra.start_email_confirmation(&w.main, " Newcomer@Example.NET ", SRC)
            .await
            .unwrap();
    assert_eq!(known.as_str(), "carol@example.org");
    assert_eq!(unknown.as_str(), "newcomer@example.net");
    assert_eq!(w.store.outbox_pending().await.unwrap(), 2);
    let recipients: Vec<String> = w
        .store
        .claim_outbox(T0, 60, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            assert_eq!(i.kind, crate::store::OUTBOX_EMAIL_CONFIRMATION);
            i.recipient
        })
        .collect();
    assert_eq!(recipients, ["carol@example.org", "newcomer@example.net"]);
    // Asking for a link signs nobody in and creates nobody.
    assert_eq!(w.rows().await.sign_ins, 0);
    assert_eq!(w.rows().await.persons, before.persons);
}

#[tokio::test]
async fn a_link_signs_in_once() {
    let w = world().await;
    let link = w.link(&w.main, "carol@example.org").await;
    let cookie = match w.ra.follow_email_link(&w.main, &link, SRC).await.unwrap() {
        SignInOutcome::Session(c) => c,
        other => panic!("expected a session, got {other:?}"),
    };
    let s = w.session(&w.main, &cookie).await;
    assert_eq!(s.email.as_str(), "carol@example.org");
    assert_eq!(
        s.person_id,
        Some(w.person("carol@example.org").await.unwrap().id)
    );
    assert_eq!(s.auth_type, AuthType::EmailConfirmation);
    assert_eq!(s.account_id, None);
    assert_eq!(s.expires_at, T0 + SESSION_TTL_SECS);
    assert_eq!(w.audited("web.sign-in").await, 1);

    let again =
        w.ra.follow_email_link(&w.main, &link, SRC)
            .await
            .unwrap_err();
    assert_eq!(again.kind, ErrorKind::AlreadyUsed);
    assert_eq!(w.audited("web.sign-in").await, 1);

    // An address without a person record signs in too, without a person.
    let cookie = w.sign_in(&w.main, "newcomer@example.org").await;
    assert_eq!(w.session(&w.main, &cookie).await.person_id, None);
}

#[tokio::test]
async fn a_tampered_link_is_not_valid() {
    let w = world().await;
    let link = w.link(&w.main, "carol@example.org").await;
    let mut chars: Vec<char> = link.expose().chars().collect();
    chars[7] = if chars[7] == 'a' { 'b' } else { 'a' };
    let tampered = Secret::new(chars.into_iter().collect::<String>());
    let before = w.rows().await;
    let e =
        w.ra.follow_email_link(&w.main, &tampered, SRC)
            .await
            .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(
        kind(w.ra.follow_email_link(&w.main, &Secret::new(""), SRC).await),
        ErrorKind::Unauthorized
    );
    assert_eq!(w.rows().await, before);
    // The real link is not burnt by a guess.
    assert!(matches!(
        w.ra.follow_email_link(&w.main, &link, SRC).await.unwrap(),
        SignInOutcome::Session(_)
    ));
}

#[tokio::test]
async fn links_expire_after_an_hour_by_default() {
    let w = world().await;
    assert_eq!(w.ra.email_link_ttl_secs(), 3600);
    let early = w.link(&w.main, "carol@example.org").await;
    let late = w.link(&w.main, "newcomer@example.org").await;
    w.clock.advance(3599);
    assert!(matches!(
        w.ra.follow_email_link(&w.main, &early, SRC).await.unwrap(),
        SignInOutcome::Session(_)
    ));
    w.clock.advance(1);
    let before = w.rows().await;
    let e =
        w.ra.follow_email_link(&w.main, &late, SRC)
            .await
            .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Expired);
    assert!(e.message.contains("expired"), "{}", e.message);
    assert_eq!(w.rows().await, before);
}

#[tokio::test]
async fn a_configured_link_ttl_is_honoured() {
    let w = world().await;
    let ra = w.ra.clone().with_email_link_ttl(600);
    assert_eq!(ra.email_link_ttl_secs(), 600);
    ra.start_email_confirmation(&w.main, "carol@example.org", SRC)
        .await
        .unwrap();
    let (_, link) = w.deliver().await.remove(0);
    w.clock.advance(599);
    let early = w.link(&w.main, "newcomer@example.org").await;
    w.clock.advance(1);
    assert_eq!(
        kind(ra.follow_email_link(&w.main, &link, SRC).await),
        ErrorKind::Expired
    );
    // A link's lifetime is fixed when it is asked for: this one came through the
    // default RA and lasts an hour.
    assert!(matches!(
        ra.follow_email_link(&w.main, &early, SRC).await.unwrap(),
        SignInOutcome::Session(_)
    ));
}

#[tokio::test]
async fn a_second_request_invalidates_the_first_link() {
    let w = world().await;
    let first = w.link(&w.main, "carol@example.org").await;
    w.clock.advance(30);
    let second = w.link(&w.main, "Carol@Example.org").await;
    assert_eq!(
        kind(w.ra.follow_email_link(&w.main, &first, SRC).await),
        ErrorKind::AlreadyUsed
    );
    assert!(matches!(
        w.ra.follow_email_link(&w.main, &second, SRC).await.unwrap(),
        SignInOutcome::Session(_)
    ));
    assert_eq!(w.audited("web.sign-in").await, 1);
}

#[tokio::test]
async fn a_link_works_only_at_the_endpoint_it_was_sent_for() {
    let w = world().await;
    let link = w.link(&w.main, "carol@example.org").await;
    let before = w.rows().await;
    assert_eq!(
        kind(w.ra.follow_email_link(&w.email_only, &link, SRC).await),
        ErrorKind::Unauthorized
    );
    assert_eq!(w.rows().await, before);
    let cookie = match w.ra.follow_email_link(&w.main, &link, SRC).await.unwrap() {
        SignInOutcome::Session(c) => c,
        other => panic!("expected a session, got {other:?}"),
    };
    // And the session it gives is no session at the other endpoint either.
    assert!(w
        .ra
        .web_session(&w.email_only, &cookie)
        .await
        .unwrap()
        .is_none());
    assert!(w.ra.web_session(&w.main, &cookie).await.unwrap().is_some());
}

// ---- mail rate limits -----------------------------------------------------------------

fn retry_after(kind: ErrorKind) -> u64 {
    match kind {
        ErrorKind::RateLimited { retry_after } => {
            assert!(retry_after > 0);
            retry_after
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fourth_email_to_one_address_within_the_window_is_refused() {
    let w = world().await;
    // Respelling the address does not buy more emails.
    for (i, email) in [
        "carol@example.org",
        "Carol@example.org",
        "CAROL@EXAMPLE.ORG",
    ]
    .into_iter()
    .enumerate()
    {
        w.ra.start_email_confirmation(&w.main, email, &format!("192.0.2.{i}:1"))
            .await
            .unwrap();
        w.clock.advance(60);
    }
    assert_eq!(w.store.outbox_pending().await.unwrap(), 3);
    let refused =
        w.ra.start_email_confirmation(&w.main, "carol@example.org", "192.0.2.9:1")
            .await;
    // The oldest email was sent 180 s ago; the window is 15 minutes.
    let wait = retry_after(kind(refused));
    assert_eq!(wait, (throttle::MAIL_WINDOW_SECS - 180) as u64);
    assert_eq!(w.store.outbox_pending().await.unwrap(), 3);
    // Another recipient is not affected.
    w.ra.start_email_confirmation(&w.main, "newcomer@example.org", "192.0.2.9:1")
        .await
        .unwrap();
    assert_eq!(w.store.outbox_pending().await.unwrap(), 4);
    // Waiting as long as the answer said is enough.
    w.clock.advance(wait as i64);
    w.ra.start_email_confirmation(&w.main, "carol@example.org", "192.0.2.9:1")
        .await
        .unwrap();
    assert_eq!(w.store.outbox_pending().await.unwrap(), 5);
}

#[tokio::test]
async fn an_eleventh_email_from_one_client_address_is_refused() {
    let w = world().await;
    for i in 0..throttle::MAILS_PER_ADDRESS {
        // Another port is the same client.
        w.ra.start_email_confirmation(
            &w.main,
            &format!("person{i}@example.org"),
            &format!("198.51.100.7:{}", 1000 + i),
        )
        .await
        .unwrap();
    }
    let wait = retry_after(kind(
        w.ra.start_email_confirmation(&w.main, "person-new@example.org", "198.51.100.7:9")
            .await,
    ));
    assert_eq!(wait, throttle::MAIL_WINDOW_SECS as u64);
    assert_eq!(
        w.store.outbox_pending().await.unwrap(),
        throttle::MAILS_PER_ADDRESS
    );
    // Another client is not affected.
    w.ra.start_email_confirmation(&w.main, "person-new@example.org", "198.51.100.8:9")
        .await
        .unwrap();
    w.clock.advance(wait as i64);
    w.ra.start_email_confirmation(&w.main, "person-other@example.org", "198.51.100.7:9")
        .await
        .unwrap();
    assert_eq!(
        w.store.outbox_pending().await.unwrap(),
        throttle::MAILS_PER_ADDRESS + 2
    );
}

// ---- sign-in with a secret ID, sessions -----------------------------------------------

#[tokio::test]
async fn a_secret_id_signs_in_a_person_on_record() {
    let w = world().await;
    let cookie = w
        .sign_in_with_secret(" Alice@Example.org ", "alice-secret")
        .await;
    let s = w.session(&w.main, &cookie).await;
    assert_eq!(s.email.as_str(), "alice@example.org");
    assert_eq!(
        s.person_id,
        Some(w.person("alice@example.org").await.unwrap().id)
    );
    assert_eq!(s.auth_type, AuthType::SecretId);
    assert_eq!(s.expires_at, T0 + SESSION_TTL_SECS);
    let events = w.store.audit_events().await.unwrap();
    let (_, actor, action, _, detail, source) = events.last().unwrap();
    assert_eq!(
        (actor.as_str(), action.as_str(), source.as_str()),
        ("alice@example.org", "web.sign-in", SRC)
    );
    assert!(detail.contains("method=secret-id"), "{detail}");
}

#[tokio::test]
async fn wrong_secret_ids_all_get_the_same_answer() {
    let w = world().await;
    let before = w.rows().await;
    for (email, secret_id) in [
        ("alice@example.org", "bob-secret"),
        ("alice@example.org", ""),
        ("nobody@example.org", "alice-secret"),
        // On record, right secret, but in another organisation.
        ("dave@other.test", "dave-secret"),
        // On record without a secret ID.
        ("carol@example.org", ""),
        ("not an address", "alice-secret"),
    ] {
        let e =
            w.ra.sign_in_with_secret_id(&w.main, email, &secret(secret_id), SRC)
                .await
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{email}");
        assert_eq!(e.message, "wrong email address or secret ID", "{email}");
    }
    assert_eq!(w.rows().await, before);
}

#[tokio::test]
async fn five_wrong_secret_ids_lock_the_address_until_the_window_passes() {
    let w = world().await;
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            kind(
                w.ra.sign_in_with_secret_id(&w.main, "alice@example.org", &secret("guess"), SRC)
                    .await
            ),
            ErrorKind::Unauthorized
        );
        w.clock.advance(10);
    }
    let locked =
        w.ra.sign_in_with_secret_id(&w.main, "ALICE@example.org", &secret("alice-secret"), SRC)
            .await;
    let wait = retry_after(kind(locked));
    assert_eq!(wait, (WINDOW_SECS - 50) as u64);
    assert_eq!(w.audited("web.sign-in").await, 0);
    // Other persons, and the same person at another endpoint, are not affected.
    w.sign_in_with_secret("bob@example.org", "bob-secret").await;
    w.ra.sign_in_with_secret_id(
        &w.secret_only,
        "alice@example.org",
        &secret("alice-secret"),
        SRC,
    )
    .await
    .unwrap();
    w.clock.advance(wait as i64);
    w.sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
}

#[tokio::test]
async fn secret_id_sign_in_needs_an_endpoint_that_offers_it() {
    let w = world().await;
    let before = w.rows().await;
    let e =
        w.ra.sign_in_with_secret_id(
            &w.email_only,
            "alice@example.org",
            &secret("alice-secret"),
            SRC,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("secret ID"), "{}", e.message);
    assert_eq!(w.rows().await, before);
}

#[tokio::test]
async fn every_sign_in_makes_a_new_session_and_sign_out_ends_it() {
    let w = world().await;
    let first = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    let second = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    let by_link = w.sign_in(&w.main, "alice@example.org").await;
    assert_ne!(first.expose(), second.expose());
    assert_ne!(second.expose(), by_link.expose());
    assert_eq!(first.expose().len(), 32);
    let ids = [
        w.session(&w.main, &first).await.id,
        w.session(&w.main, &second).await.id,
        w.session(&w.main, &by_link).await.id,
    ];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    w.ra.sign_out(&first).await.unwrap();
    assert!(w.ra.web_session(&w.main, &first).await.unwrap().is_none());
    // Signing out one session leaves the others.
    assert_eq!(w.session(&w.main, &second).await.id, ids[1]);
    // Signing out twice, or with a cookie that names nothing, is harmless.
    w.ra.sign_out(&first).await.unwrap();
    w.ra.sign_out(&secret("no such session")).await.unwrap();
    assert_eq!(w.session(&w.main, &by_link).await.id, ids[2]);
}

#[tokio::test]
async fn a_session_expires_after_its_ttl() {
    let w = world().await;
    let cookie = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    w.clock.advance(SESSION_TTL_SECS - 1);
    assert!(w.ra.web_session(&w.main, &cookie).await.unwrap().is_some());
    w.clock.advance(1);
    assert!(w.ra.web_session(&w.main, &cookie).await.unwrap().is_none());
    // Expired sessions are deleted: turning the clock back does not revive them.
    let back = FakeClock::at(T0);
    let ra = Ra::new(w.store.clone(), w.ra.ca.clone(), back);
    assert!(ra.web_session(&w.main, &cookie).await.unwrap().is_none());
}

// ---- choosing an account --------------------------------------------------------------

impl World {
    async fn choose_with_code(&self, cookie: &Secret, code: &str) -> Result<Account, Error> {
        let s = self.session(&self.main, cookie).await;
        self.ra
            .choose_account_with_code(&s, &secret(code), SRC)
            .await
    }

    async fn chosen(&self, cookie: &Secret) -> Option<Id> {
        self.session(&self.main, cookie).await.account_id
    }
}

fn names(accounts: Vec<Account>) -> Vec<String> {
    accounts.into_iter().map(|a| a.name).collect()
}

#[tokio::test]
async fn listed_accounts_follow_the_organisation_and_the_department() {
    let w = world().await;
    let alice = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    let bob = w.sign_in_with_secret("bob@example.org", "bob-secret").await;
    let carol = w.sign_in(&w.main, "carol@example.org").await;
    let newcomer = w.sign_in(&w.main, "newcomer@example.org").await;
    for (cookie, expected) in [
        (&alice, &["eng", "staff"][..]),
        (&bob, &["staff"]),
        (&carol, &["staff"]),
        // Without a person record: accounts with authorization `none` need one.
        (&newcomer, &[]),
    ] {
        let s = w.session(&w.main, cookie).await;
        assert_eq!(
            names(w.ra.listed_accounts(&s).await.unwrap()),
            expected,
            "{}",
            s.email
        );
    }
    // Accounts of another endpoint are not listed there.
    let elsewhere = w.sign_in(&w.email_only, "carol@example.org").await;
    let s = w.session(&w.email_only, &elsewhere).await;
    assert!(w.ra.listed_accounts(&s).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_a_listed_account_can_be_chosen_from_the_list() {
    let w = world().await;
    let bob = w.sign_in_with_secret("bob@example.org", "bob-secret").await;
    let newcomer = w.sign_in(&w.main, "newcomer@example.org").await;
    for (cookie, account) in [
        // Another department's account, an access-code account, an account of another
        // endpoint, and a listed account for someone without a person record.
        (&bob, "eng"),
        (&bob, "guests"),
        (&bob, "no-confirm"),
        (&newcomer, "staff"),
    ] {
        let s = w.session(&w.main, cookie).await;
        let e =
            w.ra.choose_listed_account(&s, w.account(account).await.id)
                .await
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden, "{account}");
        assert_eq!(w.chosen(cookie).await, None);
    }
    let s = w.session(&w.main, &bob).await;
    assert_eq!(kind(w.ra.enrollment_form(&s).await), ErrorKind::Forbidden);
    let staff = w.account("staff").await;
    let chosen = w.ra.choose_listed_account(&s, staff.id).await.unwrap();
    assert_eq!(chosen.name, "staff");
    assert_eq!(w.chosen(&bob).await, Some(staff.id));
    let form =
        w.ra.enrollment_form(&w.session(&w.main, &bob).await)
            .await
            .unwrap();
    assert_eq!(form.account.id, staff.id);
    assert_eq!(form.email.as_str(), "bob@example.org");
    assert_eq!(form.person.unwrap().first_name, "Bob");
    assert!(form.department.is_none());
    let profiles: Vec<&str> = form.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(profiles, ["person", "smime"]);
    assert_eq!(form.endpoint.eula_text, "Be nice.");
}

#[tokio::test]
async fn an_access_code_selects_the_account_it_protects() {
    let w = world().await;
    let cookie = w.sign_in(&w.main, "newcomer@example.org").await;
    for code in ["wrong-code", "", "noconfirm-code"] {
        let e = w.choose_with_code(&cookie, code).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{code:?}");
        assert_eq!(e.message, "this access code is not valid here");
        assert_eq!(w.chosen(&cookie).await, None);
    }
    let guests = w.choose_with_code(&cookie, " guest-code ").await.unwrap();
    assert_eq!(guests.name, "guests");
    assert_eq!(w.chosen(&cookie).await, Some(guests.id));
    let form =
        w.ra.enrollment_form(&w.session(&w.main, &cookie).await)
            .await
            .unwrap();
    assert_eq!(form.account.name, "guests");
    assert!(form.person.is_none());
    // Another code chooses again.
    let open = w.choose_with_code(&cookie, "open-code").await.unwrap();
    assert_eq!(w.chosen(&cookie).await, Some(open.id));
}

#[tokio::test]
async fn five_wrong_access_codes_lock_the_choice_until_the_window_passes() {
    let w = world().await;
    let cookie = w.sign_in(&w.main, "newcomer@example.org").await;
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            kind(w.choose_with_code(&cookie, "guess").await),
            ErrorKind::Unauthorized
        );
        w.clock.advance(10);
    }
    let wait = retry_after(kind(w.choose_with_code(&cookie, "guest-code").await));
    assert_eq!(wait, (WINDOW_SECS - 50) as u64);
    assert_eq!(w.chosen(&cookie).await, None);
    // Another person is not affected.
    let carol = w.sign_in(&w.main, "carol@example.org").await;
    w.choose_with_code(&carol, "guest-code").await.unwrap();
    w.clock.advance(wait as i64);
    w.choose_with_code(&cookie, "guest-code").await.unwrap();
}

#[tokio::test]
async fn a_department_account_by_access_code_needs_the_department_of_a_person_on_record() {
    let w = world().await;
    let bob = w.sign_in_with_secret("bob@example.org", "bob-secret").await;
    let e = w.choose_with_code(&bob, "eng-code").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("department"), "{}", e.message);
    assert_eq!(w.chosen(&bob).await, None);
    let alice = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    let eng = w.choose_with_code(&alice, "eng-code").await.unwrap();
    assert_eq!(eng.department_id, Some(w.eng));
    // Without a person record there is nothing to contradict: the person is created in
    // the account's department on submit (see the form tests).
    let newcomer = w.sign_in(&w.main, "newcomer@example.org").await;
    w.choose_with_code(&newcomer, "eng-code").await.unwrap();
}
