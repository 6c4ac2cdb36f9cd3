//! Filtered top-K ranking: eligibility, scoring, and an exact ring search over the grid.
//!
//! A candidate's score is its ETA plus its cost terms, all in seconds; lower is better and
//! equal scores are broken by `unit_id`. [`brute_force`] ranks by scanning every unit with
//! the same [`score`] and [`eligible`] functions: it is the oracle the search is tested
//! against, and any difference between the two is a bug in the search.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::caps::CapSet;
use crate::error::{CoreError, CoreResult};
use crate::eta::RankConfig;
use crate::geo::{self, chord2, chord2_of_distance, haversine_m, unit_vector, EARTH_RADIUS_M};
use crate::index::{cell_key, partition_of, Entry, Grid, N_PARTITIONS};
use crate::types::{Agency, Grade, Status, N_GRADES, N_STATUSES};
use crate::units::{AreaId, TypeId, UnitTable};

/// Largest K a query may ask for: more is a client bug, not a dispatch question.
pub const MAX_K: usize = 1000;

/// A ranking question in caller terms (names, not ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub lat: f64,
    pub lon: f64,
    /// Unix ms; decides who is on shift and how long a shift has left.
    pub now_ms: i64,
    pub k: usize,
    pub grade: Grade,
    /// Capabilities a unit must all hold.
    pub required: Vec<String>,
    /// Allowed agencies; empty means all.
    pub agencies: Vec<Agency>,
    /// Allowed statuses; empty means AVAILABLE only.
    pub statuses: Vec<Status>,
    /// Allowed unit types; empty means all.
    pub unit_types: Vec<String>,
    /// The area (BCU) of the incident, for the cross-area cost; `None` disables it.
    pub area: Option<String>,
    /// Rank by ETA instead of score ([`crate::team`]'s candidate pools).
    pub by_eta: bool,
    /// Pre-emption: for an IMMEDIATE query, also offer units committed (DISPATCHED,
    /// EN_ROUTE, and ON_SCENE if configured) to incidents of a pre-emptible grade, each with
    /// the diversion cost. Ignored for any other grade.
    pub diversions: bool,
}

impl Query {
    /// Top-5 IMMEDIATE, any agency, AVAILABLE units, no requirement.
    pub fn new(lat: f64, lon: f64, now_ms: i64) -> Self {
        Self {
            lat,
            lon,
            now_ms,
            k: 5,
            grade: Grade::Immediate,
            required: Vec::new(),
            agencies: Vec::new(),
            statuses: Vec::new(),
            unit_types: Vec::new(),
            area: None,
            by_eta: false,
            diversions: false,
        }
    }
}

/// Every term of a score, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Breakdown {
    pub mobilisation_seconds: f64,
    pub travel_seconds: f64,
    pub cross_area_cost: f64,
    pub shift_overrun_cost: f64,
    pub specialist_cost: f64,
    /// The position's age beyond the trusted age, weighted ([`RankConfig::stale_cost`]).
    pub stale_position_cost: f64,
    /// Cost of taking the unit from the job it is committed to (pre-emption only).
    pub diversion_cost: f64,
}

/// One ranked unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub unit_id: String,
    pub slot: u32,
    pub eta_seconds: f64,
    pub distance_m: f64,
    pub score: f64,
    pub breakdown: Breakdown,
    /// Seconds between the unit's last position and the query's now (0 for a position
    /// dated after it).
    pub position_age_seconds: f64,
    /// The incident the unit would be diverted from (pre-emption only).
    pub diverted_from: Option<String>,
}

/// A query with names resolved to ids and the pruning bounds precomputed; resolve once and
/// reuse it for a batch of locations.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub now_ms: i64,
    pub k: usize,
    pub grade: Grade,
    pub required: CapSet,
    /// Partitions (agency × status) the query may draw from.
    pub partitions: Vec<usize>,
    pub agency_ok: [bool; 3],
    pub status_ok: [bool; 7],
    /// Allowed type ids, `None` for all. A name never seen matches no unit.
    pub unit_types: Option<Vec<TypeId>>,
    /// 0 when the cross-area cost does not apply.
    pub area: AreaId,
    /// Smallest mobilisation of any allowed status.
    pub min_mobilisation: f64,
    /// Seconds per metre of straight line at the fastest allowed speed: circuity ÷ speed.
    pub min_pace: f64,
    /// Seconds per metre of straight line for each type id, blue lights included.
    pub pace_by_type: Vec<f64>,
    /// A position older than this, milliseconds, makes its unit ineligible.
    pub stale_exclude_ms: f64,
    /// Rank by ETA instead of score (what a whole-team recommendation needs: see
    /// [`crate::team`]); ties still break on unit_id.
    pub by_eta: bool,
    /// Pre-emption in force: the grades (index: [`Grade::index`]) whose committed units may
    /// be offered. `None`: no diversion, and a unit is judged by its status alone.
    pub diversion: Option<[bool; N_GRADES]>,
}

