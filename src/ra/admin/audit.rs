//! Reading the audit trail: events within the caller's scope (an RAO the events placed in
//! its organisations, a DRAO those of its departments), the chain's verification (MRAO),
//! and the JSON-lines export that `estgate audit export` writes. The CLI and the API call
//! these same verbs.

use serde_json::json;

use super::scope::{refused, unseen};
use super::Caller;
use crate::domain::{AuditEvent, Id, Role, UnixTime};
use crate::error::Error;
use crate::ra::Ra;
pub use crate::store::{AuditFilter, ChainReport};

/// Events read per query while exporting.
const EXPORT_BATCH: u64 = 1000;

/// One event as a JSON object with every stored field, the chain's included, so that an
/// exported trail can be checked again elsewhere (`chain_hash` in store/audit.rs says how
/// the hash is formed; `before` and `after` stay the exact strings that were hashed).
pub fn audit_event_json(e: &AuditEvent) -> serde_json::Value {
    json!({
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "role": e.role.map(Role::as_str),
        "action": e.action,
        "object": e.object,
        "detail": e.detail,
        "before": e.before,
        "after": e.after,
        "source": e.source,
        "request_id": e.request_id,
        "organisation_id": e.organisation_id,
        "department_id": e.department_id,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// The caller's own narrowing kept only where its scope reaches.
fn within(asked: Option<Vec<Id>>, scope: Option<Vec<Id>>) -> Option<Vec<Id>> {
    match (asked, scope) {
        (None, s) => s,
        (Some(a), None) => Some(a),
        (Some(a), Some(s)) => Some(a.into_iter().filter(|x| s.contains(x)).collect()),
    }
}

impl Ra {
    /// A page of events in chain order (`filter.after_seq` is the cursor: the last seq of
    /// the page before), limited to the caller's scope whatever the filter asks: at most
    /// `filter.limit + 1`, so that a front end can tell whether another page follows.
    pub async fn audit_events(
        &self,
        caller: &Caller,
        mut filter: AuditFilter,
    ) -> Result<Vec<AuditEvent>, Error> {
        let p = &caller.principal;
        match p.role {
            Role::Mrao => {}
            Role::Rao => {
                filter.organisations = within(filter.organisations, Some(p.organisations.clone()))
            }
            Role::Drao => {
                filter.organisations = within(filter.organisations, p.organisation_filter());
                filter.departments = within(filter.departments, p.department_filter());
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err(Error::invalid("until", "until must be later than since"));
            }
        }
        filter.limit = filter.limit.saturating_add(1);
        Ok(self.store.audit_events(&filter).await?)
    }

    /// Walks the whole chain and reports the first removed, altered or reordered event.
    /// Only an MRAO: the chain spans every organisation.
    pub async fn verify_audit(&self, caller: &Caller) -> Result<ChainReport, Error> {
        if !caller.principal.is_mrao() {
            return Err(refused("only an MRAO verifies the whole audit trail"));
        }
        Ok(self.store.verify_audit_chain().await?)
    }

    /// The events since `since` (of one organisation, with `org`) within the caller's
    /// scope, in chain order, one JSON object per line (`audit_event_json`). An
    /// organisation the caller cannot see is `404`.
    pub async fn export_audit(
        &self,
        caller: &Caller,
        since: Option<UnixTime>,
        org: Option<Id>,
    ) -> Result<Vec<String>, Error> {
        if let Some(o) = org {
            if !caller.principal.sees_organisation(o) {
                return Err(unseen("organisation"));
            }
        }
        let mut out = Vec::new();
        let mut after_seq = None;
        loop {
            let filter = AuditFilter {
                after_seq,
                since,
                organisations: org.map(|o| vec![o]),
                limit: EXPORT_BATCH - 1,
                ..Default::default()
            };
            let page = self.audit_events(caller, filter).await?;
            let Some(last) = page.last() else { break };
            after_seq = Some(last.seq);
            let full = page.len() as u64 == EXPORT_BATCH;
            out.extend(page.iter().map(|e| audit_event_json(e).to_string()));
            if !full {
                break;
            }
        }
        Ok(out)
    }
}
