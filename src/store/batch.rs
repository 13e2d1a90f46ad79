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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, Set, TransactionTrait,
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
    let all = if txn.support_returning() {
        write_all(&txn, issuances).await
    } else {
        write_each(&txn, issuances).await
    };
    if let Ok(all) = all {
        return finish(txn, issuances, all.into_iter().map(Ok).collect()).await;
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

/// Every issuance of the batch in a few statements whatever its size: one multi-row insert
/// of the new orders, one of the certificates (each statement is a round trip to the
/// database's thread). Rows are matched back by serial, which is unique: neither database
/// promises the order of `RETURNING` rows. Any error fails the whole batch, which is then
/// written again issuance by issuance.
async fn write_all(txn: &DatabaseTransaction, issuances: &[Issuance]) -> Result<Vec<Stored>> {
    let mut order_ids: HashMap<&str, Id> = HashMap::with_capacity(issuances.len());
    let mut new_orders = Vec::new();
    for i in issuances {
        match &i.order {
            OrderOf::New(intent) => new_orders.push(new_order(
                intent,
                OrderStatus::Issued,
                Some(intent.serial.clone()),
                i.now,
            )),
            OrderOf::Signing(id) => {
                mark_issued(txn, *id, i.now).await?;
                order_ids.insert(i.cert.serial.as_str(), *id);
            }
        }
    }
    let inserted = if new_orders.is_empty() {
        Vec::new()
    } else {
        cert_order::Entity::insert_many(new_orders)
            .exec_with_returning_many(txn)
            .await
            .map_err(conflict("serial"))?
    };
    order_ids.extend(
        inserted
            .iter()
            .filter_map(|o| o.serial.as_deref().map(|s| (s, o.id))),
    );
    let mut rows = Vec::with_capacity(issuances.len());
    for i in issuances {
        let serial = i.cert.serial.as_str();
        let order_id = *order_ids
            .get(serial)
            .ok_or_else(|| StoreError::Stale(format!("no order stored for serial {serial}")))?;
        rows.push(certificate_row(order_id, &i.cert));
    }
    let certs = certificate::Entity::insert_many(rows)
        .exec_with_returning_many(txn)
        .await
        .map_err(conflict("certificate serial"))?;
    let cert_ids: HashMap<&str, Id> = certs.iter().map(|c| (c.serial.as_str(), c.id)).collect();
    let mut out = Vec::with_capacity(issuances.len());
    for i in issuances {
        let serial = i.cert.serial.as_str();
        let (Some(&order_id), Some(&certificate_id)) =
            (order_ids.get(serial), cert_ids.get(serial))
        else {
            return Err(StoreError::Stale(format!(
                "no certificate stored for serial {serial}"
            )));
        };
        queue_notices(txn, i, order_id, certificate_id).await?;
        out.push(Stored {
            order_id,
            certificate_id,
        });
    }
    Ok(out)
}

/// Moves an order that waited in `signing` to `issued`. Settled as failed meanwhile
/// (settle_interrupted): the certificate is not stored, so it is never delivered either.
async fn mark_issued(txn: &DatabaseTransaction, id: Id, now: UnixTime) -> Result<()> {
    let r = cert_order::Entity::update_many()
        .col_expr(
            cert_order::Column::Status,
            Expr::value(OrderStatus::Issued.as_str()),
        )
        .col_expr(cert_order::Column::UpdatedAt, Expr::value(now))
        .filter(cert_order::Column::Id.eq(id))
        .filter(cert_order::Column::Status.eq(OrderStatus::Signing.as_str()))
        .exec(txn)
        .await?;
    if r.rows_affected != 1 {
        return Err(StoreError::Stale(format!("order {id}")));
    }
    Ok(())
}

fn certificate_row(order_id: Id, c: &SignedCertificate) -> certificate::ActiveModel {
    certificate::ActiveModel {
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
}

/// The mail an issuance asked for, naming its stored certificate and order.
async fn queue_notices(
    txn: &DatabaseTransaction,
    i: &Issuance,
    order_id: Id,
    certificate_id: Id,
) -> Result<()> {
    if i.notices.is_empty() {
        return Ok(());
    }
    let notices: Vec<Notice> = i
        .notices
        .iter()
        .cloned()
        .map(|mut n| {
            n.certificate_id = Some(certificate_id);
            n.order_id = n.order_id.or(Some(order_id));
            n
        })
        .collect();
    lifecycle::queue(txn, &notices, i.now).await?;
    Ok(())
}

/// The batch issuance by issuance, for a database without `RETURNING`.
async fn write_each(txn: &DatabaseTransaction, issuances: &[Issuance]) -> Result<Vec<Stored>> {
    let mut all = Vec::with_capacity(issuances.len());
    for i in issuances {
        all.push(write_one(txn, i).await?);
    }
    Ok(all)
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
            mark_issued(txn, *id, i.now).await?;
            *id
        }
    };
    let m = certificate_row(order_id, &i.cert)
        .insert(txn)
        .await
        .map_err(conflict("certificate serial"))?;
    queue_notices(txn, i, order_id, m.id).await?;
    Ok(Stored {
        order_id,
        certificate_id: m.id,
    })
}
