//! Bulk person import from CSV (`email,first_name,middle_name,last_name,department,
//! secret_id`). Every line is checked against the same rules as `add_person`; a dry run
//! reports every bad line and changes nothing, and an apply adds all persons in one
//! transaction or none. Secret IDs are `generate`d per line on request and answered once.

use std::collections::HashMap;

use serde_json::json;

use super::persons::{check_email, check_names, check_secret_id};
use super::{snapshot, Caller};
use crate::domain::{
    generate_secret, hash_secret, EmailAddress, Id, Secret, SecretHash, SECRET_LEN,
};
use crate::error::Error;
use crate::ra::Ra;
use crate::store::{AuditEntry, NewPerson, StoreError};

/// The largest CSV accepted (about 100 000 persons).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

const HEADER: [&str; 6] = [
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "department",
    "secret_id",
];

/// One thing wrong with one line (line 1 is the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLineError {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

/// What a dry run found, or what an apply did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Persons on the file (lines after the header, blank ones skipped).
    pub rows: usize,
    pub errors: Vec<ImportLineError>,
    /// After an apply: the persons added, in file order.
    pub created: Vec<ImportOutcome>,
    pub applied: bool,
}

/// One person added by an apply.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub line: usize,
    pub id: Id,
    pub email: String,
    /// Generated on request; shown once.
    pub secret_id: Option<Secret>,
}

/// A line that passed every check.
struct Row {
    line: usize,
    person: NewPerson,
    secret: Option<(Secret, bool)>,
}

/// RFC 4180 records with the line each starts on: quoted fields may hold commas, quotes
/// (doubled) and line breaks; CRLF and LF both end a record.
fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, ImportLineError> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
                at_field_start = true;
            }
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(ImportLineError {
            line: start,
            field: "line".into(),
            reason: "a quoted field is not closed".into(),
        });
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push((start, fields));
    }
    // Blank lines carry nobody.
    out.retain(|(_, f)| !(f.len() == 1 && f[0].trim().is_empty()));
    Ok(out)
}

