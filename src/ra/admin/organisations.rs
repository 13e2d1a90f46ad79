//! Organisations, their verified domains, and their departments. An MRAO creates and
//! changes organisations and their domains; an MRAO or the organisation's RAO manages its
//! departments. The organisation is visible to its RAOs and to the DRAOs of its departments.

use serde_json::json;

use super::scope::{refused, unseen};
use super::{snapshot, Caller};
use crate::domain::{is_dns_name, is_organization_identifier, Department, Id, Organisation};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{OrganisationChanges, References, StoreError};

/// Names of organisations and departments: printable, at most this many characters.
pub const MAX_NAME: usize = 200;

#[derive(Debug, Clone)]
pub struct OrganisationRequest {
    pub name: String,
    pub domains: Vec<String>,
    pub organization_identifier: Option<String>,
}

fn organisation_json(o: &Organisation) -> serde_json::Value {
    json!({
        "name": o.name, "domains": o.domains,
        "organization_identifier": o.organization_identifier,
    })
}

fn department_json(d: &Department) -> serde_json::Value {
    json!({ "name": d.name, "organisation": d.organisation_id })
}

fn clean_label(field: &str, what: &str, s: &str) -> Result<String, Error> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("give the {what} a name of 1 to {MAX_NAME} printable characters"),
        ));
    }
    Ok(s.to_string())
}

/// A domain as stored: lower-case LDH labels with at least one dot.
pub(crate) fn clean_domain(field: &str, s: &str) -> Result<String, Error> {
    let d = s.trim().to_ascii_lowercase();
    if !is_dns_name(&d) || !d.contains('.') {
        return Err(Error::invalid(
            field,
            format!("{s:?} is not a DNS domain name such as example.org"),
        ));
    }
    Ok(d)
}

fn clean_identifier(s: &str) -> Result<String, Error> {
    let s = s.trim();
    if !is_organization_identifier(s) {
        return Err(Error::invalid(
            "organization_identifier",
            format!(
                "{s:?} is not an organizationIdentifier (S/MIME BR 7.1.4.2.2 d): a scheme \
                 (VAT, NTR, PSD, LEI, GOV, INT), a country, '-', the reference, e.g. \
                 VATDE-123456789 or LEIXG-529900T8BM49AURSDO55"
            ),
        ));
    }
    Ok(s.to_string())
}

