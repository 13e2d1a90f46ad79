//! Pure domain types: the words of DESIGN.md's domain model, with no I/O.

mod name;
mod secret;

use std::fmt;

pub use admin::{Admin, ApiKeyRecord, AuditEvent, ChainBreak, PersonStatus, Role};
pub use name::{clean_person_name, NameRefusal, MAX_NAME_CHARS};
pub use secret::{
    generate_secret, hash_secret, hash_token, recently_verified, verify_secret, Secret, SecretHash,
    SECRET_LEN,
};

/// Seconds since the Unix epoch; the one time unit stored and compared.
pub type UnixTime = i64;

/// A key algorithm a profile allows or a key was made with. The model's own type: the wire
/// format's `estgate_protocol::KeyAlgorithm` (what a CSR carries) is converted to it at the RA,
/// so `domain` depends on no other crate of ours (DESIGN.md). The names are the ones stored in
/// profiles and typed in the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa { bits: u32 },
    EcP256,
    EcP384,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa { bits: 2048 } => "rsa-2048",
            KeyType::Rsa { bits: 3072 } => "rsa-3072",
            KeyType::Rsa { bits: 4096 } => "rsa-4096",
            KeyType::Rsa { .. } => "rsa",
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
        }
    }

    pub fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "rsa-2048" => KeyType::Rsa { bits: 2048 },
            "rsa-3072" => KeyType::Rsa { bits: 3072 },
            "rsa-4096" => KeyType::Rsa { bits: 4096 },
            "ec-p256" => KeyType::EcP256,
            "ec-p384" => KeyType::EcP384,
            _ => return None,
        })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Injected so tests can move time (rate-limit windows, validity) without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Option<EmailAddress> {
        let s = s.trim().to_ascii_lowercase();
        let (local, domain) = s.split_once('@')?;
        let ok_local = !local.is_empty()
            && local.len() <= 64
            && local
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"@<>()[]\\,;:\"".contains(&b));
        if !ok_local || !is_dns_name(domain) || !domain.contains('.') {
            return None;
        }
        Some(EmailAddress(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A DNS host name made of LDH labels (no wildcards, no trailing dot).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Text for an HTML element or a quoted attribute value (pages written without a template
/// engine: the confirmation email, the error page shown before the layout can be).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// True when `name` is `domain` or a subdomain of it (case-insensitive).
pub fn is_within_domain(name: &str, domain: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    name == domain || name.ends_with(&format!(".{domain}"))
}

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

// After the macro, which it uses.
mod admin;

str_enum!(
    /// Where a certificate's subject comes from.
    SubjectSource { Person = "person", Device = "device" }
);
str_enum!(
    /// Who makes the key pair: the client sends a CSR, or the server generates the key.
    CsrMethod { Server = "server", Client = "client", Both = "both" }
);
str_enum!(
    /// How an account is authorized (DESIGN.md: "Authorization — which account may they use?").
    Authorization { AccessCode = "access-code", None = "none" }
);
str_enum!(
    /// How a person authenticates at an endpoint. Kept an open set: OIDC sign-in comes later.
    AuthType { EmailConfirmation = "email-confirmation", SecretId = "secret-id" }
);
str_enum!(
    /// PKCS#12 encryption: `modern` (PBES2, AES-256, HMAC-SHA256) or `legacy` (3DES, SHA-1)
    /// for older Windows and macOS keychains.
    Pkcs12Encryption { Modern = "modern", Legacy = "legacy" }
);
str_enum!(
    OrderStatus {
        PendingApproval = "pending_approval",
        Approved = "approved",
        Signing = "signing",
        Issued = "issued",
        Rejected = "rejected",
        Failed = "failed",
    }
);
str_enum!(
    CertStatus { Valid = "valid", Revoked = "revoked" }
);
str_enum!(
    /// RFC 5280 §5.3.1 CRLReason values estgate records. The person can pick the first five
    /// (the self-service list); administrators any of them.
    RevocationReason {
        Unspecified = "unspecified",
        KeyCompromise = "keyCompromise",
        AffiliationChanged = "affiliationChanged",
        Superseded = "superseded",
        CessationOfOperation = "cessationOfOperation",
        CertificateHold = "certificateHold",
        PrivilegeWithdrawn = "privilegeWithdrawn",
    }
);
str_enum!(
    /// CA/Browser Forum S/MIME Baseline Requirements §7.1.6.1: how the subject was validated.
    SmimeValidation {
        Mailbox = "mailbox",
        Organization = "organization",
        Sponsor = "sponsor",
        Individual = "individual",
    }
);
str_enum!(
    /// S/MIME BR generation. `legacy` is not offered: the BR prohibit it for new certificates.
    /// `strict` allows no clientAuth and at most 825 days; `multipurpose` allows clientAuth.
    SmimeGeneration { Multipurpose = "multipurpose", Strict = "strict" }
);

impl RevocationReason {
    /// The CRLReason code of RFC 5280 §5.3.1.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// The reasons a person may choose for their own certificate.
    pub const SELF_SERVICE: &'static [RevocationReason] = &[
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
    ];
}

/// S/MIME BR §7.1.4.2.2 (d) organizationIdentifier: a registration scheme, a country (XG
/// for the global LEI and INT schemes), an optional `+` subdivision, `-`, the reference.
pub fn is_organization_identifier(s: &str) -> bool {
    let (Some(scheme), Some(rest)) = (s.get(..3), s.get(3..)) else {
        return false;
    };
    if !["VAT", "NTR", "PSD", "LEI", "GOV", "INT"].contains(&scheme) {
        return false;
    }
    let Some((place, reference)) = rest.split_once('-') else {
        return false;
    };
    let (country, state) = match place.split_once('+') {
        Some((c, st)) => (c, Some(st)),
        None => (place, None),
    };
    let upper = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && ((scheme != "LEI" && scheme != "INT") || country == "XG")
        && state.is_none_or(|st| st.len() <= 3 && upper(st))
        && !reference.is_empty()
        && reference.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// What a person profile's certificates claim under the S/MIME BR (its policy OID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmimeType {
    pub validation: SmimeValidation,
    pub generation: SmimeGeneration,
}

impl SmimeType {
    /// BR §6.3.2: strict and multipurpose certificates live at most 825 days, so whole-year
    /// terms above 2 years are refused.
    pub fn max_term_years(self) -> u32 {
        2
    }
}
str_enum!(
    /// What an emailed link is for: signing in to the browser form, or confirming an EST
    /// request made with an access code.
    EmailPurpose { SignIn = "sign-in", Est = "est" }
);

impl CsrMethod {
    pub fn allows_client(self) -> bool {
        matches!(self, CsrMethod::Client | CsrMethod::Both)
    }

    pub fn allows_server(self) -> bool {
        matches!(self, CsrMethod::Server | CsrMethod::Both)
    }
}

pub type Id = i64;

#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: Id,
    pub name: String,
    pub domains: Vec<String>,
    /// S/MIME BR §7.1.4.2.2 organizationIdentifier (e.g. `LEIXG-…`, `VATDE-…`), required by
    /// organization- and sponsor-validated profiles.
    pub organization_identifier: Option<String>,
    /// Optimistic lock for edits (`ETag`).
    pub version: i64,
}

impl Organisation {
    /// DESIGN.md policy: an email or DNS name must sit in one of the verified domains.
    pub fn owns(&self, name: &str) -> bool {
        self.domains.iter().any(|d| is_within_domain(name, d))
    }
}

#[derive(Debug, Clone)]
pub struct Department {
    pub id: Id,
    pub organisation_id: Id,
    pub name: String,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: Id,
    pub organisation_id: Id,
    pub department_id: Option<Id>,
    pub email: EmailAddress,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub secret_id_hash: Option<SecretHash>,
    pub status: PersonStatus,
    pub version: i64,
}

impl Person {
    pub fn full_name(&self) -> String {
        [&self.first_name, &self.middle_name, &self.last_name]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub id: Id,
    pub name: String,
    pub subject_source: SubjectSource,
    pub key_types: Vec<KeyType>,
    pub default_key_type: KeyType,
    pub terms_years: Vec<u32>,
    pub default_term_years: u32,
    pub requires_approval: bool,
    /// Person profiles: the S/MIME BR type their certificates claim.
    pub smime: Option<SmimeType>,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: Id,
    pub organisation_id: Id,
    pub name: String,
    pub uri_extension: String,
    pub auth_types: Vec<AuthType>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
    pub eula_text: String,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: Id,
    pub endpoint_id: Id,
    pub organisation_id: Id,
    pub department_id: Option<Id>,
    pub name: String,
    pub csr_method: CsrMethod,
    pub allow_empty_pkcs12_password: bool,
    pub authorization: Authorization,
    pub access_code_hash: Option<SecretHash>,
    pub est_label: Option<String>,
    pub is_default: bool,
    pub pkcs12_encryption: Pkcs12Encryption,
    /// For device profiles on access-code accounts: the CSR may name only the Basic
    /// username, the device identifier it authenticated with (`plan::check_bound_names`).
    /// Without it, any holder of the shared access code may ask for any name in the
    /// organisation's domains.
    pub bind_device_names: bool,
    /// In the account's order; the first is the one EST uses.
    pub profile_ids: Vec<Id>,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct CertificateRecord {
    pub id: Id,
    pub order_id: Id,
    pub serial: String,
    pub subject: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub der: Vec<u8>,
    pub status: CertStatus,
    pub revocation: Option<Revocation>,
}

/// When, why and by whom a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: UnixTime,
    pub reason: RevocationReason,
    pub by: String,
}

/// An approval decision on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub by: String,
    pub at: UnixTime,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: Id,
    pub account_id: Id,
    pub profile_id: Id,
    pub person_id: Option<Id>,
    pub requester: String,
    pub key_type: String,
    pub term_years: u32,
    pub csr_sha256: String,
    pub status: OrderStatus,
    pub serial: Option<String>,
    pub created_at: UnixTime,
    /// The CSR of a client-key order waiting for approval (public data).
    pub csr_der: Option<Vec<u8>>,
    pub decision: Option<Decision>,
}

/// A one-time emailed link. Only the hash of its secret is stored, and only once the mail
/// worker has minted it at send time.
#[derive(Debug, Clone)]
pub struct EmailToken {
    pub id: Id,
    pub endpoint_id: Id,
    pub email: EmailAddress,
    pub purpose: EmailPurpose,
    pub account_id: Option<Id>,
    pub csr_sha256: Option<String>,
    /// The client address the request came from (shown on the confirmation page).
    pub source: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub confirmed_at: Option<UnixTime>,
    pub consumed_at: Option<UnixTime>,
}

/// A signed-in browser session, kept in the database so that any server process can serve
/// it; the cookie carries only its secret, the database only the secret's hash.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub id: Id,
    pub endpoint_id: Id,
    pub email: EmailAddress,
    pub person_id: Option<Id>,
    /// The account chosen by access code or from the list, once chosen.
    pub account_id: Option<Id>,
    pub auth_type: AuthType,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Who did something and from where, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: String,
    pub source: String,
    /// The administrator's role, when an administrator acted.
    pub role: Option<Role>,
    /// The request that caused it (the `X-Request-Id` the server logged).
    pub request_id: Option<String>,
}

