//! Composition: config → PKI files → database (with migrations) → store, CA, RA, mail →
//! listener and mail worker. Shared by `main` and the integration tests, so tests start
//! the real server.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::ca::dev::{ensure_dev_ca, ensure_tls_cert, PkiFiles};
use crate::ca::{Ca, CaError};
use crate::config::Config;
use crate::domain::Clock;
use crate::mail::{MailError, Mailer, Worker};
use crate::ra::publication::Publisher;
use crate::ra::Ra;
use crate::store::{Store, StoreError};
use crate::web::{self, AppState, WebError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Web(#[from] WebError),
    #[error("mail: {0}")]
    Mail(#[from] MailError),
    #[error("publishing CRL and OCSP: {0}")]
    Publish(String),
    #[error("admin seal key {0}: {1}")]
    SealKey(String, String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Creates the data directory (mode 0700) and, when none is configured, the development CA
/// and TLS certificate. Existing files are reused, never replaced.
pub fn prepare_files(config: &Config, now: i64) -> Result<(), AppError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &config.data_dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| AppError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    if config.dev_ca && ensure_dev_ca(&PkiFiles::in_dir(dir), now)? {
        tracing::info!("created a development CA in {}", dir.display());
    }
    if config.dev_tls
        && ensure_tls_cert(
            &config.tls_cert,
            &config.tls_key,
            &config.ca_chain,
            &config.ca_key,
            now,
        )?
    {
        tracing::info!(
            "issued a TLS server certificate for localhost: {}",
            config.tls_cert.display()
        );
    }
    Ok(())
}

/// Writes the trust anchor (the last certificate of the CA chain) to `<data-dir>/ca.pem`
/// when a configured CA is used, so clients always find it in one place.
fn publish_trust_anchor(config: &Config, ca: &Ca) -> Result<(), AppError> {
    if config.trust_anchor.exists() {
        return Ok(());
    }
    if let Some(root) = ca.chain().last() {
        let pem = crate::ca::pem_certificate(root);
        crate::ca::dev::write_new(&config.trust_anchor, pem.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// The key that seals administrators' TOTP secrets: `admin-seal.key` in the data directory
/// (32 random bytes, mode 0600), made on first use. Processes sharing one PostgreSQL
/// database must share this file, as they share the CA key.
pub fn load_seal_key(config: &Config) -> Result<crate::ra::admin::SealKey, AppError> {
    let path = config.data_dir.join("admin-seal.key");
    if !path.exists() {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut key)
            .map_err(|_| AppError::SealKey(path.display().to_string(), "no randomness".into()))?;
        if let Err(e) = crate::ca::dev::write_new(&path, &key, 0o600) {
            // Another process may have made it a moment ago; read that one.
            if !path.exists() {
                return Err(AppError::SealKey(path.display().to_string(), e.to_string()));
            }
        }
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| AppError::SealKey(path.display().to_string(), e.to_string()))?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        AppError::SealKey(
            path.display().to_string(),
            "must hold exactly 32 bytes".into(),
        )
    })?;
    Ok(crate::ra::admin::SealKey::from_bytes(key))
}

/// The CA as configured: with the public HTTP base URL, every certificate carries its CRL
/// Distribution Point and Authority Information Access (OCSP, caIssuers).
pub fn load_ca(config: &Config) -> Result<Ca, AppError> {
    let ca = Ca::load(&config.ca_chain, &config.ca_key)?;
    Ok(match &config.http_public_url {
        Some(base) => ca.with_publication(crate::ca::PublicationUrls::from_base(base)),
        None => ca,
    })
}

pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    Ok(Store::open(&config.database_url).await?)
}

/// The RA for administration at the command line: the verbs the server calls, on the
/// configured database, with the system clock. It runs no publisher: the server publishes
/// what the CLI changes.
pub async fn admin_ra(config: &Config) -> Result<Ra, AppError> {
    let clock: Arc<dyn Clock> = Arc::new(crate::domain::SystemClock);
    prepare_files(config, clock.now())?;
    let store = open_store(config).await?;
    let ca = Arc::new(load_ca(config)?);
    Ok(Ra::new(store, ca, clock)
        .with_guess_limits(config.guessing)
        .with_read_cache(config.read_cache)
        .with_approvers(config.approver_emails.clone())
        .with_public_url(config.public_url.clone())
        .with_seal_key(load_seal_key(config)?))
}

/// Writes a file that must not exist yet, readable by its owner only (a PKCS#12 file).
pub fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), AppError> {
    Ok(crate::ca::dev::write_new(path, bytes, 0o600)?)
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The plain-HTTP listener's address, when one is configured.
    pub http_addr: Option<SocketAddr>,
    pub ra: Ra,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    mail_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    mail_task: tokio::task::JoinHandle<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    http_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        self.housekeeping.abort();
        for t in &self.background {
            t.abort();
        }
        if let Some(tx) = self.http_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.mail_shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
        let _ = self.mail_task.await;
    }

    /// Waits until the server stops (it stops on Ctrl-C in `main`).
    pub async fn wait(mut self) {
        let _ = self.task.await;
        self.housekeeping.abort();
        for t in &self.background {
            t.abort();
        }
        if let Some(tx) = self.http_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.mail_shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.mail_task.await;
    }
}

pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> Result<Running, AppError> {
    prepare_files(config, clock.now())?;
    // The HTTP listener is bound first: with port 0 (tests) the default public URL names
    // the port actually bound.
    let http_listener = match config.http_listen {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Listen { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| AppError::Listen { addr, source })?;
            Some((l, bound))
        }
    };
    let mut config = config.clone();
    if let (Some(listen), Some((_, bound))) = (config.http_listen, &http_listener) {
        if listen.port() == 0 && config.http_public_url == Some(format!("http://{listen}")) {
            config.http_public_url = Some(format!("http://{bound}"));
        }
    }
    let config = &config;
    let ca = Arc::new(load_ca(config)?);
    publish_trust_anchor(config, &ca)?;
    let store = open_store(config).await?;
    // Orders a stopped process left mid-signing (DESIGN.md issuance cycle) are settled now
    // when older than the grace, and the younger ones once the grace has passed for them.
    let started = clock.now();
    settle_interrupted(&store, started - SIGNING_GRACE_SECS, started).await?;
    let mailer = Mailer::new(&config.mail.transport)?;
    let publisher = Publisher::start(ca.clone(), store.clone(), clock.clone())
        .await
        .map_err(|e| AppError::Publish(e.to_string()))?;
    let metrics = crate::metrics::Metrics::new();
    let ra = Ra::new(store.clone(), ca.clone(), clock.clone())
        .with_metrics(metrics.clone())
        .with_email_link_ttl(config.mail.link_ttl_secs)
        .with_guess_limits(config.guessing)
        .with_read_cache(config.read_cache)
        .with_approvers(config.approver_emails.clone())
        .with_public_url(config.public_url.clone())
        .with_publisher(publisher.clone())
        .with_seal_key(load_seal_key(config)?);
    let mut background = vec![tokio::spawn(publisher.clone().run())];
    background.push(tokio::spawn(settle_after_grace(
        store.clone(),
        clock.clone(),
        started,
    )));
    background.push(tokio::spawn(reminders(
        ra.clone(),
        config.expiry_reminder_days.clone(),
    )));
    let (http_addr, http_shutdown) = match http_listener {
        None => (None, None),
        Some((l, bound)) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let app = web::http::router(publisher.clone());
            background.push(tokio::spawn(async move {
                let served = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("HTTP listener: {e}");
                }
            }));
            (Some(bound), Some(tx))
        }
    };
    let tls = web::tls_config(&config.tls_cert, &config.tls_key, ca.chain())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AppError::Listen {
        addr: config.listen,
        source,
    })?;
    let app = web::router(AppState {
        ra: ra.clone(),
        readiness: Some(Arc::new(DatabaseReadiness::new(&config.database_url))),
        metrics_token: config.metrics_token.clone(),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(web::serve(
        listener,
        tls,
        app,
        config.limits.clone(),
        config.trusted_proxies.clone(),
        metrics.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    let housekeeping = tokio::spawn(housekeeping(store.clone(), clock.clone()));
    let worker =
        Worker::new(store, mailer, clock, &config.mail, &config.public_url).with_metrics(metrics);
    let (mail_tx, mail_rx) = tokio::sync::oneshot::channel::<()>();
    let mail_task = tokio::spawn(worker.run(async move {
        let _ = mail_rx.await;
    }));
    Ok(Running {
        addr,
        http_addr,
        ra,
        background,
        http_shutdown,
        shutdown: Some(tx),
        task,
        mail_shutdown: Some(mail_tx),
        mail_task,
        housekeeping,
    })
}

/// `/readyz`'s look at the database, over a connection of its own (one, opened when first
/// probed) so a probe never waits behind the server's own pool and never makes it
/// reconnect: the database answers a query and holds every migration this build knows.
/// The CA key needs no probe: the listener opens only once it is loaded.
struct DatabaseReadiness {
    opts: sea_orm::ConnectOptions,
    /// Connected at the first probe that finds the database, then kept.
    db: tokio::sync::OnceCell<sea_orm::DatabaseConnection>,
    table: String,
    migrations: Vec<String>,
}

impl DatabaseReadiness {
    fn new(url: &str) -> DatabaseReadiness {
        use estgate_migrations::MigratorTrait;
        let mut opts = sea_orm::ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false)
            .max_connections(1)
            .min_connections(0)
            .connect_timeout(web::observe::PROBE_TIMEOUT)
            .acquire_timeout(web::observe::PROBE_TIMEOUT);
        DatabaseReadiness {
            opts,
            db: tokio::sync::OnceCell::new(),
            table: estgate_migrations::Migrator::migration_table_name().to_string(),
            migrations: estgate_migrations::Migrator::migrations()
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        }
    }

    async fn applied(&self) -> Result<Vec<String>, sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        let db = self
            .db
            .get_or_try_init(|| sea_orm::Database::connect(self.opts.clone()))
            .await?;
        let backend = db.get_database_backend();
        let rows = db
            .query_all(sea_orm::Statement::from_string(
                backend,
                format!("SELECT version FROM {}", self.table),
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String>("", "version"))
            .collect()
    }
}

impl web::observe::Readiness for DatabaseReadiness {
    fn check(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), web::observe::NotReady>> + Send + '_>,
    > {
        Box::pin(async move {
            let applied = self.applied().await.map_err(|e| web::observe::NotReady {
                reason: "the database does not answer".into(),
                detail: e.to_string(),
            })?;
            let pending: Vec<&str> = self
                .migrations
                .iter()
                .filter(|m| !applied.contains(m))
                .map(String::as_str)
                .collect();
            if pending.is_empty() {
                Ok(())
            } else {
                Err(web::observe::NotReady {
                    reason: format!("database migrations not applied: {}", pending.join(", ")),
                    detail: format!("{} of {} applied", applied.len(), self.migrations.len()),
                })
            }
        })
    }
}

/// What `serve` prints at start: the form URL of every enrollment endpoint and the EST base
/// URL of every account that has an EST label (and of the default account), so an operator
/// can hand them out without asking the API.
pub async fn enrollment_urls(ra: &Ra, config: &Config) -> Result<String, crate::error::Error> {
    let caller = crate::ra::admin::Caller::operator("startup");
    let endpoints = ra.endpoints(&caller, None).await?;
    let accounts = ra.accounts(&caller, None, None).await?;
    let base = config.public_url.trim_end_matches('/');
    let mut out = String::new();
    for e in &endpoints {
        out.push_str(&format!(
            "enrollment form {:?}: {}\n",
            e.name,
            ra.enrollment_url(e)
        ));
    }
    for a in &accounts {
        if let Some(label) = &a.est_label {
            out.push_str(&format!(
                "EST account {:?}: {base}/.well-known/est/{label}/\n",
                a.name
            ));
        }
        if a.is_default {
            out.push_str(&format!(
                "EST default account {:?}: {base}/.well-known/est/\n",
                a.name
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no enrollment endpoints are configured yet (estgate endpoint add)\n");
    }
    Ok(out)
}

/// How long an order may stay in `signing` before it is settled as failed. Several
/// processes may share one database (PostgreSQL, or SQLite on one host), and an order's row
/// does not say which process is signing it: a live process takes well under a second
/// between its two transactions (one signature and one commit), so five minutes leaves
/// alone anything still being signed, clock skew between hosts included, and settles only
/// what a stopped process left.
pub const SIGNING_GRACE_SECS: i64 = 300;

/// Marks orders in `signing` since before `before` failed (with their audit events).
async fn settle_interrupted(store: &Store, before: i64, now: i64) -> Result<(), StoreError> {
    let settled = store.settle_interrupted(before, now).await?;
    if !settled.is_empty() {
        tracing::warn!(
            orders = ?settled,
            "orders interrupted while signing marked failed"
        );
    }
    Ok(())
}

/// Orders a stopped process left in `signing` just before this start were younger than the
/// grace then; once it has passed for them, they are settled too (a restart right after a
/// crash would otherwise leave them until the next one).
async fn settle_after_grace(store: Store, clock: Arc<dyn Clock>, started: i64) {
    tokio::time::sleep(std::time::Duration::from_secs(SIGNING_GRACE_SECS as u64)).await;
    if let Err(e) = settle_interrupted(&store, started, clock.now()).await {
        tracing::warn!("settling orders interrupted while signing: {e}");
    }
}

/// Every hour, queue the expiry reminders that are due (each at most once per certificate
/// and threshold, whichever process gets there first).
async fn reminders(ra: Ra, days: Vec<u32>) {
    if days.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match ra.queue_expiry_reminders(&days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reminders = n, "expiry reminders queued"),
            Err(e) => tracing::warn!("expiry reminders: {e}"),
        }
    }
}

/// Every ten minutes, delete ended sessions, and links and sent messages older than a week
/// (kept that long for an administrator looking into a complaint). Every process does it;
/// the deletes are idempotent.
async fn housekeeping(store: Store, clock: Arc<dyn Clock>) {
    const KEEP_SECS: i64 = 7 * 24 * 3600;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let now = clock.now();
        match store.sweep_expired(now, now - KEEP_SECS).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "housekeeping: expired rows deleted"),
            Err(e) => tracing::warn!("housekeeping: {e}"),
        }
    }
}
