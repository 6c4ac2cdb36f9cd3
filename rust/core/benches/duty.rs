//! Ranking with a roster against the same ranking without one, in the same run: 100,000
//! units, 30,000 people on shift, booked two by two in 15,000 crews (so 15,000 rostered
//! units), crews changing while the queries run.
//!
//! The two machines hold equal unit tables: the plain one is given by UpsertUnit exactly the
//! capabilities and shift windows the crews give the rostered one. Each measured iteration
//! is one top-5 ranking (a firearms job, or any unit, at a random point); in the "changing"
//! pair every [`CHANGE_EVERY`]th iteration also applies one command through
//! `Machine::execute`: with the roster a BookCrew that moves a crew's firearms minimum
//! between 2 and 3 (so its unit gains or loses `firearms`), without it an UpsertUnit making
//! the same change to the unit. The "static" pair ranks only. After criterion's estimates it
//! prints, for each pair, the median and mean of single calls interleaved at the same query
//! points, and the ratios rostered / plain (goal: at most 1.2).
//!
//! `cargo bench -p dispatch-engine --bench duty` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dispatch_engine::command::Method;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::state::{JournalAnswer, Machine, Outcome};
use dispatch_engine::store::UnitStore;
use dispatch_engine::types::Status;
use dispatch_engine::wire::encode::timestamp;
use dispatch_engine::wire::pb;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const UNITS: usize = 100_000;
const PEOPLE: usize = 30_000;
/// Every `ROSTER_STRIDE`th unit is crewed: 100,000 / 30,000 people in pairs.
const ROSTER_STRIDE: usize = UNITS / (PEOPLE / 2);
const CHANGE_EVERY: u64 = 8;
const NOW: i64 = 1_750_000_000_000;
const H: i64 = 3_600_000;
/// The crews' window (and the plain units' shift): on since an hour, for eight more.
const WINDOW: (i64, i64) = (NOW - H, NOW + 8 * H);

fn unit_id(i: usize) -> String {
    format!("U{i:06}")
}

fn rostered(i: usize) -> bool {
    i % ROSTER_STRIDE == 0 && i / ROSTER_STRIDE < PEOPLE / 2
}

/// The `n`th crew, on unit `i`, with its firearms minimum.
fn crew(n: usize, i: usize, holders: u32, request_id: String) -> pb::BookCrewRequest {
    pb::BookCrewRequest {
        request_id,
        crew: Some(pb::Crew {
            crew_id: format!("C{n:05}"),
            unit_id: unit_id(i),
            person_ids: vec![format!("P{:05}", 2 * n), format!("P{:05}", 2 * n + 1)],
            start: Some(timestamp(WINDOW.0)),
            end: Some(timestamp(WINDOW.1)),
            minimums: vec![pb::CapabilityMinimum { capability: "firearms".into(), holders }],
        }),
    }
}

/// What a plain unit is told by UpsertUnit: for unit `i` of a crew, what the crew gives it.
fn unit(i: usize, firearms: bool, request_id: String) -> pb::UpsertUnitRequest {
    let dog = i % 50 == 0;
    let mut capabilities: Vec<String> = if dog {
        vec!["dog".into()]
    } else if i % 3 == 0 {
        vec!["taser".into()]
    } else {
        vec![]
    };
    let mut window = (None, None);
    if rostered(i) {
        // Both members hold taser, both firearms: with a minimum of 2 the unit is armed.
        capabilities = if firearms { vec!["firearms".into(), "taser".into()] } else { vec!["taser".into()] };
        window = (Some(timestamp(WINDOW.0)), Some(timestamp(WINDOW.1)));
    }
    pb::UpsertUnitRequest {
        request_id,
        unit: Some(pb::UnitSpec {
            unit_id: unit_id(i),
            agency: pb::Agency::Police as i32,
            unit_type: if dog { "dog" } else { "irv" }.into(),
            capabilities,
            shift_start: window.0,
            shift_end: window.1,
            ..Default::default()
        }),
    }
}

fn apply(m: &mut Machine, method: Method, bytes: &[u8], at: i64) {
    let out = m.execute(method, bytes, at, JournalAnswer::Unchecked);
    assert!(matches!(out, Outcome::Applied { .. }), "{method:?}: {out:?}");
}

