//! The outbox worker: claims due rows, mints each link's secret, renders and sends the
//! message, and records the outcome. Any number of processes may run one (the claim is
//! exclusive per row and leased), as DESIGN.md's "Scale" requires.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{Address, Message};
use zeroize::Zeroizing;

use super::confirmation::Confirmation;
use super::notices::{About, NoticeEmail};
use super::{MailConfig, MailError, Mailer};
use crate::domain::{generate_secret, hash_token, CertStatus, Clock, OrderStatus, Secret};
use crate::metrics::{MailOutcome, Metrics};
use crate::store::{NoticeKind, OutboxItem, Store, StoreError, OUTBOX_EMAIL_CONFIRMATION};

/// How long a claimed row belongs to this worker before another may claim it again.
const LEASE_SECS: i64 = 120;
/// No new send starts this close to the end of a batch's lease: a send takes at most a few
/// SMTP timeouts, and a row sent after its lease ended could be sent twice.
const LEASE_MARGIN_SECS: i64 = 45;
/// Time kept at the end of a lease for recording the outcome of a send.
const SEND_MARGIN_SECS: i64 = 5;
const BATCH: u32 = 10;
/// The length of a link's secret: 32 base62 characters, 190 bits.
const SECRET_LEN: usize = 32;

const FIRST_RETRY_SECS: i64 = 15;
const MAX_RETRY_SECS: i64 = 30 * 60;

/// Why a queued message is not sent: used, superseded by a newer request, or expired.
pub const LINK_UNUSABLE: &str = "link no longer usable";

/// Attempts at a kind this server cannot render before it is dropped: with the backoff,
/// about 12 hours, long enough for a newer server sharing the database (a rolling upgrade)
/// to send it, and not forever.
const UNKNOWN_KIND_ATTEMPTS: u32 = 30;
/// Why a kind that no server rendered in time was dropped.
pub const UNKNOWN_KIND: &str = "unknown outbox kind: no server sharing the database sent it";

/// The row a notice names is gone: the notice is dropped, since no retry brings it back.
macro_rules! or_drop {
    ($found:expr, $why:literal) => {
        match $found {
            Ok(v) => v,
            Err(StoreError::NotFound(_)) => return Ok(Outcome::Dropped($why)),
            Err(e) => return Err(e.into()),
        }
    };
}

/// Seconds to wait after a failed attempt, given the attempts made before it: 15 s, doubling,
/// at most 30 minutes, so a relay that is down for a while is not hammered and one that
/// comes back is used soon.
pub fn retry_delay(attempts_before: u32) -> i64 {
    (FIRST_RETRY_SECS << attempts_before.min(16)).min(MAX_RETRY_SECS)
}

pub struct Worker {
    pub store: Store,
    pub mailer: Mailer,
    pub clock: Arc<dyn Clock>,
    pub from: Mailbox,
    /// The server's base URL, without a trailing slash; links start with it.
    pub public_url: String,
    /// The configured link lifetime, as the email states it.
    pub link_ttl_secs: i64,
    /// How long to sleep when nothing is due.
    pub poll: Duration,
    /// Where sent, failed and dropped messages are counted (`/metrics`).
    pub metrics: Arc<Metrics>,
}

enum Outcome {
    Sent,
    Dropped(&'static str),
    /// Kept for a retry; the text is stored in the outbox and logged.
    Failed(String),
}

impl Worker {
    pub fn new(
        store: Store,
        mailer: Mailer,
        clock: Arc<dyn Clock>,
        config: &MailConfig,
        public_url: &str,
    ) -> Worker {
        Worker {
            store,
            mailer,
            clock,
            from: config.from.clone(),
            public_url: public_url.trim_end_matches('/').to_string(),
            link_ttl_secs: config.link_ttl_secs,
            poll: Duration::from_secs(1),
            metrics: Metrics::new(),
        }
    }

    /// The same worker, counting in the server's `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Worker {
        self.metrics = metrics;
        self
    }

