//! Administration: administrators with roles and scopes, their sessions and API keys,
//! idempotent POSTs, optimistic locking (`version`) on every editable row, disabled and
//! deleted persons, deleted endpoints and accounts, unique endpoint and account names per
//! organisation, and the hash chain over the audit events.
//!
//! SQLite alters one column per statement, so each column is its own `ALTER TABLE`.

use sea_orm_migration::prelude::*;

use crate::columns::{fk, id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Admin {
    Table,
    Id,
    Name,
    Email,
    Role,
    PasswordHash,
    TotpSealed,
    TotpLastStep,
    DisabledAt,
    Version,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AdminScope {
    Table,
    Id,
    AdminId,
    OrganisationId,
    DepartmentId,
}

#[derive(DeriveIden)]
enum AdminSession {
    Table,
    Id,
    AdminId,
    TokenHash,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    SourceAddr,
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    AdminId,
    Name,
    KeyId,
    SecretHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Idempotency {
    Table,
    Id,
    Principal,
    IdemKey,
    RequestHash,
    Status,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    Seq,
    Role,
    Before,
    After,
    RequestId,
    OrganisationId,
    DepartmentId,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    DisabledAt,
    DeletedAt,
    DeletedEmail,
}

#[derive(DeriveIden)]
enum Endpoint {
    Table,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Organisation {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Department {
    Table,
    Id,
}

/// Tables whose rows an administrator edits: each gets a `version` for `ETag`/`If-Match`.
const VERSIONED: &[&str] = &[
    "organisation",
    "department",
    "person",
    "profile",
    "endpoint",
    "account",
];

async fn add(
    m: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    col: ColumnDef,
) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(table)
            .add_column(col.to_owned())
            .to_owned(),
    )
    .await
}

async fn drop(
    m: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    col: impl IntoIden + 'static,
) -> Result<(), DbErr> {
    m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        m.create_table(
            Table::create()
                .table(Admin::Table)
                .col(id(Admin::Id))
                .col(ColumnDef::new(Admin::Name).string().not_null())
                .col(
                    ColumnDef::new(Admin::Email)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Admin::Role).string().not_null())
                .col(ColumnDef::new(Admin::PasswordHash).string().null())
                .col(ColumnDef::new(Admin::TotpSealed).string().null())
                .col(ColumnDef::new(Admin::TotpLastStep).big_integer().null())
                .col(ColumnDef::new(Admin::DisabledAt).big_integer().null())
                .col(
                    ColumnDef::new(Admin::Version)
                        .big_integer()
                        .not_null()
                        .default(1),
                )
                .col(ColumnDef::new(Admin::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AdminScope::Table)
                .col(id(AdminScope::Id))
                .col(ColumnDef::new(AdminScope::AdminId).big_integer().not_null())
                .col(
                    ColumnDef::new(AdminScope::OrganisationId)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(AdminScope::DepartmentId)
                        .big_integer()
                        .null(),
                )
                .foreign_key(
                    fk(
                        "fk_admin_scope_admin",
                        (AdminScope::Table, AdminScope::AdminId),
                        (Admin::Table, Admin::Id),
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(&mut fk(
                    "fk_admin_scope_org",
                    (AdminScope::Table, AdminScope::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_admin_scope_dept",
                    (AdminScope::Table, AdminScope::DepartmentId),
                    (Department::Table, Department::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AdminSession::Table)
                .col(id(AdminSession::Id))
                .col(
                    ColumnDef::new(AdminSession::AdminId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AdminSession::TokenHash)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(AdminSession::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AdminSession::LastSeenAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AdminSession::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(AdminSession::SourceAddr).string().not_null())
                .foreign_key(
                    fk(
                        "fk_admin_session_admin",
                        (AdminSession::Table, AdminSession::AdminId),
                        (Admin::Table, Admin::Id),
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiKey::Table)
                .col(id(ApiKey::Id))
                .col(ColumnDef::new(ApiKey::AdminId).big_integer().not_null())
                .col(ColumnDef::new(ApiKey::Name).string().not_null())
                .col(
                    ColumnDef::new(ApiKey::KeyId)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(ApiKey::SecretHash).string().not_null())
                .col(ColumnDef::new(ApiKey::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(ApiKey::ExpiresAt).big_integer().not_null())
                .col(ColumnDef::new(ApiKey::RevokedAt).big_integer().null())
                .col(ColumnDef::new(ApiKey::LastUsedAt).big_integer().null())
                .foreign_key(
                    fk(
                        "fk_api_key_admin",
                        (ApiKey::Table, ApiKey::AdminId),
                        (Admin::Table, Admin::Id),
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A POST with an `Idempotency-Key` is recorded before it runs (status 0) and its
        // answer after; a replay returns the answer, a concurrent twin meets the constraint.
        m.create_table(
            Table::create()
                .table(Idempotency::Table)
                .col(id(Idempotency::Id))
                .col(ColumnDef::new(Idempotency::Principal).string().not_null())
                .col(ColumnDef::new(Idempotency::IdemKey).string().not_null())
                .col(ColumnDef::new(Idempotency::RequestHash).string().not_null())
                .col(ColumnDef::new(Idempotency::Status).integer().not_null())
                .col(ColumnDef::new(Idempotency::Body).text().not_null())
                .col(
                    ColumnDef::new(Idempotency::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .index(
                    Index::create()
                        .name("ux_idempotency_key")
                        .col(Idempotency::Principal)
                        .col(Idempotency::IdemKey)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;

        // The audit chain: every event carries its sequence number, the hash of the event
        // before it and its own hash; the head row is updated in the same transaction, which
        // also serialises concurrent appends (a row lock on PostgreSQL).
        for col in [
            ColumnDef::new(AuditEvent::Seq)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(AuditEvent::Role).string().null().to_owned(),
            ColumnDef::new(AuditEvent::Before).text().null().to_owned(),
            ColumnDef::new(AuditEvent::After).text().null().to_owned(),
            ColumnDef::new(AuditEvent::RequestId)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(AuditEvent::OrganisationId)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(AuditEvent::DepartmentId)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(AuditEvent::PrevHash)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(AuditEvent::Hash).string().null().to_owned(),
        ] {
            add(m, AuditEvent::Table, col).await?;
        }
        m.create_index(
            Index::create()
                .name("ux_audit_event_seq")
                .table(AuditEvent::Table)
                .col(AuditEvent::Seq)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditHead::Table)
                .col(
                    ColumnDef::new(AuditHead::Id)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditHead::Seq).big_integer().not_null())
                .col(ColumnDef::new(AuditHead::Hash).string().not_null())
                .to_owned(),
        )
        .await?;
        // Events written before the chain existed are chained by the server at start-up
        // (store::Store::open), which can hash; SQL cannot portably.
        db.execute_unprepared("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '')")
            .await?;

        for table in VERSIONED {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD COLUMN version BIGINT NOT NULL DEFAULT 1"
            ))
            .await?;
        }
        add(
            m,
            Person::Table,
            ColumnDef::new(Person::DisabledAt)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Person::Table,
            ColumnDef::new(Person::DeletedAt)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Person::Table,
            ColumnDef::new(Person::DeletedEmail)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Endpoint::Table,
            ColumnDef::new(Endpoint::DeletedAt)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Account::Table,
            ColumnDef::new(Account::DeletedAt)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;

        // Names become unique within an organisation. Duplicates from before get their id
        // appended, so the index can be built and nothing is lost.
        for table in ["endpoint", "account"] {
            db.execute_unprepared(&format!(
                "UPDATE {table} SET name = name || ' #' || CAST(id AS TEXT) \
                 WHERE id NOT IN (SELECT MIN(id) FROM {table} GROUP BY organisation_id, name)"
            ))
            .await?;
            // Partial: a deleted endpoint or account frees its name.
            db.execute_unprepared(&format!(
                "CREATE UNIQUE INDEX ux_{table}_org_name ON {table} (organisation_id, name) \
                 WHERE deleted_at IS NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for table in ["endpoint", "account"] {
            db.execute_unprepared(&format!("DROP INDEX ux_{table}_org_name"))
                .await?;
        }
        drop(m, Account::Table, Account::DeletedAt).await?;
        drop(m, Endpoint::Table, Endpoint::DeletedAt).await?;
        drop(m, Person::Table, Person::DeletedEmail).await?;
        drop(m, Person::Table, Person::DeletedAt).await?;
        drop(m, Person::Table, Person::DisabledAt).await?;
        for table in VERSIONED {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN version"))
                .await?;
        }
        m.drop_table(Table::drop().table(AuditHead::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("ux_audit_event_seq")
                .table(AuditEvent::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            AuditEvent::Hash,
            AuditEvent::PrevHash,
            AuditEvent::DepartmentId,
            AuditEvent::OrganisationId,
            AuditEvent::RequestId,
            AuditEvent::After,
            AuditEvent::Before,
            AuditEvent::Role,
            AuditEvent::Seq,
        ] {
            drop(m, AuditEvent::Table, col).await?;
        }
        for table in [
            Idempotency::Table.into_iden(),
            ApiKey::Table.into_iden(),
            AdminSession::Table.into_iden(),
            AdminScope::Table.into_iden(),
            Admin::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
