//! Accounts choose the default PKCS#12 encryption for server-generated keys
//! (`modern` or `legacy`); existing accounts get `modern`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Account {
    Table,
    Pkcs12Encryption,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Account::Table)
                .add_column(
                    ColumnDef::new(Account::Pkcs12Encryption)
                        .string()
                        .not_null()
                        .default("modern"),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Account::Table)
                .drop_column(Account::Pkcs12Encryption)
                .to_owned(),
        )
        .await
    }
}
