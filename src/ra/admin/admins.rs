//! Administrators and API keys. An MRAO manages every administrator; an RAO manages the
//! DRAOs of its organisations' departments; everybody sees itself and manages its own API
//! keys. The last enabled MRAO cannot be removed, demoted or disabled.

use serde_json::json;

use super::auth::{new_totp, TotpEnrolment};
use super::scope::{refused, unseen};
use super::{snapshot, ApiKeyCreated, Caller, API_KEY_MAX_DAYS};
use crate::domain::{
    generate_secret, hash_secret, hash_token, Admin, ApiKeyRecord, EmailAddress, Id, Role, Secret,
};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{AdminChanges, NewAdmin};

/// Passwords of administrators: long, as they guard everything.
pub const MIN_ADMIN_PASSWORD: usize = 12;

#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub name: String,
    pub email: String,
    pub role: Role,
    pub organisation_ids: Vec<Id>,
    pub department_ids: Vec<Id>,
    /// For a person who signs in; none for an API-key-only administrator (automation).
    pub password: Option<Secret>,
}

fn admin_json(a: &Admin) -> serde_json::Value {
    json!({
        "name": a.name, "email": a.email.as_str(), "role": a.role.as_str(),
        "organisations": a.organisation_ids, "departments": a.department_ids,
        "disabled": a.disabled,
    })
}

fn check_password(p: &Secret) -> Result<(), Error> {
    if p.expose().chars().count() < MIN_ADMIN_PASSWORD {
        return Err(Error::invalid(
            "password",
            format!("the password must have at least {MIN_ADMIN_PASSWORD} characters"),
        ));
    }
    Ok(())
}

impl Ra {
    async fn reach_admin(&self, caller: &Caller, id: Id) -> Result<(Admin, bool), Error> {
        let a = match self.store.admin(id).await {
            Ok(a) => a,
            Err(crate::store::StoreError::NotFound(_)) => return Err(unseen("administrator")),
            Err(e) => return Err(e.into()),
        };
        let (sees, manages) = self.admin_reach(caller, &a).await?;
        if !sees {
            return Err(unseen("administrator"));
        }
        Ok((a, manages))
    }

    async fn admin_reach(&self, caller: &Caller, a: &Admin) -> Result<(bool, bool), Error> {
        let p = &caller.principal;
        let own = p.admin_id == Some(a.id);
        Ok(match p.role {
            Role::Mrao => (true, true),
            Role::Drao => (own, false),
            Role::Rao => {
                let mut managed = a.role == Role::Drao && !a.department_ids.is_empty();
                for d in &a.department_ids {
                    let org = self.store.department(*d).await?.organisation_id;
                    managed &= p.organisations.contains(&org);
                }
                (own || managed, managed)
            }
        })
    }

