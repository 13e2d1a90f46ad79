//! The audit trail: append-only events in a hash chain. Each event carries its sequence
//! number, the hash of the event before it and its own hash over all of its content, and
//! is appended in the same transaction as the change it records. A single head row (seq,
//! hash) is updated with every append: on PostgreSQL its row lock orders concurrent
//! appends; SQLite has one writer anyway.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::entities::{audit_event, audit_head};
use super::{AuditEntry, Result, Store, StoreError};
use crate::domain::{AuditEvent, ChainBreak, Id, Role, UnixTime};

const HEAD: i64 = 1;
const BATCH: u64 = 1000;

/// Which events to list: a page after `after_seq`, newest last.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub after_seq: Option<i64>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Events of these organisations only (an RAO's scope); `None`: all.
    pub organisations: Option<Vec<Id>>,
    /// Events of these departments only (a DRAO's scope); `None`: all.
    pub departments: Option<Vec<Id>>,
    pub limit: u64,
}

/// What `audit verify` found: how many events it checked and the first break, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub checked: u64,
    pub head_seq: i64,
    pub first_break: Option<ChainBreak>,
}

/// SHA-256 over every field but the hash itself, each length-prefixed so that no two
/// different events encode alike (an absent value has its own marker).
pub fn chain_hash(e: &AuditEvent) -> String {
    fn put(ctx: &mut aws_lc_rs::digest::Context, v: Option<&[u8]>) {
        match v {
            Some(b) => {
                ctx.update(&(b.len() as u64).to_be_bytes());
                ctx.update(b);
            }
            None => ctx.update(&u64::MAX.to_be_bytes()),
        }
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"estgate-audit-v1");
    put(&mut ctx, Some(&e.seq.to_be_bytes()));
    put(&mut ctx, Some(&e.at.to_be_bytes()));
    put(&mut ctx, Some(e.actor.as_bytes()));
    put(&mut ctx, e.role.map(|r| r.as_str().as_bytes()));
    put(&mut ctx, Some(e.action.as_bytes()));
    put(&mut ctx, Some(e.object.as_bytes()));
    put(&mut ctx, Some(e.detail.as_bytes()));
    put(&mut ctx, e.before.as_deref().map(str::as_bytes));
    put(&mut ctx, e.after.as_deref().map(str::as_bytes));
    put(&mut ctx, Some(e.source.as_bytes()));
    put(&mut ctx, e.request_id.as_deref().map(str::as_bytes));
    let org = e.organisation_id.map(i64::to_be_bytes);
    put(&mut ctx, org.as_ref().map(|b| &b[..]));
    let dept = e.department_id.map(i64::to_be_bytes);
    put(&mut ctx, dept.as_ref().map(|b| &b[..]));
    put(&mut ctx, Some(e.prev_hash.as_bytes()));
    hex::encode(ctx.finish().as_ref())
}

/// Audited changes made by this process so far. Every administrative change writes an
/// audit event through `append`, so a reader that keeps values (ra/cache.rs) knows by this
/// count that something may have changed. Issuance batches (`append_all` alone) do not
/// count: they change no kept object.
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// The count of audited changes this process has made (see `CHANGES`).
pub fn changes_seen() -> u64 {
    CHANGES.load(Ordering::Acquire)
}

/// Appends one event in the caller's transaction (`db` must be one, or a connection that
/// no one else writes through) and returns its sequence number.
pub(super) async fn append(
    db: &impl ConnectionTrait,
    e: &AuditEntry,
    object: &str,
    now: UnixTime,
) -> Result<i64> {
    CHANGES.fetch_add(1, Ordering::AcqRel);
    append_all(db, &[(e, object)], now).await
}

