//! The audit chain against a real database (SQLite, or PostgreSQL when
//! `ESTGATE_TEST_DATABASE_URL` is set): events appended through the store's own writes,
//! then tampered with in SQL as someone with the database file would, and `verify` must
//! name the first break.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{AuditEntry, AuditFilter, Store};
use crate::domain::{Actor, ChainBreak, Role};
use crate::testing::database_url;

const T0: i64 = 1_790_000_000;
const N: i64 = 6;

struct Chain {
    store: Store,
    _dir: tempfile::TempDir,
}

fn entry(i: i64) -> AuditEntry {
    AuditEntry {
        actor: Actor {
            name: "admin:auditor@example.org".into(),
            source: "192.0.2.7:50000".into(),
            role: Some(Role::Mrao),
            request_id: Some(format!("req-{i}")),
        },
        action: "person.edit".into(),
        object: format!("person {i}"),
        detail: format!("change {i}"),
        before: Some(format!("{{\"n\":{}}}", i - 1)),
        after: Some(format!("{{\"n\":{i}}}")),
        organisation_id: Some(1),
        department_id: (i % 2 == 0).then_some(2),
    }
}

/// A fresh database with `N` events written through `Store::audit`.
async fn chain() -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    for i in 1..=N {
        store.audit(&entry(i), T0 + i).await.unwrap();
    }
    Chain { store, _dir: dir }
}

impl Chain {
    async fn sql(&self, statements: &[String]) {
        let txn = self.store.db().begin().await.unwrap();
        for s in statements {
            txn.execute_unprepared(s).await.unwrap();
        }
        txn.commit().await.unwrap();
    }

    async fn first_break(&self) -> Option<ChainBreak> {
        self.store.verify_audit_chain().await.unwrap().first_break
    }

    /// The storage id of the event with this sequence number.
    async fn id_of(&self, seq: i64) -> i64 {
        let all = self.store.db().query_one(sea_orm::Statement::from_string(
            self.store.db().get_database_backend(),
            format!("SELECT id FROM audit_event WHERE seq = {seq}"),
        ));
        let row = all.await.unwrap().unwrap();
        row.try_get::<i64>("", "id").unwrap()
    }
}

/// Every column but `id`, quoted (`before` and `after` are SQL keywords).
const COLUMNS: &[&str] = &[
    "at",
    "actor",
    "action",
    "object",
    "detail",
    "source_addr",
    "seq",
    "role",
    "before",
    "after",
    "request_id",
    "organisation_id",
    "department_id",
    "prev_hash",
    "hash",
];

#[tokio::test]
async fn an_intact_chain_verifies_and_reads_back_every_field() {
    let c = chain().await;
    let report = c.store.verify_audit_chain().await.unwrap();
    assert_eq!(
        (report.checked, report.head_seq, report.first_break),
        (N as u64, N, None)
    );
    let events = c
        .store
        .audit_events(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), N as usize);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    let third = &events[2];
    assert_eq!(third.actor, "admin:auditor@example.org");
    assert_eq!(third.role, Some(Role::Mrao));
    assert_eq!(third.object, "person 3");
    assert_eq!(third.after.as_deref(), Some("{\"n\":3}"));
    assert_eq!(third.request_id.as_deref(), Some("req-3"));
    assert_eq!(third.source, "192.0.2.7:50000");
    assert_eq!(third.prev_hash, events[1].hash);
    assert_eq!(third.hash, super::chain_hash(third));
    assert_eq!(events[0].prev_hash, "");
}

