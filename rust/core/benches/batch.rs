//! Batch assignment of a surge: 500 waiting incidents against a 10,000-unit fleet, each
//! incident's top candidates from the real ranking. Baseline in the same run: the greedy
//! "each incident in grade order takes its best free candidates" on the same candidates.
//!
//! `cargo bench -p dispatch-engine --bench batch`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dispatch_engine::batch::{assign, Arc, Demand};
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::store::{UnitSpec, UnitStore};
use dispatch_engine::types::{Agency, Grade, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const UNITS: usize = 10_000;
const INCIDENTS: usize = 500;
/// Candidates ranked per incident: the pruned graph the assignment is exact on.
const K: usize = 10;

fn store() -> UnitStore {
    let mut rng = StdRng::seed_from_u64(42);
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    for i in 0..UNITS {
        let spec = UnitSpec {
            agency: Agency::Police,
            unit_type: "irv".into(),
            status: Some(if i % 5 == 0 { Status::Available } else { Status::Unavailable }),
            ..Default::default()
        };
        let id = format!("U{i:06}");
        store.upsert(&id, &spec).unwrap();
        let lat = 51.5 + rng.random_range(-0.18..0.18);
        let lon = -0.12 + rng.random_range(-0.3..0.3);
        store.update_location(&id, lat, lon, 1).unwrap();
    }
    store
}

struct Surge {
    queries: Vec<Query>,
    demands: Vec<Demand>,
}

fn surge() -> Surge {
    let mut rng = StdRng::seed_from_u64(7);
    let mut queries = Vec::new();
    let mut demands = Vec::new();
    for _ in 0..INCIDENTS {
        let grade = match rng.random_range(0..10) {
            0..=2 => Grade::Immediate,
            3..=8 => Grade::Significant,
            _ => Grade::Extended,
        };
        let lat = 51.5 + rng.random_range(-0.12..0.12);
        let lon = -0.12 + rng.random_range(-0.2..0.2);
        queries.push(Query { k: K, grade, ..Query::new(lat, lon, 2) });
        demands.push(Demand { need: if rng.random_range(0..5) == 0 { 2 } else { 1 }, rank: grade.index() as u8 });
    }
    Surge { queries, demands }
}

fn candidates(store: &UnitStore, surge: &Surge) -> Vec<Arc> {
    let mut arcs = Vec::new();
    for (d, q) in surge.queries.iter().enumerate() {
        for c in store.rank(q).unwrap() {
            arcs.push(Arc { unit: c.slot, demand: d as u32, cost: c.score });
        }
    }
    arcs
}

/// Incidents in grade order, each taking its best free candidates: the policy that sends
/// the nearest unit to each call in turn.
fn greedy(demands: &[Demand], arcs: &[Arc]) -> (Vec<u32>, f64) {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&d| demands[d].rank);
    let mut by_demand: Vec<Vec<&Arc>> = vec![Vec::new(); demands.len()];
    for a in arcs {
        by_demand[a.demand as usize].push(a);
    }
    let mut used = std::collections::HashSet::new();
    let mut filled = vec![0u32; 4];
    let mut cost = 0.0;
    for d in order {
        let mut left = demands[d].need;
        let mut list = by_demand[d].clone();
        list.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        for a in list {
            if left > 0 && used.insert(a.unit) {
                left -= 1;
                filled[demands[d].rank as usize] += 1;
                cost += a.cost;
            }
        }
    }
    (filled, cost)
}

fn bench(c: &mut Criterion) {
    let store = store();
    let surge = surge();
    let arcs = candidates(&store, &surge);
    let optimum = assign(&surge.demands, &arcs).unwrap();
    let (greedy_filled, greedy_cost) = greedy(&surge.demands, &arcs);
    println!(
        "batch of {INCIDENTS} incidents x {UNITS} units (top {K}): optimum fills {:?} at {:.0} s, \
         greedy fills {greedy_filled:?} at {greedy_cost:.0} s",
        optimum.filled,
        optimum.cost_ms as f64 / 1000.0
    );
    let mut group = c.benchmark_group("batch_500x10k");
    group.measurement_time(Duration::from_secs(3)).sample_size(20);
    group.bench_function("rank_candidates", |b| b.iter(|| black_box(candidates(&store, &surge))));
    group.bench_function("assign_min_cost_flow", |b| b.iter(|| black_box(assign(&surge.demands, &arcs).unwrap())));
    group.bench_function("assign_greedy_baseline", |b| b.iter(|| black_box(greedy(&surge.demands, &arcs))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
