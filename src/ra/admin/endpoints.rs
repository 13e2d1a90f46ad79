//! Enrollment endpoints: the form (and its EST accounts) of one organisation, reached at an
//! unguessable URI extension. An MRAO and the organisation's RAOs manage them; anybody else
//! does not learn they exist. Deleting is soft, and refused while accounts remain.

use serde_json::json;

use super::profiles::check_name;
use super::scope::unseen;
use super::{snapshot, Caller};
use crate::domain::{generate_secret, AuthType, Endpoint, Id, Role, SECRET_LEN};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{NewEndpoint, StoreError};

/// A URI extension must be unguessable (DESIGN.md: ≥ 20 characters, base62).
pub const MIN_URI_EXTENSION: usize = 20;
pub const MAX_URI_EXTENSION: usize = 64;
/// Help and EULA texts are shown on the form; they are not documents.
pub const MAX_TEXT_CHARS: usize = 20_000;

#[derive(Debug, Clone)]
pub struct EndpointRequest {
    pub organisation_id: Id,
    pub name: String,
    pub auth_types: Vec<AuthType>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    pub eula_text: String,
    /// Generated when not given.
    pub uri_extension: Option<String>,
}

/// An endpoint edit: `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub name: Option<String>,
    pub auth_types: Option<Vec<AuthType>>,
    pub help_link_text: Option<String>,
    pub help_link_target: Option<String>,
    pub help_text: Option<String>,
    pub eula_text: Option<String>,
    pub uri_extension: Option<String>,
}

/// The form links to the help target: only web pages and mail addresses, nothing a
/// browser would run.
pub fn check_help_link_target(target: &str) -> Result<(), Error> {
    let t = target.trim();
    if t.is_empty()
        || t.starts_with("https://")
        || t.starts_with("http://")
        || t.starts_with("mailto:")
    {
        Ok(())
    } else {
        Err(Error::invalid(
            "help_link_target",
            "the help link target must be an https://, http:// or mailto: address",
        ))
    }
}

pub fn check_uri_extension(ext: &str) -> Result<(), Error> {
    if !(MIN_URI_EXTENSION..=MAX_URI_EXTENSION).contains(&ext.len())
        || !ext.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::invalid(
            "uri_extension",
            format!(
                "a URI extension is {MIN_URI_EXTENSION} to {MAX_URI_EXTENSION} letters and \
                 digits (base62), so that it cannot be guessed"
            ),
        ));
    }
    Ok(())
}

fn check_endpoint(e: &NewEndpoint) -> Result<(), Error> {
    check_name("name", &e.name)?;
    if e.auth_types.is_empty() {
        return Err(Error::invalid(
            "auth_types",
            "give one or more authentication types",
        ));
    }
    for (i, a) in e.auth_types.iter().enumerate() {
        if e.auth_types[..i].contains(a) {
            return Err(Error::invalid(
                &format!("auth_types[{i}]"),
                format!("authentication type {a} is listed twice"),
            ));
        }
    }
    check_help_link_target(&e.help_link_target)?;
    for (field, text) in [
        ("help_link_text", &e.help_link_text),
        ("help_text", &e.help_text),
        ("eula_text", &e.eula_text),
    ] {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(
                field,
                format!("at most {MAX_TEXT_CHARS} characters"),
            ));
        }
    }
    check_uri_extension(&e.uri_extension)
}

fn endpoint_json(e: &NewEndpoint) -> serde_json::Value {
    json!({
        "organisation": e.organisation_id,
        "name": e.name,
        "uri_extension": e.uri_extension,
        "auth_types": e.auth_types.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "help_link_text": e.help_link_text,
        "help_link_target": e.help_link_target,
        "help_text": e.help_text,
        "eula_text": e.eula_text,
    })
}

