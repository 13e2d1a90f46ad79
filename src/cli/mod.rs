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

mod admins;
mod certs;
mod people;
mod setup;

pub use admins::{AdminCmd, AuditCmd};
pub use certs::{CertCmd, OrderCmd};
pub use people::{DeptCmd, OrgCmd, PersonCmd};
pub use setup::{AccountCmd, EndpointCmd, ProfileCmd};

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
            return admins::admins(&ra_for(config, store)?, &caller, c).await;
        }
        Command::Audit(c) => return admins::audit(&ra_for(config, store)?, &reader(cli), c).await,
        Command::Order(c) => return certs::order(&ra_for(config, store)?, c).await,
        Command::Cert(c @ CertCmd::Revoke { .. }) => {
            return certs::revoke(&ra_for(config, store)?, c).await
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
        return certs::issue_p12(
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
