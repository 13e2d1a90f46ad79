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
        bind_device_names: false,
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
        smime: None,
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
            .audit_events(&crate::store::AuditFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == action)
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
async fn a_fourth_email_to_one_address_from_one_client_within_the_window_is_refused() {
    let w = world().await;
    // Respelling the address does not buy more emails.
    for email in [
        "carol@example.org",
        "Carol@example.org",
        "CAROL@EXAMPLE.ORG",
    ] {
        w.ra.start_email_confirmation(&w.main, email, "192.0.2.1:1")
            .await
            .unwrap();
        w.clock.advance(60);
    }
    assert_eq!(w.store.outbox_pending().await.unwrap(), 3);
    let refused =
        w.ra.start_email_confirmation(&w.main, "carol@example.org", "192.0.2.1:2")
            .await;
    // The oldest email was sent 180 s ago; the window is 15 minutes.
    let wait = retry_after(kind(refused));
    assert_eq!(wait, (throttle::MAIL_WINDOW_SECS - 180) as u64);
    assert_eq!(w.store.outbox_pending().await.unwrap(), 3);
    // Another recipient from the same client is not affected, nor carol from elsewhere
    // (one client cannot use up someone's links) ...
    w.ra.start_email_confirmation(&w.main, "newcomer@example.org", "192.0.2.1:3")
        .await
        .unwrap();
    let mut sent = 4;
    for i in 0..(throttle::MAILS_PER_RECIPIENT - 3) {
        w.ra.start_email_confirmation(
            &w.main,
            "carol@example.org",
            &format!("192.0.2.{}:1", 10 + i),
        )
        .await
        .unwrap();
        sent += 1;
    }
    // ... until carol's own limit, from any client.
    assert_eq!(
        kind(
            w.ra.start_email_confirmation(&w.main, "carol@example.org", "203.0.113.1:1")
                .await
        ),
        ErrorKind::RateLimited { retry_after: wait }
    );
    assert_eq!(w.store.outbox_pending().await.unwrap(), sent);
    // Waiting as long as the answer said is enough.
    w.clock.advance(wait as i64);
    w.ra.start_email_confirmation(&w.main, "carol@example.org", "192.0.2.1:9")
        .await
        .unwrap();
    assert_eq!(w.store.outbox_pending().await.unwrap(), sent + 1);
}

