//! A uniform-cell grid of moving points, partitioned by (agency, status).
//!
//! Why a grid and not a tree: an AVL ping moves a unit a few tens of metres, which almost
//! always leaves it in the same cell, so an update is a cell-key comparison and an in-place
//! write, O(1), with no rebalancing; crossing a cell is a swap-remove and a push, O(1)
//! amortised. R-trees and k-d trees must be updated or rebuilt on every move, which the
//! moving-object index literature (and our `benches/ranking.rs`) shows is the wrong trade
//! for update-heavy fleets. Memory is one 48-byte entry per positioned unit plus the
//! occupied cells, which empty cells give back (linear in units).
//!
//! Why partitions: nearly every query asks for AVAILABLE units of one agency, about a fifth
//! of the fleet; keeping one grid per (agency, status) means such a query never touches the
//! other four fifths, and a status change is a move between partitions.
//!
//! Entries carry the unit vector of the position, so the search prunes with a chord length
//! (no trigonometry) that is monotone in great-circle distance: pruning is exact.

use rustc_hash::FxHashMap;

use crate::caps::CapSet;
use crate::geo::{unit_vector, EARTH_RADIUS_M};
use crate::types::{Agency, Status, N_AGENCIES, N_STATUSES};
use crate::units::TypeId;

pub const N_PARTITIONS: usize = N_AGENCIES * N_STATUSES;

/// The partition that holds units of this agency and status.
#[inline]
pub fn partition_of(agency: Agency, status: Status) -> usize {
    agency.index() * N_STATUSES + status.index()
}

/// What the scan reads for each unit, kept together so a cell is one contiguous run.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub xyz: [f64; 3],
    pub caps: CapSet,
    pub slot: u32,
    pub unit_type: TypeId,
}

#[derive(Debug, Default, Clone)]
struct Cell {
    key: u64,
    entries: Vec<Entry>,
}

#[derive(Debug, Default, Clone)]
struct Partition {
    cells: Vec<Cell>,
    lookup: FxHashMap<u64, u32>,
    free: Vec<u32>,
    units: usize,
}

/// Where a unit's entry lives.
#[derive(Debug, Clone, Copy)]
struct Loc {
    part: u8,
    cell: u32,
    pos: u32,
}

#[derive(Debug, Clone)]
pub struct Grid {
    dlat_deg: f64,
    dlon_deg: f64,
    nrows: i64,
    ncols: i64,
    parts: Vec<Partition>,
    locs: Vec<Option<Loc>>,
}

/// A cell's row and column packed into one key.
#[inline]
pub fn cell_key(row: i64, col: i64) -> u64 {
    ((row as u64) << 32) | (col as u64 & 0xffff_ffff)
}

#[inline]
fn key_row_col(key: u64) -> (i64, i64) {
    ((key >> 32) as i64, (key & 0xffff_ffff) as i64)
}

impl Grid {
    /// A grid of cells about `cell_deg` degrees on a side (longitude rounded so that a whole
    /// number of columns spans the globe).
    pub fn new(cell_deg: f64) -> Self {
        let ncols = (360.0 / cell_deg).ceil() as i64;
        let nrows = (180.0 / cell_deg).ceil() as i64;
        Self {
            dlat_deg: 180.0 / nrows as f64,
            dlon_deg: 360.0 / ncols as f64,
            nrows,
            ncols,
            parts: vec![Partition::default(); N_PARTITIONS],
            locs: Vec::new(),
        }
    }

    pub fn rows(&self) -> i64 {
        self.nrows
    }

    pub fn cols(&self) -> i64 {
        self.ncols
    }

    /// Row and column of a valid coordinate.
    #[inline]
    pub fn cell_of(&self, lat: f64, lon: f64) -> (i64, i64) {
        let row = (((lat + 90.0) / self.dlat_deg).floor() as i64).clamp(0, self.nrows - 1);
        let col = (((lon + 180.0) / self.dlon_deg).floor() as i64).rem_euclid(self.ncols);
        (row, col)
    }

    pub fn contains(&self, slot: u32) -> bool {
        self.loc(slot).is_some()
    }

    #[inline]
    fn loc(&self, slot: u32) -> Option<Loc> {
        self.locs.get(slot as usize).copied().flatten()
    }

    /// Units in a partition.
    pub fn partition_len(&self, part: usize) -> usize {
        self.parts[part].units
    }

    /// Occupied cells in a partition.
    pub fn partition_cells(&self, part: usize) -> usize {
        self.parts[part].lookup.len()
    }

    /// The entries of one cell of one partition, if occupied.
    #[inline]
    pub fn cell(&self, part: usize, key: u64) -> Option<&[Entry]> {
        let p = &self.parts[part];
        p.lookup.get(&key).map(|&c| p.cells[c as usize].entries.as_slice())
    }

