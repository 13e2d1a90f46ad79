//! `serve --demo`: example data a new user can enroll against at once. Idempotent: what
//! exists is kept; the demo secrets are (re)set and written to
//! `<data-dir>/demo-credentials.toml` (mode 0600) so scripts can read them.

use std::path::Path;

use crate::cli::SECRET_LEN;
use crate::config::Config;
use crate::domain::{
    generate_secret, hash_secret, Actor, AuthType, Authorization, CsrMethod, EmailAddress, KeyType,
    Pkcs12Encryption, SubjectSource, UnixTime,
};
use crate::store::{AuditEntry, NewAccount, NewEndpoint, NewPerson, NewProfile, Store, StoreError};

pub const ORG: &str = "Example Organisation";
pub const DEMO_ORGANIZATION_IDENTIFIER: &str = "NTRUS+DE-0000000";
pub const DOMAIN: &str = "example.org";
pub const PERSON: &str = "alice@example.org";
pub const DEVICE: &str = "device-001.example.org";
/// Any address of the domain works for the visitors account; this one is the example.
pub const VISITOR: &str = "visitor@example.org";

pub struct DemoAccount {
    pub label: String,
    pub username: String,
    pub password: String,
}

pub struct Demo {
    pub enroll_url: String,
    pub accounts: Vec<DemoAccount>,
    /// The demo MRAO, once `seed_admin` made it.
    pub admin: Option<DemoAdmin>,
}

/// The demo MRAO: password + TOTP for people, an API key for scripts.
pub struct DemoAdmin {
    pub email: String,
    pub password: String,
    pub totp_secret: String,
    pub api_key: String,
}

pub const ADMIN: &str = "admin@example.org";

/// Makes the demo MRAO, or gives the existing one a fresh password, TOTP secret and API
/// key (the old keys stay until they expire or are revoked). One of the two writes that
/// skip the API's authentication, with the bootstrap `admin add`: the actor is the
/// operator `demo`.
pub async fn seed_admin(ra: &crate::ra::Ra) -> Result<DemoAdmin, crate::error::Error> {
    use crate::ra::admin::{AdminRequest, Caller};
    let caller = Caller::operator("demo");
    let password = generate_secret(SECRET_LEN);
    let existing = ra
        .admins(&caller)
        .await?
        .into_iter()
        .find(|a| a.email.as_str() == ADMIN);
    let (admin, totp) = match existing {
        Some(a) => {
            let totp = ra.reset_admin_credentials(&caller, a.id, &password).await?;
            (a, totp)
        }
        None => {
            let (a, totp) = ra
                .add_admin(
                    &caller,
                    AdminRequest {
                        name: "Demo Administrator".into(),
                        email: ADMIN.into(),
                        role: crate::domain::Role::Mrao,
                        organisation_ids: Vec::new(),
                        department_ids: Vec::new(),
                        password: Some(password.clone()),
                    },
                )
                .await?;
            let totp = totp.ok_or_else(|| crate::error::Error::internal("no TOTP secret"))?;
            (a, totp)
        }
    };
    let key = ra
        .create_api_key(&caller, Some(admin.id), "demo", 30)
        .await?;
    Ok(DemoAdmin {
        email: ADMIN.into(),
        password: password.expose().into(),
        totp_secret: totp.secret.expose().into(),
        api_key: key.token.expose().into(),
    })
}

