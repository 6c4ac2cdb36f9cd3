//! Batch assignment against the brute-force oracle: on every small random case the min-cost
//! flow reaches exactly the best objective found by enumerating every assignment, and its
//! answer is a valid one (no unit twice, no demand over its need, only arcs given).

use std::collections::{HashMap, HashSet};

use dispatch_engine::batch::{assign, brute_force, Arc, Demand, N_RANKS};
use proptest::prelude::*;

fn case() -> impl Strategy<Value = (Vec<Demand>, Vec<Arc>)> {
    let demands = prop::collection::vec((0u32..3, 0u8..N_RANKS as u8), 1..5)
        .prop_map(|v| v.into_iter().map(|(need, rank)| Demand { need, rank }).collect::<Vec<_>>());
    demands.prop_flat_map(|demands| {
        let n = demands.len() as u32;
        // Costs on a coarse grid make ties common: the oracle must agree on the objective
        // even where several assignments reach it.
        let arcs = prop::collection::vec((0u32..7, 0..n, 0u32..40), 0..16).prop_map(|v| {
            v.into_iter().map(|(unit, demand, c)| Arc { unit, demand, cost: c as f64 * 30.0 }).collect::<Vec<_>>()
        });
        (Just(demands), arcs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn min_cost_flow_equals_brute_force((demands, arcs) in case()) {
        let fast = assign(&demands, &arcs).unwrap();
        let oracle = brute_force(&demands, &arcs).unwrap();
        prop_assert_eq!(fast.key(), oracle.key(), "fast {:?} oracle {:?}", fast, oracle);

        let given: HashMap<(u32, u32), f64> = arcs.iter().fold(HashMap::new(), |mut m, a| {
            let c = m.entry((a.unit, a.demand)).or_insert(f64::INFINITY);
            *c = c.min(a.cost);
            m
        });
        let mut units = HashSet::new();
        let mut per_demand = vec![0u32; demands.len()];
        let mut cost_ms = 0i64;
        for &(u, d) in &fast.pairs {
            prop_assert!(units.insert(u), "unit {} used twice", u);
            per_demand[d as usize] += 1;
            cost_ms += (given[&(u, d)] * 1000.0).round() as i64;
        }
        for (i, d) in demands.iter().enumerate() {
            prop_assert!(per_demand[i] <= d.need);
        }
        prop_assert_eq!(cost_ms, fast.cost_ms);
    }
}

#[test]
fn a_medium_case_fills_every_place_it_can() {
    // 60 demands of 1-2 places, 150 units each able to reach a few: whatever the costs, the
    // number filled per rank is a maximum matching per rank in order, which the flow must
    // reach; checked against a greedy lower bound that cannot beat it.
    let mut demands = Vec::new();
    let mut arcs = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..60 {
        demands.push(Demand { need: 1 + (next() % 2) as u32, rank: (next() % N_RANKS as u64) as u8 });
    }
    for unit in 0..150u32 {
        for _ in 0..3 {
            arcs.push(Arc { unit, demand: (next() % 60) as u32, cost: (next() % 3600) as f64 });
        }
    }
    let a = assign(&demands, &arcs).unwrap();
    // Greedy by rank then cost: a feasible assignment, so the optimum is at least as good.
    let mut order: Vec<&Arc> = arcs.iter().collect();
    order.sort_by(|x, y| {
        (demands[x.demand as usize].rank, x.cost).partial_cmp(&(demands[y.demand as usize].rank, y.cost)).unwrap()
    });
    let mut used = HashSet::new();
    let mut left: Vec<u32> = demands.iter().map(|d| d.need).collect();
    let mut greedy = [0u32; N_RANKS];
    for x in order {
        if left[x.demand as usize] > 0 && used.insert(x.unit) {
            left[x.demand as usize] -= 1;
            greedy[demands[x.demand as usize].rank as usize] += 1;
        }
    }
    assert!(a.filled.map(std::cmp::Reverse) <= greedy.map(std::cmp::Reverse), "{:?} vs greedy {:?}", a.filled, greedy);
}
