//! Batch assignment: many waiting places and the units that could fill them, assigned all at
//! once rather than one incident at a time.
//!
//! Sending each waiting incident its nearest unit in turn can leave the next IMMEDIATE call
//! without one; solving the whole surge at once cannot. The objective is lexicographic:
//!
//! 1. fill as many places of the most urgent rank (grade) as possible, then of the next rank,
//!    and so on;
//! 2. among those, least total cost (the ranking's score: ETA plus cost terms, seconds).
//!
//! It is exact on the graph it is given (usually each incident's top candidates, see
//! `docs/domain.md`), computed as a min-cost flow: source → unit (capacity 1) → demand
//! (the arc's cost minus a bonus for the demand's rank) → sink (capacity = places needed).
//! The bonuses are integers chosen so that one more place of a rank outweighs any change in
//! every lower rank and in total cost, which makes the lexicographic objective a plain sum;
//! `i128` holds them exactly. Successive shortest paths with Dijkstra on reduced costs
//! (Johnson potentials) find it; [`brute_force`] enumerates every assignment of a small case
//! and is the oracle the tests hold it to.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{CoreError, CoreResult};

/// Ranks (grades) the objective distinguishes; rank 0 is the most urgent.
pub const N_RANKS: usize = 4;
/// Largest arc cost taken into account, seconds: a day. Larger costs are clamped to it.
pub const MAX_COST_SECONDS: f64 = 86_400.0;

/// Places waiting to be filled: `need` units for one requirement group of one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub need: u32,
    /// 0 (most urgent) to `N_RANKS - 1`: the incident's grade index.
    pub rank: u8,
}

/// "Unit `unit` could fill a place of demand `demand` at `cost` seconds."
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arc {
    pub unit: u32,
    pub demand: u32,
    pub cost: f64,
}

/// The chosen assignment and its objective.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// (unit, demand) pairs, sorted; no unit twice, no demand beyond its need.
    pub pairs: Vec<(u32, u32)>,
    /// Places filled per rank.
    pub filled: [u32; N_RANKS],
    /// Sum of the chosen arcs' costs, milliseconds (integer, so objectives compare exactly).
    pub cost_ms: i64,
}

impl Assignment {
    /// The objective as one comparable key: more urgent places first, then less cost.
    pub fn key(&self) -> ([Reverse<u32>; N_RANKS], i64) {
        (self.filled.map(Reverse), self.cost_ms)
    }
}

fn cost_ms(cost: f64) -> i64 {
    (cost.clamp(0.0, MAX_COST_SECONDS) * 1000.0).round() as i64
}

fn check(demands: &[Demand], arcs: &[Arc]) -> CoreResult<()> {
    for (i, d) in demands.iter().enumerate() {
        if d.rank as usize >= N_RANKS {
            return Err(CoreError::invalid(format!("demands[{i}].rank"), format!("{} is not below {N_RANKS}", d.rank)));
        }
    }
    for (i, a) in arcs.iter().enumerate() {
        if a.demand as usize >= demands.len() {
            return Err(CoreError::invalid(format!("arcs[{i}].demand"), format!("{} names no demand", a.demand)));
        }
        if !a.cost.is_finite() {
            return Err(CoreError::invalid(format!("arcs[{i}].cost"), "must be finite"));
        }
    }
    Ok(())
}

/// The bonus a filled place of each rank earns: rank r's exceeds everything all lower ranks
/// and the total cost could ever add up to, so no trade across ranks is ever worth it.
fn bonuses(demands: &[Demand], arcs: &[Arc]) -> [i128; N_RANKS] {
    let places: i128 = demands.iter().map(|d| d.need as i128).sum();
    let max_cost = arcs.iter().map(|a| cost_ms(a.cost) as i128).max().unwrap_or(0);
    let base = places * max_cost + 1;
    let mut need_by_rank = [0i128; N_RANKS];
    for d in demands {
        need_by_rank[d.rank as usize] += d.need as i128;
    }
    let mut bonus = [0i128; N_RANKS];
    let mut below: i128 = 0; // Σ need × bonus over the ranks already set (less urgent)
    for r in (0..N_RANKS).rev() {
        bonus[r] = below + base;
        below += need_by_rank[r] * bonus[r];
    }
    bonus
}

