//! The Python classes that carry results out of the core: copies, never live references,
//! so Python can keep them while the state changes.

use dispatch_engine::rank;
use dispatch_engine::store::{self, UnitStore};
use dispatch_engine::units::NO_TIME;
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;

/// Every term of a candidate's score, in seconds.
#[pyclass(frozen, module = "dispatch_core._core")]
#[derive(Clone)]
pub struct ScoreBreakdown {
    #[pyo3(get)]
    pub(crate) mobilisation_seconds: f64,
    #[pyo3(get)]
    pub(crate) travel_seconds: f64,
    #[pyo3(get)]
    pub(crate) cross_area_cost: f64,
    #[pyo3(get)]
    pub(crate) shift_overrun_cost: f64,
    #[pyo3(get)]
    pub(crate) specialist_cost: f64,
    #[pyo3(get)]
    pub(crate) stale_position_cost: f64,
}

/// One ranked unit.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct Candidate {
    #[pyo3(get)]
    pub(crate) unit_id: String,
    #[pyo3(get)]
    pub(crate) slot: u32,
    #[pyo3(get)]
    pub(crate) eta_seconds: f64,
    #[pyo3(get)]
    pub(crate) distance_m: f64,
    #[pyo3(get)]
    pub(crate) score: f64,
    #[pyo3(get)]
    pub(crate) breakdown: ScoreBreakdown,
    #[pyo3(get)]
    pub(crate) position_age_seconds: f64,
}

#[pymethods]
impl Candidate {
    fn __repr__(&self) -> String {
        format!("Candidate({:?}, eta_seconds={:.1}, score={:.1})", self.unit_id, self.eta_seconds, self.score)
    }
}

impl From<rank::Candidate> for Candidate {
    fn from(c: rank::Candidate) -> Self {
        let b = c.breakdown;
        Self {
            unit_id: c.unit_id,
            slot: c.slot,
            eta_seconds: c.eta_seconds,
            distance_m: c.distance_m,
            score: c.score,
            breakdown: ScoreBreakdown {
                mobilisation_seconds: b.mobilisation_seconds,
                travel_seconds: b.travel_seconds,
                cross_area_cost: b.cross_area_cost,
                shift_overrun_cost: b.shift_overrun_cost,
                specialist_cost: b.specialist_cost,
                stale_position_cost: b.stale_position_cost,
            },
            position_age_seconds: c.position_age_seconds,
        }
    }
}

/// Top-K for many query points; row i answers query i, padded with slot -1 and NaN.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct BatchRanking {
    #[pyo3(get)]
    pub(crate) slots: Py<PyArray2<i64>>,
    #[pyo3(get)]
    pub(crate) eta_seconds: Py<PyArray2<f64>>,
    #[pyo3(get)]
    pub(crate) distance_m: Py<PyArray2<f64>>,
    #[pyo3(get)]
    pub(crate) score: Py<PyArray2<f64>>,
    #[pyo3(get)]
    pub(crate) counts: Py<PyArray1<i64>>,
}

/// What a batch location update did.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct LocationReport {
    #[pyo3(get)]
    pub(crate) applied: usize,
    #[pyo3(get)]
    pub(crate) skipped_unknown_unit: usize,
    #[pyo3(get)]
    pub(crate) skipped_bad_coordinate: usize,
    #[pyo3(get)]
    pub(crate) skipped_stale: usize,
    #[pyo3(get)]
    pub(crate) skipped_bad_time: usize,
    #[pyo3(get)]
    pub(crate) skipped_future: usize,
}

impl From<store::LocationReport> for LocationReport {
    fn from(r: store::LocationReport) -> Self {
        Self {
            applied: r.applied,
            skipped_unknown_unit: r.skipped_unknown_unit,
            skipped_bad_coordinate: r.skipped_bad_coordinate,
            skipped_stale: r.skipped_stale,
            skipped_bad_time: r.skipped_bad_time,
            skipped_future: r.skipped_future,
        }
    }
}

/// A copy of one unit's state.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct UnitView {
    #[pyo3(get)]
    pub(crate) unit_id: String,
    #[pyo3(get)]
    pub(crate) slot: u32,
    #[pyo3(get)]
    pub(crate) agency: i32,
    #[pyo3(get)]
    pub(crate) unit_type: String,
    #[pyo3(get)]
    pub(crate) capabilities: Vec<String>,
    #[pyo3(get)]
    pub(crate) status: i32,
    #[pyo3(get)]
    pub(crate) home_area: Option<String>,
    #[pyo3(get)]
    pub(crate) shift_start_ms: Option<i64>,
    #[pyo3(get)]
    pub(crate) shift_end_ms: Option<i64>,
    #[pyo3(get)]
    pub(crate) lat: Option<f64>,
    #[pyo3(get)]
    pub(crate) lon: Option<f64>,
    #[pyo3(get)]
    pub(crate) location_time_ms: Option<i64>,
    #[pyo3(get)]
    pub(crate) incident_id: Option<String>,
}

pub fn view(store: &UnitStore, slot: u32) -> UnitView {
    let t = store.table();
    let s = slot as usize;
    let time = |v: i64| (v != NO_TIME).then_some(v);
    let located = t.has_location(slot);
    UnitView {
        unit_id: t.ids[s].to_string(),
        slot,
        agency: t.agency[s] as i32,
        unit_type: store.unit_type_name(t.unit_type[s]).to_owned(),
        capabilities: store.vocabulary().decode(t.caps[s]),
        status: t.status[s] as i32,
        home_area: store.area_name(t.home_area[s]).map(str::to_owned),
        shift_start_ms: time(t.shift_start_ms[s]),
        shift_end_ms: time(t.shift_end_ms[s]),
        lat: located.then_some(t.lat[s]),
        lon: located.then_some(t.lon[s]),
        location_time_ms: time(t.location_ms[s]),
        incident_id: t.incident[s].as_deref().map(str::to_owned),
    }
}