/// What the scorer needs beside the table: the model and per-type speeds.
pub struct Model<'a> {
    pub config: &'a RankConfig,
    /// Speed of each type id, m/s (before the blue-light factor).
    pub type_speed: &'a [f64],
    /// Agency of each type id.
    pub type_agency: &'a [Agency],
    /// Scarce capabilities, for the specialist cost.
    pub scarce: CapSet,
}

/// Whether a unit may be offered at all: the one place where eligibility is decided.
///
/// The first group of tests is also what the index guarantees by construction (a grid
/// entry exists only for a live, positioned unit; the query draws only from partitions of
/// allowed agency and status; the scan checks capabilities and type on the entry), so the
/// search calls only [`eligible_now`]. The brute-force oracle calls this whole function, and
/// the property tests compare the two.
#[inline]
pub fn eligible(table: &UnitTable, slot: u32, q: &Resolved) -> bool {
    let s = slot as usize;
    table.live[s]
        && table.has_location(slot)
        && q.agency_ok[table.agency[s].index()]
        && q.status_ok[table.status[s].index()]
        && table.caps[s] & q.required == q.required
        && q.unit_types.as_ref().is_none_or(|t| t.contains(&table.unit_type[s]))
        && eligible_now(table, slot, q)
}

/// The tests that depend on the moment rather than on the unit's place in the index: on
/// shift now; a position no older than the exclusion age (a position exactly that old is
/// still offered); and under pre-emption, committed only to an incident of a grade that may
/// be pre-empted (the grade column the state machine keeps on assignment and release).
/// Ring-fencing will add its test here.
#[inline]
pub fn eligible_now(table: &UnitTable, slot: u32, q: &Resolved) -> bool {
    table.on_shift(slot, q.now_ms)
        && position_age_ms(table, slot, q.now_ms) <= q.stale_exclude_ms
        && divertible(table, slot, q)
}

/// Milliseconds since the unit's last position, 0 when it is dated after `now_ms` (a ping
/// may run a little ahead of the server's clock). Only for positioned units.
#[inline]
pub fn position_age_ms(table: &UnitTable, slot: u32, now_ms: i64) -> f64 {
    now_ms.saturating_sub(table.location_ms[slot as usize]).max(0) as f64
}

/// Under pre-emption, a unit attached to an incident may be offered only when that
/// incident's grade may be pre-empted; a free unit always may. Without pre-emption, true.
#[inline]
pub fn divertible(table: &UnitTable, slot: u32, q: &Resolved) -> bool {
    match (&q.diversion, table.attached_grade(slot)) {
        (Some(grades), Some(grade)) => grades[grade.index()],
        _ => true,
    }
}

/// The incident a candidate would be diverted from: under pre-emption, the one it is
/// attached to.
fn diverted_from(table: &UnitTable, slot: u32, q: &Resolved) -> Option<String> {
    q.diversion.as_ref()?;
    table.incident[slot as usize].as_deref().map(str::to_owned)
}

/// A candidate without its id, so the search can score many units without copying ids.
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    pub eta_seconds: f64,
    pub distance_m: f64,
    pub score: f64,
    pub breakdown: Breakdown,
    pub position_age_seconds: f64,
}

impl Scored {
    /// What the ranking orders by: the score, or the ETA for a team's candidate pools.
    #[inline]
    pub fn key(&self, by_eta: bool) -> f64 {
        if by_eta {
            self.eta_seconds
        } else {
            self.score
        }
    }
}

/// The score of an eligible unit for a query at (`lat`, `lon`), with its id.
pub fn score(table: &UnitTable, model: &Model<'_>, slot: u32, lat: f64, lon: f64, q: &Resolved) -> Candidate {
    let s = score_terms(table, model, slot, lat, lon, q);
    Candidate {
        unit_id: table.ids[slot as usize].to_string(),
        slot,
        eta_seconds: s.eta_seconds,
        distance_m: s.distance_m,
        score: s.score,
        breakdown: s.breakdown,
        position_age_seconds: s.position_age_seconds,
        diverted_from: diverted_from(table, slot, q),
    }
}

