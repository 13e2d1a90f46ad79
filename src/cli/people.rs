//! Organisations with their domains and departments, and persons (one by one or from a
//! CSV file): names in, RA verbs, names out.

use std::collections::HashMap;

use super::*;
use crate::domain::{Department, Organisation, Person};
use crate::ra::admin::{
    OrganisationChanges, OrganisationRequest, PersonChanges, PersonQuery, PersonRequest,
    SecretIdChoice, MAX_IMPORT_BYTES,
};

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Create an organisation with one or more verified domains
    Add {
        name: String,
        /// A verified email/DNS domain (repeatable)
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
    },
    /// Set the organisation's organizationIdentifier (S/MIME BR §7.1.4.2.2, e.g.
    /// NTRDE-HRB12345 or LEIXG-…), required by organization- and sponsor-validated profiles
    SetIdentifier { name: String, identifier: String },
    /// Rename an organisation, or set or clear its organizationIdentifier
    Edit {
        name: String,
        /// The new name
        #[arg(long = "name", id = "new_name")]
        new_name: Option<String>,
        /// The organizationIdentifier (see set-identifier)
        #[arg(long, conflicts_with = "no_identifier")]
        identifier: Option<String>,
        /// Clear the organizationIdentifier
        #[arg(long)]
        no_identifier: bool,
    },
    /// Add a verified domain to an organisation
    AddDomain {
        name: String,
        #[arg(long)]
        domain: String,
    },
    /// Remove a verified domain (not the last one)
    RemoveDomain {
        name: String,
        #[arg(long)]
        domain: String,
    },
    /// Delete an organisation nothing refers to any more
    Remove { name: String },
    /// List organisations
    List,
}

