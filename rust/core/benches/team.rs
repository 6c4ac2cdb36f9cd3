//! The whole-team recommendation against a single-group ranking, in the same run, on a
//! 100,000-unit London fleet: a 3-group plan (2 units of any kind, 1 with a taser, 1 dog
//! unit) against the top 5 of one group, the question RecommendUnits answers per group.
//!
//! `cargo bench -p dispatch-engine --bench team` (add `-- --quick` for a short run). Besides
//! criterion's estimates it prints p50 and p99 of single calls, team and ranking
//! interleaved at the same query points, and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dispatch_engine::command::RequirementGroup;
use dispatch_engine::rank::Query;
use dispatch_engine::store::UnitStore;
use dispatch_engine::team;
use dispatch_engine::types::Agency;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const UNITS: usize = 100_000;
const NOW: i64 = 1_750_000_000_000;

/// The fleet of `benches/ranking.rs`, with positions of every age up to 20 minutes, so
/// stale penalties and exclusions apply.
fn fleet(n: usize) -> UnitStore {
    common::fleet(n, |rng| NOW - rng.random_range(0..1_200_000)).0
}

fn plan() -> Vec<RequirementGroup> {
    let g = |caps: &[&str], count| RequirementGroup {
        agency: Agency::Police,
        unit_types: vec![],
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        count,
        arrive_together: false,
    };
    vec![g(&[], 2), g(&["taser"], 1), g(&["dog"], 1)]
}

fn points() -> Vec<(f64, f64)> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..256).map(|_| (51.5 + rng.random_range(-0.1..0.1), -0.12 + rng.random_range(-0.2..0.2))).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Single-call latencies, interleaved so both see the same machine load.
fn tails(store: &UnitStore, plan: &[RequirementGroup], points: &[(f64, f64)]) {
    let rounds = 40_000;
    let (mut t, mut r) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        let (lat, lon) = points[i % points.len()];
        let base = Query::new(lat, lon, NOW);
        let start = Instant::now();
        black_box(team::recommend(store, &base, plan, None, false).unwrap());
        t.push(start.elapsed());
        let start = Instant::now();
        black_box(store.rank(&base).unwrap());
        r.push(start.elapsed());
    }
    t.sort();
    r.sort();
    let (t50, t99, r50, r99) = (percentile(&t, 0.5), percentile(&t, 0.99), percentile(&r, 0.5), percentile(&r, 0.99));
    eprintln!(
        "team vs rank_top5 at {UNITS} units, {rounds} calls each: team p50 {t50:.1} µs p99 {t99:.1} µs; \
         rank p50 {r50:.1} µs p99 {r99:.1} µs; ratio p50 {:.2}x p99 {:.2}x",
        t50 / r50,
        t99 / r99
    );
}

fn team_vs_rank(c: &mut Criterion) {
    let store = fleet(UNITS);
    let plan = plan();
    let points = points();
    tails(&store, &plan, &points);
    let mut group = c.benchmark_group("team");
    group.measurement_time(Duration::from_secs(3)).sample_size(30);
    let mut i = 0;
    group.bench_function(BenchmarkId::new("team/3_groups_4_places", UNITS), |b| {
        b.iter(|| {
            let (lat, lon) = points[i % points.len()];
            i += 1;
            black_box(team::recommend(&store, &Query::new(lat, lon, NOW), &plan, None, false).unwrap())
        })
    });
    let mut i = 0;
    group.bench_function(BenchmarkId::new("rank_top5/any", UNITS), |b| {
        b.iter(|| {
            let (lat, lon) = points[i % points.len()];
            i += 1;
            black_box(store.rank(&Query::new(lat, lon, NOW)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, team_vs_rank);
criterion_main!(benches);
