//! Configuration: one TOML file, every key overridable by `ESTGATE_<KEY>` in the
//! environment, validated into `Config`. An invalid value stops the start and names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::ca::dev::PkiFiles;
use crate::domain::Secret;
use crate::mail::{MailConfig, MailTransport, Mailbox, SmtpCredentials, SmtpSettings, SmtpTls};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The file as written; every field optional so the environment can fill it in.
/// No `Debug`: it holds `smtp_password` in clear.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<String>,
    database_url: Option<String>,
    log_format: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    ca_chain: Option<String>,
    ca_key: Option<String>,
    smtp_host: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    smtp_port: Option<String>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    smtp_ca: Option<String>,
    mail_from: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    email_link_ttl_minutes: Option<String>,
    http_listen: Option<String>,
    http_public_url: Option<String>,
    approver_emails: Option<String>,
    expiry_reminder_days: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    argon2_concurrency: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    argon2_queue: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    failures_per_client: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    failures_per_account: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    read_cache_ms: Option<String>,
    // Connection bounds and proxies (web::limits, web::forwarded).
    #[serde(default, deserialize_with = "text_or_number")]
    max_connections: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    max_connections_per_address: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    first_byte_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    idle_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    header_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    body_grace_secs: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    body_min_bytes_per_sec: Option<String>,
    trusted_proxies: Option<String>,
    trusted_proxy_header: Option<String>,
    metrics_token: Option<String>,
}

/// Numbers may be written as TOML integers or, like every value from the environment, as
/// text; both end up as text for one validation.
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(i64),
    }
    Ok(Some(match TextOrNumber::deserialize(d)? {
        TextOrNumber::Text(t) => t,
        TextOrNumber::Number(n) => n.to_string(),
    }))
}