#[tokio::test]
async fn concurrent_requests_cannot_exceed_the_mail_limit() {
    let w = world().await;
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let ra = w.ra.clone();
            let endpoint = w.main.clone();
            tokio::spawn(async move {
                ra.start_email_confirmation(
                    &endpoint,
                    "dave@example.org",
                    &format!("192.0.2.77:{i}"),
                )
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(ok, throttle::MAILS_PER_RECIPIENT_AND_ADDRESS, "{results:?}");
    assert_eq!(
        w.store.outbox_pending().await.unwrap(),
        throttle::MAILS_PER_RECIPIENT_AND_ADDRESS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_secrets_are_all_let_in() {
    // A fleet or a busy person sends the right secret many times at once, before any of
    // them was verified: none may be taken for a guess.
    let w = world().await;
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let ra = w.ra.clone();
            let endpoint = w.main.clone();
            tokio::spawn(async move {
                ra.sign_in_with_secret_id(
                    &endpoint,
                    "alice@example.org",
                    &Secret::new("alice-secret"),
                    SRC,
                )
                .await
                .map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_exceed_the_failure_limit() {
    let w = world().await;
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let ra = w.ra.clone();
            let endpoint = w.main.clone();
            tokio::spawn(async move {
                ra.sign_in_with_secret_id(
                    &endpoint,
                    "alice@example.org",
                    &Secret::new("guess"),
                    SRC,
                )
                .await
                .map(|_| ())
            })
        })
        .collect();
    let mut kinds = Vec::new();
    for h in handles {
        kinds.push(h.await.unwrap().unwrap_err().kind);
    }
    let verified = kinds
        .iter()
        .filter(|k| **k == ErrorKind::Unauthorized)
        .count() as u64;
    assert!(
        verified <= MAX_FAILURES,
        "{verified} guesses were checked: {kinds:?}"
    );
    assert!(kinds
        .iter()
        .all(|k| matches!(k, ErrorKind::Unauthorized | ErrorKind::RateLimited { .. })));
    // And the right secret is locked out now, as after five sequential guesses.
    assert!(matches!(
        kind(
            w.ra.sign_in_with_secret_id(&w.main, "alice@example.org", &secret("alice-secret"), SRC)
                .await
        ),
        ErrorKind::RateLimited { .. }
    ));
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
    let events = w
        .store
        .audit_events(&crate::store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = events.last().unwrap();
    assert_eq!(
        (e.actor.as_str(), e.action.as_str(), e.source.as_str()),
        ("alice@example.org", "web.sign-in", SRC)
    );
    assert!(e.detail.contains("method=secret-id"), "{}", e.detail);
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
    // Other persons are not affected; the same person at another endpoint is: the count
    // belongs to the secret ID, not to the page.
    w.sign_in_with_secret("bob@example.org", "bob-secret").await;
    assert!(matches!(
        kind(
            w.ra.sign_in_with_secret_id(
                &w.secret_only,
                "alice@example.org",
                &secret("alice-secret"),
                SRC,
            )
            .await
        ),
        ErrorKind::RateLimited { .. }
    ));
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
    // No department on the account: the person's, as the certificate will carry it.
    assert_eq!(form.department.map(|d| d.name).as_deref(), Some("Sales"));
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

// ---- the enrollment form --------------------------------------------------------------

const PW: &str = "correct horse";

/// A submission that passes: Ada King Lovelace, the profile's defaults, a server key.
fn form_request(password: &str) -> FormRequest {
    FormRequest {
        profile_id: None,
        term_years: None,
        key_type: None,
        first_name: "Ada".into(),
        middle_name: "King".into(),
        last_name: "Lovelace".into(),
        password: secret(password),
        password_confirmation: secret(password),
        encryption: crate::domain::Pkcs12Encryption::Modern,
        csr_der: None,
        eula_accepted: true,
    }
}

fn csr(alg: &'static rcgen::SignatureAlgorithm, cn: &str) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    (key, der)
}

fn field_errors(r: Result<FormOutcome, FormError>) -> FieldErrors {
    match r {
        Err(FormError::Fields(f)) => f,
        other => panic!("expected field errors, got {other:?}"),
    }
}

/// The certificates in a PKCS#12 file as OpenSSL reads them with `password`.
fn openssl_pkcs12_certificates(file: &[u8], password: &str) -> String {
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
    String::from_utf8(out.stdout).unwrap()
}

fn san(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect()
}

impl World {
    /// Signs in by emailed link as `email` and chooses the account `code` protects;
    /// returns the cookie.
    async fn form_session(&self, email: &str, code: &str) -> Secret {
        let cookie = self.sign_in(&self.main, email).await;
        self.choose_with_code(&cookie, code).await.unwrap();
        cookie
    }

    /// Signs in with a secret ID and chooses a listed account; returns the cookie.
    async fn listed_session(&self, email: &str, secret_id: &str, account: &str) -> Secret {
        let cookie = self.sign_in_with_secret(email, secret_id).await;
        let s = self.session(&self.main, &cookie).await;
        let id = self.account(account).await.id;
        self.ra.choose_listed_account(&s, id).await.unwrap();
        cookie
    }

    async fn submit(&self, s: &WebSession, req: FormRequest) -> Result<FormOutcome, FormError> {
        self.ra.enroll_from_form(s, req, SRC).await
    }
}

#[tokio::test]
async fn a_wrong_field_is_named_and_nothing_is_stored() {
    let w = world().await;
    let cookie = w.form_session("newcomer@example.org", "guest-code").await;
    let s = w.session(&w.main, &cookie).await;
    let approval = w.store.profile_by_name("approval").await.unwrap();
    let (_, p384) = csr(&rcgen::PKCS_ECDSA_P384_SHA384, "x");
    let before = w.rows().await;
    let cases = [
        (
            "eula",
            FormRequest {
                eula_accepted: false,
                ..form_request(PW)
            },
        ),
        // The account does not allow an empty PKCS#12 password.
        ("password", form_request("")),
        ("password", form_request("short")),
        (
            "password_confirmation",
            FormRequest {
                password_confirmation: secret("correct horsE"),
                ..form_request(PW)
            },
        ),
        (
            "term",
            FormRequest {
                term_years: Some(5),
                ..form_request(PW)
            },
        ),
        (
            "key_type",
            FormRequest {
                key_type: Some(KeyType::EcP384),
                ..form_request(PW)
            },
        ),
        (
            "last_name",
            FormRequest {
                last_name: "  ".into(),
                ..form_request(PW)
            },
        ),
        (
            "first_name",
            FormRequest {
                first_name: "Ada\u{7}".into(),
                ..form_request(PW)
            },
        ),
        (
            "middle_name",
            FormRequest {
                middle_name: "K".repeat(65),
                ..form_request(PW)
            },
        ),
        // A profile of another account.
        (
            "profile",
            FormRequest {
                profile_id: Some(approval.id),
                ..form_request(PW)
            },
        ),
        (
            "csr",
            FormRequest {
                csr_der: Some(b"\x30\x03abc".to_vec()),
                ..form_request(PW)
            },
        ),
        // A CSR whose key type the profile does not allow.
        (
            "csr",
            FormRequest {
                csr_der: Some(p384),
                ..form_request(PW)
            },
        ),
    ];
    for (field, req) in cases {
        let errors = field_errors(w.submit(&s, req).await);
        let fields: Vec<&str> = errors.0.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, [field], "{errors:?}");
    }
    let errors = field_errors(w.submit(&s, form_request("")).await);
    assert!(
        errors.get("password").unwrap().contains("at least 8"),
        "{errors:?}"
    );
    // Several wrong fields are all named, in form order.
    let errors = field_errors(
        w.submit(
            &s,
            FormRequest {
                term_years: Some(5),
                last_name: String::new(),
                eula_accepted: false,
                ..form_request(PW)
            },
        )
        .await,
    );
    let fields: Vec<&str> = errors.0.iter().map(|(f, _)| *f).collect();
    assert_eq!(fields, ["term", "last_name", "eula"]);
    assert_eq!(w.rows().await, before);
    assert!(w.person("newcomer@example.org").await.is_none());
    assert_eq!(w.session(&w.main, &cookie).await.person_id, None);
}

#[tokio::test]
async fn the_form_makes_a_pkcs12_for_a_new_person_with_the_typed_names_and_term() {
    let w = world().await;
    let cookie = w.form_session("newcomer@example.org", "eng-code").await;
    let s = w.session(&w.main, &cookie).await;
    let persons = w.rows().await.persons;
    let out = w
        .submit(
            &s,
            FormRequest {
                term_years: Some(3),
                key_type: Some(KeyType::Rsa { bits: 2048 }),
                ..form_request(PW)
            },
        )
        .await
        .unwrap();
    let FormOutcome::Pkcs12 {
        file,
        filename,
        serial,
        encryption,
    } = out
    else {
        panic!("expected a PKCS#12 file, got {out:?}");
    };
    assert_eq!(filename, "newcomer@example.org.p12");
    assert_eq!(encryption, crate::domain::Pkcs12Encryption::Modern);

    // The one certificate issued is the one in the file, as OpenSSL reads it.
    let certs = w.store.certificates().await.unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial, serial);
    let opened = openssl_pkcs12_certificates(&file, PW);
    assert!(opened.contains("Ada King Lovelace"), "{opened}");
    assert!(opened.contains("Engineering"), "{opened}");
    assert!(
        opened.contains(crate::ca::pem_certificate(&certs[0].der).trim()),
        "{opened}"
    );
    let (_, cert) = parse_x509_certificate(&certs[0].der).unwrap();
    let subject = cert.subject().to_string();
    assert!(subject.contains("CN=Ada King Lovelace"), "{subject}");
    assert!(subject.contains("OU=Engineering"), "{subject}");
    assert_eq!(san(&cert), ["RFC822Name(newcomer@example.org)"]);
    assert_eq!(cert.validity().not_before.timestamp(), T0);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        crate::ca::add_years(T0, 3)
    );
    assert!(matches!(
        cert.public_key().parsed().unwrap(),
        x509_parser::public_key::PublicKey::RSA(_)
    ));

    // The person, created on submit with the typed names and the account's department,
    // now belongs to the session and the order.
    let p = w.person("newcomer@example.org").await.unwrap();
    assert_eq!(
        (
            p.first_name.as_str(),
            p.middle_name.as_str(),
            p.last_name.as_str()
        ),
        ("Ada", "King", "Lovelace")
    );
    assert_eq!(p.department_id, Some(w.eng));
    assert_eq!(p.organisation_id, w.main.organisation_id);
    assert!(p.secret_id_hash.is_none());
    assert_eq!(w.rows().await.persons, persons + 1);
    assert_eq!(w.session(&w.main, &cookie).await.person_id, Some(p.id));
    let order = w.store.order(certs[0].order_id).await.unwrap();
    assert_eq!(order.status, crate::domain::OrderStatus::Issued);
    assert_eq!(order.person_id, Some(p.id));
    assert_eq!(order.term_years, 3);
    assert_eq!(order.key_type, KeyType::Rsa { bits: 2048 }.as_str());
    assert_eq!(order.requester, "newcomer@example.org");
    assert_eq!(w.audited("web-serverkeygen.issued").await, 1);
}

#[tokio::test]
async fn an_empty_pkcs12_password_where_the_account_allows_it() {
    let w = world().await;
    let cookie = w.form_session("carol@example.org", "open-code").await;
    let s = w.session(&w.main, &cookie).await;
    let out = w
        .submit(
            &s,
            FormRequest {
                first_name: "Carol".into(),
                middle_name: String::new(),
                last_name: "King".into(),
                ..form_request("")
            },
        )
        .await
        .unwrap();
    let FormOutcome::Pkcs12 { file, .. } = out else {
        panic!("expected a PKCS#12 file, got {out:?}");
    };
    let opened = openssl_pkcs12_certificates(&file, "");
    assert!(opened.contains("Carol King"), "{opened}");
    // Default term of the profile: one year.
    let cert = &w.store.certificates().await.unwrap()[0];
    assert_eq!(cert.not_after, crate::ca::add_years(T0, 1));
}

#[tokio::test]
async fn a_client_csr_gets_a_pem_chain_and_the_names_on_record_whatever_was_typed() {
    let w = world().await;
    let cookie = w
        .listed_session("alice@example.org", "alice-secret", "staff")
        .await;
    let s = w.session(&w.main, &cookie).await;
    let before = w.rows().await;
    let (key, der) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Mallory");
    let out = w
        .submit(
            &s,
            FormRequest {
                // A person on record cannot rename themselves: what the form sends for the
                // names is ignored (the page shows them read-only).
                first_name: "Mallory".into(),
                middle_name: String::new(),
                last_name: "Impostor".into(),
                // Not needed for a client key, so not checked.
                password: secret(""),
                password_confirmation: secret("x"),
                csr_der: Some(der),
                ..form_request(PW)
            },
        )
        .await
        .unwrap();
    let FormOutcome::Certificate {
        pem,
        filename,
        serial,
    } = out
    else {
        panic!("expected a PEM certificate, got {out:?}");
    };
    assert_eq!(filename, "alice@example.org.pem");
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(blocks.len(), 1 + w.ra.ca_chain().len());
    for (block, ca) in blocks[1..].iter().zip(w.ra.ca_chain()) {
        assert_eq!(&block.contents, ca);
    }
    let leaf = blocks[0].parse_x509().unwrap();
    let subject = leaf.subject().to_string();
    assert!(subject.contains("CN=Alice Smith"), "{subject}");
    assert!(
        !subject.contains("Mallory") && !subject.contains("Impostor"),
        "{subject}"
    );
    assert!(subject.contains("OU=Engineering"), "{subject}");
    assert_eq!(san(&leaf), ["RFC822Name(alice@example.org)"]);
    use rcgen::PublicKeyData;
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert_eq!(
        leaf.tbs_certificate
            .raw_serial_as_string()
            .replace(':', "")
            .to_uppercase(),
        serial
    );

    // The record keeps its names; nothing about alice changed.
    let alice = w.person("alice@example.org").await.unwrap();
    assert_eq!(
        (
            alice.first_name.as_str(),
            alice.middle_name.as_str(),
            alice.last_name.as_str()
        ),
        ("Alice", "", "Smith")
    );
    assert_eq!(w.audited("person.names-changed").await, 0);
    assert_eq!(alice.department_id, Some(w.eng));
    assert_eq!(w.rows().await.persons, before.persons);
    w.sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    assert_eq!(w.audited("web-enroll.issued").await, 1);
}

#[tokio::test]
async fn names_sent_for_a_person_on_record_never_reach_the_record_or_the_certificate() {
    let w = world().await;
    let cookie = w
        .listed_session("alice@example.org", "alice-secret", "staff")
        .await;
    let s = w.session(&w.main, &cookie).await;
    // What the form shows: the record's names, which the web layer renders read-only.
    let form = w.ra.enrollment_form(&s).await.unwrap();
    assert_eq!(form.person.as_ref().unwrap().full_name(), "Alice Smith");
    for (first, middle, last) in [
        ("Director", "", "<director@example.org>"),
        ("\u{202E}ecilA", "", "Smith"),
        ("", "", ""),
    ] {
        let out = w
            .submit(
                &s,
                FormRequest {
                    first_name: first.into(),
                    middle_name: middle.into(),
                    last_name: last.into(),
                    ..form_request(PW)
                },
            )
            .await
            .unwrap();
        let FormOutcome::Pkcs12 { serial, .. } = out else {
            panic!("expected a PKCS#12 file, got {out:?}");
        };
        let cert = w
            .store
            .certificate_by_serial(&serial)
            .await
            .unwrap()
            .unwrap();
        let (_, parsed) = parse_x509_certificate(&cert.der).unwrap();
        let cn: Vec<String> = parsed
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cn, ["Alice Smith"]);
    }
    let alice = w.person("alice@example.org").await.unwrap();
    assert_eq!(alice.full_name(), "Alice Smith");
    assert_eq!(w.audited("person.names-changed").await, 0);
}

#[tokio::test]
async fn a_new_person_types_names_once_and_they_are_checked() {
    let w = world().await;
    let cookie = w.form_session("newcomer@example.org", "eng-code").await;
    let s = w.session(&w.main, &cookie).await;
    let before = w.rows().await;
    for (field, req, says) in [
        (
            "first_name",
            FormRequest {
                first_name: "Director".into(),
                middle_name: String::new(),
                last_name: "<director@example.org>".into(),
                ..form_request(PW)
            },
            "'<'",
        ),
        (
            "first_name",
            FormRequest {
                first_name: "\u{202E}yrolF".into(),
                ..form_request(PW)
            },
            "U+202E",
        ),
        (
            "middle_name",
            FormRequest {
                middle_name: "K\u{200B}ing".into(),
                ..form_request(PW)
            },
            "U+200B",
        ),
        (
            "last_name",
            FormRequest {
                last_name: "lovelace@example.org".into(),
                ..form_request(PW)
            },
            "'@'",
        ),
        (
            "last_name",
            FormRequest {
                last_name: "L".repeat(65),
                ..form_request(PW)
            },
            "at most 64",
        ),
    ] {
        let errors = field_errors(w.submit(&s, req).await);
        let fields: Vec<&str> = errors.0.iter().map(|(f, _)| *f).collect();
        // "Director <director@…>" split over two fields: the last one is refused.
        let field = if says == "'<'" { "last_name" } else { field };
        assert_eq!(fields, [field], "{errors:?}");
        let message = errors.get(field).unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(w.rows().await, before);
    assert!(w.person("newcomer@example.org").await.is_none());

    // Decomposed input is stored, and certified, composed (NFC).
    let out = w
        .submit(
            &s,
            FormRequest {
                first_name: "Rene\u{301}e".into(),
                middle_name: String::new(),
                last_name: "Lovelace".into(),
                ..form_request(PW)
            },
        )
        .await
        .unwrap();
    let FormOutcome::Pkcs12 { serial, .. } = out else {
        panic!("expected a PKCS#12 file, got {out:?}");
    };
    let p = w.person("newcomer@example.org").await.unwrap();
    assert_eq!(p.first_name, "Ren\u{e9}e");
    let cert = w
        .store
        .certificate_by_serial(&serial)
        .await
        .unwrap()
        .unwrap();
    let (_, parsed) = parse_x509_certificate(&cert.der).unwrap();
    let cn = parsed.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "Ren\u{e9}e Lovelace");

    // Once on record, the names are theirs to keep: a second request cannot change them.
    let s = w.session(&w.main, &cookie).await;
    assert_eq!(s.person_id, Some(p.id));
    w.submit(
        &s,
        FormRequest {
            first_name: "Mallory".into(),
            last_name: "Impostor".into(),
            ..form_request(PW)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        w.person("newcomer@example.org").await.unwrap().full_name(),
        "Ren\u{e9}e Lovelace"
    );
}

#[tokio::test]
async fn administrators_names_pass_the_same_check() {
    use crate::domain::Role;
    use crate::ra::admin::{Caller, PersonRequest, Principal, SecretIdChoice};
    let w = world().await;
    let caller = Caller {
        principal: Principal {
            admin_id: Some(1),
            name: "admin:mrao".into(),
            role: Role::Mrao,
            organisations: Vec::new(),
            departments: Vec::new(),
        },
        source: SRC.into(),
        request_id: None,
    };
    let request = |first: &str, last: &str| PersonRequest {
        organisation_id: w.main.organisation_id,
        department_id: None,
        email: "eve@example.org".into(),
        first_name: first.into(),
        middle_name: String::new(),
        last_name: last.into(),
        secret_id: SecretIdChoice::None,
    };
    let before = w.rows().await;
    for (first, last, field) in [
        ("Director", "<director@example.org>", "last_name"),
        ("\u{202E}evE", "Adams", "first_name"),
        ("Eve\u{2066}", "Adams", "first_name"),
    ] {
        let e =
            w.ra.add_person(&caller, request(first, last))
                .await
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed, "{first} {last}");
        assert_eq!(e.field.as_deref(), Some(field), "{e:?}");
    }
    assert_eq!(w.rows().await, before);
    let added =
        w.ra.add_person(&caller, request("E\u{301}ve", "Adams"))
            .await
            .unwrap();
    assert_eq!(added.person.first_name, "\u{c9}ve");
    // An edit passes the same check.
    let e =
        w.ra.edit_person(
            &caller,
            added.person.id,
            None,
            crate::ra::admin::PersonChanges {
                first_name: Some("Eve \u{202E}".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("first_name"), "{e:?}");
}

#[tokio::test]
async fn a_profile_that_requires_approval_records_a_pending_order() {
    let w = world().await;
    let cookie = w
        .form_session("newcomer@example.org", "approval-code")
        .await;
    let s = w.session(&w.main, &cookie).await;
    let out = w.submit(&s, form_request(PW)).await.unwrap();
    let FormOutcome::PendingApproval { order_id } = out else {
        panic!("expected a pending order, got {out:?}");
    };
    let order = w.store.order(order_id).await.unwrap();
    assert_eq!(order.status, crate::domain::OrderStatus::PendingApproval);
    assert_eq!(order.serial, None);
    assert_eq!(order.requester, "newcomer@example.org");
    assert_eq!(
        order.profile_id,
        w.store.profile_by_name("approval").await.unwrap().id
    );
    assert_eq!(
        order.person_id,
        Some(w.person("newcomer@example.org").await.unwrap().id)
    );
    assert_eq!(w.store.count_orders().await.unwrap(), 1);
    assert!(w.store.certificates().await.unwrap().is_empty());
    assert_eq!(w.audited("order.pending-approval").await, 1);
}

#[tokio::test]
async fn an_account_for_server_keys_only_does_not_sign_a_client_csr() {
    let w = world().await;
    let cookie = w.form_session("newcomer@example.org", "server-code").await;
    let s = w.session(&w.main, &cookie).await;
    let before = w.rows().await;
    let (_, der) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
    let errors = field_errors(
        w.submit(
            &s,
            FormRequest {
                csr_der: Some(der),
                ..form_request(PW)
            },
        )
        .await,
    );
    assert!(errors.get("csr").is_some(), "{errors:?}");
    assert_eq!(w.rows().await, before);
    assert!(matches!(
        w.submit(&s, form_request(PW)).await.unwrap(),
        FormOutcome::Pkcs12 { .. }
    ));
}

// ---- EST with an access code: email confirmation --------------------------------------

impl World {
    async fn est(
        &self,
        account: &str,
        user: &str,
        code: &str,
        csr: &[u8],
    ) -> Result<Issued, Error> {
        let credentials = Credentials {
            username: user.into(),
            password: secret(code),
        };
        self.ra
            .enroll(self.account(account).await, Some(credentials), csr, SRC)
            .await
    }

    async fn confirm(&self, link: &Secret) -> String {
        match self
            .ra
            .follow_email_link(&self.main, link, SRC)
            .await
            .unwrap()
        {
            SignInOutcome::EstConfirmed { account } => account,
            other => panic!("expected an EST confirmation, got {other:?}"),
        }
    }
}

fn pending(kind: ErrorKind) {
    match kind {
        ErrorKind::Pending { retry_after } => assert!(retry_after > 0),
        other => panic!("expected 202, got {other:?}"),
    }
}

#[tokio::test]
async fn est_with_an_access_code_is_issued_once_per_confirmation() {
    let w = world().await;
    let guests = w.account("guests").await;
    let email = EmailAddress::parse("grace@example.org").unwrap();
    let (_, first_csr) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Brewster Hopper");
    let before = w.rows().await;

    let e = w
        .est("guests", "Grace@Example.org", "guest-code", &first_csr)
        .await
        .unwrap_err();
    pending(e.kind);
    assert!(e.message.contains("grace@example.org"), "{}", e.message);
    let mut mailed = w.deliver().await;
    assert_eq!(mailed.len(), 1);
    let (item, link) = mailed.remove(0);
    assert_eq!(item.recipient, "grace@example.org");
    let token = w
        .store
        .est_confirmation(guests.id, &email, &sha256_hex(&first_csr))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(token.id), item.email_token_id);
    assert_eq!(token.purpose, crate::domain::EmailPurpose::Est);
    assert_eq!(token.expires_at, T0 + 3600);

    // Asked again before the link is followed: still waiting, and no second email.
    w.clock.advance(60);
    pending(kind(
        w.est("guests", "grace@example.org", "guest-code", &first_csr)
            .await,
    ));
    assert!(w.deliver().await.is_empty());
    let waiting = w.rows().await;
    assert_eq!(
        (waiting.orders, waiting.persons),
        (before.orders, before.persons)
    );

    assert_eq!(w.confirm(&link).await, "guests");
    assert_eq!(w.audited("est.email-confirmed").await, 1);
    // Confirming is no sign-in, and the link is spent.
    assert_eq!(w.audited("web.sign-in").await, 0);
    assert_eq!(
        kind(w.ra.follow_email_link(&w.main, &link, SRC).await),
        ErrorKind::AlreadyUsed
    );

    let issued = w
        .est("guests", "grace@example.org", "guest-code", &first_csr)
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&issued.der).unwrap();
    assert_eq!(san(&cert), ["RFC822Name(grace@example.org)"]);
    assert!(cert
        .subject()
        .to_string()
        .contains("CN=Grace Brewster Hopper"));
    // The person, first seen here, is created from the CSR's common name.
    let grace = w.person("grace@example.org").await.unwrap();
    assert_eq!(
        (
            grace.first_name.as_str(),
            grace.middle_name.as_str(),
            grace.last_name.as_str()
        ),
        ("Grace", "Brewster", "Hopper")
    );
    assert_eq!(grace.organisation_id, guests.organisation_id);
    let record = &w.store.certificates().await.unwrap()[0];
    let order = w.store.order(record.order_id).await.unwrap();
    assert_eq!(order.person_id, Some(grace.id));
    assert_eq!(order.requester, "grace@example.org");

    // The confirmation was for one issuance: the same CSR again needs a new one.
    pending(kind(
        w.est("guests", "grace@example.org", "guest-code", &first_csr)
            .await,
    ));
    assert_eq!(w.deliver().await.len(), 1);
    assert_eq!(w.store.certificates().await.unwrap().len(), 1);

    // Another CSR has its own confirmation.
    let (_, other_csr) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Hopper");
    pending(kind(
        w.est("guests", "grace@example.org", "guest-code", &other_csr)
            .await,
    ));
    let mailed = w.deliver().await;
    assert_eq!(mailed.len(), 1);
    let token = w
        .store
        .email_token(mailed[0].0.email_token_id.unwrap())
        .await
        .unwrap();
    assert_eq!(token.csr_sha256, Some(sha256_hex(&other_csr)));
    assert_eq!(w.store.count_orders().await.unwrap(), 1);
}

#[tokio::test]
async fn a_confirmation_stays_with_its_csr_when_another_is_sent() {
    let w = world().await;
    let (_, first_csr) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Hopper");
    let (_, other_csr) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Hopper");
    let user = "grace@example.org";
    pending(kind(w.est("guests", user, "guest-code", &first_csr).await));
    let (_, first_link) = w.deliver().await.remove(0);
    assert_eq!(w.confirm(&first_link).await, "guests");
    // A second device of the same person asks before the first comes back.
    pending(kind(w.est("guests", user, "guest-code", &other_csr).await));
    let (_, other_link) = w.deliver().await.remove(0);
    w.est("guests", user, "guest-code", &first_csr)
        .await
        .unwrap();
    assert_eq!(w.confirm(&other_link).await, "guests");
    w.est("guests", user, "guest-code", &other_csr)
        .await
        .unwrap();
    assert_eq!(w.store.certificates().await.unwrap().len(), 2);
}

#[tokio::test]
async fn est_serverkeygen_waits_for_the_confirmation_too() {
    let w = world().await;
    let (_, req) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Hopper");
    let credentials = || {
        Some(Credentials {
            username: "grace@example.org".into(),
            password: secret("guest-code"),
        })
    };
    let guests = w.account("guests").await;
    let e =
        w.ra.enroll_with_server_key(guests.clone(), credentials(), &req, SRC)
            .await
            .unwrap_err();
    pending(e.kind);
    assert_eq!(w.store.count_orders().await.unwrap(), 0);
    let (_, link) = w.deliver().await.remove(0);
    w.confirm(&link).await;
    let out =
        w.ra.enroll_with_server_key(guests, credentials(), &req, SRC)
            .await
            .unwrap();
    let (_, cert) = parse_x509_certificate(&out.issued.der).unwrap();
    assert_eq!(san(&cert), ["RFC822Name(grace@example.org)"]);
    assert_eq!(out.friendly_name, "Grace Hopper <grace@example.org>");
}

#[tokio::test]
async fn est_email_confirmation_refusals_send_nothing() {
    let w = world().await;
    let (_, req) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "Grace Hopper");
    let before = w.rows().await;
    assert_eq!(
        kind(
            w.est("guests", "grace@example.org", "wrong-code", &req)
                .await
        ),
        ErrorKind::Unauthorized
    );
    let e = w
        .est("guests", "grace", "guest-code", &req)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("email address"), "{}", e.message);
    let e = w
        .est("guests", "grace@elsewhere.com", "guest-code", &req)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("elsewhere.com"), "{}", e.message);
    // The account's endpoint (secret ID only) cannot confirm an address.
    let e = w
        .est("no-confirm", "grace@example.org", "noconfirm-code", &req)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("email confirmation"), "{}", e.message);
    // A person on record outside the account's department, as in the form.
    let e = w
        .est("eng-guests", "bob@example.org", "eng-code", &req)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("department"), "{}", e.message);
    // A key the profile does not allow is refused before any email goes out.
    let (_, p384) = csr(&rcgen::PKCS_ECDSA_P384_SHA384, "Grace Hopper");
    assert_eq!(
        kind(
            w.est("guests", "grace@example.org", "guest-code", &p384)
                .await
        ),
        ErrorKind::BadCsr
    );
    assert_eq!(w.rows().await, before);
    assert!(w.deliver().await.is_empty());
    assert_eq!(w.audited("est.email-confirmed").await, 0);
}

