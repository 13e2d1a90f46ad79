//! An index on `certificate.order_id`: every order shown with its certificate (`order
//! list`, the API's order search) looked the certificate up by scanning the whole table,
//! which made listing n orders take time in n². Seen as `estgate order list` running for
//! minutes over 27,000 orders in the crash test.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Certificate {
    Table,
    OrderId,
}

const NAME: &str = "ix_certificate_order_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(Certificate::Table)
                .col(Certificate::OrderId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(NAME)
                .table(Certificate::Table)
                .to_owned(),
        )
        .await
    }
}
