//! The identifier grammar: the one place that decides which strings may name a unit, an
//! incident, a request, an area or a type.
//!
//! Identifiers end up in journal entries, audit and log lines, metrics labels and on
//! dispatchers' screens. A string that renders differently from what it is (a right-to-left
//! override reversing the rest of a line, a zero-width joiner making two ids look alike, a
//! newline starting a forged log line, a NUL cutting a C string short) would let a client
//! forge those lines or show a unit under a name it does not have. So an identifier is:
//!
//! - 1 to [`MAX_ID_LEN`] bytes of UTF-8 (an optional one may be empty: "none");
//! - printable text: no control characters (Unicode Cc), no format characters (Cf: the bidi
//!   embeddings, overrides and isolates, zero-width spaces and joiners, the BOM, soft
//!   hyphen, tags), no other default-ignorable (invisible) characters, no line or paragraph
//!   separators (Zl, Zp), no private-use characters (Co) and no noncharacters;
//! - spaced with U+0020 only (area names such as "Barking and Dagenham" have spaces; the
//!   other Unicode spaces look the same and would make two ids read alike), and neither
//!   starting nor ending with a space.
//!
//! Everything the project generates or ships keeps to it: callsigns (`CW-IRV-1`,
//! `IRV-000123`), load-test ids (`LT-<run id>-U000123`), server-chosen incident ids
//! (`INC-000001`), UUID request ids, the borough names with their spaces, ampersands and
//! hyphens ("Kensington and Chelsea", "Hammersmith & Fulham").
//!
//! What it does not do: it does not refuse look-alike letters of other scripts (a Cyrillic
//! "А" for a Latin "A"), which would need a script policy that would refuse legitimate
//! non-Latin names; and unassigned code points pass (they render as a visible
//! placeholder). The tables follow Unicode 15.
//!
//! The grammar governs live requests, not history. A journal written before it may hold
//! ids it now refuses (a unit id with an embedded tab, say), and those commands were
//! acknowledged: recovery must rebuild them, not stop. So [`admit`] (what validation and
//! the unit store call) applies the whole grammar, except while [`replaying`] runs a
//! journaled command, when only the rules that always held apply (non-empty, at most
//! [`MAX_ID_LEN`] bytes). The switch is per thread and set only by `Machine::replay`: the
//! state machine stays a function of (state, command, time), with replay an explicit mode.

use std::cell::Cell;
use std::fmt;

use crate::wire::limits::MAX_ID_LEN;

/// Why a string is not an identifier. `Display` is the reason the client sees after the
/// field name; it never repeats the offending characters (they are what must not reach a
/// log line), it names them as `U+202E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLong {
        bytes: usize,
        limit: usize,
    },
    /// Only spaces.
    Blank,
    /// Starts or ends with a space.
    OuterSpace,
    /// A character outside the grammar, at this character position (0-based).
    Character {
        at: usize,
        c: char,
        class: Class,
    },
}

/// The classes of characters refused inside an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Control,
    Format,
    Invisible,
    Separator,
    Space,
    PrivateUse,
    Noncharacter,
}

impl Class {
    fn describe(self) -> &'static str {
        match self {
            Class::Control => "a control character",
            Class::Format => "a format character",
            Class::Invisible => "an invisible character",
            Class::Separator => "a line or paragraph separator",
            Class::Space => "a space other than U+0020",
            Class::PrivateUse => "a private-use character",
            Class::Noncharacter => "a noncharacter",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Empty => f.write_str("must not be empty"),
            Refusal::TooLong { bytes, limit } => write!(f, "is {bytes} bytes long; the limit is {limit}"),
            Refusal::Blank => f.write_str("must not be blank"),
            Refusal::OuterSpace => f.write_str("must not begin or end with a space"),
            Refusal::Character { at, c, class } => write!(
                f,
                "contains U+{:04X} ({}) at character {at}; identifiers are printable text",
                u32::from(c),
                class.describe()
            ),
        }
    }
}