    /// Checks that a role and its scope fit together and that the caller may grant them.
    async fn check_grant(
        &self,
        caller: &Caller,
        role: Role,
        orgs: &[Id],
        depts: &[Id],
    ) -> Result<(), Error> {
        match role {
            Role::Mrao if !orgs.is_empty() || !depts.is_empty() => {
                return Err(Error::invalid(
                    "organisations",
                    "an MRAO reaches everything: give it no organisations or departments",
                ))
            }
            Role::Rao if orgs.is_empty() || !depts.is_empty() => {
                return Err(Error::invalid(
                    "organisations",
                    "an RAO needs one or more organisations and no departments",
                ))
            }
            Role::Drao if depts.is_empty() || !orgs.is_empty() => {
                return Err(Error::invalid(
                    "departments",
                    "a DRAO needs one or more departments and no organisations",
                ))
            }
            _ => {}
        }
        for (i, o) in orgs.iter().enumerate() {
            if self.store.organisation(*o).await.is_err() || !caller.principal.sees_organisation(*o)
            {
                return Err(Error::invalid(
                    &format!("organisations[{i}]"),
                    format!("no organisation {o}"),
                ));
            }
        }
        for (i, d) in depts.iter().enumerate() {
            let dept = self.store.department(*d).await.ok();
            match dept {
                Some(dept)
                    if caller
                        .principal
                        .manages_department(dept.organisation_id, Some(dept.id))
                        || caller.principal.sees_organisation(dept.organisation_id) =>
                {
                    if !caller.principal.manages_organisation(dept.organisation_id) {
                        return Err(refused(
                            "only an MRAO or the organisation's RAO may appoint its DRAOs",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        &format!("departments[{i}]"),
                        format!("no department {d}"),
                    ))
                }
            }
        }
        match (caller.principal.role, role) {
            (Role::Mrao, _) | (Role::Rao, Role::Drao) => Ok(()),
            _ => Err(refused(
                "an MRAO appoints MRAOs and RAOs; an RAO appoints DRAOs of its organisations",
            )),
        }
    }

    /// Creates an administrator. With a password, also a TOTP secret, returned once.
    pub async fn add_admin(
        &self,
        caller: &Caller,
        r: AdminRequest,
    ) -> Result<(Admin, Option<TotpEnrolment>), Error> {
        if caller.principal.role == Role::Drao {
            return Err(refused("a DRAO does not appoint administrators"));
        }
        let name = r.name.trim().to_string();
        if name.is_empty() {
            return Err(Error::invalid("name", "give the administrator's name"));
        }
        let email = EmailAddress::parse(&r.email).ok_or_else(|| {
            Error::invalid("email", format!("{:?} is not an email address", r.email))
        })?;
        self.check_grant(caller, r.role, &r.organisation_ids, &r.department_ids)
            .await?;
        let (password_hash, totp_sealed, enrolment) = match &r.password {
            Some(p) => {
                check_password(p)?;
                let (secret, enrolment) = new_totp(&email)?;
                let sealed = self.seal_key()?.seal(&secret)?;
                (Some(hash_secret(p)), Some(sealed), Some(enrolment))
            }
            None => (None, None, None),
        };
        let new = NewAdmin {
            name,
            email,
            role: r.role,
            organisation_ids: r.organisation_ids,
            department_ids: r.department_ids,
            password_hash,
            totp_sealed,
        };
        let mut audit = caller.audit("admin.create", String::new(), None, None);
        audit.after = snapshot(&json!({
            "name": new.name, "email": new.email.as_str(), "role": new.role.as_str(),
            "organisations": new.organisation_ids, "departments": new.department_ids,
        }));
        let admin = self
            .store
            .create_admin(&new, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => Error::conflict(format!(
                    "an administrator with email {} already exists",
                    new.email
                ))
                .at("email"),
                e => e.into(),
            })?;
        Ok((admin, enrolment))
    }