struct Edge {
    to: usize,
    cap: u32,
    cost: i128,
    rev: usize,
}

struct Graph {
    adj: Vec<Vec<Edge>>,
}

impl Graph {
    fn add(&mut self, from: usize, to: usize, cap: u32, cost: i128) {
        let rev_from = self.adj[to].len();
        let rev_to = self.adj[from].len();
        self.adj[from].push(Edge { to, cap, cost, rev: rev_from });
        self.adj[to].push(Edge { to: from, cap: 0, cost: -cost, rev: rev_to });
    }
}

/// The optimal assignment of `arcs` to `demands` (see the module documentation).
///
/// The candidate graph of a city-wide surge falls apart into many small pieces (incidents
/// in Croydon share no candidate with incidents in Barnet), and the objective is a sum over
/// pieces, so each connected piece is solved on its own: exact, and each shortest-path
/// search floods one piece instead of every free unit in London.
pub fn assign(demands: &[Demand], arcs: &[Arc]) -> CoreResult<Assignment> {
    check(demands, arcs)?;
    let mut out = Assignment::default();
    for (local_demands, local_arcs, demand_ids) in components(demands, arcs) {
        let part = saturating(&local_demands, &local_arcs).unwrap_or_else(|| solve(&local_demands, &local_arcs));
        for (unit, d) in part.pairs {
            out.pairs.push((unit, demand_ids[d as usize]));
        }
        for r in 0..N_RANKS {
            out.filled[r] += part.filled[r];
        }
        out.cost_ms += part.cost_ms;
    }
    out.pairs.sort_unstable();
    Ok(out)
}

/// The connected pieces of the candidate graph: (demands, arcs renumbered to them, the
/// original index of each local demand). Demands with no arc are left out: they stay unfilled.
fn components(demands: &[Demand], arcs: &[Arc]) -> Vec<(Vec<Demand>, Vec<Arc>, Vec<u32>)> {
    // Union-find over demands; two demands join when some unit is a candidate for both.
    let mut parent: Vec<usize> = (0..demands.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut by_unit: Vec<(u32, u32)> = arcs.iter().map(|a| (a.unit, a.demand)).collect();
    by_unit.sort_unstable();
    for pair in by_unit.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (a, b) = (find(&mut parent, pair[0].1 as usize), find(&mut parent, pair[1].1 as usize));
            parent[a] = b;
        }
    }
    let mut piece_of_root = vec![usize::MAX; demands.len()];
    let mut local_index = vec![u32::MAX; demands.len()];
    let mut pieces: Vec<(Vec<Demand>, Vec<Arc>, Vec<u32>)> = Vec::new();
    for a in arcs {
        let d = a.demand as usize;
        let root = find(&mut parent, d);
        if piece_of_root[root] == usize::MAX {
            piece_of_root[root] = pieces.len();
            pieces.push((Vec::new(), Vec::new(), Vec::new()));
        }
        let piece = &mut pieces[piece_of_root[root]];
        if local_index[d] == u32::MAX {
            local_index[d] = piece.0.len() as u32;
            piece.0.push(demands[d]);
            piece.2.push(a.demand);
        }
        piece.1.push(Arc { demand: local_index[d], ..*a });
    }
    pieces
}

