//! Mail: the `Mailer` (SMTP through lettre, or a directory of `.eml` files for development)
//! and the outbox `Worker` that renders and sends what the RA queued: email-confirmation
//! links and the lifecycle notices (approval needed, approved, rejected, issued, revoked,
//! expiry reminder).
//!
//! The RA never sends mail itself: it records an email token or a notice and its outbox row
//! in one transaction. The worker mints a link's secret just before sending and stores only
//! its hash, so no usable link sits in the database, not even while a message waits for a
//! retry; a notice is rendered from the order or certificate it names when it is sent. A
//! failed send stays in the outbox until it is sent or there is nothing left to send: a link
//! that can no longer be used, an order or certificate that is gone or has moved on.

mod confirmation;
mod message;
mod notices;
mod transport;
mod worker;

use std::path::PathBuf;

pub use lettre::message::Mailbox;
pub use transport::Mailer;
pub use worker::Worker;

use crate::domain::Secret;
use crate::store::StoreError;

/// The mail settings, as `config` validated them.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// The `From:` of every message.
    pub from: Mailbox,
    /// How long an emailed link stays valid, in seconds (`email_link_ttl_minutes`).
    pub link_ttl_secs: i64,
}

#[derive(Debug, Clone)]
pub enum MailTransport {
    Smtp(SmtpSettings),
    /// A development transport: every message becomes an `.eml` file in this directory,
    /// links included, so that a new installation shows its mail without a relay. Whoever
    /// can read the directory can follow the links.
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<SmtpCredentials>,
    /// PEM CA certificates to trust besides the system's, for relays with a private CA.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: Secret,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, for a relay on the same host or network segment.
    None,
    /// STARTTLS, required: a relay that does not offer it gets no message.
    StartTls,
    /// Implicit TLS from the first byte (submissions, port 465).
    Tls,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<SmtpTls> {
        match s {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// Error texts never carry a link or its secret: they are logged and stored in the outbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("SMTP CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("mail directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
}
