//! Person names as they may go into a certificate's subject: the one rule for names typed
//! in the form, given by an administrator (console, API, CLI, CSV import) or taken from a
//! CSR's common name for a person first seen through EST.
//!
//! A name is shown to relying parties as the certificate holder's identity, so it must read
//! as what it is: characters that are invisible, reorder text (U+202E turns "Alice" into a
//! spoofed "ecilA"-looking string) or make a name look like an address (`Director
//! <director@example.org>`) are refused rather than stored.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The longest first, middle or last name, in characters (after NFC). X.520's upper bound
/// for a common name is 64 too.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a name was refused; its `Display` is the sentence shown next to the field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameRefusal {
    TooLong,
    /// A control, format (bidi controls included), invisible, private-use or
    /// non-character code point, or white space other than the plain space.
    Invisible(char),
    /// `<`, `>` or `@`: what an address looks like, not a name.
    AddressLike(char),
}

impl fmt::Display for NameRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRefusal::TooLong => write!(f, "at most {MAX_NAME_CHARS} characters"),
            NameRefusal::Invisible(c) => write!(
                f,
                "contains U+{:04X}, an invisible or control character that cannot appear in a name",
                u32::from(*c)
            ),
            NameRefusal::AddressLike(c) => write!(
                f,
                "contains {c:?}, which cannot appear in a name: type the name only, not an address"
            ),
        }
    }
}

impl std::error::Error for NameRefusal {}

/// A first, middle or last name as it is stored and certified: Unicode NFC (so one name has
/// one spelling, whichever way it was typed), trimmed, runs of spaces made one, at most
/// `MAX_NAME_CHARS` characters, and none of the refused characters. The empty string is a
/// valid (absent) name; whether one is required is the caller's rule.
pub fn clean_person_name(typed: &str) -> Result<String, NameRefusal> {
    let composed: String = typed.nfc().collect();
    let mut out = String::with_capacity(composed.len());
    for c in composed.trim().chars() {
        if matches!(c, '<' | '>' | '@') {
            return Err(NameRefusal::AddressLike(c));
        }
        if c == ' ' {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            continue;
        }
        if is_refused(c) {
            return Err(NameRefusal::Invisible(c));
        }
        out.push(c);
    }
    if out.chars().count() > MAX_NAME_CHARS {
        return Err(NameRefusal::TooLong);
    }
    Ok(out)
}

/// Control (Cc), format (Cf), other invisible, private-use and non-character code points,
/// and white space other than U+0020.
fn is_refused(c: char) -> bool {
    let u = u32::from(c);
    c.is_control()
        || c.is_whitespace()
        || FORMAT_AND_INVISIBLE
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&u))
        // Private use: BMP, planes 15 and 16.
        || (0xE000..=0xF8FF).contains(&u)
        || u >= 0xF_0000
        // Non-characters.
        || (0xFDD0..=0xFDEF).contains(&u)
        || (u & 0xFFFE) == 0xFFFE
}

/// General category Cf (Unicode 16), which holds the bidi embeddings, overrides and
/// isolates, the zero-width characters and the tag characters, followed by characters of
/// other categories that render as nothing (fillers, variation selectors, the combining
/// grapheme joiner, the Braille blank). Kept as a table here because the standard library
/// has no general category and a name check does not justify a crate for one.
const FORMAT_AND_INVISIBLE: &[(u32, u32)] = &[
    // Cf
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    // Invisible, though not Cf.
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_composed_trimmed_and_bounded() {
        assert_eq!(clean_person_name("  Ada ").unwrap(), "Ada");
        assert_eq!(clean_person_name("").unwrap(), "");
        assert_eq!(clean_person_name("Mary  Ann").unwrap(), "Mary Ann");
        // "e" + combining acute (NFD) is stored as the one composed "é".
        assert_eq!(clean_person_name("Rene\u{301}e").unwrap(), "Ren\u{e9}e");
        assert_eq!(
            clean_person_name("O'Brien-Łukasiewicz").unwrap(),
            "O'Brien-Łukasiewicz"
        );
        assert_eq!(clean_person_name("José 山田").unwrap(), "José 山田");
        assert_eq!(
            clean_person_name(&"x".repeat(MAX_NAME_CHARS))
                .unwrap()
                .len(),
            MAX_NAME_CHARS
        );
        assert_eq!(
            clean_person_name(&"x".repeat(MAX_NAME_CHARS + 1)),
            Err(NameRefusal::TooLong)
        );
        // 64 decomposed "é" are 128 code points typed, 64 characters stored.
        assert!(clean_person_name(&"e\u{301}".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn invisible_reordering_and_address_like_characters_are_refused() {
        for (typed, c) in [
            ("Ada\u{7}", '\u{7}'),
            ("Ada\tKing", '\t'),
            ("Ada\u{a0}King", '\u{a0}'),
            ("\u{202E}ecilA", '\u{202E}'),
            ("Al\u{2066}ice", '\u{2066}'),
            ("Al\u{200B}ice", '\u{200B}'),
            ("Al\u{200D}ice", '\u{200D}'),
            ("Alice\u{FEFF}", '\u{FEFF}'),
            ("Al\u{AD}ice", '\u{AD}'),
            ("Alice\u{E0041}", '\u{E0041}'),
            ("Al\u{3164}ice", '\u{3164}'),
            ("Alice\u{FE0F}", '\u{FE0F}'),
            ("Alice\u{E000}", '\u{E000}'),
            ("Alice\u{FFFF}", '\u{FFFF}'),
        ] {
            assert_eq!(
                clean_person_name(typed),
                Err(NameRefusal::Invisible(c)),
                "{typed:?}"
            );
        }
        assert_eq!(
            clean_person_name("Director <director@example.org>"),
            Err(NameRefusal::AddressLike('<'))
        );
        assert_eq!(
            clean_person_name("director@example.org"),
            Err(NameRefusal::AddressLike('@'))
        );
        let said = NameRefusal::Invisible('\u{202E}').to_string();
        assert!(said.contains("U+202E"), "{said}");
    }
}