/// The fast path of one piece: every place can be filled (the usual case, more free units
/// than places), so the objective is just the least total cost of an assignment filling
/// them all, found place by place with shortest augmenting paths over the units (the sparse
/// Jonker-Volgenant scheme: dual values on places and units keep every reduced cost
/// non-negative, and a search stops at the first free unit it settles, usually among the
/// place's own candidates). `None` when some place with candidates cannot be filled: then
/// which places stay empty is a question of rank, and the flow in [`solve`] answers it.
fn saturating(demands: &[Demand], arcs: &[Arc]) -> Option<Assignment> {
    let mut units: Vec<u32> = arcs.iter().map(|a| a.unit).collect();
    units.sort_unstable();
    units.dedup();
    let col = |u: u32| units.binary_search(&u).expect("unit of an arc");
    // Rows are places: a demand of need n is n rows with the same candidates.
    let mut arcs_of_demand: Vec<Vec<(usize, i64)>> = vec![Vec::new(); demands.len()];
    for a in arcs {
        arcs_of_demand[a.demand as usize].push((col(a.unit), cost_ms(a.cost)));
    }
    let mut rows: Vec<usize> = Vec::new(); // row -> demand
    for (d, demand) in demands.iter().enumerate() {
        if !arcs_of_demand[d].is_empty() {
            rows.extend(std::iter::repeat_n(d, demand.need as usize));
        }
    }
    let n_cols = units.len();
    let mut u = vec![0i64; rows.len()];
    let mut v = vec![0i64; n_cols];
    let mut row_of_col = vec![usize::MAX; n_cols];
    let mut col_of_row = vec![usize::MAX; rows.len()];
    let mut dist = vec![i64::MAX; n_cols];
    let mut pred = vec![usize::MAX; n_cols]; // the row a column was reached from
    let mut settled: Vec<usize> = Vec::new();
    let mut is_settled = vec![false; n_cols];
    let mut touched: Vec<usize> = Vec::new();
    let mut heap = BinaryHeap::new();
    for r0 in 0..rows.len() {
        heap.clear();
        // u[r0]: the cheapest reduced entry, so the search starts at distance 0.
        u[r0] = arcs_of_demand[rows[r0]].iter().map(|&(j, c)| c - v[j]).min().expect("a row has candidates");
        let relax = |r: usize,
                     base: i64,
                     dist: &mut [i64],
                     pred: &mut [usize],
                     touched: &mut Vec<usize>,
                     heap: &mut BinaryHeap<Reverse<(i64, usize)>>,
                     u: &[i64],
                     v: &[i64]| {
            for &(j, c) in &arcs_of_demand[rows[r]] {
                let nd = base + c - u[r] - v[j];
                if nd < dist[j] {
                    if dist[j] == i64::MAX {
                        touched.push(j);
                    }
                    dist[j] = nd;
                    pred[j] = r;
                    heap.push(Reverse((nd, j)));
                }
            }
        };
        relax(r0, 0, &mut dist, &mut pred, &mut touched, &mut heap, &u, &v);
        let mut free_col = usize::MAX;
        let mut delta = 0;
        while let Some(Reverse((d, j))) = heap.pop() {
            if d > dist[j] || is_settled[j] {
                continue;
            }
            is_settled[j] = true;
            settled.push(j);
            if row_of_col[j] == usize::MAX {
                free_col = j;
                delta = d;
                break;
            }
            relax(row_of_col[j], d, &mut dist, &mut pred, &mut touched, &mut heap, &u, &v);
        }
        if free_col == usize::MAX {
            return None; // this place cannot be filled: ranks decide, not costs
        }
        // Duals: settled columns (and their rows) move by how much sooner they were reached
        // than the free column; the matched arcs keep reduced cost 0, all others >= 0.
        for &k in &settled {
            let gain = delta - dist[k];
            v[k] -= gain;
            if row_of_col[k] != usize::MAX {
                u[row_of_col[k]] += gain;
            }
        }
        u[r0] += delta;
        let mut j = free_col;
        loop {
            let r = pred[j];
            let previous = col_of_row[r];
            row_of_col[j] = r;
            col_of_row[r] = j;
            if r == r0 {
                break;
            }
            j = previous;
        }
        for &k in &touched {
            dist[k] = i64::MAX;
        }
        for &k in &settled {
            is_settled[k] = false;
        }
        touched.clear();
        settled.clear();
    }
    let mut out = Assignment::default();
    for (r, &j) in col_of_row.iter().enumerate() {
        let d = rows[r];
        out.pairs.push((units[j], d as u32));
        out.filled[demands[d].rank as usize] += 1;
        out.cost_ms += arcs_of_demand[d].iter().filter(|&&(c, _)| c == j).map(|&(_, c)| c).min().expect("matched arc");
    }
    Some(out)
}

