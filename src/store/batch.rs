//! Group commit of issued certificates. A certificate's answer may leave only once its row is
//! durable (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`), and a durable
//! commit costs an fsync. Issuances that finish signing while a commit is under way queue
//! here and then share the next transaction and its one fsync: under load a commit carries
//! as many certificates as arrived during the last one, and an idle server commits each at
//! once (no waiting for company).
//!
//! One task writes the batches, so batches never contend with each other for the database's
//! write lock. When one issuance of a batch cannot be stored (its serial taken, its approved
//! order already settled), the batch is written again with a savepoint per issuance, so
//! that it fails alone. If the transaction itself fails, every issuance in it fails with
//! `Unavailable` and none is delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, Set, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::entities::{cert_order, certificate};
use super::{
    audit, conflict, lifecycle, new_order, AuditEntry, Notice, Result, SignedCertificate,
    SigningIntent, StoreError,
};
use crate::domain::{CertStatus, Id, OrderStatus, UnixTime};
use crate::metrics::{Histogram, BATCH_SIZE_BOUNDS, LATENCY_BOUNDS};

/// At most this many issuances share one transaction; more wait for the next.
const MAX_BATCH: usize = 256;

/// Issuances waiting for a commit beyond this are refused at once with `Unavailable`: the
/// database is not keeping up, and a longer queue only adds latency and memory.
const MAX_QUEUED: usize = 4096;

/// The order a certificate belongs to.
#[derive(Debug, Clone)]
pub enum OrderOf {
    /// No order exists yet: it is created as `issued` with the certificate.
    New(SigningIntent),
    /// An order already moved to `signing` (an approved one): it becomes `issued`.
    Signing(Id),
}

/// One signed certificate and everything stored with it.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub order: OrderOf,
    pub cert: SignedCertificate,
    pub audit: AuditEntry,
    /// Mail to queue (their `certificate_id` is filled in here).
    pub notices: Vec<Notice>,
    pub now: UnixTime,
}

/// Where an issuance was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub order_id: Id,
    pub certificate_id: Id,
}

/// Figures for the operator (`/metrics`): commits made, the certificates they carried and
/// how long each took.
#[derive(Debug)]
pub struct BatchStats {
    pub commits: AtomicU64,
    pub issuances: AtomicU64,
    pub failed_commits: AtomicU64,
    pub largest: AtomicU64,
    /// Issuances per committed transaction.
    pub sizes: Histogram,
    /// Seconds from a batch's first write to its commit returning (both outcomes).
    pub commit_seconds: Histogram,
}

impl Default for BatchStats {
    fn default() -> BatchStats {
        BatchStats {
            commits: AtomicU64::new(0),
            issuances: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            sizes: Histogram::new(BATCH_SIZE_BOUNDS),
            commit_seconds: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

type Job = (Issuance, oneshot::Sender<Result<Stored>>);

/// The handle issuances are sent through; cloned with the store.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

impl Committer {
    /// Starts the writing task on the current runtime. It ends when the last handle is
    /// dropped.
    pub(super) fn start(db: DatabaseConnection) -> Committer {
        let (jobs, rx) = mpsc::channel(MAX_QUEUED);
        let stats = Arc::new(BatchStats::default());
        tokio::spawn(run(db, rx, stats.clone()));
        Committer { jobs, stats }
    }

    pub(super) fn stats(&self) -> &Arc<BatchStats> {
        &self.stats
    }

    /// Stores one issuance durably, together with whatever else is waiting.
    pub(super) async fn commit(&self, issuance: Issuance) -> Result<Stored> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .try_send((issuance, done))
            .map_err(|_| unavailable("too many certificates are waiting to be stored"))?;
        answer
            .await
            .map_err(|_| unavailable("the certificate store stopped"))?
    }
}

fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(why.to_string())
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Job>, stats: Arc<BatchStats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (issuances, answers): (Vec<Issuance>, Vec<_>) = batch.drain(..).unzip();
        let started = std::time::Instant::now();
        let written = write_batch(&db, &issuances).await;
        stats
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let results = match written {
            Ok(results) => {
                stats.sizes.observe(issuances.len() as f64);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .issuances
                    .fetch_add(issuances.len() as u64, Ordering::Relaxed);
                stats
                    .largest
                    .fetch_max(issuances.len() as u64, Ordering::Relaxed);
                results
            }
            Err(e) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    certificates = issuances.len(),
                    "a batch of issued certificates could not be stored: {e}"
                );
                issuances
                    .iter()
                    .map(|_| {
                        Err(unavailable(
                            "the certificate could not be stored; ask again in a moment",
                        ))
                    })
                    .collect()
            }
        };
        for (answer, result) in answers.into_iter().zip(results) {
            // A requester that gave up is gone; its certificate stays stored.
            let _ = answer.send(result);
        }
    }
}

