//! Administrators (MRAO, RAO, DRAO) and their API keys; the audit trail.

use super::*;
use crate::domain::Role;
use crate::ra::admin::{AdminChanges, AdminRequest};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain; reports the first removed, altered or reordered event and
    /// exits non-zero when the chain is broken
    Verify,
    /// Write events as JSON lines (every field, with seq, prev_hash and hash)
    Export {
        /// Only events at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z, or Unix seconds)
        #[arg(long)]
        since: Option<String>,
        /// Only events of this organisation (by name)
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Appoint an administrator (the bootstrap MRAO, too); prints its TOTP secret once
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// mrao, rao or drao
        #[arg(long)]
        role: String,
        /// RAO: an organisation it administers, by name (repeatable)
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// DRAO: a department it administers, as ORGANISATION/DEPARTMENT (repeatable)
        #[arg(long = "dept")]
        depts: Vec<String>,
        /// Read the password from this file's first line instead of prompting twice
        #[arg(long, conflicts_with = "no_password")]
        password_file: Option<PathBuf>,
        /// An administrator for automation: API keys only, no sign-in
        #[arg(long)]
        no_password: bool,
    },
    /// List administrators
    List,
    /// Disable an administrator: its sign-in, sessions and API keys stop working
    Disable { email: String },
    /// Enable a disabled administrator again
    Enable { email: String },
    /// Remove an administrator with its sessions and API keys
    Remove { email: String },
    /// Make an API key for an administrator; prints the key once
    ApiKey {
        email: String,
        #[arg(long)]
        name: String,
        /// Days until it expires (1-366)
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

pub(super) async fn find_admin(
    ra: &Ra,
    caller: &Caller,
    email: &str,
) -> Result<crate::domain::Admin, CliError> {
    let wanted = email.trim().to_ascii_lowercase();
    ra.admins(caller)
        .await
        .map_err(refused)?
        .into_iter()
        .find(|a| a.email.as_str() == wanted)
        .ok_or_else(|| CliError(format!("no administrator {email}")))
}

pub(super) async fn admins(ra: &Ra, caller: &Caller, c: &AdminCmd) -> Result<(), CliError> {
    match c {
        AdminCmd::Add {
            email,
            name,
            role,
            orgs,
            depts,
            password_file,
            no_password,
        } => {
            let role = Role::parse(role)
                .ok_or_else(|| CliError(format!("unknown role {role:?}; use mrao, rao or drao")))?;
            let mut organisation_ids = Vec::new();
            for o in orgs {
                organisation_ids.push(ra.organisation_named(caller, o).await.map_err(refused)?.id);
            }
            let mut department_ids = Vec::new();
            for d in depts {
                let (org, dept) = d.split_once('/').ok_or_else(|| {
                    CliError(format!("--dept {d:?}: write ORGANISATION/DEPARTMENT"))
                })?;
                let org = ra.organisation_named(caller, org).await.map_err(refused)?;
                department_ids.push(
                    ra.department_named(caller, org.id, dept)
                        .await
                        .map_err(refused)?
                        .id,
                );
            }
            let password = if *no_password {
                None
            } else {
                Some(read_twice(
                    password_file.as_deref(),
                    "Password: ",
                    "Repeat the password: ",
                    "nothing was changed",
                )?)
            };
            let (admin, totp) = ra
                .add_admin(
                    caller,
                    AdminRequest {
                        name: name.clone(),
                        email: email.clone(),
                        role,
                        organisation_ids,
                        department_ids,
                        password,
                    },
                )
                .await
                .map_err(refused)?;
            outln!("administrator {} ({}) appointed", admin.email, admin.role);
            if let Some(t) = totp {
                outln!(
                    "TOTP secret (shown once; add it to an authenticator app): {}",
                    t.secret.expose()
                );
                outln!("TOTP URI (for a QR code): {}", t.uri.expose());
            }
        }
        AdminCmd::List => {
            outln!(
                "{:<32} {:<24} {:<5} {:<9} SCOPE",
                "EMAIL",
                "NAME",
                "ROLE",
                "STATE"
            );
            for a in ra.admins(caller).await.map_err(refused)? {
                let mut scope = Vec::new();
                for o in &a.organisation_ids {
                    scope.push(ra.organisation_label(*o).await);
                }
                for d in &a.department_ids {
                    scope.push(ra.department_label(*d).await);
                }
                outln!(
                    "{:<32} {:<24} {:<5} {:<9} {}",
                    a.email,
                    a.name,
                    a.role,
                    if a.disabled { "disabled" } else { "enabled" },
                    if scope.is_empty() {
                        "-".into()
                    } else {
                        scope.join(", ")
                    }
                );
            }
        }
        AdminCmd::Disable { email } | AdminCmd::Enable { email } => {
            let a = find_admin(ra, caller, email).await?;
            let disabled = matches!(c, AdminCmd::Disable { .. });
            ra.edit_admin(
                caller,
                a.id,
                None,
                AdminChanges {
                    disabled: Some(disabled),
                    ..Default::default()
                },
            )
            .await
            .map_err(refused)?;
            outln!(
                "administrator {} {}",
                a.email,
                if disabled { "disabled" } else { "enabled" }
            );
        }
        AdminCmd::Remove { email } => {
            let a = find_admin(ra, caller, email).await?;
            ra.delete_admin(caller, a.id).await.map_err(refused)?;
            outln!("administrator {} removed", a.email);
        }
        AdminCmd::ApiKey { email, name, days } => {
            let a = find_admin(ra, caller, email).await?;
            let k = ra
                .create_api_key(caller, Some(a.id), name, *days)
                .await
                .map_err(refused)?;
            outln!(
                "API key {} for {} (expires {}; shown once):",
                k.record.key_id,
                a.email,
                fmt_time(k.record.expires_at)
            );
            outln!("{}", k.token.expose());
        }
    }
    Ok(())
}

/// Reading the trail changes nothing, so it needs no operator name; it acts as the MRAO.
pub(super) async fn audit(ra: &Ra, reader: &Caller, c: &AuditCmd) -> Result<(), CliError> {
    match c {
        AuditCmd::Verify => {
            let r = ra.verify_audit(reader).await.map_err(refused)?;
            match r.first_break {
                None => {
                    outln!(
                        "audit chain intact: {} events, head {}",
                        r.checked,
                        r.head_seq
                    );
                    Ok(())
                }
                Some(b) => Err(CliError(format!(
                    "audit chain BROKEN after checking {} events: {b}",
                    r.checked
                ))),
            }
        }
        AuditCmd::Export { since, org } => {
            let since = match since {
                None => None,
                Some(t) => Some(parse_time(t)?),
            };
            let org = match org {
                None => None,
                Some(name) => Some(
                    ra.organisation_named(reader, name)
                        .await
                        .map_err(refused)?
                        .id,
                ),
            };
            for line in ra.export_audit(reader, since, org).await.map_err(refused)? {
                outln!("{line}");
            }
            Ok(())
        }
    }
}
