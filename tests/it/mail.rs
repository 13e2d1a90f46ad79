//! The mail worker against a real SMTP conversation (and the directory transport): what is
//! sent, what the database records, and that no secret leaks into errors or logs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use estgate::config::{Config, Overrides};
use estgate::domain::{
    generate_secret, hash_token, Actor, AuthType, Authorization, Clock, CsrMethod, Decision,
    EmailAddress, EmailPurpose, KeyType, Pkcs12Encryption, Revocation, RevocationReason, Secret,
    SubjectSource,
};
use estgate::mail::{Mailer, Worker};
use estgate::ra::SignInOutcome;
use estgate::store::{
    AuditEntry, NewAccount, NewEmailToken, NewEndpoint, NewPerson, NewProfile, Notice, NoticeKind,
    SignedCertificate, SigningIntent, Store, TokenRefusal,
};
use estgate::testing::FakeClock;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::smtp::{Received, Receiver, Security};

const T0: i64 = 1_790_000_000;
const SUBJECT: &str = "Subject: Your Email Confirmation Request\r\n";

struct World {
    /// What the worker logs during the test.
    logs: Captured,
    _log_guard: tracing::subscriber::DefaultGuard,
    store: Store,
    db: DatabaseConnection,
    clock: Arc<FakeClock>,
    endpoint: estgate::domain::Endpoint,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let (logs, _log_guard) = Captured::start();
    let dir = tempfile::tempdir().unwrap();
    let url = estgate::testing::database_url(dir.path()).await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let db = Database::connect(&url).await.unwrap();
    let org = store
        .create_organisation("Example", &["example.org".into()], T0)
        .await
        .unwrap();
    let endpoint = store
        .create_endpoint(NewEndpoint {
            organisation_id: org.id,
            name: "R&D <Lab>".into(),
            uri_extension: generate_secret(20).expose().into(),
            auth_types: vec![AuthType::EmailConfirmation],
            help_link_text: String::new(),
            help_link_target: String::new(),
            help_text: String::new(),
            eula_text: String::new(),
        })
        .await
        .unwrap();
    World {
        logs,
        _log_guard,
        store,
        db,
        clock: FakeClock::at(T0),
        endpoint,
        dir,
    }
}

impl World {
    /// A worker configured the way `serve` configures it, from these environment values.
    fn worker(&self, env: &[(&str, String)]) -> Worker {
        let mut env = env.to_vec();
        env.push(("ESTGATE_PUBLIC_URL", "https://est.example.org/".into()));
        env.push(("ESTGATE_MAIL_FROM", "estgate <estgate@example.org>".into()));
        let overrides = Overrides {
            data_dir: Some(self.dir.path().join("data")),
            ..Overrides::default()
        };
        let lookup = |k: &str| {
            env.iter()
                .find(|(var, _)| *var == k)
                .map(|(_, v)| v.clone())
        };
        let config = Config::load(None, lookup, &overrides).unwrap();
        let mailer = Mailer::new(&config.mail.transport).unwrap();
        Worker::new(
            self.store.clone(),
            mailer,
            self.clock.clone(),
            &config.mail,
            &config.public_url,
        )
    }

    fn smtp_worker(&self, receiver: &Receiver) -> Worker {
        self.worker(&[
            ("ESTGATE_SMTP_HOST", "127.0.0.1".into()),
            ("ESTGATE_SMTP_PORT", receiver.addr.port().to_string()),
            ("ESTGATE_SMTP_TLS", "none".into()),
        ])
    }

    async fn request_link(&self, email: &str, purpose: EmailPurpose) -> i64 {
        self.store
            .create_email_token(
                &NewEmailToken {
                    endpoint_id: self.endpoint.id,
                    email: EmailAddress::parse(email).unwrap(),
                    purpose,
                    account_id: None,
                    csr_sha256: None,
                    source: "127.0.0.1".into(),
                    expires_at: self.clock.now() + 3600,
                },
                self.clock.now(),
            )
            .await
            .unwrap()
    }