    /// Sends what is due, then sleeps `poll`, until `shutdown` resolves. Stopping in the
    /// middle of a send is safe: the row stays unsent and is claimed again after its lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let drained = tokio::select! {
                _ = &mut shutdown => return,
                r = self.drain_once() => r,
            };
            if let Err(e) = drained {
                tracing::error!("mail worker: {e}");
            }
            // drain_once returns only when nothing more is due (or on an error).
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Processes every message due now; returns how many were processed (sent, dropped or
    /// failed for a retry).
    pub async fn drain_once(&self) -> Result<usize, MailError> {
        let mut done = 0;
        loop {
            let claimed_at = self.clock.now();
            let batch = self
                .store
                .claim_outbox(claimed_at, LEASE_SECS, BATCH)
                .await?;
            for item in &batch {
                if self.clock.now() >= claimed_at + LEASE_SECS - LEASE_MARGIN_SECS {
                    // The rest is claimed again when its lease ends.
                    return Ok(done);
                }
                self.process(item, claimed_at + LEASE_SECS - SEND_MARGIN_SECS)
                    .await?;
                done += 1;
            }
            // Processed rows are sent, dropped or due later, so a full batch means more may
            // be waiting, and a short one that the queue is empty.
            if batch.len() < BATCH as usize {
                return Ok(done);
            }
        }
    }

    /// `deadline`: the send must be over by then, while the row is still this worker's.
    async fn process(&self, item: &OutboxItem, deadline: i64) -> Result<(), MailError> {
        let outcome = match item.kind.as_str() {
            OUTBOX_EMAIL_CONFIRMATION => self.confirmation(item, deadline).await?,
            other => match NoticeKind::parse(other) {
                Some(kind) => self.notice(kind, item, deadline).await?,
                // Kept for a while: a newer server version sharing the database may know it.
                None if item.attempts.saturating_add(1) < UNKNOWN_KIND_ATTEMPTS => Outcome::Failed(
                    format!("unknown outbox kind {other:?}: this server cannot render it"),
                ),
                None => Outcome::Dropped(UNKNOWN_KIND),
            },
        };
        let now = self.clock.now();
        let domain = recipient_domain(&item.recipient);
        match outcome {
            Outcome::Sent => {
                self.store.outbox_sent(item.id, now).await?;
                self.metrics.mail(MailOutcome::Sent);
                tracing::info!(outbox_id = item.id, domain, kind = %item.kind, "email sent");
            }
            Outcome::Dropped(why) => {
                self.store.outbox_dropped(item.id, now, why).await?;
                self.metrics.mail(MailOutcome::Dropped);
                tracing::info!(outbox_id = item.id, domain, "email not sent: {why}");
            }
            Outcome::Failed(error) => {
                let attempts = item.attempts.saturating_add(1);
                let next = now + retry_delay(item.attempts);
                self.store
                    .outbox_failed(item.id, attempts, next, &error)
                    .await?;
                self.metrics.mail(MailOutcome::Failed);
                tracing::warn!(
                    outbox_id = item.id,
                    domain,
                    attempts,
                    next_attempt_at = next,
                    "email not sent, will retry: {error}"
                );
            }
        }
        Ok(())
    }

    async fn confirmation(&self, item: &OutboxItem, deadline: i64) -> Result<Outcome, MailError> {
        let Some(token_id) = item.email_token_id else {
            return Ok(Outcome::Dropped("no email token to confirm"));
        };
        let token = match self.store.email_token(token_id).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => return Ok(Outcome::Dropped("email token gone")),
            Err(e) => return Err(e.into()),
        };
        let endpoint = self.store.endpoint(token.endpoint_id).await?;
        let to = match token.email.as_str().parse::<Address>() {
            Ok(a) => Mailbox::new(None, a),
            Err(e) => return Ok(Outcome::Failed(format!("recipient address refused: {e}"))),
        };
        // A fresh secret per attempt: only its hash is stored, so a retry cannot resend an
        // earlier one, and minting fails once the link is used, superseded or expired.
        let secret = generate_secret(SECRET_LEN);
        if !self
            .store
            .mint_email_token(token.id, &hash_token(&secret), self.clock.now())
            .await?
        {
            return Ok(Outcome::Dropped(LINK_UNUSABLE));
        }
        let link = Zeroizing::new(format!(
            "{}/enroll/{}/confirm?token={}",
            self.public_url,
            endpoint.uri_extension,
            secret.expose()
        ));
        let message = Confirmation {
            endpoint_name: &endpoint.name,
            link: &link,
            purpose: token.purpose,
            valid_minutes: self.link_ttl_secs / 60,
        }
        .message(&self.from, to);
        Ok(self.send(message, item, deadline, Some(&secret)).await)
    }

    /// A lifecycle notice, rendered from the rows it names as they are now.
    async fn notice(
        &self,
        kind: NoticeKind,
        item: &OutboxItem,
        deadline: i64,
    ) -> Result<Outcome, MailError> {
        let now = self.clock.now();
        let mut certificate = match item.certificate_id {
            Some(id) => Some(or_drop!(
                self.store.certificate(id).await,
                "certificate gone"
            )),
            None => None,
        };
        let Some(order_id) = item.order_id.or(certificate.as_ref().map(|c| c.order_id)) else {
            return Ok(Outcome::Dropped("notice names no order or certificate"));
        };
        let order = or_drop!(self.store.order(order_id).await, "order gone");
        if certificate.is_none() && kind == NoticeKind::CertificateIssued {
            certificate = self.store.certificate_of_order(order.id).await?;
        }
        let about = match (kind, &certificate) {
            (NoticeKind::ApprovalNeeded, _) if order.status != OrderStatus::PendingApproval => {
                return Ok(Outcome::Dropped("order already decided"));
            }
            (NoticeKind::ApprovalNeeded, _) => About::ApprovalNeeded,
            // The person collected the certificate before this left: nothing to tell.
            (NoticeKind::OrderApproved, _) if order.status != OrderStatus::Approved => {
                return Ok(Outcome::Dropped("order no longer waits to be collected"));
            }
            (NoticeKind::OrderApproved, _) => About::OrderApproved,
            (NoticeKind::OrderRejected, _) => About::OrderRejected,
            (_, None) => return Ok(Outcome::Dropped("certificate gone")),
            (NoticeKind::CertificateIssued, Some(c)) => About::CertificateIssued(c),
            (NoticeKind::CertificateRevoked, Some(c)) => match &c.revocation {
                Some(r) => About::CertificateRevoked(c, r),
                None => return Ok(Outcome::Dropped("certificate not revoked")),
            },
            (NoticeKind::ExpiryReminder, Some(c)) if c.status == CertStatus::Revoked => {
                return Ok(Outcome::Dropped("certificate revoked"));
            }
            (NoticeKind::ExpiryReminder, Some(c)) if c.not_after <= now => {
                return Ok(Outcome::Dropped("certificate already expired"));
            }
            (NoticeKind::ExpiryReminder, Some(c)) => About::ExpiryReminder(c),
        };
        let account = or_drop!(self.store.account(order.account_id).await, "account gone");
        let endpoint = or_drop!(
            self.store.endpoint(account.endpoint_id).await,
            "endpoint gone"
        );
        let profile = or_drop!(self.store.profile(order.profile_id).await, "profile gone");
        let person_name = match order.person_id {
            Some(id) => match self.store.person(id).await {
                Ok(p) => p.full_name(),
                Err(StoreError::NotFound(_)) => String::new(),
                Err(e) => return Err(e.into()),
            },
            None => String::new(),
        };
        // The address was valid when queued (a person's or a configured approver's); one
        // the relay library refuses stays refused, so waiting would not help.
        let Ok(to) = item.recipient.parse::<Address>() else {
            return Ok(Outcome::Dropped("recipient address refused"));
        };
        let form_url = format!("{}/enroll/{}", self.public_url, endpoint.uri_extension);
        let message = NoticeEmail {
            about,
            order: &order,
            endpoint_name: &endpoint.name,
            form_url: &form_url,
            account_name: &account.name,
            profile_name: &profile.name,
            person_name: &person_name,
            now,
        }
        .message(&self.from, Mailbox::new(None, to));
        Ok(self.send(message, item, deadline, None).await)
    }

    /// `secret`: the link's secret in the message, kept out of a stored or logged error.
    async fn send(
        &self,
        message: Result<Message, MailError>,
        item: &OutboxItem,
        deadline: i64,
        secret: Option<&Secret>,
    ) -> Outcome {
        // Each SMTP command has its own timeout; the whole send must also end before the
        // lease does, or another worker could claim the row and send it a second time.
        let budget = Duration::from_secs((deadline - self.clock.now()).max(1) as u64);
        let sent = match message {
            Ok(m) => {
                match tokio::time::timeout(budget, self.mailer.send(m, item.id, self.clock.now()))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        return Outcome::Failed(
                            "the relay did not finish before the outbox lease ended".into(),
                        )
                    }
                }
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => Outcome::Sent,
            Err(e) => {
                let text = e.to_string();
                Outcome::Failed(match secret {
                    Some(s) => without_secret(&text, s),
                    None => text,
                })
            }
        }
    }
}

