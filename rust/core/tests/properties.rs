//! Property tests: the ring search against the brute-force oracle, and the index's internal
//! links under random sequences of inserts, moves, status changes and removals.

use dispatch_engine::caps::DEFAULT_CAPABILITIES;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::store::{UnitSpec, UnitStore};
use dispatch_engine::types::{Agency, Grade, Status};
use proptest::prelude::*;

const TYPES: &[(Agency, &str)] = &[
    (Agency::Police, "irv"),
    (Agency::Police, "dog"),
    (Agency::Police, "foot"),
    (Agency::Fire, "pump"),
    (Agency::Ambulance, "ambulance"),
];
const AREAS: &[&str] = &["Westminster", "Camden", "Hackney"];

#[derive(Debug, Clone)]
struct UnitGen {
    type_ix: usize,
    caps: Vec<usize>,
    status: usize,
    area: Option<usize>,
    shift: Option<(i64, i64)>,
    pos: Option<(f64, f64)>,
    /// When the position was taken, Unix ms: any age relative to the queries' now.
    pos_ms: i64,
    /// For a unit in an attached status: the grade of its incident (pre-emption).
    incident_grade: usize,
}

fn unit_gen(spread: f64) -> impl Strategy<Value = UnitGen> {
    (
        0..TYPES.len(),
        prop::collection::vec(0..6usize, 0..3),
        0..7usize,
        prop::option::of(0..AREAS.len()),
        prop::option::of((0i64..4_000_000, 1i64..8_000_000)),
        prop::option::weighted(0.95, (51.5 - spread..51.5 + spread, -0.1 - spread..-0.1 + spread)),
        1i64..10_000_000,
        0..4usize,
    )
        .prop_map(|(type_ix, caps, status, area, shift, pos, pos_ms, incident_grade)| UnitGen {
            type_ix,
            caps,
            status,
            area,
            shift: shift.map(|(s, len)| (s, s + len)),
            pos,
            pos_ms,
            incident_grade,
        })
}

/// Stale-position settings (trusted age, weight, exclusion age, seconds) from none at all
/// to harsh, so the searches meet penalised and excluded positions of every age.
fn stale_gen() -> impl Strategy<Value = (f64, f64, f64)> {
    prop::sample::select(vec![
        (1e7, 0.0, 1e7),
        (120.0, 1.0, 900.0),
        (0.0, 3.0, 2_000.0),
        (500.0, 0.5, 500.0),
        (60.0, 10.0, 6_000.0),
    ])
}

fn config((stale_after, weight, exclude): (f64, f64, f64)) -> RankConfig {
    RankConfig {
        stale_after_seconds: stale_after,
        stale_position_weight: weight,
        stale_exclude_after_seconds: exclude,
        ..RankConfig::default()
    }
}

/// Units in an attached status are dispatched to an incident of their generated grade
/// (`I<grade>`), then moved on to their status, as the state machine would have them.
fn build_with(units: &[UnitGen], cell_deg: f64, config: RankConfig) -> UnitStore {
    let mut store = UnitStore::new(config, cell_deg).unwrap();
    for (i, u) in units.iter().enumerate() {
        let (agency, unit_type) = TYPES[u.type_ix];
        let spec = UnitSpec {
            agency,
            unit_type: unit_type.into(),
            capabilities: u.caps.iter().map(|&c| DEFAULT_CAPABILITIES[c].to_string()).collect(),
            home_area: u.area.map(|a| AREAS[a].to_string()),
            shift_start_ms: u.shift.map(|s| s.0),
            shift_end_ms: u.shift.map(|s| s.1),
            status: Some(Status::ALL[u.status]),
        };
        // Ids with shared prefixes and equal positions exercise the unit_id tie-break.
        let id = format!("U{:03}", i % 7 * 100 + i);
        let status = Status::ALL[u.status];
        if matches!(status, Status::Dispatched | Status::EnRoute | Status::OnScene) {
            let slot = store.upsert(&id, &UnitSpec { status: None, ..spec }).unwrap();
            let grade = Grade::ALL[u.incident_grade];
            store.dispatch_slots(&format!("I{}", grade.name()), grade, &[slot]);
            if status != Status::Dispatched {
                store.set_status(&id, status).unwrap();
            }
        } else {
            store.upsert(&id, &spec).unwrap();
        }
        if let Some((lat, lon)) = u.pos {
            store.update_location(&id, lat, lon, u.pos_ms).unwrap();
        }
    }
    store
}

#[derive(Debug, Clone)]
struct QueryGen {
    lat: f64,
    lon: f64,
    now_ms: i64,
    k: usize,
    grade: usize,
    required: Vec<usize>,
    agencies: Vec<usize>,
    statuses: Vec<usize>,
    unit_types: Vec<usize>,
    area: Option<usize>,
    by_eta: bool,
    diversions: bool,
}

