//! The command line: `serve` and the administration commands. These act on the configured
//! database (no server needs to run), but only through the RA's administration verbs, the
//! ones the API calls: the RA decides, the command line translates names and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::domain::{Id, Secret};
use crate::error::Error;
use crate::ra::admin::Caller;
use crate::ra::Ra;

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

/// Runs an administration command against the configured database: writes as the named
/// operator (refused without one), reads as any local reader.
pub async fn admin(cli: &Cli, config: &Config) -> Result<(), CliError> {
    let caller = if cli.command.only_reads() {
        reader(cli)
    } else {
        operator(cli)?
    };
    let ra = ra_for(config).await?;
    match &cli.command {
        Command::Serve(_) => Err(CliError("serve is not an admin command".into())),
        Command::Org(c) => people::org(&ra, &caller, c).await,
        Command::Department(c) => people::dept(&ra, &caller, c).await,
        Command::Person(c) => people::person(&ra, &caller, c).await,
        Command::Profile(c) => setup::profile(&ra, &caller, c).await,
        Command::Endpoint(c) => setup::endpoint(&ra, &caller, c).await,
        Command::Account(c) => setup::account(&ra, &caller, c).await,
        Command::Cert(c) => certs::cert(&ra, &caller, c).await,
        Command::Order(c) => certs::order(&ra, &caller, c).await,
        Command::Admin(c) => admins::admins(&ra, &caller, c).await,
        Command::Audit(c) => admins::audit(&ra, &caller, c).await,
    }
}

impl Command {
    /// Commands that change nothing, and so need no operator name.
    fn only_reads(&self) -> bool {
        matches!(
            self,
            Command::Org(OrgCmd::List)
                | Command::Department(DeptCmd::List { .. })
                | Command::Person(PersonCmd::List | PersonCmd::Import { dry_run: true, .. })
                | Command::Profile(ProfileCmd::List)
                | Command::Endpoint(EndpointCmd::List { .. })
                | Command::Account(AccountCmd::List { .. })
                | Command::Cert(CertCmd::List)
                | Command::Order(OrderCmd::List { .. })
                | Command::Admin(AdminCmd::List)
                | Command::Audit(_)
        )
    }
}

/// The RA the server runs, on the same database (DESIGN.md: the CLI calls the same verbs).
/// It publishes nothing itself: the running server sees a revocation in the database and
/// publishes a new CRL and OCSP response within seconds.
async fn ra_for(config: &Config) -> Result<Ra, CliError> {
    crate::app::admin_ra(config).await.map_err(err)
}

/// An RA refusal as the command line says it: the field at fault named by its flag.
fn refused(e: Error) -> CliError {
    match &e.field {
        Some(f) => CliError(format!("{}: {}", flag(f), e.message)),
        None => CliError(e.message),
    }
}

/// The flag (or argument) that carries an RA request field.
fn flag(field: &str) -> String {
    let base = field.split('[').next().unwrap_or(field);
    let f = match base {
        "name" => return "NAME".into(),
        "domains" => "domain",
        "first_name" => "first",
        "middle_name" => "middle",
        "last_name" => "last",
        "department" => "dept",
        "organisation" => "org",
        "terms_years" => "terms",
        "default_term_years" => "default-term",
        "est_label" => "label",
        "auth_types" => "auth",
        "profiles" => "profile",
        "smime" => "smime-type",
        "pkcs12_encryption" => "p12-encryption",
        "allow_empty_pkcs12_password" => "allow-empty-p12-password",
        "organization_identifier" => "identifier",
        "csv" => "file",
        other => return format!("--{}", other.replace('_', "-")),
    };
    format!("--{f}")
}

/// Every page of a cursor-paged RA listing, in order: `page(after)` answers a page and
/// whether more follow, and `id` is the cursor of an item.
async fn all_pages<T, F, Fut>(mut page: F, id: impl Fn(&T) -> Id) -> Result<Vec<T>, CliError>
where
    F: FnMut(Option<Id>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, bool), Error>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (items, more) = page(after).await.map_err(refused)?;
        after = items.last().map(&id);
        out.extend(items);
        if !more || after.is_none() {
            return Ok(out);
        }
    }
}

/// A search's answer of up to `PAGE + 1` items (the RA's way of telling that more follow)
/// as one page and that flag.
fn one_page<T>(mut items: Vec<T>) -> (Vec<T>, bool) {
    let more = items.len() as u64 > PAGE;
    items.truncate(PAGE as usize);
    (items, more)
}

/// Rows fetched per RA call when listing.
const PAGE: u64 = 500;

/// `Some(true)` for `--flag`, `Some(false)` for `--no-flag`, `None` for neither.
fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// Parses each of `items` with `parse` (a domain type's), naming the flag and the allowed
/// values when one is unknown.
fn parse_each<T>(
    items: &[String],
    flag: &str,
    allowed: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, CliError> {
    items
        .iter()
        .map(|s| parse_one(s, flag, allowed, &parse))
        .collect()
}

fn parse_one<T>(
    s: &str,
    flag: &str,
    allowed: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, CliError> {
    parse(s.trim()).ok_or_else(|| CliError(format!("{flag}: {s:?} is not one of {allowed}")))
}

/// `-` for nothing, in listings.
fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
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

fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
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

/// A secret the operator chooses: the first line of a file, or typed twice at a prompt
/// (`unchanged` says what the refusal of two different entries left alone).
fn read_twice(
    file: Option<&std::path::Path>,
    first_prompt: &str,
    second_prompt: &str,
    unchanged: &str,
) -> Result<Secret, CliError> {
    if let Some(f) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(f).map_err(|e| CliError(format!("{}: {e}", f.display())))?,
        );
        return Ok(Secret::new(text.lines().next().unwrap_or("")));
    }
    let first = prompt(first_prompt)?;
    let second = prompt(second_prompt)?;
    if first.expose() != second.expose() {
        return Err(CliError(format!("the two entries differ; {unchanged}")));
    }
    Ok(first)
}
