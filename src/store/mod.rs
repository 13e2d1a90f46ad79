//! Persistence behind domain verbs. sea-orm entities stay private to this module; callers
//! see only `crate::domain` types.

mod admin;
mod audit;
#[cfg(test)]
mod audit_tests;
mod batch;
mod entities;
mod lifecycle;
mod people;
mod search;
mod selfservice;
mod setup;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};

pub use admin::{AdminChanges, AdminCredentials, Idempotent, NewAdmin};
pub use audit::{chain_hash, changes_seen, AuditFilter, ChainReport};
pub use batch::{BatchStats, Issuance, OrderOf, Stored};
use entities::*;
pub use lifecycle::{Notice, NoticeKind, OrderFilter};
pub use people::{tombstone_email, OrganisationChanges, PersonChanges, PersonFilter, References};
pub use search::{CertificateSearch, OrderSearch, Reach};
pub use selfservice::{
    NewEmailToken, NewWebSession, OutboxItem, TokenRefusal, OUTBOX_EMAIL_CONFIRMATION,
};
pub use setup::{AccountFilter, ProfileUsage};

use crate::domain::{
    Account, Actor, AuthType, Authorization, CertStatus, CertificateRecord, CsrMethod, Department,
    EmailAddress, Endpoint, Id, KeyType, Order, OrderStatus, Organisation, Person, PersonStatus,
    Pkcs12Encryption, Profile, SecretHash, SubjectSource, UnixTime,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// The row changed since the version the caller read (`If-Match`).
    #[error("{0} was changed by someone else")]
    Stale(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The SQLite database file could not be created.
    #[error("database file {0}")]
    Io(String),
    /// The database did not take the write now; asking again shortly may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                crate::error::Error::not_found(format!("{what} not found"))
            }
            StoreError::Conflict(what) => crate::error::Error::new(
                crate::error::ErrorKind::AlreadyUsed,
                format!("{what} already exists"),
            ),
            StoreError::Stale(what) => crate::error::Error::new(
                crate::error::ErrorKind::PreconditionFailed,
                format!("{what} was changed since you read it; read it again and retry"),
            ),
            StoreError::Unavailable(why) => {
                tracing::warn!("{why}");
                crate::error::Error::new(
                    crate::error::ErrorKind::Unavailable { retry_after: 1 },
                    "the certificate could not be stored just now; ask again in a moment",
                )
            }
            other => crate::error::Error::internal(other),
        }
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Maps a unique-constraint violation to `Conflict(what)`.
fn conflict(what: &str) -> impl Fn(DbErr) -> StoreError + '_ {
    move |e| {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("unique") || text.contains("duplicate") {
            StoreError::Conflict(what.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where the reads on every request's path go (`reader()`): on a SQLite file, a pool of
    /// its own, so they run beside the one writer instead of queuing behind its commits'
    /// fsync; otherwise (`None`) `db` itself.
    reader: Option<DatabaseConnection>,
    committer: batch::Committer,
}

/// Connections of the SQLite read pool. WAL lets readers run while the writer commits; two
/// cores gain nothing from more.
const SQLITE_READERS: u32 = 4;

fn pool_stats(db: &DatabaseConnection) -> PoolStats {
    let of = |size: u32, idle: usize, max: u32| PoolStats {
        open: size,
        idle: idle as u32,
        max,
    };
    match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            of(p.size(), p.num_idle(), p.options().get_max_connections())
        }
        sea_orm::DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            of(p.size(), p.num_idle(), p.options().get_max_connections())
        }
        _ => PoolStats::default(),
    }
}

/// A database connection pool of this process (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, in use or idle.
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// Fields of a new person.
#[derive(Debug, Clone)]
pub struct NewPerson {
    pub organisation_id: Id,
    pub department_id: Option<Id>,
    pub email: EmailAddress,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub secret_id_hash: Option<SecretHash>,
}

#[derive(Debug, Clone)]
pub struct NewProfile {
    pub name: String,
    pub subject_source: SubjectSource,
    pub key_types: Vec<KeyType>,
    pub default_key_type: KeyType,
    pub terms_years: Vec<u32>,
    pub default_term_years: u32,
    pub requires_approval: bool,
    pub smime: Option<crate::domain::SmimeType>,
}

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub organisation_id: Id,
    pub name: String,
    pub uri_extension: String,
    pub auth_types: Vec<AuthType>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    pub eula_text: String,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub endpoint_id: Id,
    pub organisation_id: Id,
    pub department_id: Option<Id>,
    pub name: String,
    pub csr_method: CsrMethod,
    pub allow_empty_pkcs12_password: bool,
    pub authorization: Authorization,
    pub access_code_hash: Option<SecretHash>,
    pub est_label: Option<String>,
    pub is_default: bool,
    pub pkcs12_encryption: Pkcs12Encryption,
    /// Device CSRs may name only the Basic username (`Account::bind_device_names`).
    pub bind_device_names: bool,
    pub profile_ids: Vec<Id>,
}

