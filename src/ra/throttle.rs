//! Throttling of secret guesses and of confirmation emails, kept in the database so several
//! server processes share the counters.
//!
//! A secret guess is counted under several keys at once, each in its own scope, and is
//! refused (429) while any of them is at its limit, before any Argon2 runs:
//! - a person's secret ID, by normalised email (trimmed, lower-cased), in the shared scope:
//!   the same count for the browser form and every EST account, so neither respelling the
//!   address nor moving to another endpoint buys more tries (an administrator's email key
//!   is of this kind too);
//! - an EST username on an access-code account, in that account's scope, and the client
//!   address there, because on access-code paths the username is chosen freely and the
//!   code is shared;
//! - the client address across everything (every account, endpoint and the administrators'
//!   sign-in), so that inventing usernames or moving between accounts buys nothing;
//! - everybody's failures on one EST account, or at one form's access-code step: rotating
//!   both addresses and usernames still ends there, and the account is then locked for
//!   everybody until the oldest failures age out (a denial of service an attacker can cause,
//!   which is the price of a bounded number of guesses at a shared secret).
//!
//! A client address is its IPv4 address, or the /64 of an IPv6 address (one subscriber or
//! LAN gets a /64, so every address inside it is one client); an IPv4-mapped IPv6 address is
//! its IPv4 address.
//!
//! Only a person's own key is forgotten after that person's success (`Reach::Personal`):
//! knowing one secret must not reset the count of guesses at others, so address, account
//! and access-code keys keep every failure until it ages out.
//!
//! Counting without races: guesses under one key take turns (`take_turn`), each re-reading
//! the count once the previous one is recorded. The wide keys (one client, one account) are
//! not taken in turns, which would line up unrelated people behind one another; concurrent
//! guesses may overshoot them by at most the verifications admitted at once
//! (`Verifications`). Presenting a secret verified moments ago (the verifier's cache) needs
//! no turn, no verification slot and no write, which keeps the busy success path free of
//! all three. Confirmation emails are counted by writing the event first and counting the
//! events up to it, so that of simultaneous requests the earliest get through.
//!
//! Argon2 itself is bounded too: at most `argon2_concurrency` verifications run at once in
//! a process and at most `argon2_queue` more wait for a slot; a guess beyond that is
//! answered 503 with `Retry-After` at once, and nothing is recorded for it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::domain::{Id, UnixTime};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

/// Failures per username (or per secret ID) within the window.
pub const MAX_FAILURES: u64 = 5;
/// Failures per client address within the window, on one access-code account (or at the
/// form's access-code step); higher, as many devices may share an address behind NAT.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// Failures per client address within the window across all accounts, endpoints and the
/// administrators' sign-in (config `failures_per_client`).
pub const MAX_FAILURES_PER_CLIENT: u64 = 50;
/// Failures of everybody on one EST account, or at one form's access-code step, within the
/// window (config `failures_per_account`).
pub const MAX_FAILURES_PER_ACCOUNT: u64 = 200;
pub const WINDOW_SECS: i64 = 15 * 60;
/// The scope of keys that are not one EST account's (no account has id 0).
pub const SHARED_SCOPE: Id = 0;
/// What a guess refused for want of a verification slot is told to wait: a slot frees up
/// within one Argon2 run (tens of milliseconds), so a second is ample.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// How much guessing a process admits (config: `argon2_concurrency`, `argon2_queue`,
/// `failures_per_client`, `failures_per_account`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimits {
    /// Argon2 verifications running at once in this process.
    pub argon2_concurrency: usize,
    /// Guesses waiting for a verification slot; beyond them, 503.
    pub argon2_queue: usize,
    pub failures_per_client: u64,
    pub failures_per_account: u64,
}

impl Default for GuessLimits {
    /// One verification per core but one (Argon2 is CPU- and memory-bound, so more at once
    /// only slows each down, and a core is left to the requests), at least one, and a queue
    /// of two per verification.
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let concurrency = cores.saturating_sub(1).max(1);
        GuessLimits {
            argon2_concurrency: concurrency,
            argon2_queue: 2 * concurrency,
            failures_per_client: MAX_FAILURES_PER_CLIENT,
            failures_per_account: MAX_FAILURES_PER_ACCOUNT,
        }
    }
}

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

