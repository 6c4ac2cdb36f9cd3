//! The unit table: a string `unit_id` mapped to a dense slot, with the unit's attributes
//! stored column by column so a scan touches only what it reads.
//!
//! Slots are never reused: a client that addresses units by slot in batch location updates
//! must never move a different unit by holding a stale slot.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::caps::CapSet;
use crate::types::{Agency, Grade, Status, N_AGENCIES, N_STATUSES};

/// "No value" for the i64 time columns; it keeps the columns plain and the scan cheap.
pub const NO_TIME: i64 = i64::MIN;

/// Interned unit type: its agency and name. Speeds are per (agency, type), so the same name
/// under two agencies is two types.
pub type TypeId = u16;

/// Interned home area; 0 means none.
pub type AreaId = u32;

#[derive(Debug, Default, Clone)]
pub struct UnitTable {
    /// Ids by slot, shared so that a snapshot's copy costs a reference count, not a string.
    pub ids: Vec<Arc<str>>,
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
    /// The grade of the incident each unit is attached to ([`Grade`] as its number), 0 when
    /// not attached: what pre-emption checks, kept by the state machine on every assignment,
    /// release and re-grade so that ranking never looks an incident up per unit.
    pub incident_grade: Vec<u8>,
    live_count: usize,
    /// Live units by id, in id order: ListUnits pages through it instead of sorting.
    ordered: BTreeMap<Box<str>, u32>,
    /// Live units by (agency, status), kept as units come, go and change, so a metrics
    /// scrape does not walk the table. Change agency and status only through
    /// [`Self::set_agency`] and [`Self::set_status`].
    counts: [[u64; N_STATUSES]; N_AGENCIES],
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
        self.ids.push(Arc::from(unit_id));
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
        self.incident_grade.push(0);
        self.live_count += 1;
        self.ordered.insert(unit_id.into(), slot);
        self.counts[agency.index()][status.index()] += 1;
        slot
    }

    /// Forgets the id; the slot stays dead.
    pub fn remove(&mut self, slot: u32) {
        let s = slot as usize;
        self.by_id.remove(&*self.ids[s]);
        self.ordered.remove(&*self.ids[s]);
        self.counts[self.agency[s].index()][self.status[s].index()] -= 1;
        self.live[s] = false;
        self.incident[s] = None;
        self.incident_grade[s] = 0;
        self.live_count -= 1;
    }

    /// Changes a live unit's status, keeping the counts.
    pub fn set_status(&mut self, slot: u32, status: Status) {
        let s = slot as usize;
        self.counts[self.agency[s].index()][self.status[s].index()] -= 1;
        self.counts[self.agency[s].index()][status.index()] += 1;
        self.status[s] = status;
    }

    /// Changes a live unit's agency, keeping the counts.
    pub fn set_agency(&mut self, slot: u32, agency: Agency) {
        let s = slot as usize;
        self.counts[self.agency[s].index()][self.status[s].index()] -= 1;
        self.counts[agency.index()][self.status[s].index()] += 1;
        self.agency[s] = agency;
    }

    /// Live units by (agency, status) (index: [`Agency::index`], [`Status::index`]).
    pub fn counts(&self) -> &[[u64; N_STATUSES]; N_AGENCIES] {
        &self.counts
    }

    /// Live units with an id greater than `after`, in id order.
    pub fn ids_after<'a>(&'a self, after: &str) -> impl Iterator<Item = u32> + 'a {
        use std::ops::Bound;
        self.ordered.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)).map(|(_, &slot)| slot)
    }

    /// Recounts the maintained counts and order from the columns; for tests and the
    /// simulator's invariants.
    pub fn check_counts(&self) -> Result<(), String> {
        let mut counts = [[0u64; N_STATUSES]; N_AGENCIES];
        let mut live = 0;
        for s in 0..self.capacity() {
            if self.live[s] {
                counts[self.agency[s].index()][self.status[s].index()] += 1;
                live += 1;
                if self.ordered.get(&*self.ids[s]) != Some(&(s as u32)) {
                    return Err(format!("unit {} is missing from the id order", self.ids[s]));
                }
            }
        }
        if counts != self.counts {
            return Err(format!("unit counts {:?} differ from a recount {counts:?}", self.counts));
        }
        if live != self.live_count || self.ordered.len() != live {
            return Err(format!("{live} live units, counted {}, ordered {}", self.live_count, self.ordered.len()));
        }
        Ok(())
    }

    /// The grade of the incident the unit is attached to, if any.
    #[inline]
    pub fn attached_grade(&self, slot: u32) -> Option<Grade> {
        match self.incident_grade[slot as usize] {
            0 => None,
            g => Grade::from_i32(i32::from(g), "incident_grade").ok(),
        }
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
            + std::mem::size_of::<Option<Box<str>>>()
            + std::mem::size_of::<u8>();
        let strings: usize = self.ids.iter().map(|s| 2 * s.len()).sum();
        let incidents: usize = self.incident.iter().flatten().map(|s| s.len()).sum();
        let map = self.by_id.capacity() * (std::mem::size_of::<String>() + 4 + 1);
        n * per_slot + strings + incidents + map
    }
}