// ---- my certificates ------------------------------------------------------------------

#[tokio::test]
async fn my_certificates_lists_the_persons_certificates_newest_first() {
    let w = world().await;
    let cookie = w
        .listed_session("alice@example.org", "alice-secret", "staff")
        .await;
    let s = w.session(&w.main, &cookie).await;
    assert!(w.ra.my_certificates(&s).await.unwrap().is_empty());
    let names = |first: &str| FormRequest {
        first_name: first.into(),
        middle_name: String::new(),
        last_name: "Smith".into(),
        ..form_request(PW)
    };
    let (_, der) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
    let Ok(FormOutcome::Certificate { serial: first, .. }) = w
        .submit(
            &s,
            FormRequest {
                csr_der: Some(der),
                ..names("Alice")
            },
        )
        .await
    else {
        panic!("expected a certificate");
    };
    w.clock.advance(60);
    let smime = w.store.profile_by_name("smime").await.unwrap();
    let Ok(FormOutcome::Pkcs12 { serial: second, .. }) = w
        .submit(
            &s,
            FormRequest {
                profile_id: Some(smime.id),
                ..names("Alice")
            },
        )
        .await
    else {
        panic!("expected a PKCS#12 file");
    };
    // Certificates from EST count too; another person's do not.
    w.clock.advance(60);
    let staff = w.account("staff").await;
    let (_, der) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
    let alice_creds = Credentials {
        username: "alice@example.org".into(),
        password: secret("alice-secret"),
    };
    let third =
        w.ra.enroll(staff.clone(), Some(alice_creds), &der, SRC)
            .await
            .unwrap()
            .serial;
    let bob_creds = Credentials {
        username: "bob@example.org".into(),
        password: secret("bob-secret"),
    };
    w.ra.enroll(staff, Some(bob_creds), &der, SRC)
        .await
        .unwrap();

    let mine: Vec<(String, String)> =
        w.ra.my_certificates(&s)
            .await
            .unwrap()
            .into_iter()
            .map(|(c, profile)| {
                assert_eq!(c.status, crate::domain::CertStatus::Valid);
                (c.serial, profile)
            })
            .collect();
    let expected = [(third, "person"), (second, "smime"), (first, "person")]
        .map(|(serial, profile)| (serial, profile.to_string()));
    assert_eq!(mine, expected);

    // Without a person record there is nothing to list; once the form created one, the
    // session lists that person's certificate.
    let cookie = w.form_session("newcomer@example.org", "guest-code").await;
    let s = w.session(&w.main, &cookie).await;
    assert!(w.ra.my_certificates(&s).await.unwrap().is_empty());
    w.submit(&s, form_request(PW)).await.unwrap();
    let s = w.session(&w.main, &cookie).await;
    assert_eq!(w.ra.my_certificates(&s).await.unwrap().len(), 1);
}

