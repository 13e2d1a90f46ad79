//! Reads that every enrollment repeats — the account behind an EST label, its profile, its
//! organisation and department — kept for a short while instead of asked of the database
//! each time.
//!
//! A kept value is used while both hold:
//! - it is younger than the configured bound (config `read_cache_ms`, default 2 s): a
//!   change made by another process (the admin CLI, a second server on the same database)
//!   is in force within that bound;
//! - nothing audited has changed in this process since it was read
//!   (`store::changes_seen`): every administrative change writes an audit event, so a
//!   change made through this process's API is in force at once.
//!
//! Issuance and failed guesses are not audited changes of these objects and leave what is
//! kept alone. A bound of zero turns keeping off.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{Account, Department, Id, Organisation, Profile};
use crate::store::changes_seen;

/// Default bound on how old a kept value may be.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2);

/// Entries kept per kind at most; beyond it the table is emptied (a crude bound, reached
/// only by deployments with thousands of accounts, which then read a little more often).
const MAX_ENTRIES: usize = 4096;

struct Kept<V> {
    value: V,
    at: Instant,
    changes: u64,
}

struct Table<K, V> {
    entries: Mutex<HashMap<K, Kept<V>>>,
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K, max_age: Duration, changes: u64) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let kept = entries.get(key)?;
        (kept.at.elapsed() < max_age && kept.changes == changes).then(|| kept.value.clone())
    }

    fn put(&self, key: K, value: V, changes: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key,
                Kept {
                    value,
                    at: Instant::now(),
                    changes,
                },
            );
        }
    }
}

/// The kept reads of one RA.
pub struct ReadCache {
    max_age: Duration,
    /// The count of audited changes (`store::changes_seen`; tests give their own).
    changes: fn() -> u64,
    accounts: Table<Option<String>, Option<Account>>,
    profiles: Table<Id, Profile>,
    organisations: Table<Id, Organisation>,
    departments: Table<Id, Department>,
}

impl ReadCache {
    pub fn new(max_age: Duration) -> ReadCache {
        Self::counting(max_age, changes_seen)
    }

    fn counting(max_age: Duration, changes: fn() -> u64) -> ReadCache {
        ReadCache {
            max_age,
            changes,
            accounts: Table::new(),
            profiles: Table::new(),
            organisations: Table::new(),
            departments: Table::new(),
        }
    }

    /// The kept value, or the one `load` reads (then kept). The change count is taken
    /// before reading, so a change audited while the read runs makes the value stale at
    /// once rather than after the bound.
    async fn through<K, V, E, F>(&self, table: &Table<K, V>, key: K, load: F) -> Result<V, E>
    where
        K: Hash + Eq,
        V: Clone,
        F: std::future::Future<Output = Result<V, E>>,
    {
        if self.max_age.is_zero() {
            return load.await;
        }
        let changes = (self.changes)();
        if let Some(v) = table.get(&key, self.max_age, changes) {
            return Ok(v);
        }
        let v = load.await?;
        table.put(key, v.clone(), changes);
        Ok(v)
    }

    /// The account of an EST label (`None`: the default account), or its absence.
    pub async fn account<E, F>(&self, label: Option<&str>, load: F) -> Result<Option<Account>, E>
    where
        F: std::future::Future<Output = Result<Option<Account>, E>>,
    {
        self.through(&self.accounts, label.map(str::to_string), load)
            .await
    }

    pub async fn profile<E, F>(&self, id: Id, load: F) -> Result<Profile, E>
    where
        F: std::future::Future<Output = Result<Profile, E>>,
    {
        self.through(&self.profiles, id, load).await
    }

    pub async fn organisation<E, F>(&self, id: Id, load: F) -> Result<Organisation, E>
    where
        F: std::future::Future<Output = Result<Organisation, E>>,
    {
        self.through(&self.organisations, id, load).await
    }

    pub async fn department<E, F>(&self, id: Id, load: F) -> Result<Department, E>
    where
        F: std::future::Future<Output = Result<Department, E>>,
    {
        self.through(&self.departments, id, load).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// This module's own change count, so that other tests' audited changes running at the
    /// same time do not move it.
    static CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn changes() -> u64 {
        CHANGES.load(Ordering::Relaxed)
    }

    fn org(name: &str) -> Organisation {
        Organisation {
            id: 1,
            name: name.into(),
            domains: Vec::new(),
            organization_identifier: None,
            version: 1,
        }
    }

    async fn read(cache: &ReadCache, reads: &AtomicU32, name: &str) -> String {
        cache
            .organisation(1, async {
                reads.fetch_add(1, Ordering::Relaxed);
                Ok::<_, ()>(org(name))
            })
            .await
            .unwrap()
            .name
    }

    #[tokio::test]
    async fn a_kept_value_is_used_until_it_is_too_old() {
        let cache = ReadCache::counting(Duration::from_millis(200), changes);
        let reads = AtomicU32::new(0);
        assert_eq!(read(&cache, &reads, "first").await, "first");
        // A change seen only in the database (another process) waits for the bound…
        assert_eq!(read(&cache, &reads, "second").await, "first");
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // …and is read once it has passed.
        assert_eq!(read(&cache, &reads, "second").await, "second");
    }

    #[tokio::test]
    async fn an_audited_change_in_this_process_is_seen_at_once() {
        let cache = ReadCache::counting(Duration::from_secs(3600), changes);
        let reads = AtomicU32::new(0);
        assert_eq!(read(&cache, &reads, "first").await, "first");
        CHANGES.fetch_add(1, Ordering::Relaxed);
        assert_eq!(read(&cache, &reads, "second").await, "second");
        assert_eq!(reads.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_zero_bound_keeps_nothing() {
        let cache = ReadCache::counting(Duration::ZERO, changes);
        let reads = AtomicU32::new(0);
        read(&cache, &reads, "first").await;
        read(&cache, &reads, "first").await;
        assert_eq!(reads.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let cache = ReadCache::counting(Duration::from_secs(3600), changes);
        let failed: Result<Organisation, &str> = cache.organisation(7, async { Err("down") }).await;
        assert!(failed.is_err());
        let ok: Result<Organisation, &str> = cache.organisation(7, async { Ok(org("up")) }).await;
        assert_eq!(ok.unwrap().name, "up");
    }
}
