//! What the pending queue shows beside each incident: which requirement group is still
//! unfilled, and the best unit for it now.
//!
//! Queue membership is kept incrementally by [`super::Incidents`] on counts alone (see
//! [`super::Incident::is_pending`]). Which group a unit fills depends on the unit's
//! attributes, which an UpsertUnit can change without touching the incident, so it is
//! worked out here when a page of the queue (or a tick's proposal) is read: O(attached ×
//! groups) per incident, for the incidents of one page only.

use crate::command::RequirementGroup;
use crate::rank::{Candidate, Query};
use crate::state::Incident;
use crate::store::UnitStore;
use crate::types::Status;

/// Whether the unit in `slot` fits `g`: its agency, one of its types (any when none are
/// listed), and every capability it asks for.
fn fits(store: &UnitStore, slot: u32, g: &RequirementGroup) -> bool {
    let t = store.table();
    let s = slot as usize;
    if t.agency[s] != g.agency {
        return false;
    }
    if !g.unit_types.is_empty() && !g.unit_types.iter().any(|n| n == store.unit_type_name(t.unit_type[s])) {
        return false;
    }
    // A group's capabilities were checked against the vocabulary when it was stored.
    store.vocabulary().encode(&g.capabilities).is_ok_and(|required| t.caps[s] & required == required)
}

/// The first group of the plan the attached units leave short. Each attached unit counts
/// for the first group it fits that still has room, in plan order: a simple, predictable
/// rule a dispatcher can follow (not an optimal matching).
pub fn first_unfilled_group(store: &UnitStore, incident: &Incident) -> Option<usize> {
    let groups = &incident.requirements;
    let mut filled = vec![0u32; groups.len()];
    for &slot in &incident.attached {
        if let Some(g) = (0..groups.len()).find(|&g| filled[g] < groups[g].count && fits(store, slot, &groups[g])) {
            filled[g] += 1;
        }
    }
    (0..groups.len()).find(|&g| filled[g] < groups[g].count)
}

/// The first group of the plan the unit fits: the place a replacement for it would take.
pub fn group_of(store: &UnitStore, incident: &Incident, slot: u32) -> Option<usize> {
    incident.requirements.iter().position(|g| fits(store, slot, g))
}

/// The best AVAILABLE unit now for one group of the incident (top-1 of its ranking), or,
/// with `diversions`, the best including units an IMMEDIATE incident may pre-empt.
pub fn best_candidate(
    store: &UnitStore,
    incident: &Incident,
    group: usize,
    now_ms: i64,
    diversions: bool,
) -> Option<Candidate> {
    let g = incident.requirements.get(group)?;
    let query = Query {
        lat: incident.lat,
        lon: incident.lon,
        now_ms,
        k: 1,
        grade: incident.grade,
        required: g.capabilities.clone(),
        agencies: vec![g.agency],
        statuses: vec![Status::Available],
        unit_types: g.unit_types.clone(),
        area: (!incident.area.is_empty()).then(|| incident.area.clone()),
        by_eta: false,
        diversions,
    };
    // The plan and location were validated when stored, so the ranking cannot refuse.
    store.rank(&query).ok()?.into_iter().next()
}