/// Inclusive code point ranges of each refused class, in code point order within a class.
/// Cc, Cf, Zl/Zp, Co and the spaces are the Unicode general categories; `Invisible` holds
/// the Default_Ignorable_Code_Point characters that are not already Cf (Hangul fillers,
/// variation selectors, the combining grapheme joiner, ...).
const REFUSED: &[(u32, u32, Class)] = &[
    (0x0000, 0x001F, Class::Control),
    (0x007F, 0x009F, Class::Control),
    (0x00A0, 0x00A0, Class::Space),
    (0x00AD, 0x00AD, Class::Format),
    (0x034F, 0x034F, Class::Invisible),
    (0x0600, 0x0605, Class::Format),
    (0x061C, 0x061C, Class::Format),
    (0x06DD, 0x06DD, Class::Format),
    (0x070F, 0x070F, Class::Format),
    (0x0890, 0x0891, Class::Format),
    (0x08E2, 0x08E2, Class::Format),
    (0x115F, 0x1160, Class::Invisible),
    (0x1680, 0x1680, Class::Space),
    (0x17B4, 0x17B5, Class::Invisible),
    (0x180B, 0x180D, Class::Invisible),
    (0x180E, 0x180E, Class::Format),
    (0x180F, 0x180F, Class::Invisible),
    (0x2000, 0x200A, Class::Space),
    (0x200B, 0x200F, Class::Format),
    (0x2028, 0x2029, Class::Separator),
    (0x202A, 0x202E, Class::Format),
    (0x202F, 0x202F, Class::Space),
    (0x205F, 0x205F, Class::Space),
    (0x2060, 0x2064, Class::Format),
    (0x2065, 0x2065, Class::Invisible),
    (0x2066, 0x206F, Class::Format),
    (0x3000, 0x3000, Class::Space),
    (0x3164, 0x3164, Class::Invisible),
    (0xE000, 0xF8FF, Class::PrivateUse),
    (0xFDD0, 0xFDEF, Class::Noncharacter),
    (0xFE00, 0xFE0F, Class::Invisible),
    (0xFEFF, 0xFEFF, Class::Format),
    (0xFFA0, 0xFFA0, Class::Invisible),
    (0xFFF0, 0xFFF8, Class::Invisible),
    (0xFFF9, 0xFFFB, Class::Format),
    (0x110BD, 0x110BD, Class::Format),
    (0x110CD, 0x110CD, Class::Format),
    (0x13430, 0x1343F, Class::Format),
    (0x1BCA0, 0x1BCA3, Class::Format),
    (0x1D173, 0x1D17A, Class::Format),
    (0xE0000, 0xE0000, Class::Invisible),
    (0xE0001, 0xE0001, Class::Format),
    (0xE0002, 0xE001F, Class::Invisible),
    (0xE0020, 0xE007F, Class::Format),
    (0xE0080, 0xE0FFF, Class::Invisible),
    (0xF0000, 0x10FFFF, Class::PrivateUse),
];

/// The class of a character refused inside an identifier; `None` when it is allowed.
pub fn refused_class(c: char) -> Option<Class> {
    let cp = u32::from(c);
    // The common case, printable ASCII, answers without the table.
    if (0x20..0x7F).contains(&cp) {
        return None;
    }
    // U+FFFE and U+FFFF of every plane; the planes 15 and 16 ones are private use.
    if cp & 0xFFFE == 0xFFFE && cp < 0xF0000 {
        return Some(Class::Noncharacter);
    }
    let i = REFUSED.partition_point(|&(_, hi, _)| hi < cp);
    REFUSED.get(i).filter(|&&(lo, _, _)| lo <= cp).map(|&(_, _, class)| class)
}

/// Checks `value` against the grammar. An empty value is [`Refusal::Empty`]: the caller
/// decides whether the field is optional.
pub fn check(value: &str) -> Result<(), Refusal> {
    check_within(value, MAX_ID_LEN)
}

/// [`check`] with another length limit, for names that are not dispatch ids but are
/// written to the same lines (a certificate's principal, a claimed actor: longer URIs).
pub fn check_within(value: &str, max_bytes: usize) -> Result<(), Refusal> {
    if value.is_empty() {
        return Err(Refusal::Empty);
    }
    if value.len() > max_bytes {
        return Err(Refusal::TooLong { bytes: value.len(), limit: max_bytes });
    }
    for (at, c) in value.chars().enumerate() {
        if let Some(class) = refused_class(c) {
            return Err(Refusal::Character { at, c, class });
        }
    }
    if value.bytes().all(|b| b == b' ') {
        return Err(Refusal::Blank);
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(Refusal::OuterSpace);
    }
    Ok(())
}

thread_local! {
    /// Whether this thread is applying a journaled command (see the module docs).
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the grammar relaxed to the rules journals were always written under:
/// `Machine::replay` runs each journaled command inside it.
pub fn replaying<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLAYING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REPLAYING.with(|r| r.replace(true)));
    f()
}

