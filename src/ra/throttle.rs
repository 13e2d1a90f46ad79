//! Throttling of secret guesses and of confirmation emails, kept in the database so several
//! server processes share the counters.
//!
//! A secret guess is counted under one or more keys, each in its own scope:
//! - a person's secret ID, by normalised email (trimmed, lower-cased), in the shared scope:
//!   the same count for the browser form and every EST account, so neither respelling the
//!   address nor moving to another endpoint buys more tries;
//! - an EST username on an access-code account, in that account's scope;
//! - the client address, on access-code paths, because there the username is chosen freely
//!   and the code is shared.
//!
//! Counting without races: guesses under one key take turns (`take_turn`), each re-reading
//! the count once the previous one is recorded. Presenting a secret verified moments ago
//! (the verifier's cache) needs no turn and no write, which keeps the busy success path
//! free of both. Confirmation emails are counted by writing the event first and counting
//! the events up to it, so that of simultaneous requests the earliest get through.

use crate::domain::{Id, UnixTime};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

/// Failures per username (or per secret ID) within the window.
pub const MAX_FAILURES: u64 = 5;
/// Failures per client address within the window, on access-code paths; higher, as many
/// devices may share an address behind NAT.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
pub const WINDOW_SECS: i64 = 15 * 60;
/// The scope of keys that are not one EST account's (no account has id 0).
pub const SHARED_SCOPE: Id = 0;

/// Confirmation emails within `MAIL_WINDOW_SECS`: per (recipient, client address), so that
/// one client cannot flood a mailbox or use up someone else's links; per recipient, against
/// many clients; per client address, against one client writing to many addresses.
pub const MAILS_PER_RECIPIENT_AND_ADDRESS: u64 = 3;
pub const MAILS_PER_RECIPIENT: u64 = 10;
pub const MAILS_PER_ADDRESS: u64 = 10;
pub const MAIL_WINDOW_SECS: i64 = 15 * 60;

/// The first second of the window that ends at `now`: an event at `t` counts while
/// `now < t + window`, so a client that waits the `retry_after` it was told is let in.
fn window_start(now: UnixTime, window: i64) -> UnixTime {
    now - window + 1
}

/// The host part of `ip:port` or `[ip]:port`.
pub fn host(source: &str) -> &str {
    source
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(source)
        .trim_matches(['[', ']'])
}

fn normalise(username: &str) -> String {
    username.trim().to_lowercase()
}

fn mail_refused(retry_after: u64) -> Error {
    Error::new(
        ErrorKind::RateLimited { retry_after },
        match retry_after.div_ceil(60) {
            1 => "too many confirmation emails were requested; try again in a minute".to_string(),
            m => format!("too many confirmation emails were requested; try again in {m} minutes"),
        },
    )
}

/// Counts one confirmation email to `recipient` requested from `source`, or refuses with
/// 429 when a counter has had its share. The events are written first and counted with
/// themselves, so concurrent requests cannot all pass; refused ones are taken back.
pub async fn allow_mail(
    store: &Store,
    recipient: &str,
    source: &str,
    now: UnixTime,
) -> Result<(), Error> {
    let to = normalise(recipient);
    let from = host(source);
    let keys = [
        (
            format!("mail-to-from:{to}:{from}"),
            MAILS_PER_RECIPIENT_AND_ADDRESS,
        ),
        (format!("mail-to:{to}"), MAILS_PER_RECIPIENT),
        (format!("mail-from:{from}"), MAILS_PER_ADDRESS),
    ];
    let mut ids = Vec::with_capacity(keys.len());
    for (key, _) in &keys {
        ids.push(store.record_rate_event(key, now).await?);
    }
    for ((key, limit), id) in keys.iter().zip(&ids) {
        let (count, oldest) = store
            .rate_events(key, window_start(now, MAIL_WINDOW_SECS), Some(*id))
            .await?;
        if count > *limit {
            for id in &ids {
                store.delete_rate_event(*id).await?;
            }
            let retry_after = (oldest.unwrap_or(now) + MAIL_WINDOW_SECS - now).max(1) as u64;
            return Err(mail_refused(retry_after));
        }
    }
    store.sweep_rate_events(now - MAIL_WINDOW_SECS).await?;
    Ok(())
}

/// One counter: its scope and key in the failure table, and its limit.
#[derive(Debug, Clone)]
pub struct Key {
    pub scope: Id,
    pub name: String,
    pub limit: u64,
}