/// Where a ranking cost is computed: the ETA model plus every cost term, in seconds.
#[inline]
pub fn score_terms(table: &UnitTable, model: &Model<'_>, slot: u32, lat: f64, lon: f64, q: &Resolved) -> Scored {
    let s = slot as usize;
    let cfg = model.config;
    let distance_m = haversine_m(lat, lon, table.lat[s], table.lon[s]);
    let speed = model.type_speed[table.unit_type[s] as usize] * cfg.blue_light(q.grade);
    let mobilisation_seconds = cfg.mobilisation(table.status[s]);
    let travel_seconds = distance_m * cfg.circuity / speed;
    let eta_seconds = mobilisation_seconds + travel_seconds;
    let home = table.home_area[s];
    let cross_area_cost = if q.area != 0 && home != 0 && home != q.area { cfg.cross_area_cost_seconds } else { 0.0 };
    let shift_end = table.shift_end_ms[s];
    let shift_overrun_cost = if shift_end == crate::units::NO_TIME {
        0.0
    } else {
        let done_ms = q.now_ms as f64 + 1000.0 * (eta_seconds + cfg.expected_job_seconds[q.grade.index()]);
        let overrun_s = (done_ms - shift_end as f64) / 1000.0;
        if overrun_s > 0.0 {
            overrun_s * cfg.shift_overrun_weight[q.grade.index()]
        } else {
            0.0
        }
    };
    let unneeded_specialisms = (table.caps[s] & model.scarce & !q.required).count_ones();
    let specialist_cost = f64::from(unneeded_specialisms) * cfg.specialist_cost_seconds;
    let position_age_seconds = position_age_ms(table, slot, q.now_ms) / 1000.0;
    let stale_position_cost = cfg.stale_cost(position_age_seconds);
    let diverted = q.diversion.is_some() && table.incident_grade[s] != 0;
    let diversion_cost = if diverted { cfg.diversion_cost_seconds } else { 0.0 };
    let breakdown = Breakdown {
        mobilisation_seconds,
        travel_seconds,
        cross_area_cost,
        shift_overrun_cost,
        specialist_cost,
        stale_position_cost,
        diversion_cost,
    };
    Scored {
        eta_seconds,
        distance_m,
        score: eta_seconds
            + cross_area_cost
            + shift_overrun_cost
            + specialist_cost
            + stale_position_cost
            + diversion_cost,
        breakdown,
        position_age_seconds,
    }
}

/// Total order of candidates: score, then unit_id.
pub fn candidate_order(a: &Candidate, b: &Candidate) -> Ordering {
    a.score.total_cmp(&b.score).then_with(|| a.unit_id.cmp(&b.unit_id))
}

/// Total order of candidates by ETA, then unit_id: the order of a team's candidate pools.
pub fn eta_order(a: &Candidate, b: &Candidate) -> Ordering {
    a.eta_seconds.total_cmp(&b.eta_seconds).then_with(|| a.unit_id.cmp(&b.unit_id))
}

/// The order a query asks for.
pub fn order_of(q: &Resolved) -> fn(&Candidate, &Candidate) -> Ordering {
    if q.by_eta {
        eta_order
    } else {
        candidate_order
    }
}

/// The oracle: every unit scored, sorted, cut at K.
pub fn brute_force(table: &UnitTable, model: &Model<'_>, lat: f64, lon: f64, q: &Resolved) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = (0..table.capacity() as u32)
        .filter(|&slot| eligible(table, slot, q))
        .map(|slot| score(table, model, slot, lat, lon, q))
        .collect();
    all.sort_by(order_of(q));
    all.truncate(q.k);
    all
}

/// A heap item: the worst of the current top-K sits on top.
struct Ranked<'t> {
    /// The ordering key: the score, or the ETA when the query ranks by ETA.
    score: f64,
    id: &'t str,
    slot: u32,
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked<'_> {}
impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| self.id.cmp(other.id))
    }
}