    pub async fn admins(&self, caller: &Caller) -> Result<Vec<Admin>, Error> {
        let mut out = Vec::new();
        for a in self.store.admins().await? {
            if self.admin_reach(caller, &a).await?.0 {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub async fn admin(&self, caller: &Caller, id: Id) -> Result<Admin, Error> {
        Ok(self.reach_admin(caller, id).await?.0)
    }

    /// Refuses a change that would leave no enabled MRAO.
    async fn keep_an_mrao(&self, a: &Admin, losing: bool) -> Result<(), Error> {
        if !losing || a.role != Role::Mrao || a.disabled {
            return Ok(());
        }
        let others = self
            .store
            .admins()
            .await?
            .into_iter()
            .filter(|o| o.id != a.id && o.role == Role::Mrao && !o.disabled)
            .count();
        if others == 0 {
            return Err(Error::conflict(
                "this is the last enabled MRAO; appoint another MRAO first",
            ));
        }
        Ok(())
    }

    pub async fn edit_admin(
        &self,
        caller: &Caller,
        id: Id,
        expected_version: Option<i64>,
        changes: AdminChanges,
    ) -> Result<Admin, Error> {
        let (before, manages) = self.reach_admin(caller, id).await?;
        if !manages {
            return Err(refused("you may not change this administrator"));
        }
        let role = changes.role.unwrap_or(before.role);
        let orgs = changes
            .organisation_ids
            .clone()
            .unwrap_or_else(|| before.organisation_ids.clone());
        let depts = changes
            .department_ids
            .clone()
            .unwrap_or_else(|| before.department_ids.clone());
        if changes.role.is_some()
            || changes.organisation_ids.is_some()
            || changes.department_ids.is_some()
        {
            // Switching role clears the other role's scope unless it was given.
            let orgs = if role == Role::Rao { &orgs[..] } else { &[] };
            let depts = if role == Role::Drao { &depts[..] } else { &[] };
            self.check_grant(caller, role, orgs, depts).await?;
        }
        if let Some(name) = &changes.name {
            if name.trim().is_empty() {
                return Err(Error::invalid("name", "give the administrator's name"));
            }
        }
        let losing = role != Role::Mrao || changes.disabled == Some(true);
        self.keep_an_mrao(&before, losing).await?;
        let mut changes = changes;
        if changes.role.is_some() {
            changes.organisation_ids = Some(if role == Role::Rao { orgs } else { Vec::new() });
            changes.department_ids = Some(if role == Role::Drao {
                depts
            } else {
                Vec::new()
            });
        }
        let mut audit = caller.audit("admin.edit", format!("admin {id}"), None, None);
        audit.before = snapshot(&admin_json(&before));
        let after = self
            .store
            .update_admin(id, expected_version, &changes, &audit, self.clock.now())
            .await?;
        Ok(after)
    }

    pub async fn delete_admin(&self, caller: &Caller, id: Id) -> Result<(), Error> {
        let (before, manages) = self.reach_admin(caller, id).await?;
        if !manages {
            return Err(refused("you may not remove this administrator"));
        }
        self.keep_an_mrao(&before, true).await?;
        let mut audit = caller.audit("admin.delete", format!("admin {id}"), None, None);
        audit.before = snapshot(&admin_json(&before));
        self.store
            .delete_admin(id, &audit, self.clock.now())
            .await?;
        Ok(())
    }

    /// Sets a new password and TOTP secret (the administrator's own, or one the caller
    /// manages); its sessions end.
    pub async fn reset_admin_credentials(
        &self,
        caller: &Caller,
        id: Id,
        password: &Secret,
    ) -> Result<TotpEnrolment, Error> {
        let (admin, manages) = self.reach_admin(caller, id).await?;
        if !manages && caller.principal.admin_id != Some(id) {
            return Err(refused(
                "you may not reset this administrator's credentials",
            ));
        }
        check_password(password)?;
        let (secret, enrolment) = new_totp(&admin.email)?;
        let sealed = self.seal_key()?.seal(&secret)?;
        let audit = caller.audit("admin.reset-credentials", format!("admin {id}"), None, None);
        self.store
            .set_admin_credentials(
                id,
                &hash_secret(password),
                &sealed,
                &audit,
                self.clock.now(),
            )
            .await?;
        Ok(enrolment)
    }

    // ---- API keys -------------------------------------------------------------------

    /// A new API key for `admin_id` (default: the caller), valid `days`. Only a caller
    /// that manages that administrator, or the administrator itself, may make one.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        admin_id: Option<Id>,
        name: &str,
        days: u32,
    ) -> Result<ApiKeyCreated, Error> {
        let admin_id = admin_id
            .or(caller.principal.admin_id)
            .ok_or_else(|| Error::invalid("admin", "name the administrator the key is for"))?;
        let (admin, manages) = self.reach_admin(caller, admin_id).await?;
        if !manages && caller.principal.admin_id != Some(admin_id) {
            return Err(refused("you may not make API keys for this administrator"));
        }
        if admin.disabled {
            return Err(Error::conflict("the administrator is disabled").at("admin"));
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::invalid(
                "name",
                "give the key a name of up to 100 characters",
            ));
        }
        if days == 0 || days > API_KEY_MAX_DAYS {
            return Err(Error::invalid(
                "expires_in_days",
                format!("an API key lives 1 to {API_KEY_MAX_DAYS} days"),
            ));
        }
        let key_id = generate_secret(12);
        let token = Secret::new(format!(
            "eg_{}_{}",
            key_id.expose(),
            generate_secret(40).expose()
        ));
        let now = self.clock.now();
        let mut audit = caller.audit("api-key.create", String::new(), None, None);
        audit.after = snapshot(&json!({
            "admin": admin_id, "name": name, "key_id": key_id.expose(),
            "expires_at": now + i64::from(days) * 86_400,
        }));
        let record = self
            .store
            .create_api_key(
                admin_id,
                name,
                key_id.expose(),
                &hash_token(&token),
                now + i64::from(days) * 86_400,
                &audit,
                now,
            )
            .await?;
        Ok(ApiKeyCreated { record, token })
    }

    /// Keys the caller may see: its own, and those of administrators it manages.
    pub async fn api_keys(&self, caller: &Caller) -> Result<Vec<ApiKeyRecord>, Error> {
        let mut out = Vec::new();
        for k in self.store.api_keys(None).await? {
            if caller.principal.admin_id == Some(k.admin_id) {
                out.push(k);
                continue;
            }
            let a = self.store.admin(k.admin_id).await?;
            if self.admin_reach(caller, &a).await?.1 {
                out.push(k);
            }
        }
        Ok(out)
    }

    pub async fn revoke_api_key(&self, caller: &Caller, id: Id) -> Result<(), Error> {
        let key = self
            .api_keys(caller)
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| unseen("API key"))?;
        if key.revoked_at.is_some() {
            return Err(Error::conflict(format!(
                "API key {} is already revoked",
                key.key_id
            )));
        }
        let audit = caller.audit(
            "api-key.revoke",
            format!("api-key {}", key.key_id),
            None,
            None,
        );
        self.store
            .revoke_api_key(id, &audit, self.clock.now())
            .await?;
        Ok(())
    }
}