/// The fleet, with or without its roster: a fifth AVAILABLE, 2% dogs, a third with tasers,
/// positions up to 10 minutes old.
fn machine(with_roster: bool) -> Machine {
    let mut m = Machine::new(UnitStore::new(RankConfig::default(), 0.01).unwrap(), 1 << 16);
    let mut rng = StdRng::seed_from_u64(42);
    let at = NOW - 2 * H;
    for i in 0..UNITS {
        // The rostered machine's units declare nothing special: the crews decide.
        let firearms = !with_roster;
        apply(&mut m, Method::UpsertUnit, &unit(i, firearms, format!("u{i}")).encode_to_vec(), at);
        if i % 5 != 0 {
            let r = pb::SetUnitStatusRequest {
                request_id: format!("s{i}"),
                unit_id: unit_id(i),
                status: Status::Unavailable as i32,
            };
            apply(&mut m, Method::SetUnitStatus, &r.encode_to_vec(), at);
        }
    }
    if with_roster {
        for p in 0..PEOPLE {
            let skills = ["firearms", "taser"]
                .iter()
                .map(|c| pb::Skill { capability: (*c).into(), valid_from: None, expiry: None })
                .collect();
            let person = pb::Person { person_id: format!("P{p:05}"), name: String::new(), skills };
            let r = pb::UpsertPersonRequest { request_id: format!("p{p}"), person: Some(person) };
            apply(&mut m, Method::UpsertPerson, &r.encode_to_vec(), at);
            let shift = pb::Shift {
                shift_id: format!("S{p:05}"),
                person_id: format!("P{p:05}"),
                start: Some(timestamp(WINDOW.0 - H)),
                end: Some(timestamp(WINDOW.1 + H)),
                ..Default::default()
            };
            let r = pb::UpsertShiftRequest { request_id: format!("h{p}"), shift: Some(shift) };
            apply(&mut m, Method::UpsertShift, &r.encode_to_vec(), at);
        }
        for n in 0..PEOPLE / 2 {
            apply(&mut m, Method::BookCrew, &crew(n, n * ROSTER_STRIDE, 2, format!("c{n}")).encode_to_vec(), at);
        }
        assert_eq!(m.duty().sizes(), (PEOPLE, PEOPLE, PEOPLE / 2, PEOPLE / 2));
    }
    // Bring both clocks to the crews' start (the tick puts the crews on).
    apply(&mut m, Method::Tick, b"", WINDOW.0);
    let ids: Vec<String> = (0..UNITS).map(unit_id).collect();
    let lat: Vec<f64> = (0..UNITS).map(|_| 51.5 + rng.random_range(-0.18..0.18)).collect();
    let lon: Vec<f64> = (0..UNITS).map(|_| -0.12 + rng.random_range(-0.3..0.3)).collect();
    let times: Vec<i64> = (0..UNITS).map(|_| NOW - rng.random_range(0..600_000)).collect();
    let report = m.update_locations(&ids, &lat, &lon, &times, NOW).unwrap();
    assert_eq!(report.applied, UNITS);
    m
}

/// Applies the `c`th change: a crew's firearms minimum, or the same on the plain unit.
struct Changer {
    with_roster: bool,
    count: u64,
}

impl Changer {
    fn change(&mut self, m: &mut Machine) {
        self.count += 1;
        let n = (self.count as usize * 7919) % (PEOPLE / 2);
        let i = n * ROSTER_STRIDE;
        // Each crew alternates: armed (minimum 2) on even visits, unarmed (3) on odd ones.
        let armed = (self.count as usize * 7919 / (PEOPLE / 2)) % 2 == 1;
        let rid = format!("x{}", self.count);
        let at = WINDOW.0 + self.count as i64;
        if self.with_roster {
            apply(m, Method::BookCrew, &crew(n, i, if armed { 2 } else { 3 }, rid).encode_to_vec(), at);
        } else {
            apply(m, Method::UpsertUnit, &unit(i, armed, rid).encode_to_vec(), at);
        }
    }
}

fn queries() -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..256)
        .map(|j| {
            let mut q = Query::new(51.5 + rng.random_range(-0.1..0.1), -0.12 + rng.random_range(-0.2..0.2), NOW);
            if j % 2 == 0 {
                q.required = vec!["firearms".into()];
            }
            q
        })
        .collect()
}

/// One iteration: a ranking, and every `CHANGE_EVERY`th a change when `changer` is given.
fn step(m: &mut Machine, q: &Query, changer: Option<&mut Changer>, i: u64) -> usize {
    if let Some(c) = changer {
        if i % CHANGE_EVERY == 0 {
            c.change(m);
        }
    }
    m.units().rank(q).unwrap().len()
}

fn bench(c: &mut Criterion) {
    let qs = queries();
    let mut machines = [machine(false), machine(true)];
    // Same tables before anything changes: the comparison is of like with like.
    {
        let [plain, roster] = &machines;
        for q in &qs {
            assert_eq!(plain.units().rank(q).unwrap(), roster.units().rank(q).unwrap());
        }
    }
    let mut group = c.benchmark_group("duty_rank_top5");
    group.measurement_time(Duration::from_secs(3)).sample_size(30);
    for changing in [false, true] {
        for (m, with_roster) in machines.iter_mut().zip([false, true]) {
            let label = format!(
                "{}/{}",
                if changing { "changing" } else { "static" },
                if with_roster { "roster" } else { "plain" }
            );
            let mut changer = Changer { with_roster, count: 0 };
            let mut i = 0u64;
            group.bench_function(BenchmarkId::new(label, UNITS), |b| {
                b.iter(|| {
                    i += 1;
                    let c = if changing { Some(&mut changer) } else { None };
                    black_box(step(m, &qs[i as usize % qs.len()], c, i))
                })
            });
        }
    }
    group.finish();

    // Single calls interleaved, rostered and plain at the same query point, so that machine
    // load hits both alike; medians and their ratio.
    for changing in [false, true] {
        let mut times = [Vec::new(), Vec::new()];
        let mut changers =
            [Changer { with_roster: false, count: 1 << 20 }, Changer { with_roster: true, count: 1 << 20 }];
        for i in 0..40_000u64 {
            let q = &qs[i as usize % qs.len()];
            for (k, m) in machines.iter_mut().enumerate() {
                let c = if changing { Some(&mut changers[k]) } else { None };
                let t = Instant::now();
                black_box(step(m, q, c, i));
                times[k].push(t.elapsed().as_nanos() as f64 / 1000.0);
            }
        }
        // The mean carries the changes (one call in CHANGE_EVERY); the median is the ranking.
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v.iter().sum::<f64>() / v.len() as f64)
        };
        let ((plain_p50, plain_mean), (roster_p50, roster_mean)) = (stats(&mut times[0]), stats(&mut times[1]));
        println!(
            "duty ranking, {}: median plain {plain_p50:.1} us, rostered {roster_p50:.1} us (ratio {:.2}); \
             mean plain {plain_mean:.1} us, rostered {roster_mean:.1} us (ratio {:.2}); goal <= 1.2",
            if changing { "crews changing" } else { "static" },
            roster_p50 / plain_p50,
            roster_mean / plain_mean,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
