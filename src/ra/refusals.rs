//! Refusals in the audit trail (DESIGN.md: audit). Three kinds are written:
//! - a request refused by policy once its requester proved who it is (an EST enrollment, a
//!   re-enrollment, a form submission, a sign-in of a disabled person): `<action>.refused`;
//! - a throttle key reaching its limit, which is where guessing turns into a lockout:
//!   `auth.locked`, once per key and window (failed guesses themselves are counted by the
//!   throttle, not written one by one, so nobody unauthenticated decides how much is written);
//! - an administrator's request answered 403 or 404: `admin.refused`.
//!
//! Repeats coalesce, so that a client stuck in a loop cannot grow the chain (and hold its
//! head row) at its own pace: the same refusal of the same actor is written at most once per
//! `COALESCE_SECS`, and the next one written says how many like it were skipped in between.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use super::{throttle, Ra};
use crate::domain::{Account, Actor, Endpoint, Id, UnixTime};
use crate::error::{Error, ErrorKind};
use crate::store::AuditEntry;

pub const COALESCE_SECS: i64 = 60;
/// Distinct refusals remembered at once; beyond it, ones older than the window are forgotten.
const MAX_TRACKED: usize = 4096;

/// Which refusals were written recently, per process.
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    written_at: UnixTime,
    skipped: u64,
}

impl RefusalLog {
    /// `Some(skipped)` when this refusal is to be written now (with the number of like ones
    /// skipped since the last written), `None` when it is a repeat within the window.
    pub fn admit(&self, key: &str, now: UnixTime) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = seen.get_mut(key) {
            if now < s.written_at + COALESCE_SECS {
                s.skipped += 1;
                return None;
            }
            let skipped = s.skipped;
            *s = Seen {
                written_at: now,
                skipped: 0,
            };
            return Some(skipped);
        }
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, s| now < s.written_at + COALESCE_SECS);
        }
        seen.insert(
            key.to_string(),
            Seen {
                written_at: now,
                skipped: 0,
            },
        );
        Some(0)
    }
}

/// Who was refused, for what, and where the event belongs.
pub(crate) struct Refusal {
    pub actor: Actor,
    /// `enroll`, `serverkeygen`, `reenroll`, `web.sign-in`, `web.enroll`, `admin`.
    pub action: &'static str,
    pub object: String,
    pub organisation_id: Option<Id>,
    pub department_id: Option<Id>,
    /// Added to the event's detail but not to what makes two refusals alike (a path whose
    /// id differs from request to request).
    pub note: String,
}

impl Refusal {
    /// A request on an EST account by the identity it claims.
    pub fn on_account(action: &'static str, account: &Account, who: &str, source: &str) -> Self {
        let object = format!("account {}", account.id);
        let mut r = Refusal::by(who, source, action, object, account.organisation_id);
        r.department_id = account.department_id;
        r
    }

    /// A request at an enrollment form's endpoint by the (signed-in) person.
    pub fn at_endpoint(action: &'static str, endpoint: &Endpoint, who: &str, source: &str) -> Self {
        let object = format!("endpoint {}", endpoint.id);
        Refusal::by(who, source, action, object, endpoint.organisation_id)
    }

    fn by(who: &str, source: &str, action: &'static str, object: String, org: Id) -> Self {
        Refusal {
            actor: Actor {
                name: who.to_string(),
                source: source.to_string(),
                ..Default::default()
            },
            action,
            object,
            organisation_id: Some(org),
            department_id: None,
            note: String::new(),
        }
    }
}

/// The refusals worth an audit event: policy said no to an authenticated requester.
/// Authentication failures (401), throttling (429) and malformed requests (400) are not.
fn is_policy_refusal(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Forbidden | ErrorKind::BadCsr)
}

impl Ra {
    /// Runs `work`; a policy refusal it ends in is written to the audit trail.
    pub(crate) async fn refusals_audited<T>(
        &self,
        refusal: Refusal,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let result = work.await;
        if let Err(e) = &result {
            self.record_if_refused(refusal, e).await;
        }
        result
    }