/// The rule in force for an id: [`check`] for a live request; inside [`replaying`], only
/// emptiness and length.
pub fn admit(value: &str) -> Result<(), Refusal> {
    if !REPLAYING.with(Cell::get) {
        return check(value);
    }
    if value.is_empty() {
        return Err(Refusal::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(Refusal::TooLong { bytes: value.len(), limit: MAX_ID_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_project_generates_and_ships_is_valid() {
        for id in [
            "MD21",
            "CW-IRV-1",
            "IRV-000123",
            "LT-20261201T1340-3f9a-U000123",
            "INC-000001",
            "3f2b5c1e-8a4d-4c7e-9b1f-2d3e4f5a6b7c",
            "Barking and Dagenham",
            "Hammersmith & Fulham",
            "Richmond upon Thames",
            "City of London",
            "lang_polish",
            "Ynys Môn",
            "Zürich-Süd",
            "警察",
            "\u{1f693}",
            "a b",
            "x/y:z#1",
        ] {
            assert_eq!(check(id), Ok(()), "{id:?}");
        }
        assert_eq!(check(&"\u{1f693}".repeat(16)), Ok(()), "64 bytes of four-byte characters");
        assert_eq!(check(&"y".repeat(64)), Ok(()));
    }

    #[test]
    fn each_bad_form_is_refused_with_a_reason_that_does_not_repeat_it() {
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            (" ", "must not be blank"),
            ("   ", "must not be blank"),
            (" MD21", "must not begin or end with a space"),
            ("MD21 ", "must not begin or end with a space"),
            ("MD\n21", "contains U+000A (a control character) at character 2"),
            ("MD\r21", "contains U+000D (a control character"),
            ("a\u{0}b", "contains U+0000 (a control character) at character 1"),
            ("\t", "contains U+0009 (a control character"),
            ("\u{1b}[31m", "contains U+001B"),
            ("\u{85}", "contains U+0085 (a control character"),
            ("\u{202e}evil", "contains U+202E (a format character) at character 0; identifiers are printable text"),
            ("ab\u{2066}c", "contains U+2066 (a format"),
            ("MD\u{200d}21", "contains U+200D (a format"),
            ("MD\u{200b}21", "contains U+200B (a format"),
            ("\u{feff}MD21", "contains U+FEFF (a format"),
            ("MD\u{ad}21", "contains U+00AD (a format"),
            ("MD\u{e0041}", "contains U+E0041 (a format"),
            ("MD\u{3164}21", "contains U+3164 (an invisible character"),
            ("MD21\u{fe0f}", "contains U+FE0F (an invisible character"),
            ("MD\u{2028}21", "contains U+2028 (a line or paragraph separator"),
            ("MD\u{a0}21", "contains U+00A0 (a space other than U+0020) at character 2"),
            ("MD\u{3000}21", "contains U+3000 (a space other than U+0020"),
            ("MD\u{e000}", "contains U+E000 (a private-use character"),
            ("MD\u{10fffd}", "contains U+10FFFD (a private-use character"),
            ("MD\u{fffe}", "contains U+FFFE (a noncharacter"),
            ("MD\u{1fffF}", "contains U+1FFFF (a noncharacter"),
            ("MD\u{fdd0}", "contains U+FDD0 (a noncharacter"),
        ];
        for &(value, reason) in cases {
            let got = check(value).expect_err(value).to_string();
            assert!(got.starts_with(reason), "{value:?}: {got}");
            for c in value.chars().filter(|c| refused_class(*c).is_some()) {
                assert!(!got.contains(c), "{value:?}: the reason repeats {c:?}");
            }
        }
        assert_eq!(check(&"U".repeat(65)).unwrap_err().to_string(), "is 65 bytes long; the limit is 64");
        assert_eq!(check(&"\u{1f693}".repeat(17)), Err(Refusal::TooLong { bytes: 68, limit: MAX_ID_LEN }));
    }

    #[test]
    fn the_table_is_ordered_and_disjoint() {
        for pair in REFUSED.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{:x?}", pair);
        }
        // Every range's ends are classified as the range says (the lookup finds them), and
        // the characters around printable ASCII are allowed.
        for &(lo, hi, class) in REFUSED {
            for cp in [lo, hi] {
                if let Some(c) = char::from_u32(cp) {
                    let expect = if cp & 0xFFFE == 0xFFFE && cp < 0xF0000 { Class::Noncharacter } else { class };
                    assert_eq!(refused_class(c), Some(expect), "U+{cp:04X}");
                }
            }
        }
        for c in ['\u{a1}', '\u{ae}', '\u{34e}', '\u{ffef}', '\u{1f693}', '\u{efffd}'] {
            assert_eq!(refused_class(c), None, "{c:?}");
        }
    }
}
