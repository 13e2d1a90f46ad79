//! Administrators, their scopes, sessions and API keys, and the record of idempotent POSTs.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

use super::entities::{admin, admin_scope, admin_session, api_key, idempotency};
use super::{conflict, corrupt, insert_audit, AuditEntry, Result, Store, StoreError};
use crate::domain::{Admin, ApiKeyRecord, EmailAddress, Id, Role, SecretHash, UnixTime};

#[derive(Debug, Clone)]
pub struct NewAdmin {
    pub name: String,
    pub email: EmailAddress,
    pub role: Role,
    pub organisation_ids: Vec<Id>,
    pub department_ids: Vec<Id>,
    pub password_hash: Option<SecretHash>,
    /// The TOTP secret, sealed by the RA (never stored in clear).
    pub totp_sealed: Option<String>,
}

/// An administrator's changeable fields; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct AdminChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub organisation_ids: Option<Vec<Id>>,
    pub department_ids: Option<Vec<Id>>,
    pub disabled: Option<bool>,
}

/// What signing in checks: kept apart from `Admin`, which is shown.
#[derive(Debug, Clone)]
pub struct AdminCredentials {
    pub password_hash: Option<SecretHash>,
    pub totp_sealed: Option<String>,
}

/// How a POST with an `Idempotency-Key` begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// First time: run it, then `finish_idempotent`.
    New,
    /// Done before with the same request: answer this again.
    Replay { status: u16, body: String },
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

impl Store {
    async fn admin_from(&self, m: admin::Model) -> Result<Admin> {
        let scopes = admin_scope::Entity::find()
            .filter(admin_scope::Column::AdminId.eq(m.id))
            .order_by_asc(admin_scope::Column::Id)
            .all(&self.db)
            .await?;
        Ok(Admin {
            id: m.id,
            email: EmailAddress::parse(&m.email).ok_or_else(|| corrupt("email", &m.email))?,
            role: Role::parse(&m.role).ok_or_else(|| corrupt("role", &m.role))?,
            organisation_ids: scopes.iter().filter_map(|s| s.organisation_id).collect(),
            department_ids: scopes.iter().filter_map(|s| s.department_id).collect(),
            disabled: m.disabled_at.is_some(),
            has_password: m.password_hash.is_some(),
            created_at: m.created_at,
            version: m.version,
            name: m.name,
        })
    }

    async fn put_scopes(
        txn: &impl sea_orm::ConnectionTrait,
        admin_id: Id,
        orgs: &[Id],
        depts: &[Id],
    ) -> Result<()> {
        admin_scope::Entity::delete_many()
            .filter(admin_scope::Column::AdminId.eq(admin_id))
            .exec(txn)
            .await?;
        for (org, dept) in orgs
            .iter()
            .map(|o| (Some(*o), None))
            .chain(depts.iter().map(|d| (None, Some(*d))))
        {
            admin_scope::ActiveModel {
                admin_id: Set(admin_id),
                organisation_id: Set(org),
                department_id: Set(dept),
                ..Default::default()
            }
            .insert(txn)
            .await?;
        }
        Ok(())
    }

    pub async fn create_admin(
        &self,
        a: &NewAdmin,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Admin> {
        let txn = self.db.begin().await?;
        let m = admin::ActiveModel {
            name: Set(a.name.clone()),
            email: Set(a.email.as_str().to_string()),
            role: Set(a.role.as_str().to_string()),
            password_hash: Set(a.password_hash.as_ref().map(|h| h.as_str().to_string())),
            totp_sealed: Set(a.totp_sealed.clone()),
            created_at: Set(now),
            version: Set(1),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("administrator {}", a.email)))?;
        Self::put_scopes(&txn, m.id, &a.organisation_ids, &a.department_ids).await?;
        insert_audit(&txn, audit, &format!("admin {}", m.id), now).await?;
        txn.commit().await?;
        self.admin(m.id).await
    }