#[tokio::test]
async fn filters_select_by_scope_actor_action_time_and_cursor() {
    let c = chain().await;
    c.store
        .audit(
            &AuditEntry {
                actor: Actor::operator("ops"),
                action: "order.approved".into(),
                object: "order 9".into(),
                organisation_id: Some(7),
                ..Default::default()
            },
            T0 + 100,
        )
        .await
        .unwrap();
    let seqs = |f: AuditFilter| {
        let store = c.store.clone();
        async move {
            store
                .audit_events(&AuditFilter { limit: 100, ..f })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        seqs(AuditFilter {
            organisations: Some(vec![7]),
            ..Default::default()
        })
        .await,
        vec![N + 1]
    );
    assert_eq!(
        seqs(AuditFilter {
            departments: Some(vec![2]),
            ..Default::default()
        })
        .await,
        vec![2, 4, 6]
    );
    assert_eq!(
        seqs(AuditFilter {
            action: Some("order.approved".into()),
            ..Default::default()
        })
        .await,
        vec![N + 1]
    );
    assert_eq!(
        seqs(AuditFilter {
            actor: Some("admin:auditor@example.org".into()),
            after_seq: Some(4),
            ..Default::default()
        })
        .await,
        vec![5, 6]
    );
    assert_eq!(
        seqs(AuditFilter {
            since: Some(T0 + 2),
            until: Some(T0 + 4),
            ..Default::default()
        })
        .await,
        vec![2, 3]
    );
}

#[tokio::test]
async fn a_deleted_middle_event_is_reported_as_removed() {
    let c = chain().await;
    c.sql(&["DELETE FROM audit_event WHERE seq = 3".into()])
        .await;
    assert_eq!(
        c.first_break().await,
        Some(ChainBreak::Removed {
            after_seq: 2,
            next_seq: 4
        })
    );
}

#[tokio::test]
async fn an_altered_detail_is_reported_with_its_seq() {
    let c = chain().await;
    c.sql(&["UPDATE audit_event SET detail = 'nothing happened' WHERE seq = 4".into()])
        .await;
    assert_eq!(c.first_break().await, Some(ChainBreak::Altered { seq: 4 }));
}

#[tokio::test]
async fn an_altered_last_event_is_reported_too() {
    let c = chain().await;
    c.sql(&[format!(
        "UPDATE audit_event SET actor = 'someone else' WHERE seq = {N}"
    )])
    .await;
    assert_eq!(c.first_break().await, Some(ChainBreak::Altered { seq: N }));
}

#[tokio::test]
async fn two_swapped_events_are_reported_as_reordered() {
    let c = chain().await;
    let (a, b) = (c.id_of(2).await, c.id_of(3).await);
    let mut statements = vec![
        format!("CREATE TEMPORARY TABLE swap AS SELECT * FROM audit_event WHERE id IN ({a}, {b})"),
        // Out of the way of the unique index on seq while the rows trade places.
        format!("UPDATE audit_event SET seq = NULL WHERE id IN ({a}, {b})"),
    ];
    for col in COLUMNS {
        for (this, other) in [(a, b), (b, a)] {
            statements.push(format!(
                "UPDATE audit_event SET \"{col}\" = (SELECT \"{col}\" FROM swap WHERE swap.id = \
                 {other}) WHERE id = {this}"
            ));
        }
    }
    statements.push("DROP TABLE swap".into());
    c.sql(&statements).await;
    assert_eq!(
        c.first_break().await,
        Some(ChainBreak::Reordered {
            seq: 3,
            after_seq: 1
        })
    );
}

#[tokio::test]
async fn a_deleted_last_event_is_reported_as_truncated() {
    let c = chain().await;
    c.sql(&[format!("DELETE FROM audit_event WHERE seq = {N}")])
        .await;
    let report = c.store.verify_audit_chain().await.unwrap();
    assert_eq!(report.checked, (N - 1) as u64);
    assert_eq!(
        report.first_break,
        Some(ChainBreak::Truncated {
            last_seq: N - 1,
            head_seq: N
        })
    );
}

#[tokio::test]
async fn a_legacy_unchained_event_is_sealed_onto_the_chain() {
    let c = chain().await;
    c.sql(&[format!(
        "INSERT INTO audit_event (at, actor, action, object, detail, source_addr) VALUES \
         ({}, 'cli:unknown', 'person.create', 'person 1', 'from before the chain', 'local')",
        T0 + 50
    )])
    .await;
    // Unsealed, it is no part of the chain: listed nowhere, and it has no valid hash.
    assert_eq!(
        c.store
            .audit_events(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        N as usize
    );
    assert_eq!(c.store.seal_unchained_audit().await.unwrap(), 1);
    assert_eq!(c.store.seal_unchained_audit().await.unwrap(), 0);
    let report = c.store.verify_audit_chain().await.unwrap();
    assert_eq!(
        (report.checked, report.head_seq, report.first_break),
        (N as u64 + 1, N + 1, None)
    );
    let sealed = c
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(N),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(
        (sealed[0].seq, sealed[0].detail.as_str(), sealed[0].role),
        (N + 1, "from before the chain", None)
    );
    // The next append follows the sealed event.
    c.store.audit(&entry(99), T0 + 99).await.unwrap();
    let report = c.store.verify_audit_chain().await.unwrap();
    assert_eq!((report.head_seq, report.first_break), (N + 2, None));
}

#[tokio::test]
async fn an_event_rewritten_with_a_fresh_hash_is_reported_as_altered() {
    let c = chain().await;
    let mut e = c
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(2),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    e.detail = "nothing happened".into();
    e.hash = super::chain_hash(&e);
    c.sql(&[format!(
        "UPDATE audit_event SET detail = '{}', hash = '{}' WHERE seq = 3",
        e.detail, e.hash
    )])
    .await;
    assert_eq!(c.first_break().await, Some(ChainBreak::Altered { seq: 3 }));
}
