//! The London-sized fleet the ranking benches share: positions spread around the centre, a
//! fifth AVAILABLE, 2% dogs, a third with tasers.

use dispatch_engine::eta::RankConfig;
use dispatch_engine::store::{UnitSpec, UnitStore};
use dispatch_engine::types::{Agency, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` units and their positions; `ping_ms` gives each unit's last ping time (drawn after
/// its position, from the same generator, so a bench's fleet stays the same run to run).
pub fn fleet(n: usize, mut ping_ms: impl FnMut(&mut StdRng) -> i64) -> (UnitStore, Vec<(f64, f64)>) {
    let mut rng = StdRng::seed_from_u64(42);
    let mut store = UnitStore::new(RankConfig::default(), 0.01).unwrap();
    let mut points = Vec::with_capacity(n);
    for i in 0..n {
        let status = if i % 5 == 0 { Status::Available } else { Status::ALL[1 + i % 6] };
        let dog = i % 50 == 0;
        let spec = UnitSpec {
            agency: Agency::Police,
            unit_type: if dog { "dog" } else { "irv" }.into(),
            capabilities: if dog {
                vec!["dog".into()]
            } else if i % 3 == 0 {
                vec!["taser".into()]
            } else {
                vec![]
            },
            status: Some(status),
            ..Default::default()
        };
        let id = format!("U{i:06}");
        store.upsert(&id, &spec).unwrap();
        let lat = 51.5 + rng.random_range(-0.18..0.18);
        let lon = -0.12 + rng.random_range(-0.3..0.3);
        let at = ping_ms(&mut rng);
        store.update_location(&id, lat, lon, at).unwrap();
        points.push((lat, lon));
    }
    (store, points)
}