// ---- housekeeping ---------------------------------------------------------------------

#[tokio::test]
async fn housekeeping_deletes_ended_sessions_old_messages_and_old_links() {
    let w = world().await;
    let week = 7 * 24 * 3600;
    let cookie = w
        .sign_in_with_secret("alice@example.org", "alice-secret")
        .await;
    w.ra.start_email_confirmation(&w.main, "carol@example.org", SRC)
        .await
        .unwrap();
    let now = w.clock.now();
    assert_eq!(w.store.sweep_expired(now, now - week).await.unwrap(), 0);
    // A week on, the unsent message still holds its link.
    w.clock.advance(week + 3600);
    let now = w.clock.now();
    assert_eq!(
        w.store.sweep_expired(now, now - week).await.unwrap(),
        1,
        "the session"
    );
    assert!(w.ra.web_session(&w.main, &cookie).await.unwrap().is_none());
    // Once done with (the worker drops it: the link expired) and a week old, both go.
    let claimed = w.store.claim_outbox(now, 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    w.store
        .outbox_dropped(claimed[0].id, now, "link no longer usable")
        .await
        .unwrap();
    w.clock.advance(week + 1);
    let now = w.clock.now();
    assert_eq!(w.store.sweep_expired(now, now - week).await.unwrap(), 2);
    assert_eq!(w.store.sweep_expired(now, now - week).await.unwrap(), 0);
}

#[tokio::test]
async fn a_disabled_person_is_refused_and_the_refusal_is_audited() {
    let w = world().await;
    // Signed in and at the form while still enabled.
    let cookie = w
        .listed_session("alice@example.org", "alice-secret", "staff")
        .await;
    let s = w.session(&w.main, &cookie).await;
    let alice = w.person("alice@example.org").await.unwrap();
    w.store
        .set_person_disabled(alice.id, None, true, &Default::default(), T0)
        .await
        .unwrap();
    // The form refuses (a policy refusal, not a field to correct) and says so in the trail.
    match w.submit(&s, form_request(PW)).await {
        Err(FormError::Other(e)) => assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(w.audited("web.enroll.refused").await, 1);
    // Field errors are not refusals.
    field_errors(
        w.submit(
            &s,
            FormRequest {
                eula_accepted: false,
                ..form_request(PW)
            },
        )
        .await,
    );
    assert_eq!(w.audited("web.enroll.refused").await, 1);
    // Signing in again with the right secret ID: refused, and audited; a wrong one is not.
    assert_eq!(
        kind(
            w.ra.sign_in_with_secret_id(&w.main, "alice@example.org", &secret("alice-secret"), SRC)
                .await
        ),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(
            w.ra.sign_in_with_secret_id(&w.main, "alice@example.org", &secret("guess"), SRC)
                .await
        ),
        ErrorKind::Unauthorized
    );
    assert_eq!(w.audited("web.sign-in.refused").await, 1);
    assert_eq!(w.rows().await.certificates, 0);
}

// ---- bounds on guessing across front ends (issue 10) ----------------------------------

impl World {
    fn with_limits(mut self, change: impl FnOnce(&mut GuessLimits)) -> World {
        let mut limits = GuessLimits::default();
        change(&mut limits);
        self.ra = self.ra.clone().with_guess_limits(limits);
        self
    }
}

#[tokio::test]
async fn failures_count_per_client_across_est_the_form_and_the_admin_sign_in() {
    let w = world().await.with_limits(|l| l.failures_per_client = 6);
    let staff = w.account("staff").await;
    let est = |user: &'static str, pass: &'static str, src: &'static str| {
        let (ra, staff) = (w.ra.clone(), staff.clone());
        async move {
            let c = Credentials {
                username: user.into(),
                password: secret(pass),
            };
            ra.enroll(staff, Some(c), &[], src).await.map(|_| ())
        }
    };
    let admin = |pass: &'static str| {
        let ra = w.ra.clone();
        async move {
            ra.sign_in_admin("root@example.org", &secret(pass), "000000", SRC, None)
                .await
                .map(|_| ())
        }
    };
    // Two wrong secrets at each of EST, the form and the administrators' sign-in: no
    // person's or administrator's own count is near its limit ...
    for _ in 0..2 {
        assert_eq!(
            kind(est("alice@example.org", "wrong", SRC).await),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind(
                w.ra.sign_in_with_secret_id(&w.main, "bob@example.org", &secret("wrong"), SRC)
                    .await
            ),
            ErrorKind::Unauthorized
        );
        assert_eq!(kind(admin("wrong").await), ErrorKind::Unauthorized);
    }
    // ... but the address has had its six, wherever it tries next, even with a right secret.
    let e =
        w.ra.sign_in_with_secret_id(&w.main, "alice@example.org", &secret("alice-secret"), SRC)
            .await
            .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e:?}");
    assert!(e.message.contains("network address"), "{}", e.message);
    assert!(matches!(
        kind(est("bob@example.org", "bob-secret", SRC).await),
        ErrorKind::RateLimited { .. }
    ));
    assert!(matches!(
        kind(admin("wrong").await),
        ErrorKind::RateLimited { .. }
    ));
    // Another address is another client.
    w.ra.sign_in_with_secret_id(
        &w.main,
        "alice@example.org",
        &secret("alice-secret"),
        "192.0.2.200:1",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn access_codes_at_one_form_are_locked_for_everybody_after_the_cap() {
    let w = world().await.with_limits(|l| l.failures_per_account = 6);
    // Six people, each from another address, each guess once.
    for i in 0..6 {
        let cookie = w.sign_in(&w.main, &format!("p{i}@example.org")).await;
        let s = w.session(&w.main, &cookie).await;
        let r =
            w.ra.choose_account_with_code(&s, &secret("wrong"), &format!("203.0.113.{i}:1"))
                .await;
        assert_eq!(kind(r), ErrorKind::Unauthorized, "guess {i}");
    }
    // A seventh person with the right code, from yet another address: locked for everybody.
    let cookie = w.sign_in(&w.main, "p6@example.org").await;
    let s = w.session(&w.main, &cookie).await;
    let e =
        w.ra.choose_account_with_code(&s, &secret("guest-code"), "203.0.113.99:1")
            .await
            .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e:?}");
    assert!(
        e.message.starts_with(
            "access codes on this enrollment page are temporarily locked for everybody"
        ),
        "{}",
        e.message
    );
    assert_eq!(w.chosen(&cookie).await, None);
    assert_eq!(w.audited("auth.locked").await, 1);
    // The window passes, and the right code chooses its account again.
    w.clock.advance(WINDOW_SECS);
    let s = w.session(&w.main, &cookie).await;
    let chosen =
        w.ra.choose_account_with_code(&s, &secret("guest-code"), "203.0.113.99:1")
            .await
            .unwrap();
    assert_eq!(chosen.name, "guests");
}