    /// Writes the refusal when `e` is a policy refusal (not a 401, 429 or malformed request).
    pub(crate) async fn record_if_refused(&self, refusal: Refusal, e: &Error) {
        if is_policy_refusal(e) {
            self.record_refusal(refusal, &e.message).await;
        }
    }

    /// Writes `<action>.refused`, coalesced. Never fails the request it describes: the
    /// request is refused either way, and a trail that cannot be written is logged.
    pub(crate) async fn record_refusal(&self, refusal: Refusal, reason: &str) {
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            refusal.actor.name, refusal.action, refusal.object, reason
        );
        let now = self.clock.now();
        let Some(skipped) = self.refusals.admit(&key, now) else {
            return;
        };
        let mut detail = reason.to_string();
        if !refusal.note.is_empty() {
            detail = format!("{detail}; {}", refusal.note);
        }
        if skipped > 0 {
            detail = format!("{detail} (and {skipped} more like it since the last one recorded)");
        }
        let entry = AuditEntry {
            actor: refusal.actor,
            action: format!("{}.refused", refusal.action),
            object: refusal.object,
            detail,
            organisation_id: refusal.organisation_id,
            department_id: refusal.department_id,
            ..Default::default()
        };
        if let Err(e) = self.store.audit(&entry, now).await {
            tracing::warn!(action = %entry.action, "could not record a refusal: {e}");
        }
    }

    /// An administrator's request answered `status` (403 or 404): `route` is the method and
    /// the route's template, `path` the path asked for. Placed outside any organisation, so
    /// MRAOs see it.
    pub async fn record_admin_refusal(
        &self,
        caller: &super::admin::Caller,
        route: &str,
        path: &str,
        status: u16,
        reason: &str,
    ) {
        let refusal = Refusal {
            actor: caller.actor(),
            action: "admin",
            object: route.to_string(),
            organisation_id: None,
            department_id: None,
            note: format!("{status} for {path}"),
        };
        self.record_refusal(refusal, reason).await;
    }

    /// `auth.locked` for each key this failure brought to its limit (`counts`: the keys'
    /// failures before it). Placed in the account's organisation for account keys.
    pub(super) async fn record_lockouts(
        &self,
        keys: &[throttle::Key],
        counts: &[u64],
        source: &str,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        for (key, count) in keys.iter().zip(counts) {
            if count + 1 != key.limit {
                continue;
            }
            let account = match key.scope {
                id if id > 0 => self.store.account(id).await.ok(),
                _ => None,
            };
            let entry = AuditEntry {
                actor: Actor {
                    name: key.name.clone(),
                    source: source.to_string(),
                    ..Default::default()
                },
                action: "auth.locked".into(),
                object: match &account {
                    Some(a) => format!("account {}", a.id),
                    None => String::new(),
                },
                detail: format!(
                    "{} failed attempts within {} minutes; further attempts are refused until the oldest ages out",
                    key.limit,
                    throttle::WINDOW_SECS / 60
                ),
                organisation_id: account.as_ref().map(|a| a.organisation_id),
                department_id: account.as_ref().and_then(|a| a.department_id),
                ..Default::default()
            };
            self.store.audit(&entry, now).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_counted_into_the_next_write() {
        let log = RefusalLog::default();
        assert_eq!(log.admit("a", 1000), Some(0));
        assert_eq!(log.admit("a", 1001), None);
        assert_eq!(log.admit("a", 1000 + COALESCE_SECS - 1), None);
        assert_eq!(log.admit("b", 1001), Some(0), "another refusal is its own");
        assert_eq!(log.admit("a", 1000 + COALESCE_SECS), Some(2));
        assert_eq!(log.admit("a", 1000 + COALESCE_SECS + 1), None);
    }

    #[test]
    fn the_memory_is_bounded() {
        let log = RefusalLog::default();
        for i in 0..MAX_TRACKED {
            log.admit(&i.to_string(), 0);
        }
        log.admit("late", COALESCE_SECS);
        let len = log.seen.lock().unwrap().len();
        assert_eq!(len, 1, "the expired ones were forgotten");
    }
}
