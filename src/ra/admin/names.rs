//! Names for the command line, which shows and takes names, not numeric ids: resolving a
//! name to its object within the caller's scope, and an id to a label for listings.

use super::scope::unseen;
use super::Caller;
use crate::domain::{Department, Id, Organisation};
use crate::error::Error;
use crate::ra::Ra;

impl Ra {
    pub async fn organisation_named(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Organisation, Error> {
        match self.store.organisation_by_name(name.trim()).await {
            Ok(o) if caller.principal.sees_organisation(o.id) => Ok(o),
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
                Err(unseen(&format!("organisation {name:?}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn department_named(
        &self,
        caller: &Caller,
        organisation_id: Id,
        name: &str,
    ) -> Result<Department, Error> {
        match self
            .store
            .department_by_name(organisation_id, name.trim())
            .await
        {
            Ok(d) if caller.principal.sees_organisation(organisation_id) => Ok(d),
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
                Err(unseen(&format!("department {name:?}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `name` of an organisation, or `#id` when it is gone.
    pub async fn organisation_label(&self, id: Id) -> String {
        self.store
            .organisation(id)
            .await
            .map(|o| o.name)
            .unwrap_or_else(|_| format!("#{id}"))
    }

    /// `organisation/department`, or `#id` when it is gone.
    pub async fn department_label(&self, id: Id) -> String {
        match self.store.department(id).await {
            Ok(d) => format!(
                "{}/{}",
                self.organisation_label(d.organisation_id).await,
                d.name
            ),
            Err(_) => format!("#{id}"),
        }
    }
}
