//! EST operation path segments and labels (RFC 7030 §3.2.2).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CaCerts,
    SimpleEnroll,
    SimpleReenroll,
    ServerKeyGen,
    CsrAttrs,
    FullCmc,
}

const ALL: [(Operation, &str); 6] = [
    (Operation::CaCerts, "cacerts"),
    (Operation::SimpleEnroll, "simpleenroll"),
    (Operation::SimpleReenroll, "simplereenroll"),
    (Operation::ServerKeyGen, "serverkeygen"),
    (Operation::CsrAttrs, "csrattrs"),
    (Operation::FullCmc, "fullcmc"),
];

impl Operation {
    pub fn parse(segment: &str) -> Option<Operation> {
        ALL.iter().find(|(_, s)| *s == segment).map(|(o, _)| *o)
    }

    pub fn as_str(self) -> &'static str {
        ALL.iter()
            .find(|(o, _)| *o == self)
            .map(|(_, s)| *s)
            .unwrap_or("")
    }
}

/// estgate's label rule: `[a-z0-9-]{1,64}` and never an operation name, so a path segment
/// is unambiguously one or the other.
/// Top-level paths the server serves itself; a label equal to one would be shadowed by them
/// in the strongSwan-style `/<label>/.well-known/est/<op>` route.
pub const RESERVED_LABELS: &[&str] = &["enroll", "static", "admin", "api", "health"];

pub fn is_valid_label(label: &str) -> bool {
    !RESERVED_LABELS.contains(&label)
        && (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && Operation::parse(label).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_not_labels() {
        assert!(!is_valid_label("enroll"));
        assert!(!is_valid_label("static"));
        assert!(is_valid_label("enrollment"));
    }

    #[test]
    fn operations_round_trip() {
        for (op, s) in ALL {
            assert_eq!(Operation::parse(s), Some(op));
            assert_eq!(op.as_str(), s);
        }
        assert_eq!(Operation::parse("SimpleEnroll"), None);
    }

    #[test]
    fn labels() {
        for ok in ["staff", "devices-01", "a", &"x".repeat(64)] {
            assert!(is_valid_label(ok), "{ok}");
        }
        for bad in [
            "",
            "Staff",
            "a/b",
            "a_b",
            &"x".repeat(65),
            "simpleenroll",
            "cacerts",
        ] {
            assert!(!is_valid_label(bad), "{bad}");
        }
    }
}