    /// Every occupied cell of a partition: (row, col, entries).
    pub fn occupied(&self, part: usize) -> impl Iterator<Item = (i64, i64, &[Entry])> + '_ {
        let p = &self.parts[part];
        p.lookup.values().map(move |&c| {
            let cell = &p.cells[c as usize];
            let (row, col) = key_row_col(cell.key);
            (row, col, cell.entries.as_slice())
        })
    }

    /// Adds a unit that is not in the grid yet.
    pub fn insert(&mut self, slot: u32, part: usize, lat: f64, lon: f64, caps: CapSet, unit_type: TypeId) {
        debug_assert!(!self.contains(slot));
        let (row, col) = self.cell_of(lat, lon);
        let entry = Entry { xyz: unit_vector(lat, lon), caps, slot, unit_type };
        self.push_entry(part, cell_key(row, col), entry);
    }

    fn push_entry(&mut self, part: usize, key: u64, entry: Entry) {
        let p = &mut self.parts[part];
        let cell = match p.lookup.get(&key) {
            Some(&c) => c,
            None => {
                let c = match p.free.pop() {
                    Some(c) => {
                        p.cells[c as usize].key = key;
                        c
                    }
                    None => {
                        p.cells.push(Cell { key, entries: Vec::new() });
                        (p.cells.len() - 1) as u32
                    }
                };
                p.lookup.insert(key, c);
                c
            }
        };
        let entries = &mut p.cells[cell as usize].entries;
        entries.push(entry);
        p.units += 1;
        let slot = entry.slot as usize;
        if self.locs.len() <= slot {
            self.locs.resize(slot + 1, None);
        }
        self.locs[slot] = Some(Loc { part: part as u8, cell, pos: (entries.len() - 1) as u32 });
    }

    /// Takes a unit out of the grid, returning its entry and cell key.
    pub fn remove(&mut self, slot: u32) -> Option<(Entry, u64)> {
        let loc = self.loc(slot)?;
        self.locs[slot as usize] = None;
        let p = &mut self.parts[loc.part as usize];
        let cell = &mut p.cells[loc.cell as usize];
        let entry = cell.entries.swap_remove(loc.pos as usize);
        if let Some(moved) = cell.entries.get(loc.pos as usize) {
            if let Some(l) = self.locs[moved.slot as usize].as_mut() {
                l.pos = loc.pos;
            }
        }
        let key = cell.key;
        if cell.entries.is_empty() {
            // Give the cell back so memory follows the fleet, not every cell ever visited.
            p.lookup.remove(&key);
            p.free.push(loc.cell);
        }
        p.units -= 1;
        Some((entry, key))
    }

    /// Moves a unit already in the grid. Returns false when it is not in the grid.
    #[inline]
    pub fn relocate(&mut self, slot: u32, lat: f64, lon: f64) -> bool {
        let Some(loc) = self.loc(slot) else { return false };
        let (row, col) = self.cell_of(lat, lon);
        let key = cell_key(row, col);
        let xyz = unit_vector(lat, lon);
        let cell = &mut self.parts[loc.part as usize].cells[loc.cell as usize];
        if cell.key == key {
            cell.entries[loc.pos as usize].xyz = xyz;
        } else if let Some((mut entry, _)) = self.remove(slot) {
            entry.xyz = xyz;
            self.push_entry(loc.part as usize, key, entry);
        }
        true
    }

    /// Moves a unit to another partition (its status or agency changed).
    pub fn repartition(&mut self, slot: u32, part: usize) {
        if let Some(loc) = self.loc(slot) {
            if loc.part as usize != part {
                if let Some((entry, key)) = self.remove(slot) {
                    self.push_entry(part, key, entry);
                }
            }
        }
    }

    /// Updates the attributes the scan filters on.
    pub fn set_attributes(&mut self, slot: u32, caps: CapSet, unit_type: TypeId) {
        if let Some(loc) = self.loc(slot) {
            let e = &mut self.parts[loc.part as usize].cells[loc.cell as usize].entries[loc.pos as usize];
            e.caps = caps;
            e.unit_type = unit_type;
        }
    }

    /// Whether rings up to `r` around a cell are distinct cells (no wrap-around overlap).
    #[inline]
    pub fn ring_fits(&self, r: i64) -> bool {
        2 * r < self.ncols
    }

    /// Calls `f` with the key of every cell at Chebyshev distance exactly `r` from
    /// (`row`, `col`), columns wrapping round the antimeridian. Needs [`Self::ring_fits`].
    pub fn for_ring(&self, row: i64, col: i64, r: i64, mut f: impl FnMut(u64)) {
        let wrap = |c: i64| c.rem_euclid(self.ncols);
        if r == 0 {
            f(cell_key(row, col));
            return;
        }
        for dr in -r..=r {
            let rr = row + dr;
            if rr < 0 || rr >= self.nrows {
                continue;
            }
            if dr == -r || dr == r {
                for dc in -r..=r {
                    f(cell_key(rr, wrap(col + dc)));
                }
            } else {
                f(cell_key(rr, wrap(col - r)));
                f(cell_key(rr, wrap(col + r)));
            }
        }
    }

    /// Chebyshev distance between cells, columns wrapping.
    #[inline]
    pub fn ring_distance(&self, (r1, c1): (i64, i64), (r2, c2): (i64, i64)) -> i64 {
        let dc = (c1 - c2).abs();
        (r1 - r2).abs().max(dc.min(self.ncols - dc))
    }

    /// A lower bound, in metres, on the great-circle distance from (`lat`, `lon`) to any
    /// point in a cell at Chebyshev distance `r` **or more** from the query's cell.
    ///
    /// Such a cell is either ≥ r rows away (latitude differs by ≥ (r-1)·Δφ) or within r-1
    /// rows and ≥ r columns away (longitude differs by ≥ (r-1)·Δλ, latitude bounded by
    /// those rows, so haversine gives hav(d) ≥ cos φ·min cos φ'·hav(Δλ)).
    pub fn lower_bound_m(&self, lat: f64, row: i64, r: i64) -> f64 {
        if r <= 1 {
            return 0.0;
        }
        let steps = (r - 1) as f64;
        let by_lat = EARTH_RADIUS_M * (steps * self.dlat_deg).to_radians();
        let row_lo = row as f64 * self.dlat_deg - 90.0;
        let lat_lo = (row_lo - steps * self.dlat_deg).max(-90.0);
        let lat_hi = (row_lo + r as f64 * self.dlat_deg).min(90.0);
        let worst_cos = lat_lo.abs().max(lat_hi.abs()).min(90.0).to_radians().cos().max(0.0);
        let dlon = (steps * self.dlon_deg).min(180.0).to_radians();
        let hav = lat.to_radians().cos().max(0.0) * worst_cos * (dlon * 0.5).sin().powi(2);
        let by_lon = 2.0 * EARTH_RADIUS_M * hav.clamp(0.0, 1.0).sqrt().asin();
        by_lat.min(by_lon)
    }

    /// Bytes held (an estimate of heap use).
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        let parts: usize = self
            .parts
            .iter()
            .map(|p| {
                p.cells.iter().map(|c| c.entries.capacity() * entry + std::mem::size_of::<Cell>()).sum::<usize>()
                    + p.lookup.capacity() * (8 + 4 + 1)
                    + p.free.capacity() * 4
            })
            .sum();
        parts + self.locs.capacity() * std::mem::size_of::<Option<Loc>>()
    }

    /// Checks every internal link; for tests.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut seen = 0usize;
        for (pi, p) in self.parts.iter().enumerate() {
            let mut units = 0;
            for (&key, &c) in &p.lookup {
                let cell = &p.cells[c as usize];
                if cell.key != key {
                    return Err(format!("cell {c} of partition {pi} has key {} not {key}", cell.key));
                }
                if cell.entries.is_empty() {
                    return Err(format!("empty cell {key} still listed in partition {pi}"));
                }
                for (pos, e) in cell.entries.iter().enumerate() {
                    let loc = self.loc(e.slot).ok_or_else(|| format!("slot {} has no loc", e.slot))?;
                    if (loc.part as usize, loc.cell, loc.pos as usize) != (pi, c, pos) {
                        return Err(format!("slot {} loc is stale", e.slot));
                    }
                }
                units += cell.entries.len();
            }
            if units != p.units {
                return Err(format!("partition {pi} counts {} units, holds {units}", p.units));
            }
            seen += units;
        }
        let located = self.locs.iter().filter(|l| l.is_some()).count();
        if located != seen {
            return Err(format!("{located} locs for {seen} entries"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::haversine_m;

    #[test]
    fn cells_wrap_at_the_antimeridian() {
        let g = Grid::new(0.01);
        assert_eq!(g.cell_of(0.0, 180.0).1, 0);
        assert_eq!(g.cell_of(0.0, -180.0).1, 0);
        assert_eq!(g.ring_distance(g.cell_of(0.0, 179.995), g.cell_of(0.0, -179.995)), 1);
    }

    #[test]
    fn lower_bound_holds_for_points_far_away() {
        let g = Grid::new(0.05);
        let (lat, lon) = (51.5, -0.1);
        let (row, col) = g.cell_of(lat, lon);
        for &(plat, plon) in &[(51.9, -0.1), (51.5, 0.5), (51.0, -0.9), (60.0, 10.0), (-51.5, 179.9)] {
            let d = haversine_m(lat, lon, plat, plon);
            let r = g.ring_distance((row, col), g.cell_of(plat, plon));
            for rr in 0..=r.min(3000) {
                assert!(g.lower_bound_m(lat, row, rr) <= d, "ring {rr} of {r}: bound above {d}");
            }
        }
    }

    #[test]
    fn moving_within_a_cell_keeps_the_entry_in_place() {
        let mut g = Grid::new(0.01);
        g.insert(0, 0, 51.5, -0.1, 0, 0);
        g.insert(1, 0, 51.5001, -0.1001, 0, 0);
        assert!(g.relocate(0, 51.5002, -0.1002));
        assert_eq!(g.partition_cells(0), 1);
        assert!(g.relocate(0, 52.0, -0.1));
        assert_eq!(g.partition_cells(0), 2);
        g.remove(1);
        assert_eq!(g.partition_cells(0), 1);
        g.check_consistency().unwrap();
    }
}