/// The IP address of a request's `source`, written `ip:port` or `[ipv6]:port` (the port may
/// be 0); a bare address is taken too. An IPv4-mapped IPv6 address is its IPv4 address.
fn ip_of(source: &str) -> Option<IpAddr> {
    let ip = match source.parse::<SocketAddr>() {
        Ok(a) => a.ip(),
        Err(_) => source.trim_matches(['[', ']']).parse::<IpAddr>().ok()?,
    };
    Some(ip.to_canonical())
}

/// The client address of `source` as people read it (the port dropped); a source that is
/// not an address (a CLI operator's name) is shown as it is.
pub fn host(source: &str) -> String {
    match ip_of(source) {
        Some(ip) => ip.to_string(),
        None => source.to_string(),
    }
}

/// The client as throttles count it: an IPv4 address, or the /64 an IPv6 address lies in,
/// since a subscriber is given a whole /64 and may pick any address inside it.
pub fn client(source: &str) -> String {
    match ip_of(source) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
        None => source.to_string(),
    }
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
    let from = client(source);
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

/// How far a key reaches, which decides whether a success forgets it, whether guesses
/// under it take turns, and what its 429 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One person's own secret (a secret ID, an administrator's password): that person's
    /// success forgets its failures.
    Personal,
    /// A name or an address on one account or endpoint: never forgotten on a success.
    Shared,
    /// Everything from one client address: never forgotten, not taken in turns.
    Client,
    /// Everybody on one account (or one form's access-code step): never forgotten, not
    /// taken in turns. The text names what is locked, with its verb, for the 429.
    Everybody(&'static str),
}

/// One counter: its scope and key in the failure table, its limit and its reach.
#[derive(Debug, Clone)]
pub struct Key {
    pub scope: Id,
    pub name: String,
    pub limit: u64,
    pub reach: Reach,
}

impl Key {
    /// A person's secret ID, wherever it is presented (form or EST).
    pub fn secret_id(email: &str) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("secret-id:{}", normalise(email)),
            limit: MAX_FAILURES,
            reach: Reach::Personal,
        }
    }

    /// A username on one EST access-code account: chosen freely by whoever holds (or
    /// guesses) the shared code, so not a person's own.
    pub fn username(account: Id, username: &str) -> Key {
        Key {
            scope: account,
            name: normalise(username),
            limit: MAX_FAILURES,
            reach: Reach::Shared,
        }
    }

    /// Access-code guesses of one signed-in person at one endpoint's form.
    pub fn web_access_code(endpoint_id: Id, email: &str) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("web-access-code:{endpoint_id}:{}", normalise(email)),
            limit: MAX_FAILURES,
            reach: Reach::Shared,
        }
    }

    /// The client address in one scope (an access-code account, the form's access codes,
    /// the administrators); `source` is `ip:port` or `[ip]:port`, the port is dropped.
    pub fn address(scope: Id, source: &str) -> Key {
        Key {
            scope,
            name: format!("addr:{}", client(source)),
            limit: MAX_FAILURES_PER_ADDRESS,
            reach: Reach::Shared,
        }
    }

    /// The client address across every account, endpoint and the administrators' sign-in.
    pub fn client(limits: &GuessLimits, source: &str) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("client:{}", client(source)),
            limit: limits.failures_per_client,
            reach: Reach::Client,
        }
    }

    /// Everybody's guesses on one EST account. The name holds a `:`, which no Basic
    /// username does (RFC 7617 §2), so it never meets a username key of the account.
    pub fn account(limits: &GuessLimits, account: Id) -> Key {
        Key {
            scope: account,
            name: "everybody:account".into(),
            limit: limits.failures_per_account,
            reach: Reach::Everybody("this account is"),
        }
    }

    /// Everybody's access-code guesses at one endpoint's form.
    pub fn endpoint_access_codes(limits: &GuessLimits, endpoint_id: Id) -> Key {
        Key {
            scope: SHARED_SCOPE,
            name: format!("everybody:web-access-code:{endpoint_id}"),
            limit: limits.failures_per_account,
            reach: Reach::Everybody("access codes on this enrollment page are"),
        }
    }

    /// Whether guesses under this key take turns (`take_turn`).
    fn in_turns(&self) -> bool {
        matches!(self.reach, Reach::Personal | Reach::Shared)
    }
}

