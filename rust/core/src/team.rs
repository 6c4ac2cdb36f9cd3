//! Whole-team recommendation: one unit for every place of a response plan, no unit twice,
//! the whole plan on scene as soon as possible.
//!
//! The team's order, best first: more places filled; then the whole plan on scene sooner
//! (the largest ETA); then a smaller sum of ETAs; then the team's (ETA, unit_id) pairs,
//! sorted, compared one by one. Among the ways of placing that set of units, the one whose
//! places (group by group, in the plan's order) read the smallest unit_ids first, an
//! unfilled place reading after any unit.
//!
//! Why this is exact and cheap. A unit's ETA does not depend on the group it fills (cost
//! terms do, ETA does not), so the key above depends only on the *set* of units; and the
//! sets of units that can be placed together are the independent sets of a transversal
//! matroid. Greedy over units in (ETA, unit_id) order, keeping a unit when the kept set can
//! still be placed, therefore finds the set whose sorted pairs are, one by one, no worse
//! than those of any other placeable set (Gale's theorem): it is at once the largest, the
//! one with the smallest largest ETA and the smallest sum. Each test is one augmenting
//! path of a bipartite matching (units to groups with capacities).
//!
//! Which units to consider. Let P be the plan's places. A unit filling group g that is not
//! among g's P best by (ETA, unit_id) can be swapped for one of those P that the team does
//! not use (the team uses at most P - 1 other units), and the swap never makes the team
//! worse; so each group's P best suffice. Each group's list is cut at
//! `min(P, count + EXACT_PLACES)`: the team is exact whenever that is P (always for plans
//! of up to [`EXACT_PLACES`] places) and a heuristic beyond.

use rustc_hash::FxHashMap;

use crate::command::RequirementGroup;
use crate::error::CoreResult;
use crate::rank::{self, eta_order, Candidate, Query, MAX_K};
use crate::store::UnitStore;
use crate::types::Status;

/// Plans of at most this many places are solved exactly; see the module docs.
pub const EXACT_PLACES: usize = 12;

/// Why places of a group are unfilled (values equal the proto's `ShortfallReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortfallReason {
    NoneOnDuty = 1,
    AllCommitted = 2,
    PositionsStale = 3,
    BeyondLimit = 4,
    NeededByOtherGroup = 5,
}

/// The unit a member's group would take next.
#[derive(Debug, Clone, PartialEq)]
pub struct PassedOver {
    pub unit_id: String,
    pub eta_seconds: f64,
    /// The group it fills instead, if any; `None` means it simply arrives later.
    pub other_group: Option<usize>,
}

/// One filled place.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub group: usize,
    /// The unit scored for this group.
    pub candidate: Candidate,
    pub next_best: Option<PassedOver>,
}

/// Unfilled places of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub group: usize,
    pub missing: u32,
    pub reason: ShortfallReason,
}

/// A recommended team: members group by group (unit_id order within a group), and the
/// groups left short.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Team {
    pub members: Vec<Member>,
    pub shortfalls: Vec<Shortfall>,
}

impl Team {
    /// When the whole team is on scene: its largest ETA, 0 when empty.
    pub fn eta_seconds(&self) -> f64 {
        self.members.iter().map(|m| m.candidate.eta_seconds).fold(0.0, f64::max)
    }
}

/// One group's places and its candidates, best ETA first, already cut at any ETA limit.
#[derive(Debug, Clone)]
pub struct Pool {
    pub count: usize,
    pub candidates: Vec<Candidate>,
}

/// How many candidates (by ETA) group `count` of a plan with `places` in all needs.
pub fn pool_size(count: usize, places: usize) -> usize {
    places.min(count + EXACT_PLACES).clamp(1, MAX_K)
}

/// Units to groups with capacities, grown one unit at a time by augmenting paths.
struct Matching<'e> {
    /// For each unit, the groups it may fill.
    edges: &'e [Vec<usize>],
    capacity: Vec<usize>,
    members: Vec<Vec<usize>>,
    seen: Vec<bool>,
}

