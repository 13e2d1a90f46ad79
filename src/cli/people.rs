use super::*;

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
    /// Add a verified domain to an organisation
    AddDomain {
        name: String,
        #[arg(long)]
        domain: String,
    },
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
    /// List departments
    List,
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
    /// List persons
    List,
}

impl Admin {
    pub(super) async fn org(&self, c: &OrgCmd) -> Result<(), CliError> {
        match c {
            OrgCmd::Add { name, domains } => {
                for d in domains {
                    check_domain(d)?;
                }
                let org = self
                    .store
                    .create_organisation(name, domains, self.clock.now())
                    .await
                    .map_err(err)?;
                self.audit(
                    "org.add",
                    format!("organisation {}", org.id),
                    domains.join(","),
                )
                .await?;
                outln!(
                    "created organisation {} {:?} domains {}",
                    org.id,
                    org.name,
                    org.domains.join(",")
                );
            }
            OrgCmd::SetIdentifier { name, identifier } => {
                if !crate::domain::is_organization_identifier(identifier) {
                    return Err(CliError(format!(
                        "{identifier:?} is not an organizationIdentifier: a registration \
                         scheme (VAT, NTR, PSD, LEI, GOV or INT), a two-letter country (XG for \
                         LEI and INT), an optional +state, a hyphen and the reference, e.g. \
                         NTRDE-HRB12345"
                    )));
                }
                let org = self.store.organisation_by_name(name).await.map_err(err)?;
                self.store
                    .set_organization_identifier(org.id, identifier)
                    .await
                    .map_err(err)?;
                self.audit(
                    "org.set-identifier",
                    format!("organisation {}", org.id),
                    identifier.clone(),
                )
                .await?;
                outln!("{:?} now has organizationIdentifier {identifier}", org.name);
            }
            OrgCmd::AddDomain { name, domain } => {
                check_domain(domain)?;
                let org = self.store.organisation_by_name(name).await.map_err(err)?;
                self.store.add_domain(org.id, domain).await.map_err(err)?;
                self.audit(
                    "org.add-domain",
                    format!("organisation {}", org.id),
                    domain.clone(),
                )
                .await?;
                outln!("added domain {domain} to {:?}", org.name);
            }
            OrgCmd::List => {
                outln!("{:<4} {:<32} DOMAINS", "ID", "NAME");
                for o in self.store.organisations().await.map_err(err)? {
                    outln!("{:<4} {:<32} {}", o.id, o.name, o.domains.join(","));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn dept(&self, c: &DeptCmd) -> Result<(), CliError> {
        match c {
            DeptCmd::Add { name, org } => {
                let org = self.store.organisation_by_name(org).await.map_err(err)?;
                let d = self
                    .store
                    .create_department(org.id, name)
                    .await
                    .map_err(err)?;
                self.audit("dept.add", format!("department {}", d.id), name.clone())
                    .await?;
                outln!("created department {} {:?} in {:?}", d.id, d.name, org.name);
            }
            DeptCmd::List => {
                outln!("{:<4} {:<6} NAME", "ID", "ORG");
                for d in self.store.departments().await.map_err(err)? {
                    outln!("{:<4} {:<6} {}", d.id, d.organisation_id, d.name);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn person(&self, c: &PersonCmd) -> Result<(), CliError> {
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
                let org = self.store.organisation_by_name(org).await.map_err(err)?;
                let email = EmailAddress::parse(email)
                    .ok_or_else(|| CliError(format!("{email:?} is not an email address")))?;
                if !org.owns(email.domain()) {
                    return Err(CliError(format!(
                        "{} is not in a verified domain of {:?} ({})",
                        email,
                        org.name,
                        org.domains.join(", ")
                    )));
                }
                let department_id = self.department_id(org.id, dept.as_deref()).await?;
                let secret = match (secret_id, no_secret_id) {
                    (_, true) => None,
                    (Some(s), _) => Some((Secret::new(s.clone()), false)),
                    (None, false) => Some((generate_secret(SECRET_LEN), true)),
                };
                let person = self
                    .store
                    .create_person(
                        NewPerson {
                            organisation_id: org.id,
                            department_id,
                            email: email.clone(),
                            first_name: first.trim().to_string(),
                            middle_name: middle.trim().to_string(),
                            last_name: last.trim().to_string(),
                            secret_id_hash: secret.as_ref().map(|(s, _)| hash_secret(s)),
                        },
                        self.clock.now(),
                    )
                    .await
                    .map_err(err)?;
                self.audit(
                    "person.add",
                    format!("person {}", person.id),
                    email.to_string(),
                )
                .await?;
                outln!("created person {} {}", person.id, person.email);
                if let Some((s, true)) = secret {
                    outln!("secret-id: {}", s.expose());
                }
            }
            PersonCmd::SetSecretId { email, secret_id } => {
                let addr = EmailAddress::parse(email)
                    .ok_or_else(|| CliError(format!("{email:?} is not an email address")))?;
                let person = self
                    .store
                    .person_by_email(&addr)
                    .await
                    .map_err(err)?
                    .ok_or_else(|| CliError(format!("no person {addr}")))?;
                let (secret, generated) = match secret_id {
                    Some(s) => (Secret::new(s.clone()), false),
                    None => (generate_secret(SECRET_LEN), true),
                };
                self.store
                    .set_person_secret_id(person.id, &hash_secret(&secret))
                    .await
                    .map_err(err)?;
                self.audit(
                    "person.set-secret-id",
                    format!("person {}", person.id),
                    String::new(),
                )
                .await?;
                outln!("secret ID set for {}", person.email);
                if generated {
                    outln!("secret-id: {}", secret.expose());
                }
            }
            PersonCmd::List => {
                outln!(
                    "{:<4} {:<5} {:<6} {:<36} {:<32} SECRET-ID",
                    "ID",
                    "ORG",
                    "DEPT",
                    "EMAIL",
                    "NAME"
                );
                for p in self.store.persons().await.map_err(err)? {
                    let dept = p
                        .department_id
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into());
                    let has = if p.secret_id_hash.is_some() {
                        "set"
                    } else {
                        "-"
                    };
                    outln!(
                        "{:<4} {:<5} {:<6} {:<36} {:<32} {}",
                        p.id,
                        p.organisation_id,
                        dept,
                        p.email,
                        p.full_name(),
                        has
                    );
                }
            }
        }
        Ok(())
    }
}
