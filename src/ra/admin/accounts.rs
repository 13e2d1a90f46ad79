//! Enrollment accounts: what an endpoint issues (profiles, key generation, PKCS#12) and
//! who may use it (an access code, or none). They follow their endpoint's scope. Deleting is
//! soft: the account stops enrolling, its EST label and default role are freed, and its
//! orders and certificates keep their history.

use serde_json::json;

use super::profiles::check_name;
use super::scope::{refused, unseen};
use super::{snapshot, Caller};
use crate::domain::{
    generate_secret, hash_secret, Account, Authorization, CsrMethod, Id, Pkcs12Encryption, Role,
    Secret, SECRET_LEN,
};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{AccountFilter, NewAccount, StoreError};

/// A given access code must not be trivially guessable.
pub const MIN_ACCESS_CODE: usize = 8;
pub const MAX_ACCESS_CODE: usize = 128;

#[derive(Debug, Clone)]
pub struct AccountRequest {
    pub endpoint_id: Id,
    pub department_id: Option<Id>,
    pub name: String,
    pub profile_ids: Vec<Id>,
    pub csr_method: CsrMethod,
    pub allow_empty_pkcs12_password: bool,
    pub authorization: Authorization,
    /// For authorization `access-code`: generated when not given.
    pub access_code: Option<Secret>,
    pub est_label: Option<String>,
    pub is_default: bool,
    pub pkcs12_encryption: Pkcs12Encryption,
    /// Device CSRs may name only the Basic username (`Account::bind_device_names`).
    pub bind_device_names: bool,
}

/// An account edit: `None` keeps a field; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    pub name: Option<String>,
    pub department_id: Option<Option<Id>>,
    pub profile_ids: Option<Vec<Id>>,
    pub csr_method: Option<CsrMethod>,
    pub allow_empty_pkcs12_password: Option<bool>,
    pub authorization: Option<Authorization>,
    pub access_code: Option<Secret>,
    pub est_label: Option<Option<String>>,
    pub is_default: Option<bool>,
    pub pkcs12_encryption: Option<Pkcs12Encryption>,
    pub bind_device_names: Option<bool>,
}

/// An account and, when one was generated just now, its access code (shown once).
#[derive(Debug)]
pub struct AccountSaved {
    pub account: Account,
    pub access_code: Option<Secret>,
}

/// DESIGN.md EST mapping: `[a-z0-9-]{1,64}`, never an operation name or a top-level path.
pub fn check_est_label(label: &str) -> Result<(), Error> {
    if estgate_protocol::path::is_valid_label(label) {
        Ok(())
    } else {
        Err(Error::invalid(
            "est_label",
            format!(
                "EST label {label:?} must match [a-z0-9-]{{1,64}} and not be an EST \
                 operation name or one of {}",
                estgate_protocol::path::RESERVED_LABELS.join(", ")
            ),
        ))
    }
}

pub fn check_access_code(code: &Secret) -> Result<(), Error> {
    let n = code.expose().chars().count();
    if !(MIN_ACCESS_CODE..=MAX_ACCESS_CODE).contains(&n) {
        return Err(Error::invalid(
            "access_code",
            format!("an access code has {MIN_ACCESS_CODE} to {MAX_ACCESS_CODE} characters"),
        ));
    }
    Ok(())
}

/// Never the access code or its hash: the audit trail is read widely.
fn account_json(a: &NewAccount) -> serde_json::Value {
    json!({
        "endpoint": a.endpoint_id,
        "organisation": a.organisation_id,
        "department": a.department_id,
        "name": a.name,
        "profiles": a.profile_ids,
        "csr_method": a.csr_method.as_str(),
        "allow_empty_pkcs12_password": a.allow_empty_pkcs12_password,
        "authorization": a.authorization.as_str(),
        "est_label": a.est_label,
        "is_default": a.is_default,
        "pkcs12_encryption": a.pkcs12_encryption.as_str(),
        "bind_device_names": a.bind_device_names,
    })
}

fn as_new(a: &Account) -> NewAccount {
    NewAccount {
        endpoint_id: a.endpoint_id,
        organisation_id: a.organisation_id,
        department_id: a.department_id,
        name: a.name.clone(),
        csr_method: a.csr_method,
        allow_empty_pkcs12_password: a.allow_empty_pkcs12_password,
        authorization: a.authorization,
        access_code_hash: a.access_code_hash.clone(),
        est_label: a.est_label.clone(),
        is_default: a.is_default,
        pkcs12_encryption: a.pkcs12_encryption,
        bind_device_names: a.bind_device_names,
        profile_ids: a.profile_ids.clone(),
    }
}

impl Ra {
    /// A live account the caller manages; anything else is unseen.
    async fn reach_account(&self, caller: &Caller, id: Id) -> Result<Account, Error> {
        if caller.principal.role == Role::Drao {
            return Err(unseen("account"));
        }
        let a = match self.store.live_account(id).await {
            Ok(a) => a,
            Err(StoreError::NotFound(_)) => return Err(unseen("account")),
            Err(e) => return Err(e.into()),
        };
        if !caller.principal.manages_organisation(a.organisation_id) {
            return Err(unseen("account"));
        }
        Ok(a)
    }

