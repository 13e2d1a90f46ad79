//! Schema migrations for estgate. This crate names tables and columns with its own
//! identifiers and never imports the server crate, so old migrations stay frozen when the
//! server's entities evolve.

pub use sea_orm_migration::prelude::*;

mod columns;
mod m0001_initial;
mod m0002_account_pkcs12_encryption;
mod m0003_self_enrollment;
mod m0004_lifecycle;
mod m0005_administration;
mod m0006_account_bind_device_names;
mod m0007_certificate_order_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_account_pkcs12_encryption::Migration),
            Box::new(m0003_self_enrollment::Migration),
            Box::new(m0004_lifecycle::Migration),
            Box::new(m0005_administration::Migration),
            Box::new(m0006_account_bind_device_names::Migration),
            Box::new(m0007_certificate_order_index::Migration),
        ]
    }
}
