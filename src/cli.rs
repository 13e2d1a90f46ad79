//! The command line: `serve` and the administration commands, which act on the
//! configured database directly (no server needs to run).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::domain::{
    generate_secret, hash_secret, Actor, AuthType, Authorization, Clock, CsrMethod, EmailAddress,
    Id, KeyType, Pkcs12Encryption, Role, Secret, SubjectSource, SystemClock,
};
use crate::ra::admin::{AdminChanges, AdminRequest, Caller};
use crate::ra::Ra;
use crate::store::{AuditEntry, NewAccount, NewEndpoint, NewPerson, NewProfile, Store};

pub use crate::domain::SECRET_LEN;

/// `println!` that ends the process quietly when standard output is closed, as
/// `estgate cert list | head -1` closes it: the reader has what it wanted.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Debug, Parser)]
#[command(
    name = "estgate",
    version,
    about = "Certificate enrollment server: EST, self-enrollment, administration"
)]
pub struct Cli {
    /// TOML configuration file; every key can also be set as ESTGATE_<KEY>
    #[arg(long, global = true, env = "ESTGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database, generated CA and keys); overrides the config's data_dir
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Who is at the command line: the audit trail records administration commands as
    /// `cli:<operator>` (required for commands that change something)
    #[arg(long, global = true, env = "ESTGATE_OPERATOR")]
    pub operator: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTPS, EST under /.well-known/est/)
    Serve(ServeArgs),
    /// Organisations and their verified domains
    #[command(subcommand)]
    Org(OrgCmd),
    /// Departments of an organisation
    #[command(subcommand, name = "dept")]
    Department(DeptCmd),
    /// Persons, with their secret IDs
    #[command(subcommand)]
    Person(PersonCmd),
    /// Certificate profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Enrollment endpoints
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Enrollment accounts (EST labels)
    #[command(subcommand)]
    Account(AccountCmd),
    /// Issued certificates
    #[command(subcommand)]
    Cert(CertCmd),
    /// Certificate orders: list, approve, reject
    #[command(subcommand)]
    Order(OrderCmd),
    /// Administrators (MRAO, RAO, DRAO) and their API keys
    #[command(subcommand)]
    Admin(AdminCmd),
    /// The audit trail: verify its hash chain, export it
    #[command(subcommand)]
    Audit(AuditCmd),
}

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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Seed example data (idempotent) and print credentials and commands to try
    #[arg(long)]
    pub demo: bool,
    /// Listen address, e.g. 127.0.0.1:8443 (overrides the config's listen)
    #[arg(long)]
    pub listen: Option<String>,
}

/// The plain-HTTP listener `serve --demo` opens when none is configured.
pub const DEMO_HTTP_LISTEN: &str = "127.0.0.1:8080";

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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

/// `http_listen` is a default that the file and the environment override (`serve --demo`
/// turns the plain-HTTP listener on unless it is configured).
pub fn load_config(
    cli: &Cli,
    listen: Option<String>,
    http_listen: Option<String>,
) -> Result<Config, CliError> {
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
        http_listen,
    };
    Config::load(cli.config.as_deref(), |k| std::env::var(k).ok(), &overrides).map_err(err)
}

/// Runs an administration command against the configured database.
pub async fn admin(cli: &Cli, config: &Config) -> Result<(), CliError> {
    crate::app::prepare_files(config, SystemClock.now()).map_err(err)?;
    let store = crate::app::open_store(config).await.map_err(err)?;
    match &cli.command {
        Command::Admin(c) => {
            let caller = match c {
                AdminCmd::List => reader(cli),
                _ => operator(cli)?,
            };
            return admins(&ra_for(config, store)?, &caller, c).await;
        }
        Command::Audit(c) => return audit(&ra_for(config, store)?, &reader(cli), c).await,
        Command::Order(c) => return order(&ra_for(config, store)?, c).await,
        Command::Cert(c @ CertCmd::Revoke { .. }) => {
            return revoke(&ra_for(config, store)?, c).await
        }
        _ => {}
    }
    if let Command::Cert(CertCmd::Issue {
        account,
        subject,
        key_type,
        p12,
        password_file,
        p12_encryption,
    }) = &cli.command
    {
        let ra = ra_for(config, store)?;
        return issue_p12(
            &ra,
            account,
            subject,
            key_type.as_deref(),
            p12,
            password_file.as_deref(),
            p12_encryption.as_deref(),
        )
        .await;
    }
    let admin = Admin {
        store,
        clock: Arc::new(SystemClock),
        actor: cli_actor(),
    };
    admin.run(&cli.command).await
}