/// A relay's error reply may quote what it was sent; the stored and logged text must not
/// carry the secret (and so the link) in any case.
fn without_secret(text: &str, secret: &Secret) -> String {
    text.replace(secret.expose(), "<token>")
}

/// Logs name the recipient's domain, enough to see which relay or organisation is at fault.
fn recipient_domain(recipient: &str) -> &str {
    recipient.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_half_an_hour() {
        let schedule: Vec<i64> = (0..10).map(retry_delay).collect();
        assert_eq!(schedule, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        assert_eq!(retry_delay(u32::MAX), 1800);
    }

    #[test]
    fn an_unknown_kind_is_kept_about_twelve_hours() {
        let kept: i64 = (0..UNKNOWN_KIND_ATTEMPTS - 1).map(retry_delay).sum();
        assert!((11 * 3600..13 * 3600).contains(&kept), "{kept} s");
    }

    #[test]
    fn error_text_loses_the_secret() {
        let s = Secret::new("S3cr3tT0k3n");
        let text = "554 rejected https://x/enroll/e/confirm?token=S3cr3tT0k3n";
        let clean = without_secret(text, &s);
        assert!(!clean.contains("S3cr3tT0k3n"));
        assert!(clean.contains("token=<token>"));
    }

    #[test]
    fn logs_name_the_domain_only() {
        assert_eq!(recipient_domain("alice@example.org"), "example.org");
        assert_eq!(recipient_domain("nobody"), "");
    }
}