/// Every key, its environment variable and its meaning; used for help text and docs.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("listen", "ESTGATE_LISTEN", "address:port to listen on (default 127.0.0.1:8443)"),
    ("public_url", "ESTGATE_PUBLIC_URL", "base URL clients use (default https://localhost:<port>)"),
    ("data_dir", "ESTGATE_DATA_DIR", "directory for the SQLite database and generated keys (default ./estgate-data)"),
    ("database_url", "ESTGATE_DATABASE_URL", "sqlite://… or postgres://… (default SQLite in data_dir)"),
    ("log_format", "ESTGATE_LOG_FORMAT", "text or json (default text)"),
    ("tls_cert", "ESTGATE_TLS_CERT", "PEM server certificate chain (default: generated in data_dir)"),
    ("tls_key", "ESTGATE_TLS_KEY", "PEM server private key"),
    ("ca_chain", "ESTGATE_CA_CHAIN", "PEM issuing CA certificate, then its chain up to the root (default: development CA in data_dir)"),
    ("ca_key", "ESTGATE_CA_KEY", "PEM private key of the issuing CA"),
    ("smtp_host", "ESTGATE_SMTP_HOST", "SMTP relay host (default: none, emails are written as .eml files to data_dir/outbox)"),
    ("smtp_port", "ESTGATE_SMTP_PORT", "SMTP relay port (default 587 for starttls, 465 for tls, 25 for none)"),
    ("smtp_tls", "ESTGATE_SMTP_TLS", "starttls (required), tls (implicit) or none (default starttls)"),
    ("smtp_username", "ESTGATE_SMTP_USERNAME", "SMTP user name, if the relay wants one"),
    ("smtp_password", "ESTGATE_SMTP_PASSWORD", "SMTP password (with smtp_username)"),
    ("smtp_ca", "ESTGATE_SMTP_CA", "PEM CA certificates to trust for the relay besides the system's"),
    ("mail_from", "ESTGATE_MAIL_FROM", "From: of emails (default estgate <estgate@localhost>)"),
    ("email_link_ttl_minutes", "ESTGATE_EMAIL_LINK_TTL_MINUTES", "how long an emailed link is valid, 5..1440 (default 60)"),
    ("http_listen", "ESTGATE_HTTP_LISTEN", "address:port of the plain-HTTP listener for the CRL, the CA certificate and OCSP (default: off)"),
    ("http_public_url", "ESTGATE_HTTP_PUBLIC_URL", "http:// base URL of that listener as relying parties reach it; certificates carry {base}/crl, {base}/ocsp, {base}/ca.cer (default http://<http_listen>)"),
    ("approver_emails", "ESTGATE_APPROVER_EMAILS", "comma-separated addresses told that a request waits for approval (default: none)"),
    ("expiry_reminder_days", "ESTGATE_EXPIRY_REMINDER_DAYS", "comma-separated days before notAfter to remind the person (default 30,7,1; empty: none)"),
    ("argon2_concurrency", "ESTGATE_ARGON2_CONCURRENCY", "secret verifications (Argon2) running at once in this process, 1..1024 (default: the number of cores less one, at least 1)"),
    ("argon2_queue", "ESTGATE_ARGON2_QUEUE", "guesses waiting for a verification; beyond them 503 with Retry-After, 0..65536 (default twice argon2_concurrency)"),
    ("failures_per_client", "ESTGATE_FAILURES_PER_CLIENT", "failed authentications per client address (IPv4, IPv6 /64) in 15 minutes across all accounts, endpoints and admin sign-in, then 429 (default 50)"),
    ("read_cache_ms", "ESTGATE_READ_CACHE_MS", "how long the account, profile, organisation and department an enrollment reads are kept, 0..60000 ms; a change made by another process (the CLI, a second server) is in force after at most this long, one made through this server's API at once (default 2000; 0: always read)"),
    ("failures_per_account", "ESTGATE_FAILURES_PER_ACCOUNT", "failed authentications of everybody on one EST account, or at one form's access-code step, in 15 minutes, then 429 for everybody (default 200)"),
    ("max_connections", "ESTGATE_MAX_CONNECTIONS", "HTTPS connections held at once; more are closed on arrival (default 1024)"),
    ("max_connections_per_address", "ESTGATE_MAX_CONNECTIONS_PER_ADDRESS", "HTTPS connections held at once from one TCP peer address; trusted proxies are exempt (default 64)"),
    ("first_byte_timeout_secs", "ESTGATE_FIRST_BYTE_TIMEOUT_SECS", "seconds from the TLS handshake to the first request byte (default 10)"),
    ("idle_timeout_secs", "ESTGATE_IDLE_TIMEOUT_SECS", "seconds a kept-alive connection may wait for its next request, or a write may stall (default 60)"),
    ("header_timeout_secs", "ESTGATE_HEADER_TIMEOUT_SECS", "seconds from a request's first byte to the end of its head (default 10)"),
    ("body_grace_secs", "ESTGATE_BODY_GRACE_SECS", "seconds a request body may take before body_min_bytes_per_sec applies (default 10)"),
    ("body_min_bytes_per_sec", "ESTGATE_BODY_MIN_BYTES_PER_SEC", "slowest average rate of a request body after the grace; slower gets 408 (default 256)"),
    ("trusted_proxies", "ESTGATE_TRUSTED_PROXIES", "comma-separated CIDRs of reverse proxies whose trusted_proxy_header names the client (default: none)"),
    ("trusted_proxy_header", "ESTGATE_TRUSTED_PROXY_HEADER", "x-forwarded-for or forwarded: the one header the trusted proxies write (default x-forwarded-for)"),
    ("metrics_token", "ESTGATE_METRICS_TOKEN", "bearer token Prometheus sends for /metrics, 16..256 visible ASCII characters (default: none, /metrics answers 404)"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub log_format: LogFormat,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_chain: PathBuf,
    pub ca_key: PathBuf,
    /// True when no CA was configured: `serve` makes the development CA in `data_dir`.
    pub dev_ca: bool,
    /// True when no TLS certificate was configured: `serve` issues one for localhost.
    pub dev_tls: bool,
    pub trust_anchor: PathBuf,
    pub mail: MailConfig,
    /// The plain-HTTP listener (CRL, caIssuers, OCSP), when configured.
    pub http_listen: Option<SocketAddr>,
    /// Its public base URL, without a trailing slash.
    pub http_public_url: Option<String>,
    pub approver_emails: Vec<crate::domain::EmailAddress>,
    /// Days before notAfter at which a reminder is mailed, largest first.
    pub expiry_reminder_days: Vec<u32>,
    /// Limits on guessing secrets and on Argon2 work.
    pub guessing: crate::ra::GuessLimits,
    /// How long an account, profile, organisation or department read for enrollment is
    /// kept (ra/cache.rs); zero: not kept.
    pub read_cache: std::time::Duration,
    /// Connection caps and timeouts of the HTTPS listener.
    pub limits: crate::web::limits::Limits,
    /// Reverse proxies believed about the client's address.
    pub trusted_proxies: crate::web::forwarded::TrustedProxies,
    /// The bearer token of `/metrics`; none: `/metrics` is not served.
    pub metrics_token: Option<std::sync::Arc<Secret>>,
}