fn missing<T>(r: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn seed(store: &Store, config: &Config, now: UnixTime) -> Result<Demo, StoreError> {
    let org = match missing(store.organisation_by_name(ORG).await)? {
        Some(o) => o,
        None => {
            store
                .create_organisation(ORG, &[DOMAIN.to_string()], now)
                .await?
        }
    };
    // Sponsor-validated S/MIME certificates name the organisation's registration (S/MIME
    // BR §7.1.4.2.2): an invented national trade-register number for the example.
    if org.organization_identifier.is_none() {
        store
            .set_organization_identifier(org.id, DEMO_ORGANIZATION_IDENTIFIER)
            .await?;
    }
    let email =
        EmailAddress::parse(PERSON).ok_or_else(|| StoreError::Corrupt("demo email".into()))?;
    let secret_id = generate_secret(SECRET_LEN);
    match store.person_by_email(&email).await? {
        Some(p) => {
            store
                .set_person_secret_id(p.id, &hash_secret(&secret_id))
                .await?
        }
        None => {
            store
                .create_person(
                    NewPerson {
                        organisation_id: org.id,
                        department_id: None,
                        email: email.clone(),
                        first_name: "Alice".into(),
                        middle_name: String::new(),
                        last_name: "Example".into(),
                        secret_id_hash: Some(hash_secret(&secret_id)),
                    },
                    now,
                )
                .await?;
        }
    }
    let all = [
        KeyType::Rsa { bits: 2048 },
        KeyType::Rsa { bits: 3072 },
        KeyType::Rsa { bits: 4096 },
        KeyType::EcP256,
        KeyType::EcP384,
    ];
    let person_profile = match missing(store.profile_by_name("person").await)? {
        Some(p) => p,
        None => {
            store
                .create_profile(NewProfile {
                    name: "person".into(),
                    subject_source: SubjectSource::Person,
                    key_types: all.to_vec(),
                    default_key_type: KeyType::Rsa { bits: 2048 },
                    // S/MIME BR: at most 825 days, so whole years up to two.
                    terms_years: vec![1, 2],
                    default_term_years: 1,
                    requires_approval: false,
                    smime: Some(crate::domain::SmimeType {
                        validation: crate::domain::SmimeValidation::Sponsor,
                        generation: crate::domain::SmimeGeneration::Multipurpose,
                    }),
                })
                .await?
        }
    };
    let device_profile = match missing(store.profile_by_name("device").await)? {
        Some(p) => p,
        None => {
            store
                .create_profile(NewProfile {
                    name: "device".into(),
                    subject_source: SubjectSource::Device,
                    key_types: vec![
                        KeyType::EcP256,
                        KeyType::EcP384,
                        KeyType::Rsa { bits: 2048 },
                        KeyType::Rsa { bits: 3072 },
                    ],
                    default_key_type: KeyType::EcP256,
                    terms_years: vec![1, 2],
                    default_term_years: 1,
                    requires_approval: false,
                    smime: None,
                })
                .await?
        }
    };
    let endpoint = match missing(
        store
            .endpoint_by_name(org.id, "Example self-enrollment")
            .await,
    )? {
        Some(e) => e,
        None => {
            store
                .create_endpoint(NewEndpoint {
                    organisation_id: org.id,
                    name: "Example self-enrollment".into(),
                    uri_extension: generate_secret(SECRET_LEN).expose().to_string(),
                    auth_types: vec![AuthType::EmailConfirmation, AuthType::SecretId],
                    help_link_text: "IT service desk".into(),
                    help_link_target: "https://example.org/help".into(),
                    help_text: "Certificates for staff and devices of Example Organisation.".into(),
                    eula_text: "You will keep your private key and its passphrase to yourself."
                        .into(),
                })
                .await?
        }
    };
    if store.account_by_label("staff").await?.is_none() {
        store
            .create_account(NewAccount {
                endpoint_id: endpoint.id,
                organisation_id: org.id,
                department_id: None,
                name: "Staff".into(),
                csr_method: CsrMethod::Both,
                allow_empty_pkcs12_password: false,
                authorization: Authorization::None,
                access_code_hash: None,
                est_label: Some("staff".into()),
                is_default: true,
                pkcs12_encryption: Pkcs12Encryption::Modern,
                bind_device_names: false,
                profile_ids: vec![person_profile.id],
            })
            .await?;
    }
    let access_code = access_code_account(
        store,
        NewAccount {
            name: "Devices".into(),
            est_label: Some("devices".into()),
            profile_ids: vec![device_profile.id],
            ..access_code_template(endpoint.id, org.id)
        },
    )
    .await?;
    // An access-code account with the person profile: the browser form's "Enroll with
    // Access Code" path, for addresses of the domain that have no person record yet (they
    // authenticate by email confirmation).
    let visitor_code = access_code_account(
        store,
        NewAccount {
            name: "Visitors".into(),
            csr_method: CsrMethod::Server,
            est_label: Some("visitors".into()),
            profile_ids: vec![person_profile.id],
            ..access_code_template(endpoint.id, org.id)
        },
    )
    .await?;
    store
        .audit(
            &AuditEntry {
                actor: Actor::operator("demo"),
                action: "demo.seed".into(),
                object: format!("organisation {}", org.id),
                detail: "demo data seeded; demo secrets reset".into(),
                ..Default::default()
            },
            now,
        )
        .await?;
    Ok(Demo {
        enroll_url: format!("{}/enroll/{}", config.public_url, endpoint.uri_extension),
        admin: None,
        accounts: vec![
            DemoAccount {
                label: "staff".into(),
                username: PERSON.into(),
                password: secret_id.expose().into(),
            },
            DemoAccount {
                label: "devices".into(),
                username: DEVICE.into(),
                password: access_code.expose().into(),
            },
            DemoAccount {
                label: "visitors".into(),
                username: VISITOR.into(),
                password: visitor_code.expose().into(),
            },
        ],
    })
}

fn access_code_template(endpoint_id: i64, organisation_id: i64) -> NewAccount {
    NewAccount {
        endpoint_id,
        organisation_id,
        department_id: None,
        name: String::new(),
        csr_method: CsrMethod::Both,
        allow_empty_pkcs12_password: false,
        authorization: Authorization::AccessCode,
        access_code_hash: None,
        est_label: None,
        is_default: false,
        pkcs12_encryption: Pkcs12Encryption::Modern,
        bind_device_names: false,
        profile_ids: Vec::new(),
    }
}

/// Creates the access-code account with a fresh code, or gives the existing one a fresh
/// code; returns the code.
async fn access_code_account(
    store: &Store,
    account: NewAccount,
) -> Result<crate::domain::Secret, StoreError> {
    let code = generate_secret(SECRET_LEN);
    let label = account.est_label.clone().unwrap_or_default();
    match store.account_by_label(&label).await? {
        Some(a) => {
            store
                .set_account_access_code(a.id, &hash_secret(&code))
                .await?
        }
        None => {
            store
                .create_account(NewAccount {
                    access_code_hash: Some(hash_secret(&code)),
                    ..account
                })
                .await?;
        }
    }
    Ok(code)
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Demo {
    pub fn to_toml(&self) -> String {
        let mut out = format!("enroll_url = {}\n", toml_str(&self.enroll_url));
        for a in &self.accounts {
            out.push_str(&format!(
                "\n[[accounts]]\nlabel = {}\nusername = {}\npassword = {}\n",
                toml_str(&a.label),
                toml_str(&a.username),
                toml_str(&a.password)
            ));
        }
        if let Some(a) = &self.admin {
            out.push_str(&format!(
                "\n[admin]\nemail = {}\npassword = {}\ntotp_secret = {}\napi_key = {}\n",
                toml_str(&a.email),
                toml_str(&a.password),
                toml_str(&a.totp_secret),
                toml_str(&a.api_key)
            ));
        }
        out
    }

    /// Replaces the credentials file (mode 0600 from creation on).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(self.to_toml().as_bytes())
    }

    /// What a new user reads on the terminal: the secrets and commands to copy.
    pub fn instructions(&self, config: &Config) -> String {
        let base = &config.public_url;
        let ca = config.trust_anchor.display();
        let mut s =
            String::from("\nDemo data is ready. Secrets (also in demo-credentials.toml):\n");
        for a in &self.accounts {
            s.push_str(&format!(
                "  label {:<8} user {:<24} password {}\n",
                a.label, a.username, a.password
            ));
        }
        let staff = &self.accounts[0];
        let dev = &self.accounts[1];
        s.push_str(&format!(
            r#"
Browser self-enrollment: open {form}
  Secret ID: {su} with the staff password above; or Email Confirmation with any address
  at example.org (the link arrives as an .eml file in the data directory's outbox/ unless
  SMTP is configured), then "Enroll with Access Code" with the visitors password.

Enroll a person certificate (account "staff", secret ID):
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout alice.key -subj /CN=alice -outform DER -out alice.csr
  openssl base64 -in alice.csr -out alice.b64
  curl --fail --cacert {ca} -u '{su}:{sp}' -H 'Content-Type: application/pkcs10' --data-binary @alice.b64 -o alice.p7.b64 {base}/.well-known/est/staff/simpleenroll
  openssl base64 -d -in alice.p7.b64 | openssl pkcs7 -inform DER -print_certs -out alice.pem
  curl --fail --cacert {ca} -o chain.p7.b64 {base}/.well-known/est/cacerts
  openssl base64 -d -in chain.p7.b64 | openssl pkcs7 -inform DER -print_certs -out chain.pem
  openssl verify -CAfile {ca} -untrusted chain.pem alice.pem

Enroll a device certificate (account "devices", access code):
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN={du} -addext subjectAltName=DNS:{du} -outform DER -out device.csr
  openssl base64 -in device.csr -out device.b64
  curl --fail --cacert {ca} -u '{du}:{dp}' -H 'Content-Type: application/pkcs10' --data-binary @device.b64 -o device.p7.b64 {base}/.well-known/est/devices/simpleenroll

Re-enroll with the current certificate as TLS client certificate (same subject and SAN):
  openssl x509 -x509toreq -in alice.pem -signkey alice.key -copy_extensions copyall -out renew.pem
  openssl req -in renew.pem -outform DER | openssl base64 -out renew.b64
  curl --fail --cacert {ca} --cert alice.pem --key alice.key -H 'Content-Type: application/pkcs10' --data-binary @renew.b64 -o renewed.p7.b64 {base}/.well-known/est/staff/simplereenroll
"#,
            form = self.enroll_url,
            su = staff.username,
            sp = staff.password,
            du = dev.username,
            dp = dev.password,
        ));
        if let Some(a) = &self.admin {
            s.push_str(&format!(
                r#"
Administration API (demo MRAO {email}; password {pw}, TOTP secret {totp} for an
authenticator app; API docs at {base}/api/v1/openapi.json):
  curl --fail --cacert {ca} -H 'Authorization: Bearer {key}' {base}/api/v1/persons
"#,
                email = a.email,
                pw = a.password,
                totp = a.totp_secret,
                key = a.api_key,
            ));
        }
        s
    }
}
