//! In-process fuzzing of the wire layer: arbitrary bytes, and valid requests with bytes
//! flipped, inserted, deleted and spliced, into every decoder and read handler of a seeded
//! machine. Every answer must be an answer (no panic), a refused command must leave the
//! state exactly as it was, and the state's invariants must hold after every step.
//!
//! `DISPATCH_FUZZ_CASES` sets the cases per property (default 2,000; the long run in
//! README.md used 1,000,000).

use dispatch_engine::command::Method;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::snapshot;
use dispatch_engine::state::{JournalAnswer, Machine, Outcome};
use dispatch_engine::store::UnitStore;
use dispatch_engine::wire::{pb, reads, token};
use proptest::prelude::*;
use prost::Message;

const T0: i64 = 1_750_000_000_000;
const UNITS: &[&str] = &["U1", "U2", "U3", "U4"];

fn cases() -> u32 {
    std::env::var("DISPATCH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn group() -> pb::RequirementGroup {
    pb::RequirementGroup {
        agency: 1,
        unit_types: vec!["irv".into()],
        capabilities: vec!["taser".into()],
        count: 1,
        ..Default::default()
    }
}

/// A machine with units (positioned, one with a taser) and an open incident with one unit.
fn seeded() -> Machine {
    let mut m = Machine::new(UnitStore::new(RankConfig::default(), 0.01).expect("valid config"), 50);
    for (i, id) in UNITS.iter().enumerate() {
        let r = pb::UpsertUnitRequest {
            request_id: format!("seed-{id}"),
            unit: Some(pb::UnitSpec {
                unit_id: (*id).into(),
                agency: 1,
                unit_type: "irv".into(),
                capabilities: if i == 0 { vec!["taser".into()] } else { vec![] },
                home_area: "Westminster".into(),
                ..Default::default()
            }),
        };
        apply(&mut m, Method::UpsertUnit, &r.encode_to_vec());
    }
    let lat: Vec<f64> = (0..UNITS.len()).map(|i| 51.5 + 0.01 * i as f64).collect();
    m.update_locations(UNITS, &lat, &[-0.12; 4], &[T0; 4], T0).expect("a well-formed batch");
    let (_, create) = requests().swap_remove(2);
    let mut create = pb::CreateIncidentRequest::decode(create.as_slice()).expect("a template");
    create.request_id = "seed-c".into();
    apply(&mut m, Method::CreateIncident, &create.encode_to_vec());
    let assign = pb::AssignUnitsRequest {
        request_id: "seed-a".into(),
        incident_id: "INC-000001".into(),
        unit_ids: vec!["U2".into()],
        ..Default::default()
    };
    apply(&mut m, Method::AssignUnits, &assign.encode_to_vec());
    m
}

fn apply(m: &mut Machine, method: Method, bytes: &[u8]) {
    let outcome = m.execute(method, bytes, T0, JournalAnswer::Unchecked);
    assert!(matches!(outcome, Outcome::Applied { .. }), "seeding {method:?}: {outcome:?}");
}

/// One valid request of every kind: `Some(method)` for a command, `None` for a read (the
/// read is told apart by the caller from the template's index).
fn requests() -> Vec<(Option<Method>, Vec<u8>)> {
    let incident = pb::CreateIncidentRequest {
        request_id: "c1".into(),
        grade: 1,
        incident_type: "violence".into(),
        location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
        area: "Westminster".into(),
        requirements: vec![group()],
        ..Default::default()
    };
    let ad_hoc = pb::RecommendUnitsRequest {
        target: Some(pb::recommend_units_request::Target::AdHoc(pb::AdHocTarget {
            location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
            grade: 1,
            area: "Westminster".into(),
            requirements: vec![group()],
        })),
        k: 3,
        eligible_statuses: vec![1],
        max_eta_seconds: Some(600.0),
        explain: true,
        include_diversions: true,
    };
    let by_id = pb::RecommendUnitsRequest {
        target: Some(pb::recommend_units_request::Target::IncidentId("INC-000001".into())),
        ..Default::default()
    };
    vec![
        (
            Some(Method::UpsertUnit),
            pb::UpsertUnitRequest {
                request_id: "u1".into(),
                unit: Some(pb::UnitSpec {
                    unit_id: "U1".into(),
                    agency: 1,
                    unit_type: "arv".into(),
                    capabilities: vec!["firearms".into()],
                    home_area: "Camden".into(),
                    shift_start: Some(prost_types::Timestamp { seconds: T0 / 1000 - 3600, nanos: 0 }),
                    shift_end: Some(prost_types::Timestamp { seconds: T0 / 1000 + 3600, nanos: 0 }),
                }),
            }
            .encode_to_vec(),
        ),
        (
            Some(Method::SetUnitStatus),
            pb::SetUnitStatusRequest { request_id: "s1".into(), unit_id: "U2".into(), status: 4 }.encode_to_vec(),
        ),
        (Some(Method::CreateIncident), incident.encode_to_vec()),
        (
            Some(Method::UpdateIncident),
            pb::UpdateIncidentRequest {
                request_id: "x1".into(),
                incident_id: "INC-000001".into(),
                grade: Some(2),
                area: Some("Camden".into()),
                requirements: Some(pb::Requirements { groups: vec![group(), group()] }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            Some(Method::CloseIncident),
            pb::CloseIncidentRequest { request_id: "z1".into(), incident_id: "INC-000001".into() }.encode_to_vec(),
        ),
        (
            Some(Method::AssignUnits),
            pb::AssignUnitsRequest {
                request_id: "a1".into(),
                incident_id: "INC-000001".into(),
                unit_ids: vec!["U1".into(), "U3".into()],
                allow_diversion: true,
            }
            .encode_to_vec(),
        ),
        (None, pb::GetUnitRequest { unit_id: "U1".into() }.encode_to_vec()),
        (
            None,
            pb::ListUnitsRequest {
                statuses: vec![1, 2],
                agencies: vec![1],
                home_area: "Westminster".into(),
                page_size: 2,
                page_token: token::encode(token::Listing::Units, "U1"),
            }
            .encode_to_vec(),
        ),
        (None, pb::GetIncidentRequest { incident_id: "INC-000001".into() }.encode_to_vec()),
        (
            None,
            pb::ListIncidentsRequest {
                statuses: vec![1],
                grades: vec![1],
                page_size: 1,
                page_token: token::encode(token::Listing::Incidents, "I"),
            }
            .encode_to_vec(),
        ),
        (None, ad_hoc.encode_to_vec()),
        (None, by_id.encode_to_vec()),
        (None, pb::BatchRecommendUnitsRequest { queries: vec![ad_hoc.clone(), by_id.clone()] }.encode_to_vec()),
        (
            None,
            pb::UpdateLocationsRequest {
                unit_ids: vec!["U1".into(), "U9".into()],
                lat: vec![51.51, 91.0],
                lon: vec![-0.1, 0.0],
                time_unix_ms: vec![T0 + 1000, T0],
            }
            .encode_to_vec(),
        ),
        (
            None,
            pb::ListPendingRequest {
                grades: vec![1, 2],
                area: "Westminster".into(),
                page_size: 1,
                page_token: token::encode(token::Listing::Pending, "1:0:I"),
                include_diversions: true,
            }
            .encode_to_vec(),
        ),
    ]
}

/// Sends `bytes` to the handler of template `which` (and, for arbitrary bytes, to every
/// handler): answers or refusals only, invariants kept, refusals change nothing.
fn exercise(m: &mut Machine, which: usize, bytes: &[u8]) -> Result<(), TestCaseError> {
    const COMMANDS: [Method; 6] = [
        Method::UpsertUnit,
        Method::SetUnitStatus,
        Method::CreateIncident,
        Method::UpdateIncident,
        Method::CloseIncident,
        Method::AssignUnits,
    ];
    let before = snapshot::digest(m);
    match which {
        0..=5 => {
            let outcome = m.execute(COMMANDS[which], bytes, T0 + 5_000, JournalAnswer::Absent);
            if matches!(outcome, Outcome::Refused(_)) {
                prop_assert_eq!(snapshot::digest(m), before, "a refused command changed the state");
            }
        }
        6 => drop(reads::get_unit(m, bytes)),
        7 => drop(reads::list_units(m, bytes)),
        8 => drop(reads::get_incident(m, bytes)),
        9 => drop(reads::list_incidents(m, bytes)),
        10 | 11 => drop(reads::recommend(m, bytes, T0 + 5_000)),
        12 => drop(reads::batch_recommend(m, bytes, T0 + 5_000)),
        13 => drop(reads::update_locations(m, bytes, 0, T0 + 5_000)),
        _ => drop(reads::list_pending(m, bytes, T0 + 5_000)),
    }
    if which >= 6 && which != 13 {
        prop_assert_eq!(snapshot::digest(m), before, "a read changed the state");
    }
    m.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
    Splice(prop::sample::Index, usize, prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<Index>(), prop::sample::select(vec![0x00u8, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x08, 0x10, 0x1a]))
            .prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 0usize..15, any::<Index>()).prop_map(|(i, t, j)| Edit::Splice(i, t, j)),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit], templates: &[(Option<Method>, Vec<u8>)]) -> Vec<u8> {
    for e in edits {
        let at = |i: &prop::sample::Index, len: usize| i.index(len + 1);
        match e {
            Edit::Flip(i, bit) if !data.is_empty() => {
                let k = i.index(data.len());
                data[k] ^= 1 << bit;
            }
            Edit::Set(i, b) if !data.is_empty() => {
                let k = i.index(data.len());
                data[k] = *b;
            }
            Edit::Insert(i, bytes) => {
                let k = at(i, data.len());
                data.splice(k..k, bytes.iter().copied());
            }
            Edit::Delete(i, n) if !data.is_empty() => {
                let k = i.index(data.len());
                data.drain(k..(k + n).min(data.len()));
            }
            Edit::Duplicate(i, n) if !data.is_empty() => {
                let k = i.index(data.len());
                let end = (k + n).min(data.len());
                let copy = data[k..end].to_vec();
                data.splice(end..end, copy);
            }
            Edit::Truncate(i) => data.truncate(at(i, data.len())),
            Edit::Splice(i, t, j) => {
                let other = &templates[*t % templates.len()].1;
                let from = j.index(other.len().max(1)).min(other.len());
                let k = at(i, data.len());
                data.splice(k..k, other[from..(from + 12).min(other.len())].iter().copied());
            }
            _ => {}
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes to every handler in turn.
    #[test]
    fn arbitrary_bytes_to_every_handler(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut m = seeded();
        for which in 0..requests().len() {
            exercise(&mut m, which, &bytes)?;
        }
    }

    /// Valid requests, edited: most still decode, many still validate, so this reaches the
    /// state machine's checks with near-valid commands.
    #[test]
    fn edited_valid_requests(
        steps in proptest::collection::vec((0usize..15, proptest::collection::vec(edit(), 0..4)), 1..8)
    ) {
        let templates = requests();
        let mut m = seeded();
        for (which, edits) in &steps {
            let bytes = mutate(templates[*which].1.clone(), edits, &templates);
            exercise(&mut m, *which, &bytes)?;
        }
    }
}

#[test]
fn the_templates_are_valid() {
    let mut m = seeded();
    let templates = requests();
    for (which, (method, bytes)) in templates.iter().enumerate() {
        let ok = match which {
            0..=5 => matches!(
                m.clone().execute(method.expect("a command"), bytes, T0 + 5_000, JournalAnswer::Absent),
                Outcome::Applied { .. }
            ),
            6 => reads::get_unit(&m, bytes).is_ok(),
            7 => reads::list_units(&m, bytes).is_ok(),
            8 => reads::get_incident(&m, bytes).is_ok(),
            9 => reads::list_incidents(&m, bytes).is_ok(),
            10 | 11 => reads::recommend(&m, bytes, T0).is_ok(),
            12 => reads::batch_recommend(&m, bytes, T0).is_ok(),
            13 => reads::update_locations(&mut m, bytes, 0, T0 + 5_000).is_ok(),
            _ => reads::list_pending(&m, bytes, T0).is_ok(),
        };
        assert!(ok, "template {which} is refused");
    }
}
