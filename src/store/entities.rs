//! sea-orm entities, private to the store. Table and column names match
//! `estgate-migrations` (which names them with its own identifiers).

macro_rules! entity {
    ($module:ident, $table:literal, { $($field:tt)* }) => {
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model { $($field)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

entity!(organisation, "organisation", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub organization_identifier: Option<String>,
    pub version: i64,
});

entity!(domain, "domain", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: i64,
    pub name: String,
    pub verified: bool,
});

entity!(department, "department", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: i64,
    pub name: String,
    pub version: i64,
});

entity!(person, "person", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: i64,
    pub department_id: Option<i64>,
    pub email: String,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub secret_id_hash: Option<String>,
    pub created_at: i64,
    pub version: i64,
    pub disabled_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub deleted_email: Option<String>,
});

entity!(profile, "profile", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub subject_source: String,
    pub key_types: String,
    pub default_key_type: String,
    pub terms_years: String,
    pub default_term_years: i32,
    pub requires_approval: bool,
    pub smime_validation: Option<String>,
    pub smime_generation: Option<String>,
    pub version: i64,
});

entity!(endpoint, "endpoint", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: i64,
    pub name: String,
    pub uri_extension: String,
    pub auth_types: String,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    pub eula_text: String,
    pub version: i64,
    pub deleted_at: Option<i64>,
});

entity!(account, "account", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub endpoint_id: i64,
    pub organisation_id: i64,
    pub department_id: Option<i64>,
    pub name: String,
    pub csr_method: String,
    pub allow_empty_pkcs12_password: bool,
    pub authorization: String,
    pub access_code_hash: Option<String>,
    pub est_label: Option<String>,
    pub is_default: bool,
    pub pkcs12_encryption: String,
    pub bind_device_names: bool,
    pub version: i64,
    pub deleted_at: Option<i64>,
});

entity!(account_profile, "account_profile", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub profile_id: i64,
    pub position: i32,
});

entity!(cert_order, "cert_order", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub profile_id: i64,
    pub person_id: Option<i64>,
    pub requester: String,
    pub key_type: String,
    pub term_years: i32,
    pub csr_sha256: String,
    pub status: String,
    pub serial: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub csr_der: Option<Vec<u8>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
});

entity!(certificate, "certificate", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: i64,
    pub serial: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub sha256: String,
    pub status: String,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    pub revoked_by: Option<String>,
});

entity!(audit_event, "audit_event", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub detail: String,
    pub source_addr: String,
    pub seq: Option<i64>,
    pub role: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub request_id: Option<String>,
    pub organisation_id: Option<i64>,
    pub department_id: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
});

entity!(auth_failure, "auth_failure", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub username: String,
    pub at: i64,
});

entity!(email_token, "email_token", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub token_hash: Option<String>,
    pub endpoint_id: i64,
    pub email: String,
    pub purpose: String,
    pub account_id: Option<i64>,
    pub csr_sha256: Option<String>,
    pub source_addr: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub confirmed_at: Option<i64>,
    pub consumed_at: Option<i64>,
});

entity!(web_session, "web_session", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub token_hash: String,
    pub endpoint_id: i64,
    pub email: String,
    pub person_id: Option<i64>,
    pub account_id: Option<i64>,
    pub auth_type: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub form_token_hash: Option<String>,
});

entity!(outbox, "outbox", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub email_token_id: Option<i64>,
    pub created_at: i64,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub locked_until: Option<i64>,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub order_id: Option<i64>,
    pub certificate_id: Option<i64>,
    pub dedupe_key: Option<String>,
});

entity!(crl, "crl", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
});

entity!(ocsp_response, "ocsp_response", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub serial: String,
    pub der: Vec<u8>,
    pub this_update: i64,
    pub next_update: i64,
});

entity!(rate_event, "rate_event", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub key: String,
    pub at: i64,
});

entity!(audit_head, "audit_head", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub seq: i64,
    pub hash: String,
});

entity!(admin, "admin", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub email: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub totp_sealed: Option<String>,
    pub totp_last_step: Option<i64>,
    pub disabled_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
});

entity!(admin_scope, "admin_scope", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub admin_id: i64,
    pub organisation_id: Option<i64>,
    pub department_id: Option<i64>,
});

entity!(admin_session, "admin_session", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub admin_id: i64,
    pub token_hash: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub source_addr: String,
});

entity!(api_key, "api_key", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub admin_id: i64,
    pub name: String,
    pub key_id: String,
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
});

entity!(idempotency, "idempotency", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub principal: String,
    pub idem_key: String,
    pub request_hash: String,
    pub status: i32,
    pub body: String,
    pub created_at: i64,
});
