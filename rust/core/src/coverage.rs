//! Coverage: which points at least one eligible unit can reach within a target time.
//!
//! "Reach" is the ETA of the ranking model (mobilisation + travel), not the score: cost
//! terms say which unit *should* go, coverage asks whether any *could* arrive in time.
//! Each point is an existence query on the grid that stops at the first unit in time, or
//! as soon as the rings are too far for any unit to make it, so dense areas cost a few
//! entries and empty ones a bounded number of rings.

use crate::geo::{self, chord2, chord2_of_distance, haversine_m, unit_vector, EARTH_RADIUS_M};
use crate::index::{Entry, Grid, N_PARTITIONS};
use crate::rank::{eligible, eligible_now, Model, Resolved};
use crate::types::N_STATUSES;
use crate::units::UnitTable;

/// Whether some eligible unit's ETA to (`lat`, `lon`) is at most `target_s`.
pub fn reachable(
    table: &UnitTable,
    grid: &Grid,
    model: &Model<'_>,
    lat: f64,
    lon: f64,
    q: &Resolved,
    target_s: f64,
) -> bool {
    if q.min_pace <= 0.0 || !geo::is_valid(lat, lon) {
        return false;
    }
    let total: usize = q.partitions.iter().map(|&p| grid.partition_len(p)).sum();
    if total == 0 || target_s < q.min_mobilisation {
        return false;
    }
    let occupied: usize = q.partitions.iter().map(|&p| grid.partition_cells(p)).sum();
    let mobilisation: [f64; N_PARTITIONS] = std::array::from_fn(|p| model.config.mobilisation_seconds[p % N_STATUSES]);
    let qxyz = unit_vector(lat, lon);
    let (qrow, qcol) = grid.cell_of(lat, lon);
    // No unit farther than this straight-line distance can arrive in time.
    let limit2 = chord2_of_distance((target_s - q.min_mobilisation) / q.min_pace * (1.0 + 1e-9) + 1e-6);

    let in_time = |entries: &[Entry], mob: f64| {
        entries.iter().any(|e| {
            if e.caps & q.required != q.required {
                return false;
            }
            if let Some(types) = &q.unit_types {
                if !types.contains(&e.unit_type) {
                    return false;
                }
            }
            let c2 = chord2(&e.xyz, &qxyz);
            if c2 > limit2 || mob + c2.sqrt() * EARTH_RADIUS_M * q.pace_by_type[e.unit_type as usize] > target_s {
                return false;
            }
            eligible_now(table, e.slot, q) && eta(table, model, e.slot, lat, lon, q) <= target_s
        })
    };

    let mut seen = 0usize;
    let mut r = 0i64;
    loop {
        let bound = q.min_mobilisation + grid.lower_bound_m(lat, qrow, r) * q.min_pace;
        if bound > target_s || seen == total {
            return false;
        }
        let ring_cells = if r == 0 { 1 } else { 8 * r as usize } * q.partitions.len();
        if !grid.ring_fits(r) || ring_cells > occupied {
            return q.partitions.iter().any(|&p| {
                grid.occupied(p).any(|(row, col, entries)| {
                    grid.ring_distance((qrow, qcol), (row, col)) >= r && in_time(entries, mobilisation[p])
                })
            });
        }
        let mut found = false;
        grid.for_ring(qrow, qcol, r, |key| {
            if found {
                return;
            }
            for &p in &q.partitions {
                if let Some(entries) = grid.cell(p, key) {
                    seen += entries.len();
                    if in_time(entries, mobilisation[p]) {
                        found = true;
                        return;
                    }
                }
            }
        });
        if found {
            return true;
        }
        r += 1;
    }
}

/// The ETA of a unit to a point under the ranking model, seconds.
#[inline]
fn eta(table: &UnitTable, model: &Model<'_>, slot: u32, lat: f64, lon: f64, q: &Resolved) -> f64 {
    let s = slot as usize;
    let distance = haversine_m(lat, lon, table.lat[s], table.lon[s]);
    model.config.mobilisation(table.status[s]) + distance * q.pace_by_type[table.unit_type[s] as usize]
}

/// The oracle: every eligible unit tried for the point.
pub fn reachable_brute_force(
    table: &UnitTable,
    model: &Model<'_>,
    lat: f64,
    lon: f64,
    q: &Resolved,
    target_s: f64,
) -> bool {
    (0..table.capacity() as u32)
        .any(|slot| eligible(table, slot, q) && eta(table, model, slot, lat, lon, q) <= target_s)
}