impl<'e> Matching<'e> {
    fn new(edges: &'e [Vec<usize>], capacity: Vec<usize>) -> Self {
        let groups = capacity.len();
        Self { edges, capacity, members: vec![Vec::new(); groups], seen: vec![false; groups] }
    }

    /// Places `unit` if the placed units and it can all be placed, moving others if need be.
    fn add(&mut self, unit: usize) -> bool {
        self.seen.fill(false);
        self.augment(unit)
    }

    fn augment(&mut self, unit: usize) -> bool {
        let edges = self.edges;
        for &g in &edges[unit] {
            if self.seen[g] {
                continue;
            }
            self.seen[g] = true;
            if self.members[g].len() < self.capacity[g] {
                self.members[g].push(unit);
                return true;
            }
            for i in 0..self.members[g].len() {
                let other = self.members[g][i];
                if self.augment(other) {
                    self.members[g][i] = unit;
                    return true;
                }
            }
        }
        false
    }
}

/// Whether every unit of `units` can be placed within `capacity`.
fn placeable(edges: &[Vec<usize>], capacity: &[usize], units: impl Iterator<Item = usize>) -> bool {
    let mut m = Matching::new(edges, capacity.to_vec());
    units.into_iter().all(|u| m.add(u))
}

/// The team as pool indices: for each group, the indices (into its pool) of the units that
/// fill its places, in unit_id order. See the module docs for the order it optimises.
pub fn choose(pools: &[Pool]) -> Vec<Vec<usize>> {
    let places: usize = pools.iter().map(|p| p.count).sum();
    // Distinct units, each with its ETA (the same in every pool) and the groups it may fill.
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    let mut units: Vec<(&Candidate, Vec<usize>)> = Vec::new();
    for (g, pool) in pools.iter().enumerate() {
        for c in &pool.candidates {
            let u = *index.entry(c.unit_id.as_str()).or_insert_with(|| {
                units.push((c, Vec::new()));
                units.len() - 1
            });
            units[u].1.push(g);
        }
    }
    let edges: Vec<Vec<usize>> = units.iter().map(|(_, groups)| groups.clone()).collect();
    let capacity: Vec<usize> = pools.iter().map(|p| p.count).collect();
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| eta_order(units[a].0, units[b].0));

    let mut greedy = Matching::new(&edges, capacity.clone());
    let mut chosen = Vec::new();
    for &u in &order {
        if chosen.len() == places {
            break;
        }
        if greedy.add(u) {
            chosen.push(u);
        }
    }

    let by_group: Vec<Vec<usize>> = if places <= EXACT_PLACES {
        place_smallest_ids_first(&edges, &capacity, &units, chosen)
    } else {
        greedy.members
    };
    let mut out: Vec<Vec<usize>> = by_group
        .iter()
        .enumerate()
        .map(|(g, members)| {
            members
                .iter()
                .map(|&u| {
                    let id = units[u].0.unit_id.as_str();
                    pools[g].candidates.iter().position(|c| c.unit_id == id).expect("a unit fills only its groups")
                })
                .collect()
        })
        .collect();
    for (g, ix) in out.iter_mut().enumerate() {
        ix.sort_by(|&a, &b| pools[g].candidates[a].unit_id.cmp(&pools[g].candidates[b].unit_id));
    }
    out
}