/// The exact top-K by ring search; see the module docs of [`crate::index`].
pub fn search<'t>(
    table: &'t UnitTable,
    grid: &Grid,
    model: &Model<'_>,
    lat: f64,
    lon: f64,
    q: &Resolved,
) -> CoreResult<Vec<Candidate>> {
    geo::validate(lat, lon)?;
    let total: usize = q.partitions.iter().map(|&p| grid.partition_len(p)).sum();
    if total == 0 {
        return Ok(Vec::new());
    }
    let occupied: usize = q.partitions.iter().map(|&p| grid.partition_cells(p)).sum();
    let qxyz = unit_vector(lat, lon);
    let (qrow, qcol) = grid.cell_of(lat, lon);
    let mut top: BinaryHeap<Ranked<'t>> = BinaryHeap::with_capacity(q.k + 1);
    // Squared chord beyond which no unit can beat the current K-th; infinite until K found.
    let mut limit2 = f64::INFINITY;
    let mut seen = 0usize;
    let mobilisation: [f64; N_PARTITIONS] = std::array::from_fn(|p| model.config.mobilisation_seconds[p % N_STATUSES]);

    // `mobilisation` is the partition's (its status is fixed), so a unit's ETA, and so its
    // score (ETA plus non-negative costs, the stale-position cost included), is at least
    // mobilisation + chord × R × its type's pace (a chord is never longer than its arc):
    // a bound with no trigonometry that skips most units before the full score. The bound
    // holds for either ordering key.
    let scan = |entries: &[Entry], mobilisation: f64, top: &mut BinaryHeap<Ranked<'t>>, limit2: &mut f64| {
        for e in entries {
            if e.caps & q.required != q.required {
                continue;
            }
            if let Some(types) = &q.unit_types {
                if !types.contains(&e.unit_type) {
                    continue;
                }
            }
            let c2 = chord2(&e.xyz, &qxyz);
            if c2 > *limit2 {
                continue;
            }
            if top.len() == q.k {
                let bound = mobilisation + c2.sqrt() * EARTH_RADIUS_M * q.pace_by_type[e.unit_type as usize];
                if bound > top.peek().expect("heap is full").score {
                    continue;
                }
            }
            if !eligible_now(table, e.slot, q) {
                continue;
            }
            let c = score_terms(table, model, e.slot, lat, lon, q);
            let item = Ranked { score: c.key(q.by_eta), id: &table.ids[e.slot as usize], slot: e.slot };
            if top.len() < q.k {
                top.push(item);
            } else if item < *top.peek().expect("heap is full") {
                top.pop();
                top.push(item);
            } else {
                continue;
            }
            if top.len() == q.k {
                let worst = top.peek().expect("heap is full").score;
                *limit2 = prune_limit2(worst, q);
            }
        }
    };

    let mut r = 0i64;
    loop {
        if top.len() == q.k {
            let bound = q.min_mobilisation + grid.lower_bound_m(lat, qrow, r) * q.min_pace;
            if bound > top.peek().expect("heap is full").score {
                break;
            }
        }
        if seen == total {
            break;
        }
        let ring_cells = if r == 0 { 1 } else { 8 * r as usize } * q.partitions.len();
        if !grid.ring_fits(r) || ring_cells > occupied {
            // The rings have grown larger than what is left: scan the remaining cells
            // directly. The chord limit still prunes, so the result stays exact.
            for &p in &q.partitions {
                for (row, col, entries) in grid.occupied(p) {
                    if grid.ring_distance((qrow, qcol), (row, col)) >= r {
                        scan(entries, mobilisation[p], &mut top, &mut limit2);
                    }
                }
            }
            break;
        }
        grid.for_ring(qrow, qcol, r, |key| {
            for &p in &q.partitions {
                if let Some(entries) = grid.cell(p, key) {
                    seen += entries.len();
                    scan(entries, mobilisation[p], &mut top, &mut limit2);
                }
            }
        });
        r += 1;
    }
    let mut out: Vec<Candidate> = top.into_iter().map(|item| score(table, model, item.slot, lat, lon, q)).collect();
    out.sort_by(order_of(q));
    Ok(out)
}

/// The squared chord of the largest distance at which a unit could still score `worst`,
/// with a relative margin so rounding can never prune a unit that ties.
#[inline]
fn prune_limit2(worst: f64, q: &Resolved) -> f64 {
    let reach_m = (worst - q.min_mobilisation).max(0.0) / q.min_pace;
    chord2_of_distance(reach_m * (1.0 + 1e-9) + 1e-6)
}

/// Checks K; the one place its range is decided.
pub fn validate_k(k: usize) -> CoreResult<()> {
    if k == 0 || k > MAX_K {
        return Err(CoreError::invalid("k", format!("{k} is outside 1..={MAX_K}")));
    }
    Ok(())
}

/// Partitions for the allowed agencies and statuses.
pub fn partitions(agency_ok: &[bool; 3], status_ok: &[bool; 7]) -> Vec<usize> {
    let mut out = Vec::new();
    for &a in Agency::ALL {
        for &s in Status::ALL {
            if agency_ok[a.index()] && status_ok[s.index()] {
                out.push(partition_of(a, s));
            }
        }
    }
    out
}

/// Key of the query's own cell, exposed for benches.
pub fn query_cell(grid: &Grid, lat: f64, lon: f64) -> u64 {
    let (r, c) = grid.cell_of(lat, lon);
    cell_key(r, c)
}
