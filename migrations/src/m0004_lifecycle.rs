//! The certificate lifecycle: approval decisions, revocation by whom, S/MIME profile types,
//! the organisation's identifier, the published CRL and pre-signed OCSP responses, notices
//! tied to orders and certificates (sent at most once per `dedupe_key`), and one-time form
//! tokens.
//!
//! SQLite alters one column per statement, so each column is its own `ALTER TABLE`.

use sea_orm_migration::prelude::*;

use crate::columns::id;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CertOrder {
    Table,
    CsrDer,
    DecidedBy,
    DecidedAt,
    DecisionReason,
}

#[derive(DeriveIden)]
enum Certificate {
    Table,
    RevokedBy,
    NotAfter,
}

#[derive(DeriveIden)]
enum Profile {
    Table,
    SmimeValidation,
    SmimeGeneration,
}

#[derive(DeriveIden)]
enum Organisation {
    Table,
    OrganizationIdentifier,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    OrderId,
    CertificateId,
    DedupeKey,
}

#[derive(DeriveIden)]
enum WebSession {
    Table,
    FormTokenHash,
}

#[derive(DeriveIden)]
enum Crl {
    Table,
    Id,
    Number,
    ThisUpdate,
    NextUpdate,
    Der,
}

#[derive(DeriveIden)]
enum OcspResponse {
    Table,
    Id,
    Serial,
    Der,
    ThisUpdate,
    NextUpdate,
}

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
        // The CSR is public data; an order waiting for approval keeps it so the approval
        // itself can sign (client-generated keys). Server-key orders keep none.
        add(
            m,
            CertOrder::Table,
            ColumnDef::new(CertOrder::CsrDer).binary().null().to_owned(),
        )
        .await?;
        add(
            m,
            CertOrder::Table,
            ColumnDef::new(CertOrder::DecidedBy)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            CertOrder::Table,
            ColumnDef::new(CertOrder::DecidedAt)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            CertOrder::Table,
            ColumnDef::new(CertOrder::DecisionReason)
                .text()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Certificate::Table,
            ColumnDef::new(Certificate::RevokedBy)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Profile::Table,
            ColumnDef::new(Profile::SmimeValidation)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Profile::Table,
            ColumnDef::new(Profile::SmimeGeneration)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Organisation::Table,
            ColumnDef::new(Organisation::OrganizationIdentifier)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Outbox::Table,
            ColumnDef::new(Outbox::OrderId)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Outbox::Table,
            ColumnDef::new(Outbox::CertificateId)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            Outbox::Table,
            ColumnDef::new(Outbox::DedupeKey).string().null().to_owned(),
        )
        .await?;
        add(
            m,
            WebSession::Table,
            ColumnDef::new(WebSession::FormTokenHash)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        // A notice is sent at most once per certificate and threshold, whichever process
        // queues it first: the second insert meets this constraint.
        m.create_index(
            Index::create()
                .name("ux_outbox_dedupe_key")
                .table(Outbox::Table)
                .col(Outbox::DedupeKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_certificate_not_after")
                .table(Certificate::Table)
                .col(Certificate::NotAfter)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Crl::Table)
                .col(id(Crl::Id))
                .col(
                    ColumnDef::new(Crl::Number)
                        .big_integer()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Crl::ThisUpdate).big_integer().not_null())
                .col(ColumnDef::new(Crl::NextUpdate).big_integer().not_null())
                .col(ColumnDef::new(Crl::Der).binary().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OcspResponse::Table)
                .col(id(OcspResponse::Id))
                .col(
                    ColumnDef::new(OcspResponse::Serial)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(OcspResponse::Der).binary().not_null())
                .col(
                    ColumnDef::new(OcspResponse::ThisUpdate)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(OcspResponse::NextUpdate)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OcspResponse::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Crl::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("ix_certificate_not_after")
                .table(Certificate::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ux_outbox_dedupe_key")
                .table(Outbox::Table)
                .to_owned(),
        )
        .await?;
        drop(m, WebSession::Table, WebSession::FormTokenHash).await?;
        drop(m, Outbox::Table, Outbox::DedupeKey).await?;
        drop(m, Outbox::Table, Outbox::CertificateId).await?;
        drop(m, Outbox::Table, Outbox::OrderId).await?;
        drop(m, Organisation::Table, Organisation::OrganizationIdentifier).await?;
        drop(m, Profile::Table, Profile::SmimeGeneration).await?;
        drop(m, Profile::Table, Profile::SmimeValidation).await?;
        drop(m, Certificate::Table, Certificate::RevokedBy).await?;
        drop(m, CertOrder::Table, CertOrder::DecisionReason).await?;
        drop(m, CertOrder::Table, CertOrder::DecidedAt).await?;
        drop(m, CertOrder::Table, CertOrder::DecidedBy).await?;
        drop(m, CertOrder::Table, CertOrder::CsrDer).await
    }
}