    async fn outbox_row(&self, token_id: i64) -> OutboxRow {
        let row = self
            .db
            .query_one(Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "SELECT attempts, next_attempt_at, sent_at, last_error FROM outbox \
                     WHERE email_token_id = {token_id}"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        OutboxRow {
            attempts: row.try_get::<i32>("", "attempts").unwrap(),
            next_attempt_at: row.try_get("", "next_attempt_at").unwrap(),
            sent_at: row.try_get("", "sent_at").unwrap(),
            last_error: row.try_get("", "last_error").unwrap(),
        }
    }

    async fn stored_hash(&self, token_id: i64) -> Option<String> {
        let row = self
            .db
            .query_one(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT token_hash FROM email_token WHERE id = {token_id}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "token_hash").unwrap()
    }

    fn link_prefix(&self) -> String {
        format!(
            "https://est.example.org/enroll/{}/confirm?token=",
            self.endpoint.uri_extension
        )
    }
}

#[derive(Debug)]
struct OutboxRow {
    attempts: i32,
    next_attempt_at: i64,
    sent_at: Option<i64>,
    last_error: Option<String>,
}

/// The secret of the link in a message (the first one; both parts carry the same).
fn token_in(message: &str, prefix: &str) -> String {
    let at = message
        .find(prefix)
        .unwrap_or_else(|| panic!("no link {prefix} in {message}"));
    message[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Everything the `fmt` subscriber prints while the guard lives (this thread only, which is
/// the whole of a current-thread `#[tokio::test]`).
///
/// Every test here that makes the worker log holds one: tracing caches, per log statement,
/// whether any subscriber wants it, and a statement first reached on a thread without a
/// subscriber can race with another thread's `set_default` and stay muted for all.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn smtp_delivers_a_link_whose_token_matches_the_stored_hash() {
    let w = world().await;
    let receiver = Receiver::start(0).await;
    let worker = w.smtp_worker(&receiver);
    let id = w
        .request_link("Alice@Example.org", EmailPurpose::SignIn)
        .await;
    assert_eq!(w.stored_hash(id).await, None, "no secret before sending");

    assert_eq!(worker.drain_once().await.unwrap(), 1);

    let got: Vec<Received> = receiver.accepted();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.rcpt_to, ["alice@example.org"]);
    assert_eq!(m.mail_from, "estgate@example.org");
    assert!(m.data.contains(SUBJECT), "{}", m.data);
    assert!(m.data.contains("multipart/alternative"));
    assert!(m.data.contains("Content-Type: text/plain"));
    assert!(m.data.contains("Content-Type: text/html"));
    assert!(m.data.contains("<strong>R&amp;D &lt;Lab&gt;</strong>"));
    assert!(m.data.contains("valid for 60 minutes and can be used once"));
    let token = token_in(&m.data, &w.link_prefix());
    assert_eq!(token.len(), 32);
    let hash = hash_token(&Secret::new(token.clone()));
    assert_eq!(w.stored_hash(id).await.as_deref(), Some(hash.as_str()));

    let row = w.outbox_row(id).await;
    assert_eq!(row.sent_at, Some(T0), "{row:?}");
    assert_eq!(row.last_error, None);
    assert_eq!(w.store.outbox_pending().await.unwrap(), 0);

    // The link works, once.
    let used = w
        .store
        .use_email_token(&hash, w.endpoint.id, T0 + 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.id, id);
    assert_eq!(
        w.store
            .use_email_token(&hash, w.endpoint.id, T0 + 61)
            .await
            .unwrap()
            .unwrap_err(),
        TokenRefusal::AlreadyUsed
    );

    let log = w.logs.text();
    assert!(log.contains("email sent"), "{log}");
    assert!(log.contains("example.org"), "{log}");
    assert!(!log.contains(&token), "{log}");

    // Nothing is sent twice.
    assert_eq!(worker.drain_once().await.unwrap(), 0);
    assert_eq!(receiver.accepted().len(), 1);
}

#[tokio::test]
async fn a_refused_message_is_kept_and_retried_after_its_backoff() {
    let w = world().await;
    let receiver = Receiver::start(1).await;
    let worker = w.smtp_worker(&receiver);
    let id = w.request_link("bob@example.org", EmailPurpose::Est).await;

    assert_eq!(worker.drain_once().await.unwrap(), 1);
    assert!(receiver.accepted().is_empty());
    let refused = receiver.refused();
    assert_eq!(refused.len(), 1);
    let first_token = token_in(&refused[0].data, &w.link_prefix());

    let row = w.outbox_row(id).await;
    assert_eq!(row.attempts, 1, "{row:?}");
    assert_eq!(row.next_attempt_at, T0 + 15);
    assert_eq!(row.sent_at, None);
    let error = row.last_error.unwrap();
    assert!(error.contains("451"), "{error}");
    // The relay quoted the link back; neither the stored error nor the log keeps it.
    assert!(error.contains("token=<token>"), "{error}");
    assert!(!error.contains(&first_token), "{error}");
    let log = w.logs.text();
    assert!(log.contains("will retry"), "{log}");
    assert!(!log.contains(&first_token), "{log}");
    assert_eq!(w.store.outbox_pending().await.unwrap(), 1);

    // Not before the backoff has passed.
    assert_eq!(worker.drain_once().await.unwrap(), 0);
    w.clock.advance(14);
    assert_eq!(worker.drain_once().await.unwrap(), 0);
    w.clock.advance(1);
    assert_eq!(worker.drain_once().await.unwrap(), 1);

    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    assert!(got[0]
        .data
        .contains("Your EST client made a certificate request"));
    let token = token_in(&got[0].data, &w.link_prefix());
    assert_ne!(token, first_token, "each attempt mints a new secret");
    let hash = hash_token(&Secret::new(token.clone()));
    assert_eq!(w.stored_hash(id).await.as_deref(), Some(hash.as_str()));
    let old = hash_token(&Secret::new(first_token.clone()));
    assert_eq!(
        w.store
            .use_email_token(&old, w.endpoint.id, T0 + 20)
            .await
            .unwrap()
            .unwrap_err(),
        TokenRefusal::Unknown,
        "the refused message's link never works"
    );
    let row = w.outbox_row(id).await;
    assert_eq!((row.attempts, row.sent_at), (1, Some(T0 + 15)), "{row:?}");
    assert_eq!(row.last_error, None);
    assert!(!w.logs.text().contains(&token));
}

#[tokio::test]
async fn a_superseded_link_is_dropped_without_sending() {
    let w = world().await;
    let receiver = Receiver::start(0).await;
    let worker = w.smtp_worker(&receiver);
    let first = w
        .request_link("carol@example.org", EmailPurpose::SignIn)
        .await;
    w.clock.advance(5);
    let second = w
        .request_link("carol@example.org", EmailPurpose::SignIn)
        .await;

    assert_eq!(worker.drain_once().await.unwrap(), 2);

    let got = receiver.accepted();
    assert_eq!(got.len(), 1, "only the newer link is mailed");
    let token = token_in(&got[0].data, &w.link_prefix());
    assert_eq!(
        w.stored_hash(second).await,
        Some(hash_token(&Secret::new(token)))
    );
    assert_eq!(w.stored_hash(first).await, None);
    let dropped = w.outbox_row(first).await;
    assert_eq!(dropped.sent_at, Some(T0 + 5), "{dropped:?}");
    assert_eq!(dropped.last_error.as_deref(), Some("link no longer usable"));
    assert_eq!(w.outbox_row(second).await.last_error, None);
    assert_eq!(w.store.outbox_pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_link_that_expired_while_waiting_for_a_retry_is_dropped() {
    let w = world().await;
    let receiver = Receiver::start(1).await;
    let worker = w.smtp_worker(&receiver);
    let id = w
        .request_link("dave@example.org", EmailPurpose::SignIn)
        .await;
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    assert_eq!(w.outbox_row(id).await.attempts, 1);

    w.clock.advance(3600);
    assert_eq!(worker.drain_once().await.unwrap(), 1);

    assert!(receiver.accepted().is_empty());
    let row = w.outbox_row(id).await;
    assert_eq!(row.sent_at, Some(T0 + 3600), "{row:?}");
    assert_eq!(row.last_error.as_deref(), Some("link no longer usable"));
}

#[tokio::test]
async fn an_unknown_kind_is_kept_for_a_retry() {
    let w = world().await;
    let receiver = Receiver::start(0).await;
    let worker = w.smtp_worker(&receiver);
    w.db.execute(Statement::from_string(
        w.db.get_database_backend(),
        format!(
            "INSERT INTO outbox (kind, recipient, email_token_id, created_at, attempts, \
             next_attempt_at) VALUES ('newsletter', 'erin@example.org', NULL, {T0}, 0, {T0})"
        ),
    ))
    .await
    .unwrap();

    assert_eq!(worker.drain_once().await.unwrap(), 1);

    assert!(receiver.accepted().is_empty());
    let row =
        w.db.query_one(Statement::from_string(
            w.db.get_database_backend(),
            "SELECT attempts, next_attempt_at, sent_at, last_error FROM outbox".to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i32>("", "attempts").unwrap(), 1);
    assert_eq!(row.try_get::<i64>("", "next_attempt_at").unwrap(), T0 + 15);
    assert_eq!(row.try_get::<Option<i64>>("", "sent_at").unwrap(), None);
    let error: String = row.try_get("", "last_error").unwrap();
    assert!(
        error.contains("unknown outbox kind \"newsletter\""),
        "{error}"
    );
    assert_eq!(w.store.outbox_pending().await.unwrap(), 1);
}

#[tokio::test]
async fn without_smtp_the_directory_transport_writes_a_private_eml() {
    let w = world().await;
    let worker = w.worker(&[]);
    let id = w
        .request_link("frank@example.org", EmailPurpose::SignIn)
        .await;

    assert_eq!(worker.drain_once().await.unwrap(), 1);

    let outbox = w.dir.path().join("data").join("outbox");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&outbox), 0o700);
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!("{T0}-")) && name.ends_with(".eml"),
        "{name}"
    );
    assert_eq!(mode(file), 0o600);
    let eml = std::fs::read_to_string(file).unwrap();
    assert!(eml.contains(SUBJECT), "{eml}");
    assert!(eml.contains("To: frank@example.org\r\n"), "{eml}");
    let token = token_in(&eml, &w.link_prefix());
    assert_eq!(
        w.stored_hash(id).await,
        Some(hash_token(&Secret::new(token)))
    );
    assert_eq!(w.outbox_row(id).await.sent_at, Some(T0));
}

/// The server `start` composes runs the worker: a sign-in request made through the RA is
/// mailed (here: written to the outbox directory) with the configured lifetime, and its
/// link signs in.
#[tokio::test]
async fn the_running_server_mails_sign_in_links() {
    let (logs, _guard) = Captured::start();
    let server = crate::support::start().await;
    let running = server.running.as_ref().unwrap();
    let ext = server.demo.enroll_url.rsplit('/').next().unwrap();
    let endpoint = running.ra.endpoint(ext).await.unwrap();
    running
        .ra
        .start_email_confirmation(&endpoint, "alice@example.org", "127.0.0.1")
        .await
        .unwrap();

    let outbox = server.config.data_dir.join("outbox");
    let mut eml = None;
    // The worker polls every second; give it ample time on a loaded machine.
    for _ in 0..200 {
        let written = std::fs::read_dir(&outbox).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "eml"))
        });
        if let Some(path) = written {
            eml = Some(std::fs::read_to_string(path).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let eml = eml.expect("the worker wrote no email within 20 s");
    assert!(eml.contains(SUBJECT));
    assert!(eml.contains("valid for 60 minutes"));
    let prefix = format!("{}/enroll/{ext}/confirm?token=", server.config.public_url);
    let token = token_in(&eml, &prefix);
    let outcome = running
        .ra
        .follow_email_link(&endpoint, &Secret::new(token.clone()), "127.0.0.1")
        .await
        .unwrap();
    assert!(matches!(outcome, SignInOutcome::Session(_)));
    let log = logs.text();
    assert!(log.contains("development mail transport: wrote"), "{log}");
    assert!(!log.contains(&token), "{log}");
    server.stop().await;
}

/// A relay with a private CA: STARTTLS is used, and the certificate is checked against
/// `smtp_ca` (without it the relay is not trusted and the message waits for a retry).
#[tokio::test]
async fn starttls_to_a_relay_trusted_through_smtp_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let w = world().await;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = w.dir.path().join("relay-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let relay_key = KeyPair::generate().unwrap();
    let relay_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&relay_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![relay_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(relay_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let receiver = Receiver::start_with(0, Security::StartTls(acceptor)).await;
    let relay = |ca: Option<&std::path::Path>| {
        let mut env = vec![
            ("ESTGATE_SMTP_HOST", "127.0.0.1".to_string()),
            ("ESTGATE_SMTP_PORT", receiver.addr.port().to_string()),
        ];
        if let Some(ca) = ca {
            env.push(("ESTGATE_SMTP_CA", ca.display().to_string()));
        }
        w.worker(&env)
    };
    let id = w
        .request_link("grace@example.org", EmailPurpose::SignIn)
        .await;

    assert_eq!(relay(None).drain_once().await.unwrap(), 1);
    assert!(
        receiver.accepted().is_empty(),
        "an untrusted relay gets nothing"
    );
    let row = w.outbox_row(id).await;
    assert_eq!((row.attempts, row.sent_at), (1, None), "{row:?}");
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("UnknownIssuer"), "{error}");

    w.clock.advance(15);
    assert_eq!(relay(Some(&ca_file)).drain_once().await.unwrap(), 1);
    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    assert!(got[0].encrypted, "the message went through STARTTLS");
    assert!(got[0].data.contains(SUBJECT));
    let token = token_in(&got[0].data, &w.link_prefix());
    assert_eq!(
        w.stored_hash(id).await,
        Some(hash_token(&Secret::new(token)))
    );
    assert_eq!(w.outbox_row(id).await.sent_at, Some(T0 + 15));
}

/// What the lifecycle tests need besides the world's endpoint: a person, a profile that
/// requires approval, and an account of the endpoint using it.
struct Lifecycle {
    person: estgate::domain::Person,
    profile: estgate::domain::Profile,
    account: estgate::domain::Account,
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        actor: Actor {
            name: "test".into(),
            source: "local".into(),
            ..Default::default()
        },
        action: action.into(),
        object: String::new(),
        detail: String::new(),
        ..Default::default()
    }
}

fn notice(kind: NoticeKind, to: &str) -> Notice {
    Notice {
        kind,
        recipient: to.into(),
        order_id: None,
        certificate_id: None,
        dedupe_key: None,
    }
}

impl World {
    async fn lifecycle(&self) -> Lifecycle {
        let person = self
            .store
            .create_person(
                NewPerson {
                    organisation_id: self.endpoint.organisation_id,
                    department_id: None,
                    email: EmailAddress::parse("alice@example.org").unwrap(),
                    first_name: "Alice".into(),
                    middle_name: String::new(),
                    last_name: "Smith".into(),
                    secret_id_hash: None,
                },
                T0,
            )
            .await
            .unwrap();
        let profile = self
            .store
            .create_profile(NewProfile {
                name: "Reviewed S/MIME".into(),
                subject_source: SubjectSource::Person,
                key_types: vec![KeyType::EcP256],
                default_key_type: KeyType::EcP256,
                terms_years: vec![1],
                default_term_years: 1,
                requires_approval: true,
                smime: None,
            })
            .await
            .unwrap();
        let account = self
            .store
            .create_account(NewAccount {
                endpoint_id: self.endpoint.id,
                organisation_id: self.endpoint.organisation_id,
                department_id: None,
                name: "Staff".into(),
                csr_method: CsrMethod::Both,
                allow_empty_pkcs12_password: false,
                authorization: Authorization::None,
                access_code_hash: None,
                est_label: None,
                is_default: false,
                pkcs12_encryption: Pkcs12Encryption::Modern,
                bind_device_names: false,
                profile_ids: vec![profile.id],
            })
            .await
            .unwrap();
        Lifecycle {
            person,
            profile,
            account,
        }
    }

    fn intent(&self, l: &Lifecycle, serial: &str) -> SigningIntent {
        SigningIntent {
            account_id: l.account.id,
            profile_id: l.profile.id,
            person_id: Some(l.person.id),
            requester: "alice@example.org".into(),
            key_type: KeyType::EcP256,
            term_years: 1,
            csr_sha256: format!("{serial:0>64}"),
            serial: serial.into(),
        }
    }

    /// The outbox rows of notices, oldest first: (kind, sent_at, last_error).
    async fn notice_rows(&self) -> Vec<(String, Option<i64>, Option<String>)> {
        self.db
            .query_all(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT kind, sent_at, last_error FROM outbox WHERE email_token_id IS NULL \
                 ORDER BY id"
                    .to_string(),
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.try_get("", "kind").unwrap(),
                    r.try_get("", "sent_at").unwrap(),
                    r.try_get("", "last_error").unwrap(),
                )
            })
            .collect()
    }

    async fn raw_notice(&self, kind: &str, order: &str, certificate: &str, attempts: u32) {
        self.db
            .execute(Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "INSERT INTO outbox (kind, recipient, email_token_id, created_at, attempts, \
                     next_attempt_at, order_id, certificate_id) VALUES ('{kind}', \
                     'alice@example.org', NULL, {T0}, {attempts}, {T0}, {order}, {certificate})"
                ),
            ))
            .await
            .unwrap();
    }
}