impl Ra {
    /// Checks (and with `apply`, imports) a CSV of persons into one organisation.
    pub async fn import_persons(
        &self,
        caller: &Caller,
        organisation_id: Id,
        csv: &[u8],
        apply: bool,
    ) -> Result<ImportReport, Error> {
        // A DRAO imports into its departments only: each line is checked for that.
        let org = self.organisation_in_sight(caller, organisation_id).await?;
        let text = std::str::from_utf8(csv)
            .map_err(|_| Error::invalid("body", "the CSV must be UTF-8 text"))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut report = ImportReport::default();
        let mut lines = match records(text) {
            Ok(r) => r.into_iter(),
            Err(e) => {
                report.errors.push(e);
                return Ok(report);
            }
        };
        let header: Vec<String> = match lines.next() {
            Some((_, h)) => h.iter().map(|f| f.trim().to_ascii_lowercase()).collect(),
            None => Vec::new(),
        };
        if header != HEADER {
            report.errors.push(ImportLineError {
                line: 1,
                field: "header".into(),
                reason: format!("the first line must be {}", HEADER.join(",")),
            });
            return Ok(report);
        }
        let departments: HashMap<String, Id> = self
            .store
            .departments_of(org.id)
            .await?
            .into_iter()
            .map(|d| (d.name, d.id))
            .collect();
        let addresses: Vec<String> = lines
            .clone()
            .filter_map(|(_, f)| f.first().and_then(|e| EmailAddress::parse(e)))
            .map(|e| e.as_str().to_string())
            .collect();
        let taken = self.store.taken_emails(&addresses).await?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut rows = Vec::new();
        for (line, fields) in lines {
            report.rows += 1;
            let mut bad = |field: &str, reason: String| {
                report.errors.push(ImportLineError {
                    line,
                    field: field.into(),
                    reason,
                })
            };
            if fields.len() != HEADER.len() {
                bad(
                    "line",
                    format!(
                        "{} fields, where the header has {}",
                        fields.len(),
                        HEADER.len()
                    ),
                );
                continue;
            }
            let [email, first, middle, last, dept, secret] =
                [0, 1, 2, 3, 4, 5].map(|i| fields[i].trim());
            let mut ok = true;
            let email = match check_email("email", &org, email) {
                Ok(e) => {
                    if let Some(first_line) = seen.get(e.as_str()) {
                        bad("email", format!("{e} is also on line {first_line}"));
                        ok = false;
                    } else if taken.contains(e.as_str()) {
                        bad("email", format!("a person with email {e} already exists"));
                        ok = false;
                    }
                    seen.entry(e.as_str().to_string()).or_insert(line);
                    Some(e)
                }
                Err(e) => {
                    bad("email", e.message);
                    None
                }
            };
            let names = match check_names(first, middle, last) {
                Ok(n) => Some(n),
                Err(e) => {
                    bad(e.field.as_deref().unwrap_or("name"), e.message);
                    None
                }
            };
            let department = if dept.is_empty() {
                None
            } else {
                match departments.get(dept) {
                    Some(id) => Some(*id),
                    None => {
                        bad(
                            "department",
                            format!("organisation {:?} has no department {dept:?}", org.name),
                        );
                        ok = false;
                        None
                    }
                }
            };
            if ok && !caller.principal.manages_department(org.id, department) {
                bad(
                    "department",
                    match department {
                        Some(_) => format!("you do not administer department {dept:?}"),
                        None => "name one of your departments".into(),
                    },
                );
                ok = false;
            }
            let secret = match secret {
                "" => None,
                s if s.eq_ignore_ascii_case("generate") => {
                    Some((generate_secret(SECRET_LEN), true))
                }
                s => {
                    let s = Secret::new(s);
                    match check_secret_id("secret_id", &s) {
                        Ok(()) => Some((s, false)),
                        Err(e) => {
                            bad("secret_id", e.message);
                            ok = false;
                            None
                        }
                    }
                }
            };
            if let (true, Some(email), Some((first, middle, last))) = (ok, email, names) {
                rows.push(Row {
                    line,
                    person: NewPerson {
                        organisation_id: org.id,
                        department_id: department,
                        email,
                        first_name: first,
                        middle_name: middle,
                        last_name: last,
                        secret_id_hash: None,
                    },
                    secret,
                });
            }
        }
        if !apply || !report.errors.is_empty() {
            return Ok(report);
        }
        let hashes = hash_all(
            rows.iter()
                .map(|r| r.secret.as_ref().map(|(s, _)| s.clone()))
                .collect(),
        )
        .await?;
        for (row, hash) in rows.iter_mut().zip(hashes) {
            row.person.secret_id_hash = hash;
        }
        let audits: Vec<AuditEntry> = rows
            .iter()
            .map(|r| {
                let p = &r.person;
                let mut a = caller.audit(
                    "person.import",
                    String::new(),
                    Some(org.id),
                    p.department_id,
                );
                a.after = snapshot(&json!({
                    "email": p.email.as_str(), "first_name": p.first_name,
                    "middle_name": p.middle_name, "last_name": p.last_name,
                    "organisation": org.id, "department": p.department_id,
                    "has_secret_id": r.secret.is_some(), "line": r.line,
                }));
                a
            })
            .collect();
        let persons: Vec<NewPerson> = rows.iter().map(|r| r.person.clone()).collect();
        let ids = self
            .store
            .import_persons(&persons, &audits, self.clock.now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(what) => Error::conflict(format!(
                    "{what} already exists (added meanwhile?); nothing was imported"
                )),
                e => e.into(),
            })?;
        report.created = rows
            .into_iter()
            .zip(ids)
            .map(|(r, id)| ImportOutcome {
                line: r.line,
                id,
                email: r.person.email.as_str().to_string(),
                secret_id: r.secret.and_then(|(s, generated)| generated.then_some(s)),
            })
            .collect();
        report.applied = true;
        Ok(report)
    }
}

/// Argon2 hashes of many secrets, spread over the blocking pool (each costs ~15 ms of CPU
/// and 19 MiB, so 1 000 in a row would hold one core for seconds).
async fn hash_all(secrets: Vec<Option<Secret>>) -> Result<Vec<Option<SecretHash>>, Error> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = secrets.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    let mut secrets = secrets.into_iter();
    loop {
        let chunk: Vec<Option<Secret>> = secrets.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .iter()
                .map(|s| s.as_ref().map(hash_secret))
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.map_err(Error::internal)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_follow_rfc_4180() {
        let r = records("a,b\r\n\"x, \"\"y\"\"\",\"two\nlines\"\n\nlast,\n").unwrap();
        assert_eq!(
            r,
            vec![
                (1, vec!["a".to_string(), "b".into()]),
                (2, vec!["x, \"y\"".to_string(), "two\nlines".into()]),
                (5, vec!["last".to_string(), "".into()]),
            ]
        );
        assert_eq!(records("a\n\"open,b\n").unwrap_err().line, 2);
        assert_eq!(
            records("no newline").unwrap(),
            vec![(1, vec!["no newline".to_string()])]
        );
    }
}