/// An order about to be signed: the intent recorded before the CA signs.
#[derive(Debug, Clone)]
pub struct SigningIntent {
    pub account_id: Id,
    pub profile_id: Id,
    pub person_id: Option<Id>,
    pub requester: String,
    pub key_type: KeyType,
    pub term_years: u32,
    pub csr_sha256: String,
    pub serial: String,
}

/// A certificate the CA just signed, ready to be stored.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    pub serial: String,
    pub subject: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub der: Vec<u8>,
    pub sha256: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: String,
    pub object: String,
    pub detail: String,
    /// JSON of the object before and after a change.
    pub before: Option<String>,
    pub after: Option<String>,
    /// The organisation and department the event belongs to, so scoped administrators
    /// see it.
    pub organisation_id: Option<Id>,
    pub department_id: Option<Id>,
}

/// The database file a SQLite URL names, as sqlx reads it (`sqlite://path?params`,
/// `sqlite:path`), with whether it may be created (`mode=rwc`); none for PostgreSQL and
/// in-memory databases.
fn sqlite_file(url: &str) -> Option<(std::path::PathBuf, bool)> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let params: Vec<&str> = params.split('&').collect();
    if path.is_empty() || path == ":memory:" || params.contains(&"mode=memory") {
        return None;
    }
    let path = percent_decoded(path)?;
    Some((path.into(), params.contains(&"mode=rwc")))
}

/// `%XX` escapes decoded (sqlx allows them for `?` and `#` in file names).
fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The database holds every certificate, order, person and audit event, and the hashes of
/// every secret: like the CA key, it is for the server's user alone. A new database file is
/// created 0600 before SQLite opens it; SQLite then creates its `-wal` and `-shm` files
/// with the database file's mode (its unix VFS copies it), so they are 0600 too.
fn create_private((path, may_create): &(std::path::PathBuf, bool)) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !may_create {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io(format!("{}: {e}", path.display()))),
    }
}

/// Files of a database made before estgate created them 0600 lose their group and other
/// permissions. A file we may not change (another owner) is left as it is, with a warning.
fn keep_private((path, _): &(std::path::PathBuf, bool)) {
    use std::os::unix::fs::PermissionsExt;
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let mut shm = path.clone().into_os_string();
    shm.push("-shm");
    for file in [path.clone(), wal.into(), shm.into()] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 == 0 {
            continue;
        }
        let private = std::fs::Permissions::from_mode(mode & 0o700);
        match std::fs::set_permissions(&file, private) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "database file made private (0600)")
            }
            Err(e) => tracing::warn!(
                file = %file.display(),
                "database file is readable by others and could not be made private: {e}"
            ),
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

