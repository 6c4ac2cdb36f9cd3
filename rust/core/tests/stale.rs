//! Stale positions with a controlled clock: the trusted age, the penalty beyond it and the
//! exclusion, each at its exact boundary, the same in the search, its oracle and coverage.

use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::store::{UnitSpec, UnitStore};

const NOW: i64 = 1_750_000_000_000;

/// One IRV at the query point whose position is `age_ms` old at [`NOW`].
fn store_with_age(age_ms: i64) -> UnitStore {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    store.upsert("MD21", &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
    store.update_location("MD21", 51.5, -0.12, NOW - age_ms).unwrap();
    store
}

fn ranked(store: &UnitStore) -> Vec<(f64, f64, f64)> {
    let q = Query::new(51.5, -0.12, NOW);
    let fast = store.rank(&q).unwrap();
    assert_eq!(fast, store.rank_brute_force(&q).unwrap());
    fast.iter().map(|c| (c.position_age_seconds, c.breakdown.stale_position_cost, c.score - c.eta_seconds)).collect()
}

#[test]
fn a_position_up_to_the_trusted_age_costs_nothing() {
    assert_eq!(ranked(&store_with_age(0)), [(0.0, 0.0, 0.0)]);
    assert_eq!(ranked(&store_with_age(120_000)), [(120.0, 0.0, 0.0)]);
}

#[test]
fn beyond_the_trusted_age_each_second_costs_the_weight() {
    let [(age, cost, extra)] = ranked(&store_with_age(121_000))[..] else { panic!("one candidate") };
    assert_eq!((age, cost, extra), (121.0, 1.0, 1.0));
    let mut store = store_with_age(300_000);
    store.set_config(RankConfig { stale_position_weight: 2.5, ..RankConfig::default() }).unwrap();
    assert_eq!(ranked(&store), [(300.0, 450.0, 450.0)]);
}

#[test]
fn a_position_exactly_at_the_exclusion_age_is_still_offered_and_a_millisecond_more_is_not() {
    assert_eq!(ranked(&store_with_age(900_000)), [(900.0, 780.0, 780.0)]);
    assert_eq!(ranked(&store_with_age(900_001)), []);
}

#[test]
fn a_position_dated_after_now_has_age_zero() {
    assert_eq!(ranked(&store_with_age(-5_000)), [(0.0, 0.0, 0.0)]);
}

#[test]
fn coverage_leaves_out_excluded_positions() {
    let q = Query::new(51.5, -0.12, NOW);
    for (age_ms, covered) in [(900_000, true), (900_001, false)] {
        let store = store_with_age(age_ms);
        let points = [(51.5, -0.12)];
        assert_eq!(store.coverage(&q, &points, 600.0).unwrap(), [covered]);
        assert_eq!(store.coverage_brute_force(&q, &points, 600.0).unwrap(), [covered]);
    }
}

#[test]
fn a_stale_but_nearer_unit_can_rank_below_a_fresh_one_farther_away() {
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    for (id, lat, age_ms) in [("NEAR", 51.5, 600_000), ("FAR", 51.51, 0)] {
        store.upsert(id, &UnitSpec { unit_type: "irv".into(), ..Default::default() }).unwrap();
        store.update_location(id, lat, -0.12, NOW - age_ms).unwrap();
    }
    let q = Query::new(51.5, -0.12, NOW);
    let order: Vec<String> = store.rank(&q).unwrap().into_iter().map(|c| c.unit_id).collect();
    assert_eq!(order, ["FAR", "NEAR"]);
}
