//! Certificates (list, revoke, issue into a PKCS#12 file) and orders (list, approve,
//! reject), within the RA's verbs and its scope.

use super::*;
use crate::domain::{KeyType, Pkcs12Encryption, RevocationReason};
use crate::ra::admin::{CertificateDetails, CertificateQuery, OrderDetails, OrderQuery};

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

pub(super) async fn order(ra: &Ra, caller: &Caller, c: &OrderCmd) -> Result<(), CliError> {
    match c {
        OrderCmd::List { pending } => {
            let orders: Vec<OrderDetails> = all_pages(
                |after_id| async move {
                    ra.search_orders(
                        caller,
                        &OrderQuery {
                            pending: *pending,
                            after_id,
                            limit: PAGE,
                            ..Default::default()
                        },
                    )
                    .await
                    .map(one_page)
                },
                |o| o.order.id,
            )
            .await?;
            outln!(
                "{:<6} {:<17} {:<20} {:<16} {:<16} {:<30} DECISION",
                "ID",
                "STATUS",
                "CREATED",
                "ACCOUNT",
                "PROFILE",
                "REQUESTER"
            );
            for v in orders {
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
                let serial = match v.certificate_id {
                    Some(id) => ra
                        .show_certificate(caller, id)
                        .await
                        .map(|c| format!(" serial {}", c.certificate.serial))
                        .unwrap_or_default(),
                    None => String::new(),
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
                    serial
                );
            }
        }
        OrderCmd::Approve { id, reason } => {
            let o = ra
                .approve_order(caller, *id, reason.clone())
                .await
                .map_err(refused)?;
            outln!("order {} approved: now {}", o.order.id, o.order.status);
        }
        OrderCmd::Reject { id, reason } => {
            let o = ra
                .reject_order(caller, *id, reason.as_deref().unwrap_or(""))
                .await
                .map_err(refused)?;
            outln!("order {} rejected", o.order.id);
        }
    }
    Ok(())
}

pub(super) async fn cert(ra: &Ra, caller: &Caller, c: &CertCmd) -> Result<(), CliError> {
    match c {
        CertCmd::List => list(ra, caller).await,
        CertCmd::Revoke {
            serial,
            person,
            account,
            reason,
        } => revoke(ra, caller, serial, person, account, reason).await,
        CertCmd::Issue {
            account,
            subject,
            key_type,
            p12,
            password_file,
            p12_encryption,
        } => {
            issue_p12(
                ra,
                caller,
                account,
                subject,
                key_type.as_deref(),
                p12,
                password_file.as_deref(),
                p12_encryption.as_deref(),
            )
            .await
        }
    }
}

async fn list(ra: &Ra, caller: &Caller) -> Result<(), CliError> {
    let certs: Vec<CertificateDetails> = all_pages(
        |after_id| async move {
            ra.search_certificates(
                caller,
                &CertificateQuery {
                    after_id,
                    limit: PAGE,
                    ..Default::default()
                },
            )
            .await
            .map(one_page)
        },
        |c| c.certificate.id,
    )
    .await?;
    outln!(
        "{:<34} {:<20} {:<20} {:<8} {:<16} SUBJECT",
        "SERIAL",
        "NOT BEFORE",
        "NOT AFTER",
        "STATUS",
        "ACCOUNT"
    );
    for d in certs {
        let c = &d.certificate;
        let revoked = c
            .revocation
            .as_ref()
            .map(|r| format!("  [revoked {} ({}) by {}]", fmt_time(r.at), r.reason, r.by))
            .unwrap_or_default();
        outln!(
            "{:<34} {:<20} {:<20} {:<8} {:<16} {}{}",
            c.serial,
            fmt_time(c.not_before),
            fmt_time(c.not_after),
            c.status,
            d.account,
            c.subject,
            revoked
        );
    }
    Ok(())
}

async fn revoke(
    ra: &Ra,
    caller: &Caller,
    serial: &Option<String>,
    person: &Option<String>,
    account: &Option<String>,
    reason: &str,
) -> Result<(), CliError> {
    let reason = RevocationReason::parse(reason).ok_or_else(|| {
        CliError(format!(
            "--reason: {reason:?} is not one of {}",
            RevocationReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let serials = match (serial, person, account) {
        (Some(s), None, None) => {
            let found = ra
                .search_certificates(
                    caller,
                    &CertificateQuery {
                        serial: Some(s.clone()),
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(refused)?;
            let c = found
                .first()
                .ok_or_else(|| CliError(format!("no certificate with serial {s}")))?;
            vec![
                ra.revoke_certificate(caller, c.certificate.id, reason)
                    .await
                    .map_err(refused)?
                    .certificate
                    .serial,
            ]
        }
        (None, Some(p), None) => {
            // Within the operator's reach first: the bulk verb itself takes an actor.
            let p = ra.person_by_email(caller, p).await.map_err(refused)?;
            ra.revoke_person(p.email.as_str(), reason, caller.actor())
                .await
                .map_err(refused)?
        }
        (None, None, Some(a)) => ra
            .revoke_account(a, reason, caller.actor())
            .await
            .map_err(refused)?,
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
#[allow(clippy::too_many_arguments)]
async fn issue_p12(
    ra: &Ra,
    caller: &Caller,
    label: &str,
    subject: &str,
    key_type: Option<&str>,
    out: &std::path::Path,
    password_file: Option<&std::path::Path>,
    encryption: Option<&str>,
) -> Result<(), CliError> {
    let account = ra.account_for_label(Some(label)).await.map_err(refused)?;
    let key_type = match key_type {
        Some(k) => Some(
            KeyType::parse(k)
                .ok_or_else(|| CliError(format!("--key-type: unknown key type {k:?}")))?,
        ),
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
    let password = read_twice(
        password_file,
        "PKCS#12 password: ",
        "Repeat the PKCS#12 password: ",
        "nothing was issued",
    )?;
    ra.check_pkcs12_password(&account, password.expose())
        .map_err(refused)?;
    let issued = ra
        .issue_with_server_key_as_admin(account, subject, key_type, caller.actor())
        .await
        .map_err(refused)?;
    let file = ra
        .pkcs12(&issued, &password, encryption)
        .await
        .map_err(refused)?;
    crate::app::write_private_file(out, &file).map_err(err)?;
    outln!(
        "issued certificate {} for {}; PKCS#12 ({}) written to {}",
        issued.issued.serial,
        issued.friendly_name,
        encryption,
        out.display()
    );
    Ok(())
}