fn key_type(s: &str) -> Result<KeyType> {
    KeyType::parse(s).ok_or_else(|| corrupt("key type", s))
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let file = sqlite_file(url);
        if let Some(file) = &file {
            create_private(file)?;
        }
        let mut opts = ConnectOptions::new(url.to_string());
        // SQLite has one writer at a time; with several pooled connections, concurrent writers
        // meet SQLITE_BUSY and back off in sleeps of up to 100 ms, which showed as a 180 ms p99
        // in estgate-bench. One connection queues them in the pool instead.
        let sqlite = url.starts_with("sqlite:");
        opts.sqlx_logging(false)
            .max_connections(if sqlite { 1 } else { 16 })
            // Set on every connection the pool opens, also one that replaces another after
            // its idle or lifetime limit. A certificate's answer leaves after its commit, so
            // the commit must survive a power loss: WAL with synchronous=FULL (NORMAL may
            // lose the last commits), and on PostgreSQL synchronous_commit on whatever the
            // server's default. Group commit (batch.rs) shares the fsync between issuances.
            // busy_timeout makes a second process's writer wait instead of failing.
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(std::time::Duration::from_secs(5))
                    .foreign_keys(true)
            })
            .map_sqlx_postgres_opts(|o| o.options([("synchronous_commit", "on")]));
        let db = Database::connect(opts).await?;
        if let Some(file) = &file {
            keep_private(file);
        }
        use estgate_migrations::MigratorTrait;
        estgate_migrations::Migrator::up(&db, None).await?;
        let reader = match &file {
            Some(_) => {
                let mut ro = ConnectOptions::new(url.to_string());
                ro.sqlx_logging(false)
                    .max_connections(SQLITE_READERS)
                    .min_connections(1)
                    // Reads only: a write sent here by mistake fails instead of racing the
                    // writer for the lock.
                    .map_sqlx_sqlite_opts(|o| {
                        use sea_orm::sqlx::sqlite::SqliteJournalMode;
                        o.journal_mode(SqliteJournalMode::Wal)
                            .busy_timeout(std::time::Duration::from_secs(5))
                            .pragma("query_only", "ON")
                    });
                Some(Database::connect(ro).await?)
            }
            None => None,
        };
        let committer = batch::Committer::start(db.clone());
        let store = Store {
            db,
            reader,
            committer,
        };
        store.seal_unchained_audit().await?;
        Ok(store)
    }

    /// The connection itself, for tests that tamper with rows as an attacker would.
    #[cfg(test)]
    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    // ---- organisations, domains, departments ------------------------------------------

    pub async fn create_organisation(
        &self,
        name: &str,
        domains: &[String],
        now: UnixTime,
    ) -> Result<Organisation> {
        let txn = self.db.begin().await?;
        let org = organisation::ActiveModel {
            name: Set(name.to_string()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("organisation {name}")))?;
        for d in domains {
            domain::ActiveModel {
                organisation_id: Set(org.id),
                name: Set(d.to_ascii_lowercase()),
                verified: Set(true),
                ..Default::default()
            }
            .insert(&txn)
            .await
            .map_err(conflict(&format!("domain {d}")))?;
        }
        txn.commit().await?;
        self.organisation(org.id).await
    }

    pub async fn set_organization_identifier(
        &self,
        organisation_id: Id,
        value: &str,
    ) -> Result<()> {
        organisation::Entity::update_many()
            .col_expr(
                organisation::Column::OrganizationIdentifier,
                Expr::value(value),
            )
            .filter(organisation::Column::Id.eq(organisation_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn add_domain(&self, organisation_id: Id, name: &str) -> Result<()> {
        domain::ActiveModel {
            organisation_id: Set(organisation_id),
            name: Set(name.to_ascii_lowercase()),
            verified: Set(true),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict(&format!("domain {name}")))?;
        Ok(())
    }

    async fn organisation_from(&self, m: organisation::Model) -> Result<Organisation> {
        let domains = domain::Entity::find()
            .filter(domain::Column::OrganisationId.eq(m.id))
            .filter(domain::Column::Verified.eq(true))
            .order_by_asc(domain::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect();
        Ok(Organisation {
            id: m.id,
            name: m.name,
            domains,
            organization_identifier: m.organization_identifier,
            version: m.version,
        })
    }

    pub async fn organisation(&self, id: Id) -> Result<Organisation> {
        let m = organisation::Entity::find_by_id(id)
            .one(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("organisation {id}")))?;
        self.organisation_from(m).await
    }

    pub async fn organisation_by_name(&self, name: &str) -> Result<Organisation> {
        let m = organisation::Entity::find()
            .filter(organisation::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("organisation {name:?}")))?;
        self.organisation_from(m).await
    }

    pub async fn organisations(&self) -> Result<Vec<Organisation>> {
        let mut out = Vec::new();
        for m in organisation::Entity::find()
            .order_by_asc(organisation::Column::Id)
            .all(&self.db)
            .await?
        {
            out.push(self.organisation_from(m).await?);
        }
        Ok(out)
    }

    pub async fn create_department(&self, organisation_id: Id, name: &str) -> Result<Department> {
        let m = department::ActiveModel {
            organisation_id: Set(organisation_id),
            name: Set(name.to_string()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict(&format!("department {name}")))?;
        Ok(Department {
            id: m.id,
            organisation_id: m.organisation_id,
            name: m.name,
            version: m.version,
        })
    }

    pub async fn department_by_name(&self, organisation_id: Id, name: &str) -> Result<Department> {
        department::Entity::find()
            .filter(department::Column::OrganisationId.eq(organisation_id))
            .filter(department::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .map(|m| Department {
                id: m.id,
                organisation_id: m.organisation_id,
                name: m.name,
                version: m.version,
            })
            .ok_or_else(|| StoreError::NotFound(format!("department {name:?}")))
    }

    pub async fn department(&self, id: Id) -> Result<Department> {
        department::Entity::find_by_id(id)
            .one(self.reader())
            .await?
            .map(|m| Department {
                id: m.id,
                organisation_id: m.organisation_id,
                name: m.name,
                version: m.version,
            })
            .ok_or_else(|| StoreError::NotFound(format!("department {id}")))
    }

    pub async fn departments(&self) -> Result<Vec<Department>> {
        Ok(department::Entity::find()
            .order_by_asc(department::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| Department {
                id: m.id,
                organisation_id: m.organisation_id,
                name: m.name,
                version: m.version,
            })
            .collect())
    }

    // ---- persons ------------------------------------------------------------------------

    pub async fn create_person(&self, p: NewPerson, now: UnixTime) -> Result<Person> {
        let m = person::ActiveModel {
            organisation_id: Set(p.organisation_id),
            department_id: Set(p.department_id),
            email: Set(p.email.as_str().to_string()),
            first_name: Set(p.first_name),
            middle_name: Set(p.middle_name),
            last_name: Set(p.last_name),
            secret_id_hash: Set(p.secret_id_hash.map(|h| h.as_str().to_string())),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict(&format!("person {}", p.email)))?;
        person_from(m)
    }

    pub async fn person_by_email(&self, email: &EmailAddress) -> Result<Option<Person>> {
        person::Entity::find()
            .filter(person::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?
            .map(person_from)
            .transpose()
    }

    pub async fn person(&self, id: Id) -> Result<Person> {
        person::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(person_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("person {id}")))
    }

    pub async fn set_person_secret_id(&self, person_id: Id, hash: &SecretHash) -> Result<()> {
        let r = person::Entity::update_many()
            .col_expr(person::Column::SecretIdHash, Expr::value(hash.as_str()))
            .filter(person::Column::Id.eq(person_id))
            .exec(&self.db)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("person {person_id}")));
        }
        Ok(())
    }

    pub async fn persons(&self) -> Result<Vec<Person>> {
        person::Entity::find()
            .order_by_asc(person::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(person_from)
            .collect()
    }

    // ---- profiles -----------------------------------------------------------------------

    pub async fn create_profile(&self, p: NewProfile) -> Result<Profile> {
        let m = profile::ActiveModel {
            name: Set(p.name.clone()),
            subject_source: Set(p.subject_source.as_str().to_string()),
            key_types: Set(p
                .key_types
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")),
            default_key_type: Set(p.default_key_type.as_str().to_string()),
            terms_years: Set(join(&p.terms_years)),
            default_term_years: Set(p.default_term_years as i32),
            requires_approval: Set(p.requires_approval),
            smime_validation: Set(p.smime.map(|t| t.validation.as_str().to_string())),
            smime_generation: Set(p.smime.map(|t| t.generation.as_str().to_string())),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict(&format!("profile {}", p.name)))?;
        profile_from(m)
    }

    pub async fn profile(&self, id: Id) -> Result<Profile> {
        profile::Entity::find_by_id(id)
            .one(self.reader())
            .await?
            .map(profile_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("profile {id}")))
    }

    pub async fn profile_by_name(&self, name: &str) -> Result<Profile> {
        profile::Entity::find()
            .filter(profile::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .map(profile_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("profile {name:?}")))
    }

    pub async fn profiles(&self) -> Result<Vec<Profile>> {
        profile::Entity::find()
            .order_by_asc(profile::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(profile_from)
            .collect()
    }

    // ---- endpoints ----------------------------------------------------------------------

    pub async fn create_endpoint(&self, e: NewEndpoint) -> Result<Endpoint> {
        let m = endpoint::ActiveModel {
            organisation_id: Set(e.organisation_id),
            name: Set(e.name.clone()),
            uri_extension: Set(e.uri_extension),
            auth_types: Set(join(&e.auth_types)),
            help_link_text: Set(e.help_link_text),
            help_link_target: Set(e.help_link_target),
            help_text: Set(e.help_text),
            eula_text: Set(e.eula_text),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict(&format!("endpoint {}", e.name)))?;
        endpoint_from(m)
    }

    pub async fn endpoint_by_name(&self, organisation_id: Id, name: &str) -> Result<Endpoint> {
        endpoint::Entity::find()
            .filter(endpoint::Column::OrganisationId.eq(organisation_id))
            .filter(endpoint::Column::Name.eq(name))
            .filter(endpoint::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .map(endpoint_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {name:?}")))
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        endpoint::Entity::find()
            .filter(endpoint::Column::DeletedAt.is_null())
            .order_by_asc(endpoint::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(endpoint_from)
            .collect()
    }

    // ---- accounts -----------------------------------------------------------------------

    pub async fn create_account(&self, a: NewAccount) -> Result<Account> {
        let txn = self.db.begin().await?;
        if a.is_default {
            // One default account: the new one takes the role over.
            account::Entity::update_many()
                .col_expr(account::Column::IsDefault, Expr::value(false))
                .exec(&txn)
                .await?;
        }
        let m = account::ActiveModel {
            endpoint_id: Set(a.endpoint_id),
            organisation_id: Set(a.organisation_id),
            department_id: Set(a.department_id),
            name: Set(a.name.clone()),
            csr_method: Set(a.csr_method.as_str().to_string()),
            allow_empty_pkcs12_password: Set(a.allow_empty_pkcs12_password),
            authorization: Set(a.authorization.as_str().to_string()),
            access_code_hash: Set(a.access_code_hash.map(|h| h.as_str().to_string())),
            est_label: Set(a.est_label.clone()),
            is_default: Set(a.is_default),
            pkcs12_encryption: Set(a.pkcs12_encryption.as_str().to_string()),
            bind_device_names: Set(a.bind_device_names),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!(
            "account with EST label {}",
            a.est_label.as_deref().unwrap_or("-")
        )))?;
        for (i, p) in a.profile_ids.iter().enumerate() {
            account_profile::ActiveModel {
                account_id: Set(m.id),
                profile_id: Set(*p),
                position: Set(i as i32),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        self.account_from(m).await
    }

    async fn account_from(&self, m: account::Model) -> Result<Account> {
        let profile_ids = account_profile::Entity::find()
            .filter(account_profile::Column::AccountId.eq(m.id))
            .order_by_asc(account_profile::Column::Position)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|ap| ap.profile_id)
            .collect();
        Ok(Account {
            id: m.id,
            endpoint_id: m.endpoint_id,
            organisation_id: m.organisation_id,
            department_id: m.department_id,
            csr_method: CsrMethod::parse(&m.csr_method)
                .ok_or_else(|| corrupt("CSR method", &m.csr_method))?,
            authorization: Authorization::parse(&m.authorization)
                .ok_or_else(|| corrupt("authorization", &m.authorization))?,
            name: m.name,
            allow_empty_pkcs12_password: m.allow_empty_pkcs12_password,
            access_code_hash: m.access_code_hash.map(SecretHash::from_stored),
            est_label: m.est_label,
            is_default: m.is_default,
            pkcs12_encryption: Pkcs12Encryption::parse(&m.pkcs12_encryption)
                .ok_or_else(|| corrupt("PKCS#12 encryption", &m.pkcs12_encryption))?,
            bind_device_names: m.bind_device_names,
            profile_ids,
            version: m.version,
        })
    }

    pub async fn set_account_access_code(&self, account_id: Id, hash: &SecretHash) -> Result<()> {
        let r = account::Entity::update_many()
            .col_expr(account::Column::AccessCodeHash, Expr::value(hash.as_str()))
            .filter(account::Column::Id.eq(account_id))
            .exec(&self.db)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("account {account_id}")));
        }
        Ok(())
    }

    pub async fn account(&self, id: Id) -> Result<Account> {
        let m = account::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        self.account_from(m).await
    }

    pub async fn account_by_label(&self, label: &str) -> Result<Option<Account>> {
        match account::Entity::find()
            .filter(account::Column::EstLabel.eq(label))
            .filter(account::Column::DeletedAt.is_null())
            .one(self.reader())
            .await?
        {
            Some(m) => Ok(Some(self.account_from(m).await?)),
            None => Ok(None),
        }
    }

    pub async fn default_account(&self) -> Result<Option<Account>> {
        match account::Entity::find()
            .filter(account::Column::IsDefault.eq(true))
            .filter(account::Column::DeletedAt.is_null())
            .one(self.reader())
            .await?
        {
            Some(m) => Ok(Some(self.account_from(m).await?)),
            None => Ok(None),
        }
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let mut out = Vec::new();
        for m in account::Entity::find()
            .filter(account::Column::DeletedAt.is_null())
            .order_by_asc(account::Column::Id)
            .all(&self.db)
            .await?
        {
            out.push(self.account_from(m).await?);
        }
        Ok(out)
    }

    // ---- issuance -----------------------------------------------------------------------

    /// Records the order in state `signing` with its reserved serial, and the intent audit
    /// event, in one transaction. A unique-serial clash is reported as `Conflict`.
    pub async fn record_intent(
        &self,
        intent: &SigningIntent,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Id> {
        let txn = self.db.begin().await?;
        let order = new_order(
            intent,
            OrderStatus::Signing,
            Some(intent.serial.clone()),
            now,
        )
        .insert(&txn)
        .await
        .map_err(conflict("serial"))?;
        insert_audit(&txn, audit, &format!("order {}", order.id), now).await?;
        txn.commit().await?;
        Ok(order.id)
    }

    /// Stores the signed certificate and marks its order (in `signing`) issued, durably,
    /// in the next group commit.
    pub async fn store_certificate(
        &self,
        order_id: Id,
        cert: &SignedCertificate,
        audit: &AuditEntry,
        notices: &[Notice],
        now: UnixTime,
    ) -> Result<Id> {
        let stored = self
            .store_issuance(Issuance {
                order: OrderOf::Signing(order_id),
                cert: cert.clone(),
                audit: audit.clone(),
                notices: notices.to_vec(),
                now,
            })
            .await?;
        Ok(stored.certificate_id)
    }

    /// Stores a signed certificate with its order, audit event and mail, durably: returns
    /// once the group commit that carries it has committed (batch.rs).
    pub async fn store_issuance(&self, issuance: Issuance) -> Result<Stored> {
        self.committer.commit(issuance).await
    }

    /// Group-commit figures since start.
    pub fn batch_stats(&self) -> &std::sync::Arc<BatchStats> {
        self.committer.stats()
    }

    /// The connection pools now: `main` (writes and most reads) and, on a SQLite file,
    /// `reader` (the reads on every request's path).
    pub fn pool_stats(&self) -> Vec<(&'static str, PoolStats)> {
        let mut out = vec![("main", pool_stats(&self.db))];
        if let Some(r) = &self.reader {
            out.push(("reader", pool_stats(r)));
        }
        out
    }

    /// The connection for reads on every request's path (see `reader`).
    fn reader(&self) -> &DatabaseConnection {
        self.reader.as_ref().unwrap_or(&self.db)
    }

    pub async fn certificate_by_sha256(&self, sha256: &str) -> Result<Option<CertificateRecord>> {
        certificate::Entity::find()
            .filter(certificate::Column::Sha256.eq(sha256))
            .one(self.reader())
            .await?
            .map(certificate_from)
            .transpose()
    }

    pub async fn certificates(&self) -> Result<Vec<CertificateRecord>> {
        certificate::Entity::find()
            .order_by_asc(certificate::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    pub async fn order(&self, id: Id) -> Result<Order> {
        let m = cert_order::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("order {id}")))?;
        order_from(m)
    }

    pub async fn count_orders(&self) -> Result<u64> {
        Ok(cert_order::Entity::find().count(&self.db).await?)
    }
}

fn order_from(m: cert_order::Model) -> Result<Order> {
    let decision = match (m.decided_by, m.decided_at) {
        (Some(by), Some(at)) => Some(crate::domain::Decision {
            by,
            at,
            reason: m.decision_reason,
        }),
        _ => None,
    };
    Ok(Order {
        created_at: m.created_at,
        csr_der: m.csr_der,
        decision,
        id: m.id,
        account_id: m.account_id,
        profile_id: m.profile_id,
        person_id: m.person_id,
        requester: m.requester,
        key_type: m.key_type,
        term_years: m.term_years as u32,
        csr_sha256: m.csr_sha256,
        status: OrderStatus::parse(&m.status).ok_or_else(|| corrupt("order status", &m.status))?,
        serial: m.serial,
    })
}

impl Store {
    // ---- audit and throttling -----------------------------------------------------------

    /// Failed secrets for (account, username) since `since`: their count and the oldest time.
    pub async fn recent_failures(
        &self,
        account_id: Id,
        username: &str,
        since: UnixTime,
    ) -> Result<(u64, Option<UnixTime>)> {
        let found = self
            .recent_failures_of(&[(account_id, username)], since)
            .await?;
        Ok(found.into_iter().next().unwrap_or((0, None)))
    }

    /// `recent_failures` for several (scope, name) keys in one query: each key's count and
    /// oldest time since `since`, in the order given (the throttle's check on every
    /// authentication asks for four at once).
    pub async fn recent_failures_of(
        &self,
        keys: &[(Id, &str)],
        since: UnixTime,
    ) -> Result<Vec<(u64, Option<UnixTime>)>> {
        use sea_orm::{Condition, QuerySelect};
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut any = Condition::any();
        for (scope, name) in keys {
            any = any.add(
                Condition::all()
                    .add(auth_failure::Column::AccountId.eq(*scope))
                    .add(auth_failure::Column::Username.eq(*name)),
            );
        }
        let rows: Vec<(Id, String, i64, Option<UnixTime>)> = auth_failure::Entity::find()
            .select_only()
            .column(auth_failure::Column::AccountId)
            .column(auth_failure::Column::Username)
            .column_as(auth_failure::Column::Id.count(), "n")
            .column_as(auth_failure::Column::At.min(), "oldest")
            .filter(auth_failure::Column::At.gte(since))
            .filter(any)
            .group_by(auth_failure::Column::AccountId)
            .group_by(auth_failure::Column::Username)
            .into_tuple()
            .all(self.reader())
            .await?;
        Ok(keys
            .iter()
            .map(|(scope, name)| {
                rows.iter()
                    .find(|(s, n, _, _)| s == scope && n == name)
                    .map_or((0, None), |(_, _, count, oldest)| {
                        (u64::try_from(*count).unwrap_or(0), *oldest)
                    })
            })
            .collect())
    }

    pub async fn record_failure(
        &self,
        account_id: Id,
        username: &str,
        now: UnixTime,
    ) -> Result<()> {
        auth_failure::ActiveModel {
            account_id: Set(account_id),
            username: Set(username.to_string()),
            at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets all failures of one (account, username), after a success.
    pub async fn clear_failures(&self, account_id: Id, username: &str) -> Result<()> {
        auth_failure::Entity::delete_many()
            .filter(auth_failure::Column::AccountId.eq(account_id))
            .filter(auth_failure::Column::Username.eq(username))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Forgets failures older than `before`, of every key.
    pub async fn sweep_failures(&self, before: UnixTime) -> Result<()> {
        auth_failure::Entity::delete_many()
            .filter(auth_failure::Column::At.lt(before))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn new_order(
    intent: &SigningIntent,
    status: OrderStatus,
    serial: Option<String>,
    now: UnixTime,
) -> cert_order::ActiveModel {
    cert_order::ActiveModel {
        account_id: Set(intent.account_id),
        profile_id: Set(intent.profile_id),
        person_id: Set(intent.person_id),
        requester: Set(intent.requester.clone()),
        key_type: Set(intent.key_type.as_str().to_string()),
        term_years: Set(intent.term_years as i32),
        csr_sha256: Set(intent.csr_sha256.clone()),
        status: Set(status.as_str().to_string()),
        serial: Set(serial),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

async fn insert_audit(
    db: &impl ConnectionTrait,
    e: &AuditEntry,
    object: &str,
    now: UnixTime,
) -> Result<()> {
    audit::append(db, e, object, now).await.map(|_| ())
}

fn person_from(m: person::Model) -> Result<Person> {
    Ok(Person {
        id: m.id,
        organisation_id: m.organisation_id,
        department_id: m.department_id,
        email: EmailAddress::parse(&m.email).ok_or_else(|| corrupt("email", &m.email))?,
        first_name: m.first_name,
        middle_name: m.middle_name,
        last_name: m.last_name,
        secret_id_hash: m.secret_id_hash.map(SecretHash::from_stored),
        status: match (m.disabled_at, m.deleted_at) {
            (_, Some(_)) => PersonStatus::Deleted,
            (Some(_), None) => PersonStatus::Disabled,
            (None, None) => PersonStatus::Active,
        },
        version: m.version,
    })
}

fn profile_from(m: profile::Model) -> Result<Profile> {
    Ok(Profile {
        id: m.id,
        subject_source: SubjectSource::parse(&m.subject_source)
            .ok_or_else(|| corrupt("subject source", &m.subject_source))?,
        key_types: split(&m.key_types).map(key_type).collect::<Result<_>>()?,
        default_key_type: key_type(&m.default_key_type)?,
        terms_years: split(&m.terms_years)
            .map(|t| t.parse().map_err(|_| corrupt("term", t)))
            .collect::<Result<_>>()?,
        default_term_years: m.default_term_years as u32,
        requires_approval: m.requires_approval,
        smime: smime_from(m.smime_validation.as_deref(), m.smime_generation.as_deref())?,
        name: m.name,
        version: m.version,
    })
}

fn endpoint_from(m: endpoint::Model) -> Result<Endpoint> {
    Ok(Endpoint {
        id: m.id,
        organisation_id: m.organisation_id,
        auth_types: split(&m.auth_types)
            .map(|a| AuthType::parse(a).ok_or_else(|| corrupt("authentication type", a)))
            .collect::<Result<_>>()?,
        name: m.name,
        uri_extension: m.uri_extension,
        help_link_text: m.help_link_text,
        help_link_target: m.help_link_target,
        help_text: m.help_text,
        eula_text: m.eula_text,
        version: m.version,
    })
}

fn smime_from(
    validation: Option<&str>,
    generation: Option<&str>,
) -> Result<Option<crate::domain::SmimeType>> {
    use crate::domain::{SmimeGeneration, SmimeType, SmimeValidation};
    match (validation, generation) {
        (None, None) => Ok(None),
        (Some(v), g) => Ok(Some(SmimeType {
            validation: SmimeValidation::parse(v).ok_or_else(|| corrupt("S/MIME type", v))?,
            generation: match g {
                Some(g) => {
                    SmimeGeneration::parse(g).ok_or_else(|| corrupt("S/MIME generation", g))?
                }
                None => SmimeGeneration::Multipurpose,
            },
        })),
        (None, Some(g)) => Err(corrupt("S/MIME generation without a type", g)),
    }
}

fn certificate_from(m: certificate::Model) -> Result<CertificateRecord> {
    let revocation = match (m.revoked_at, &m.revocation_reason) {
        (Some(at), Some(r)) => Some(crate::domain::Revocation {
            at,
            reason: crate::domain::RevocationReason::parse(r)
                .ok_or_else(|| corrupt("revocation reason", r))?,
            by: m.revoked_by.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(CertificateRecord {
        revocation,
        id: m.id,
        order_id: m.order_id,
        status: CertStatus::parse(&m.status)
            .ok_or_else(|| corrupt("certificate status", &m.status))?,
        serial: m.serial,
        subject: m.subject,
        not_before: m.not_before,
        not_after: m.not_after,
        der: m.der,
    })
}

#[cfg(test)]
mod file_tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &std::path::Path, suffix: &str) -> u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("estgate.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let store = Store::open(&url).await.unwrap();
        // A write, so that the WAL and its index exist.
        store
            .create_organisation("Org", &["example.org".into()], 0)
            .await
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(&db, suffix), 0o600, "estgate.db{suffix}");
        }
        drop(store);
        // A database made before (0644 under the usual umask) is made private when opened.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            if let Ok(m) = std::fs::metadata(&name) {
                let mut p = m.permissions();
                p.set_mode(0o644);
                std::fs::set_permissions(&name, p).unwrap();
            }
        }
        let store = Store::open(&url).await.unwrap();
        assert_eq!(
            store.organisations().await.unwrap().len(),
            1,
            "same database"
        );
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(&db, suffix), 0o600, "estgate.db{suffix} reopened");
        }
    }

    /// Durability is a property of each connection: the pool's own settings, not a
    /// statement run once after connecting (a connection opened later would miss it).
    #[tokio::test]
    async fn sqlite_connections_commit_durably_in_wal() {
        use sea_orm::Statement;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = Store::open(&url).await.unwrap();
        let pragma = |name: &str| {
            let db = store.db().clone();
            let sql = format!("PRAGMA {name}");
            async move {
                let row = db
                    .query_one(Statement::from_string(
                        sea_orm::DatabaseBackend::Sqlite,
                        sql,
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get_by_index::<i64>(0)
                    .map(|n| n.to_string())
                    .or_else(|_| row.try_get_by_index::<String>(0))
                    .unwrap()
            }
        };
        // FULL is 2 (NORMAL, 1, may lose the last commits on power loss).
        assert_eq!(pragma("synchronous").await, "2");
        assert_eq!(pragma("journal_mode").await, "wal");
        assert_eq!(pragma("foreign_keys").await, "1");
        assert_eq!(pragma("busy_timeout").await, "5000");
    }

    #[tokio::test]
    async fn the_sqlite_read_pool_sees_each_commit_at_once_and_refuses_writes() {
        use sea_orm::Statement;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let store = Store::open(&url).await.unwrap();
        assert_eq!(
            store
                .pool_stats()
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
            ["main", "reader"]
        );
        let org = store
            .create_organisation("Org", &["example.org".into()], 0)
            .await
            .unwrap();
        // Read back through the reader right after the writer's commit returned.
        assert_eq!(store.organisation(org.id).await.unwrap().name, "Org");
        let write = store
            .reader()
            .execute(Statement::from_string(
                sea_orm::DatabaseBackend::Sqlite,
                "DELETE FROM organisation".to_string(),
            ))
            .await;
        assert!(write.is_err(), "the read pool wrote");
        assert_eq!(store.organisations().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn failures_of_several_keys_are_counted_in_one_query_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("f.db").display());
        let store = Store::open(&url).await.unwrap();
        for (scope, name, at) in [
            (0, "client:a", 100),
            (0, "client:a", 90),
            (7, "u", 120),
            (7, "u", 10),
        ] {
            store.record_failure(scope, name, at).await.unwrap();
        }
        let got = store
            .recent_failures_of(&[(7, "u"), (0, "nobody"), (0, "client:a")], 50)
            .await
            .unwrap();
        // (7, "u") at 10 is outside the window.
        assert_eq!(got, [(1, Some(120)), (0, None), (2, Some(90))]);
        assert_eq!(
            store.recent_failures(0, "client:a", 50).await.unwrap(),
            (2, Some(90))
        );
        assert!(store.recent_failures_of(&[], 0).await.unwrap().is_empty());
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        let f = |u: &str| sqlite_file(u).map(|(p, c)| (p.display().to_string(), c));
        assert_eq!(
            f("sqlite://./estgate-data/estgate.db?mode=rwc"),
            Some(("./estgate-data/estgate.db".into(), true))
        );
        assert_eq!(
            f("sqlite:///var/lib/estgate/a%3Fb.db"),
            Some(("/var/lib/estgate/a?b.db".into(), false))
        );
        assert_eq!(
            f("sqlite:x.db?cache=shared&mode=rwc"),
            Some(("x.db".into(), true))
        );
        for none in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://x.db?mode=memory",
            "postgres://u@h/db",
        ] {
            assert_eq!(f(none), None, "{none}");
        }
    }
}
