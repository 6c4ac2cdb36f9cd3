//! Criterion benches of the core without Python: ranking against the brute-force scan of
//! the same model (the baseline, in the same run), and batch location updates.
//!
//! `cargo bench -p dispatch-engine` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dispatch_engine::rank::Query;
use dispatch_engine::store::UnitStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A London-sized fleet (`common::fleet`), every unit last seen at t = 1 ms.
fn fleet(n: usize) -> (UnitStore, Vec<(f64, f64)>) {
    common::fleet(n, |_| 1)
}

fn ranking(c: &mut Criterion) {
    let mut group = c.benchmark_group("rank_top5");
    group.measurement_time(Duration::from_secs(2)).sample_size(20);
    for &n in &[10_000usize, 100_000] {
        let (store, _) = fleet(n);
        let mut rng = StdRng::seed_from_u64(7);
        let queries: Vec<(f64, f64)> =
            (0..256).map(|_| (51.5 + rng.random_range(-0.1..0.1), -0.12 + rng.random_range(-0.2..0.2))).collect();
        for (label, required) in
            [("any", vec![]), ("taser", vec!["taser".to_string()]), ("dog", vec!["dog".to_string()])]
        {
            let mut i = 0;
            group.bench_function(BenchmarkId::new(format!("grid/{label}"), n), |b| {
                b.iter(|| {
                    let (lat, lon) = queries[i % queries.len()];
                    i += 1;
                    let q = Query { required: required.clone(), ..Query::new(lat, lon, 2) };
                    black_box(store.rank(&q).unwrap())
                })
            });
            let mut i = 0;
            group.bench_function(BenchmarkId::new(format!("brute_force/{label}"), n), |b| {
                b.iter(|| {
                    let (lat, lon) = queries[i % queries.len()];
                    i += 1;
                    let q = Query { required: required.clone(), ..Query::new(lat, lon, 2) };
                    black_box(store.rank_brute_force(&q).unwrap())
                })
            });
        }
    }
    group.finish();
}

fn location_updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_locations");
    group.measurement_time(Duration::from_secs(2)).sample_size(20);
    for &n in &[10_000usize, 100_000] {
        let (mut store, points) = fleet(n);
        let slots: Vec<i64> = (0..n as i64).collect();
        let mut rng = StdRng::seed_from_u64(9);
        let lat: Vec<f64> = points.iter().map(|p| p.0 + rng.random_range(-2e-4..2e-4)).collect();
        let lon: Vec<f64> = points.iter().map(|p| p.1 + rng.random_range(-2e-4..2e-4)).collect();
        let mut t = 2i64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("by_slot", n), |b| {
            b.iter(|| {
                t += 1;
                let time = vec![t; n];
                black_box(store.update_locations_by_slot(&slots, &lat, &lon, &time, false).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ranking, location_updates);
criterion_main!(benches);
