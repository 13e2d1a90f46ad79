//! Browser self-enrollment and email: one-time email tokens, server-side web sessions, the
//! mail outbox, and rate counters for mail sending.
//!
//! The outbox holds no message text: a row names what to send (`kind`) and the token row it
//! is about, and the mail worker renders it at send time. The link's secret is minted by
//! the worker just before sending and only its hash is stored, so no secret sits in the
//! database in clear, even while a message waits for a retry.

use sea_orm_migration::prelude::*;

use crate::columns::{fk, id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Endpoint {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum EmailToken {
    Table,
    Id,
    TokenHash,
    EndpointId,
    Email,
    Purpose,
    AccountId,
    CsrSha256,
    SourceAddr,
    CreatedAt,
    ExpiresAt,
    ConfirmedAt,
    ConsumedAt,
}

#[derive(DeriveIden)]
enum WebSession {
    Table,
    Id,
    TokenHash,
    EndpointId,
    Email,
    PersonId,
    AccountId,
    AuthType,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    Recipient,
    EmailTokenId,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    SentAt,
    LastError,
}

#[derive(DeriveIden)]
enum RateEvent {
    Table,
    Id,
    Key,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(EmailToken::Table)
                .col(id(EmailToken::Id))
                // Null until the mail worker mints the secret at send time.
                .col(
                    ColumnDef::new(EmailToken::TokenHash)
                        .string()
                        .null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(EmailToken::EndpointId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(EmailToken::Email).string().not_null())
                .col(ColumnDef::new(EmailToken::Purpose).string().not_null())
                .col(ColumnDef::new(EmailToken::AccountId).big_integer().null())
                .col(ColumnDef::new(EmailToken::CsrSha256).string().null())
                .col(ColumnDef::new(EmailToken::SourceAddr).string().not_null())
                .col(
                    ColumnDef::new(EmailToken::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(EmailToken::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(EmailToken::ConfirmedAt).big_integer().null())
                .col(ColumnDef::new(EmailToken::ConsumedAt).big_integer().null())
                .foreign_key(&mut fk(
                    "fk_email_token_endpoint",
                    (EmailToken::Table, EmailToken::EndpointId),
                    (Endpoint::Table, Endpoint::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_email_token_owner")
                .table(EmailToken::Table)
                .col(EmailToken::EndpointId)
                .col(EmailToken::Email)
                .col(EmailToken::Purpose)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_email_token_csr")
                .table(EmailToken::Table)
                .col(EmailToken::AccountId)
                .col(EmailToken::CsrSha256)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebSession::Table)
                .col(id(WebSession::Id))
                .col(
                    ColumnDef::new(WebSession::TokenHash)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(WebSession::EndpointId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(WebSession::Email).string().not_null())
                .col(ColumnDef::new(WebSession::PersonId).big_integer().null())
                .col(ColumnDef::new(WebSession::AccountId).big_integer().null())
                .col(ColumnDef::new(WebSession::AuthType).string().not_null())
                .col(
                    ColumnDef::new(WebSession::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebSession::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(&mut fk(
                    "fk_web_session_endpoint",
                    (WebSession::Table, WebSession::EndpointId),
                    (Endpoint::Table, Endpoint::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(id(Outbox::Id))
                .col(ColumnDef::new(Outbox::Kind).string().not_null())
                .col(ColumnDef::new(Outbox::Recipient).string().not_null())
                .col(ColumnDef::new(Outbox::EmailTokenId).big_integer().null())
                .col(ColumnDef::new(Outbox::CreatedAt).big_integer().not_null())
                .col(
                    ColumnDef::new(Outbox::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(Outbox::NextAttemptAt)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Outbox::LockedUntil).big_integer().null())
                .col(ColumnDef::new(Outbox::SentAt).big_integer().null())
                .col(ColumnDef::new(Outbox::LastError).text().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_outbox_due")
                .table(Outbox::Table)
                .col(Outbox::SentAt)
                .col(Outbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RateEvent::Table)
                .col(id(RateEvent::Id))
                .col(ColumnDef::new(RateEvent::Key).string().not_null())
                .col(ColumnDef::new(RateEvent::At).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_rate_event_key")
                .table(RateEvent::Table)
                .col(RateEvent::Key)
                .col(RateEvent::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            RateEvent::Table.into_iden(),
            Outbox::Table.into_iden(),
            WebSession::Table.into_iden(),
            EmailToken::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