fn too_many(key: &Key, oldest: Option<UnixTime>, now: UnixTime) -> Error {
    let retry_after = (oldest.unwrap_or(now) + WINDOW_SECS - now).max(1) as u64;
    let message = match key.reach {
        Reach::Personal | Reach::Shared => {
            format!("too many failed attempts; try again in {retry_after} seconds")
        }
        Reach::Client => format!(
            "too many failed attempts from your network address; try again in {retry_after} seconds"
        ),
        Reach::Everybody(what) => format!(
            "{what} temporarily locked for everybody after too many failed attempts; \
             try again in {retry_after} seconds"
        ),
    };
    Error::new(ErrorKind::RateLimited { retry_after }, message)
}

/// Refuses with 429 while any key is at its limit (a read); otherwise returns each key's
/// count of earlier failures.
pub async fn check(store: &Store, keys: &[Key], now: UnixTime) -> Result<Vec<u64>, Error> {
    let names: Vec<(Id, &str)> = keys.iter().map(|k| (k.scope, k.name.as_str())).collect();
    let found = store
        .recent_failures_of(&names, window_start(now, WINDOW_SECS))
        .await?;
    let mut counts = Vec::with_capacity(keys.len());
    for (key, (count, oldest)) in keys.iter().zip(found) {
        if count >= key.limit {
            return Err(too_many(key, oldest, now));
        }
        counts.push(count);
    }
    Ok(counts)
}

