//! `serve --demo`: example data a new user can enroll against at once. Idempotent: what
//! exists is kept; the demo secrets are (re)set and written to
//! `<data-dir>/demo-credentials.toml` (mode 0600) so scripts can read them.

use std::path::Path;

use crate::config::Config;
use crate::domain::{
    generate_secret, Account, AuthType, Authorization, CsrMethod, Id, KeyType, Pkcs12Encryption,
    Profile, Role, Secret, SmimeGeneration, SmimeType, SmimeValidation, SubjectSource, SECRET_LEN,
};
use crate::error::{Error, ErrorKind};
use crate::ra::admin::{
    AccountRequest, AdminRequest, Caller, EndpointRequest, OrganisationChanges,
    OrganisationRequest, PersonRequest, ProfileRequest, SecretIdChoice,
};
use crate::ra::Ra;

pub const ORG: &str = "Example Organisation";
pub const DEMO_ORGANIZATION_IDENTIFIER: &str = "NTRUS+DE-0000000";
pub const DOMAIN: &str = "example.org";
/// The demo's form and EST entry point.
pub const ENDPOINT: &str = "Example self-enrollment";
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
pub async fn seed_admin(ra: &Ra) -> Result<DemoAdmin, Error> {
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
                        role: Role::Mrao,
                        organisation_ids: Vec::new(),
                        department_ids: Vec::new(),
                        password: Some(password.clone()),
                    },
                )
                .await?;
            let totp = totp.ok_or_else(|| Error::internal("no TOTP secret"))?;
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

/// `Ok(None)` for an object the RA does not know yet, so that a second run finds what the
/// first made instead of failing on its name.
fn absent<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An RA refusal, saying which part of the demo data it concerns: `serve --demo` stops with
/// it (e.g. a configured CA that ends before a demo profile's two-year term would).
fn in_step(what: impl std::fmt::Display) -> impl FnOnce(Error) -> Error {
    move |e| Error {
        message: format!("demo {what}: {}", e.message),
        ..e
    }
}

