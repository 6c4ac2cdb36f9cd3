//! The whole-team recommendation against a brute-force oracle that tries every set of
//! eligible units and every way of placing it, on small random fleets; and each shortfall
//! reason reached on purpose.

use std::cmp::Ordering;

use dispatch_engine::caps::DEFAULT_CAPABILITIES;
use dispatch_engine::command::RequirementGroup;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::{Query, MAX_K};
use dispatch_engine::store::{UnitSpec, UnitStore};
use dispatch_engine::team::{self, ShortfallReason, Team};
use dispatch_engine::types::{Agency, Status};
use proptest::prelude::*;

const NOW: i64 = 1_750_000_000_000;
const TYPES: &[(Agency, &str)] = &[(Agency::Police, "irv"), (Agency::Police, "dog"), (Agency::Ambulance, "ambulance")];
/// A few fixed spots, so that units share positions and ETAs tie.
const SPOTS: &[(f64, f64)] = &[(51.5, -0.12), (51.51, -0.12), (51.5, -0.1)];

#[derive(Debug, Clone)]
struct UnitGen {
    type_ix: usize,
    caps: Vec<usize>,
    status: usize,
    pos: (f64, f64),
    age_ms: i64,
}

fn unit_gen() -> impl Strategy<Value = UnitGen> {
    (
        0..TYPES.len(),
        prop::collection::vec(0..3usize, 0..3),
        prop::sample::select(vec![0usize, 0, 0, 0, 1, 2, 3]),
        prop_oneof![prop::sample::select(SPOTS.to_vec()), (51.45f64..51.55, -0.2f64..0.0)],
        prop::sample::select(vec![0i64, 30_000, 200_000, 1_000_000]),
    )
        .prop_map(|(type_ix, caps, status, pos, age_ms)| UnitGen { type_ix, caps, status, pos, age_ms })
}

#[derive(Debug, Clone)]
struct GroupGen {
    type_ix: Option<usize>,
    caps: Vec<usize>,
    count: u32,
}

fn group_gen() -> impl Strategy<Value = GroupGen> {
    (prop::option::weighted(0.3, 0..TYPES.len()), prop::collection::vec(0..3usize, 0..2), 1u32..4)
        .prop_map(|(type_ix, caps, count)| GroupGen { type_ix, caps, count })
}

fn build(units: &[UnitGen]) -> UnitStore {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    for (i, u) in units.iter().enumerate() {
        let (agency, unit_type) = TYPES[u.type_ix];
        let spec = UnitSpec {
            agency,
            unit_type: unit_type.into(),
            capabilities: u.caps.iter().map(|&c| DEFAULT_CAPABILITIES[c].to_string()).collect(),
            status: Some(Status::ALL[u.status]),
            ..Default::default()
        };
        let id = format!("U{:02}", (i * 7) % 20 + i / 20 * 20);
        store.upsert(&id, &spec).unwrap();
        store.update_location(&id, u.pos.0, u.pos.1, NOW - u.age_ms).unwrap();
    }
    store
}

/// Plans of up to 8 groups and 12 places: the exact range.
fn plan(groups: &[GroupGen]) -> Vec<RequirementGroup> {
    let mut places = 0;
    groups
        .iter()
        .take(8)
        .filter_map(|g| {
            let count = g.count.min(12 - places);
            places += count;
            (count > 0).then(|| {
                let agency = g.type_ix.map_or(Agency::Police, |t| TYPES[t].0);
                RequirementGroup {
                    agency,
                    unit_types: g.type_ix.map(|t| vec![TYPES[t].1.to_string()]).unwrap_or_default(),
                    capabilities: g.caps.iter().map(|&c| DEFAULT_CAPABILITIES[c].to_string()).collect(),
                    count,
                    arrive_together: false,
                }
            })
        })
        .collect()
}

fn base(now_ms: i64, statuses: Vec<Status>) -> Query {
    Query { k: 1, statuses, by_eta: true, ..Query::new(51.5, -0.11, now_ms) }
}

/// The eligible units of each group (every one, by the brute-force ranking) within the
/// limit: (unit_id, eta).
fn eligible(store: &UnitStore, base: &Query, plan: &[RequirementGroup], limit: Option<f64>) -> Vec<Vec<(String, f64)>> {
    plan.iter()
        .map(|g| {
            let q = Query {
                k: MAX_K,
                required: g.capabilities.clone(),
                agencies: vec![g.agency],
                unit_types: g.unit_types.clone(),
                ..base.clone()
            };
            store
                .rank_brute_force(&q)
                .unwrap()
                .into_iter()
                .filter(|c| limit.is_none_or(|l| c.eta_seconds <= l))
                .map(|c| (c.unit_id, c.eta_seconds))
                .collect()
        })
        .collect()
}

