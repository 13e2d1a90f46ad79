use super::*;

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Create a certificate profile
    Add {
        name: String,
        /// Where the subject comes from: person or device
        #[arg(long)]
        subject: String,
        /// Allowed key types: rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384 (comma-separated)
        #[arg(
            long,
            default_value = "rsa-2048,rsa-3072,rsa-4096,ec-p256,ec-p384",
            value_delimiter = ','
        )]
        key_types: Vec<String>,
        /// Default key type (must be allowed); default: the first allowed
        #[arg(long)]
        default_key_type: Option<String>,
        /// Allowed terms in years (comma-separated)
        #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
        terms: Vec<u32>,
        /// Default term in years (must be allowed); default: the first allowed
        #[arg(long)]
        default_term: Option<u32>,
        /// Certificates wait for an administrator's approval
        #[arg(long)]
        requires_approval: bool,
        /// Person profiles: the S/MIME BR type (mailbox, organization, sponsor, individual);
        /// certificates then carry its CA/Browser Forum policy OID
        #[arg(long)]
        smime_type: Option<String>,
        /// S/MIME BR generation: multipurpose (with clientAuth) or strict (without)
        #[arg(long, default_value = "multipurpose")]
        smime_generation: String,
    },
    /// List profiles
    List,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Create an enrollment endpoint; its URI extension is generated
    Add {
        name: String,
        #[arg(long)]
        org: String,
        /// Authentication types: email-confirmation, secret-id (comma-separated)
        #[arg(
            long,
            default_value = "email-confirmation,secret-id",
            value_delimiter = ','
        )]
        auth: Vec<String>,
        #[arg(long, default_value = "")]
        help_link_text: String,
        #[arg(long, default_value = "")]
        help_link_target: String,
        #[arg(long, default_value = "")]
        help_text: String,
        #[arg(long, default_value = "")]
        eula_text: String,
    },
    /// List endpoints
    List,
}

// Parsed once per process; boxing the large variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an enrollment account
    Add {
        name: String,
        #[arg(long)]
        org: String,
        /// Endpoint name (of the same organisation)
        #[arg(long)]
        endpoint: String,
        /// Limit the account to one department
        #[arg(long)]
        dept: Option<String>,
        /// Certificate profile (repeatable; the first is EST's)
        #[arg(long = "profile", required = true)]
        profiles: Vec<String>,
        /// Who makes the key pair: server, client or both
        #[arg(long, default_value = "both")]
        csr_method: String,
        /// Allow an empty PKCS#12 password for server-generated keys
        #[arg(long)]
        allow_empty_p12_password: bool,
        /// Default PKCS#12 encryption for server-generated keys: modern or legacy
        #[arg(long, default_value = "modern")]
        p12_encryption: String,
        /// access-code or none
        #[arg(long)]
        authorization: String,
        /// Use this access code instead of a generated one (authorization access-code)
        #[arg(long)]
        access_code: Option<String>,
        /// EST label: [a-z0-9-]{1,64}, not an operation name
        #[arg(long)]
        label: Option<String>,
        /// Make this the default account (EST requests without a label)
        #[arg(long)]
        default: bool,
    },
    /// List accounts
    List,
}