/// Appends events in order in the caller's transaction and returns the last one's
/// sequence number (the head's, when `entries` is empty). However many there are, the head
/// is taken and moved once and the rows go in one INSERT: a batch of issuances committed
/// together (batch.rs) pays for its audit trail about what one pays.
pub(super) async fn append_all(
    db: &impl ConnectionTrait,
    entries: &[(&AuditEntry, &str)],
    now: UnixTime,
) -> Result<i64> {
    let (last, mut prev_hash) = next_links(db, entries.len() as i64).await?;
    if entries.is_empty() {
        return Ok(last);
    }
    let first = last - entries.len() as i64 + 1;
    let mut rows = Vec::with_capacity(entries.len());
    for (seq, (e, object)) in (first..).zip(entries) {
        let mut event = AuditEvent {
            seq,
            at: now,
            actor: e.actor.name.clone(),
            role: e.actor.role,
            action: e.action.clone(),
            object: if e.object.is_empty() {
                object.to_string()
            } else {
                e.object.clone()
            },
            detail: e.detail.clone(),
            before: e.before.clone(),
            after: e.after.clone(),
            source: e.actor.source.clone(),
            request_id: e.actor.request_id.clone(),
            organisation_id: e.organisation_id,
            department_id: e.department_id,
            prev_hash,
            hash: String::new(),
        };
        event.hash = chain_hash(&event);
        prev_hash = event.hash.clone();
        rows.push(audit_event::ActiveModel {
            seq: Set(Some(event.seq)),
            at: Set(event.at),
            actor: Set(event.actor),
            role: Set(event.role.map(|r| r.as_str().to_string())),
            action: Set(event.action),
            object: Set(event.object),
            detail: Set(event.detail),
            before: Set(event.before),
            after: Set(event.after),
            source_addr: Set(event.source),
            request_id: Set(event.request_id),
            organisation_id: Set(event.organisation_id),
            department_id: Set(event.department_id),
            prev_hash: Set(Some(event.prev_hash)),
            hash: Set(Some(event.hash)),
            ..Default::default()
        });
    }
    audit_event::Entity::insert_many(rows).exec(db).await?;
    set_head_hash(db, prev_hash).await?;
    Ok(last)
}

/// Takes the next `n` places in the chain: the last one's sequence number and the hash the
/// first follows. The head is bumped first: on PostgreSQL that UPDATE locks the head row
/// until the transaction ends, so the read sees the latest hash and no other append
/// interleaves.
async fn next_links(db: &impl ConnectionTrait, n: i64) -> Result<(i64, String)> {
    audit_head::Entity::update_many()
        .col_expr(
            audit_head::Column::Seq,
            Expr::col(audit_head::Column::Seq).add(n),
        )
        .filter(audit_head::Column::Id.eq(HEAD))
        .exec(db)
        .await?;
    let head = audit_head::Entity::find_by_id(HEAD)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the audit chain head is missing".into()))?;
    Ok((head.seq, head.hash))
}

/// Records the hash of the event just appended as the chain's head.
async fn set_head_hash(db: &impl ConnectionTrait, hash: String) -> Result<()> {
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Hash, Expr::value(hash))
        .filter(audit_head::Column::Id.eq(HEAD))
        .exec(db)
        .await?;
    Ok(())
}

fn event_from(m: audit_event::Model) -> Result<AuditEvent> {
    let role = match m.role.as_deref() {
        Some(r) => {
            Some(Role::parse(r).ok_or_else(|| StoreError::Corrupt(format!("audit role {r:?}")))?)
        }
        None => None,
    };
    Ok(AuditEvent {
        seq: m.seq.unwrap_or(0),
        at: m.at,
        actor: m.actor,
        role,
        action: m.action,
        object: m.object,
        detail: m.detail,
        before: m.before,
        after: m.after,
        source: m.source_addr,
        request_id: m.request_id,
        organisation_id: m.organisation_id,
        department_id: m.department_id,
        prev_hash: m.prev_hash.unwrap_or_default(),
        hash: m.hash.unwrap_or_default(),
    })
}

