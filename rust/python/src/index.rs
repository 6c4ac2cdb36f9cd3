//! `UnitIndex`: the unit table, its moving-point index and the ranking engine on their own,
//! without incidents or a journal. The benchmarks and the ranking oracle tests use it; the
//! service uses the state machine (`DispatchCore`), which holds one.

use dispatch_engine::caps::{Vocabulary, DEFAULT_SCARCE};
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::store::{UnitSpec, UnitStore};
use dispatch_engine::types::{Agency, Grade, Status};
use dispatch_engine::CoreError;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyMapping};

use crate::config::{apply_overrides, config_to_dict};
use crate::errors::to_py;
use crate::views::{view, BatchRanking, Candidate, LocationReport, UnitView};

pub fn agencies(values: Option<Vec<i32>>) -> Result<Vec<Agency>, CoreError> {
    values.unwrap_or_default().into_iter().map(|v| Agency::from_i32(v, "agencies")).collect()
}

pub fn statuses(values: Option<Vec<i32>>) -> Result<Vec<Status>, CoreError> {
    values.unwrap_or_default().into_iter().map(|v| Status::from_i32(v, "statuses")).collect()
}

/// The unit table, its moving-point index and the ranking engine.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct UnitIndex {
    store: RwLock<UnitStore>,
}

/// The filters of a coverage question: grade, required capabilities, agencies, statuses
/// and unit types, as Python passes them.
pub type CoverageFilters = (i32, Option<Vec<String>>, Option<Vec<i32>>, Option<Vec<i32>>, Option<Vec<String>>);

/// The query and the points of a coverage question (`UnitIndex.coverage` and
/// `DispatchCore.coverage` ask the same one).
pub fn coverage_question(
    lat: &[f64],
    lon: &[f64],
    now_ms: i64,
    (grade, required, agencies, statuses, unit_types): CoverageFilters,
) -> Result<(Query, Vec<(f64, f64)>), CoreError> {
    if lat.len() != lon.len() {
        return Err(CoreError::invalid("lon", format!("length {} differs from lat length {}", lon.len(), lat.len())));
    }
    let query = build_query(0.0, 0.0, now_ms, 1, grade, required, agencies, statuses, unit_types, None)?;
    Ok((query, lat.iter().copied().zip(lon.iter().copied()).collect()))
}

#[allow(clippy::too_many_arguments)]
pub fn build_query(
    lat: f64,
    lon: f64,
    now_ms: i64,
    k: usize,
    grade: i32,
    required: Option<Vec<String>>,
    agency_values: Option<Vec<i32>>,
    status_values: Option<Vec<i32>>,
    unit_types: Option<Vec<String>>,
    area: Option<String>,
) -> Result<Query, CoreError> {
    Ok(Query {
        lat,
        lon,
        now_ms,
        k,
        grade: Grade::from_i32(grade, "grade")?,
        required: required.unwrap_or_default(),
        agencies: agencies(agency_values)?,
        statuses: statuses(status_values)?,
        unit_types: unit_types.unwrap_or_default(),
        area,
        by_eta: false,
        diversions: false,
    })
}

impl UnitIndex {
    /// Runs `f` under the read lock with the GIL released. The lock is only ever taken
    /// without the GIL: a thread that held the GIL while waiting for the lock could
    /// deadlock with the lock holder, which may need the GIL to finish.
    fn read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&UnitStore) -> R + Send) -> R {
        py.detach(|| f(&self.store.read()))
    }

    /// Runs `f` under the write lock with the GIL released; see [`Self::read`].
    fn write<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut UnitStore) -> R + Send) -> R {
        py.detach(|| f(&mut self.store.write()))
    }
}

