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

    /// `source` is `ip:port` or `[ip]:port`; the port is dropped.
    pub fn address(source: &str) -> Key {
        let host = source.rsplit_once(':').map(|(h, _)| h).unwrap_or(source);
        Key {
            name: format!("addr:{}", host.trim_matches(['[', ']'])),
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
            .recent_failures(account, &key.name, now - WINDOW_SECS)
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