impl Key {
    /// A person's secret ID, wherever it is presented (form or EST).
    pub fn secret_id(email: &str) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("secret-id:{}", normalise(email)),
            limit: MAX_FAILURES,
        }
    }

    /// A username on one EST access-code account.
    pub fn username(account: Id, username: &str) -> Key {
        Key {
            scope: account,
            name: normalise(username),
            limit: MAX_FAILURES,
        }
    }

    /// Access-code guesses of one signed-in person at one endpoint's form.
    pub fn web_access_code(endpoint_id: Id, email: &str) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("web-access-code:{endpoint_id}:{}", normalise(email)),
            limit: MAX_FAILURES,
        }
    }

    /// `source` is `ip:port` or `[ip]:port`; the port is dropped.
    pub fn address(scope: Id, source: &str) -> Key {
        Key {
            scope,
            name: format!("addr:{}", host(source)),
            limit: MAX_FAILURES_PER_ADDRESS,
        }
    }
}

fn too_many(oldest: Option<UnixTime>, now: UnixTime) -> Error {
    let retry_after = (oldest.unwrap_or(now) + WINDOW_SECS - now).max(1) as u64;
    Error::new(
        ErrorKind::RateLimited { retry_after },
        format!("too many failed attempts; try again in {retry_after} seconds"),
    )
}

/// Refuses with 429 while any key is at its limit (a read); otherwise returns each key's
/// count of earlier failures.
pub async fn check(store: &Store, keys: &[Key], now: UnixTime) -> Result<Vec<u64>, Error> {
    let mut counts = Vec::with_capacity(keys.len());
    for key in keys {
        let (count, oldest) = store
            .recent_failures(key.scope, &key.name, window_start(now, WINDOW_SECS))
            .await?;
        if count >= key.limit {
            return Err(too_many(oldest, now));
        }
        counts.push(count);
    }
    Ok(counts)
}

/// Guesses under the same key take turns in this process: each one re-reads the count
/// after the previous one was recorded, so a burst of parallel guesses cannot all slip
/// under the limit, while a burst of right secrets is not held back (the first verification
/// fills the verifier's cache and the rest pass on it). Several processes may each have one
/// guess in flight per key: the overshoot is bounded by the number of processes.
pub async fn take_turn(keys: &[Key]) -> Turn {
    let mut names: Vec<(Id, String)> = keys.iter().map(|k| (k.scope, k.name.clone())).collect();
    // One order for everybody, so two requests never wait on each other's second lock.
    names.sort();
    names.dedup();
    let mut guards = Vec::with_capacity(names.len());
    for name in &names {
        let lock = {
            let Ok(mut map) = IN_FLIGHT.lock() else {
                continue;
            };
            map.get_or_insert_with(Default::default)
                .entry(name.clone())
                .or_default()
                .clone()
        };
        guards.push(lock.lock_owned().await);
    }
    Turn { guards }
}

type TurnLocks = std::collections::HashMap<(Id, String), std::sync::Arc<tokio::sync::Mutex<()>>>;

static IN_FLIGHT: std::sync::Mutex<Option<TurnLocks>> = std::sync::Mutex::new(None);

/// Held while a guess is verified and recorded.
#[must_use]
pub struct Turn {
    guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guards.clear();
        // Forget the locks nobody holds or waits for, so the map stays small.
        if let Ok(mut map) = IN_FLIGHT.lock() {
            if let Some(m) = map.as_mut() {
                m.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
            }
        }
    }
}

/// Records a wrong guess under every key; expired failures are swept here, off the
/// success path.
pub async fn fail(store: &Store, keys: &[Key], now: UnixTime) -> Result<(), Error> {
    for key in keys {
        store.record_failure(key.scope, &key.name, now).await?;
    }
    store.sweep_failures(now - WINDOW_SECS).await?;
    Ok(())
}

/// After a success with a personal secret, forget the keys' earlier failures (keys with
/// none need no write). Not for shared access codes: knowing one code must not reset the
/// count of guesses at others.
pub async fn forget_failures(store: &Store, keys: &[Key], counts: &[u64]) -> Result<(), Error> {
    for (key, count) in keys.iter().zip(counts) {
        if *count > 0 {
            store.clear_failures(key.scope, &key.name).await?;
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
            Key::secret_id(" RateLimit@Example.ORG ").name,
            "secret-id:ratelimit@example.org"
        );
        assert_eq!(Key::username(7, " Dev-1 ").name, "dev-1");
        assert_eq!(Key::username(7, "x").scope, 7);
        assert_eq!(Key::address(0, "192.0.2.7:51234").name, "addr:192.0.2.7");
        assert_eq!(
            Key::address(0, "[2001:db8::1]:443").name,
            "addr:2001:db8::1"
        );
    }
}