/// The RA, for the commands that sign or decide (the same verbs the server calls). It
/// publishes nothing itself: the running server sees a revocation in the database and
/// publishes a new CRL and OCSP response within seconds.
fn ra_for(config: &Config, store: Store) -> Result<crate::ra::Ra, CliError> {
    let ca = crate::app::load_ca(config).map_err(err)?;
    Ok(
        crate::ra::Ra::new(store, std::sync::Arc::new(ca), Arc::new(SystemClock))
            .with_approvers(config.approver_emails.clone())
            .with_seal_key(crate::app::load_seal_key(config).map_err(err)?),
    )
}

async fn order(ra: &crate::ra::Ra, c: &OrderCmd) -> Result<(), CliError> {
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

async fn revoke(ra: &crate::ra::Ra, c: &CertCmd) -> Result<(), CliError> {
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
async fn issue_p12(
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
fn read_p12_password(file: Option<&std::path::Path>) -> Result<Secret, CliError> {
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

/// Reads one line from standard input, with echo off when it is a terminal.
fn prompt(label: &str) -> Result<Secret, CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        stty("-echo");
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| CliError(format!("reading the password: {e}")))?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n'])))
}

pub struct Admin {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub actor: Actor,
}

fn parse_list<T>(
    items: &[String],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, CliError> {
    items
        .iter()
        .map(|s| parse(s.trim()).ok_or_else(|| CliError(format!("unknown {what} {s:?}"))))
        .collect()
}

/// An organisation's domain: a DNS name with at least two labels.
fn check_domain(d: &str) -> Result<(), CliError> {
    if crate::domain::is_dns_name(d) && d.contains('.') {
        Ok(())
    } else {
        Err(CliError(format!("{d:?} is not a domain name")))
    }
}

fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

impl Admin {
    async fn audit(&self, action: &str, object: String, detail: String) -> Result<(), CliError> {
        let entry = AuditEntry {
            actor: self.actor.clone(),
            action: action.into(),
            object,
            detail,
            ..Default::default()
        };
        self.store
            .audit(&entry, self.clock.now())
            .await
            .map_err(err)
    }

    async fn department_id(&self, org: Id, name: Option<&str>) -> Result<Option<Id>, CliError> {
        match name {
            Some(d) => Ok(Some(
                self.store.department_by_name(org, d).await.map_err(err)?.id,
            )),
            None => Ok(None),
        }
    }

    pub async fn run(&self, cmd: &Command) -> Result<(), CliError> {
        match cmd {
            Command::Serve(_) => Err(CliError("serve is not an admin command".into())),
            Command::Org(c) => self.org(c).await,
            Command::Department(c) => self.dept(c).await,
            Command::Person(c) => self.person(c).await,
            Command::Profile(c) => self.profile(c).await,
            Command::Endpoint(c) => self.endpoint(c).await,
            Command::Account(c) => self.account(c).await,
            Command::Cert(CertCmd::List) => self.certs().await,
            Command::Cert(CertCmd::Issue { .. } | CertCmd::Revoke { .. })
            | Command::Order(_)
            | Command::Admin(_)
            | Command::Audit(_) => Err(CliError("this command runs through the RA".into())),
        }
    }

    async fn org(&self, c: &OrgCmd) -> Result<(), CliError> {
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

    async fn dept(&self, c: &DeptCmd) -> Result<(), CliError> {
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

    async fn person(&self, c: &PersonCmd) -> Result<(), CliError> {
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

    async fn profile(&self, c: &ProfileCmd) -> Result<(), CliError> {
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

    async fn endpoint(&self, c: &EndpointCmd) -> Result<(), CliError> {
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

    async fn account(&self, c: &AccountCmd) -> Result<(), CliError> {
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

    async fn certs(&self) -> Result<(), CliError> {
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

/// The local operator, as the audit trail records them.
fn cli_actor() -> Actor {
    Actor::operator(&std::env::var("ESTGATE_OPERATOR").unwrap_or_else(|_| "operator".into()))
}

/// The operator at the command line, named by `--operator` or `ESTGATE_OPERATOR`: the
/// audit trail must say who, and `$USER` says nothing to an auditor.
fn operator(cli: &Cli) -> Result<Caller, CliError> {
    match cli.operator.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => Ok(Caller::operator(name)),
        _ => Err(CliError(
            "name yourself with --operator NAME (or ESTGATE_OPERATOR); the audit trail records it"
                .into(),
        )),
    }
}

/// For commands that only read: the named operator, or an unnamed local reader (reads are
/// not audited).
fn reader(cli: &Cli) -> Caller {
    operator(cli).unwrap_or_else(|_| Caller::operator("reader"))
}

async fn find_admin(
    ra: &Ra,
    caller: &Caller,
    email: &str,
) -> Result<crate::domain::Admin, CliError> {
    let wanted = email.trim().to_ascii_lowercase();
    ra.admins(caller)
        .await
        .map_err(err)?
        .into_iter()
        .find(|a| a.email.as_str() == wanted)
        .ok_or_else(|| CliError(format!("no administrator {email}")))
}

async fn admins(ra: &Ra, caller: &Caller, c: &AdminCmd) -> Result<(), CliError> {
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
                organisation_ids.push(ra.organisation_named(caller, o).await.map_err(err)?.id);
            }
            let mut department_ids = Vec::new();
            for d in depts {
                let (org, dept) = d.split_once('/').ok_or_else(|| {
                    CliError(format!("--dept {d:?}: write ORGANISATION/DEPARTMENT"))
                })?;
                let org = ra.organisation_named(caller, org).await.map_err(err)?;
                department_ids.push(
                    ra.department_named(caller, org.id, dept)
                        .await
                        .map_err(err)?
                        .id,
                );
            }
            let password = if *no_password {
                None
            } else {
                Some(read_new_password(password_file.as_deref())?)
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
                .map_err(err)?;
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
            for a in ra.admins(caller).await.map_err(err)? {
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
            .map_err(err)?;
            outln!(
                "administrator {} {}",
                a.email,
                if disabled { "disabled" } else { "enabled" }
            );
        }
        AdminCmd::Remove { email } => {
            let a = find_admin(ra, caller, email).await?;
            ra.delete_admin(caller, a.id).await.map_err(err)?;
            outln!("administrator {} removed", a.email);
        }
        AdminCmd::ApiKey { email, name, days } => {
            let a = find_admin(ra, caller, email).await?;
            let k = ra
                .create_api_key(caller, Some(a.id), name, *days)
                .await
                .map_err(err)?;
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
async fn audit(ra: &Ra, reader: &Caller, c: &AuditCmd) -> Result<(), CliError> {
    match c {
        AuditCmd::Verify => {
            let r = ra.verify_audit(reader).await.map_err(err)?;
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
                Some(name) => Some(ra.organisation_named(reader, name).await.map_err(err)?.id),
            };
            for line in ra.export_audit(reader, since, org).await.map_err(err)? {
                outln!("{line}");
            }
            Ok(())
        }
    }
}

/// RFC 3339 or Unix seconds.
fn parse_time(t: &str) -> Result<i64, CliError> {
    if let Ok(n) = t.trim().parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| {
            CliError(format!(
                "{t:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor Unix seconds"
            ))
        })
}

/// A new administrator password: the first line of a file, or typed twice.
fn read_new_password(file: Option<&std::path::Path>) -> Result<Secret, CliError> {
    if let Some(f) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(f).map_err(|e| CliError(format!("{}: {e}", f.display())))?,
        );
        return Ok(Secret::new(text.lines().next().unwrap_or("")));
    }
    let first = prompt("Password: ")?;
    let second = prompt("Repeat the password: ")?;
    if first.expose() != second.expose() {
        return Err(CliError(
            "the two passwords differ; nothing was changed".into(),
        ));
    }
    Ok(first)
}