/// [`assign`] of one connected piece, input already checked.
fn solve(demands: &[Demand], arcs: &[Arc]) -> Assignment {
    // Units are compacted to the nodes 1..=U in order of first appearance.
    let mut unit_ids: Vec<u32> = arcs.iter().map(|a| a.unit).collect();
    unit_ids.sort_unstable();
    unit_ids.dedup();
    let n_units = unit_ids.len();
    let node_of_unit = |u: u32| 1 + unit_ids.binary_search(&u).expect("unit of an arc");
    let demand_node = |d: usize| 1 + n_units + d;
    let source = 0;
    let sink = 1 + n_units + demands.len();
    let n = sink + 1;
    let bonus = bonuses(demands, arcs);

    let mut g = Graph { adj: (0..n).map(|_| Vec::new()).collect() };
    for u in 0..n_units {
        g.add(source, 1 + u, 1, 0);
    }
    // Keep only the cheapest arc per (unit, demand): a duplicate can never be better.
    let mut sorted: Vec<&Arc> = arcs.iter().collect();
    sorted.sort_by(|a, b| (a.unit, a.demand).cmp(&(b.unit, b.demand)).then(a.cost.total_cmp(&b.cost)));
    sorted.dedup_by(|b, a| a.unit == b.unit && a.demand == b.demand);
    for a in &sorted {
        let d = &demands[a.demand as usize];
        if d.need > 0 {
            g.add(
                node_of_unit(a.unit),
                demand_node(a.demand as usize),
                1,
                cost_ms(a.cost) as i128 - bonus[d.rank as usize],
            );
        }
    }
    for (i, d) in demands.iter().enumerate() {
        if d.need > 0 {
            g.add(demand_node(i), sink, d.need, 0);
        }
    }

    // Potentials: shortest distances in the initial graph (source → unit is 0, unit → demand
    // the cheapest arc in, demand → sink 0), which make every reduced cost non-negative.
    let mut pot = vec![0i128; n];
    for node in 1..=n_units {
        for e in &g.adj[node] {
            if e.cap > 0 && e.to != source {
                pot[e.to] = pot[e.to].min(e.cost);
            }
        }
    }
    pot[sink] = (0..demands.len()).map(|d| pot[demand_node(d)]).min().unwrap_or(0).min(0);

    let mut dist = vec![i128::MAX; n];
    let mut prev: Vec<(usize, usize)> = vec![(usize::MAX, 0); n];
    let mut done = vec![false; n];
    let mut heap = BinaryHeap::new();
    loop {
        dist.fill(i128::MAX);
        done.fill(false);
        dist[source] = 0;
        heap.clear();
        heap.push(Reverse((0i128, source)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if done[v] || d > dist[v] {
                continue;
            }
            done[v] = true;
            if v == sink {
                break; // the rest cannot shorten the path found; see the potential update
            }
            for (i, e) in g.adj[v].iter().enumerate() {
                if e.cap == 0 || done[e.to] {
                    continue;
                }
                let nd = d + e.cost + pot[v] - pot[e.to];
                if nd < dist[e.to] {
                    dist[e.to] = nd;
                    prev[e.to] = (v, i);
                    heap.push(Reverse((nd, e.to)));
                }
            }
        }
        if !done[sink] {
            break;
        }
        let path_cost = dist[sink] + pot[sink] - pot[source];
        if path_cost >= 0 {
            break; // another place would not improve the objective
        }
        // Nodes not settled take the sink's distance: reduced costs stay non-negative.
        let reach = dist[sink];
        for v in 0..n {
            pot[v] += if done[v] { dist[v] } else { reach };
        }
        let mut v = sink;
        while v != source {
            let (u, i) = prev[v];
            g.adj[u][i].cap -= 1;
            let rev = g.adj[u][i].rev;
            g.adj[v][rev].cap += 1;
            v = u;
        }
    }

    let mut out = Assignment::default();
    for (u, &unit) in unit_ids.iter().enumerate() {
        for e in &g.adj[1 + u] {
            let is_demand = e.to > n_units && e.to < sink;
            // A used forward arc has its capacity moved to the reverse arc.
            if is_demand && e.cap == 0 && e.cost < 0 {
                let d = e.to - 1 - n_units;
                out.pairs.push((unit, d as u32));
                out.filled[demands[d].rank as usize] += 1;
                out.cost_ms += (e.cost + bonus[demands[d].rank as usize]) as i64;
            }
        }
    }
    out
}

/// Every assignment of a small case, enumerated: the oracle [`assign`] is tested against.
/// Exponential in the number of units; the tests keep it to a handful.
pub fn brute_force(demands: &[Demand], arcs: &[Arc]) -> CoreResult<Assignment> {
    check(demands, arcs)?;
    let mut units: Vec<u32> = arcs.iter().map(|a| a.unit).collect();
    units.sort_unstable();
    units.dedup();
    let mut best = Assignment::default();
    let mut left: Vec<u32> = demands.iter().map(|d| d.need).collect();
    let mut chosen: Vec<(u32, u32, i64)> = Vec::new();
    search(demands, arcs, &units, 0, &mut left, &mut chosen, &mut best);
    Ok(best)
}

fn search(
    demands: &[Demand],
    arcs: &[Arc],
    units: &[u32],
    i: usize,
    left: &mut [u32],
    chosen: &mut Vec<(u32, u32, i64)>,
    best: &mut Assignment,
) {
    if i == units.len() {
        let mut a = Assignment::default();
        for &(u, d, c) in chosen.iter() {
            a.pairs.push((u, d));
            a.filled[demands[d as usize].rank as usize] += 1;
            a.cost_ms += c;
        }
        a.pairs.sort_unstable();
        if a.key() < best.key() {
            *best = a;
        }
        return;
    }
    search(demands, arcs, units, i + 1, left, chosen, best); // this unit stays free
    for a in arcs.iter().filter(|a| a.unit == units[i]) {
        let d = a.demand as usize;
        if left[d] == 0 {
            continue;
        }
        left[d] -= 1;
        chosen.push((a.unit, a.demand, cost_ms(a.cost)));
        search(demands, arcs, units, i + 1, left, chosen, best);
        chosen.pop();
        left[d] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(unit: u32, demand: u32, cost: f64) -> Arc {
        Arc { unit, demand, cost }
    }

    #[test]
    fn nearest_in_turn_is_beaten_by_the_whole_picture() {
        // Unit 1 is nearest to both; sending it to the first incident leaves the second with
        // unit 2's 900 s. The optimum sends unit 2 to the first (200 s) and unit 1 to the
        // second: 300 s in all instead of 1,000.
        let demands = [Demand { need: 1, rank: 1 }, Demand { need: 1, rank: 1 }];
        let arcs = [arc(1, 0, 100.0), arc(1, 1, 100.0), arc(2, 0, 200.0), arc(2, 1, 900.0)];
        let a = assign(&demands, &arcs).unwrap();
        assert_eq!(a.pairs, vec![(1, 1), (2, 0)]);
        assert_eq!(a.cost_ms, 300_000);
    }

    #[test]
    fn an_urgent_place_is_filled_before_any_saving_elsewhere() {
        // One unit, wanted by an IMMEDIATE (rank 0) call far away and a SIGNIFICANT call next
        // door: it goes to the IMMEDIATE one.
        let demands = [Demand { need: 1, rank: 1 }, Demand { need: 1, rank: 0 }];
        let arcs = [arc(7, 0, 10.0), arc(7, 1, 5_000.0)];
        let a = assign(&demands, &arcs).unwrap();
        assert_eq!(a.pairs, vec![(7, 1)]);
        assert_eq!(a.filled, [1, 0, 0, 0]);
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = assign(&[Demand { need: 1, rank: 9 }], &[]).unwrap_err();
        assert!(err.to_string().contains("demands[0].rank"), "{err}");
        let err = assign(&[Demand { need: 1, rank: 0 }], &[arc(1, 3, 1.0)]).unwrap_err();
        assert!(err.to_string().contains("arcs[0].demand"), "{err}");
        let err = assign(&[Demand { need: 1, rank: 0 }], &[arc(1, 0, f64::NAN)]).unwrap_err();
        assert!(err.to_string().contains("arcs[0].cost"), "{err}");
    }

    #[test]
    fn nothing_to_do_is_an_empty_answer() {
        assert_eq!(assign(&[], &[]).unwrap(), Assignment::default());
        assert_eq!(assign(&[Demand { need: 0, rank: 0 }], &[arc(1, 0, 1.0)]).unwrap(), Assignment::default());
    }
}