// ---- crash leftovers -------------------------------------------------------------------

#[tokio::test]
async fn orders_left_signing_are_settled_failed_and_audited_after_the_grace() {
    let w = world().await;
    let staff = w.account("staff").await;
    let alice = w.person("alice@example.org").await.unwrap();
    // What a process that stopped between its two transactions leaves: the order in
    // `signing` with its reserved serial and its intent event, and no certificate.
    let intent = |serial: &str| crate::store::SigningIntent {
        account_id: staff.id,
        profile_id: staff.profile_ids[0],
        person_id: Some(alice.id),
        requester: "alice@example.org".into(),
        key_type: KeyType::EcP256,
        term_years: 1,
        csr_sha256: sha256_hex(serial.as_bytes()),
        serial: serial.into(),
    };
    let audit = crate::store::AuditEntry {
        action: "est.intent".into(),
        ..Default::default()
    };
    let old = w
        .store
        .record_intent(&intent("0A01"), &audit, T0)
        .await
        .unwrap();
    let young = w
        .store
        .record_intent(&intent("0A02"), &audit, T0 + 400)
        .await
        .unwrap();
    let now = T0 + 500;
    let settled = w.store.settle_interrupted(now - 300, now).await.unwrap();
    assert_eq!(settled, [old]);
    assert_eq!(
        w.store.order(old).await.unwrap().status,
        crate::domain::OrderStatus::Failed
    );
    assert_eq!(
        w.store.order(young).await.unwrap().status,
        crate::domain::OrderStatus::Signing
    );
    let events: Vec<_> = w
        .store
        .audit_events(&crate::store::AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "order.failed")
        .collect();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.object, format!("order {old}"));
    assert_eq!(e.actor, "system");
    assert!(e.detail.contains("serial=0A01"), "{}", e.detail);
    assert_eq!(e.organisation_id, Some(staff.organisation_id));
    assert_eq!(e.department_id, Some(w.eng));
    assert!(w
        .store
        .verify_audit_chain()
        .await
        .unwrap()
        .first_break
        .is_none());
    // Settling again changes nothing; once the grace has passed for the young one, it goes.
    assert!(w
        .store
        .settle_interrupted(now - 300, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        w.store.settle_interrupted(now, now + 300).await.unwrap(),
        [young]
    );
    assert_eq!(w.audited("order.failed").await, 2);
    assert!(w.store.certificates().await.unwrap().is_empty());
}