    /// Everything about an account but its access code; `own` is the account being edited.
    async fn check_account(
        &self,
        caller: &Caller,
        a: &NewAccount,
        own: Option<&Account>,
    ) -> Result<(), Error> {
        check_name("name", &a.name)?;
        if let Some(d) = a.department_id {
            match self.store.department(d).await {
                Ok(dept) if dept.organisation_id == a.organisation_id => {}
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    return Err(Error::invalid(
                        "department",
                        format!("no department {d} in the endpoint's organisation"),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        if a.profile_ids.is_empty() {
            return Err(Error::invalid(
                "profiles",
                "give one or more profiles; the first is the one EST uses",
            ));
        }
        for (i, p) in a.profile_ids.iter().enumerate() {
            let field = format!("profiles[{i}]");
            if a.profile_ids[..i].contains(p) {
                return Err(Error::invalid(
                    &field,
                    format!("profile {p} is listed twice"),
                ));
            }
            match self.store.profile(*p).await {
                // The binding names the device by its Basic username, which only an
                // access-code account's device profile (the first, the one EST uses) reads
                // as a device identifier; elsewhere the option would promise what it does
                // not do.
                Ok(profile) if i == 0 && a.bind_device_names => {
                    if a.authorization != Authorization::AccessCode {
                        return Err(Error::invalid(
                            "bind_device_names",
                            "binding device names to the user name needs authorization access-code",
                        ));
                    }
                    if profile.subject_source != crate::domain::SubjectSource::Device {
                        return Err(Error::invalid(
                            "bind_device_names",
                            format!(
                                "binding device names needs a device profile first; profile {:?} issues person certificates",
                                profile.name
                            ),
                        ));
                    }
                }
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    return Err(Error::invalid(&field, format!("no profile {p}")))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let own_id = own.map(|o| o.id);
        if let Some(l) = &a.est_label {
            check_est_label(l)?;
            if let Some(other) = self.store.account_by_label(l).await? {
                if Some(other.id) != own_id {
                    let holder = if caller.principal.manages_organisation(other.organisation_id) {
                        format!("account {} {:?}", other.id, other.name)
                    } else {
                        "an account of another organisation".to_string()
                    };
                    return Err(
                        Error::conflict(format!("{holder} already has EST label {l:?}"))
                            .at("est_label"),
                    );
                }
            }
        }
        if let Some(other) = self
            .store
            .live_account_named(a.organisation_id, &a.name)
            .await?
        {
            if Some(other.id) != own_id {
                return Err(Error::conflict(format!(
                    "account {} {:?} of this organisation already has this name",
                    other.id, other.name
                ))
                .at("name"));
            }
        }
        let was_default = own.is_some_and(|o| o.is_default);
        if a.is_default && !was_default && !caller.principal.is_mrao() {
            // The default account answers EST requests without a label, for every
            // organisation: an RAO may take the role only from an account it manages.
            if let Some(d) = self.store.default_account().await? {
                if !caller.principal.manages_organisation(d.organisation_id) {
                    return Err(refused(
                        "the default EST account belongs to another organisation; only an \
                         MRAO may move it",
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn add_account(
        &self,
        caller: &Caller,
        r: AccountRequest,
    ) -> Result<AccountSaved, Error> {
        caller.require_not_drao("accounts")?;
        let endpoint = match self.reach_endpoint(caller, r.endpoint_id).await {
            Ok(e) => e,
            Err(_) => {
                return Err(Error::invalid(
                    "endpoint",
                    format!("no endpoint {}", r.endpoint_id),
                ))
            }
        };
        let code = match (r.authorization, r.access_code) {
            (Authorization::AccessCode, Some(c)) => {
                check_access_code(&c)?;
                Some((c, false))
            }
            (Authorization::AccessCode, None) => Some((generate_secret(SECRET_LEN), true)),
            (Authorization::None, Some(_)) => {
                return Err(Error::invalid(
                    "access_code",
                    "an access code needs authorization access-code",
                ))
            }
            (Authorization::None, None) => None,
        };
        let new = NewAccount {
            endpoint_id: endpoint.id,
            organisation_id: endpoint.organisation_id,
            department_id: r.department_id,
            name: r.name.trim().to_string(),
            csr_method: r.csr_method,
            allow_empty_pkcs12_password: r.allow_empty_pkcs12_password,
            authorization: r.authorization,
            access_code_hash: code.as_ref().map(|(c, _)| hash_secret(c)),
            est_label: r.est_label,
            is_default: r.is_default,
            pkcs12_encryption: r.pkcs12_encryption,
            bind_device_names: r.bind_device_names,
            profile_ids: r.profile_ids,
        };
        self.check_account(caller, &new, None).await?;
        let mut audit = caller.audit(
            "account.create",
            String::new(),
            Some(new.organisation_id),
            new.department_id,
        );
        audit.after = snapshot(&account_json(&new));
        let account = self
            .store
            .add_account(&new, &audit, self.clock.now())
            .await
            .map_err(|e| taken(e, &new.name))?;
        Ok(AccountSaved {
            account,
            access_code: code.and_then(|(c, generated)| generated.then_some(c)),
        })
    }

    /// Live accounts the caller manages, optionally of one organisation or endpoint.
    pub async fn accounts(
        &self,
        caller: &Caller,
        organisation: Option<Id>,
        endpoint: Option<Id>,
    ) -> Result<Vec<Account>, Error> {
        caller.require_not_drao("accounts")?;
        let scope = caller.principal.organisation_filter();
        let organisations = match (organisation, scope) {
            (Some(o), Some(s)) => Some(s.into_iter().filter(|x| *x == o).collect()),
            (Some(o), None) => Some(vec![o]),
            (None, s) => s,
        };
        Ok(self
            .store
            .live_accounts(&AccountFilter {
                organisations,
                endpoint,
            })
            .await?)
    }

    pub async fn account(&self, caller: &Caller, id: Id) -> Result<Account, Error> {
        self.reach_account(caller, id).await
    }

    pub async fn edit_account(
        &self,
        caller: &Caller,
        id: Id,
        expected_version: Option<i64>,
        c: AccountChanges,
    ) -> Result<AccountSaved, Error> {
        let before = self.reach_account(caller, id).await?;
        let old = as_new(&before);
        let authorization = c.authorization.unwrap_or(old.authorization);
        let (access_code_hash, shown) = match (authorization, c.access_code) {
            (Authorization::AccessCode, Some(code)) => {
                check_access_code(&code)?;
                (Some(hash_secret(&code)), None)
            }
            (Authorization::AccessCode, None) => match &old.access_code_hash {
                Some(h) => (Some(h.clone()), None),
                None => {
                    // Switched to access-code: it needs one now.
                    let code = generate_secret(SECRET_LEN);
                    (Some(hash_secret(&code)), Some(code))
                }
            },
            (Authorization::None, Some(_)) => {
                return Err(Error::invalid(
                    "access_code",
                    "an access code needs authorization access-code",
                ))
            }
            (Authorization::None, None) => (None, None),
        };
        let new = NewAccount {
            endpoint_id: old.endpoint_id,
            organisation_id: old.organisation_id,
            department_id: c.department_id.unwrap_or(old.department_id),
            name: c
                .name
                .map(|n| n.trim().to_string())
                .unwrap_or(old.name.clone()),
            csr_method: c.csr_method.unwrap_or(old.csr_method),
            allow_empty_pkcs12_password: c
                .allow_empty_pkcs12_password
                .unwrap_or(old.allow_empty_pkcs12_password),
            authorization,
            access_code_hash,
            est_label: c.est_label.unwrap_or(old.est_label.clone()),
            is_default: c.is_default.unwrap_or(old.is_default),
            pkcs12_encryption: c.pkcs12_encryption.unwrap_or(old.pkcs12_encryption),
            bind_device_names: c.bind_device_names.unwrap_or(old.bind_device_names),
            profile_ids: c.profile_ids.unwrap_or(old.profile_ids.clone()),
        };
        self.check_account(caller, &new, Some(&before)).await?;
        let mut audit = caller.audit(
            "account.edit",
            format!("account {id}"),
            Some(new.organisation_id),
            new.department_id,
        );
        audit.before = snapshot(&account_json(&old));
        audit.after = snapshot(&account_json(&new));
        let account = self
            .store
            .replace_account(id, expected_version, &new, &audit, self.clock.now())
            .await
            .map_err(|e| taken(e, &new.name))?;
        Ok(AccountSaved {
            account,
            access_code: shown,
        })
    }

    /// A new access code, returned once; the old one stops working.
    pub async fn rotate_access_code(&self, caller: &Caller, id: Id) -> Result<AccountSaved, Error> {
        let before = self.reach_account(caller, id).await?;
        if before.authorization != Authorization::AccessCode {
            return Err(Error::conflict(
                "this account is authorized without an access code; set its authorization \
                 to access-code instead",
            )
            .at("authorization"));
        }
        let code = generate_secret(SECRET_LEN);
        let audit = caller.audit(
            "account.rotate-access-code",
            format!("account {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        let account = self
            .store
            .rotate_access_code(id, &hash_secret(&code), &audit, self.clock.now())
            .await?;
        Ok(AccountSaved {
            account,
            access_code: Some(code),
        })
    }

    /// Deletes an account softly: it no longer enrolls; its history stays.
    pub async fn remove_account(&self, caller: &Caller, id: Id) -> Result<(), Error> {
        let before = self.reach_account(caller, id).await?;
        let mut audit = caller.audit(
            "account.delete",
            format!("account {id}"),
            Some(before.organisation_id),
            before.department_id,
        );
        audit.before = snapshot(&account_json(&as_new(&before)));
        self.store
            .remove_account(id, &audit, self.clock.now())
            .await?;
        Ok(())
    }
}

/// A unique clash the pre-checks missed (a concurrent change).
fn taken(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Conflict(_) => Error::conflict(format!(
            "an account named {name:?} or with this EST label already exists"
        )),
        e => e.into(),
    }
}
