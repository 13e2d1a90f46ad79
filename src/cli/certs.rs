use super::*;

#[derive(Debug, Subcommand)]
pub enum OrderCmd {
    /// List orders: id, status, account, profile, requester, decision
    List {
        /// Only orders waiting for approval
        #[arg(long)]
        pending: bool,
    },
    /// Approve an order waiting for approval (a client CSR is signed at once)
    Approve {
        id: Id,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject an order waiting for approval; the requester is told the reason
    Reject {
        id: Id,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// List issued certificates: serial, subject, validity, status
    List,
    /// Revoke a certificate by serial, or every valid certificate of a person or an account
    Revoke {
        /// Serial number (hex)
        serial: Option<String>,
        /// Revoke every valid certificate of this person (email)
        #[arg(long, conflicts_with_all = ["serial", "account"])]
        person: Option<String>,
        /// Revoke every valid certificate issued on this account (EST label or name)
        #[arg(long, conflicts_with_all = ["serial", "person"])]
        account: Option<String>,
        /// unspecified, keyCompromise, affiliationChanged, superseded,
        /// cessationOfOperation, privilegeWithdrawn (certificateHold is refused: certificates
        /// are revoked, never suspended)
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Issue a certificate with a server-generated key and write it as a PKCS#12 file
    Issue {
        /// EST label of the account to issue on
        #[arg(long)]
        account: String,
        /// The person's email (person profiles) or the device's DNS name (device profiles)
        #[arg(long)]
        subject: String,
        /// Key type (default: the profile's default)
        #[arg(long)]
        key_type: Option<String>,
        /// Where to write the PKCS#12 file (must not exist; written with mode 0600)
        #[arg(long)]
        p12: PathBuf,
        /// Read the PKCS#12 password from this file's first line instead of prompting twice
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// modern or legacy (default: the account's)
        #[arg(long)]
        p12_encryption: Option<String>,
    },
}

pub(super) async fn order(ra: &crate::ra::Ra, c: &OrderCmd) -> Result<(), CliError> {
    match c {
        OrderCmd::List { pending } => {
            outln!(
                "{:<6} {:<17} {:<20} {:<16} {:<16} {:<30} DECISION",
                "ID",
                "STATUS",
                "CREATED",
                "ACCOUNT",
                "PROFILE",
                "REQUESTER"
            );
            for v in ra.orders(*pending).await.map_err(err)? {
                let decision = match &v.order.decision {
                    Some(d) => format!(
                        "{} at {}{}",
                        d.by,
                        fmt_time(d.at),
                        d.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    None => "-".into(),
                };
                outln!(
                    "{:<6} {:<17} {:<20} {:<16} {:<16} {:<30} {}{}",
                    v.order.id,
                    v.order.status,
                    fmt_time(v.order.created_at),
                    v.account,
                    v.profile,
                    v.order.requester,
                    decision,
                    v.serial.map(|s| format!(" serial {s}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        OrderCmd::Approve { id, reason } => {
            let o = ra
                .approve(*id, cli_actor(), reason.clone())
                .await
                .map_err(err)?;
            outln!("order {} approved: now {}", o.id, o.status);
            Ok(())
        }
        OrderCmd::Reject { id, reason } => {
            let o = ra
                .reject(*id, cli_actor(), reason.clone())
                .await
                .map_err(err)?;
            outln!("order {} rejected", o.id);
            Ok(())
        }
    }
}

pub(super) async fn revoke(ra: &crate::ra::Ra, c: &CertCmd) -> Result<(), CliError> {
    let CertCmd::Revoke {
        serial,
        person,
        account,
        reason,
    } = c
    else {
        return Err(CliError("not a revoke command".into()));
    };
    let reason = crate::domain::RevocationReason::parse(reason).ok_or_else(|| {
        CliError(format!(
            "unknown reason {reason:?}: one of {}",
            crate::domain::RevocationReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let serials = match (serial, person, account) {
        (Some(s), None, None) => vec![
            ra.revoke_serial(s, reason, cli_actor())
                .await
                .map_err(err)?
                .serial,
        ],
        (None, Some(p), None) => ra
            .revoke_person(p, reason, cli_actor())
            .await
            .map_err(err)?,
        (None, None, Some(a)) => ra
            .revoke_account(a, reason, cli_actor())
            .await
            .map_err(err)?,
        _ => {
            return Err(CliError(
                "name one certificate SERIAL, or --person EMAIL, or --account LABEL".into(),
            ))
        }
    };
    for s in &serials {
        outln!("revoked {s} ({reason})");
    }
    if serials.is_empty() {
        outln!("no valid certificate to revoke");
    }
    Ok(())
}

/// `cert issue`: checks everything that can be refused (account, key type, password,
/// output file) before a key is generated, then writes the PKCS#12 file with mode 0600.
pub(super) async fn issue_p12(
    ra: &crate::ra::Ra,
    label: &str,
    subject: &str,
    key_type: Option<&str>,
    out: &std::path::Path,
    password_file: Option<&std::path::Path>,
    encryption: Option<&str>,
) -> Result<(), CliError> {
    let account = ra.account_for_label(Some(label)).await.map_err(err)?;
    let key_type = match key_type {
        Some(k) => {
            Some(KeyType::parse(k).ok_or_else(|| CliError(format!("unknown key type {k:?}")))?)
        }
        None => None,
    };
    let encryption = match encryption {
        Some(e) => Pkcs12Encryption::parse(e).ok_or_else(|| {
            CliError(format!(
                "--p12-encryption must be modern or legacy, not {e:?}"
            ))
        })?,
        None => account.pkcs12_encryption,
    };
    if out.exists() {
        return Err(CliError(format!(
            "{} exists; not overwriting it",
            out.display()
        )));
    }
    let password = read_p12_password(password_file)?;
    ra.check_pkcs12_password(&account, password.expose())
        .map_err(err)?;
    let issued = ra
        .issue_with_server_key_as_admin(account, subject, key_type, cli_actor())
        .await
        .map_err(err)?;
    let file = ra
        .pkcs12(&issued, &password, encryption)
        .await
        .map_err(err)?;
    crate::ca::dev::write_new(out, &file, 0o600).map_err(err)?;
    outln!(
        "issued certificate {} for {}; PKCS#12 ({}) written to {}",
        issued.issued.serial,
        issued.friendly_name,
        encryption,
        out.display()
    );
    Ok(())
}

/// The PKCS#12 password: the first line of a file, or typed twice at a prompt.
pub(super) fn read_p12_password(file: Option<&std::path::Path>) -> Result<Secret, CliError> {
    if let Some(f) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(f).map_err(|e| CliError(format!("{}: {e}", f.display())))?,
        );
        return Ok(Secret::new(text.lines().next().unwrap_or("")));
    }
    let first = prompt("PKCS#12 password: ")?;
    let second = prompt("Repeat the PKCS#12 password: ")?;
    if first.expose() != second.expose() {
        return Err(CliError(
            "the two passwords differ; nothing was issued".into(),
        ));
    }
    Ok(first)
}

impl Admin {
    pub(super) async fn certs(&self) -> Result<(), CliError> {
        outln!(
            "{:<34} {:<20} {:<20} {:<8} SUBJECT",
            "SERIAL",
            "NOT BEFORE",
            "NOT AFTER",
            "STATUS"
        );
        for c in self.store.certificates().await.map_err(err)? {
            let revoked = c
                .revocation
                .as_ref()
                .map(|r| format!("  [revoked {} ({}) by {}]", fmt_time(r.at), r.reason, r.by))
                .unwrap_or_default();
            outln!(
                "{:<34} {:<20} {:<20} {:<8} {}{}",
                c.serial,
                fmt_time(c.not_before),
                fmt_time(c.not_after),
                c.status,
                c.subject,
                revoked
            );
        }
        Ok(())
    }
}