fn as_new(e: &Endpoint) -> NewEndpoint {
    NewEndpoint {
        organisation_id: e.organisation_id,
        name: e.name.clone(),
        uri_extension: e.uri_extension.clone(),
        auth_types: e.auth_types.clone(),
        help_link_text: e.help_link_text.clone(),
        help_link_target: e.help_link_target.clone(),
        help_text: e.help_text.clone(),
        eula_text: e.eula_text.clone(),
    }
}

impl Ra {
    /// The full URL of an endpoint's enrollment form.
    pub fn enrollment_url(&self, e: &Endpoint) -> String {
        format!(
            "{}/enroll/{}",
            self.public_url.trim_end_matches('/'),
            e.uri_extension
        )
    }

    /// A live endpoint the caller manages; anything else is unseen.
    pub(super) async fn reach_endpoint(&self, caller: &Caller, id: Id) -> Result<Endpoint, Error> {
        if caller.principal.role == Role::Drao {
            return Err(unseen("endpoint"));
        }
        let e = match self.store.live_endpoint(id).await {
            Ok(e) => e,
            Err(StoreError::NotFound(_)) => return Err(unseen("endpoint")),
            Err(e) => return Err(e.into()),
        };
        if !caller.principal.manages_organisation(e.organisation_id) {
            return Err(unseen("endpoint"));
        }
        Ok(e)
    }

    /// Refuses a name another live endpoint of the organisation has, naming it.
    async fn check_endpoint_name_free(
        &self,
        org: Id,
        name: &str,
        own: Option<Id>,
    ) -> Result<(), Error> {
        match self.store.live_endpoint_named(org, name).await? {
            Some(other) if Some(other.id) != own => Err(Error::conflict(format!(
                "endpoint {} {:?} of this organisation already has this name",
                other.id, other.name
            ))
            .at("name")),
            _ => Ok(()),
        }
    }

    async fn check_extension_free(&self, ext: &str, own: Option<Id>) -> Result<(), Error> {
        match self.store.endpoint_holding_extension(ext).await? {
            Some(other) if Some(other.id) != own => Err(Error::conflict(
                "this URI extension is taken by another endpoint; choose another or let one \
                 be generated",
            )
            .at("uri_extension")),
            _ => Ok(()),
        }
    }

    pub async fn add_endpoint(
        &self,
        caller: &Caller,
        r: EndpointRequest,
    ) -> Result<Endpoint, Error> {
        caller.require_not_drao("endpoints")?;
        let org = r.organisation_id;
        if !caller.principal.manages_organisation(org)
            || self.store.organisation(org).await.is_err()
        {
            return Err(Error::invalid(
                "organisation",
                format!("no organisation {org}"),
            ));
        }
        let new = NewEndpoint {
            organisation_id: org,
            name: r.name.trim().to_string(),
            uri_extension: r
                .uri_extension
                .unwrap_or_else(|| generate_secret(SECRET_LEN).expose().to_string()),
            auth_types: r.auth_types,
            help_link_text: r.help_link_text,
            help_link_target: r.help_link_target.trim().to_string(),
            help_text: r.help_text,
            eula_text: r.eula_text,
        };
        check_endpoint(&new)?;
        self.check_endpoint_name_free(org, &new.name, None).await?;
        self.check_extension_free(&new.uri_extension, None).await?;
        let mut audit = caller.audit("endpoint.create", String::new(), Some(org), None);
        audit.after = snapshot(&endpoint_json(&new));
        self.store
            .add_endpoint(&new, &audit, self.clock.now())
            .await
            .map_err(|e| taken(e, &new.name))
    }

    /// Live endpoints the caller manages, optionally of one organisation.
    pub async fn endpoints(
        &self,
        caller: &Caller,
        organisation: Option<Id>,
    ) -> Result<Vec<Endpoint>, Error> {
        caller.require_not_drao("endpoints")?;
        let scope = caller.principal.organisation_filter();
        let orgs: Option<Vec<Id>> = match (organisation, scope) {
            (Some(o), Some(s)) => Some(s.into_iter().filter(|x| *x == o).collect()),
            (Some(o), None) => Some(vec![o]),
            (None, s) => s,
        };
        Ok(self.store.live_endpoints(orgs.as_deref()).await?)
    }

