//! Organisations, their domains and departments, and persons, as administrators change
//! them: every write checks the row's version when one is given and appends its audit event
//! in the same transaction.

use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::admin::missing_or_stale;
use super::entities::{
    account, admin_scope, auth_failure, department, domain, endpoint, organisation, person,
};
use super::{
    conflict, insert_audit, person_from, AuditEntry, NewPerson, Result, Store, StoreError,
};
use crate::domain::{
    Department, EmailAddress, Id, Organisation, Person, PersonStatus, SecretHash, UnixTime,
};

/// An organisation's changeable fields; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct OrganisationChanges {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub organization_identifier: Option<Option<String>>,
}

/// A person's changeable fields; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct PersonChanges {
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` takes the person out of any department.
    pub department_id: Option<Option<Id>>,
}

/// Which persons a list shows, in id order.
#[derive(Debug, Clone, Default)]
pub struct PersonFilter {
    /// The caller's reach: `None` is everywhere.
    pub organisations: Option<Vec<Id>>,
    pub departments: Option<Vec<Id>>,
    pub organisation: Option<Id>,
    pub department: Option<Id>,
    /// A part of the email address.
    pub email: Option<String>,
    /// A part of the first, middle or last name or of the email address.
    pub q: Option<String>,
    /// `None`: active and disabled persons (deleted ones only when asked for).
    pub status: Option<PersonStatus>,
    pub after: Option<Id>,
    pub limit: u64,
}

/// What still refers to an organisation or department, so it cannot be deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub persons: u64,
    pub endpoints: u64,
    pub accounts: u64,
    pub departments: u64,
    pub admin_scopes: u64,
}

fn department_from(m: department::Model) -> Department {
    Department {
        id: m.id,
        organisation_id: m.organisation_id,
        name: m.name,
        version: m.version,
    }
}

/// `%part%` for LIKE, with the caller's `%`, `_` and `\` taken literally.
fn like_part(part: &str) -> LikeExpr {
    let mut p = String::with_capacity(part.len() + 2);
    p.push('%');
    for c in part.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    LikeExpr::new(p).escape('\\')
}

fn lower_like(col: person::Column, part: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::expr(Func::lower(Expr::col(col))).like(like_part(part))
}

/// The email a deleted person's row keeps: unique, parseable, and never deliverable
/// (RFC 2606 reserves `.invalid`), so the real address is free for a new person.
pub fn tombstone_email(person_id: Id) -> String {
    format!("person-{person_id}@deleted.invalid")
}

async fn bump_organisation(db: &impl ConnectionTrait, id: Id) -> Result<()> {
    organisation::Entity::update_many()
        .col_expr(
            organisation::Column::Version,
            Expr::col(organisation::Column::Version).add(1),
        )
        .filter(organisation::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// After an update of a live person touched no row: gone (or deleted), or changed since.
async fn person_changed(db: &impl ConnectionTrait, rows: u64, id: Id) -> Result<()> {
    if rows > 0 {
        return Ok(());
    }
    let live = person::Entity::find_by_id(id)
        .filter(person::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .is_some();
    Err(missing_or_stale(live, format!("person {id}")))
}

async fn insert_person(db: &impl ConnectionTrait, p: &NewPerson, now: UnixTime) -> Result<Id> {
    let m = person::ActiveModel {
        organisation_id: Set(p.organisation_id),
        department_id: Set(p.department_id),
        email: Set(p.email.as_str().to_string()),
        first_name: Set(p.first_name.clone()),
        middle_name: Set(p.middle_name.clone()),
        last_name: Set(p.last_name.clone()),
        secret_id_hash: Set(p.secret_id_hash.as_ref().map(|h| h.as_str().to_string())),
        created_at: Set(now),
        version: Set(1),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(conflict(&format!("person {}", p.email)))?;
    Ok(m.id)
}

impl Store {
    // ---- organisations and domains ------------------------------------------------------

    /// The organisation a verified domain belongs to, if any.
    pub async fn domain_owner(&self, name: &str) -> Result<Option<Organisation>> {
        let Some(d) = domain::Entity::find()
            .filter(domain::Column::Name.eq(name.to_ascii_lowercase()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.organisation(d.organisation_id).await?))
    }

    pub async fn add_organisation(
        &self,
        name: &str,
        domains: &[String],
        organization_identifier: Option<&str>,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Organisation> {
        let txn = self.db.begin().await?;
        let org = organisation::ActiveModel {
            name: Set(name.to_string()),
            created_at: Set(now),
            organization_identifier: Set(organization_identifier.map(str::to_string)),
            version: Set(1),
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
        let mut audit = audit.clone();
        audit.organisation_id = Some(org.id);
        insert_audit(&txn, &audit, &format!("organisation {}", org.id), now).await?;
        txn.commit().await?;
        self.organisation(org.id).await
    }

    pub async fn update_organisation(
        &self,
        id: Id,
        expected: Option<i64>,
        c: &OrganisationChanges,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Organisation> {
        let txn = self.db.begin().await?;
        let mut q = organisation::Entity::update_many()
            .col_expr(
                organisation::Column::Version,
                Expr::col(organisation::Column::Version).add(1),
            )
            .filter(organisation::Column::Id.eq(id));
        if let Some(v) = expected {
            q = q.filter(organisation::Column::Version.eq(v));
        }
        if let Some(name) = &c.name {
            q = q.col_expr(organisation::Column::Name, Expr::value(name.as_str()));
        }
        if let Some(oi) = &c.organization_identifier {
            q = q.col_expr(
                organisation::Column::OrganizationIdentifier,
                Expr::value(oi.clone()),
            );
        }
        let r = q.exec(&txn).await.map_err(conflict(&format!(
            "organisation {}",
            c.name.as_deref().unwrap_or("")
        )))?;
        if r.rows_affected == 0 {
            return Err(missing_or_stale(
                organisation::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .is_some(),
                format!("organisation {id}"),
            ));
        }
        insert_audit(&txn, audit, &format!("organisation {id}"), now).await?;
        txn.commit().await?;
        self.organisation(id).await
    }

    /// What refers to an organisation: rows of deleted persons, endpoints and accounts
    /// count, as their history keeps the reference.
    pub async fn organisation_references(&self, id: Id) -> Result<References> {
        Ok(References {
            persons: person::Entity::find()
                .filter(person::Column::OrganisationId.eq(id))
                .count(&self.db)
                .await?,
            endpoints: endpoint::Entity::find()
                .filter(endpoint::Column::OrganisationId.eq(id))
                .count(&self.db)
                .await?,
            accounts: account::Entity::find()
                .filter(account::Column::OrganisationId.eq(id))
                .count(&self.db)
                .await?,
            departments: department::Entity::find()
                .filter(department::Column::OrganisationId.eq(id))
                .count(&self.db)
                .await?,
            admin_scopes: admin_scope::Entity::find()
                .filter(admin_scope::Column::OrganisationId.eq(id))
                .count(&self.db)
                .await?,
        })
    }

    /// Deletes an organisation and its domains; the caller checked its references (the
    /// foreign keys refuse one that is still referred to all the same).
    pub async fn delete_organisation(
        &self,
        id: Id,
        expected: Option<i64>,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        let found = organisation::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("organisation {id}")))?;
        if expected.is_some_and(|v| v != found.version) {
            return Err(StoreError::Stale(format!("organisation {id}")));
        }
        domain::Entity::delete_many()
            .filter(domain::Column::OrganisationId.eq(id))
            .exec(&txn)
            .await?;
        organisation::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(|e| StoreError::Conflict(format!("references to organisation {id}: {e}")))?;
        insert_audit(&txn, audit, &format!("organisation {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn add_organisation_domain(
        &self,
        organisation_id: Id,
        name: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Organisation> {
        let txn = self.db.begin().await?;
        domain::ActiveModel {
            organisation_id: Set(organisation_id),
            name: Set(name.to_ascii_lowercase()),
            verified: Set(true),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("domain {name}")))?;
        bump_organisation(&txn, organisation_id).await?;
        insert_audit(&txn, audit, &format!("organisation {organisation_id}"), now).await?;
        txn.commit().await?;
        self.organisation(organisation_id).await
    }

    /// Removes one domain, unless it is the organisation's last (`Conflict`).
    pub async fn remove_organisation_domain(
        &self,
        organisation_id: Id,
        name: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Organisation> {
        let txn = self.db.begin().await?;
        let remaining = domain::Entity::find()
            .filter(domain::Column::OrganisationId.eq(organisation_id))
            .filter(domain::Column::Name.ne(name.to_ascii_lowercase()))
            .count(&txn)
            .await?;
        let r = domain::Entity::delete_many()
            .filter(domain::Column::OrganisationId.eq(organisation_id))
            .filter(domain::Column::Name.eq(name.to_ascii_lowercase()))
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("domain {name}")));
        }
        if remaining == 0 {
            return Err(StoreError::Conflict(format!("last domain {name}")));
        }
        bump_organisation(&txn, organisation_id).await?;
        insert_audit(&txn, audit, &format!("organisation {organisation_id}"), now).await?;
        txn.commit().await?;
        self.organisation(organisation_id).await
    }

    // ---- departments --------------------------------------------------------------------

    pub async fn departments_of(&self, organisation_id: Id) -> Result<Vec<Department>> {
        Ok(department::Entity::find()
            .filter(department::Column::OrganisationId.eq(organisation_id))
            .order_by_asc(department::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(department_from)
            .collect())
    }

    pub async fn add_department(
        &self,
        organisation_id: Id,
        name: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Department> {
        let txn = self.db.begin().await?;
        let m = department::ActiveModel {
            organisation_id: Set(organisation_id),
            name: Set(name.to_string()),
            version: Set(1),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(conflict(&format!("department {name}")))?;
        let mut audit = audit.clone();
        audit.department_id = Some(m.id);
        insert_audit(&txn, &audit, &format!("department {}", m.id), now).await?;
        txn.commit().await?;
        Ok(department_from(m))
    }

    pub async fn rename_department(
        &self,
        id: Id,
        expected: Option<i64>,
        name: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Department> {
        let txn = self.db.begin().await?;
        let mut q = department::Entity::update_many()
            .col_expr(department::Column::Name, Expr::value(name))
            .col_expr(
                department::Column::Version,
                Expr::col(department::Column::Version).add(1),
            )
            .filter(department::Column::Id.eq(id));
        if let Some(v) = expected {
            q = q.filter(department::Column::Version.eq(v));
        }
        let r = q
            .exec(&txn)
            .await
            .map_err(conflict(&format!("department {name}")))?;
        if r.rows_affected == 0 {
            return Err(missing_or_stale(
                department::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .is_some(),
                format!("department {id}"),
            ));
        }
        insert_audit(&txn, audit, &format!("department {id}"), now).await?;
        txn.commit().await?;
        self.department(id).await
    }

    pub async fn department_references(&self, id: Id) -> Result<References> {
        Ok(References {
            persons: person::Entity::find()
                .filter(person::Column::DepartmentId.eq(id))
                .count(&self.db)
                .await?,
            accounts: account::Entity::find()
                .filter(account::Column::DepartmentId.eq(id))
                .count(&self.db)
                .await?,
            admin_scopes: admin_scope::Entity::find()
                .filter(admin_scope::Column::DepartmentId.eq(id))
                .count(&self.db)
                .await?,
            ..Default::default()
        })
    }

    pub async fn delete_department(
        &self,
        id: Id,
        expected: Option<i64>,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        let mut q = department::Entity::delete_many().filter(department::Column::Id.eq(id));
        if let Some(v) = expected {
            q = q.filter(department::Column::Version.eq(v));
        }
        let r = q
            .exec(&txn)
            .await
            .map_err(|e| StoreError::Conflict(format!("references to department {id}: {e}")))?;
        if r.rows_affected == 0 {
            return Err(missing_or_stale(
                department::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .is_some(),
                format!("department {id}"),
            ));
        }
        insert_audit(&txn, audit, &format!("department {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    // ---- persons ------------------------------------------------------------------------

    /// The person an address belongs to: the live one, else the last one deleted under it
    /// (so that a deleted person is recognised, and refused, until someone is added anew).
    pub async fn person_on_record(&self, email: &EmailAddress) -> Result<Option<Person>> {
        if let Some(p) = self.person_by_email(email).await? {
            return Ok(Some(p));
        }
        person::Entity::find()
            .filter(person::Column::DeletedEmail.eq(email.as_str()))
            .order_by_desc(person::Column::Id)
            .one(self.reader())
            .await?
            .map(person_from)
            .transpose()
    }

    /// The email a deleted person had.
    pub async fn deleted_email(&self, person_id: Id) -> Result<Option<String>> {
        Ok(person::Entity::find_by_id(person_id)
            .one(&self.db)
            .await?
            .and_then(|m| m.deleted_email))
    }

    /// Which of `emails` belong to a person already (live ones: deleted persons' rows
    /// hold a tombstone address).
    pub async fn taken_emails(
        &self,
        emails: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        // Bounded IN lists: SQLite allows at most 32 766 parameters per statement.
        for chunk in emails.chunks(500) {
            for m in person::Entity::find()
                .filter(person::Column::Email.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?
            {
                out.insert(m.email);
            }
        }
        Ok(out)
    }

    pub async fn find_persons(&self, f: &PersonFilter) -> Result<Vec<Person>> {
        let mut q = person::Entity::find();
        if let Some(orgs) = &f.organisations {
            q = q.filter(person::Column::OrganisationId.is_in(orgs.clone()));
        }
        if let Some(depts) = &f.departments {
            q = q.filter(person::Column::DepartmentId.is_in(depts.clone()));
        }
        if let Some(o) = f.organisation {
            q = q.filter(person::Column::OrganisationId.eq(o));
        }
        if let Some(d) = f.department {
            q = q.filter(person::Column::DepartmentId.eq(d));
        }
        if let Some(e) = f.email.as_deref().filter(|e| !e.is_empty()) {
            q = q.filter(lower_like(person::Column::Email, e));
        }
        if let Some(t) = f.q.as_deref().filter(|t| !t.is_empty()) {
            q = q.filter(
                Condition::any()
                    .add(lower_like(person::Column::Email, t))
                    .add(lower_like(person::Column::FirstName, t))
                    .add(lower_like(person::Column::MiddleName, t))
                    .add(lower_like(person::Column::LastName, t)),
            );
        }
        q = match f.status {
            None => q.filter(person::Column::DeletedAt.is_null()),
            Some(PersonStatus::Active) => q
                .filter(person::Column::DeletedAt.is_null())
                .filter(person::Column::DisabledAt.is_null()),
            Some(PersonStatus::Disabled) => q
                .filter(person::Column::DeletedAt.is_null())
                .filter(person::Column::DisabledAt.is_not_null()),
            Some(PersonStatus::Deleted) => q.filter(person::Column::DeletedAt.is_not_null()),
        };
        if let Some(a) = f.after {
            q = q.filter(person::Column::Id.gt(a));
        }
        q.order_by_asc(person::Column::Id)
            .limit(f.limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(person_from)
            .collect()
    }

    pub async fn add_person(
        &self,
        p: &NewPerson,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Person> {
        let txn = self.db.begin().await?;
        let id = insert_person(&txn, p, now).await?;
        insert_audit(&txn, audit, &format!("person {id}"), now).await?;
        txn.commit().await?;
        self.person(id).await
    }

    /// Adds all persons or none: the first that fails (a duplicate email) rolls back the
    /// others. `audits[i]` is the event of `persons[i]`.
    pub async fn import_persons(
        &self,
        persons: &[NewPerson],
        audits: &[AuditEntry],
        now: UnixTime,
    ) -> Result<Vec<Id>> {
        let txn = self.db.begin().await?;
        let mut ids = Vec::with_capacity(persons.len());
        for (p, a) in persons.iter().zip(audits) {
            let id = insert_person(&txn, p, now).await?;
            insert_audit(&txn, a, &format!("person {id}"), now).await?;
            ids.push(id);
        }
        txn.commit().await?;
        Ok(ids)
    }

    pub async fn update_person(
        &self,
        id: Id,
        expected: Option<i64>,
        c: &PersonChanges,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Person> {
        let txn = self.db.begin().await?;
        let mut q = person::Entity::update_many()
            .col_expr(
                person::Column::Version,
                Expr::col(person::Column::Version).add(1),
            )
            .filter(person::Column::Id.eq(id))
            .filter(person::Column::DeletedAt.is_null());
        if let Some(v) = expected {
            q = q.filter(person::Column::Version.eq(v));
        }
        for (col, value) in [
            (person::Column::FirstName, &c.first_name),
            (person::Column::MiddleName, &c.middle_name),
            (person::Column::LastName, &c.last_name),
        ] {
            if let Some(v) = value {
                q = q.col_expr(col, Expr::value(v.as_str()));
            }
        }
        if let Some(d) = c.department_id {
            q = q.col_expr(person::Column::DepartmentId, Expr::value(d));
        }
        person_changed(&txn, q.exec(&txn).await?.rows_affected, id).await?;
        insert_audit(&txn, audit, &format!("person {id}"), now).await?;
        txn.commit().await?;
        self.person(id).await
    }

    /// Disables (`true`) or enables a person that is not deleted.
    pub async fn set_person_disabled(
        &self,
        id: Id,
        expected: Option<i64>,
        disabled: bool,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<Person> {
        let txn = self.db.begin().await?;
        let mut q = person::Entity::update_many()
            .col_expr(
                person::Column::DisabledAt,
                Expr::value(disabled.then_some(now)),
            )
            .col_expr(
                person::Column::Version,
                Expr::col(person::Column::Version).add(1),
            )
            .filter(person::Column::Id.eq(id))
            .filter(person::Column::DeletedAt.is_null());
        if let Some(v) = expected {
            q = q.filter(person::Column::Version.eq(v));
        }
        person_changed(&txn, q.exec(&txn).await?.rows_affected, id).await?;
        insert_audit(&txn, audit, &format!("person {id}"), now).await?;
        txn.commit().await?;
        self.person(id).await
    }

    /// Deletes a person, keeping the row for the history of their orders: the address
    /// moves to `deleted_email` and the secret ID is forgotten.
    pub async fn remove_person(
        &self,
        id: Id,
        expected: Option<i64>,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        let mut q = person::Entity::update_many()
            .col_expr(person::Column::DeletedAt, Expr::value(now))
            .col_expr(
                person::Column::DeletedEmail,
                Expr::col(person::Column::Email).into(),
            )
            .col_expr(person::Column::Email, Expr::value(tombstone_email(id)))
            .col_expr(
                person::Column::SecretIdHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                person::Column::Version,
                Expr::col(person::Column::Version).add(1),
            )
            .filter(person::Column::Id.eq(id))
            .filter(person::Column::DeletedAt.is_null());
        if let Some(v) = expected {
            q = q.filter(person::Column::Version.eq(v));
        }
        person_changed(&txn, q.exec(&txn).await?.rows_affected, id).await?;
        insert_audit(&txn, audit, &format!("person {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Sets (or, with `None`, clears) a live person's secret ID.
    pub async fn put_person_secret_id(
        &self,
        id: Id,
        hash: Option<&SecretHash>,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        let r = person::Entity::update_many()
            .col_expr(
                person::Column::SecretIdHash,
                Expr::value(hash.map(|h| h.as_str().to_string())),
            )
            .col_expr(
                person::Column::Version,
                Expr::col(person::Column::Version).add(1),
            )
            .filter(person::Column::Id.eq(id))
            .filter(person::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        person_changed(&txn, r.rows_affected, id).await?;
        insert_audit(&txn, audit, &format!("person {id}"), now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Forgets failed guesses under the given (scope, key) names, and under `name` in any
    /// scope (EST usernames on access-code accounts); returns how many were forgotten.
    pub async fn forget_failures_of(
        &self,
        shared: &[(Id, String)],
        username: &str,
        pattern: &str,
        audit: &AuditEntry,
        now: UnixTime,
    ) -> Result<u64> {
        let txn = self.db.begin().await?;
        let mut any = Condition::any().add(auth_failure::Column::Username.eq(username));
        for (scope, name) in shared {
            any = any.add(
                Condition::all()
                    .add(auth_failure::Column::AccountId.eq(*scope))
                    .add(auth_failure::Column::Username.eq(name.as_str())),
            );
        }
        if !pattern.is_empty() {
            any = any.add(auth_failure::Column::Username.like(pattern));
        }
        let r = auth_failure::Entity::delete_many()
            .filter(any)
            .exec(&txn)
            .await?;
        insert_audit(&txn, audit, "", now).await?;
        txn.commit().await?;
        Ok(r.rows_affected)
    }
}