/// The one message received since `before` messages were, with its subject checked.
fn only_new(receiver: &Receiver, before: usize, subject: &str) -> Received {
    let got = receiver.accepted();
    assert_eq!(got.len(), before + 1, "{got:#?}");
    let m = got[before].clone();
    assert!(
        m.data.contains(&format!("Subject: {subject}\r\n")),
        "{}",
        m.data
    );
    assert!(m.data.contains("Content-Type: text/html"));
    m
}

/// An order's life queued through the store verbs the RA uses (pending with the approvers'
/// notice, rejected; another issued, revoked, reminded of), each notice delivered over SMTP
/// with what it is about rendered from the database at send time.
#[tokio::test]
async fn smtp_delivers_each_lifecycle_notice_rendered_from_the_store() {
    let w = world().await;
    let l = w.lifecycle().await;
    let receiver = Receiver::start(0).await;
    let worker = w.smtp_worker(&receiver);
    let form = format!(
        "https://est.example.org/enroll/{}",
        w.endpoint.uri_extension
    );

    // Pending: the approver is told.
    let pending = w
        .store
        .record_pending_order(
            &w.intent(&l, ""),
            None,
            &audit("order.pending-approval"),
            &[notice(NoticeKind::ApprovalNeeded, "approver@example.org")],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(
        &receiver,
        0,
        "A certificate request is waiting for your approval",
    );
    assert_eq!(m.rcpt_to, ["approver@example.org"]);
    assert!(m
        .data
        .contains("the enrollment page \"R&D <Lab>\" is waiting"));
    assert!(
        m.data.contains("Alice Smith <alice@example.org>"),
        "{}",
        m.data
    );
    assert!(m.data.contains(&format!("estgate order approve {pending}")));
    assert!(
        m.data.contains("&quot;R&amp;D &lt;Lab&gt;&quot;"),
        "{}",
        m.data
    );

    // Rejected with a reason: the person is told it.
    w.clock.advance(600);
    let decided = w
        .store
        .decide_order(
            pending,
            false,
            &Decision {
                by: "test".into(),
                at: w.clock.now(),
                reason: Some("use the device account".into()),
            },
            &audit("order.rejected"),
            &[Notice {
                order_id: Some(pending),
                ..notice(NoticeKind::OrderRejected, "alice@example.org")
            }],
            w.clock.now(),
        )
        .await
        .unwrap();
    assert!(decided);
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(&receiver, 1, "Your certificate request was rejected");
    assert_eq!(m.rcpt_to, ["alice@example.org"]);
    assert!(m.data.contains("Hello Alice Smith,"));
    assert!(m.data.contains("Reason given: use the device account"));
    assert!(m.data.contains(&form));

    // Issued: the certificate id is filled in by the store, the worker reads its fields.
    let not_before = w.clock.now();
    let not_after = not_before + 365 * 86_400;
    let order = w
        .store
        .record_intent(&w.intent(&l, "0AB1"), &audit("order.intent"), not_before)
        .await
        .unwrap();
    let certificate = w
        .store
        .store_certificate(
            order,
            &SignedCertificate {
                serial: "0AB1".into(),
                subject: "CN=Alice Smith".into(),
                not_before,
                not_after,
                der: vec![0x30, 0x00],
                sha256: "ab".repeat(32),
            },
            &audit("order.issued"),
            &[Notice {
                order_id: Some(order),
                ..notice(NoticeKind::CertificateIssued, "alice@example.org")
            }],
            not_before,
        )
        .await
        .unwrap();
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(&receiver, 2, "Your certificate has been issued");
    assert!(m.data.contains("0AB1"));
    assert!(m.data.contains("CN=Alice Smith"));
    assert!(m.data.contains("My certificates"));
    assert!(
        m.data.contains("21 September 2026, 14:23 UTC"),
        "{}",
        m.data
    );

    // An expiry reminder, queued once per certificate and threshold.
    w.clock.advance(335 * 86_400);
    let reminder = Notice {
        order_id: Some(order),
        certificate_id: Some(certificate),
        dedupe_key: Some(format!("expiry:{certificate}:30")),
        ..notice(NoticeKind::ExpiryReminder, "alice@example.org")
    };
    assert!(w
        .store
        .queue_notice_once(&reminder, w.clock.now())
        .await
        .unwrap());
    assert!(!w
        .store
        .queue_notice_once(&reminder, w.clock.now())
        .await
        .unwrap());
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(
        &receiver,
        3,
        "Your certificate expires on 21 September 2027",
    );
    assert!(m
        .data
        .contains("expires on 21 September 2027, 14:23 UTC, in 30 days."));
    assert!(m.data.contains(&form));

    // Revoked: serial, reason, time.
    let revoked = w
        .store
        .revoke(
            certificate,
            &Revocation {
                at: w.clock.now(),
                reason: RevocationReason::KeyCompromise,
                by: "test".into(),
            },
            &audit("certificate.revoked"),
            &[Notice {
                order_id: Some(order),
                certificate_id: Some(certificate),
                ..notice(NoticeKind::CertificateRevoked, "alice@example.org")
            }],
        )
        .await
        .unwrap();
    assert!(revoked);
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(&receiver, 4, "Your certificate was revoked");
    assert!(
        m.data.contains(
            "serial number 0AB1 from the enrollment page \"R&D <Lab>\" was revoked on \
         22 August 2027, 14:23 UTC. Reason: the private key may have been compromised."
        ),
        "{}",
        m.data
    );
    assert!(m
        .data
        .contains("If you did not ask for this, contact your administrators."));

    let rows = w.notice_rows().await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(_, sent, error)| sent.is_some() && error.is_none()),
        "{rows:?}"
    );
    assert_eq!(w.store.outbox_pending().await.unwrap(), 0);
    assert!(
        w.logs.text().contains("kind=certificate-revoked"),
        "{}",
        w.logs.text()
    );
}

