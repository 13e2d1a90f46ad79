//! Administration: who the administrator is (`Principal`), what its role lets it reach
//! (`scope.rs`), and the verbs the JSON API, the console and the CLI all call. Policy lives
//! here once; front ends only translate.

mod accounts;
mod admins;
mod audit;
mod auth;
mod certificates;
#[cfg(test)]
mod certs_tests;
mod endpoints;
mod import;
mod names;
mod orders;
mod organisations;
mod persons;
mod profiles;
mod scope;
#[cfg(test)]
mod setup_tests;

#[cfg(test)]
mod people_tests;

use crate::domain::{Actor, Admin, Id, Role};
pub use crate::store::AdminChanges;
use crate::store::AuditEntry;

pub use crate::store::{OrganisationChanges, PersonChanges};
pub use accounts::{
    check_access_code, check_est_label, AccountChanges, AccountRequest, AccountSaved,
};
pub use admins::{AdminRequest, MIN_ADMIN_PASSWORD};
pub use audit::{audit_event_json, AuditFilter, ChainReport};
pub use auth::{
    base32, totp_code, ApiKeyCreated, SealKey, SessionCreated, TotpEnrolment, API_KEY_MAX_DAYS,
    SESSION_IDLE_SECS, SESSION_MAX_SECS,
};
pub use certificates::{CertificateDetails, CertificateQuery};
pub use endpoints::{
    check_help_link_target, check_uri_extension, EndpointChanges, EndpointRequest,
};
pub use import::{ImportLineError, ImportOutcome, ImportReport, MAX_IMPORT_BYTES};
pub use orders::{OrderDetails, OrderQuery};
pub use organisations::OrganisationRequest;
pub use persons::{
    PersonAdded, PersonQuery, PersonRequest, PersonRetired, SecretIdChoice, MIN_SECRET_ID,
};
pub use profiles::{check_profile, ProfileChanges, ProfileRequest, MAX_TERM_YEARS};

/// An authenticated administrator: its role and the objects that role reaches.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `None` for the operator at the server's command line (bootstrap).
    pub admin_id: Option<Id>,
    /// As the audit trail records it: `admin:<email>`, `api-key:<id> (<email>)`, `cli:<name>`.
    pub name: String,
    pub role: Role,
    /// RAO: its organisations.
    pub organisations: Vec<Id>,
    /// DRAO: its departments, each with its organisation.
    pub departments: Vec<(Id, Id)>,
}

/// One administrative request: who, from where, and its request id.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub source: String,
    pub request_id: Option<String>,
}

impl Caller {
    /// The operator at the command line on the server: an MRAO by having the database.
    pub fn operator(name: &str) -> Caller {
        let actor = Actor::operator(name);
        Caller {
            principal: Principal {
                admin_id: None,
                name: actor.name,
                role: Role::Mrao,
                organisations: Vec::new(),
                departments: Vec::new(),
            },
            source: actor.source,
            request_id: None,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            name: self.principal.name.clone(),
            source: self.source.clone(),
            role: Some(self.principal.role),
            request_id: self.request_id.clone(),
        }
    }

    /// An audit event by this caller about `object`, placed in an organisation and
    /// department so scoped administrators see it.
    pub fn audit(
        &self,
        action: &str,
        object: String,
        organisation_id: Option<Id>,
        department_id: Option<Id>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.actor(),
            action: action.to_string(),
            object,
            detail: String::new(),
            before: None,
            after: None,
            organisation_id,
            department_id,
        }
    }
}

impl Principal {
    /// The principal of a stored administrator, named as the audit trail shows it.
    pub fn of(admin: &Admin, name: String, departments: Vec<(Id, Id)>) -> Principal {
        Principal {
            admin_id: Some(admin.id),
            name,
            role: admin.role,
            organisations: admin.organisation_ids.clone(),
            departments,
        }
    }
}

/// JSON of a value for an audit event's before/after.
pub(crate) fn snapshot(v: &serde_json::Value) -> Option<String> {
    Some(v.to_string())
}

pub use crate::store::Idempotent as IdempotentStart;

impl crate::ra::Ra {
    /// Idempotency records are per administrator (or operator name).
    fn idempotency_owner(caller: &Caller) -> String {
        match caller.principal.admin_id {
            Some(id) => format!("admin:{id}"),
            None => caller.principal.name.clone(),
        }
    }

    pub async fn begin_idempotent(
        &self,
        caller: &Caller,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotentStart, crate::error::Error> {
        Ok(self
            .store
            .begin_idempotent(
                &Self::idempotency_owner(caller),
                key,
                request_hash,
                self.clock.now(),
            )
            .await?)
    }

    pub async fn finish_idempotent(
        &self,
        caller: &Caller,
        key: &str,
        answer: Option<(u16, &str)>,
    ) -> Result<(), crate::error::Error> {
        Ok(self
            .store
            .finish_idempotent(&Self::idempotency_owner(caller), key, answer)
            .await?)
    }
}