#[pymethods]
impl UnitIndex {
    #[new]
    #[pyo3(signature = (*, capabilities=None, scarce_capabilities=None, config=None, cell_deg=0.01))]
    fn new(
        py: Python<'_>,
        capabilities: Option<Vec<String>>,
        scarce_capabilities: Option<Vec<String>>,
        config: Option<&Bound<'_, PyMapping>>,
        cell_deg: f64,
    ) -> PyResult<Self> {
        let vocab = match &capabilities {
            Some(names) => Vocabulary::new(names),
            None => Ok(Vocabulary::default()),
        }
        .map_err(|e| to_py(py, e))?;
        let scarce: Vec<String> = match scarce_capabilities {
            Some(names) => names,
            None => {
                DEFAULT_SCARCE.iter().filter(|n| vocab.names().iter().any(|v| v == *n)).map(|n| n.to_string()).collect()
            }
        };
        let mut rank_config = RankConfig::default();
        if let Some(overrides) = config {
            apply_overrides(&mut rank_config, overrides)?;
        }
        let store = UnitStore::with_vocabulary(vocab, &scarce, rank_config, cell_deg).map_err(|e| to_py(py, e))?;
        Ok(Self { store: RwLock::new(store) })
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py, |s| s.len())
    }

    fn capability_names(&self, py: Python<'_>) -> Vec<String> {
        self.read(py, |s| s.vocabulary().names().to_vec())
    }

    /// The ranking model as a dict (every key `set_config` accepts).
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (config, scarce) = self.read(py, |s| (s.config().clone(), s.vocabulary().decode(s.scarce())));
        config_to_dict(py, &config, &scarce)
    }

    /// Overrides parts of the model; refused whole when any value is invalid.
    fn set_config(&self, py: Python<'_>, overrides: &Bound<'_, PyMapping>) -> PyResult<()> {
        // Read, edit and write back under one write lock would hold the lock across Python
        // calls; instead edit a copy and swap it in only if nobody changed it meanwhile.
        loop {
            let current = self.read(py, |s| s.config().clone());
            let mut config = current.clone();
            apply_overrides(&mut config, overrides)?;
            let swapped = self.write(py, |s| {
                if *s.config() != current {
                    return Ok(false);
                }
                s.set_config(config).map(|()| true)
            });
            if swapped.map_err(|e| to_py(py, e))? {
                return Ok(());
            }
        }
    }

    #[pyo3(signature = (unit_id, *, agency, unit_type, capabilities=None, home_area=None, shift_start_ms=None, shift_end_ms=None, status=None))]
    #[allow(clippy::too_many_arguments)]
    fn upsert_unit(
        &self,
        py: Python<'_>,
        unit_id: &str,
        agency: i32,
        unit_type: String,
        capabilities: Option<Vec<String>>,
        home_area: Option<String>,
        shift_start_ms: Option<i64>,
        shift_end_ms: Option<i64>,
        status: Option<i32>,
    ) -> PyResult<u32> {
        let spec = (|| {
            Ok::<_, CoreError>(UnitSpec {
                agency: Agency::from_i32(agency, "agency")?,
                unit_type,
                capabilities: capabilities.unwrap_or_default(),
                home_area,
                shift_start_ms,
                shift_end_ms,
                status: status.map(|s| Status::from_i32(s, "status")).transpose()?,
            })
        })()
        .map_err(|e| to_py(py, e))?;
        self.write(py, |s| s.upsert(unit_id, &spec)).map_err(|e| to_py(py, e))
    }

    fn remove_unit(&self, py: Python<'_>, unit_id: &str) -> PyResult<()> {
        self.write(py, |s| s.remove(unit_id)).map_err(|e| to_py(py, e))
    }

    fn get_unit(&self, py: Python<'_>, unit_id: &str) -> PyResult<UnitView> {
        self.read(py, |s| s.slot(unit_id).map(|slot| view(s, slot))).map_err(|e| to_py(py, e))
    }

    fn slot_of(&self, py: Python<'_>, unit_id: &str) -> PyResult<u32> {
        self.read(py, |s| s.slot(unit_id)).map_err(|e| to_py(py, e))
    }

    fn slots_of<'py>(&self, py: Python<'py>, unit_ids: Vec<String>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let slots: Result<Vec<i64>, CoreError> =
            self.read(py, |s| unit_ids.iter().map(|id| s.slot(id).map(i64::from)).collect());
        Ok(slots.map_err(|e| to_py(py, e))?.into_pyarray(py))
    }

    fn unit_ids(&self, py: Python<'_>) -> Vec<String> {
        self.read(py, |store| {
            let t = store.table();
            (0..t.capacity() as u32).filter(|&s| t.is_live(s)).map(|s| t.ids[s as usize].to_string()).collect()
        })
    }

    /// Units matching the filters with ids greater than `after_id`, in unit_id order; with
    /// `limit`, only the first `limit` (a page walks the id index: it costs the units it
    /// reads).
    #[pyo3(signature = (*, statuses=None, agencies=None, home_area=None, after_id=None, limit=None))]
    fn list_units(
        &self,
        py: Python<'_>,
        statuses: Option<Vec<i32>>,
        agencies: Option<Vec<i32>>,
        home_area: Option<String>,
        after_id: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<Vec<UnitView>> {
        let status_filter = self::statuses(statuses).map_err(|e| to_py(py, e))?;
        let agency_filter = self::agencies(agencies).map_err(|e| to_py(py, e))?;
        Ok(self.read(py, |store| {
            let after = after_id.as_deref().unwrap_or("");
            store
                .units_after(after, &status_filter, &agency_filter, home_area.as_deref())
                .take(limit.unwrap_or(usize::MAX))
                .map(|s| view(store, s))
                .collect()
        }))
    }

    fn set_status(&self, py: Python<'_>, unit_id: &str, status: i32) -> PyResult<Option<String>> {
        let to = Status::from_i32(status, "status").map_err(|e| to_py(py, e))?;
        self.write(py, |s| s.set_status(unit_id, to)).map_err(|e| to_py(py, e))
    }

    fn check_transition(&self, py: Python<'_>, unit_id: &str, status: i32) -> PyResult<()> {
        let to = Status::from_i32(status, "status").map_err(|e| to_py(py, e))?;
        self.read(py, |s| s.check_transition(unit_id, to).map(|_| ())).map_err(|e| to_py(py, e))
    }

    fn check_assignable(&self, py: Python<'_>, unit_ids: Vec<String>) -> PyResult<()> {
        self.read(py, |s| s.check_assignable(&unit_ids).map(|_| ())).map_err(|e| to_py(py, e))
    }

    fn assign(&self, py: Python<'_>, incident_id: &str, unit_ids: Vec<String>) -> PyResult<()> {
        self.write(py, |s| s.assign(incident_id, &unit_ids)).map_err(|e| to_py(py, e))
    }

    fn release_incident(&self, py: Python<'_>, incident_id: &str, unit_ids: Vec<String>) -> PyResult<Vec<String>> {
        self.write(py, |s| s.release_incident(incident_id, &unit_ids)).map_err(|e| to_py(py, e))
    }

    fn update_location(&self, py: Python<'_>, unit_id: &str, lat: f64, lon: f64, time_ms: i64) -> PyResult<bool> {
        self.write(py, |s| s.update_location(unit_id, lat, lon, time_ms)).map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (unit_ids, lat, lon, time_ms, *, strict=true))]
    fn update_locations(
        &self,
        py: Python<'_>,
        // Borrowed UTF-8 of the Python strings: no copy per id on the AVL hot path.
        unit_ids: Vec<PyBackedStr>,
        lat: PyReadonlyArray1<'_, f64>,
        lon: PyReadonlyArray1<'_, f64>,
        time_ms: PyReadonlyArray1<'_, i64>,
        strict: bool,
    ) -> PyResult<LocationReport> {
        let (lat, lon, time_ms) = (lat.as_slice()?, lon.as_slice()?, time_ms.as_slice()?);
        let result = self.write(py, |s| s.update_locations(&unit_ids, lat, lon, time_ms, strict));
        result.map(Into::into).map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (slots, lat, lon, time_ms, *, strict=true))]
    fn update_locations_by_slot(
        &self,
        py: Python<'_>,
        slots: PyReadonlyArray1<'_, i64>,
        lat: PyReadonlyArray1<'_, f64>,
        lon: PyReadonlyArray1<'_, f64>,
        time_ms: PyReadonlyArray1<'_, i64>,
        strict: bool,
    ) -> PyResult<LocationReport> {
        let (slots, lat, lon, time_ms) = (slots.as_slice()?, lat.as_slice()?, lon.as_slice()?, time_ms.as_slice()?);
        let result = self.write(py, |s| s.update_locations_by_slot(slots, lat, lon, time_ms, strict));
        result.map(Into::into).map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (lat, lon, *, now_ms, k=5, grade=1, required=None, agencies=None, statuses=None, unit_types=None, area=None))]
    #[allow(clippy::too_many_arguments)]
    fn rank(
        &self,
        py: Python<'_>,
        lat: f64,
        lon: f64,
        now_ms: i64,
        k: usize,
        grade: i32,
        required: Option<Vec<String>>,
        agencies: Option<Vec<i32>>,
        statuses: Option<Vec<i32>>,
        unit_types: Option<Vec<String>>,
        area: Option<String>,
    ) -> PyResult<Vec<Candidate>> {
        let query = build_query(lat, lon, now_ms, k, grade, required, agencies, statuses, unit_types, area)
            .map_err(|e| to_py(py, e))?;
        let result = self.read(py, |s| s.rank(&query));
        Ok(result.map_err(|e| to_py(py, e))?.into_iter().map(Candidate::from).collect())
    }

    #[pyo3(signature = (lat, lon, *, now_ms, k=5, grade=1, required=None, agencies=None, statuses=None, unit_types=None, area=None))]
    #[allow(clippy::too_many_arguments)]
    fn rank_batch(
        &self,
        py: Python<'_>,
        lat: PyReadonlyArray1<'_, f64>,
        lon: PyReadonlyArray1<'_, f64>,
        now_ms: i64,
        k: usize,
        grade: i32,
        required: Option<Vec<String>>,
        agencies: Option<Vec<i32>>,
        statuses: Option<Vec<i32>>,
        unit_types: Option<Vec<String>>,
        area: Option<String>,
    ) -> PyResult<BatchRanking> {
        let (lat, lon) = (lat.as_slice()?, lon.as_slice()?);
        if lat.len() != lon.len() {
            return Err(to_py(
                py,
                CoreError::invalid("lon", format!("length {} differs from lat length {}", lon.len(), lat.len())),
            ));
        }
        let query = build_query(0.0, 0.0, now_ms, k, grade, required, agencies, statuses, unit_types, area)
            .map_err(|e| to_py(py, e))?;
        let n = lat.len();
        let result = self.read(py, |store| -> Result<_, CoreError> {
            let resolved = store.resolve(&query)?;
            let mut slots = Array2::<i64>::from_elem((n, k), -1);
            let mut eta = Array2::<f64>::from_elem((n, k), f64::NAN);
            let mut dist = Array2::<f64>::from_elem((n, k), f64::NAN);
            let mut score = Array2::<f64>::from_elem((n, k), f64::NAN);
            let mut counts = Vec::with_capacity(n);
            for i in 0..n {
                let top = store.rank_resolved(lat[i], lon[i], &resolved).map_err(|e| match e {
                    CoreError::InvalidArgument { field, reason } => {
                        CoreError::InvalidArgument { field: format!("{field}[{i}]"), reason }
                    }
                    other => other,
                })?;
                counts.push(top.len() as i64);
                for (j, c) in top.iter().enumerate() {
                    slots[[i, j]] = i64::from(c.slot);
                    eta[[i, j]] = c.eta_seconds;
                    dist[[i, j]] = c.distance_m;
                    score[[i, j]] = c.score;
                }
            }
            Ok((slots, eta, dist, score, counts))
        });
        let (slots, eta, dist, score, counts) = result.map_err(|e| to_py(py, e))?;
        Ok(BatchRanking {
            slots: slots.into_pyarray(py).unbind(),
            eta_seconds: eta.into_pyarray(py).unbind(),
            distance_m: dist.into_pyarray(py).unbind(),
            score: score.into_pyarray(py).unbind(),
            counts: counts.into_pyarray(py).unbind(),
        })
    }

    /// For each point, whether an eligible unit can arrive within `target_seconds` (ETA of
    /// the ranking model: mobilisation + travel). Filters as in `rank`.
    #[pyo3(signature = (lat, lon, *, target_seconds, now_ms, grade=1, required=None, agencies=None, statuses=None, unit_types=None))]
    #[allow(clippy::too_many_arguments)]
    fn coverage<'py>(
        &self,
        py: Python<'py>,
        lat: PyReadonlyArray1<'_, f64>,
        lon: PyReadonlyArray1<'_, f64>,
        target_seconds: f64,
        now_ms: i64,
        grade: i32,
        required: Option<Vec<String>>,
        agencies: Option<Vec<i32>>,
        statuses: Option<Vec<i32>>,
        unit_types: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let filters = (grade, required, agencies, statuses, unit_types);
        let (query, points) =
            coverage_question(lat.as_slice()?, lon.as_slice()?, now_ms, filters).map_err(|e| to_py(py, e))?;
        let covered = self.read(py, |s| s.coverage(&query, &points, target_seconds)).map_err(|e| to_py(py, e))?;
        Ok(covered.into_pyarray(py))
    }

    /// Live units as columns, for aggregate views: (agency, status, type index, type names,
    /// lat, lon, location time ms); NaN / i64::MIN where a unit has never reported.
    #[allow(clippy::type_complexity)]
    fn unit_columns<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        Bound<'py, PyArray1<i8>>,
        Bound<'py, PyArray1<i8>>,
        Bound<'py, PyArray1<i32>>,
        Vec<String>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<i64>>,
    ) {
        let (agency, status, types, names, lat, lon, time) = self.read(py, |store| {
            let t = store.table();
            let live: Vec<usize> = (0..t.capacity()).filter(|&s| t.live[s]).collect();
            let names: Vec<String> =
                (0..store.type_count()).map(|i| store.unit_type_name(i as u16).to_owned()).collect();
            (
                live.iter().map(|&s| t.agency[s] as i8).collect::<Vec<i8>>(),
                live.iter().map(|&s| t.status[s] as i8).collect::<Vec<i8>>(),
                live.iter().map(|&s| i32::from(t.unit_type[s])).collect::<Vec<i32>>(),
                names,
                live.iter().map(|&s| t.lat[s]).collect::<Vec<f64>>(),
                live.iter().map(|&s| t.lon[s]).collect::<Vec<f64>>(),
                live.iter().map(|&s| t.location_ms[s]).collect::<Vec<i64>>(),
            )
        });
        (
            agency.into_pyarray(py),
            status.into_pyarray(py),
            types.into_pyarray(py),
            names,
            lat.into_pyarray(py),
            lon.into_pyarray(py),
            time.into_pyarray(py),
        )
    }

    /// Every live unit's last position: (unit_ids, lat, lon, time_ms), NaN and i64::MIN
    /// where a unit has never reported. For snapshots.
    #[allow(clippy::type_complexity)]
    fn positions<'py>(
        &self,
        py: Python<'py>,
    ) -> (Vec<String>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<i64>>) {
        let (ids, lat, lon, time) = self.read(py, |store| {
            let t = store.table();
            let live: Vec<usize> = (0..t.capacity()).filter(|&s| t.live[s]).collect();
            let ids: Vec<String> = live.iter().map(|&s| t.ids[s].to_string()).collect();
            let lat: Vec<f64> = live.iter().map(|&s| t.lat[s]).collect();
            let lon: Vec<f64> = live.iter().map(|&s| t.lon[s]).collect();
            let time: Vec<i64> = live.iter().map(|&s| t.location_ms[s]).collect();
            (ids, lat, lon, time)
        });
        (ids, lat.into_pyarray(py), lon.into_pyarray(py), time.into_pyarray(py))
    }

    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.read(py, |s| s.memory_bytes())
    }
}
