//! The unit table: a string `unit_id` mapped to a dense slot, with the unit's attributes
//! stored column by column so a scan touches only what it reads.
//!
//! Slots are never reused: a client that addresses units by slot in batch location updates
//! must never move a different unit by holding a stale slot.

use rustc_hash::FxHashMap;

use crate::caps::CapSet;
use crate::types::{Agency, Status};

/// "No value" for the i64 time columns; it keeps the columns plain and the scan cheap.
pub const NO_TIME: i64 = i64::MIN;

/// Interned unit type: its agency and name. Speeds are per (agency, type), so the same name
/// under two agencies is two types.
pub type TypeId = u16;

/// Interned home area; 0 means none.
pub type AreaId = u32;

#[derive(Debug, Default, Clone)]
pub struct UnitTable {
    pub ids: Vec<String>,
    pub by_id: FxHashMap<String, u32>,
    pub live: Vec<bool>,
    pub agency: Vec<Agency>,
    pub unit_type: Vec<TypeId>,
    pub caps: Vec<CapSet>,
    pub status: Vec<Status>,
    pub home_area: Vec<AreaId>,
    /// Shift window in Unix ms; [`NO_TIME`] means unbounded on that side.
    pub shift_start_ms: Vec<i64>,
    pub shift_end_ms: Vec<i64>,
    pub lat: Vec<f64>,
    pub lon: Vec<f64>,
    /// Time of the last position, Unix ms; [`NO_TIME`] when the unit has never reported.
    pub location_ms: Vec<i64>,
    pub incident: Vec<Option<Box<str>>>,
    live_count: usize,
}

impl UnitTable {
    pub fn len(&self) -> usize {
        self.live_count
    }

    pub fn is_empty(&self) -> bool {
        self.live_count == 0
    }

    /// Slots ever handed out (live or removed).
    pub fn capacity(&self) -> usize {
        self.ids.len()
    }

    pub fn slot(&self, unit_id: &str) -> Option<u32> {
        self.by_id.get(unit_id).copied()
    }

    pub fn is_live(&self, slot: u32) -> bool {
        self.live.get(slot as usize).copied().unwrap_or(false)
    }

    /// Appends a unit with no position and returns its slot.
    pub fn push(&mut self, unit_id: &str, agency: Agency, unit_type: TypeId, status: Status) -> u32 {
        let slot = self.ids.len() as u32;
        self.ids.push(unit_id.to_owned());
        self.by_id.insert(unit_id.to_owned(), slot);
        self.live.push(true);
        self.agency.push(agency);
        self.unit_type.push(unit_type);
        self.caps.push(0);
        self.status.push(status);
        self.home_area.push(0);
        self.shift_start_ms.push(NO_TIME);
        self.shift_end_ms.push(NO_TIME);
        self.lat.push(f64::NAN);
        self.lon.push(f64::NAN);
        self.location_ms.push(NO_TIME);
        self.incident.push(None);
        self.live_count += 1;
        slot
    }

    /// Forgets the id; the slot stays dead.
    pub fn remove(&mut self, slot: u32) {
        let s = slot as usize;
        self.by_id.remove(&self.ids[s]);
        self.live[s] = false;
        self.incident[s] = None;
        self.live_count -= 1;
    }

    pub fn has_location(&self, slot: u32) -> bool {
        self.location_ms[slot as usize] != NO_TIME
    }

    /// On shift at `now_ms`: start ≤ now < end, an unset side being unbounded.
    #[inline]
    pub fn on_shift(&self, slot: u32, now_ms: i64) -> bool {
        let s = slot as usize;
        let start = self.shift_start_ms[s];
        let end = self.shift_end_ms[s];
        (start == NO_TIME || now_ms >= start) && (end == NO_TIME || now_ms < end)
    }

    /// Bytes held by the columns and the id map (an estimate of heap use).
    pub fn memory_bytes(&self) -> usize {
        let n = self.ids.capacity();
        let per_slot = std::mem::size_of::<String>()
            + std::mem::size_of::<bool>()
            + std::mem::size_of::<Agency>()
            + std::mem::size_of::<TypeId>()
            + std::mem::size_of::<CapSet>()
            + std::mem::size_of::<Status>()
            + std::mem::size_of::<AreaId>()
            + 3 * std::mem::size_of::<i64>()
            + 2 * std::mem::size_of::<f64>()
            + std::mem::size_of::<Option<Box<str>>>();
        let strings: usize = self.ids.iter().map(|s| 2 * s.capacity()).sum();
        let incidents: usize = self.incident.iter().flatten().map(|s| s.len()).sum();
        let map = self.by_id.capacity() * (std::mem::size_of::<String>() + 4 + 1);
        n * per_slot + strings + incidents + map
    }
}