/// The team order's set keys on (eta, id) lists sorted ascending: more units, smaller
/// largest ETA, smaller sum (summed in sorted order), then item by item.
fn compare_sets(a: &[(f64, &str)], b: &[(f64, &str)]) -> Ordering {
    let sum = |s: &[(f64, &str)]| s.iter().map(|x| x.0).sum::<f64>();
    let max = |s: &[(f64, &str)]| s.last().map_or(0.0, |x| x.0);
    b.len().cmp(&a.len()).then_with(|| max(a).total_cmp(&max(b))).then_with(|| sum(a).total_cmp(&sum(b))).then_with(
        || {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(y.1)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        },
    )
}

/// Every way of placing the units of `set` in the plan's places (place by place: one of
/// them or nobody), keeping only those that place all of `set`. Yields the place vectors.
fn placements(
    set: &[usize],
    can: &dyn Fn(usize, usize) -> bool,
    places: &[usize],
    at: usize,
    used: &mut Vec<bool>,
    current: &mut Vec<Option<usize>>,
    out: &mut Vec<Vec<Option<usize>>>,
) {
    if at == places.len() {
        if used.iter().all(|&u| u) {
            out.push(current.clone());
        }
        return;
    }
    for (i, &u) in set.iter().enumerate() {
        if !used[i] && can(u, places[at]) {
            used[i] = true;
            current.push(Some(u));
            placements(set, can, places, at + 1, used, current, out);
            current.pop();
            used[i] = false;
        }
    }
    current.push(None);
    placements(set, can, places, at + 1, used, current, out);
    current.pop();
}

/// The oracle: every set of eligible units that can be placed, the best by the team order,
/// placed the way whose places read the smallest ids first (nobody after anybody).
fn oracle(plan: &[RequirementGroup], eligible: &[Vec<(String, f64)>]) -> Vec<Vec<String>> {
    let mut units: Vec<(String, f64)> = eligible.iter().flatten().cloned().collect();
    units.sort_by(|a, b| a.0.cmp(&b.0));
    units.dedup_by(|a, b| a.0 == b.0);
    let can = |u: usize, g: usize| eligible[g].iter().any(|(id, _)| *id == units[u].0);
    let places: Vec<usize> =
        plan.iter().enumerate().flat_map(|(g, p)| std::iter::repeat_n(g, p.count as usize)).collect();
    // The best set so far and every way of placing it.
    type Placed = Vec<Vec<Option<usize>>>;
    let mut best: Option<(Vec<usize>, Placed)> = None;
    for mask in 0u32..(1 << units.len()) {
        if mask.count_ones() as usize > places.len() {
            continue;
        }
        let mut set: Vec<usize> = (0..units.len()).filter(|&u| mask & (1 << u) != 0).collect();
        set.sort_by(|&a, &b| units[a].1.total_cmp(&units[b].1).then_with(|| units[a].0.cmp(&units[b].0)));
        let key = |s: &[usize]| s.iter().map(|&u| (units[u].1, units[u].0.as_str())).collect::<Vec<_>>();
        if let Some((b, _)) = &best {
            if compare_sets(&key(&set), &key(b)) != Ordering::Less {
                continue;
            }
        }
        let mut found = Vec::new();
        placements(&set, &can, &places, 0, &mut vec![false; set.len()], &mut Vec::new(), &mut found);
        if !found.is_empty() {
            best = Some((set, found));
        }
    }
    let (_, found) = best.expect("the empty set is always placeable");
    let id = |p: &Option<usize>| p.map_or((1, String::new()), |u| (0, units[u].0.clone()));
    let vector = found.iter().min_by_key(|v| v.iter().map(id).collect::<Vec<_>>()).unwrap();
    let mut out = vec![Vec::new(); plan.len()];
    for (p, u) in places.iter().zip(vector) {
        if let Some(u) = u {
            out[*p].push(units[*u].0.clone());
        }
    }
    out
}

