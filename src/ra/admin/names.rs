//! Names for the command line, which shows and takes names, not numeric ids: resolving a
//! name to its object within the caller's scope, and an id to a label for listings.

use super::scope::unseen;
use super::Caller;
use crate::domain::{
    Account, Department, EmailAddress, Endpoint, Id, Organisation, Person, Profile,
};
use crate::error::{Error, ErrorKind};
use crate::ra::Ra;

impl Ra {
    pub async fn organisation_named(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Organisation, Error> {
        // The name finds the row; whether the caller sees it is `organisation_in_sight`'s
        // one rule. Out of sight reads as unknown, under the name asked for.
        let unknown = || unseen(&format!("organisation {name:?}"));
        match self.store.organisation_by_name(name.trim()).await {
            Ok(o) => self.organisation_in_sight(caller, o.id).await.map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    unknown()
                } else {
                    e
                }
            }),
            Err(crate::store::StoreError::NotFound(_)) => Err(unknown()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn department_named(
        &self,
        caller: &Caller,
        organisation_id: Id,
        name: &str,
    ) -> Result<Department, Error> {
        // As for organisations: `department_in_sight` decides who sees it (a DRAO only
        // its own departments, not every department of its organisation).
        let unknown = || unseen(&format!("department {name:?}"));
        match self
            .store
            .department_by_name(organisation_id, name.trim())
            .await
        {
            Ok(d) => self.department_in_sight(caller, d.id).await.map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    unknown()
                } else {
                    e
                }
            }),
            Err(crate::store::StoreError::NotFound(_)) => Err(unknown()),
            Err(e) => Err(e.into()),
        }
    }

    /// A live endpoint the caller manages, by name: in `organisation`, or without one, the
    /// only endpoint of that name in sight. Names are unique per organisation only, so a
    /// name several organisations use is refused, naming them, never picked at random.
    pub async fn endpoint_named(
        &self,
        caller: &Caller,
        organisation: Option<Id>,
        name: &str,
    ) -> Result<Endpoint, Error> {
        let name = name.trim();
        let found = self
            .endpoints(caller, organisation)
            .await?
            .into_iter()
            .filter(|e| e.name == name)
            .collect();
        self.the_one("endpoint", name, found, |e| e.organisation_id)
            .await
    }

    /// A live account the caller manages, by name, as `endpoint_named` finds endpoints.
    pub async fn account_named(
        &self,
        caller: &Caller,
        organisation: Option<Id>,
        name: &str,
    ) -> Result<Account, Error> {
        let name = name.trim();
        let found = self
            .accounts(caller, organisation, None)
            .await?
            .into_iter()
            .filter(|a| a.name == name)
            .collect();
        self.the_one("account", name, found, |a| a.organisation_id)
            .await
    }

    /// A profile by name (profile names are unique), for those who see profiles.
    pub async fn profile_named(&self, caller: &Caller, name: &str) -> Result<Profile, Error> {
        caller.require_not_drao("profiles")?;
        match self.store.profile_by_name(name.trim()).await {
            Ok(p) => Ok(p),
            Err(crate::store::StoreError::NotFound(_)) => Err(unseen(&format!("profile {name:?}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// A person the caller reaches, by email address (deleted persons have none).
    pub async fn person_by_email(&self, caller: &Caller, email: &str) -> Result<Person, Error> {
        let addr = EmailAddress::parse(email.trim())
            .ok_or_else(|| Error::invalid("email", format!("{email:?} is not an email address")))?;
        match self.store.person_by_email(&addr).await? {
            Some(p) if caller.principal.manages_person(&p) => Ok(p),
            _ => Err(unseen(&format!("person {addr}"))),
        }
    }

    /// The one object of `found`; none is unseen, several are refused naming their
    /// organisations.
    async fn the_one<T>(
        &self,
        what: &str,
        name: &str,
        mut found: Vec<T>,
        organisation_of: impl Fn(&T) -> Id,
    ) -> Result<T, Error> {
        if found.len() > 1 {
            let mut orgs = Vec::new();
            for x in &found {
                orgs.push(format!(
                    "{:?}",
                    self.organisation_label(organisation_of(x)).await
                ));
            }
            return Err(Error::invalid(
                "organisation",
                format!(
                    "several organisations have an {what} named {name:?} ({}): name the \
                     organisation",
                    orgs.join(", ")
                ),
            ));
        }
        found
            .pop()
            .ok_or_else(|| unseen(&format!("{what} {name:?}")))
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