impl Store {
    /// Writes one event on its own (for events that go with no other change).
    pub async fn audit(&self, entry: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        append(&txn, entry, &entry.object, now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Chains events written before the chain existed (migration 5), oldest first. Run at
    /// start-up; a second process starting at the same time finds nothing left to do.
    pub(super) async fn seal_unchained_audit(&self) -> Result<u64> {
        let legacy = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.is_null())
            .order_by_asc(audit_event::Column::Id)
            .all(&self.db)
            .await?;
        if legacy.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin().await?;
        let n = legacy.len() as u64;
        for m in legacy {
            let (seq, prev_hash) = next_links(&txn, 1).await?;
            let id = m.id;
            let mut e = event_from(m)?;
            e.seq = seq;
            e.prev_hash = prev_hash;
            e.hash = chain_hash(&e);
            let r = audit_event::Entity::update_many()
                .col_expr(audit_event::Column::Seq, Expr::value(e.seq))
                .col_expr(audit_event::Column::PrevHash, Expr::value(e.prev_hash))
                .col_expr(audit_event::Column::Hash, Expr::value(e.hash.clone()))
                .filter(audit_event::Column::Id.eq(id))
                .filter(audit_event::Column::Seq.is_null())
                .exec(&txn)
                .await?;
            if r.rows_affected == 0 {
                // Another process sealed it first; its transaction has the whole batch.
                txn.rollback().await?;
                return Ok(0);
            }
            set_head_hash(&txn, e.hash).await?;
        }
        txn.commit().await?;
        Ok(n)
    }

    /// A page of events in chain order, filtered.
    pub async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut q = audit_event::Entity::find().filter(audit_event::Column::Seq.is_not_null());
        if let Some(after) = f.after_seq {
            q = q.filter(audit_event::Column::Seq.gt(after));
        }
        if let Some(since) = f.since {
            q = q.filter(audit_event::Column::At.gte(since));
        }
        if let Some(until) = f.until {
            q = q.filter(audit_event::Column::At.lt(until));
        }
        if let Some(actor) = &f.actor {
            q = q.filter(audit_event::Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &f.action {
            q = q.filter(audit_event::Column::Action.eq(action.as_str()));
        }
        if let Some(orgs) = &f.organisations {
            q = q.filter(audit_event::Column::OrganisationId.is_in(orgs.iter().copied()));
        }
        if let Some(depts) = &f.departments {
            q = q.filter(audit_event::Column::DepartmentId.is_in(depts.iter().copied()));
        }
        q.order_by_asc(audit_event::Column::Seq)
            .limit(f.limit.max(1))
            .all(&self.db)
            .await?
            .into_iter()
            .map(event_from)
            .collect()
    }

    /// Walks the whole chain in storage order and reports the first break.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        let head = audit_head::Entity::find_by_id(HEAD)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the audit chain head is missing".into()))?;
        // Every sequence number present, to tell a removed event from a moved one.
        let present: HashSet<i64> = audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::Seq)
            .into_tuple::<Option<i64>>()
            .all(&self.db)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut report = ChainReport {
            checked: 0,
            head_seq: head.seq,
            first_break: None,
        };
        let (mut prev_seq, mut prev_hash) = (0i64, String::new());
        let mut after_id = 0i64;
        loop {
            let rows = audit_event::Entity::find()
                .filter(audit_event::Column::Id.gt(after_id))
                .order_by_asc(audit_event::Column::Id)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            let Some(last) = rows.last() else { break };
            after_id = last.id;
            for m in rows {
                let e = event_from(m)?;
                report.checked += 1;
                let found = if e.hash != chain_hash(&e) {
                    Some(ChainBreak::Altered { seq: e.seq })
                } else if e.seq > prev_seq + 1
                    && !(prev_seq + 1..e.seq).any(|s| present.contains(&s))
                {
                    Some(ChainBreak::Removed {
                        after_seq: prev_seq,
                        next_seq: e.seq,
                    })
                } else if e.seq != prev_seq + 1 {
                    Some(ChainBreak::Reordered {
                        seq: e.seq,
                        after_seq: prev_seq,
                    })
                } else if e.prev_hash != prev_hash {
                    // In its place, but chained to other content: the event before was
                    // rewritten with a fresh hash of its own.
                    Some(ChainBreak::Altered { seq: prev_seq })
                } else {
                    None
                };
                if found.is_some() {
                    report.first_break = found;
                    return Ok(report);
                }
                prev_seq = e.seq;
                prev_hash = e.hash;
            }
        }
        if prev_seq < head.seq {
            report.first_break = Some(ChainBreak::Truncated {
                last_seq: prev_seq,
                head_seq: head.seq,
            });
        } else if prev_hash != head.hash {
            report.first_break = Some(ChainBreak::Altered { seq: prev_seq });
        }
        Ok(report)
    }
}