/// "3 persons, 1 endpoint", the references that keep something from being deleted.
fn listed(r: &References) -> String {
    let mut parts = Vec::new();
    for (n, one, many) in [
        (r.persons, "person", "persons"),
        (r.endpoints, "endpoint", "endpoints"),
        (r.accounts, "account", "accounts"),
        (r.departments, "department", "departments"),
        (
            r.admin_scopes,
            "administrator's scope",
            "administrators' scopes",
        ),
    ] {
        match n {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}

impl Ra {
    /// An organisation the caller sees (404 otherwise).
    pub async fn organisation_in_sight(
        &self,
        caller: &Caller,
        id: Id,
    ) -> Result<Organisation, Error> {
        if !caller.principal.sees_organisation(id) {
            return Err(unseen("organisation"));
        }
        match self.store.organisation(id).await {
            Ok(o) => Ok(o),
            Err(StoreError::NotFound(_)) => Err(unseen("organisation")),
            Err(e) => Err(e.into()),
        }
    }

    /// An organisation only an MRAO may change: 404 to those who do not see it, 403 to
    /// those who do.
    async fn organisation_to_change(&self, caller: &Caller, id: Id) -> Result<Organisation, Error> {
        let org = self.organisation_in_sight(caller, id).await?;
        caller.require_mrao("organisations and their domains")?;
        Ok(org)
    }

    pub async fn organisations_in_sight(
        &self,
        caller: &Caller,
    ) -> Result<Vec<Organisation>, Error> {
        Ok(self
            .store
            .organisations()
            .await?
            .into_iter()
            .filter(|o| caller.principal.sees_organisation(o.id))
            .collect())
    }

    /// A domain no other organisation has; `field` names it in the answer.
    async fn free_domain(&self, field: &str, d: &str) -> Result<(), Error> {
        if let Some(owner) = self.store.domain_owner(d).await? {
            return Err(Error::conflict(format!(
                "domain {d} already belongs to organisation {:?}",
                owner.name
            ))
            .at(field));
        }
        Ok(())
    }

    pub async fn add_organisation(
        &self,
        caller: &Caller,
        r: OrganisationRequest,
    ) -> Result<Organisation, Error> {
        caller.require_mrao("organisations")?;
        let name = clean_label("name", "organisation", &r.name)?;
        if r.domains.is_empty() {
            return Err(Error::invalid(
                "domains",
                "give the organisation at least one verified domain",
            ));
        }
        let mut domains: Vec<String> = Vec::new();
        for (i, d) in r.domains.iter().enumerate() {
            let field = format!("domains[{i}]");
            let d = clean_domain(&field, d)?;
            if domains.contains(&d) {
                return Err(Error::invalid(&field, format!("{d} is listed twice")));
            }
            self.free_domain(&field, &d).await?;
            domains.push(d);
        }
        let oi = match &r.organization_identifier {
            Some(s) => Some(clean_identifier(s)?),
            None => None,
        };
        if self.store.organisation_by_name(&name).await.is_ok() {
            return Err(
                Error::conflict(format!("an organisation named {name:?} already exists"))
                    .at("name"),
            );
        }
        let mut audit = caller.audit("organisation.create", String::new(), None, None);
        audit.after = snapshot(&json!({
            "name": name, "domains": domains, "organization_identifier": oi,
        }));
        self.store
            .add_organisation(&name, &domains, oi.as_deref(), &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(what) => Error::conflict(format!("{what} already exists")),
                e => e.into(),
            })
    }

    /// Renames an organisation or sets (or clears) its organizationIdentifier.
    pub async fn edit_organisation(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
        changes: OrganisationChanges,
    ) -> Result<Organisation, Error> {
        let before = self.organisation_to_change(caller, id).await?;
        let mut c = OrganisationChanges::default();
        if let Some(n) = &changes.name {
            let n = clean_label("name", "organisation", n)?;
            if n != before.name && self.store.organisation_by_name(&n).await.is_ok() {
                return Err(
                    Error::conflict(format!("an organisation named {n:?} already exists"))
                        .at("name"),
                );
            }
            c.name = Some(n);
        }
        if let Some(oi) = &changes.organization_identifier {
            c.organization_identifier = Some(match oi {
                Some(s) => Some(clean_identifier(s)?),
                None => None,
            });
        }
        let mut audit = caller.audit(
            "organisation.edit",
            format!("organisation {id}"),
            Some(id),
            None,
        );
        audit.before = snapshot(&organisation_json(&before));
        let mut after = organisation_json(&before);
        if let Some(n) = &c.name {
            after["name"] = json!(n);
        }
        if let Some(oi) = &c.organization_identifier {
            after["organization_identifier"] = json!(oi);
        }
        audit.after = snapshot(&after);
        Ok(self
            .store
            .update_organisation(id, expected, &c, &audit, self.clock.now())
            .await?)
    }

    /// Deletes an organisation nothing refers to any more.
    pub async fn remove_organisation(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
    ) -> Result<(), Error> {
        let before = self.organisation_to_change(caller, id).await?;
        if expected.is_some_and(|v| v != before.version) {
            return Err(StoreError::Stale(format!("organisation {id}")).into());
        }
        let refs = self.store.organisation_references(id).await?;
        if refs != References::default() {
            return Err(Error::conflict(format!(
                "organisation {:?} is still referred to by {}; remove those first",
                before.name,
                listed(&refs)
            )));
        }
        let mut audit = caller.audit(
            "organisation.delete",
            format!("organisation {id}"),
            Some(id),
            None,
        );
        audit.before = snapshot(&organisation_json(&before));
        Ok(self
            .store
            .delete_organisation(id, expected, &audit, self.clock.now())
            .await?)
    }

    pub async fn add_organisation_domain(
        &self,
        caller: &Caller,
        id: Id,
        domain: &str,
    ) -> Result<Organisation, Error> {
        let before = self.organisation_to_change(caller, id).await?;
        let d = clean_domain("domain", domain)?;
        if before.domains.contains(&d) {
            return Err(Error::conflict(format!(
                "domain {d} is already one of {:?}'s",
                before.name
            ))
            .at("domain"));
        }
        self.free_domain("domain", &d).await?;
        let mut audit = caller.audit(
            "organisation.domain-add",
            format!("organisation {id}"),
            Some(id),
            None,
        );
        audit.before = snapshot(&json!({ "domains": before.domains }));
        let mut domains = before.domains.clone();
        domains.push(d.clone());
        audit.after = snapshot(&json!({ "domains": domains }));
        self.store
            .add_organisation_domain(id, &d, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    Error::conflict(format!("domain {d} already belongs to an organisation"))
                        .at("domain")
                }
                e => e.into(),
            })
    }

    /// Removes a verified domain; the last one stays (an organisation without a domain
    /// could enroll nobody, and its persons' addresses would no longer be checked).
    pub async fn remove_organisation_domain(
        &self,
        caller: &Caller,
        id: Id,
        domain: &str,
    ) -> Result<Organisation, Error> {
        let before = self.organisation_to_change(caller, id).await?;
        let d = domain.trim().to_ascii_lowercase();
        if !before.domains.contains(&d) {
            return Err(Error::not_found(format!(
                "{d} is not a domain of {:?}",
                before.name
            )));
        }
        let mut audit = caller.audit(
            "organisation.domain-remove",
            format!("organisation {id}"),
            Some(id),
            None,
        );
        audit.before = snapshot(&json!({ "domains": before.domains }));
        let domains: Vec<&String> = before.domains.iter().filter(|x| **x != d).collect();
        audit.after = snapshot(&json!({ "domains": domains }));
        self.store
            .remove_organisation_domain(id, &d, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::conflict(format!(
                    "{d} is the last domain of {:?}; add another before removing it",
                    before.name
                )),
                StoreError::NotFound(_) => {
                    Error::not_found(format!("{d} is not a domain of {:?}", before.name))
                }
                e => e.into(),
            })
    }

    // ---- departments --------------------------------------------------------------------

    /// The departments of an organisation the caller reaches: all of them for its MRAO and
    /// RAOs, a DRAO's own for a DRAO.
    pub async fn departments_in_sight(
        &self,
        caller: &Caller,
        organisation_id: Id,
    ) -> Result<Vec<Department>, Error> {
        self.organisation_in_sight(caller, organisation_id).await?;
        Ok(self
            .store
            .departments_of(organisation_id)
            .await?
            .into_iter()
            .filter(|d| {
                caller
                    .principal
                    .manages_department(d.organisation_id, Some(d.id))
            })
            .collect())
    }

    pub async fn department_in_sight(&self, caller: &Caller, id: Id) -> Result<Department, Error> {
        let d = match self.store.department(id).await {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Err(unseen("department")),
            Err(e) => return Err(e.into()),
        };
        if !caller
            .principal
            .manages_department(d.organisation_id, Some(d.id))
        {
            return Err(unseen("department"));
        }
        Ok(d)
    }

    /// A department only the organisation's MRAO or RAO may change.
    async fn department_to_change(&self, caller: &Caller, id: Id) -> Result<Department, Error> {
        let d = self.department_in_sight(caller, id).await?;
        if !caller.principal.manages_organisation(d.organisation_id) {
            return Err(refused(
                "only an MRAO or the organisation's RAO may change its departments",
            ));
        }
        Ok(d)
    }

    async fn free_department_name(&self, organisation_id: Id, name: &str) -> Result<(), Error> {
        if let Ok(d) = self.store.department_by_name(organisation_id, name).await {
            return Err(Error::conflict(format!(
                "department {name:?} already exists in this organisation (department {})",
                d.id
            ))
            .at("name"));
        }
        Ok(())
    }

    pub async fn add_department(
        &self,
        caller: &Caller,
        organisation_id: Id,
        name: &str,
    ) -> Result<Department, Error> {
        self.organisation_in_sight(caller, organisation_id).await?;
        if !caller.principal.manages_organisation(organisation_id) {
            return Err(refused(
                "only an MRAO or the organisation's RAO may add departments",
            ));
        }
        let name = clean_label("name", "department", name)?;
        self.free_department_name(organisation_id, &name).await?;
        let mut audit = caller.audit(
            "department.create",
            String::new(),
            Some(organisation_id),
            None,
        );
        audit.after = snapshot(&json!({ "name": name, "organisation": organisation_id }));
        self.store
            .add_department(organisation_id, &name, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::conflict(format!(
                    "department {name:?} already exists in this organisation"
                ))
                .at("name"),
                e => e.into(),
            })
    }

    pub async fn rename_department(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
        name: &str,
    ) -> Result<Department, Error> {
        let before = self.department_to_change(caller, id).await?;
        let name = clean_label("name", "department", name)?;
        if name != before.name {
            self.free_department_name(before.organisation_id, &name)
                .await?;
        }
        let mut audit = caller.audit(
            "department.edit",
            format!("department {id}"),
            Some(before.organisation_id),
            Some(id),
        );
        audit.before = snapshot(&department_json(&before));
        audit.after = snapshot(&json!({ "name": name, "organisation": before.organisation_id }));
        self.store
            .rename_department(id, expected, &name, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::conflict(format!(
                    "department {name:?} already exists in this organisation"
                ))
                .at("name"),
                e => e.into(),
            })
    }

    /// Deletes a department no person, account or DRAO refers to.
    pub async fn remove_department(
        &self,
        caller: &Caller,
        id: Id,
        expected: Option<i64>,
    ) -> Result<(), Error> {
        let before = self.department_to_change(caller, id).await?;
        if expected.is_some_and(|v| v != before.version) {
            return Err(StoreError::Stale(format!("department {id}")).into());
        }
        let refs = self.store.department_references(id).await?;
        if refs != References::default() {
            return Err(Error::conflict(format!(
                "department {:?} is still referred to by {}; move or remove those first",
                before.name,
                listed(&refs)
            )));
        }
        let mut audit = caller.audit(
            "department.delete",
            format!("department {id}"),
            Some(before.organisation_id),
            Some(id),
        );
        audit.before = snapshot(&department_json(&before));
        Ok(self
            .store
            .delete_department(id, expected, &audit, self.clock.now())
            .await?)
    }
}