    pub async fn admin(&self, id: Id) -> Result<Admin> {
        let m = admin::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("administrator {id}")))?;
        self.admin_from(m).await
    }

    pub async fn admin_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<(Admin, AdminCredentials)>> {
        let Some(m) = admin::Entity::find()
            .filter(admin::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let creds = AdminCredentials {
            password_hash: m.password_hash.clone().map(SecretHash::from_stored),
            totp_sealed: m.totp_sealed.clone(),
        };
        Ok(Some((self.admin_from(m).await?, creds)))
    }

    pub async fn admins(&self) -> Result<Vec<Admin>> {
        let mut out = Vec::new();
        for m in admin::Entity::find()
            .order_by_asc(admin::Column::Id)
            .all(&self.db)
            .await?
        {
            out.push(self.admin_from(m).await?);
        }
        Ok(out)
    }

    /// Applies `c` if the row is still at `expected` (when given); bumps the version.
    pub async fn update_admin(
        &self,
        id: Id,
        expected: Option<i64>,
        c: &AdminChanges,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Admin> {
        let txn = self.db.begin().await?;
        let mut q = admin::Entity::update_many()
            .col_expr(
                admin::Column::Version,
                Expr::col(admin::Column::Version).add(1),
            )
            .filter(admin::Column::Id.eq(id));
        if let Some(v) = expected {
            q = q.filter(admin::Column::Version.eq(v));
        }
        if let Some(name) = &c.name {
            q = q.col_expr(admin::Column::Name, Expr::value(name.as_str()));
        }
        if let Some(role) = c.role {
            q = q.col_expr(admin::Column::Role, Expr::value(role.as_str()));
        }
        if let Some(disabled) = c.disabled {
            q = q.col_expr(
                admin::Column::DisabledAt,
                Expr::value(if disabled { Some(now) } else { None }),
            );
        }
        if q.exec(&txn).await?.rows_affected == 0 {
            return Err(missing_or_stale(
                admin::Entity::find_by_id(id).one(&txn).await?.is_some(),
                format!("administrator {id}"),
            ));
        }
        if c.organisation_ids.is_some() || c.department_ids.is_some() {
            // Read inside the transaction: SQLite's one pooled connection is held by it.
            let scopes = admin_scope::Entity::find()
                .filter(admin_scope::Column::AdminId.eq(id))
                .all(&txn)
                .await?;
            let orgs = c
                .organisation_ids
                .clone()
                .unwrap_or_else(|| scopes.iter().filter_map(|s| s.organisation_id).collect());
            let depts = c
                .department_ids
                .clone()
                .unwrap_or_else(|| scopes.iter().filter_map(|s| s.department_id).collect());
            Self::put_scopes(&txn, id, &orgs, &depts).await?;
        }
        if c.disabled == Some(true) {
            admin_session::Entity::delete_many()
                .filter(admin_session::Column::AdminId.eq(id))
                .exec(&txn)
                .await?;
        }
        insert_audit(&txn, audit, &format!("admin {id}"), now).await?;
        txn.commit().await?;
        self.admin(id).await
    }

    /// Replaces the password and TOTP secret; ends the administrator's sessions.
    pub async fn set_admin_credentials(
        &self,
        id: Id,
        password_hash: &SecretHash,
        totp_sealed: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        let r = admin::Entity::update_many()
            .col_expr(
                admin::Column::PasswordHash,
                Expr::value(password_hash.as_str()),
            )
            .col_expr(admin::Column::TotpSealed, Expr::value(totp_sealed))
            .col_expr(
                admin::Column::TotpLastStep,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                admin::Column::Version,
                Expr::col(admin::Column::Version).add(1),
            )
            .filter(admin::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("administrator {id}")));
        }
        admin_session::Entity::delete_many()
            .filter(admin_session::Column::AdminId.eq(id))
            .exec(&txn)
            .await?;
        insert_audit(&txn, audit, &format!("admin {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn delete_admin(&self, id: Id, audit: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        // Scopes, sessions and keys go with it (ON DELETE CASCADE needs SQLite's
        // foreign_keys pragma, so they are deleted explicitly too).
        admin_scope::Entity::delete_many()
            .filter(admin_scope::Column::AdminId.eq(id))
            .exec(&txn)
            .await?;
        admin_session::Entity::delete_many()
            .filter(admin_session::Column::AdminId.eq(id))
            .exec(&txn)
            .await?;
        api_key::Entity::delete_many()
            .filter(api_key::Column::AdminId.eq(id))
            .exec(&txn)
            .await?;
        let r = admin::Entity::delete_by_id(id).exec(&txn).await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("administrator {id}")));
        }
        insert_audit(&txn, audit, &format!("admin {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Records that a TOTP time step was used; false if it (or a later one) was used
    /// before, so a code cannot be replayed (RFC 6238 §5.2).
    pub async fn use_totp_step(&self, admin_id: Id, step: i64) -> Result<bool> {
        let r = admin::Entity::update_many()
            .col_expr(admin::Column::TotpLastStep, Expr::value(step))
            .filter(admin::Column::Id.eq(admin_id))
            .filter(
                Condition::any()
                    .add(admin::Column::TotpLastStep.is_null())
                    .add(admin::Column::TotpLastStep.lt(step)),
            )
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    // ---- sessions ----------------------------------------------------------------------

    pub async fn create_admin_session(
        &self,
        admin_id: Id,
        token_hash: &str,
        source: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        admin_session::ActiveModel {
            admin_id: Set(admin_id),
            token_hash: Set(token_hash.to_string()),
            created_at: Set(now),
            last_seen_at: Set(now),
            expires_at: Set(expires_at),
            source_addr: Set(source.to_string()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The session's administrator if the session is live: not expired and seen within
    /// `idle` seconds. Marks it seen.
    pub async fn admin_session(
        &self,
        token_hash: &str,
        now: UnixTime,
        idle: i64,
    ) -> Result<Option<Admin>> {
        let Some(s) = admin_session::Entity::find()
            .filter(admin_session::Column::TokenHash.eq(token_hash))
            .filter(admin_session::Column::ExpiresAt.gt(now))
            .filter(admin_session::Column::LastSeenAt.gt(now - idle))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        admin_session::Entity::update_many()
            .col_expr(admin_session::Column::LastSeenAt, Expr::value(now))
            .filter(admin_session::Column::Id.eq(s.id))
            .exec(&self.db)
            .await?;
        Ok(Some(self.admin(s.admin_id).await?))
    }

    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<()> {
        admin_session::Entity::delete_many()
            .filter(admin_session::Column::TokenHash.eq(token_hash))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- API keys ----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub async fn create_api_key(
        &self,
        admin_id: Id,
        name: &str,
        key_id: &str,
        secret_hash: &str,
        expires_at: UnixTime,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<ApiKeyRecord> {
        let txn = self.db.begin().await?;
        let m = api_key::ActiveModel {
            admin_id: Set(admin_id),
            name: Set(name.to_string()),
            key_id: Set(key_id.to_string()),
            secret_hash: Set(secret_hash.to_string()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        insert_audit(&txn, audit, &format!("api-key {key_id}"), now).await?;
        txn.commit().await?;
        Ok(api_key_from(&m))
    }

    /// A key by its public id, with the hash of its secret.
    pub async fn api_key(&self, key_id: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::KeyId.eq(key_id))
            .one(&self.db)
            .await?
            .map(|m| (api_key_from(&m), m.secret_hash)))
    }

    pub async fn api_key_by_id(&self, id: Id) -> Result<ApiKeyRecord> {
        api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(|m| api_key_from(&m))
            .ok_or_else(|| StoreError::NotFound(format!("API key {id}")))
    }

    /// Keys of one administrator, or of all.
    pub async fn api_keys(&self, admin_id: Option<Id>) -> Result<Vec<ApiKeyRecord>> {
        let mut q = api_key::Entity::find();
        if let Some(a) = admin_id {
            q = q.filter(api_key::Column::AdminId.eq(a));
        }
        Ok(q.order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?
            .iter()
            .map(api_key_from)
            .collect())
    }

    pub async fn revoke_api_key(&self, id: Id, audit: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        let r = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("live API key {id}")));
        }
        insert_audit(&txn, audit, &format!("api-key {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn touch_api_key(&self, id: Id, now: UnixTime) -> Result<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- idempotency -------------------------------------------------------------------

    pub async fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        now: UnixTime,
    ) -> Result<Idempotent> {
        let inserted = idempotency::ActiveModel {
            principal: Set(principal.to_string()),
            idem_key: Set(key.to_string()),
            request_hash: Set(request_hash.to_string()),
            status: Set(0),
            body: Set(String::new()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(conflict("idempotency key"));
        match inserted {
            Ok(_) => Ok(Idempotent::New),
            Err(StoreError::Conflict(_)) => {
                let m = idempotency::Entity::find()
                    .filter(idempotency::Column::Principal.eq(principal))
                    .filter(idempotency::Column::IdemKey.eq(key))
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| StoreError::NotFound("idempotency key".into()))?;
                Ok(if m.request_hash != request_hash {
                    Idempotent::Mismatch
                } else if m.status == 0 {
                    Idempotent::InFlight
                } else {
                    Idempotent::Replay {
                        status: m.status as u16,
                        body: m.body,
                    }
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Stores the answer to replay; `None` forgets the key (the request failed in a way
    /// a retry may fix).
    pub async fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        answer: Option<(u16, &str)>,
    ) -> Result<()> {
        let q = idempotency::Entity::find()
            .filter(idempotency::Column::Principal.eq(principal))
            .filter(idempotency::Column::IdemKey.eq(key));
        let Some(m) = q.one(&self.db).await? else {
            return Ok(());
        };
        match answer {
            Some((status, body)) => {
                idempotency::Entity::update_many()
                    .col_expr(idempotency::Column::Status, Expr::value(status as i32))
                    .col_expr(idempotency::Column::Body, Expr::value(body))
                    .filter(idempotency::Column::Id.eq(m.id))
                    .exec(&self.db)
                    .await?;
            }
            None => {
                idempotency::Entity::delete_by_id(m.id)
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(())
    }

    /// Forgets idempotency keys and admin sessions older than `before`.
    pub async fn sweep_admin(&self, now: UnixTime, before: UnixTime) -> Result<()> {
        idempotency::Entity::delete_many()
            .filter(idempotency::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?;
        admin_session::Entity::delete_many()
            .filter(admin_session::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// No row changed: the row is gone (`NotFound`) or at another version (`Stale`).
pub(super) fn missing_or_stale(exists: bool, what: String) -> StoreError {
    if exists {
        StoreError::Stale(what)
    } else {
        StoreError::NotFound(what)
    }
}

fn api_key_from(m: &api_key::Model) -> ApiKeyRecord {
    ApiKeyRecord {
        id: m.id,
        admin_id: m.admin_id,
        name: m.name.clone(),
        key_id: m.key_id.clone(),
        created_at: m.created_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        last_used_at: m.last_used_at,
    }
}
