//! Where a finished message goes: an SMTP relay, or a directory of `.eml` files.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{MailError, MailTransport, SmtpSettings, SmtpTls};
use crate::domain::{Id, UnixTime};

/// Each SMTP read or write waits at most this long, so that one stuck relay cannot hold
/// a claimed batch past its lease (see `worker`).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends finished messages. Cloning is cheap: the SMTP transport shares its settings, the
/// directory its path.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Development transport: writes each message as an RFC 5322 `.eml` file (mode 0600)
    /// into this directory (mode 0700).
    Dir(Arc<Path>),
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mailer::Smtp(_) => f.write_str("Mailer::Smtp"),
            Mailer::Dir(p) => f.debug_tuple("Mailer::Dir").field(p).finish(),
        }
    }
}

impl Mailer {
    pub fn new(transport: &MailTransport) -> Result<Mailer, MailError> {
        match transport {
            MailTransport::Smtp(s) => {
                tracing::info!(host = %s.host, port = s.port, "sending email through SMTP");
                Mailer::smtp(s)
            }
            MailTransport::Dir(dir) => {
                tracing::info!(
                    "no smtp_host configured: emails are written as .eml files to {}",
                    dir.display()
                );
                Ok(Mailer::Dir(Arc::from(dir.as_path())))
            }
        }
    }

    fn smtp(s: &SmtpSettings) -> Result<Mailer, MailError> {
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            // Required, never opportunistic: a relay (or an attacker in the path) that drops
            // STARTTLS must not get the link in clear.
            SmtpTls::StartTls => Tls::Required(tls_parameters(s)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(s)?),
        };
        // "dangerous" only because lettre then applies no TLS default; `tls` is set here.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(c) = &s.credentials {
            builder = builder.credentials(Credentials::new(
                c.username.clone(),
                c.password.expose().to_string(),
            ));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    /// Sends one message. `outbox_id` and `now` name the file of the directory transport.
    pub async fn send(
        &self,
        message: Message,
        outbox_id: Id,
        now: UnixTime,
    ) -> Result<(), MailError> {
        match self {
            Mailer::Smtp(transport) => {
                transport.send(message).await?;
                Ok(())
            }
            Mailer::Dir(dir) => write_eml(dir, &message, outbox_id, now).await,
        }
    }
}

/// The system's roots plus the configured CA file, if any.
fn tls_parameters(s: &SmtpSettings) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(s.host.clone());
    if let Some(path) = &s.ca {
        let bad = |message: String| MailError::Ca {
            path: path.clone(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        for cert in certs {
            let cert = Certificate::from_der(cert.to_vec()).map_err(|e| bad(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build_rustls()?)
}

/// Written under a `.part` name and renamed when complete, so that whoever watches the
/// directory never opens half a message.
async fn write_eml(
    dir: &Path,
    message: &Message,
    outbox_id: Id,
    now: UnixTime,
) -> Result<(), MailError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MailError::Dir { path, source }
    };
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
        .map_err(failed(dir))?;
    let path = dir.join(format!("{now}-{outbox_id}.eml"));
    let part = dir.join(format!("{now}-{outbox_id}.eml.part"));
    let written = write_new(&part, &message.formatted()).await;
    let renamed = match written {
        Ok(()) => tokio::fs::rename(&part, &path).await.map_err(failed(&path)),
        Err(e) => Err(failed(&part)(e)),
    };
    if renamed.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    renamed?;
    tracing::info!(
        outbox_id,
        "development mail transport: wrote {}",
        path.display()
    );
    Ok(())
}

async fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.sync_all().await
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::domain::Secret;
    use crate::mail::SmtpCredentials;

    fn settings(ca: Option<PathBuf>) -> SmtpSettings {
        SmtpSettings {
            host: "mail.example.org".into(),
            port: 465,
            tls: SmtpTls::Tls,
            credentials: None,
            ca,
        }
    }

    #[test]
    fn a_private_relay_ca_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = Mailer::new(&MailTransport::Smtp(settings(Some(empty.clone())))).unwrap_err();
        assert!(
            matches!(&err, MailError::Ca { path, .. } if *path == empty),
            "{err}"
        );

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["relay-ca.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, cert.pem()).unwrap();
        let mailer = Mailer::new(&MailTransport::Smtp(settings(Some(good)))).unwrap();
        assert!(matches!(mailer, Mailer::Smtp(_)));
    }

    #[test]
    fn debug_shows_no_credentials() {
        let mut s = settings(None);
        s.credentials = Some(SmtpCredentials {
            username: "estgate".into(),
            password: Secret::new("relay-password"),
        });
        let mailer = Mailer::new(&MailTransport::Smtp(s)).unwrap();
        assert!(!format!("{mailer:?}").contains("relay-password"));
    }
}