/// Guesses under the same key take turns in this process: each one re-reads the count
/// after the previous one was recorded, so a burst of parallel guesses cannot all slip
/// under the limit, while a burst of right secrets is not held back (the first verification
/// fills the verifier's cache and the rest pass on it). Several processes may each have one
/// guess in flight per key: the overshoot is bounded by the number of processes. The wide
/// keys are left out (module doc).
pub async fn take_turn(keys: &[Key]) -> Turn {
    let mut names: Vec<(Id, String)> = keys
        .iter()
        .filter(|k| k.in_turns())
        .map(|k| (k.scope, k.name.clone()))
        .collect();
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

/// After a success, forget the earlier failures of the personal keys among `keys` (keys
/// with none need no write). Every other key keeps its failures: knowing one shared code,
/// or one's own secret, must not reset the count of guesses at others from the same
/// address or on the same account.
pub async fn forget_failures(store: &Store, keys: &[Key], counts: &[u64]) -> Result<(), Error> {
    for (key, count) in keys.iter().zip(counts) {
        if key.reach == Reach::Personal && *count > 0 {
            store.clear_failures(key.scope, &key.name).await?;
        }
    }
    Ok(())
}

/// The slots for Argon2 verifications of one process (one per `Ra` and its clones), and
/// the short queue in front of them.
pub struct Verifications {
    running: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// A slot for one verification; it moves into the blocking task that runs Argon2, so the
/// slot stays taken until Argon2 ends, even when the request is dropped meanwhile.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Verifications {
    pub fn new(limits: &GuessLimits) -> Verifications {
        Verifications {
            running: Arc::new(tokio::sync::Semaphore::new(
                limits.argon2_concurrency.max(1),
            )),
            waiting: AtomicUsize::new(0),
            queue: limits.argon2_queue,
        }
    }

    /// A slot at once when one is free, after a wait in the queue when it has room, or
    /// 503 with `Retry-After` (the guess is not counted: it was never checked).
    pub async fn slot(&self) -> Result<Slot, Error> {
        if let Ok(p) = self.running.clone().try_acquire_owned() {
            return Ok(Slot { _permit: p });
        }
        let Some(_place) = Place::take(&self.waiting, self.queue) else {
            return Err(busy());
        };
        match self.running.clone().acquire_owned().await {
            Ok(p) => Ok(Slot { _permit: p }),
            Err(_) => Err(busy()),
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10): the thread an Argon2
/// verification runs on yields the cores to request handling whenever both want them.
pub fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling priority of the thread named by its
    // id, here the calling thread (Linux keeps nice values per thread); no memory is touched.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// A place in the queue for a slot, given back when the wait ends or is abandoned.
struct Place<'a>(&'a AtomicUsize);

impl<'a> Place<'a> {
    fn take(waiting: &'a AtomicUsize, queue: usize) -> Option<Place<'a>> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < queue).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(waiting))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn busy() -> Error {
    Error::new(
        ErrorKind::Unavailable {
            retry_after: BUSY_RETRY_AFTER_SECS,
        },
        "the server is busy checking other secrets; try again in a moment",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_verification_thread_runs_at_nice_10_and_leaves_other_threads_alone() {
        let nice = || {
            // SAFETY: getpriority only reads the calling thread's nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            yield_to_requests();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 10).min(19));
        assert_eq!(nice(), before, "the caller's own thread was lowered");
    }

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
            "addr:2001:db8::/64"
        );
        let limits = GuessLimits::default();
        assert_eq!(Key::client(&limits, "192.0.2.7:0").name, "client:192.0.2.7");
        assert_eq!(Key::account(&limits, 9).scope, 9);
    }

    #[test]
    fn ipv6_clients_are_keyed_per_64() {
        // Every address of one /64 is one client, whatever the interface part and port.
        for source in [
            "[2001:db8:1:2::1]:443",
            "[2001:db8:1:2:ffff:ffff:ffff:ffff]:0",
            "[2001:0db8:0001:0002:abcd::7]:51234",
            "2001:db8:1:2::99",
            "[2001:db8:1:2::5]",
        ] {
            assert_eq!(client(source), "2001:db8:1:2::/64", "{source}");
        }
        // The next /64 is another client.
        assert_eq!(client("[2001:db8:1:3::1]:443"), "2001:db8:1:3::/64");
        assert_eq!(client("[::1]:443"), "::/64");
        // The host as shown keeps the whole address.
        assert_eq!(host("[2001:db8:1:2::1]:443"), "2001:db8:1:2::1");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_its_ipv4_address() {
        assert_eq!(client("[::ffff:192.0.2.7]:443"), "192.0.2.7");
        assert_eq!(client("192.0.2.7:443"), "192.0.2.7");
        assert_eq!(host("[::ffff:192.0.2.7]:0"), "192.0.2.7");
        // Two IPv4 clients are two keys, as before.
        assert_ne!(client("192.0.2.7:1"), client("192.0.2.8:1"));
    }

    #[test]
    fn sources_that_are_not_addresses_are_kept_whole() {
        // The CLI and in-process callers name themselves instead of an address.
        assert_eq!(client("cli"), "cli");
        assert_eq!(host("operator"), "operator");
        // Splitting at the last colon once made this `2001:db8:` plus a "port".
        assert_eq!(host("2001:db8::1"), "2001:db8::1");
    }

    #[tokio::test]
    async fn verification_slots_queue_a_few_and_refuse_the_rest() {
        let v = Verifications::new(&GuessLimits {
            argon2_concurrency: 1,
            argon2_queue: 1,
            ..GuessLimits::default()
        });
        let first = v.slot().await.unwrap();
        // The second waits in the queue; the third finds it full and is refused at once.
        let v = Arc::new(v);
        let waiter = tokio::spawn({
            let v = v.clone();
            async move { v.slot().await.map(|_| ()) }
        });
        while v.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let e = v.slot().await.err().unwrap();
        assert_eq!(
            e.kind,
            ErrorKind::Unavailable {
                retry_after: BUSY_RETRY_AFTER_SECS
            }
        );
        drop(first);
        waiter.await.unwrap().unwrap();
        // An abandoned wait gives its place back.
        let held = v.slot().await.unwrap();
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(10), v.slot());
        assert!(abandoned.await.is_err());
        assert_eq!(v.waiting.load(Ordering::Acquire), 0);
        drop(held);
        v.slot().await.unwrap();
    }
}
