//! What each role reaches (DESIGN.md: admin). A role that may not see an object gets
//! `404`, so nobody learns it exists; one that sees it but may not change it gets `403`.

use super::{Caller, Principal};
use crate::domain::{Id, Person, Role};
use crate::error::Error;

/// An object out of the caller's sight, told apart from nothing.
pub fn unseen(what: &str) -> Error {
    Error::not_found(format!("{what} not found"))
}

pub fn refused(why: &str) -> Error {
    Error::forbidden(why.to_string())
}

impl Principal {
    pub fn is_mrao(&self) -> bool {
        self.role == Role::Mrao
    }

    /// The organisation itself (its name and domains): MRAO, its RAOs, and DRAOs of one
    /// of its departments.
    pub fn sees_organisation(&self, org: Id) -> bool {
        match self.role {
            Role::Mrao => true,
            Role::Rao => self.organisations.contains(&org),
            Role::Drao => self.departments.iter().any(|(o, _)| *o == org),
        }
    }

    /// Everything inside an organisation: MRAO and its RAOs.
    pub fn manages_organisation(&self, org: Id) -> bool {
        match self.role {
            Role::Mrao => true,
            Role::Rao => self.organisations.contains(&org),
            Role::Drao => false,
        }
    }

    /// A department (or, with `None`, the part of an organisation outside departments).
    pub fn manages_department(&self, org: Id, dept: Option<Id>) -> bool {
        match self.role {
            Role::Mrao => true,
            Role::Rao => self.organisations.contains(&org),
            Role::Drao => dept.is_some_and(|d| self.departments.contains(&(org, d))),
        }
    }

    pub fn manages_person(&self, p: &Person) -> bool {
        self.manages_department(p.organisation_id, p.department_id)
    }

    /// Organisations this principal is limited to (`None`: all), for list filters.
    pub fn organisation_filter(&self) -> Option<Vec<Id>> {
        match self.role {
            Role::Mrao => None,
            Role::Rao => Some(self.organisations.clone()),
            Role::Drao => {
                let mut orgs: Vec<Id> = self.departments.iter().map(|(o, _)| *o).collect();
                orgs.sort();
                orgs.dedup();
                Some(orgs)
            }
        }
    }

    /// Departments this principal is limited to (`None`: not limited by department).
    pub fn department_filter(&self) -> Option<Vec<Id>> {
        match self.role {
            Role::Drao => Some(self.departments.iter().map(|(_, d)| *d).collect()),
            _ => None,
        }
    }
}

impl Caller {
    /// Refuses unless the caller is an MRAO; `what` names the resource for the message.
    pub fn require_mrao(&self, what: &str) -> Result<(), Error> {
        if self.principal.is_mrao() {
            Ok(())
        } else {
            Err(refused(&format!("only an MRAO may change {what}")))
        }
    }

    /// Endpoints, accounts and profiles are not a DRAO's: its list of them is refused.
    pub fn require_not_drao(&self, what: &str) -> Result<(), Error> {
        if self.principal.role == Role::Drao {
            Err(refused(&format!("a DRAO does not administer {what}")))
        } else {
            Ok(())
        }
    }
}
