//! The first schema: organisations, persons, profiles, endpoints, accounts, orders,
//! certificates, audit events and authentication failures.
//!
//! Times are stored as Unix seconds (BIGINT) so SQLite and PostgreSQL compare them alike.

use sea_orm_migration::prelude::*;

use crate::columns::{fk, id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organisation {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Domain {
    Table,
    Id,
    OrganisationId,
    Name,
    Verified,
}

#[derive(DeriveIden)]
enum Department {
    Table,
    Id,
    OrganisationId,
    Name,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
    OrganisationId,
    DepartmentId,
    Email,
    FirstName,
    MiddleName,
    LastName,
    SecretIdHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Profile {
    Table,
    Id,
    Name,
    SubjectSource,
    KeyTypes,
    DefaultKeyType,
    TermsYears,
    DefaultTermYears,
    RequiresApproval,
}

#[derive(DeriveIden)]
enum Endpoint {
    Table,
    Id,
    OrganisationId,
    Name,
    UriExtension,
    AuthTypes,
    HelpLinkText,
    HelpLinkTarget,
    HelpText,
    EulaText,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    Id,
    EndpointId,
    OrganisationId,
    DepartmentId,
    Name,
    CsrMethod,
    AllowEmptyPkcs12Password,
    Authorization,
    AccessCodeHash,
    EstLabel,
    IsDefault,
}

#[derive(DeriveIden)]
enum AccountProfile {
    Table,
    AccountId,
    ProfileId,
    Position,
}

#[derive(DeriveIden)]
enum CertOrder {
    Table,
    Id,
    AccountId,
    ProfileId,
    PersonId,
    Requester,
    KeyType,
    TermYears,
    CsrSha256,
    Status,
    Serial,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Certificate {
    Table,
    Id,
    OrderId,
    Serial,
    Subject,
    NotBefore,
    NotAfter,
    Der,
    Sha256,
    Status,
    RevokedAt,
    RevocationReason,
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    Id,
    At,
    Actor,
    Action,
    Object,
    Detail,
    SourceAddr,
}

#[derive(DeriveIden)]
enum AuthFailure {
    Table,
    Id,
    AccountId,
    Username,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Organisation::Table)
                .col(id(Organisation::Id))
                .col(
                    ColumnDef::new(Organisation::Name)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(Organisation::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Domain::Table)
                .col(id(Domain::Id))
                .col(
                    ColumnDef::new(Domain::OrganisationId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Domain::Name)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Domain::Verified).boolean().not_null())
                .foreign_key(&mut fk(
                    "fk_domain_org",
                    (Domain::Table, Domain::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Department::Table)
                .col(id(Department::Id))
                .col(
                    ColumnDef::new(Department::OrganisationId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Department::Name).string().not_null())
                .foreign_key(&mut fk(
                    "fk_department_org",
                    (Department::Table, Department::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .index(
                    Index::create()
                        .name("ux_department_org_name")
                        .col(Department::OrganisationId)
                        .col(Department::Name)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Person::Table)
                .col(id(Person::Id))
                .col(
                    ColumnDef::new(Person::OrganisationId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Person::DepartmentId).big_integer().null())
                .col(
                    ColumnDef::new(Person::Email)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Person::FirstName).string().not_null())
                .col(ColumnDef::new(Person::MiddleName).string().not_null())
                .col(ColumnDef::new(Person::LastName).string().not_null())
                .col(ColumnDef::new(Person::SecretIdHash).string().null())
                .col(ColumnDef::new(Person::CreatedAt).big_integer().not_null())
                .foreign_key(&mut fk(
                    "fk_person_org",
                    (Person::Table, Person::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_person_department",
                    (Person::Table, Person::DepartmentId),
                    (Department::Table, Department::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Profile::Table)
                .col(id(Profile::Id))
                .col(
                    ColumnDef::new(Profile::Name)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Profile::SubjectSource).string().not_null())
                .col(ColumnDef::new(Profile::KeyTypes).string().not_null())
                .col(ColumnDef::new(Profile::DefaultKeyType).string().not_null())
                .col(ColumnDef::new(Profile::TermsYears).string().not_null())
                .col(
                    ColumnDef::new(Profile::DefaultTermYears)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Profile::RequiresApproval)
                        .boolean()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Endpoint::Table)
                .col(id(Endpoint::Id))
                .col(
                    ColumnDef::new(Endpoint::OrganisationId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Endpoint::Name).string().not_null())
                .col(
                    ColumnDef::new(Endpoint::UriExtension)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Endpoint::AuthTypes).string().not_null())
                .col(ColumnDef::new(Endpoint::HelpLinkText).string().not_null())
                .col(ColumnDef::new(Endpoint::HelpLinkTarget).string().not_null())
                .col(ColumnDef::new(Endpoint::HelpText).text().not_null())
                .col(ColumnDef::new(Endpoint::EulaText).text().not_null())
                .foreign_key(&mut fk(
                    "fk_endpoint_org",
                    (Endpoint::Table, Endpoint::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Account::Table)
                .col(id(Account::Id))
                .col(ColumnDef::new(Account::EndpointId).big_integer().not_null())
                .col(
                    ColumnDef::new(Account::OrganisationId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Account::DepartmentId).big_integer().null())
                .col(ColumnDef::new(Account::Name).string().not_null())
                .col(ColumnDef::new(Account::CsrMethod).string().not_null())
                .col(
                    ColumnDef::new(Account::AllowEmptyPkcs12Password)
                        .boolean()
                        .not_null(),
                )
                .col(ColumnDef::new(Account::Authorization).string().not_null())
                .col(ColumnDef::new(Account::AccessCodeHash).string().null())
                .col(
                    ColumnDef::new(Account::EstLabel)
                        .string()
                        .null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Account::IsDefault).boolean().not_null())
                .foreign_key(&mut fk(
                    "fk_account_endpoint",
                    (Account::Table, Account::EndpointId),
                    (Endpoint::Table, Endpoint::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_account_org",
                    (Account::Table, Account::OrganisationId),
                    (Organisation::Table, Organisation::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_account_department",
                    (Account::Table, Account::DepartmentId),
                    (Department::Table, Department::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AccountProfile::Table)
                .col(
                    ColumnDef::new(AccountProfile::AccountId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AccountProfile::ProfileId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AccountProfile::Position)
                        .integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(AccountProfile::AccountId)
                        .col(AccountProfile::ProfileId),
                )
                .foreign_key(&mut fk(
                    "fk_account_profile_account",
                    (AccountProfile::Table, AccountProfile::AccountId),
                    (Account::Table, Account::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_account_profile_profile",
                    (AccountProfile::Table, AccountProfile::ProfileId),
                    (Profile::Table, Profile::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CertOrder::Table)
                .col(id(CertOrder::Id))
                .col(
                    ColumnDef::new(CertOrder::AccountId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CertOrder::ProfileId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(CertOrder::PersonId).big_integer().null())
                .col(ColumnDef::new(CertOrder::Requester).string().not_null())
                .col(ColumnDef::new(CertOrder::KeyType).string().not_null())
                .col(ColumnDef::new(CertOrder::TermYears).integer().not_null())
                .col(ColumnDef::new(CertOrder::CsrSha256).string().not_null())
                .col(ColumnDef::new(CertOrder::Status).string().not_null())
                // Reserving the serial on the order (unique) is the intent record: a crash
                // after signing leaves an order in `signing`, never an unrecorded certificate.
                .col(
                    ColumnDef::new(CertOrder::Serial)
                        .string()
                        .null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(CertOrder::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CertOrder::UpdatedAt)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(&mut fk(
                    "fk_order_account",
                    (CertOrder::Table, CertOrder::AccountId),
                    (Account::Table, Account::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_order_profile",
                    (CertOrder::Table, CertOrder::ProfileId),
                    (Profile::Table, Profile::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_order_person",
                    (CertOrder::Table, CertOrder::PersonId),
                    (Person::Table, Person::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Certificate::Table)
                .col(id(Certificate::Id))
                .col(
                    ColumnDef::new(Certificate::OrderId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Certificate::Serial)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Certificate::Subject).string().not_null())
                .col(
                    ColumnDef::new(Certificate::NotBefore)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Certificate::NotAfter)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Certificate::Der).binary().not_null())
                .col(
                    ColumnDef::new(Certificate::Sha256)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Certificate::Status).string().not_null())
                .col(ColumnDef::new(Certificate::RevokedAt).big_integer().null())
                .col(
                    ColumnDef::new(Certificate::RevocationReason)
                        .string()
                        .null(),
                )
                .foreign_key(&mut fk(
                    "fk_certificate_order",
                    (Certificate::Table, Certificate::OrderId),
                    (CertOrder::Table, CertOrder::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditEvent::Table)
                .col(id(AuditEvent::Id))
                .col(ColumnDef::new(AuditEvent::At).big_integer().not_null())
                .col(ColumnDef::new(AuditEvent::Actor).string().not_null())
                .col(ColumnDef::new(AuditEvent::Action).string().not_null())
                .col(ColumnDef::new(AuditEvent::Object).string().not_null())
                .col(ColumnDef::new(AuditEvent::Detail).text().not_null())
                .col(ColumnDef::new(AuditEvent::SourceAddr).string().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuthFailure::Table)
                .col(id(AuthFailure::Id))
                .col(
                    ColumnDef::new(AuthFailure::AccountId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(AuthFailure::Username).string().not_null())
                .col(ColumnDef::new(AuthFailure::At).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_auth_failure_key")
                .table(AuthFailure::Table)
                .col(AuthFailure::AccountId)
                .col(AuthFailure::Username)
                .col(AuthFailure::At)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_order_csr")
                .table(CertOrder::Table)
                .col(CertOrder::AccountId)
                .col(CertOrder::CsrSha256)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AuthFailure::Table.into_iden(),
            AuditEvent::Table.into_iden(),
            Certificate::Table.into_iden(),
            CertOrder::Table.into_iden(),
            AccountProfile::Table.into_iden(),
            Account::Table.into_iden(),
            Endpoint::Table.into_iden(),
            Profile::Table.into_iden(),
            Person::Table.into_iden(),
            Department::Table.into_iden(),
            Domain::Table.into_iden(),
            Organisation::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