/// Places a placeable set so that the places, in plan order, read the smallest unit_ids
/// first: place by place, the smallest id whose choice still lets the rest be placed.
fn place_smallest_ids_first(
    edges: &[Vec<usize>],
    capacity: &[usize],
    units: &[(&Candidate, Vec<usize>)],
    mut left: Vec<usize>,
) -> Vec<Vec<usize>> {
    left.sort_by(|&a, &b| units[a].0.unit_id.cmp(&units[b].0.unit_id));
    let mut remaining = capacity.to_vec();
    let mut out = vec![Vec::new(); capacity.len()];
    for g in 0..capacity.len() {
        for _ in 0..capacity[g] {
            remaining[g] -= 1;
            let pick = (0..left.len()).find(|&i| {
                edges[left[i]].contains(&g)
                    && placeable(edges, &remaining, left.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &u)| u))
            });
            match pick {
                Some(i) => out[g].push(left.remove(i)),
                // No unit can take this place, so none can take the group's later ones.
                None => {
                    remaining[g] = 0;
                    break;
                }
            }
        }
    }
    debug_assert!(left.is_empty(), "a placeable set is placed whole");
    out
}

/// The recommended team for `groups` at the query's place and time. `base` gives the
/// location, now, grade, area and allowed statuses; each group adds its own filters.
/// Units with an ETA above `max_eta_seconds` are not put in the team. `explain` reads one
/// more candidate per group, so that a full group still names the unit it passed over.
pub fn recommend(
    store: &UnitStore,
    base: &Query,
    groups: &[RequirementGroup],
    max_eta_seconds: Option<f64>,
    explain: bool,
) -> CoreResult<Team> {
    let places: usize = groups.iter().map(|g| g.count as usize).sum();
    let mut pools = Vec::with_capacity(groups.len());
    let mut beyond_limit = Vec::with_capacity(groups.len());
    for g in groups {
        let k = (pool_size(g.count as usize, places) + usize::from(explain)).min(MAX_K);
        let q = group_query(base, g, k);
        let mut candidates = store.rank(&q)?;
        let all = candidates.len();
        if let Some(limit) = max_eta_seconds {
            candidates.retain(|c| c.eta_seconds <= limit);
        }
        beyond_limit.push(candidates.len() < all);
        pools.push(Pool { count: g.count as usize, candidates });
    }
    let chosen = choose(&pools);

    let pools = &pools;
    let filling: FxHashMap<&str, usize> = chosen
        .iter()
        .enumerate()
        .flat_map(|(g, ix)| ix.iter().map(move |&i| (pools[g].candidates[i].unit_id.as_str(), g)))
        .collect();
    let mut team = Team::default();
    for (g, ix) in chosen.iter().enumerate() {
        let pool = &pools[g];
        let next_best =
            pool.candidates.iter().find(|c| filling.get(c.unit_id.as_str()) != Some(&g)).map(|c| PassedOver {
                unit_id: c.unit_id.clone(),
                eta_seconds: c.eta_seconds,
                other_group: filling.get(c.unit_id.as_str()).copied(),
            });
        for &i in ix {
            team.members.push(Member { group: g, candidate: pool.candidates[i].clone(), next_best: next_best.clone() });
        }
        if ix.len() < pool.count {
            let reason = if pool.candidates.len() > ix.len() {
                ShortfallReason::NeededByOtherGroup
            } else if beyond_limit[g] {
                ShortfallReason::BeyondLimit
            } else {
                unavailable_reason(store, &group_query(base, &groups[g], 1))?
            };
            team.shortfalls.push(Shortfall { group: g, missing: (pool.count - ix.len()) as u32, reason });
        }
    }
    Ok(team)
}

fn group_query(base: &Query, g: &RequirementGroup, k: usize) -> Query {
    Query {
        k,
        by_eta: true,
        required: g.capabilities.clone(),
        agencies: vec![g.agency],
        unit_types: g.unit_types.clone(),
        ..base.clone()
    }
}