impl Actor {
    /// The operator at the server's command line, named by `--operator` or the
    /// configuration (never taken from `$USER`, which says nothing to an auditor).
    pub fn operator(name: &str) -> Actor {
        Actor {
            name: format!("cli:{name}"),
            source: "local".into(),
            role: Some(Role::Mrao),
            request_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_parsing_lowercases_and_rejects_junk() {
        let e = EmailAddress::parse(" Alice@Example.ORG ").unwrap();
        assert_eq!(e.as_str(), "alice@example.org");
        assert_eq!(e.domain(), "example.org");
        for bad in [
            "",
            "alice",
            "@example.org",
            "a@b",
            "a b@example.org",
            "a@exa_mple.org",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn domain_membership_is_label_aligned() {
        assert!(is_within_domain("host.example.org", "example.org"));
        assert!(is_within_domain("EXAMPLE.org", "example.org"));
        assert!(!is_within_domain("badexample.org", "example.org"));
        assert!(!is_within_domain("example.org.evil", "example.org"));
    }

    #[test]
    fn escaping_covers_attribute_quotes() {
        assert_eq!(escape_html("a'b\"c&<x>"), "a&#39;b&quot;c&amp;&lt;x&gt;");
    }

    #[test]
    fn display_honours_width_so_listings_line_up() {
        assert_eq!(format!("[{:<8}]", SubjectSource::Device), "[device  ]");
        let e = EmailAddress::parse("a@example.org").unwrap();
        assert_eq!(format!("[{e:<15}]"), "[a@example.org  ]");
    }

    #[test]
    fn enums_round_trip() {
        for m in CsrMethod::ALL {
            assert_eq!(CsrMethod::parse(m.as_str()), Some(*m));
        }
        assert_eq!(
            Authorization::parse("access-code"),
            Some(Authorization::AccessCode)
        );
        assert_eq!(AuthType::parse("bogus"), None);
    }
}