/// A notice whose order or certificate is gone, or that nothing is left to say about, is
/// dropped at once with its reason, never retried; a kind no server knows is dropped after
/// its last attempt.
#[tokio::test]
async fn notices_with_nothing_to_say_are_dropped_not_retried() {
    let w = world().await;
    let l = w.lifecycle().await;
    let receiver = Receiver::start(0).await;
    let worker = w.smtp_worker(&receiver);
    let pending = w
        .store
        .record_pending_order(&w.intent(&l, ""), None, &audit("order.pending"), &[], T0)
        .await
        .unwrap();
    w.store
        .decide_order(
            pending,
            true,
            &Decision {
                by: "test".into(),
                at: T0,
                reason: None,
            },
            &audit("order.approved"),
            &[],
            T0,
        )
        .await
        .unwrap();
    w.raw_notice("certificate-revoked", "NULL", "9999", 0).await;
    w.raw_notice("order-rejected", "9999", "NULL", 0).await;
    w.raw_notice("certificate-issued", "NULL", "NULL", 0).await;
    // Another approver decided first.
    w.raw_notice("approval-needed", &pending.to_string(), "NULL", 0)
        .await;
    w.raw_notice("newsletter", "NULL", "NULL", 29).await;

    assert_eq!(worker.drain_once().await.unwrap(), 5);

    assert!(receiver.accepted().is_empty());
    let rows = w.notice_rows().await;
    let reasons: Vec<_> = rows
        .iter()
        .map(|(_, sent, error)| {
            assert_eq!(*sent, Some(T0), "{rows:?}");
            error.as_deref().unwrap()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "certificate gone",
            "order gone",
            "notice names no order or certificate",
            "order already decided",
            "unknown outbox kind: no server sharing the database sent it",
        ]
    );
    assert_eq!(w.store.outbox_pending().await.unwrap(), 0);

    // The approved order waits for the person: that notice is sent.
    w.raw_notice("order-approved", &pending.to_string(), "NULL", 0)
        .await;
    assert_eq!(worker.drain_once().await.unwrap(), 1);
    let m = only_new(&receiver, 0, "Your certificate request was approved");
    assert!(m
        .data
        .contains("go back to the enrollment form, sign in, and type a password"));
}