/// Makes the demo data, or finds it by name, and resets its secrets. Everything goes
/// through the administration verbs as the operator `demo`, as `estgate … --operator demo`
/// would: the RA applies its rules and writes the audit events (`cli:demo`), the secret-ID
/// reset and the access-code rotations among them, which already say that a run reset the
/// demo secrets.
pub async fn seed(ra: &Ra) -> Result<Demo, Error> {
    let caller = Caller::operator("demo");
    let org = match absent(ra.organisation_named(&caller, ORG).await)? {
        Some(o) => o,
        None => ra
            .add_organisation(
                &caller,
                OrganisationRequest {
                    name: ORG.into(),
                    domains: vec![DOMAIN.into()],
                    organization_identifier: Some(DEMO_ORGANIZATION_IDENTIFIER.into()),
                },
            )
            .await
            .map_err(in_step("organisation"))?,
    };
    // Sponsor-validated S/MIME certificates name the organisation's registration (S/MIME
    // BR §7.1.4.2.2): an invented national trade-register number for the example. An
    // organisation made before the demo set one gets it now; one an operator changed keeps
    // theirs.
    if org.organization_identifier.is_none() {
        ra.edit_organisation(
            &caller,
            org.id,
            None,
            OrganisationChanges {
                organization_identifier: Some(Some(DEMO_ORGANIZATION_IDENTIFIER.into())),
                ..Default::default()
            },
        )
        .await
        .map_err(in_step("organizationIdentifier"))?;
    }
    let secret_id = match absent(ra.person_by_email(&caller, PERSON).await)? {
        Some(p) => ra
            .reset_person_secret_id(&caller, p.id, None)
            .await
            .map_err(in_step("person"))?,
        None => ra
            .add_person(
                &caller,
                PersonRequest {
                    organisation_id: org.id,
                    department_id: None,
                    email: PERSON.into(),
                    first_name: "Alice".into(),
                    middle_name: String::new(),
                    last_name: "Example".into(),
                    secret_id: SecretIdChoice::Generate,
                },
            )
            .await
            .map_err(in_step("person"))?
            .secret_id
            .ok_or_else(|| Error::internal("the demo person got no generated secret ID"))?,
    };
    let all = [
        KeyType::Rsa { bits: 2048 },
        KeyType::Rsa { bits: 3072 },
        KeyType::Rsa { bits: 4096 },
        KeyType::EcP256,
        KeyType::EcP384,
    ];
    let person_profile = profile(
        ra,
        &caller,
        ProfileRequest {
            name: "person".into(),
            subject_source: SubjectSource::Person,
            key_types: all.to_vec(),
            default_key_type: Some(KeyType::Rsa { bits: 2048 }),
            // S/MIME BR: at most 825 days, so whole years up to two.
            terms_years: vec![1, 2],
            default_term_years: Some(1),
            requires_approval: false,
            smime: Some(SmimeType {
                validation: SmimeValidation::Sponsor,
                generation: SmimeGeneration::Multipurpose,
            }),
        },
    )
    .await?;
    let device_profile = profile(
        ra,
        &caller,
        ProfileRequest {
            name: "device".into(),
            subject_source: SubjectSource::Device,
            key_types: vec![
                KeyType::EcP256,
                KeyType::EcP384,
                KeyType::Rsa { bits: 2048 },
                KeyType::Rsa { bits: 3072 },
            ],
            default_key_type: Some(KeyType::EcP256),
            terms_years: vec![1, 2],
            default_term_years: Some(1),
            requires_approval: false,
            smime: None,
        },
    )
    .await?;
    let endpoint = match absent(ra.endpoint_named(&caller, Some(org.id), ENDPOINT).await)? {
        Some(e) => e,
        None => ra
            .add_endpoint(
                &caller,
                EndpointRequest {
                    organisation_id: org.id,
                    name: ENDPOINT.into(),
                    auth_types: vec![AuthType::EmailConfirmation, AuthType::SecretId],
                    help_link_text: "IT service desk".into(),
                    help_link_target: "https://example.org/help".into(),
                    help_text: "Certificates for staff and devices of Example Organisation.".into(),
                    eula_text: "You will keep your private key and its passphrase to yourself."
                        .into(),
                    uri_extension: None,
                },
            )
            .await
            .map_err(in_step("endpoint"))?,
    };
    if labelled(ra, &caller, "staff").await?.is_none() {
        ra.add_account(
            &caller,
            AccountRequest {
                name: "Staff".into(),
                authorization: Authorization::None,
                est_label: Some("staff".into()),
                // strongSwan's `pki --est` cannot name a label (DESIGN.md): staff answers
                // requests without one.
                is_default: true,
                profile_ids: vec![person_profile.id],
                ..account_template(endpoint.id)
            },
        )
        .await
        .map_err(in_step("account staff"))?;
    }
    let access_code = access_code_account(
        ra,
        &caller,
        AccountRequest {
            name: "Devices".into(),
            est_label: Some("devices".into()),
            profile_ids: vec![device_profile.id],
            ..account_template(endpoint.id)
        },
    )
    .await?;
    // An access-code account with the person profile: the browser form's "Enroll with
    // Access Code" path, for addresses of the domain that have no person record yet (they
    // authenticate by email confirmation).
    let visitor_code = access_code_account(
        ra,
        &caller,
        AccountRequest {
            name: "Visitors".into(),
            csr_method: CsrMethod::Server,
            est_label: Some("visitors".into()),
            profile_ids: vec![person_profile.id],
            ..account_template(endpoint.id)
        },
    )
    .await?;
    Ok(Demo {
        enroll_url: ra.enrollment_url(&endpoint),
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

/// The profile of that name, or a new one as `r` describes it. An existing profile is kept
/// as it is: an operator may have changed it.
async fn profile(ra: &Ra, caller: &Caller, r: ProfileRequest) -> Result<Profile, Error> {
    match absent(ra.profile_named(caller, &r.name).await)? {
        Some(p) => Ok(p),
        None => ra.add_profile(caller, r).await.map_err(in_step("profile")),
    }
}

/// The live account holding an EST label, of any organisation (labels are global).
async fn labelled(ra: &Ra, caller: &Caller, label: &str) -> Result<Option<Account>, Error> {
    Ok(ra
        .accounts(caller, None, None)
        .await?
        .into_iter()
        .find(|a| a.est_label.as_deref() == Some(label)))
}

/// An access-code account of the demo endpoint with everything but its name, label and
/// profiles: the code is generated by the RA.
fn account_template(endpoint_id: Id) -> AccountRequest {
    AccountRequest {
        endpoint_id,
        department_id: None,
        name: String::new(),
        profile_ids: Vec::new(),
        csr_method: CsrMethod::Both,
        allow_empty_pkcs12_password: false,
        authorization: Authorization::AccessCode,
        access_code: None,
        est_label: None,
        is_default: false,
        pkcs12_encryption: Pkcs12Encryption::Modern,
        bind_device_names: false,
    }
}

/// Creates the access-code account with a generated code, or rotates the code of the
/// account holding its label; returns the code.
async fn access_code_account(
    ra: &Ra,
    caller: &Caller,
    account: AccountRequest,
) -> Result<Secret, Error> {
    let label = account.est_label.clone().unwrap_or_default();
    let saved = match labelled(ra, caller, &label).await? {
        Some(a) => ra.rotate_access_code(caller, a.id).await,
        None => ra.add_account(caller, account).await,
    }
    .map_err(in_step(format!("account {label}")))?;
    saved
        .access_code
        .ok_or_else(|| Error::internal(format!("demo account {label}: no access code")))
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
