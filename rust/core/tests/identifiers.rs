//! The identifier grammar (`wire::ident`) as properties: against rules stated independently
//! of its tables (Rust's own `is_control` and `is_whitespace`, a list of the characters
//! that forge log lines or reverse text), and through the state machine: an UpsertUnit is
//! applied exactly when its ids keep to the grammar, and a refused one changes nothing.

use dispatch_engine::command::Method;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::snapshot;
use dispatch_engine::state::{JournalAnswer, Machine, Outcome};
use dispatch_engine::store::UnitStore;
use dispatch_engine::wire::ident::{self, Refusal};
use dispatch_engine::wire::limits::MAX_ID_LEN;
use dispatch_engine::wire::pb;
use proptest::prelude::*;
use prost::Message;

/// Characters that make a line read differently from what it is: line breaks, NUL, escape,
/// bidi embeddings, overrides and isolates, zero-width characters, the BOM, look-alike
/// spaces.
const FORGERS: &[char] = &[
    '\n', '\r', '\0', '\x1b', '\x7f', '\u{85}', '\u{2028}', '\u{2029}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}',
    '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{2060}', '\u{feff}', '\u{a0}', '\u{2007}', '\u{3000}', '\u{180e}', '\u{ad}',
];

/// Strings that look like ids, with now and then a character from anywhere in Unicode.
fn id_like() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => proptest::char::range('!', '~'),
        1 => Just(' '),
        1 => proptest::sample::select(FORGERS),
        1 => any::<char>(),
    ];
    proptest::collection::vec(c, 0..24).prop_map(|cs| cs.into_iter().collect())
}

fn machine() -> Machine {
    Machine::new(UnitStore::new(RankConfig::default(), 0.01).expect("valid config"), 100)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Whatever the grammar accepts is printable by rules that do not use its tables.
    #[test]
    fn accepted_ids_are_printable(s in id_like()) {
        if ident::check(&s).is_ok() {
            prop_assert!(!s.is_empty() && s.len() <= MAX_ID_LEN);
            prop_assert!(!s.chars().any(|c| c.is_control() || FORGERS.contains(&c)), "{s:?}");
            prop_assert!(!s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace), "{s:?}");
            prop_assert!(s.chars().all(|c| c == ' ' || !c.is_whitespace()), "{s:?}");
        }
    }

    /// Any valid id with one forging character put anywhere is refused, naming where.
    #[test]
    fn one_forging_character_anywhere_is_refused(
        s in "[A-Za-z0-9-]{1,40}",
        at in any::<prop::sample::Index>(),
        c in proptest::sample::select(FORGERS),
    ) {
        prop_assert_eq!(ident::check(&s), Ok(()));
        let mut chars: Vec<char> = s.chars().collect();
        let at = at.index(chars.len() + 1);
        chars.insert(at, c);
        let forged: String = chars.into_iter().collect();
        match ident::check(&forged) {
            Err(Refusal::Character { at: found, c: which, .. }) => {
                prop_assert_eq!((found, which), (at, c));
            }
            other => prop_assert!(false, "{forged:?} gave {other:?}"),
        }
    }

    /// Through the state machine: applied exactly when the id keeps to the grammar; a
    /// refusal names `unit.unit_id` and leaves the state as it was.
    #[test]
    fn upsert_unit_applies_exactly_the_grammatical_ids(ids in proptest::collection::vec(id_like(), 1..12)) {
        let mut m = machine();
        for (n, unit_id) in ids.iter().enumerate() {
            let request = pb::UpsertUnitRequest {
                request_id: format!("r{n}"),
                unit: Some(pb::UnitSpec {
                    unit_id: unit_id.clone(),
                    agency: 1,
                    unit_type: "irv".into(),
                    ..Default::default()
                }),
            };
            let before = snapshot::digest(&m);
            let outcome = m.execute(Method::UpsertUnit, &request.encode_to_vec(), 1_750_000_000_000, JournalAnswer::Unchecked);
            match (ident::check(unit_id), outcome) {
                (Ok(()), Outcome::Applied { .. }) => prop_assert!(m.units().table().slot(unit_id).is_some()),
                (Err(_), Outcome::Refused(e)) => {
                    prop_assert!(e.to_string().contains("unit.unit_id"), "{e}");
                    prop_assert_eq!(snapshot::digest(&m), before);
                }
                (grammar, outcome) => prop_assert!(false, "{unit_id:?}: grammar {grammar:?}, outcome {outcome:?}"),
            }
            m.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}