    pub async fn managed_endpoint(&self, caller: &Caller, id: Id) -> Result<Endpoint, Error> {
        self.reach_endpoint(caller, id).await
    }

    pub async fn edit_endpoint(
        &self,
        caller: &Caller,
        id: Id,
        expected_version: Option<i64>,
        c: EndpointChanges,
    ) -> Result<Endpoint, Error> {
        let before = self.reach_endpoint(caller, id).await?;
        let old = as_new(&before);
        let new = NewEndpoint {
            organisation_id: old.organisation_id,
            name: c
                .name
                .map(|n| n.trim().to_string())
                .unwrap_or(old.name.clone()),
            uri_extension: c.uri_extension.unwrap_or(old.uri_extension.clone()),
            auth_types: c.auth_types.unwrap_or(old.auth_types.clone()),
            help_link_text: c.help_link_text.unwrap_or(old.help_link_text.clone()),
            help_link_target: c
                .help_link_target
                .map(|t| t.trim().to_string())
                .unwrap_or(old.help_link_target.clone()),
            help_text: c.help_text.unwrap_or(old.help_text.clone()),
            eula_text: c.eula_text.unwrap_or(old.eula_text.clone()),
        };
        check_endpoint(&new)?;
        self.check_endpoint_name_free(new.organisation_id, &new.name, Some(id))
            .await?;
        self.check_extension_free(&new.uri_extension, Some(id))
            .await?;
        self.replace_endpoint(caller, &before, expected_version, new, "endpoint.edit")
            .await
    }

    /// A fresh URI extension ("Generate"): the old form address stops working.
    pub async fn regenerate_uri_extension(
        &self,
        caller: &Caller,
        id: Id,
    ) -> Result<Endpoint, Error> {
        let before = self.reach_endpoint(caller, id).await?;
        let mut new = as_new(&before);
        new.uri_extension = generate_secret(SECRET_LEN).expose().to_string();
        self.replace_endpoint(
            caller,
            &before,
            Some(before.version),
            new,
            "endpoint.uri-extension",
        )
        .await
    }

    async fn replace_endpoint(
        &self,
        caller: &Caller,
        before: &Endpoint,
        expected_version: Option<i64>,
        new: NewEndpoint,
        action: &str,
    ) -> Result<Endpoint, Error> {
        let id = before.id;
        let mut audit = caller.audit(
            action,
            format!("endpoint {id}"),
            Some(before.organisation_id),
            None,
        );
        audit.before = snapshot(&endpoint_json(&as_new(before)));
        audit.after = snapshot(&endpoint_json(&new));
        self.store
            .replace_endpoint(id, expected_version, &new, &audit, self.clock.now())
            .await
            .map_err(|e| taken(e, &new.name))
    }

    /// Deletes an endpoint without live accounts; its form stops being served.
    pub async fn remove_endpoint(&self, caller: &Caller, id: Id) -> Result<(), Error> {
        let before = self.reach_endpoint(caller, id).await?;
        let accounts = self.store.live_account_count(id).await?;
        if accounts > 0 {
            return Err(Error::conflict(format!(
                "endpoint {id} {:?} still has {accounts} account(s); delete them first",
                before.name
            )));
        }
        let mut audit = caller.audit(
            "endpoint.delete",
            format!("endpoint {id}"),
            Some(before.organisation_id),
            None,
        );
        audit.before = snapshot(&endpoint_json(&as_new(&before)));
        self.store
            .remove_endpoint(id, &audit, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    Error::conflict("an account was added to the endpoint meanwhile; it stays")
                }
                e => e.into(),
            })
    }
}

/// A unique clash the pre-checks missed (a concurrent change).
fn taken(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Conflict(_) => Error::conflict(format!(
            "an endpoint named {name:?} or with this URI extension already exists"
        )),
        e => e.into(),
    }
}