/// Why a group has no eligible unit left, when none was beyond an ETA limit: one pass
/// over the grid partitions of the group's agency, made only for a group left short.
fn unavailable_reason(store: &UnitStore, q: &Query) -> CoreResult<ShortfallReason> {
    let r = store.resolve(q)?;
    let table = store.table();
    let counts = table.counts();
    let on_duty: u64 = crate::types::Agency::ALL
        .iter()
        .filter(|a| r.agency_ok[a.index()])
        .flat_map(|a| Status::ALL.iter().filter(|&&s| s != Status::OffDuty).map(|s| counts[a.index()][s.index()]))
        .sum();
    if on_duty == 0 {
        return Ok(ShortfallReason::NoneOnDuty);
    }
    let mut any_status = [true; 7];
    any_status[Status::OffDuty.index()] = false;
    let (mut stale, mut committed) = (0usize, 0usize);
    for p in rank::partitions(&r.agency_ok, &any_status) {
        for (_, _, entries) in store.grid().occupied(p) {
            for e in entries {
                let matches =
                    e.caps & r.required == r.required && r.unit_types.as_ref().is_none_or(|t| t.contains(&e.unit_type));
                if !matches || !table.on_shift(e.slot, r.now_ms) {
                    continue;
                }
                if !r.status_ok[table.status[e.slot as usize].index()] {
                    committed += 1;
                } else if rank::position_age_ms(table, e.slot, r.now_ms) > r.stale_exclude_ms {
                    stale += 1;
                }
            }
        }
    }
    Ok(match (stale, committed) {
        (s, _) if s > 0 => ShortfallReason::PositionsStale,
        (_, c) if c > 0 => ShortfallReason::AllCommitted,
        _ => ShortfallReason::NoneOnDuty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::Breakdown;

    fn cand(id: &str, eta: f64) -> Candidate {
        Candidate {
            unit_id: id.into(),
            slot: 0,
            eta_seconds: eta,
            distance_m: 0.0,
            score: eta,
            breakdown: Breakdown::default(),
            position_age_seconds: 0.0,
            diverted_from: None,
        }
    }

    fn pool(count: usize, units: &[(&str, f64)]) -> Pool {
        Pool { count, candidates: units.iter().map(|&(id, eta)| cand(id, eta)).collect() }
    }

    fn ids(pools: &[Pool], chosen: &[Vec<usize>]) -> Vec<Vec<String>> {
        chosen
            .iter()
            .enumerate()
            .map(|(g, ix)| ix.iter().map(|&i| pools[g].candidates[i].unit_id.clone()).collect())
            .collect()
    }

    #[test]
    fn the_nearest_unit_goes_where_only_it_can() {
        // A (100 s) can fill either group; B (120 s) only the first. Nearest-first per group
        // would send A to group 0 and leave group 1 with nobody.
        let pools = [pool(1, &[("A", 100.0), ("B", 120.0)]), pool(1, &[("A", 100.0)])];
        assert_eq!(ids(&pools, &choose(&pools)), [vec!["B"], vec!["A"]]);
    }

    #[test]
    fn the_whole_plan_arrives_by_the_earliest_time() {
        // Nearest-first in plan order would send A to group 0 and D (100 s) to group 1;
        // B to group 0 and A to group 1 has the plan on scene by 50 s.
        let pools = [pool(1, &[("A", 10.0), ("B", 50.0)]), pool(1, &[("A", 10.0), ("D", 100.0)])];
        assert_eq!(ids(&pools, &choose(&pools)), [vec!["B"], vec!["A"]]);
    }

    #[test]
    fn a_unit_eligible_for_two_groups_fills_the_first_when_one_is_left_short() {
        let pools = [pool(1, &[("A", 10.0)]), pool(1, &[("A", 10.0)])];
        assert_eq!(ids(&pools, &choose(&pools)), [vec!["A"], vec![]]);
    }

    #[test]
    fn equal_etas_prefer_smaller_ids() {
        let pools = [pool(2, &[("B", 10.0), ("C", 10.0), ("A", 10.0)])];
        assert_eq!(ids(&pools, &choose(&pools)), [vec!["A", "B"]]);
    }

    #[test]
    fn pools_cover_the_whole_plan_up_to_the_exact_size() {
        assert_eq!(pool_size(1, 12), 12);
        assert_eq!(pool_size(50, 800), 62);
        assert_eq!(pool_size(3, 3), 3);
    }
}
