//! Administrators, their roles and API keys (DESIGN.md domain model: admin).

use std::fmt;

use super::{EmailAddress, Id, UnixTime};

str_enum!(
    /// MRAO: everything. RAO: its organisations. DRAO: its departments' persons, and those
    /// persons' orders and certificates.
    Role { Mrao = "mrao", Rao = "rao", Drao = "drao" }
);

str_enum!(
    /// A person record's state. Disabled and deleted persons cannot sign in, enroll or
    /// re-enroll; a deleted person is kept as a tombstone for its certificates' history.
    PersonStatus { Active = "active", Disabled = "disabled", Deleted = "deleted" }
);

#[derive(Debug, Clone)]
pub struct Admin {
    pub id: Id,
    pub name: String,
    pub email: EmailAddress,
    pub role: Role,
    /// RAO: the organisations it administers.
    pub organisation_ids: Vec<Id>,
    /// DRAO: the departments it administers.
    pub department_ids: Vec<Id>,
    pub disabled: bool,
    /// Whether a password (and with it TOTP) is set: API-key-only administrators have none.
    pub has_password: bool,
    pub created_at: UnixTime,
    pub version: i64,
}

/// An API key as listed: never its secret, which exists only in the answer that made it.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: Id,
    pub admin_id: Id,
    pub name: String,
    /// The public part of the key (`eg_<key_id>_…`), to tell keys apart in lists and logs.
    pub key_id: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
}

/// One event of the audit trail, as read back (DESIGN.md domain model: audit event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in the hash chain, from 1.
    pub seq: i64,
    pub at: UnixTime,
    pub actor: String,
    pub role: Option<Role>,
    pub action: String,
    pub object: String,
    pub detail: String,
    /// JSON of the object before and after a change, where that means something.
    pub before: Option<String>,
    pub after: Option<String>,
    pub source: String,
    pub request_id: Option<String>,
    pub organisation_id: Option<Id>,
    pub department_id: Option<Id>,
    pub prev_hash: String,
    pub hash: String,
}

/// The first break `audit verify` finds in the chain, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// Sequence numbers jump: events between were removed.
    Removed { after_seq: i64, next_seq: i64 },
    /// The event's content no longer matches its hash.
    Altered { seq: i64 },
    /// The event does not follow the one stored before it.
    Reordered { seq: i64, after_seq: i64 },
    /// The newest events were removed: the chain ends before the head recorded.
    Truncated { last_seq: i64, head_seq: i64 },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Removed {
                after_seq,
                next_seq,
            } => write!(
                f,
                "events {}..{} were removed (event {after_seq} is followed by {next_seq})",
                after_seq + 1,
                next_seq - 1
            ),
            ChainBreak::Altered { seq } => {
                write!(
                    f,
                    "event {seq} was altered: its content does not match its hash"
                )
            }
            ChainBreak::Reordered { seq, after_seq } => write!(
                f,
                "event {seq} is out of order: it is stored after event {after_seq} but was not \
                 chained to it"
            ),
            ChainBreak::Truncated { last_seq, head_seq } => write!(
                f,
                "events {}..{head_seq} were removed from the end (the chain head records \
                 {head_seq})",
                last_seq + 1
            ),
        }
    }
}