#[derive(Debug, Subcommand)]
pub enum DeptCmd {
    /// Create a department
    Add {
        name: String,
        #[arg(long)]
        org: String,
    },
    /// Rename a department
    Rename {
        #[arg(long)]
        org: String,
        name: String,
        new_name: String,
    },
    /// Delete a department no person, account or DRAO refers to
    Remove {
        #[arg(long)]
        org: String,
        name: String,
    },
    /// List departments
    List {
        /// Only the departments of this organisation
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PersonCmd {
    /// Create a person; a secret ID is generated and printed unless given or --no-secret-id
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        first: String,
        #[arg(long, default_value = "")]
        middle: String,
        #[arg(long)]
        last: String,
        #[arg(long)]
        dept: Option<String>,
        /// Use this secret ID instead of a generated one
        #[arg(long, conflicts_with = "no_secret_id")]
        secret_id: Option<String>,
        /// Create the person without a secret ID
        #[arg(long)]
        no_secret_id: bool,
    },
    /// Set or reset a person's secret ID (generated and printed unless given)
    SetSecretId {
        #[arg(long)]
        email: String,
        #[arg(long)]
        secret_id: Option<String>,
    },
    /// Change a person's names or department
    Edit {
        #[arg(long)]
        email: String,
        #[arg(long)]
        first: Option<String>,
        #[arg(long)]
        middle: Option<String>,
        #[arg(long)]
        last: Option<String>,
        /// Move the person to this department (of their organisation)
        #[arg(long, conflicts_with = "no_dept")]
        dept: Option<String>,
        /// Take the person out of any department
        #[arg(long)]
        no_dept: bool,
    },
    /// Disable a person: no sign-in or enrollment; their valid certificates are revoked
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled person again
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Delete a person (their history stays); their valid certificates are revoked
    Remove {
        #[arg(long)]
        email: String,
    },
    /// Lift a lockout after too many wrong secret IDs or access codes
    Unlock {
        #[arg(long)]
        email: String,
    },
    /// Import persons from CSV (email,first_name,middle_name,last_name,department,secret_id;
    /// secret_id "generate" makes one): all or nothing
    Import {
        #[arg(long)]
        org: String,
        #[arg(long)]
        file: PathBuf,
        /// Check every line and report the bad ones; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List persons
    List,
}

pub(super) async fn org(ra: &Ra, caller: &Caller, c: &OrgCmd) -> Result<(), CliError> {
    match c {
        OrgCmd::Add { name, domains } => {
            let o = ra
                .add_organisation(
                    caller,
                    OrganisationRequest {
                        name: name.clone(),
                        domains: domains.clone(),
                        organization_identifier: None,
                    },
                )
                .await
                .map_err(refused)?;
            outln!(
                "created organisation {:?} with domains {}",
                o.name,
                o.domains.join(",")
            );
        }
        OrgCmd::SetIdentifier { name, identifier } => {
            let o = ra.organisation_named(caller, name).await.map_err(refused)?;
            let o = ra
                .edit_organisation(
                    caller,
                    o.id,
                    None,
                    OrganisationChanges {
                        organization_identifier: Some(Some(identifier.clone())),
                        ..Default::default()
                    },
                )
                .await
                .map_err(refused)?;
            outln!(
                "{:?} now has organizationIdentifier {}",
                o.name,
                o.organization_identifier.as_deref().unwrap_or("-")
            );
        }
        OrgCmd::Edit {
            name,
            new_name,
            identifier,
            no_identifier,
        } => {
            let o = ra.organisation_named(caller, name).await.map_err(refused)?;
            let organization_identifier = match (identifier, no_identifier) {
                (Some(i), _) => Some(Some(i.clone())),
                (None, true) => Some(None),
                (None, false) => None,
            };
            if new_name.is_none() && organization_identifier.is_none() {
                return Err(CliError(
                    "nothing to change: give --name, --identifier or --no-identifier".into(),
                ));
            }
            let o = ra
                .edit_organisation(
                    caller,
                    o.id,
                    None,
                    OrganisationChanges {
                        name: new_name.clone(),
                        organization_identifier,
                    },
                )
                .await
                .map_err(refused)?;
            outln!(
                "organisation {:?} (organizationIdentifier {})",
                o.name,
                o.organization_identifier.as_deref().unwrap_or("-")
            );
        }
        OrgCmd::AddDomain { name, domain } => {
            let o = ra.organisation_named(caller, name).await.map_err(refused)?;
            let o = ra
                .add_organisation_domain(caller, o.id, domain)
                .await
                .map_err(refused)?;
            outln!("{:?} now has domains {}", o.name, o.domains.join(","));
        }
        OrgCmd::RemoveDomain { name, domain } => {
            let o = ra.organisation_named(caller, name).await.map_err(refused)?;
            let o = ra
                .remove_organisation_domain(caller, o.id, domain)
                .await
                .map_err(refused)?;
            outln!("{:?} now has domains {}", o.name, o.domains.join(","));
        }
        OrgCmd::Remove { name } => {
            let o = ra.organisation_named(caller, name).await.map_err(refused)?;
            ra.remove_organisation(caller, o.id, None)
                .await
                .map_err(refused)?;
            outln!("organisation {:?} removed", o.name);
        }
        OrgCmd::List => {
            outln!("{:<32} {:<24} DOMAINS", "NAME", "IDENTIFIER");
            for o in ra.organisations_in_sight(caller).await.map_err(refused)? {
                outln!(
                    "{:<32} {:<24} {}",
                    o.name,
                    o.organization_identifier.as_deref().unwrap_or("-"),
                    o.domains.join(",")
                );
            }
        }
    }
    Ok(())
}

async fn department(
    ra: &Ra,
    caller: &Caller,
    org: &str,
    name: &str,
) -> Result<(Organisation, Department), CliError> {
    let o = ra.organisation_named(caller, org).await.map_err(refused)?;
    let d = ra
        .department_named(caller, o.id, name)
        .await
        .map_err(refused)?;
    Ok((o, d))
}

pub(super) async fn dept(ra: &Ra, caller: &Caller, c: &DeptCmd) -> Result<(), CliError> {
    match c {
        DeptCmd::Add { name, org } => {
            let o = ra.organisation_named(caller, org).await.map_err(refused)?;
            let d = ra
                .add_department(caller, o.id, name)
                .await
                .map_err(refused)?;
            outln!("created department {:?} in {:?}", d.name, o.name);
        }
        DeptCmd::Rename {
            org,
            name,
            new_name,
        } => {
            let (o, d) = department(ra, caller, org, name).await?;
            let d = ra
                .rename_department(caller, d.id, None, new_name)
                .await
                .map_err(refused)?;
            outln!("department {name:?} of {:?} is now {:?}", o.name, d.name);
        }
        DeptCmd::Remove { org, name } => {
            let (o, d) = department(ra, caller, org, name).await?;
            ra.remove_department(caller, d.id, None)
                .await
                .map_err(refused)?;
            outln!("department {:?} of {:?} removed", d.name, o.name);
        }
        DeptCmd::List { org } => {
            let orgs = match org {
                Some(name) => vec![ra.organisation_named(caller, name).await.map_err(refused)?],
                None => ra.organisations_in_sight(caller).await.map_err(refused)?,
            };
            outln!("{:<32} NAME", "ORGANISATION");
            for o in orgs {
                for d in ra
                    .departments_in_sight(caller, o.id)
                    .await
                    .map_err(refused)?
                {
                    outln!("{:<32} {}", o.name, d.name);
                }
            }
        }
    }
    Ok(())
}

pub(super) async fn person(ra: &Ra, caller: &Caller, c: &PersonCmd) -> Result<(), CliError> {
    match c {
        PersonCmd::Add {
            org,
            email,
            first,
            middle,
            last,
            dept,
            secret_id,
            no_secret_id,
        } => {
            let o = ra.organisation_named(caller, org).await.map_err(refused)?;
            let department_id = match dept {
                Some(d) => Some(
                    ra.department_named(caller, o.id, d)
                        .await
                        .map_err(refused)?
                        .id,
                ),
                None => None,
            };
            let secret_id = match (secret_id, no_secret_id) {
                (_, true) => SecretIdChoice::None,
                (Some(s), _) => SecretIdChoice::Given(Secret::new(s.clone())),
                (None, false) => SecretIdChoice::Generate,
            };
            let added = ra
                .add_person(
                    caller,
                    PersonRequest {
                        organisation_id: o.id,
                        department_id,
                        email: email.clone(),
                        first_name: first.clone(),
                        middle_name: middle.clone(),
                        last_name: last.clone(),
                        secret_id,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("created person {} in {:?}", added.person.email, o.name);
            if let Some(s) = added.secret_id {
                outln!("secret-id: {}", s.expose());
            }
        }
        PersonCmd::SetSecretId { email, secret_id } => {
            let p = ra.person_by_email(caller, email).await.map_err(refused)?;
            let secret = ra
                .reset_person_secret_id(caller, p.id, secret_id.clone().map(Secret::new))
                .await
                .map_err(refused)?;
            outln!("secret ID set for {}", p.email);
            if secret_id.is_none() {
                outln!("secret-id: {}", secret.expose());
            }
        }
        PersonCmd::Edit {
            email,
            first,
            middle,
            last,
            dept,
            no_dept,
        } => {
            let p = ra.person_by_email(caller, email).await.map_err(refused)?;
            let department_id = match (dept, no_dept) {
                (Some(d), _) => Some(Some(
                    ra.department_named(caller, p.organisation_id, d)
                        .await
                        .map_err(refused)?
                        .id,
                )),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let changes = PersonChanges {
                first_name: first.clone(),
                middle_name: middle.clone(),
                last_name: last.clone(),
                department_id,
            };
            if changes.first_name.is_none()
                && changes.middle_name.is_none()
                && changes.last_name.is_none()
                && changes.department_id.is_none()
            {
                return Err(CliError(
                    "nothing to change: give --first, --middle, --last, --dept or --no-dept".into(),
                ));
            }
            let p = ra
                .edit_person(caller, p.id, None, changes)
                .await
                .map_err(refused)?;
            let dept = match p.department_id {
                Some(d) => ra.department_label(d).await,
                None => "-".into(),
            };
            outln!("person {}: {} (department {dept})", p.email, p.full_name());
        }
        PersonCmd::Disable { email } | PersonCmd::Remove { email } => {
            let p = ra.person_by_email(caller, email).await.map_err(refused)?;
            let (retired, done) = if matches!(c, PersonCmd::Disable { .. }) {
                (
                    ra.disable_person(caller, p.id, None)
                        .await
                        .map_err(refused)?,
                    "disabled",
                )
            } else {
                (
                    ra.remove_person(caller, p.id, None)
                        .await
                        .map_err(refused)?,
                    "removed",
                )
            };
            outln!("person {} {done}", p.email);
            for s in &retired.revoked {
                outln!("revoked {s} (affiliationChanged)");
            }
        }
        PersonCmd::Enable { email } => {
            let p = ra.person_by_email(caller, email).await.map_err(refused)?;
            ra.enable_person(caller, p.id, None)
                .await
                .map_err(refused)?;
            outln!("person {} enabled", p.email);
        }
        PersonCmd::Unlock { email } => {
            let p = ra.person_by_email(caller, email).await.map_err(refused)?;
            let n = ra.unlock_person(caller, p.id).await.map_err(refused)?;
            outln!(
                "person {} unlocked ({n} failed attempts forgotten)",
                p.email
            );
        }
        PersonCmd::Import { org, file, dry_run } => {
            import(ra, caller, org, file, *dry_run).await?;
        }
        PersonCmd::List => list_persons(ra, caller).await?,
    }
    Ok(())
}

async fn import(
    ra: &Ra,
    caller: &Caller,
    org: &str,
    file: &std::path::Path,
    dry_run: bool,
) -> Result<(), CliError> {
    let o = ra.organisation_named(caller, org).await.map_err(refused)?;
    let size = std::fs::metadata(file)
        .map_err(|e| CliError(format!("{}: {e}", file.display())))?
        .len();
    if size > MAX_IMPORT_BYTES as u64 {
        return Err(CliError(format!(
            "{}: {size} bytes; at most {MAX_IMPORT_BYTES} are imported at once",
            file.display()
        )));
    }
    let csv = std::fs::read(file).map_err(|e| CliError(format!("{}: {e}", file.display())))?;
    let report = ra
        .import_persons(caller, o.id, &csv, !dry_run)
        .await
        .map_err(refused)?;
    for e in &report.errors {
        outln!("line {}: {}: {}", e.line, e.field, e.reason);
    }
    if !report.errors.is_empty() {
        return Err(CliError(format!(
            "{} of {} lines refused; nothing was imported",
            report.errors.len(),
            report.rows
        )));
    }
    if !report.applied {
        outln!(
            "{} persons checked; nothing imported (dry run)",
            report.rows
        );
        return Ok(());
    }
    for p in &report.created {
        match &p.secret_id {
            Some(s) => outln!("line {}: {} secret-id: {}", p.line, p.email, s.expose()),
            None => outln!("line {}: {}", p.line, p.email),
        }
    }
    outln!(
        "imported {} persons into {:?}",
        report.created.len(),
        o.name
    );
    Ok(())
}

async fn list_persons(ra: &Ra, caller: &Caller) -> Result<(), CliError> {
    let persons: Vec<Person> = all_pages(
        |after| async move {
            ra.persons_in_sight(
                caller,
                PersonQuery {
                    after,
                    limit: PAGE,
                    ..Default::default()
                },
            )
            .await
        },
        |p| p.id,
    )
    .await?;
    let mut orgs: HashMap<Id, String> = HashMap::new();
    let mut depts: HashMap<Id, String> = HashMap::new();
    for o in ra.organisations_in_sight(caller).await.map_err(refused)? {
        for d in ra
            .departments_in_sight(caller, o.id)
            .await
            .map_err(refused)?
        {
            depts.insert(d.id, d.name);
        }
        orgs.insert(o.id, o.name);
    }
    outln!(
        "{:<36} {:<32} {:<24} {:<20} {:<9} SECRET-ID",
        "EMAIL",
        "NAME",
        "ORGANISATION",
        "DEPARTMENT",
        "STATUS"
    );
    for p in persons {
        let dept = match p.department_id {
            Some(d) => depts.get(&d).cloned().unwrap_or_else(|| format!("#{d}")),
            None => "-".into(),
        };
        outln!(
            "{:<36} {:<32} {:<24} {:<20} {:<9} {}",
            p.email,
            or_dash(&p.full_name()),
            orgs.get(&p.organisation_id)
                .map(String::as_str)
                .unwrap_or("-"),
            dept,
            p.status.as_str(),
            if p.secret_id_hash.is_some() {
                "set"
            } else {
                "-"
            }
        );
    }
    Ok(())
}