/// One transaction for the whole batch; the outer error is the transaction's own.
async fn write_batch(
    db: &DatabaseConnection,
    issuances: &[Issuance],
) -> Result<Vec<Result<Stored>>> {
    // The common case first: every issuance stores, and none needs a savepoint (each
    // statement is a round trip to the database's thread, and savepoints would double them).
    let txn = db.begin().await?;
    let mut all = Vec::with_capacity(issuances.len());
    for issuance in issuances {
        match write_one(&txn, issuance).await {
            Ok(stored) => all.push(Ok(stored)),
            Err(_) => break,
        }
    }
    if all.len() == issuances.len() {
        return finish(txn, issuances, all).await;
    }
    txn.rollback().await?;
    // One could not be stored: again, each in its own savepoint, so that it fails alone.
    let txn = db.begin().await?;
    let mut results = Vec::with_capacity(issuances.len());
    for issuance in issuances {
        let savepoint = txn.begin().await?;
        match write_one(&savepoint, issuance).await {
            Ok(stored) => {
                savepoint.commit().await?;
                results.push(Ok(stored));
            }
            Err(e) => {
                savepoint.rollback().await?;
                results.push(Err(e));
            }
        }
    }
    finish(txn, issuances, results).await
}

/// Appends the audit events of the issuances stored and commits.
async fn finish(
    txn: DatabaseTransaction,
    issuances: &[Issuance],
    results: Vec<Result<Stored>>,
) -> Result<Vec<Result<Stored>>> {
    let objects: Vec<String> = issuances
        .iter()
        .map(|i| format!("certificate {}", i.cert.serial))
        .collect();
    let entries: Vec<(&AuditEntry, &str)> = issuances
        .iter()
        .zip(&results)
        .zip(&objects)
        .filter(|((_, r), _)| r.is_ok())
        .map(|((i, _), o)| (&i.audit, o.as_str()))
        .collect();
    // The batch's events carry one time, the latest of its issuances.
    let now = issuances.iter().map(|i| i.now).max().unwrap_or_default();
    audit::append_all(&txn, &entries, now).await?;
    txn.commit().await?;
    Ok(results)
}

async fn write_one(txn: &DatabaseTransaction, i: &Issuance) -> Result<Stored> {
    let order_id = match &i.order {
        OrderOf::New(intent) => {
            new_order(
                intent,
                OrderStatus::Issued,
                Some(intent.serial.clone()),
                i.now,
            )
            .insert(txn)
            .await
            .map_err(conflict("serial"))?
            .id
        }
        OrderOf::Signing(id) => {
            let r = cert_order::Entity::update_many()
                .col_expr(
                    cert_order::Column::Status,
                    Expr::value(OrderStatus::Issued.as_str()),
                )
                .col_expr(cert_order::Column::UpdatedAt, Expr::value(i.now))
                .filter(cert_order::Column::Id.eq(*id))
                .filter(cert_order::Column::Status.eq(OrderStatus::Signing.as_str()))
                .exec(txn)
                .await?;
            // Settled as failed meanwhile (settle_interrupted): the certificate is not
            // stored, so it is never delivered either.
            if r.rows_affected != 1 {
                return Err(StoreError::Stale(format!("order {id}")));
            }
            *id
        }
    };
    let c = &i.cert;
    let m = certificate::ActiveModel {
        order_id: Set(order_id),
        serial: Set(c.serial.clone()),
        subject: Set(c.subject.clone()),
        not_before: Set(c.not_before),
        not_after: Set(c.not_after),
        der: Set(c.der.clone()),
        sha256: Set(c.sha256.clone()),
        status: Set(CertStatus::Valid.as_str().to_string()),
        revoked_at: Set(None),
        revocation_reason: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(conflict("certificate serial"))?;
    if !i.notices.is_empty() {
        let notices: Vec<Notice> = i
            .notices
            .iter()
            .cloned()
            .map(|mut n| {
                n.certificate_id = Some(m.id);
                n.order_id = n.order_id.or(Some(order_id));
                n
            })
            .collect();
        lifecycle::queue(txn, &notices, i.now).await?;
    }
    Ok(Stored {
        order_id,
        certificate_id: m.id,
    })
}