fn by_group(team: &Team, groups: usize) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); groups];
    for m in &team.members {
        out[m.group].push(m.candidate.unit_id.clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn team_equals_brute_force(
        units in prop::collection::vec(unit_gen(), 0..17),
        groups in prop::collection::vec(group_gen(), 1..9),
        statuses in prop::sample::select(vec![vec![], vec![Status::Available, Status::EnRoute]]),
        limit in prop::option::weighted(0.3, 60.0f64..400.0),
        explain in any::<bool>(),
    ) {
        let store = build(&units);
        let plan = plan(&groups);
        let base = base(NOW, statuses);
        let team = team::recommend(&store, &base, &plan, limit, explain).unwrap();
        let eligible = eligible(&store, &base, &plan, limit);
        prop_assert_eq!(by_group(&team, plan.len()), oracle(&plan, &eligible));
        for m in &team.members {
            let eta = eligible[m.group].iter().find(|(id, _)| *id == m.candidate.unit_id).map(|x| x.1);
            prop_assert_eq!(eta, Some(m.candidate.eta_seconds));
        }
        for (g, p) in plan.iter().enumerate() {
            let filled = team.members.iter().filter(|m| m.group == g).count() as u32;
            let short = team.shortfalls.iter().find(|s| s.group == g).map_or(0, |s| s.missing);
            prop_assert_eq!(filled + short, p.count);
        }
    }
}

fn group(agency: Agency, unit_types: &[&str], capabilities: &[&str], count: u32) -> RequirementGroup {
    RequirementGroup {
        agency,
        unit_types: unit_types.iter().map(|s| s.to_string()).collect(),
        capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
        count,
        arrive_together: false,
    }
}

fn add(store: &mut UnitStore, id: &str, unit_type: &str, caps: &[&str], status: Status, lat: f64, age_ms: i64) {
    let spec = UnitSpec {
        unit_type: unit_type.into(),
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
        status: Some(status),
        ..Default::default()
    };
    store.upsert(id, &spec).unwrap();
    store.update_location(id, lat, -0.12, NOW - age_ms).unwrap();
}

fn reasons(store: &UnitStore, plan: &[RequirementGroup], limit: Option<f64>) -> Vec<(usize, u32, ShortfallReason)> {
    let team = team::recommend(store, &base(NOW, vec![]), plan, limit, false).unwrap();
    team.shortfalls.iter().map(|s| (s.group, s.missing, s.reason)).collect()
}

#[test]
fn each_shortfall_reason_is_reached() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    // None on duty: no dog unit at all, then one OFF_DUTY.
    let dogs = [group(Agency::Police, &[], &["dog"], 2)];
    assert_eq!(reasons(&store, &dogs, None), [(0, 2, ShortfallReason::NoneOnDuty)]);
    add(&mut store, "DOG-OFF", "dog", &["dog"], Status::OffDuty, 51.5, 0);
    assert_eq!(reasons(&store, &dogs, None), [(0, 2, ShortfallReason::NoneOnDuty)]);
    // All committed: the dog unit on duty is attached elsewhere.
    add(&mut store, "DOG-BUSY", "dog", &["dog"], Status::OnScene, 51.5, 0);
    assert_eq!(reasons(&store, &dogs, None), [(0, 2, ShortfallReason::AllCommitted)]);
    // Positions stale: an AVAILABLE dog unit last heard of 20 minutes ago.
    add(&mut store, "DOG-QUIET", "dog", &["dog"], Status::Available, 51.5, 1_200_000);
    assert_eq!(reasons(&store, &dogs, None), [(0, 2, ShortfallReason::PositionsStale)]);
    // Beyond the limit: a fresh one, far away; the team takes it without the limit.
    add(&mut store, "DOG-FAR", "dog", &["dog"], Status::Available, 51.9, 0);
    assert_eq!(reasons(&store, &dogs, Some(300.0)), [(0, 2, ShortfallReason::BeyondLimit)]);
    assert_eq!(reasons(&store, &dogs, None), [(0, 1, ShortfallReason::PositionsStale)]);
    // Needed by another group: one usable unit, wanted by a group any unit fills and by the
    // dog group; places are filled in plan order, so the first group takes it.
    let plan = [group(Agency::Police, &[], &[], 1), group(Agency::Police, &[], &["dog"], 2)];
    assert_eq!(reasons(&store, &plan, None), [(1, 2, ShortfallReason::NeededByOtherGroup)]);
}

#[test]
fn explanations_name_the_group_a_passed_over_unit_fills() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    add(&mut store, "ARV", "arv", &["firearms"], Status::Available, 51.5, 0);
    add(&mut store, "IRV-NEAR", "irv", &[], Status::Available, 51.505, 0);
    add(&mut store, "IRV-FAR", "irv", &[], Status::Available, 51.52, 0);
    let plan = [group(Agency::Police, &[], &[], 1), group(Agency::Police, &[], &["firearms"], 1)];
    let team = team::recommend(&store, &base(NOW, vec![]), &plan, None, true).unwrap();
    type Passed<'a> = Option<(&'a str, Option<usize>)>;
    let got: Vec<(&str, usize, Passed)> = team
        .members
        .iter()
        .map(|m| {
            let next = m.next_best.as_ref().map(|p| (p.unit_id.as_str(), p.other_group));
            (m.candidate.unit_id.as_str(), m.group, next)
        })
        .collect();
    // The nearest unit (the ARV) fills the firearms place; the first group's best unit by
    // ETA is that ARV, passed over because it fills group 1.
    assert_eq!(got, [("IRV-NEAR", 0, Some(("ARV", Some(1)))), ("ARV", 1, None)]);
    assert!(team.shortfalls.is_empty());
}
