//! Failed-secret throttling, kept in the database so several server processes share the
//! counters. A request is counted under one or more keys of its account:
//! - the username, normalised (trimmed, lower-cased) so respelling an email address does not
//!   buy five more tries;
//! - for access-code accounts also the client address, because there the username is a
//!   device identifier the client picks freely, and the code is shared by the account.

use crate::domain::{Id, UnixTime};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

/// Failures per (account, username) within the window.
pub const MAX_FAILURES: u64 = 5;
/// Failures per (account, client address) within the window, on access-code accounts; higher,
/// as many devices may share an address behind NAT.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
pub const WINDOW_SECS: i64 = 15 * 60;
/// The failure scope of the browser form (EST failures are scoped by account id).
pub const WEB_SCOPE: Id = 0;

/// Confirmation emails per recipient, and per client address, within `MAIL_WINDOW_SECS`:
/// the form must not become a way to flood someone's mailbox.
pub const MAILS_PER_RECIPIENT: u64 = 3;
pub const MAILS_PER_ADDRESS: u64 = 10;
pub const MAIL_WINDOW_SECS: i64 = 15 * 60;

/// The first second of the window that ends at `now`: an event at `t` counts while
/// `now < t + window`, so a client that waits the `retry_after` it was told is let in.
fn window_start(now: UnixTime, window: i64) -> UnixTime {
    now - window + 1
}

fn host_of(source: &str) -> &str {
    source
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(source)
        .trim_matches(['[', ']'])
}

/// Counts one confirmation email to `recipient` requested from `source`, or refuses with
/// 429 when either has had its share in the window. Counters live in the database.
pub async fn allow_mail(
    store: &Store,
    recipient: &str,
    source: &str,
    now: UnixTime,
) -> Result<(), Error> {
    let keys = [
        (
            format!("mail-to:{}", recipient.to_lowercase()),
            MAILS_PER_RECIPIENT,
        ),
        (format!("mail-from:{}", host_of(source)), MAILS_PER_ADDRESS),
    ];
    for (key, limit) in &keys {
        let (count, oldest) = store
            .rate_events(key, window_start(now, MAIL_WINDOW_SECS))
            .await?;
        if count >= *limit {
            let retry_after = (oldest.unwrap_or(now) + MAIL_WINDOW_SECS - now).max(1) as u64;
            return Err(Error::new(
                ErrorKind::RateLimited { retry_after },
                match retry_after.div_ceil(60) {
                    1 => "too many confirmation emails were requested; try again in a minute"
                        .to_string(),
                    m => format!(
                        "too many confirmation emails were requested; try again in {m} minutes"
                    ),
                },
            ));
        }
    }
    for (key, _) in &keys {
        store.record_rate_event(key, now).await?;
    }
    store.sweep_rate_events(now - MAIL_WINDOW_SECS).await?;
    Ok(())
}

/// One counter: its key in the failure table and its limit.
pub struct Key {
    pub name: String,
    pub limit: u64,
}

impl Key {
    pub fn username(username: &str) -> Key {
        Key {
            name: username.trim().to_lowercase(),
            limit: MAX_FAILURES,
        }
    }

    /// A browser sign-in or access-code attempt at one endpoint, by email address. Counted
    /// under the scope `WEB_SCOPE` (no EST account has id 0).
    pub fn web(what: &str, endpoint_id: Id, username: &str) -> Key {
        Key {
            name: format!(
                "web-{what}:{endpoint_id}:{}",
                username.trim().to_lowercase()
            ),
            limit: MAX_FAILURES,
        }
    }

    /// `source` is `ip:port` or `[ip]:port`; the port is dropped.
    pub fn address(source: &str) -> Key {
        Key {
            name: format!("addr:{}", host_of(source)),
            limit: MAX_FAILURES_PER_ADDRESS,
        }
    }
}

/// Refuses with 429 while any key is at its limit; otherwise returns each key's count.
pub async fn check(
    store: &Store,
    account: Id,
    keys: &[Key],
    now: UnixTime,
) -> Result<Vec<u64>, Error> {
    let mut counts = Vec::with_capacity(keys.len());
    for key in keys {
        let (count, oldest) = store
            .recent_failures(account, &key.name, window_start(now, WINDOW_SECS))
            .await?;
        if count >= key.limit {
            let until = oldest.unwrap_or(now) + WINDOW_SECS;
            let retry_after = (until - now).max(1) as u64;
            return Err(Error::new(
                ErrorKind::RateLimited { retry_after },
                format!("too many failed attempts; try again in {retry_after} seconds"),
            ));
        }
        counts.push(count);
    }
    Ok(counts)
}

/// Records a failure under every key; expired failures are swept here, off the success path.
pub async fn fail(store: &Store, account: Id, keys: &[Key], now: UnixTime) -> Result<(), Error> {
    for key in keys {
        store.record_failure(account, &key.name, now).await?;
    }
    store.sweep_failures(now - WINDOW_SECS).await?;
    Ok(())
}

/// A success forgets the keys' failures; keys with none recorded need no write, which keeps
/// the common path free of database writes here.
pub async fn succeed(
    store: &Store,
    account: Id,
    keys: &[Key],
    counts: &[u64],
) -> Result<(), Error> {
    for (key, count) in keys.iter().zip(counts) {
        if *count > 0 {
            store.clear_failures(account, &key.name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise() {
        assert_eq!(
            Key::username(" RateLimit@Example.ORG ").name,
            "ratelimit@example.org"
        );
        assert_eq!(Key::address("192.0.2.7:51234").name, "addr:192.0.2.7");
        assert_eq!(Key::address("[2001:db8::1]:443").name, "addr:2001:db8::1");
    }
}
