//! Enrollment setup as administrators change it: profiles, endpoints and accounts. Every
//! write takes the audit event it causes and appends it in the same transaction; edits are
//! compare-and-swap on `version`. Endpoints and accounts are deleted softly (`deleted_at`),
//! so the orders and certificates made through them keep their history.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};

use super::admin::missing_or_stale;
use super::entities::*;
use super::{
    conflict, endpoint_from, insert_audit, join, profile_from, AuditEntry, NewAccount, NewEndpoint,
    NewProfile, Result, Store, StoreError,
};
use crate::domain::{Account, Endpoint, Id, Profile, SecretHash, UnixTime};

/// What still uses a profile: live accounts (id, name) and the number of orders.
#[derive(Debug, Clone, Default)]
pub struct ProfileUsage {
    pub accounts: Vec<(Id, String)>,
    pub orders: u64,
}

/// Which live accounts to list.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    /// `None`: every organisation.
    pub organisations: Option<Vec<Id>>,
    pub endpoint: Option<Id>,
}

fn profile_model(p: &NewProfile) -> profile::ActiveModel {
    profile::ActiveModel {
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
}

async fn put_account_profiles(
    db: &impl ConnectionTrait,
    account_id: Id,
    profile_ids: &[Id],
) -> Result<()> {
    account_profile::Entity::delete_many()
        .filter(account_profile::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    for (i, p) in profile_ids.iter().enumerate() {
        account_profile::ActiveModel {
            account_id: Set(account_id),
            profile_id: Set(*p),
            position: Set(i as i32),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// One default account: the one being made default takes the role over.
async fn clear_default(db: &impl ConnectionTrait, except: Option<Id>) -> Result<()> {
    let mut q = account::Entity::update_many()
        .col_expr(account::Column::IsDefault, Expr::value(false))
        .filter(account::Column::IsDefault.eq(true));
    if let Some(id) = except {
        q = q.filter(account::Column::Id.ne(id));
    }
    q.exec(db).await?;
    Ok(())
}

impl Store {
    // ---- profiles -----------------------------------------------------------------------

    pub async fn add_profile(
        &self,
        p: &NewProfile,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Profile> {
        let txn = self.db.begin().await?;
        let m = profile_model(p)
            .insert(&txn)
            .await
            .map_err(conflict(&format!("profile {}", p.name)))?;
        insert_audit(&txn, audit, &format!("profile {}", m.id), now).await?;
        txn.commit().await?;
        profile_from(m)
    }

    /// Replaces every field of profile `id` if it is still at `expected` (when given).
    pub async fn replace_profile(
        &self,
        id: Id,
        expected: Option<i64>,
        p: &NewProfile,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Profile> {
        let txn = self.db.begin().await?;
        let mut q = profile::Entity::update_many()
            .set(profile_model(p))
            .col_expr(
                profile::Column::Version,
                Expr::col(profile::Column::Version).add(1),
            )
            .filter(profile::Column::Id.eq(id));
        if let Some(v) = expected {
            q = q.filter(profile::Column::Version.eq(v));
        }
        let r = q
            .exec(&txn)
            .await
            .map_err(conflict(&format!("profile {}", p.name)))?;
        if r.rows_affected == 0 {
            return Err(missing_or_stale(
                profile::Entity::find_by_id(id).one(&txn).await?.is_some(),
                format!("profile {id}"),
            ));
        }
        insert_audit(&txn, audit, &format!("profile {id}"), now).await?;
        let m = profile::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("profile {id}")))?;
        txn.commit().await?;
        profile_from(m)
    }

    pub async fn profile_usage(&self, id: Id) -> Result<ProfileUsage> {
        usage(&self.db, id).await
    }

    /// Deletes a profile nothing uses any more; `Conflict` if something does by now.
    pub async fn remove_profile(&self, id: Id, audit: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        let u = usage(&txn, id).await?;
        if !u.accounts.is_empty() || u.orders > 0 {
            return Err(StoreError::Conflict(format!("a use of profile {id}")));
        }
        // Deleted accounts may still list it; they enroll no more.
        account_profile::Entity::delete_many()
            .filter(account_profile::Column::ProfileId.eq(id))
            .exec(&txn)
            .await?;
        let r = profile::Entity::delete_by_id(id).exec(&txn).await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("profile {id}")));
        }
        insert_audit(&txn, audit, &format!("profile {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    // ---- endpoints ----------------------------------------------------------------------

    pub async fn add_endpoint(
        &self,
        e: &NewEndpoint,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Endpoint> {
        let txn = self.db.begin().await?;
        let m = endpoint::ActiveModel {
            organisation_id: Set(e.organisation_id),
            name: Set(e.name.clone()),
            uri_extension: Set(e.uri_extension.clone()),
            auth_types: Set(join(&e.auth_types)),
            help_link_text: Set(e.help_link_text.clone()),
            help_link_target: Set(e.help_link_target.clone()),
            help_text: Set(e.help_text.clone()),
            eula_text: Set(e.eula_text.clone()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("endpoint {}", e.name)))?;
        insert_audit(&txn, audit, &format!("endpoint {}", m.id), now).await?;
        txn.commit().await?;
        endpoint_from(m)
    }

    /// A live (not deleted) endpoint.
    pub async fn live_endpoint(&self, id: Id) -> Result<Endpoint> {
        endpoint::Entity::find_by_id(id)
            .filter(endpoint::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .map(endpoint_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
    }

    /// Live endpoints of these organisations (`None`: all), by id.
    pub async fn live_endpoints(&self, organisations: Option<&[Id]>) -> Result<Vec<Endpoint>> {
        let mut q = endpoint::Entity::find().filter(endpoint::Column::DeletedAt.is_null());
        if let Some(orgs) = organisations {
            q = q.filter(endpoint::Column::OrganisationId.is_in(orgs.to_vec()));
        }
        q.order_by_asc(endpoint::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(endpoint_from)
            .collect()
    }

    /// The live endpoint of an organisation with this name, if any.
    pub async fn live_endpoint_named(
        &self,
        organisation_id: Id,
        name: &str,
    ) -> Result<Option<Endpoint>> {
        endpoint::Entity::find()
            .filter(endpoint::Column::OrganisationId.eq(organisation_id))
            .filter(endpoint::Column::Name.eq(name))
            .filter(endpoint::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .map(endpoint_from)
            .transpose()
    }

    /// The endpoint, live or deleted, holding a URI extension: extensions are never reused.
    pub async fn endpoint_holding_extension(&self, ext: &str) -> Result<Option<Endpoint>> {
        endpoint::Entity::find()
            .filter(endpoint::Column::UriExtension.eq(ext))
            .one(&self.db)
            .await?
            .map(endpoint_from)
            .transpose()
    }

    /// Replaces the editable fields of a live endpoint at `expected` (when given); its
    /// organisation stays.
    pub async fn replace_endpoint(
        &self,
        id: Id,
        expected: Option<i64>,
        e: &NewEndpoint,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Endpoint> {
        let txn = self.db.begin().await?;
        let mut q = endpoint::Entity::update_many()
            .col_expr(endpoint::Column::Name, Expr::value(e.name.as_str()))
            .col_expr(
                endpoint::Column::UriExtension,
                Expr::value(e.uri_extension.as_str()),
            )
            .col_expr(
                endpoint::Column::AuthTypes,
                Expr::value(join(&e.auth_types)),
            )
            .col_expr(
                endpoint::Column::HelpLinkText,
                Expr::value(e.help_link_text.as_str()),
            )
            .col_expr(
                endpoint::Column::HelpLinkTarget,
                Expr::value(e.help_link_target.as_str()),
            )
            .col_expr(
                endpoint::Column::HelpText,
                Expr::value(e.help_text.as_str()),
            )
            .col_expr(
                endpoint::Column::EulaText,
                Expr::value(e.eula_text.as_str()),
            )
            .col_expr(
                endpoint::Column::Version,
                Expr::col(endpoint::Column::Version).add(1),
            )
            .filter(endpoint::Column::Id.eq(id))
            .filter(endpoint::Column::DeletedAt.is_null());
        if let Some(v) = expected {
            q = q.filter(endpoint::Column::Version.eq(v));
        }
        let r = q
            .exec(&txn)
            .await
            .map_err(conflict(&format!("endpoint {}", e.name)))?;
        if r.rows_affected == 0 {
            let live = endpoint::Entity::find_by_id(id)
                .filter(endpoint::Column::DeletedAt.is_null())
                .one(&txn)
                .await?
                .is_some();
            return Err(missing_or_stale(live, format!("endpoint {id}")));
        }
        insert_audit(&txn, audit, &format!("endpoint {id}"), now).await?;
        let m = endpoint::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))?;
        txn.commit().await?;
        endpoint_from(m)
    }

    /// Number of live accounts of an endpoint.
    pub async fn live_account_count(&self, endpoint_id: Id) -> Result<u64> {
        Ok(account::Entity::find()
            .filter(account::Column::EndpointId.eq(endpoint_id))
            .filter(account::Column::DeletedAt.is_null())
            .count(&self.db)
            .await?)
    }

    /// Marks an endpoint deleted; `Conflict` while it has live accounts.
    pub async fn remove_endpoint(&self, id: Id, audit: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        let accounts = account::Entity::find()
            .filter(account::Column::EndpointId.eq(id))
            .filter(account::Column::DeletedAt.is_null())
            .count(&txn)
            .await?;
        if accounts > 0 {
            return Err(StoreError::Conflict(format!("an account of endpoint {id}")));
        }
        let r = endpoint::Entity::update_many()
            .col_expr(endpoint::Column::DeletedAt, Expr::value(now))
            .col_expr(
                endpoint::Column::Version,
                Expr::col(endpoint::Column::Version).add(1),
            )
            .filter(endpoint::Column::Id.eq(id))
            .filter(endpoint::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("endpoint {id}")));
        }
        insert_audit(&txn, audit, &format!("endpoint {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    // ---- accounts -----------------------------------------------------------------------

    pub async fn add_account(
        &self,
        a: &NewAccount,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Account> {
        let txn = self.db.begin().await?;
        if a.is_default {
            clear_default(&txn, None).await?;
        }
        let m = account::ActiveModel {
            endpoint_id: Set(a.endpoint_id),
            organisation_id: Set(a.organisation_id),
            department_id: Set(a.department_id),
            name: Set(a.name.clone()),
            csr_method: Set(a.csr_method.as_str().to_string()),
            allow_empty_pkcs12_password: Set(a.allow_empty_pkcs12_password),
            authorization: Set(a.authorization.as_str().to_string()),
            access_code_hash: Set(a.access_code_hash.as_ref().map(|h| h.as_str().to_string())),
            est_label: Set(a.est_label.clone()),
            is_default: Set(a.is_default),
            pkcs12_encryption: Set(a.pkcs12_encryption.as_str().to_string()),
            bind_device_names: Set(a.bind_device_names),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("account {}", a.name)))?;
        put_account_profiles(&txn, m.id, &a.profile_ids).await?;
        insert_audit(&txn, audit, &format!("account {}", m.id), now).await?;
        txn.commit().await?;
        self.account_from(m).await
    }

    /// A live (not deleted) account.
    pub async fn live_account(&self, id: Id) -> Result<Account> {
        let m = account::Entity::find_by_id(id)
            .filter(account::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        self.account_from(m).await
    }

    pub async fn live_accounts(&self, f: &AccountFilter) -> Result<Vec<Account>> {
        let mut q = account::Entity::find().filter(account::Column::DeletedAt.is_null());
        if let Some(orgs) = &f.organisations {
            q = q.filter(account::Column::OrganisationId.is_in(orgs.clone()));
        }
        if let Some(e) = f.endpoint {
            q = q.filter(account::Column::EndpointId.eq(e));
        }
        let mut out = Vec::new();
        for m in q.order_by_asc(account::Column::Id).all(&self.db).await? {
            out.push(self.account_from(m).await?);
        }
        Ok(out)
    }

    /// The live account of an organisation with this name, if any.
    pub async fn live_account_named(
        &self,
        organisation_id: Id,
        name: &str,
    ) -> Result<Option<Account>> {
        match account::Entity::find()
            .filter(account::Column::OrganisationId.eq(organisation_id))
            .filter(account::Column::Name.eq(name))
            .filter(account::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
        {
            Some(m) => Ok(Some(self.account_from(m).await?)),
            None => Ok(None),
        }
    }

    /// Replaces the editable fields of a live account at `expected` (when given), with
    /// its profiles; its endpoint and organisation stay. The access code hash is written
    /// as given (the RA keeps, sets or clears it).
    pub async fn replace_account(
        &self,
        id: Id,
        expected: Option<i64>,
        a: &NewAccount,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Account> {
        let txn = self.db.begin().await?;
        let mut q = account::Entity::update_many()
            .col_expr(account::Column::Name, Expr::value(a.name.as_str()))
            .col_expr(account::Column::DepartmentId, Expr::value(a.department_id))
            .col_expr(
                account::Column::CsrMethod,
                Expr::value(a.csr_method.as_str()),
            )
            .col_expr(
                account::Column::AllowEmptyPkcs12Password,
                Expr::value(a.allow_empty_pkcs12_password),
            )
            .col_expr(
                account::Column::Authorization,
                Expr::value(a.authorization.as_str()),
            )
            .col_expr(
                account::Column::AccessCodeHash,
                Expr::value(a.access_code_hash.as_ref().map(|h| h.as_str().to_string())),
            )
            .col_expr(account::Column::EstLabel, Expr::value(a.est_label.clone()))
            .col_expr(account::Column::IsDefault, Expr::value(a.is_default))
            .col_expr(
                account::Column::Pkcs12Encryption,
                Expr::value(a.pkcs12_encryption.as_str()),
            )
            .col_expr(
                account::Column::BindDeviceNames,
                Expr::value(a.bind_device_names),
            )
            .col_expr(
                account::Column::Version,
                Expr::col(account::Column::Version).add(1),
            )
            .filter(account::Column::Id.eq(id))
            .filter(account::Column::DeletedAt.is_null());
        if let Some(v) = expected {
            q = q.filter(account::Column::Version.eq(v));
        }
        let r = q
            .exec(&txn)
            .await
            .map_err(conflict(&format!("account {}", a.name)))?;
        if r.rows_affected == 0 {
            let live = account::Entity::find_by_id(id)
                .filter(account::Column::DeletedAt.is_null())
                .one(&txn)
                .await?
                .is_some();
            return Err(missing_or_stale(live, format!("account {id}")));
        }
        if a.is_default {
            clear_default(&txn, Some(id)).await?;
        }
        put_account_profiles(&txn, id, &a.profile_ids).await?;
        insert_audit(&txn, audit, &format!("account {id}"), now).await?;
        let m = account::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        txn.commit().await?;
        self.account_from(m).await
    }

    /// A new access code for a live access-code account.
    pub async fn rotate_access_code(
        &self,
        id: Id,
        hash: &SecretHash,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Account> {
        let txn = self.db.begin().await?;
        let r = account::Entity::update_many()
            .col_expr(account::Column::AccessCodeHash, Expr::value(hash.as_str()))
            .col_expr(
                account::Column::Version,
                Expr::col(account::Column::Version).add(1),
            )
            .filter(account::Column::Id.eq(id))
            .filter(account::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("account {id}")));
        }
        insert_audit(&txn, audit, &format!("account {id}"), now).await?;
        let m = account::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        txn.commit().await?;
        self.account_from(m).await
    }

    /// Marks an account deleted. Its EST label, default role and access code go (a label
    /// is unique among all rows, so it is freed for reuse); its orders and certificates
    /// stay.
    pub async fn remove_account(&self, id: Id, audit: &AuditEntry, now: UnixTime) -> Result<()> {
        let txn = self.db.begin().await?;
        let r = account::Entity::update_many()
            .col_expr(account::Column::DeletedAt, Expr::value(now))
            .col_expr(
                account::Column::EstLabel,
                Expr::value(Option::<String>::None),
            )
            .col_expr(account::Column::IsDefault, Expr::value(false))
            .col_expr(
                account::Column::AccessCodeHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                account::Column::Version,
                Expr::col(account::Column::Version).add(1),
            )
            .filter(account::Column::Id.eq(id))
            .filter(account::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("account {id}")));
        }
        insert_audit(&txn, audit, &format!("account {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn usage(db: &impl ConnectionTrait, id: Id) -> Result<ProfileUsage> {
    let links = account_profile::Entity::find()
        .filter(account_profile::Column::ProfileId.eq(id))
        .all(db)
        .await?;
    let mut accounts = Vec::new();
    for l in links {
        if let Some(a) = account::Entity::find_by_id(l.account_id)
            .filter(account::Column::DeletedAt.is_null())
            .one(db)
            .await?
        {
            accounts.push((a.id, a.name));
        }
    }
    accounts.sort();
    let orders = cert_order::Entity::find()
        .filter(cert_order::Column::ProfileId.eq(id))
        .count(db)
        .await?;
    Ok(ProfileUsage { accounts, orders })
}
