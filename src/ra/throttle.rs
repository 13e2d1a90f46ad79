//! Failed-secret throttling per (account, username), kept in the database so several
//! server processes share the counters.

use crate::domain::{Id, UnixTime};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

pub const MAX_FAILURES: u64 = 5;
pub const WINDOW_SECS: i64 = 15 * 60;

/// Refuses with 429 while `MAX_FAILURES` failures lie within the window; otherwise returns
/// how many recent failures there are.
pub async fn check(
    store: &Store,
    account: Id,
    username: &str,
    now: UnixTime,
) -> Result<u64, Error> {
    let (count, oldest) = store
        .recent_failures(account, username, now - WINDOW_SECS)
        .await?;
    if count >= MAX_FAILURES {
        let until = oldest.unwrap_or(now) + WINDOW_SECS;
        let retry_after = (until - now).max(1) as u64;
        return Err(Error::new(
            ErrorKind::RateLimited { retry_after },
            format!("too many failed attempts; try again in {retry_after} seconds"),
        ));
    }
    Ok(count)
}

/// Records a failure; expired failures of any key are swept here, off the success path.
pub async fn fail(store: &Store, account: Id, username: &str, now: UnixTime) -> Result<(), Error> {
    store.record_failure(account, username, now).await?;
    store.sweep_failures(now - WINDOW_SECS).await?;
    Ok(())
}

/// A success forgets this key's failures; with none recorded there is nothing to write,
/// which keeps the common path free of database writes here.
pub async fn succeed(
    store: &Store,
    account: Id,
    username: &str,
    recent_failures: u64,
) -> Result<(), Error> {
    if recent_failures > 0 {
        store.clear_failures(account, username).await?;
    }
    Ok(())
}
