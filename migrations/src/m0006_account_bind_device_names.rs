//! Accounts may bind device certificates to the Basic username (`bind_device_names`): with
//! it on, the CSR of an access-code device account may name only the device identifier
//! the client authenticated with. Existing accounts keep today's behaviour (off).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Account {
    Table,
    BindDeviceNames,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Account::Table)
                .add_column(
                    ColumnDef::new(Account::BindDeviceNames)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Account::Table)
                .drop_column(Account::BindDeviceNames)
                .to_owned(),
        )
        .await
    }
}
