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

pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    Ok(Store::open(&config.database_url).await?)
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub ra: Ra,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    mail_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    mail_task: tokio::task::JoinHandle<()>,
    housekeeping: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        self.housekeeping.abort();
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
        if let Some(tx) = self.mail_shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.mail_task.await;
    }
}

pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> Result<Running, AppError> {
    prepare_files(config, clock.now())?;
    let ca = Arc::new(Ca::load(&config.ca_chain, &config.ca_key)?);
    publish_trust_anchor(config, &ca)?;
    let store = open_store(config).await?;
    let mailer = Mailer::new(&config.mail.transport)?;
    let ra = Ra::new(store.clone(), ca.clone(), clock.clone())
        .with_email_link_ttl(config.mail.link_ttl_secs);
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
    let app = web::router(AppState { ra: ra.clone() });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(web::serve(listener, tls, app, async move {
        let _ = rx.await;
    }));
    let housekeeping = tokio::spawn(housekeeping(store.clone(), clock.clone()));
    let worker = Worker::new(store, mailer, clock, &config.mail, &config.public_url);
    let (mail_tx, mail_rx) = tokio::sync::oneshot::channel::<()>();
    let mail_task = tokio::spawn(worker.run(async move {
        let _ = mail_rx.await;
    }));
    Ok(Running {
        addr,
        ra,
        shutdown: Some(tx),
        task,
        mail_shutdown: Some(mail_tx),
        mail_task,
        housekeeping,
    })
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