impl Admin {
    pub(super) async fn profile(&self, c: &ProfileCmd) -> Result<(), CliError> {
        match c {
            ProfileCmd::Add {
                name,
                subject,
                key_types,
                default_key_type,
                terms,
                default_term,
                requires_approval,
                smime_type,
                smime_generation,
            } => {
                let smime = match smime_type {
                    None => None,
                    Some(t) => Some(crate::domain::SmimeType {
                        validation: crate::domain::SmimeValidation::parse(t).ok_or_else(|| {
                            CliError(format!(
                                "--smime-type must be mailbox, organization, sponsor or individual, not {t:?}"
                            ))
                        })?,
                        generation: crate::domain::SmimeGeneration::parse(smime_generation)
                            .ok_or_else(|| {
                                CliError(format!(
                                    "--smime-generation must be multipurpose or strict, not {smime_generation:?}"
                                ))
                            })?,
                    }),
                };
                if let Some(t) = smime {
                    if subject != "person" {
                        return Err(CliError("--smime-type is for person profiles".into()));
                    }
                    if let Some(long) = terms.iter().find(|y| **y > t.max_term_years()) {
                        return Err(CliError(format!(
                            "a term of {long} years is longer than S/MIME {} certificates may \
                             last (825 days): use --terms up to {}",
                            t.generation,
                            t.max_term_years()
                        )));
                    }
                }
                let subject_source = SubjectSource::parse(subject).ok_or_else(|| {
                    CliError(format!(
                        "--subject must be person or device, not {subject:?}"
                    ))
                })?;
                let key_types = parse_list(key_types, "key type", KeyType::parse)?;
                let default_key_type = match default_key_type {
                    Some(k) => KeyType::parse(k)
                        .ok_or_else(|| CliError(format!("unknown key type {k:?}")))?,
                    None => *key_types
                        .first()
                        .ok_or_else(|| CliError("no key type".into()))?,
                };
                if !key_types.contains(&default_key_type) {
                    return Err(CliError(
                        "the default key type must be one of --key-types".into(),
                    ));
                }
                if terms.is_empty() || terms.iter().any(|t| *t == 0 || *t > 10) {
                    return Err(CliError("terms are whole years from 1 to 10".into()));
                }
                let default_term = default_term.unwrap_or(terms[0]);
                if !terms.contains(&default_term) {
                    return Err(CliError("the default term must be one of --terms".into()));
                }
                let p = self
                    .store
                    .create_profile(NewProfile {
                        name: name.clone(),
                        subject_source,
                        key_types,
                        default_key_type,
                        terms_years: terms.clone(),
                        default_term_years: default_term,
                        requires_approval: *requires_approval,
                        smime,
                    })
                    .await
                    .map_err(err)?;
                self.audit("profile.add", format!("profile {}", p.id), name.clone())
                    .await?;
                outln!("created profile {} {:?}", p.id, p.name);
            }
            ProfileCmd::List => {
                outln!(
                    "{:<4} {:<24} {:<8} {:<40} {:<8} APPROVAL",
                    "ID",
                    "NAME",
                    "SUBJECT",
                    "KEY TYPES (default first)",
                    "TERMS"
                );
                for p in self.store.profiles().await.map_err(err)? {
                    let mut keys = vec![p.default_key_type.as_str()];
                    keys.extend(
                        p.key_types
                            .iter()
                            .map(|k| k.as_str())
                            .filter(|k| *k != p.default_key_type.as_str()),
                    );
                    let terms: Vec<String> = p.terms_years.iter().map(|t| t.to_string()).collect();
                    outln!(
                        "{:<4} {:<24} {:<8} {:<40} {:<8} {}",
                        p.id,
                        p.name,
                        p.subject_source,
                        keys.join(","),
                        format!("{} ({})", terms.join(","), p.default_term_years),
                        if p.requires_approval { "required" } else { "-" }
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) async fn endpoint(&self, c: &EndpointCmd) -> Result<(), CliError> {
        match c {
            EndpointCmd::Add {
                name,
                org,
                auth,
                help_link_text,
                help_link_target,
                help_text,
                eula_text,
            } => {
                let org = self.store.organisation_by_name(org).await.map_err(err)?;
                let auth_types = parse_list(auth, "authentication type", AuthType::parse)?;
                // The form links to it: only web pages and mail addresses, nothing a browser
                // would run.
                let target = help_link_target.trim();
                if !(target.is_empty()
                    || target.starts_with("https://")
                    || target.starts_with("http://")
                    || target.starts_with("mailto:"))
                {
                    return Err(CliError(
                        "--help-link-target must be an https://, http:// or mailto: address".into(),
                    ));
                }
                let e = self
                    .store
                    .create_endpoint(NewEndpoint {
                        organisation_id: org.id,
                        name: name.clone(),
                        uri_extension: generate_secret(SECRET_LEN).expose().to_string(),
                        auth_types,
                        help_link_text: help_link_text.clone(),
                        help_link_target: help_link_target.clone(),
                        help_text: help_text.clone(),
                        eula_text: eula_text.clone(),
                    })
                    .await
                    .map_err(err)?;
                self.audit("endpoint.add", format!("endpoint {}", e.id), name.clone())
                    .await?;
                outln!("created endpoint {} {:?}", e.id, e.name);
                outln!("uri-extension: {}", e.uri_extension);
            }
            EndpointCmd::List => {
                outln!(
                    "{:<4} {:<5} {:<24} {:<24} AUTH",
                    "ID",
                    "ORG",
                    "NAME",
                    "URI EXTENSION"
                );
                for e in self.store.endpoints().await.map_err(err)? {
                    let auth: Vec<&str> = e.auth_types.iter().map(|a| a.as_str()).collect();
                    outln!(
                        "{:<4} {:<5} {:<24} {:<24} {}",
                        e.id,
                        e.organisation_id,
                        e.name,
                        e.uri_extension,
                        auth.join(",")
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) async fn account(&self, c: &AccountCmd) -> Result<(), CliError> {
        match c {
            AccountCmd::Add {
                name,
                org,
                endpoint,
                dept,
                profiles,
                csr_method,
                allow_empty_p12_password,
                p12_encryption,
                authorization,
                access_code,
                label,
                default,
            } => {
                let org = self.store.organisation_by_name(org).await.map_err(err)?;
                let endpoint = self
                    .store
                    .endpoint_by_name(org.id, endpoint)
                    .await
                    .map_err(err)?;
                let department_id = self.department_id(org.id, dept.as_deref()).await?;
                let mut profile_ids = Vec::new();
                for p in profiles {
                    profile_ids.push(self.store.profile_by_name(p).await.map_err(err)?.id);
                }
                let csr_method = CsrMethod::parse(csr_method).ok_or_else(|| {
                    CliError(format!(
                        "--csr-method must be server, client or both, not {csr_method:?}"
                    ))
                })?;
                let authorization = Authorization::parse(authorization).ok_or_else(|| {
                    CliError(format!(
                        "--authorization must be access-code or none, not {authorization:?}"
                    ))
                })?;
                if let Some(l) = label {
                    if !estgate_protocol::path::is_valid_label(l) {
                        return Err(CliError(format!(
                            "EST label {l:?} must match [a-z0-9-]{{1,64}} and not be an operation name"
                        )));
                    }
                }
                let pkcs12_encryption =
                    Pkcs12Encryption::parse(p12_encryption).ok_or_else(|| {
                        CliError(format!(
                            "--p12-encryption must be modern or legacy, not {p12_encryption:?}"
                        ))
                    })?;
                let code = match (authorization, access_code) {
                    (Authorization::AccessCode, Some(c)) => {
                        if c.len() < 8 {
                            return Err(CliError(
                                "an access code needs at least 8 characters".into(),
                            ));
                        }
                        Some((Secret::new(c.clone()), false))
                    }
                    (Authorization::AccessCode, None) => Some((generate_secret(SECRET_LEN), true)),
                    (Authorization::None, Some(_)) => {
                        return Err(CliError(
                            "--access-code needs --authorization access-code".into(),
                        ))
                    }
                    (Authorization::None, None) => None,
                };
                let a = self
                    .store
                    .create_account(NewAccount {
                        endpoint_id: endpoint.id,
                        organisation_id: org.id,
                        department_id,
                        name: name.clone(),
                        csr_method,
                        allow_empty_pkcs12_password: *allow_empty_p12_password,
                        authorization,
                        access_code_hash: code.as_ref().map(|(c, _)| hash_secret(c)),
                        est_label: label.clone(),
                        is_default: *default,
                        pkcs12_encryption,
                        profile_ids,
                    })
                    .await
                    .map_err(err)?;
                self.audit("account.add", format!("account {}", a.id), name.clone())
                    .await?;
                outln!(
                    "created account {} {:?} label {}",
                    a.id,
                    a.name,
                    a.est_label.as_deref().unwrap_or("-")
                );
                if let Some((c, true)) = code {
                    outln!("access-code: {}", c.expose());
                }
            }
            AccountCmd::List => {
                outln!(
                    "{:<4} {:<20} {:<16} {:<5} {:<6} {:<12} {:<7} {:<9} PROFILES",
                    "ID",
                    "NAME",
                    "LABEL",
                    "ORG",
                    "DEPT",
                    "AUTHZ",
                    "CSR",
                    "EMPTY-P12"
                );
                for a in self.store.accounts().await.map_err(err)? {
                    let label = match (&a.est_label, a.is_default) {
                        (Some(l), true) => format!("{l} (default)"),
                        (Some(l), false) => l.clone(),
                        (None, true) => "(default)".into(),
                        (None, false) => "-".into(),
                    };
                    let profiles: Vec<String> =
                        a.profile_ids.iter().map(|p| p.to_string()).collect();
                    outln!(
                        "{:<4} {:<20} {:<16} {:<5} {:<6} {:<12} {:<7} {:<9} {}",
                        a.id,
                        a.name,
                        label,
                        a.organisation_id,
                        a.department_id
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "-".into()),
                        a.authorization,
                        a.csr_method,
                        if a.allow_empty_pkcs12_password {
                            "allowed"
                        } else {
                            "-"
                        },
                        profiles.join(",")
                    );
                }
            }
        }
        Ok(())
    }
}