/// Command-line values; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// Reads the file (if any), applies `ESTGATE_*` variables from `env`, then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.message().to_string(),
                })?
            }
            None => RawConfig::default(),
        };
        let fields: [(&str, &mut Option<String>); 36] = [
            ("ESTGATE_READ_CACHE_MS", &mut raw.read_cache_ms),
            ("ESTGATE_ARGON2_CONCURRENCY", &mut raw.argon2_concurrency),
            ("ESTGATE_ARGON2_QUEUE", &mut raw.argon2_queue),
            ("ESTGATE_FAILURES_PER_CLIENT", &mut raw.failures_per_client),
            (
                "ESTGATE_FAILURES_PER_ACCOUNT",
                &mut raw.failures_per_account,
            ),
            ("ESTGATE_HTTP_LISTEN", &mut raw.http_listen),
            ("ESTGATE_HTTP_PUBLIC_URL", &mut raw.http_public_url),
            ("ESTGATE_APPROVER_EMAILS", &mut raw.approver_emails),
            (
                "ESTGATE_EXPIRY_REMINDER_DAYS",
                &mut raw.expiry_reminder_days,
            ),
            ("ESTGATE_LISTEN", &mut raw.listen),
            ("ESTGATE_PUBLIC_URL", &mut raw.public_url),
            ("ESTGATE_DATA_DIR", &mut raw.data_dir),
            ("ESTGATE_DATABASE_URL", &mut raw.database_url),
            ("ESTGATE_LOG_FORMAT", &mut raw.log_format),
            ("ESTGATE_TLS_CERT", &mut raw.tls_cert),
            ("ESTGATE_TLS_KEY", &mut raw.tls_key),
            ("ESTGATE_CA_CHAIN", &mut raw.ca_chain),
            ("ESTGATE_CA_KEY", &mut raw.ca_key),
            ("ESTGATE_SMTP_HOST", &mut raw.smtp_host),
            ("ESTGATE_SMTP_PORT", &mut raw.smtp_port),
            ("ESTGATE_SMTP_TLS", &mut raw.smtp_tls),
            ("ESTGATE_SMTP_USERNAME", &mut raw.smtp_username),
            ("ESTGATE_SMTP_PASSWORD", &mut raw.smtp_password),
            ("ESTGATE_METRICS_TOKEN", &mut raw.metrics_token),
            ("ESTGATE_SMTP_CA", &mut raw.smtp_ca),
            ("ESTGATE_MAIL_FROM", &mut raw.mail_from),
            (
                "ESTGATE_EMAIL_LINK_TTL_MINUTES",
                &mut raw.email_link_ttl_minutes,
            ),
            // Connection bounds and proxies (web::limits, web::forwarded).
            ("ESTGATE_MAX_CONNECTIONS", &mut raw.max_connections),
            (
                "ESTGATE_MAX_CONNECTIONS_PER_ADDRESS",
                &mut raw.max_connections_per_address,
            ),
            (
                "ESTGATE_FIRST_BYTE_TIMEOUT_SECS",
                &mut raw.first_byte_timeout_secs,
            ),
            ("ESTGATE_IDLE_TIMEOUT_SECS", &mut raw.idle_timeout_secs),
            ("ESTGATE_HEADER_TIMEOUT_SECS", &mut raw.header_timeout_secs),
            ("ESTGATE_BODY_GRACE_SECS", &mut raw.body_grace_secs),
            (
                "ESTGATE_BODY_MIN_BYTES_PER_SEC",
                &mut raw.body_min_bytes_per_sec,
            ),
            ("ESTGATE_TRUSTED_PROXIES", &mut raw.trusted_proxies),
            (
                "ESTGATE_TRUSTED_PROXY_HEADER",
                &mut raw.trusted_proxy_header,
            ),
        ];
        for (var, slot) in fields {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *slot = Some(v);
            }
        }
        if let Some(d) = &overrides.data_dir {
            raw.data_dir = Some(d.to_string_lossy().into_owned());
        }
        if let Some(l) = &overrides.listen {
            raw.listen = Some(l.clone());
        }
        if let (Some(l), None) = (&overrides.http_listen, &raw.http_listen) {
            raw.http_listen = Some(l.clone());
        }
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let (limits, trusted_proxies) = listener_config(&raw)?;
        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8443")
            .parse()
            .map_err(|e| invalid("listen", format!("not an address:port ({e})")))?;
        let public_url = match raw.public_url {
            Some(u) => {
                if !u.starts_with("https://") || u.len() <= "https://".len() {
                    return Err(invalid("public_url", "must be an https:// URL"));
                }
                u.trim_end_matches('/').to_string()
            }
            None => format!("https://localhost:{}", listen.port()),
        };
        let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "./estgate-data".into()));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database_url = match raw.database_url {
            Some(u)
                if u.starts_with("sqlite:")
                    || u.starts_with("postgres://")
                    || u.starts_with("postgresql://") =>
            {
                u
            }
            Some(_) => {
                return Err(invalid(
                    "database_url",
                    "must start with sqlite: or postgres://",
                ))
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("estgate.db").display()
            ),
        };
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is neither text nor json"),
                ))
            }
        };
        let files = PkiFiles::in_dir(&data_dir);
        let (ca_chain, ca_key, dev_ca) = match (raw.ca_chain, raw.ca_key) {
            (Some(c), Some(k)) => (existing("ca_chain", c)?, existing("ca_key", k)?, false),
            (None, None) => (files.ca_chain.clone(), files.ca_key.clone(), true),
            (Some(_), None) => return Err(invalid("ca_key", "required when ca_chain is set")),
            (None, Some(_)) => return Err(invalid("ca_chain", "required when ca_key is set")),
        };
        let (tls_cert, tls_key, dev_tls) = match (raw.tls_cert, raw.tls_key) {
            (Some(c), Some(k)) => (existing("tls_cert", c)?, existing("tls_key", k)?, false),
            (None, None) => (files.tls_cert.clone(), files.tls_key.clone(), true),
            (Some(_), None) => return Err(invalid("tls_key", "required when tls_cert is set")),
            (None, Some(_)) => return Err(invalid("tls_cert", "required when tls_key is set")),
        };
        let trust_anchor = files.trust_anchor.clone();
        let http_listen: Option<SocketAddr> = match raw.http_listen.as_deref() {
            None | Some("") => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|e| invalid("http_listen", format!("not an address:port ({e})")))?,
            ),
        };
        let http_public_url = match (raw.http_public_url, http_listen) {
            (Some(u), _) => {
                // Relying parties fetch CRLs and OCSP over plain HTTP (RFC 5280 §4.2.1.13,
                // RFC 6960 appendix A); an https URL would loop through the chain it checks.
                if !u.starts_with("http://") || u.len() <= "http://".len() {
                    return Err(invalid("http_public_url", "must be an http:// URL"));
                }
                Some(u.trim_end_matches('/').to_string())
            }
            (None, Some(a)) => Some(format!("http://{a}")),
            (None, None) => None,
        };
        let approver_emails = raw
            .approver_emails
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                crate::domain::EmailAddress::parse(s).ok_or_else(|| {
                    invalid("approver_emails", format!("{s:?} is not an email address"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut expiry_reminder_days = raw
            .expiry_reminder_days
            .as_deref()
            .unwrap_or("30,7,1")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<u32>() {
                Ok(d) if (1..=365).contains(&d) => Ok(d),
                _ => Err(invalid(
                    "expiry_reminder_days",
                    format!("{s:?} is not a day count from 1 to 365"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        expiry_reminder_days.sort_unstable_by(|a, b| b.cmp(a));
        expiry_reminder_days.dedup();
        let read_cache = std::time::Duration::from_millis(
            bounded_number("read_cache_ms", raw.read_cache_ms.as_deref(), 0..=60_000)?
                .unwrap_or(2_000),
        );
        let metrics_token = raw.metrics_token.map(metrics_token).transpose()?;
        let guessing = guess_limits(GuessKeys {
            argon2_concurrency: raw.argon2_concurrency,
            argon2_queue: raw.argon2_queue,
            failures_per_client: raw.failures_per_client,
            failures_per_account: raw.failures_per_account,
        })?;
        let mail = mail_config(
            MailKeys {
                smtp_host: raw.smtp_host,
                smtp_port: raw.smtp_port,
                smtp_tls: raw.smtp_tls,
                smtp_username: raw.smtp_username,
                smtp_password: raw.smtp_password,
                smtp_ca: raw.smtp_ca,
                mail_from: raw.mail_from,
                email_link_ttl_minutes: raw.email_link_ttl_minutes,
            },
            &data_dir,
        )?;
        Ok(Config {
            listen,
            public_url,
            data_dir,
            database_url,
            log_format,
            tls_cert,
            tls_key,
            ca_chain,
            ca_key,
            dev_ca,
            dev_tls,
            trust_anchor,
            mail,
            http_listen,
            http_public_url,
            approver_emails,
            expiry_reminder_days,
            guessing,
            read_cache,
            limits,
            trusted_proxies,
            metrics_token,
        })
    }
}

/// The `/metrics` bearer token: long enough not to be guessed, and only characters a
/// header carries as they are (no space, no control character).
fn metrics_token(t: String) -> Result<std::sync::Arc<Secret>, ConfigError> {
    let token = Secret::new(t);
    let s = token.expose();
    if !(16..=256).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "metrics_token",
            "must be 16 to 256 visible ASCII characters (no spaces)",
        ));
    }
    Ok(std::sync::Arc::new(token))
}

/// A whole number within `range`, or `None` when the key is not set.
fn bounded_number(
    key: &'static str,
    value: Option<&str>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(invalid(
            key,
            format!(
                "{v:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The guessing keys of `RawConfig`.
struct GuessKeys {
    argon2_concurrency: Option<String>,
    argon2_queue: Option<String>,
    failures_per_client: Option<String>,
    failures_per_account: Option<String>,
}

/// Each bound must leave the server usable: at least one verification at a time and one
/// failure before a lockout (the queue may be 0: refuse at once when all slots are busy).
fn guess_limits(raw: GuessKeys) -> Result<crate::ra::GuessLimits, ConfigError> {
    let number = |key, value: Option<String>, range| bounded_number(key, value.as_deref(), range);
    let defaults = crate::ra::GuessLimits::default();
    let concurrency = number("argon2_concurrency", raw.argon2_concurrency, 1..=1024)?
        .map_or(defaults.argon2_concurrency, |n| n as usize);
    let queue = number("argon2_queue", raw.argon2_queue, 0..=65536)?
        .map_or(2 * concurrency, |n| n as usize);
    Ok(crate::ra::GuessLimits {
        argon2_concurrency: concurrency,
        argon2_queue: queue,
        failures_per_client: number(
            "failures_per_client",
            raw.failures_per_client,
            1..=1_000_000,
        )?
        .unwrap_or(defaults.failures_per_client),
        failures_per_account: number(
            "failures_per_account",
            raw.failures_per_account,
            1..=1_000_000,
        )?
        .unwrap_or(defaults.failures_per_account),
    })
}

/// The connection bounds and trusted proxies of `RawConfig`.
fn listener_config(
    raw: &RawConfig,
) -> Result<
    (
        crate::web::limits::Limits,
        crate::web::forwarded::TrustedProxies,
    ),
    ConfigError,
> {
    use crate::web::forwarded::{Cidr, ForwardedHeader, TrustedProxies};
    use crate::web::limits::Limits;
    use std::time::Duration;
    let d = Limits::default();
    let count = |key: &'static str, v: &Option<String>, default: u64| {
        bounded_number(key, v.as_deref(), 1..=1_000_000).map(|n| n.unwrap_or(default))
    };
    let secs = |key: &'static str, v: &Option<String>, default: Duration| {
        count(key, v, default.as_secs()).map(Duration::from_secs)
    };
    let max_connections = count("max_connections", &raw.max_connections, 1024)?;
    let per_address = count(
        "max_connections_per_address",
        &raw.max_connections_per_address,
        64,
    )?;
    let limits = Limits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_connections_per_address: usize::try_from(per_address).unwrap_or(usize::MAX),
        first_byte: secs(
            "first_byte_timeout_secs",
            &raw.first_byte_timeout_secs,
            d.first_byte,
        )?,
        idle: secs("idle_timeout_secs", &raw.idle_timeout_secs, d.idle)?,
        headers: secs("header_timeout_secs", &raw.header_timeout_secs, d.headers)?,
        body_grace: secs("body_grace_secs", &raw.body_grace_secs, d.body_grace)?,
        body_min_rate: count(
            "body_min_bytes_per_sec",
            &raw.body_min_bytes_per_sec,
            d.body_min_rate,
        )?,
    };
    let proxies = raw
        .trusted_proxies
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Cidr::parse(s).ok_or_else(|| {
                invalid(
                    "trusted_proxies",
                    format!("{s:?} is not an address or address/prefix"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = match raw.trusted_proxy_header.as_deref().map(str::trim) {
        None => ForwardedHeader::XForwardedFor,
        Some(h) if h.eq_ignore_ascii_case("x-forwarded-for") => ForwardedHeader::XForwardedFor,
        Some(h) if h.eq_ignore_ascii_case("forwarded") => ForwardedHeader::Forwarded,
        Some(h) => {
            return Err(invalid(
                "trusted_proxy_header",
                format!("{h:?} is neither x-forwarded-for nor forwarded"),
            ))
        }
    };
    Ok((limits, TrustedProxies { proxies, header }))
}

/// The mail keys of `RawConfig`.
struct MailKeys {
    smtp_host: Option<String>,
    smtp_port: Option<String>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    smtp_ca: Option<String>,
    mail_from: Option<String>,
    email_link_ttl_minutes: Option<String>,
}

fn mail_config(raw: MailKeys, data_dir: &Path) -> Result<MailConfig, ConfigError> {
    let from = raw
        .mail_from
        .as_deref()
        .unwrap_or("estgate <estgate@localhost>");
    let from: Mailbox = from
        .parse()
        .map_err(|e| invalid("mail_from", format!("{from:?} is not a mailbox ({e})")))?;
    let minutes = match raw.email_link_ttl_minutes.as_deref() {
        None => 60,
        Some(m) => m
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|m| (5..=1440).contains(m))
            .ok_or_else(|| {
                invalid(
                    "email_link_ttl_minutes",
                    format!("{m:?} is not a number of minutes from 5 to 1440"),
                )
            })?,
    };
    let password = raw.smtp_password.map(Secret::new);
    let Some(host) = raw.smtp_host else {
        let unused = [
            ("smtp_port", raw.smtp_port.is_some()),
            ("smtp_tls", raw.smtp_tls.is_some()),
            ("smtp_username", raw.smtp_username.is_some()),
            ("smtp_password", password.is_some()),
            ("smtp_ca", raw.smtp_ca.is_some()),
        ];
        if let Some((key, _)) = unused.iter().find(|(_, set)| *set) {
            return Err(invalid(key, "set, but smtp_host is not"));
        }
        return Ok(MailConfig {
            transport: MailTransport::Dir(data_dir.join("outbox")),
            from,
            link_ttl_secs: minutes * 60,
        });
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(invalid("smtp_host", format!("{host:?} is not a host name")));
    }
    let tls = match raw.smtp_tls.as_deref() {
        None => SmtpTls::StartTls,
        Some(t) => SmtpTls::parse(t).ok_or_else(|| {
            invalid(
                "smtp_tls",
                format!("{t:?} is none of starttls, tls and none"),
            )
        })?,
    };
    let port = match raw.smtp_port.as_deref() {
        None => tls.default_port(),
        Some(p) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("smtp_port", format!("{p:?} is not a port")))?,
    };
    let credentials = match (raw.smtp_username, password) {
        (Some(username), Some(password)) => Some(SmtpCredentials { username, password }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "smtp_password",
                "required when smtp_username is set",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "smtp_username",
                "required when smtp_password is set",
            ))
        }
    };
    if credentials.is_some() && tls == SmtpTls::None {
        return Err(invalid(
            "smtp_tls",
            "none would send smtp_password unencrypted: use starttls or tls",
        ));
    }
    let ca = raw.smtp_ca.map(|p| existing("smtp_ca", p)).transpose()?;
    Ok(MailConfig {
        transport: MailTransport::Smtp(SmtpSettings {
            host,
            port,
            tls,
            credentials,
            ca,
        }),
        from,
        link_ttl_secs: minutes * 60,
    })
}

fn existing(key: &'static str, path: String) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(path);
    if !p.is_file() {
        return Err(invalid(
            key,
            format!("{} is not a readable file", p.display()),
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_make_a_local_dev_server() {
        let c = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.public_url, "https://localhost:8443");
        assert!(c
            .database_url
            .starts_with("sqlite://./estgate-data/estgate.db"));
        assert!(c.dev_ca && c.dev_tls);
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_format = \"text\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "ESTGATE_LOG_FORMAT").then(|| "json".to_string());
        let o = Overrides {
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), env, &o).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("ESTGATE_LISTEN", "nonsense", "listen"),
            ("ESTGATE_LOG_FORMAT", "xml", "log_format"),
            ("ESTGATE_DATABASE_URL", "mysql://x", "database_url"),
            ("ESTGATE_PUBLIC_URL", "http://x", "public_url"),
            ("ESTGATE_CA_CHAIN", "/nonexistent.pem", "ca_key"),
            ("ESTGATE_METRICS_TOKEN", "short-token", "metrics_token"),
            (
                "ESTGATE_METRICS_TOKEN",
                "a token with spaces in it",
                "metrics_token",
            ),
        ];
        for (var, value, key) in cases {
            let env = |k: &str| (k == var).then(|| value.to_string());
            let err = Config::load(None, env, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{var}: {err}"
            );
            // A refused token is not echoed (it may be the real one, mistyped).
            if var == "ESTGATE_METRICS_TOKEN" {
                assert!(!err.to_string().contains(value), "{err}");
            }
        }
    }

    #[test]
    fn the_metrics_token_is_kept_and_not_shown() {
        let token = "prometheus-scrape-token-42";
        let env = |k: &str| (k == "ESTGATE_METRICS_TOKEN").then(|| token.to_string());
        let c = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(c.metrics_token.as_ref().map(|t| t.expose()), Some(token));
        assert!(!format!("{c:?}").contains(token));
        let none = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert!(none.metrics_token.is_none());
    }

    #[test]
    fn without_smtp_host_mail_goes_to_the_outbox_directory() {
        let c = Config::load(None, no_env, &Overrides::default()).unwrap();
        match &c.mail.transport {
            MailTransport::Dir(d) => assert_eq!(d, &PathBuf::from("./estgate-data/outbox")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.mail.link_ttl_secs, 3600);
        assert_eq!(c.mail.from.to_string(), "estgate <estgate@localhost>");
    }

    #[test]
    fn an_smtp_relay_with_credentials_and_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("relay-ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(
            &file,
            format!(
                "smtp_host = \"mail.example.org\"\nsmtp_tls = \"tls\"\n\
                 smtp_username = \"estgate\"\nsmtp_ca = {ca:?}\n\
                 mail_from = \"Certificates <pki@example.org>\"\n\
                 email_link_ttl_minutes = 15\n"
            ),
        )
        .unwrap();
        let env = |k: &str| (k == "ESTGATE_SMTP_PASSWORD").then(|| "relay-pw".to_string());
        let c = Config::load(Some(&file), env, &Overrides::default()).unwrap();
        let MailTransport::Smtp(s) = &c.mail.transport else {
            panic!("{:?}", c.mail.transport)
        };
        assert_eq!(s.host, "mail.example.org");
        assert_eq!((s.tls, s.port), (SmtpTls::Tls, 465));
        let creds = s.credentials.as_ref().unwrap();
        assert_eq!(creds.username, "estgate");
        assert_eq!(creds.password.expose(), "relay-pw");
        assert_eq!(s.ca.as_deref(), Some(ca.as_path()));
        assert_eq!(c.mail.from.to_string(), "Certificates <pki@example.org>");
        assert_eq!(c.mail.link_ttl_secs, 15 * 60);
        assert!(
            !format!("{c:?}").contains("relay-pw"),
            "Debug shows the password"
        );
    }

    #[test]
    fn smtp_ports_follow_the_tls_mode_unless_set() {
        for (tls, port, want) in [
            (None, None, (SmtpTls::StartTls, 587)),
            (Some("none"), None, (SmtpTls::None, 25)),
            (Some("starttls"), Some("2525"), (SmtpTls::StartTls, 2525)),
        ] {
            let env = |k: &str| match k {
                "ESTGATE_SMTP_HOST" => Some("127.0.0.1".to_string()),
                "ESTGATE_SMTP_TLS" => tls.map(String::from),
                "ESTGATE_SMTP_PORT" => port.map(String::from),
                _ => None,
            };
            let c = Config::load(None, env, &Overrides::default()).unwrap();
            let MailTransport::Smtp(s) = &c.mail.transport else {
                panic!("{:?}", c.mail.transport)
            };
            assert_eq!((s.tls, s.port), want);
            assert!(s.credentials.is_none());
        }
    }

    #[test]
    fn invalid_mail_values_name_their_key() {
        let host = ("ESTGATE_SMTP_HOST", "mail.example.org");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[host, ("ESTGATE_SMTP_TLS", "ssl")], "smtp_tls"),
            (&[host, ("ESTGATE_SMTP_PORT", "70000")], "smtp_port"),
            (&[host, ("ESTGATE_SMTP_PORT", "0")], "smtp_port"),
            (&[host, ("ESTGATE_SMTP_USERNAME", "u")], "smtp_password"),
            (&[host, ("ESTGATE_SMTP_PASSWORD", "p")], "smtp_username"),
            (
                &[
                    host,
                    ("ESTGATE_SMTP_TLS", "none"),
                    ("ESTGATE_SMTP_USERNAME", "u"),
                    ("ESTGATE_SMTP_PASSWORD", "p"),
                ],
                "smtp_tls",
            ),
            (&[host, ("ESTGATE_SMTP_CA", "/nonexistent.pem")], "smtp_ca"),
            (&[("ESTGATE_SMTP_HOST", "two words")], "smtp_host"),
            (&[("ESTGATE_SMTP_PORT", "25")], "smtp_port"),
            (&[("ESTGATE_MAIL_FROM", "not a mailbox")], "mail_from"),
            (
                &[("ESTGATE_EMAIL_LINK_TTL_MINUTES", "4")],
                "email_link_ttl_minutes",
            ),
            (
                &[("ESTGATE_EMAIL_LINK_TTL_MINUTES", "1441")],
                "email_link_ttl_minutes",
            ),
            (
                &[("ESTGATE_EMAIL_LINK_TTL_MINUTES", "an hour")],
                "email_link_ttl_minutes",
            ),
        ];
        for (vars, key) in cases {
            let env = |k: &str| {
                vars.iter()
                    .find(|(var, _)| *var == k)
                    .map(|(_, v)| v.to_string())
            };
            let err = Config::load(None, env, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{vars:?}: {err}"
            );
            if vars.iter().any(|(var, _)| *var == "ESTGATE_SMTP_PASSWORD") {
                assert!(!err.to_string().contains("\"p\""), "{err}");
            }
        }
    }

    #[test]
    fn guessing_limits_default_to_the_cores_and_can_be_set() {
        let c = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(c.guessing, crate::ra::GuessLimits::default());
        assert_eq!(c.guessing.argon2_queue, 2 * c.guessing.argon2_concurrency);
        assert_eq!(
            (
                c.guessing.failures_per_client,
                c.guessing.failures_per_account
            ),
            (50, 200)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(
            &file,
            "argon2_concurrency = 3\nfailures_per_client = 7\nfailures_per_account = \"9\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "ESTGATE_ARGON2_QUEUE").then(|| "0".to_string());
        let c = Config::load(Some(&file), env, &Overrides::default()).unwrap();
        assert_eq!(
            c.guessing,
            crate::ra::GuessLimits {
                argon2_concurrency: 3,
                argon2_queue: 0,
                failures_per_client: 7,
                failures_per_account: 9,
            }
        );
        // Without a queue set, it follows the concurrency.
        let env = |k: &str| (k == "ESTGATE_ARGON2_CONCURRENCY").then(|| "4".to_string());
        let c = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(c.guessing.argon2_queue, 8);
        for (var, value, key) in [
            ("ESTGATE_ARGON2_CONCURRENCY", "0", "argon2_concurrency"),
            ("ESTGATE_ARGON2_CONCURRENCY", "many", "argon2_concurrency"),
            ("ESTGATE_ARGON2_QUEUE", "-1", "argon2_queue"),
            ("ESTGATE_FAILURES_PER_CLIENT", "0", "failures_per_client"),
            (
                "ESTGATE_FAILURES_PER_ACCOUNT",
                "2.5",
                "failures_per_account",
            ),
        ] {
            let env = |k: &str| (k == var).then(|| value.to_string());
            let err = Config::load(None, env, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn every_key_is_a_row_of_the_readme_configuration_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let start = readme.find("## Configuration").unwrap();
        let table: Vec<&str> = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| key |"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        for (key, var, _) in KEYS {
            assert!(
                table
                    .iter()
                    .any(|row| row.contains(&format!("`{key}`"))
                        && row.contains(&format!("`{var}`"))),
                "{key} ({var}) is not in README's configuration table"
            );
        }
    }

    #[test]
    fn every_key_has_an_environment_variable() {
        for (key, var, _) in KEYS {
            assert_eq!(*var, format!("ESTGATE_{}", key.to_ascii_uppercase()));
        }
    }

    #[test]
    fn connection_limits_and_trusted_proxies_are_read_and_checked() {
        let c = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(c.limits, crate::web::limits::Limits::default());
        assert!(c.trusted_proxies.proxies.is_empty());
        let env = |k: &str| match k {
            "ESTGATE_MAX_CONNECTIONS_PER_ADDRESS" => Some("3".to_string()),
            "ESTGATE_IDLE_TIMEOUT_SECS" => Some("5".to_string()),
            "ESTGATE_TRUSTED_PROXIES" => Some("127.0.0.1, 10.0.0.0/8,::1".to_string()),
            "ESTGATE_TRUSTED_PROXY_HEADER" => Some("Forwarded".to_string()),
            _ => None,
        };
        let c = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(c.limits.max_connections_per_address, 3);
        assert_eq!(c.limits.idle, std::time::Duration::from_secs(5));
        assert_eq!(c.trusted_proxies.proxies.len(), 3);
        assert_eq!(
            c.trusted_proxies.header,
            crate::web::forwarded::ForwardedHeader::Forwarded
        );
        for (var, value, key) in [
            ("ESTGATE_MAX_CONNECTIONS", "0", "max_connections"),
            ("ESTGATE_BODY_GRACE_SECS", "soon", "body_grace_secs"),
            ("ESTGATE_TRUSTED_PROXIES", "10.0.0.0/40", "trusted_proxies"),
            (
                "ESTGATE_TRUSTED_PROXY_HEADER",
                "x-real-ip",
                "trusted_proxy_header",
            ),
        ] {
            let env = |k: &str| (k == var).then(|| value.to_string());
            let err = Config::load(None, env, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{var}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(Some(&file), no_env, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