fn query_gen(spread: f64) -> impl Strategy<Value = QueryGen> {
    (
        (51.5 - 2.0 * spread..51.5 + 2.0 * spread, -0.1 - 2.0 * spread..-0.1 + 2.0 * spread),
        0i64..10_000_000,
        1usize..12,
        0..4usize,
        prop::collection::vec(0..6usize, 0..2),
        prop::collection::vec(0..3usize, 0..3),
        prop::collection::vec(0..7usize, 0..3),
        prop::collection::vec(0..TYPES.len(), 0..2),
        prop::option::of(0..AREAS.len() + 1),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((lat, lon), now_ms, k, grade, required, agencies, statuses, unit_types, area, by_eta, diversions)| {
                QueryGen {
                    lat,
                    lon,
                    now_ms,
                    k,
                    grade,
                    required,
                    agencies,
                    statuses,
                    unit_types,
                    area,
                    by_eta,
                    diversions,
                }
            },
        )
}

fn to_query(g: &QueryGen) -> Query {
    Query {
        lat: g.lat,
        lon: g.lon,
        now_ms: g.now_ms,
        k: g.k,
        grade: Grade::ALL[g.grade],
        required: g.required.iter().map(|&c| DEFAULT_CAPABILITIES[c].to_string()).collect(),
        agencies: g.agencies.iter().map(|&a| Agency::ALL[a]).collect(),
        statuses: g.statuses.iter().map(|&s| Status::ALL[s]).collect(),
        unit_types: g.unit_types.iter().map(|&t| TYPES[t].1.to_string()).collect(),
        area: g.area.map(|a| AREAS.get(a).copied().unwrap_or("Nowhere").to_string()),
        by_eta: g.by_eta,
        diversions: g.diversions,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn search_equals_brute_force(
        units in prop::collection::vec(unit_gen(0.2), 0..120),
        queries in prop::collection::vec(query_gen(0.2), 1..6),
        cell_deg in prop::sample::select(vec![0.002, 0.01, 0.05, 1.0]),
        stale in stale_gen(),
    ) {
        let store = build_with(&units, cell_deg, config(stale));
        for g in &queries {
            let q = to_query(g);
            let fast = store.rank(&q).unwrap();
            let slow = store.rank_brute_force(&q).unwrap();
            prop_assert_eq!(fast, slow);
        }
    }

    /// Pre-emption: committed units of pre-emptible grades join IMMEDIATE queries with the
    /// diversion cost, while positions of every age meet the stale rule. The search and the
    /// oracle decide eligibility through the same function, so they must agree for any
    /// configuration.
    #[test]
    fn search_equals_brute_force_with_diversions(
        units in prop::collection::vec(unit_gen(0.2), 0..120),
        queries in prop::collection::vec(query_gen(0.2), 1..6),
        cell_deg in prop::sample::select(vec![0.002, 0.01, 0.05]),
        preemptible in prop::array::uniform3(any::<bool>()),
        on_scene in any::<bool>(),
        cost in prop::sample::select(vec![0.0, 180.0, 5000.0]),
        stale in stale_gen(),
    ) {
        let config = RankConfig {
            preemptible_grades: [false, preemptible[0], preemptible[1], preemptible[2]],
            preempt_on_scene: on_scene,
            diversion_cost_seconds: cost,
            ..config(stale)
        };
        let store = build_with(&units, cell_deg, config.clone());
        for g in &queries {
            let q = Query { diversions: true, grade: Grade::Immediate, ..to_query(g) };
            let fast = store.rank(&q).unwrap();
            let slow = store.rank_brute_force(&q).unwrap();
            prop_assert_eq!(&fast, &slow);
            for c in &fast {
                let t = store.table();
                let s = c.slot as usize;
                match t.attached_grade(c.slot) {
                    Some(grade) => {
                        // Only pre-emptible grades, ON_SCENE only when allowed, cost charged.
                        prop_assert!(config.preemptible(grade));
                        prop_assert!(on_scene || t.status[s] != Status::OnScene || g.statuses.contains(&3));
                        prop_assert_eq!(c.breakdown.diversion_cost, cost);
                        let from = format!("I{}", grade.name());
                        prop_assert_eq!(c.diverted_from.as_deref(), Some(from.as_str()));
                    }
                    None => {
                        prop_assert_eq!(c.breakdown.diversion_cost, 0.0);
                        prop_assert!(c.diverted_from.is_none());
                    }
                }
                // The stale rule holds for diverted and free units alike.
                prop_assert!(c.position_age_seconds <= config.stale_exclude_after_seconds);
                prop_assert_eq!(c.breakdown.stale_position_cost, config.stale_cost(c.position_age_seconds));
            }
        }
    }

    #[test]
    fn search_is_exact_across_the_globe(
        points in prop::collection::vec((-89.9f64..89.9, -180.0f64..180.0), 1..60),
        query in (-90.0f64..90.0, -180.0f64..180.0),
        k in 1usize..8,
    ) {
        let mut store = UnitStore::new(RankConfig::default(), 0.5).unwrap();
        for (i, (lat, lon)) in points.iter().enumerate() {
            let id = format!("G{i}");
            store.upsert(&id, &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
            store.update_location(&id, *lat, *lon, 1).unwrap();
        }
        let q = Query { k, ..Query::new(query.0, query.1, 0) };
        prop_assert_eq!(store.rank(&q).unwrap(), store.rank_brute_force(&q).unwrap());
    }

    #[test]
    fn coverage_equals_brute_force(
        units in prop::collection::vec(unit_gen(0.2), 0..120),
        query in query_gen(0.2),
        points in prop::collection::vec((51.1f64..51.9, -0.5f64..0.3), 1..40),
        target_s in 0.0f64..3000.0,
        cell_deg in prop::sample::select(vec![0.002, 0.01, 0.05]),
        stale in stale_gen(),
    ) {
        let store = build_with(&units, cell_deg, config(stale));
        let q = to_query(&query);
        prop_assert_eq!(
            store.coverage(&q, &points, target_s).unwrap(),
            store.coverage_brute_force(&q, &points, target_s).unwrap()
        );
    }

    #[test]
    fn index_stays_consistent(
        ops in prop::collection::vec((0u8..5, 0usize..30, 51.0f64..52.0, -0.6f64..0.4, 0usize..7), 1..300),
    ) {
        let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
        let mut time = 0i64;
        for (op, unit, lat, lon, status) in ops {
            let id = format!("M{unit}");
            time += 1;
            match op {
                0 => { let _ = store.upsert(&id, &UnitSpec { unit_type: "irv".into(), ..Default::default() }); }
                1 | 2 => { let _ = store.update_location(&id, lat, lon, time); }
                3 => { let _ = store.set_status(&id, Status::ALL[status]); }
                _ => { let _ = store.remove(&id); }
            }
            store.grid().check_consistency().map_err(TestCaseError::fail)?;
            let located = (0..store.table().capacity() as u32)
                .filter(|&s| store.table().is_live(s) && store.table().has_location(s))
                .count();
            let in_grid = (0..store.table().capacity() as u32).filter(|&s| store.grid().contains(s)).count();
            prop_assert_eq!(located, in_grid);
        }
    }
}

#[test]
fn assignment_is_all_or_none_and_names_the_unit() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    for id in ["A", "B", "C"] {
        store.upsert(id, &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    }
    store.assign("INC1", &["A"]).unwrap();
    let err = store.assign("INC2", &["B", "A"]).unwrap_err().to_string();
    assert!(err.contains("\"A\"") && err.contains("INC1"), "{err}");
    assert_eq!(store.table().status[store.slot("B").unwrap() as usize], Status::Available);
    assert_eq!(store.set_status("A", Status::OnScene).unwrap(), None);
    assert_eq!(store.set_status("A", Status::Committed).unwrap(), Some("INC1".into()));
    assert!(store.set_status("A", Status::Dispatched).is_err());
}

#[test]
fn closing_releases_attached_units_only() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    for id in ["A", "B", "C"] {
        store.upsert(id, &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    }
    store.assign("INC1", &["A", "B"]).unwrap();
    store.set_status("B", Status::OnScene).unwrap();
    store.set_status("B", Status::Committed).unwrap();
    let released = store.release_incident("INC1", &["A", "B", "C"]).unwrap();
    assert_eq!(released, vec!["A".to_string()]);
    assert_eq!(store.table().status[store.slot("B").unwrap() as usize], Status::Committed);
}

#[test]
fn strict_batch_with_a_bad_ping_changes_nothing() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    store.upsert("A", &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    store.upsert("B", &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    let err =
        store.update_locations(&["A", "B"], &[51.5, f64::NAN], &[-0.1, -0.1], &[5, 5], true).unwrap_err().to_string();
    assert!(err.contains("lat[1]"), "{err}");
    assert!(!store.table().has_location(0));
    let report =
        store.update_locations(&["A", "B", "Z"], &[51.5, 91.0, 51.0], &[-0.1, 0.0, 0.0], &[5, 5, 5], false).unwrap();
    assert_eq!((report.applied, report.skipped_bad_coordinate, report.skipped_unknown_unit), (1, 1, 1));
    let stale = store.update_locations(&["A"], &[51.6], &[-0.1], &[4], false).unwrap();
    assert_eq!(stale.skipped_stale, 1);
}

#[test]
fn no_eligible_unit_is_an_empty_list() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    store.upsert("A", &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    store.update_location("A", 51.5, -0.1, 1).unwrap();
    let q = Query { required: vec!["dog".into()], ..Query::new(51.5, -0.1, 2) };
    assert!(store.rank(&q).unwrap().is_empty());
    let bad = Query { required: vec!["dgo".into()], ..Query::new(51.5, -0.1, 2) };
    assert!(store.rank(&bad).unwrap_err().to_string().contains("dgo"));
}
