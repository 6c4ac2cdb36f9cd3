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

/// A journal written before the grammar may hold ids it now refuses; those commands were
/// acknowledged, so replay rebuilds them (the grammar is for live requests), while the same
/// request sent live is refused naming the field. Length and emptiness held always, and
/// still hold in replay.
#[test]
fn replay_accepts_ids_written_before_the_grammar() {
    let old_ids = ["MD\t21", " padded ", "RTL\u{202e}1", "zero\u{200b}width", "nul\0x"];
    let mut replayed = machine();
    for (n, unit_id) in old_ids.iter().enumerate() {
        assert!(ident::check(unit_id).is_err(), "{unit_id:?} is grammatical: not a test");
        let request = pb::UpsertUnitRequest {
            request_id: format!("old-{n}"),
            unit: Some(pb::UnitSpec {
                unit_id: (*unit_id).to_owned(),
                agency: 1,
                unit_type: "irv".into(),
                ..Default::default()
            }),
        };
        let bytes = request.encode_to_vec();
        let time_ms = 1_750_000_000_000 + i64::try_from(n).unwrap();
        let mut live = machine();
        match live.execute(Method::UpsertUnit, &bytes, time_ms, JournalAnswer::Unchecked) {
            Outcome::Refused(e) => assert!(e.to_string().contains("unit.unit_id"), "{e}"),
            other => panic!("{unit_id:?} applied live: {other:?}"),
        }
        let payload = dispatch_engine::record::encode(time_ms, &bytes);
        let sequence = u64::try_from(n).unwrap() + 1;
        replayed.replay(sequence, "UpsertUnit", &payload, b"").expect("an acknowledged entry replays");
        assert!(replayed.units().table().slot(unit_id).is_some(), "{unit_id:?} not rebuilt");
    }
    replayed.check_invariants().expect("invariants");
    // An AssignUnits naming an old id replays too: the store's own id check follows the mode.
    let create = pb::CreateIncidentRequest {
        request_id: "old-inc".into(),
        incident_id: "INC\u{202e}9".into(),
        grade: 1,
        incident_type: "burglary".into(),
        location: Some(pb::Location { lat: 51.5, lon: -0.1 }),
        requirements: vec![pb::RequirementGroup { agency: 1, count: 1, ..Default::default() }],
        ..Default::default()
    };
    let payload = dispatch_engine::record::encode(1_750_000_000_100, &create.encode_to_vec());
    replayed.replay(6, "CreateIncident", &payload, b"").expect("old incident id replays");
    let assign = pb::AssignUnitsRequest {
        request_id: "old-assign".into(),
        incident_id: "INC\u{202e}9".into(),
        unit_ids: vec!["MD\t21".into()],
        allow_diversion: false,
    };
    let payload = dispatch_engine::record::encode(1_750_000_000_200, &assign.encode_to_vec());
    replayed.replay(7, "AssignUnits", &payload, b"").expect("old ids assign in replay");
    replayed.check_invariants().expect("invariants");
    // The relaxation ends with the replayed entry: the next live request is held to the grammar.
    let live = pb::UpsertUnitRequest {
        request_id: "new".into(),
        unit: Some(pb::UnitSpec { unit_id: "MD\t22".into(), agency: 1, unit_type: "irv".into(), ..Default::default() }),
    };
    assert!(matches!(
        replayed.execute(Method::UpsertUnit, &live.encode_to_vec(), 1_750_000_001_000, JournalAnswer::Unchecked),
        Outcome::Refused(_)
    ));
    // What never was accepted is still refused in replay: an id over the length limit.
    let long = pb::UpsertUnitRequest {
        request_id: "long".into(),
        unit: Some(pb::UnitSpec {
            unit_id: "X".repeat(MAX_ID_LEN + 1),
            agency: 1,
            unit_type: "irv".into(),
            ..Default::default()
        }),
    };
    let payload = dispatch_engine::record::encode(1_750_000_002_000, &long.encode_to_vec());
    assert!(replayed.replay(8, "UpsertUnit", &payload, b"").is_err());
}
