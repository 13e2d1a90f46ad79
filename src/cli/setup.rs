//! The enrollment setup: certificate profiles, enrollment endpoints and their accounts.
//! Flags become RA requests; the rules a profile, endpoint or account must satisfy are the
//! RA's, as the API applies them.

use std::collections::HashMap;

use super::*;
use crate::domain::{
    Account, AuthType, Authorization, CsrMethod, Endpoint, KeyType, Pkcs12Encryption,
    SmimeGeneration, SmimeType, SmimeValidation, SubjectSource,
};
use crate::ra::admin::{
    AccountChanges, AccountRequest, EndpointChanges, EndpointRequest, ProfileChanges,
    ProfileRequest,
};

const KEY_TYPES: &str = "rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384";

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
    /// Change a profile; what is not given stays
    Edit {
        name: String,
        /// The new name
        #[arg(long = "name", id = "new_name")]
        new_name: Option<String>,
        /// person or device
        #[arg(long)]
        subject: Option<String>,
        /// Allowed key types (comma-separated)
        #[arg(long, value_delimiter = ',')]
        key_types: Option<Vec<String>>,
        #[arg(long)]
        default_key_type: Option<String>,
        /// Allowed terms in years (comma-separated)
        #[arg(long, value_delimiter = ',')]
        terms: Option<Vec<u32>>,
        #[arg(long)]
        default_term: Option<u32>,
        /// Certificates wait for an administrator's approval
        #[arg(long, conflicts_with = "no_requires_approval")]
        requires_approval: bool,
        /// Certificates are issued without approval
        #[arg(long)]
        no_requires_approval: bool,
        /// The S/MIME BR type (mailbox, organization, sponsor, individual)
        #[arg(long, conflicts_with = "no_smime")]
        smime_type: Option<String>,
        /// S/MIME BR generation: multipurpose or strict
        #[arg(long, conflicts_with = "no_smime")]
        smime_generation: Option<String>,
        /// No S/MIME BR type any more
        #[arg(long)]
        no_smime: bool,
    },
    /// Delete a profile no account uses and no order refers to
    Remove { name: String },
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
    /// Change an endpoint; what is not given stays
    Edit {
        name: String,
        /// Its organisation (needed when several have an endpoint of this name)
        #[arg(long)]
        org: Option<String>,
        /// The new name
        #[arg(long = "name", id = "new_name")]
        new_name: Option<String>,
        /// Authentication types: email-confirmation, secret-id (comma-separated)
        #[arg(long, value_delimiter = ',')]
        auth: Option<Vec<String>>,
        #[arg(long)]
        help_link_text: Option<String>,
        #[arg(long)]
        help_link_target: Option<String>,
        #[arg(long)]
        help_text: Option<String>,
        #[arg(long)]
        eula_text: Option<String>,
    },
    /// Generate a new URI extension: the old form address stops working
    RegenerateUri {
        name: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Delete an endpoint without accounts; its form stops being served
    Remove {
        name: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// List endpoints
    List {
        /// Only the endpoints of this organisation
        #[arg(long)]
        org: Option<String>,
    },
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
        /// Device profiles on access-code accounts: the CSR may name only the Basic user
        /// name (CN and every DNS name equal to it, case aside)
        #[arg(long)]
        bind_device_names: bool,
    },
    /// Change an account; what is not given stays
    Edit {
        name: String,
        /// Its organisation (needed when several have an account of this name)
        #[arg(long)]
        org: Option<String>,
        /// The new name
        #[arg(long = "name", id = "new_name")]
        new_name: Option<String>,
        /// Limit the account to this department
        #[arg(long, conflicts_with = "no_dept")]
        dept: Option<String>,
        /// Open the account to the whole organisation
        #[arg(long)]
        no_dept: bool,
        /// The profiles, replacing the current ones (repeatable; the first is EST's)
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// server, client or both
        #[arg(long)]
        csr_method: Option<String>,
        #[arg(long, conflicts_with = "no_allow_empty_p12_password")]
        allow_empty_p12_password: bool,
        #[arg(long)]
        no_allow_empty_p12_password: bool,
        /// modern or legacy
        #[arg(long)]
        p12_encryption: Option<String>,
        /// access-code or none (switching to access-code generates a code unless given)
        #[arg(long)]
        authorization: Option<String>,
        /// Set this access code
        #[arg(long)]
        access_code: Option<String>,
        /// EST label
        #[arg(long, conflicts_with = "no_label")]
        label: Option<String>,
        /// Remove the EST label
        #[arg(long)]
        no_label: bool,
        /// Make this the default account
        #[arg(long, conflicts_with = "no_default")]
        default: bool,
        /// Make this account no longer the default
        #[arg(long)]
        no_default: bool,
        /// The CSR of a device may name only the Basic user name
        #[arg(long, conflicts_with = "no_bind_device_names")]
        bind_device_names: bool,
        /// Let device CSRs name any host in the organisation's domains again
        #[arg(long)]
        no_bind_device_names: bool,
    },
    /// Generate a new access code (printed once); the old one stops working
    RotateAccessCode {
        name: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Delete an account: it no longer enrolls; its certificates keep their history
    Remove {
        name: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// List accounts
    List {
        /// Only the accounts of this organisation
        #[arg(long)]
        org: Option<String>,
    },
}

/// `a, b, c`: the values a flag takes, for its refusal.
fn one_of<T: std::fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_types(items: &[String]) -> Result<Vec<KeyType>, CliError> {
    parse_each(items, "--key-types", KEY_TYPES, KeyType::parse)
}

fn key_type(s: &str) -> Result<KeyType, CliError> {
    parse_one(s, "--default-key-type", KEY_TYPES, KeyType::parse)
}

fn subject(s: &str) -> Result<SubjectSource, CliError> {
    parse_one(
        s,
        "--subject",
        &one_of(SubjectSource::ALL),
        SubjectSource::parse,
    )
}

fn smime_type(validation: &str, generation: &str) -> Result<SmimeType, CliError> {
    Ok(SmimeType {
        validation: parse_one(
            validation,
            "--smime-type",
            &one_of(SmimeValidation::ALL),
            SmimeValidation::parse,
        )?,
        generation: parse_one(
            generation,
            "--smime-generation",
            &one_of(SmimeGeneration::ALL),
            SmimeGeneration::parse,
        )?,
    })
}

async fn organisation_id(
    ra: &Ra,
    caller: &Caller,
    org: Option<&str>,
) -> Result<Option<Id>, CliError> {
    match org {
        Some(o) => Ok(Some(
            ra.organisation_named(caller, o).await.map_err(refused)?.id,
        )),
        None => Ok(None),
    }
}

pub(super) async fn profile(ra: &Ra, caller: &Caller, c: &ProfileCmd) -> Result<(), CliError> {
    match c {
        ProfileCmd::Add {
            name,
            subject: source,
            key_types: keys,
            default_key_type,
            terms,
            default_term,
            requires_approval,
            smime_type: smime,
            smime_generation,
        } => {
            let p = ra
                .add_profile(
                    caller,
                    ProfileRequest {
                        name: name.clone(),
                        subject_source: subject(source)?,
                        key_types: key_types(keys)?,
                        default_key_type: default_key_type.as_deref().map(key_type).transpose()?,
                        terms_years: terms.clone(),
                        default_term_years: *default_term,
                        requires_approval: *requires_approval,
                        smime: smime
                            .as_deref()
                            .map(|t| smime_type(t, smime_generation))
                            .transpose()?,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("created profile {:?}", p.name);
        }
        ProfileCmd::Edit {
            name,
            new_name,
            subject: source,
            key_types: keys,
            default_key_type,
            terms,
            default_term,
            requires_approval,
            no_requires_approval,
            smime_type: smime,
            smime_generation,
            no_smime,
        } => {
            let before = ra.profile_named(caller, name).await.map_err(refused)?;
            let smime = match (smime, smime_generation, no_smime) {
                (_, _, true) => Some(None),
                (Some(t), g, _) => Some(Some(smime_type(
                    t,
                    g.as_deref().unwrap_or(
                        before
                            .smime
                            .map(|s| s.generation.as_str())
                            .unwrap_or("multipurpose"),
                    ),
                )?)),
                (None, Some(g), _) => match before.smime {
                    Some(s) => Some(Some(smime_type(s.validation.as_str(), g)?)),
                    None => {
                        return Err(CliError(
                            "--smime-generation: the profile has no S/MIME type; give \
                             --smime-type too"
                                .into(),
                        ))
                    }
                },
                (None, None, false) => None,
            };
            let p = ra
                .edit_profile(
                    caller,
                    before.id,
                    None,
                    ProfileChanges {
                        name: new_name.clone(),
                        subject_source: source.as_deref().map(subject).transpose()?,
                        key_types: keys.as_deref().map(key_types).transpose()?,
                        default_key_type: default_key_type.as_deref().map(key_type).transpose()?,
                        terms_years: terms.clone(),
                        default_term_years: *default_term,
                        requires_approval: switch(*requires_approval, *no_requires_approval),
                        smime,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("profile {:?} changed", p.name);
        }
        ProfileCmd::Remove { name } => {
            let p = ra.profile_named(caller, name).await.map_err(refused)?;
            ra.remove_profile(caller, p.id).await.map_err(refused)?;
            outln!("profile {:?} removed", p.name);
        }
        ProfileCmd::List => {
            outln!(
                "{:<24} {:<8} {:<40} {:<8} {:<9} S/MIME",
                "NAME",
                "SUBJECT",
                "KEY TYPES (default first)",
                "TERMS",
                "APPROVAL"
            );
            for p in ra.profiles(caller).await.map_err(refused)? {
                let mut keys = vec![p.default_key_type.as_str()];
                keys.extend(
                    p.key_types
                        .iter()
                        .map(|k| k.as_str())
                        .filter(|k| *k != p.default_key_type.as_str()),
                );
                let terms: Vec<String> = p.terms_years.iter().map(|t| t.to_string()).collect();
                outln!(
                    "{:<24} {:<8} {:<40} {:<8} {:<9} {}",
                    p.name,
                    p.subject_source,
                    keys.join(","),
                    format!("{} ({})", terms.join(","), p.default_term_years),
                    if p.requires_approval { "required" } else { "-" },
                    p.smime
                        .map(|s| format!("{} {}", s.validation, s.generation))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    Ok(())
}

fn auth_types(items: &[String]) -> Result<Vec<AuthType>, CliError> {
    parse_each(items, "--auth", &one_of(AuthType::ALL), AuthType::parse)
}

async fn endpoint_named(
    ra: &Ra,
    caller: &Caller,
    org: Option<&str>,
    name: &str,
) -> Result<Endpoint, CliError> {
    let org = organisation_id(ra, caller, org).await?;
    ra.endpoint_named(caller, org, name).await.map_err(refused)
}

pub(super) async fn endpoint(ra: &Ra, caller: &Caller, c: &EndpointCmd) -> Result<(), CliError> {
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
            let o = ra.organisation_named(caller, org).await.map_err(refused)?;
            let e = ra
                .add_endpoint(
                    caller,
                    EndpointRequest {
                        organisation_id: o.id,
                        name: name.clone(),
                        auth_types: auth_types(auth)?,
                        help_link_text: help_link_text.clone(),
                        help_link_target: help_link_target.clone(),
                        help_text: help_text.clone(),
                        eula_text: eula_text.clone(),
                        uri_extension: None,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("created endpoint {:?} of {:?}", e.name, o.name);
            outln!("uri-extension: {}", e.uri_extension);
            outln!("enrollment-url: {}", ra.enrollment_url(&e));
        }
        EndpointCmd::Edit {
            name,
            org,
            new_name,
            auth,
            help_link_text,
            help_link_target,
            help_text,
            eula_text,
        } => {
            let e = endpoint_named(ra, caller, org.as_deref(), name).await?;
            let e = ra
                .edit_endpoint(
                    caller,
                    e.id,
                    None,
                    EndpointChanges {
                        name: new_name.clone(),
                        auth_types: auth.as_deref().map(auth_types).transpose()?,
                        help_link_text: help_link_text.clone(),
                        help_link_target: help_link_target.clone(),
                        help_text: help_text.clone(),
                        eula_text: eula_text.clone(),
                        uri_extension: None,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("endpoint {:?} changed", e.name);
        }
        EndpointCmd::RegenerateUri { name, org } => {
            let e = endpoint_named(ra, caller, org.as_deref(), name).await?;
            let e = ra
                .regenerate_uri_extension(caller, e.id)
                .await
                .map_err(refused)?;
            outln!("endpoint {:?} has a new URI extension", e.name);
            outln!("uri-extension: {}", e.uri_extension);
            outln!("enrollment-url: {}", ra.enrollment_url(&e));
        }
        EndpointCmd::Remove { name, org } => {
            let e = endpoint_named(ra, caller, org.as_deref(), name).await?;
            ra.remove_endpoint(caller, e.id).await.map_err(refused)?;
            outln!("endpoint {:?} removed", e.name);
        }
        EndpointCmd::List { org } => {
            let org = organisation_id(ra, caller, org.as_deref()).await?;
            outln!(
                "{:<24} {:<24} {:<24} AUTH",
                "ORGANISATION",
                "NAME",
                "URI EXTENSION"
            );
            for e in ra.endpoints(caller, org).await.map_err(refused)? {
                let auth: Vec<&str> = e.auth_types.iter().map(|a| a.as_str()).collect();
                outln!(
                    "{:<24} {:<24} {:<24} {}",
                    ra.organisation_label(e.organisation_id).await,
                    e.name,
                    e.uri_extension,
                    auth.join(",")
                );
            }
        }
    }
    Ok(())
}

async fn profile_ids(ra: &Ra, caller: &Caller, names: &[String]) -> Result<Vec<Id>, CliError> {
    let mut ids = Vec::new();
    for p in names {
        ids.push(
            ra.profile_named(caller, p)
                .await
                .map_err(|e| refused(e.at("profiles")))?
                .id,
        );
    }
    Ok(ids)
}

async fn account_named(
    ra: &Ra,
    caller: &Caller,
    org: Option<&str>,
    name: &str,
) -> Result<Account, CliError> {
    let org = organisation_id(ra, caller, org).await?;
    ra.account_named(caller, org, name).await.map_err(refused)
}

fn csr_method(s: &str) -> Result<CsrMethod, CliError> {
    parse_one(s, "--csr-method", &one_of(CsrMethod::ALL), CsrMethod::parse)
}

fn authorization(s: &str) -> Result<Authorization, CliError> {
    parse_one(
        s,
        "--authorization",
        &one_of(Authorization::ALL),
        Authorization::parse,
    )
}

fn p12_encryption(s: &str) -> Result<Pkcs12Encryption, CliError> {
    parse_one(
        s,
        "--p12-encryption",
        &one_of(Pkcs12Encryption::ALL),
        Pkcs12Encryption::parse,
    )
}

pub(super) async fn account(ra: &Ra, caller: &Caller, c: &AccountCmd) -> Result<(), CliError> {
    match c {
        AccountCmd::Add {
            name,
            org,
            endpoint,
            dept,
            profiles,
            csr_method: csr,
            allow_empty_p12_password,
            p12_encryption: enc,
            authorization: authz,
            access_code,
            label,
            default,
            bind_device_names,
        } => {
            let o = ra.organisation_named(caller, org).await.map_err(refused)?;
            let e = ra
                .endpoint_named(caller, Some(o.id), endpoint)
                .await
                .map_err(|e| refused(e.at("endpoint")))?;
            let department_id = match dept {
                Some(d) => Some(
                    ra.department_named(caller, o.id, d)
                        .await
                        .map_err(|e| refused(e.at("department")))?
                        .id,
                ),
                None => None,
            };
            let saved = ra
                .add_account(
                    caller,
                    AccountRequest {
                        endpoint_id: e.id,
                        department_id,
                        name: name.clone(),
                        profile_ids: profile_ids(ra, caller, profiles).await?,
                        csr_method: csr_method(csr)?,
                        allow_empty_pkcs12_password: *allow_empty_p12_password,
                        authorization: authorization(authz)?,
                        access_code: access_code.clone().map(Secret::new),
                        est_label: label.clone(),
                        is_default: *default,
                        pkcs12_encryption: p12_encryption(enc)?,
                        bind_device_names: *bind_device_names,
                    },
                )
                .await
                .map_err(refused)?;
            let a = &saved.account;
            outln!(
                "created account {:?} on endpoint {:?} label {}",
                a.name,
                e.name,
                a.est_label.as_deref().unwrap_or("-")
            );
            if let Some(code) = &saved.access_code {
                outln!("access-code: {}", code.expose());
            }
        }
        AccountCmd::Edit {
            name,
            org,
            new_name,
            dept,
            no_dept,
            profiles,
            csr_method: csr,
            allow_empty_p12_password,
            no_allow_empty_p12_password,
            p12_encryption: enc,
            authorization: authz,
            access_code,
            label,
            no_label,
            default,
            no_default,
            bind_device_names,
            no_bind_device_names,
        } => {
            let before = account_named(ra, caller, org.as_deref(), name).await?;
            let department_id = match (dept, no_dept) {
                (Some(d), _) => Some(Some(
                    ra.department_named(caller, before.organisation_id, d)
                        .await
                        .map_err(|e| refused(e.at("department")))?
                        .id,
                )),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let changes = AccountChanges {
                name: new_name.clone(),
                department_id,
                profile_ids: if profiles.is_empty() {
                    None
                } else {
                    Some(profile_ids(ra, caller, profiles).await?)
                },
                csr_method: csr.as_deref().map(csr_method).transpose()?,
                allow_empty_pkcs12_password: switch(
                    *allow_empty_p12_password,
                    *no_allow_empty_p12_password,
                ),
                authorization: authz.as_deref().map(authorization).transpose()?,
                access_code: access_code.clone().map(Secret::new),
                est_label: match (label, no_label) {
                    (Some(l), _) => Some(Some(l.clone())),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                is_default: switch(*default, *no_default),
                pkcs12_encryption: enc.as_deref().map(p12_encryption).transpose()?,
                bind_device_names: switch(*bind_device_names, *no_bind_device_names),
            };
            let saved = ra
                .edit_account(caller, before.id, None, changes)
                .await
                .map_err(refused)?;
            outln!("account {:?} changed", saved.account.name);
            if let Some(code) = &saved.access_code {
                outln!("access-code: {}", code.expose());
            }
        }
        AccountCmd::RotateAccessCode { name, org } => {
            let a = account_named(ra, caller, org.as_deref(), name).await?;
            let saved = ra.rotate_access_code(caller, a.id).await.map_err(refused)?;
            outln!("account {:?} has a new access code", saved.account.name);
            if let Some(code) = &saved.access_code {
                outln!("access-code: {}", code.expose());
            }
        }
        AccountCmd::Remove { name, org } => {
            let a = account_named(ra, caller, org.as_deref(), name).await?;
            ra.remove_account(caller, a.id).await.map_err(refused)?;
            outln!("account {:?} removed", a.name);
        }
        AccountCmd::List { org } => list_accounts(ra, caller, org.as_deref()).await?,
    }
    Ok(())
}

async fn list_accounts(ra: &Ra, caller: &Caller, org: Option<&str>) -> Result<(), CliError> {
    let org = organisation_id(ra, caller, org).await?;
    let endpoints: HashMap<Id, String> = ra
        .endpoints(caller, org)
        .await
        .map_err(refused)?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    let profiles: HashMap<Id, String> = ra
        .profiles(caller)
        .await
        .map_err(refused)?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    outln!(
        "{:<20} {:<16} {:<24} {:<24} {:<16} {:<12} {:<7} {:<9} PROFILES",
        "NAME",
        "LABEL",
        "ORGANISATION",
        "ENDPOINT",
        "DEPARTMENT",
        "AUTHZ",
        "CSR",
        "EMPTY-P12"
    );
    for a in ra.accounts(caller, org, None).await.map_err(refused)? {
        let label = match (&a.est_label, a.is_default) {
            (Some(l), true) => format!("{l} (default)"),
            (Some(l), false) => l.clone(),
            (None, true) => "(default)".into(),
            (None, false) => "-".into(),
        };
        let dept = match a.department_id {
            Some(d) => ra
                .department_in_sight(caller, d)
                .await
                .map(|d| d.name)
                .unwrap_or_else(|_| format!("#{d}")),
            None => "-".into(),
        };
        let names: Vec<String> = a
            .profile_ids
            .iter()
            .map(|p| profiles.get(p).cloned().unwrap_or_else(|| format!("#{p}")))
            .collect();
        outln!(
            "{:<20} {:<16} {:<24} {:<24} {:<16} {:<12} {:<7} {:<9} {}",
            a.name,
            label,
            ra.organisation_label(a.organisation_id).await,
            endpoints
                .get(&a.endpoint_id)
                .cloned()
                .unwrap_or_else(|| format!("#{}", a.endpoint_id)),
            dept,
            a.authorization,
            a.csr_method,
            if a.allow_empty_pkcs12_password {
                "allowed"
            } else {
                "-"
            },
            names.join(",")
        );
    }
    Ok(())
}
