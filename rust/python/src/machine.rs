//! `DispatchCore`: the dispatch state machine behind a read-write lock. Commands cross once
//! (method, request bytes, time in; an `Outcome` with the answer bytes, events and the
//! journal payload out); reads go bytes to bytes. The GIL is released for all of it.

use std::collections::HashMap;

use dispatch_engine::caps::{Vocabulary, DEFAULT_SCARCE};
use dispatch_engine::command::Method;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::record::{self, Problem, StoredEntry};
use dispatch_engine::snapshot;
use dispatch_engine::state::{
    AckTimeouts, Event, JournalAnswer, JournalHit, Machine, Outcome as CoreOutcome, Retention,
};
use dispatch_engine::store::UnitStore;
use dispatch_engine::types::{Agency, Grade, Status, N_GRADES};
use dispatch_engine::wire::{encode, reads};
use dispatch_engine::CoreError;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyMapping};

use crate::config::{apply_overrides, config_to_dict};
use crate::errors::{refused, to_py, Refusal};
use crate::index::coverage_question;
use crate::views::LocationReport;

/// Coverage cells answered per read lock (a few hundred microseconds of work).
const COVERAGE_CHUNK: usize = 512;

/// What executing a command decided; see `DispatchCore.execute`.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct Outcome {
    /// "applied", "repeated", "check_journal" or "refused".
    #[pyo3(get)]
    kind: &'static str,
    /// Journal sequence of the command (applied or repeated); 0 otherwise.
    #[pyo3(get)]
    sequence: u64,
    #[pyo3(get)]
    request_id: String,
    /// The journal payload (time + canonical request) of an applied command.
    payload: Vec<u8>,
    /// The encoded response (applied or repeated).
    response: Vec<u8>,
    /// (kind, grade, milliseconds) of what observers count: "first_assigned",
    /// "first_on_scene", "requests_expired" (grade 0, count instead of ms), "diverted"
    /// (the grade diverted from, 0 ms), "ack_overdue" (the incident's grade, 0 ms).
    #[pyo3(get)]
    events: Vec<(&'static str, i32, i64)>,
    /// (unit_id, incident_id) assigned, and unit_ids released, by an applied command.
    #[pyo3(get)]
    assign: Vec<(String, String)>,
    #[pyo3(get)]
    release: Vec<String>,
    /// (incident_id, encoded Incident) of closed incidents a clock command took out of
    /// memory, for the journal's archive.
    archived: Vec<(String, Vec<u8>)>,
    refusal: Option<Refusal>,
}

#[pymethods]
impl Outcome {
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }

    #[getter]
    fn response<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.response)
    }

    #[getter]
    fn archived<'py>(&self, py: Python<'py>) -> Vec<(String, Bound<'py, PyBytes>)> {
        self.archived.iter().map(|(id, data)| (id.clone(), PyBytes::new(py, data))).collect()
    }

    /// The `Refused` exception of a refused command (None otherwise).
    fn error(&self, py: Python<'_>) -> Option<PyErr> {
        self.refusal.as_ref().map(|r| {
            Refusal {
                code: r.code,
                message: r.message.clone(),
                violations: r.violations.clone(),
                precondition: r.precondition.clone(),
                resource: r.resource.clone(),
            }
            .into_py(py)
        })
    }

    fn __repr__(&self) -> String {
        format!("Outcome({:?}, sequence={})", self.kind, self.sequence)
    }
}

fn event(e: &Event) -> (&'static str, i32, i64) {
    match *e {
        Event::FirstAssigned { grade, waited_ms } => ("first_assigned", grade as i32, waited_ms),
        Event::FirstOnScene { grade, response_ms } => ("first_on_scene", grade as i32, response_ms),
        Event::RequestsExpired { count } => ("requests_expired", 0, count as i64),
        Event::Diverted { from_grade } => ("diverted", from_grade as i32, 0),
        Event::AckOverdue { grade } => ("ack_overdue", grade as i32, 0),
        Event::CrewOff { overtime } => ("crew_off", 0, i64::from(overtime)),
    }
}

fn outcome(o: CoreOutcome, time_ms: i64) -> Outcome {
    let empty = |kind| Outcome {
        kind,
        sequence: 0,
        request_id: String::new(),
        payload: Vec::new(),
        response: Vec::new(),
        events: Vec::new(),
        assign: Vec::new(),
        release: Vec::new(),
        archived: Vec::new(),
        refusal: None,
    };
    match o {
        CoreOutcome::Applied { sequence, request_id, request, response, events, assign, release, archived } => {
            Outcome {
                sequence,
                request_id,
                payload: record::encode(time_ms, &request),
                response,
                events: events.iter().map(event).collect(),
                assign,
                release,
                archived,
                ..empty("applied")
            }
        }
        CoreOutcome::Repeated { sequence, response } => Outcome { sequence, response, ..empty("repeated") },
        CoreOutcome::CheckJournal { request_id } => Outcome { request_id, ..empty("check_journal") },
        CoreOutcome::Refused(e) => Outcome { refusal: Some(Refusal::of(e)), ..empty("refused") },
    }
}

fn method(py: Python<'_>, name: &str) -> PyResult<Method> {
    Method::from_name(name)
        .ok_or_else(|| refused(py, CoreError::invalid("method", format!("unknown command {name:?}"))))
}

/// The dispatch state machine: units, incidents, assignments and the idempotency table.
#[pyclass(frozen, module = "dispatch_core._core")]
pub struct DispatchCore {
    machine: RwLock<Machine>,
    /// To build an empty store like this one's (restore).
    vocab: Vocabulary,
    scarce: Vec<String>,
    cell_deg: f64,
    request_capacity: usize,
}

impl DispatchCore {
    /// Runs `f` under the read lock with the GIL released. The lock is only ever taken
    /// without the GIL: a thread that held the GIL while waiting for the lock could
    /// deadlock with the lock holder, which may need the GIL to finish.
    fn read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&Machine) -> R + Send) -> R {
        py.detach(|| f(&self.machine.read()))
    }

    fn write<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Machine) -> R + Send) -> R {
        py.detach(|| f(&mut self.machine.write()))
    }

    fn empty_store(&self, config: RankConfig) -> Result<UnitStore, CoreError> {
        UnitStore::with_vocabulary(self.vocab.clone(), &self.scarce, config, self.cell_deg)
    }
}

fn bytes_out(py: Python<'_>, r: Result<Vec<u8>, CoreError>) -> PyResult<Bound<'_, PyBytes>> {
    match r {
        Ok(b) => Ok(PyBytes::new(py, &b)),
        Err(e) => Err(refused(py, e)),
    }
}

#[pymethods]
impl DispatchCore {
    #[new]
    #[pyo3(signature = (*, capabilities=None, scarce_capabilities=None, config=None, cell_deg=0.01, request_capacity=dispatch_engine::state::requests::DEFAULT_CAPACITY, max_future_skew_ms=dispatch_engine::time::DEFAULT_MAX_FUTURE_SKEW_MS, closed_retention_ms=Retention::default().age_ms, closed_retention_count=Retention::default().count, ack_timeout_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        capabilities: Option<Vec<String>>,
        scarce_capabilities: Option<Vec<String>>,
        config: Option<&Bound<'_, PyMapping>>,
        cell_deg: f64,
        request_capacity: usize,
        max_future_skew_ms: i64,
        closed_retention_ms: i64,
        closed_retention_count: usize,
        ack_timeout_ms: Option<HashMap<String, i64>>,
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
        if max_future_skew_ms < 0 {
            return Err(to_py(py, CoreError::invalid("max_future_skew_ms", "must be >= 0")));
        }
        if closed_retention_ms < 0 {
            return Err(to_py(py, CoreError::invalid("closed_retention_ms", "must be >= 0")));
        }
        let store =
            UnitStore::with_vocabulary(vocab.clone(), &scarce, rank_config, cell_deg).map_err(|e| to_py(py, e))?;
        let mut timeouts = AckTimeouts::default();
        for (name, ms) in ack_timeout_ms.unwrap_or_default() {
            let grade = Grade::from_name(&name, &format!("ack_timeout_ms.{name}")).map_err(|e| to_py(py, e))?;
            timeouts.0[grade.index()] = Some(ms);
        }
        timeouts.validate().map_err(|e| to_py(py, e))?;
        let mut machine = Machine::new(store, request_capacity);
        machine.max_future_skew_ms = max_future_skew_ms;
        machine.retention = Retention { age_ms: closed_retention_ms, count: closed_retention_count };
        machine.ack_timeouts = timeouts;
        Ok(Self { machine: RwLock::new(machine), vocab, scarce, cell_deg, request_capacity })
    }

    /// Executes one command (`method` is its RPC name, or "Tick") with the request's bytes
    /// at `time_ms`. After an outcome of kind "check_journal", call again with
    /// `journal_checked=True` and `journal` = (request, response, sequence) of the journal's
    /// entry for the request_id, or None when it has none.
    #[pyo3(signature = (method, request, time_ms, *, journal_checked=false, journal=None))]
    fn execute(
        &self,
        py: Python<'_>,
        method: &str,
        request: &[u8],
        time_ms: i64,
        journal_checked: bool,
        journal: Option<(Vec<u8>, Vec<u8>, u64)>,
    ) -> PyResult<Outcome> {
        let m = self::method(py, method)?;
        let hit = match (journal_checked, journal) {
            (_, Some((request, response, sequence))) => {
                JournalAnswer::Found(JournalHit { request, response, sequence })
            }
            (true, None) => JournalAnswer::Absent,
            (false, None) => JournalAnswer::Unchecked,
        };
        Ok(outcome(self.write(py, |s| s.execute(m, request, time_ms, hit)), time_ms))
    }

    /// Executes journaled entries again, in order: (sequence, method, payload, result).
    /// Returns how many answered differently from their journaled result (the state is the
    /// same either way). Raises `Refused` naming the first entry that does not apply.
    fn replay(&self, py: Python<'_>, entries: Vec<(u64, String, Vec<u8>, Vec<u8>)>) -> PyResult<usize> {
        let result = self.write(py, |s| {
            let mut differ = 0;
            for (sequence, method, payload, result) in &entries {
                if !s.replay(*sequence, method, payload, result)? {
                    differ += 1;
                }
            }
            Ok::<_, CoreError>(differ)
        });
        result.map_err(|e| refused(py, e))
    }

    /// Verifies and replays journal rows as the journal stores them (sequence, method,
    /// request_id, payload, result, time_ms, actor, assign, release, checksum), read in
    /// order after `after`; `tail` is the last sequence written. Returns (replayed,
    /// answers that differ, problem) where problem is None, ("torn", sequence),
    /// ("missing", expected, found) or ("corrupt", sequence). The rows' bytes are read in
    /// place, and the GIL is released while they are checked and applied.
    fn replay_rows(
        &self,
        py: Python<'_>,
        rows: Vec<Bound<'_, PyAny>>,
        after: i64,
        tail: i64,
    ) -> PyResult<(usize, usize, Option<ProblemTuple>)> {
        let owned: Vec<Option<StoredRow>> = rows.iter().map(|r| r.extract::<StoredRow>().ok()).collect();
        let result = self.write(py, |s| {
            let rows: Vec<_> = owned.iter().map(|r| r.as_ref().map(StoredRow::entry)).collect();
            s.replay_stored(&rows, after, tail)
        });
        let (good, differ, problem) = result.map_err(|e| refused(py, e))?;
        Ok((good, differ, problem.map(problem_tuple)))
    }

    /// Whether a clock command at `now_ms` would change anything (then the server journals
    /// one).
    fn tick_due(&self, py: Python<'_>, now_ms: i64) -> bool {
        self.read(py, |s| s.tick_due(now_ms))
    }

    /// The sequence of the last command applied.
    #[getter]
    fn sequence(&self, py: Python<'_>) -> u64 {
        self.read(py, Machine::sequence)
    }

    /// The state machine's clock: time of the latest command applied (0 before any).
    #[getter]
    fn clock_ms(&self, py: Python<'_>) -> i64 {
        self.read(py, Machine::clock_ms)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py, |s| s.units().len())
    }

    fn capability_names(&self) -> Vec<String> {
        self.vocab.names().to_vec()
    }

    /// The ranking model as a dict (every key `set_config` accepts).
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (config, scarce) =
            self.read(py, |s| (s.units().config().clone(), s.vocabulary().decode(s.units().scarce())));
        config_to_dict(py, &config, &scarce)
    }

    /// Overrides parts of the ranking model; refused whole when any value is invalid.
    fn set_config(&self, py: Python<'_>, overrides: &Bound<'_, PyMapping>) -> PyResult<()> {
        let mut config = self.read(py, |s| s.units().config().clone());
        apply_overrides(&mut config, overrides)?;
        self.write(py, |s| s.set_config(config)).map_err(|e| to_py(py, e))
    }

    // ------------------------------------------------------------------------ reads

    fn get_response_plans<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::get_response_plans(s, request)))
    }

    /// Reads the response-plan file at `path` (and its includes) and checks it against
    /// this core's vocabulary and ranking model. Returns (the plans as an encoded
    /// ReplaceResponsePlansRequest without request_id, the files read, the problems); the
    /// plans are None when there is any problem, each problem being (file, line, key,
    /// message).
    #[allow(clippy::type_complexity)]
    fn load_response_plans<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> (Option<Bound<'py, PyBytes>>, Vec<String>, Vec<(String, usize, String, String)>) {
        let config = self.read(py, |s| s.units().config().clone());
        let vocab = &self.vocab;
        let loaded = py.detach(|| dispatch_planfile::load(&path, dispatch_planfile::Rules { vocab, config: &config }));
        match loaded {
            Ok(file) => {
                let request = encode::replace_plans_request(&file.plans, &path.display().to_string());
                (Some(PyBytes::new(py, &request)), file.files, Vec::new())
            }
            Err(problems) => {
                (None, Vec::new(), problems.into_iter().map(|p| (p.file, p.line, p.key, p.message)).collect())
            }
        }
    }

    fn get_unit<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::get_unit(s, request)))
    }

    /// GetPerson: a person with their skills, shifts and crews (request and answer bytes).
    fn get_person<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| dispatch_engine::duty::wire::get_person(s.duty(), s.units(), request)))
    }

    fn list_units<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::list_units(s, request)))
    }

    fn get_incident<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::get_incident(s, request)))
    }

    fn list_incidents<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::list_incidents(s, request)))
    }

    fn recommend<'py>(&self, py: Python<'py>, request: &[u8], now_ms: i64) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::recommend(s, request, now_ms)))
    }

    /// ListPending: a page of the pending queue as of `now_ms` (request and answer bytes).
    fn list_pending<'py>(&self, py: Python<'py>, request: &[u8], now_ms: i64) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::list_pending(s, request, now_ms)))
    }

    /// The acknowledgement timeouts in force, ms by grade name (grades without one absent).
    fn ack_timeouts(&self, py: Python<'_>) -> HashMap<String, i64> {
        let t = self.read(py, |s| s.ack_timeouts);
        Grade::ALL.iter().filter_map(|g| t.of(*g).map(|ms| (g.name().to_owned(), ms))).collect()
    }

    /// Positions of the units flagged overdue for acknowledgement that still have not
    /// acknowledged: (lat, lon), NaN where a unit never reported (the picture's count).
    fn overdue_ack_positions<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>) {
        let (lat, lon): (Vec<f64>, Vec<f64>) = self.read(py, |s| {
            let t = s.units().table();
            s.acks().overdue().map(|slot| (t.lat[slot as usize], t.lon[slot as usize])).unzip()
        });
        (lat.into_pyarray(py), lon.into_pyarray(py))
    }

    fn batch_recommend<'py>(&self, py: Python<'py>, request: &[u8], now_ms: i64) -> PyResult<Bound<'py, PyBytes>> {
        bytes_out(py, self.read(py, |s| reads::batch_recommend(s, request, now_ms)))
    }

    /// A batch of AVL pings (an encoded UpdateLocationsRequest) that arrived at `now_ms`;
    /// `batch` is its number in a stream (0 for a unary call), named in errors.
    #[pyo3(signature = (request, now_ms, batch=0))]
    fn update_locations(&self, py: Python<'_>, request: &[u8], now_ms: i64, batch: u64) -> PyResult<LocationReport> {
        let report = self.write(py, |s| reads::update_locations(s, request, batch, now_ms));
        report.map(Into::into).map_err(|e| refused(py, e))
    }

    /// For each point, whether an eligible unit can arrive within `target_seconds` (the
    /// operating picture's coverage). Filters as in ranking.
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
        // A chunk of cells per read lock: a waiting writer (a ping batch) gets in between
        // chunks, so ranking queued behind it never waits for the whole of London.
        let covered = py.detach(|| {
            let mut out = Vec::with_capacity(points.len());
            for chunk in points.chunks(COVERAGE_CHUNK) {
                out.extend(self.machine.read().units().coverage(&query, chunk, target_seconds)?);
            }
            Ok::<_, CoreError>(out)
        });
        Ok(covered.map_err(|e| to_py(py, e))?.into_pyarray(py))
    }

    /// Live units as columns for the picture: (agency, status, type index, type names, lat,
    /// lon); NaN where a unit has never reported.
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
    ) {
        let (agency, status, types, names, lat, lon) = self.read(py, |s| {
            let store = s.units();
            let t = store.table();
            let live: Vec<usize> = (0..t.capacity()).filter(|&i| t.live[i]).collect();
            (
                live.iter().map(|&i| t.agency[i] as i8).collect::<Vec<i8>>(),
                live.iter().map(|&i| t.status[i] as i8).collect::<Vec<i8>>(),
                live.iter().map(|&i| i32::from(t.unit_type[i])).collect::<Vec<i32>>(),
                store.type_table().iter().map(|(_, n)| n.clone()).collect::<Vec<String>>(),
                live.iter().map(|&i| t.lat[i]).collect::<Vec<f64>>(),
                live.iter().map(|&i| t.lon[i]).collect::<Vec<f64>>(),
            )
        });
        (
            agency.into_pyarray(py),
            status.into_pyarray(py),
            types.into_pyarray(py),
            names,
            lat.into_pyarray(py),
            lon.into_pyarray(py),
        )
    }

    /// Open incidents as columns for the picture: (lat, lon, grade, created_ms, assigned),
    /// `assigned` true once a unit was ever assigned.
    #[allow(clippy::type_complexity)]
    fn open_incident_columns<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<i8>>,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<bool>>,
    ) {
        let (lat, lon, grade, created, assigned) = self.read(py, |s| {
            let open: Vec<_> = s.incidents().iter().filter(|i| i.is_open()).collect();
            (
                open.iter().map(|i| i.lat).collect::<Vec<f64>>(),
                open.iter().map(|i| i.lon).collect::<Vec<f64>>(),
                open.iter().map(|i| i.grade as i8).collect::<Vec<i8>>(),
                open.iter().map(|i| i.created_ms).collect::<Vec<i64>>(),
                open.iter().map(|i| i.first_assigned_ms.is_some()).collect::<Vec<bool>>(),
            )
        });
        (
            lat.into_pyarray(py),
            lon.into_pyarray(py),
            grade.into_pyarray(py),
            created.into_pyarray(py),
            assigned.into_pyarray(py),
        )
    }

    /// Live units by (agency, status), every pair included: counts the core keeps as units
    /// change, so this is O(agencies × statuses).
    fn units_by_agency_status(&self, py: Python<'_>) -> HashMap<(i32, i32), u64> {
        let counts = self.read(py, |s| *s.units().table().counts());
        let mut out = HashMap::new();
        for a in Agency::ALL {
            for st in Status::ALL {
                out.insert((*a as i32, *st as i32), counts[a.index()][st.index()]);
            }
        }
        out
    }

    /// Open incidents by grade and the creation time of the oldest waiting one (no unit
    /// attached, none arrived) by grade: maintained as commands apply, so this is O(grades).
    fn incident_counts(&self, py: Python<'_>) -> Vec<(i32, u64, Option<i64>)> {
        self.read(py, |s| {
            let open = s.incidents().open_by_grade();
            let oldest = s.incidents().oldest_waiting_ms();
            (0..N_GRADES).map(|g| (Grade::ALL[g] as i32, open[g], oldest[g])).collect()
        })
    }

    /// Incidents held (open and closed) and remembered request_ids (in memory, journal only).
    fn sizes(&self, py: Python<'_>) -> (usize, usize, usize) {
        self.read(py, |s| (s.incidents().len(), s.requests().len(), s.requests().evicted_len()))
    }

    // ------------------------------------------------------------- snapshots, digests

    /// (sequence, bytes) of a snapshot of the whole state: copied under the read lock,
    /// encoded after it is released, all without the GIL.
    fn snapshot<'py>(&self, py: Python<'py>) -> (u64, Bound<'py, PyBytes>) {
        let (sequence, data) = py.detach(|| {
            let captured = snapshot::capture(&self.machine.read());
            (captured.sequence(), captured.encode())
        });
        (sequence, PyBytes::new(py, &data))
    }

    /// Seconds the read lock is held to copy the state for a snapshot, and seconds encoding
    /// the copy takes after it (the snapshot stall benchmark's measure).
    fn snapshot_timing(&self, py: Python<'_>) -> (f64, f64) {
        py.detach(|| {
            let started = std::time::Instant::now();
            let captured = snapshot::capture(&self.machine.read());
            let captured_s = started.elapsed().as_secs_f64();
            let started = std::time::Instant::now();
            let bytes = captured.encode();
            std::hint::black_box(bytes);
            (captured_s, started.elapsed().as_secs_f64())
        })
    }

    /// Replaces the state with a snapshot's (only into a core that has applied nothing).
    /// Returns the snapshot's sequence.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<u64> {
        let config = self.read(py, |s| s.units().config().clone());
        let empty = self.empty_store(config).map_err(|e| to_py(py, e))?;
        let capacity = self.request_capacity;
        let result = self.write(py, |s| {
            if s.sequence() != 0 || !s.units().is_empty() {
                return Err(CoreError::invalid("snapshot", "can only be restored into an empty core"));
            }
            let mut restored = snapshot::decode(data, empty, capacity)?;
            restored.max_future_skew_ms = s.max_future_skew_ms;
            restored.retention = s.retention;
            restored.ack_timeouts = s.ack_timeouts;
            let sequence = restored.sequence();
            *s = restored;
            Ok(sequence)
        });
        result.map_err(|e| refused(py, e))
    }

    /// The format version of snapshot bytes (1: the old JSON), or None if unreadable.
    #[staticmethod]
    fn snapshot_format(data: &[u8]) -> Option<u32> {
        snapshot::format_of(data)
    }

    /// A 64-bit digest of the whole state: equal states, equal digests.
    fn digest(&self, py: Python<'_>) -> u64 {
        self.read(py, snapshot::digest)
    }

    /// Checks every invariant tying units, incidents and the tables together; raises
    /// ValueError naming the first broken one. For tests and drills.
    fn check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        self.read(py, Machine::check_invariants).map_err(pyo3::exceptions::PyValueError::new_err)
    }

    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.read(py, |s| s.units().memory_bytes())
    }
}

/// A stored journal row, its text and bytes borrowed from the Python objects.
type StoredRowFields =
    (i64, PyBackedStr, PyBackedStr, PyBackedBytes, PyBackedBytes, i64, PyBackedStr, PyBackedStr, PyBackedStr, i64);

#[derive(FromPyObject)]
pub struct StoredRow(StoredRowFields);

impl StoredRow {
    fn entry(&self) -> (StoredEntry<'_>, i64) {
        let r = &self.0;
        let entry = StoredEntry {
            sequence: r.0,
            method: &r.1,
            request_id: &r.2,
            payload: &r.3,
            result: &r.4,
            time_ms: r.5,
            actor: &r.6,
            assign: &r.7,
            release: &r.8,
        };
        (entry, r.9)
    }
}

/// A journal reading problem for Python: ("torn" | "missing" | "corrupt", sequence or
/// expected, sequence found).
type ProblemTuple = (&'static str, i64, i64);

fn problem_tuple(p: Problem) -> ProblemTuple {
    match p {
        Problem::TornTail { sequence } => ("torn", sequence, sequence),
        Problem::Missing { expected, found } => ("missing", expected, found),
        Problem::Corrupt { sequence } => ("corrupt", sequence, sequence),
    }
}

/// Checks journal rows read in order after `after` (see `DispatchCore.replay_rows`):
/// (how many from the start are good, problem or None). The one place the journal's
/// checksum and reading rules live, for the backends' own reads too.
#[pyfunction]
pub fn check_rows(rows: Vec<Bound<'_, PyAny>>, after: i64, tail: i64) -> (usize, Option<ProblemTuple>) {
    let owned: Vec<Option<StoredRow>> = rows.iter().map(|r| r.extract::<StoredRow>().ok()).collect();
    let (good, problem) = record::verify(owned.iter().map(|r| r.as_ref().map(StoredRow::entry)), after, tail);
    (good, problem.map(problem_tuple))
}

/// The CRC-32 a stored journal entry carries over its fields.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn entry_checksum(
    sequence: i64,
    method: &str,
    request_id: &str,
    payload: &[u8],
    result: &[u8],
    time_ms: i64,
    actor: &str,
    assign: &str,
    release: &str,
) -> u32 {
    record::checksum(&StoredEntry { sequence, method, request_id, payload, result, time_ms, actor, assign, release })
}

/// The request inside a journal payload (what a retry's bytes are compared with).
#[pyfunction]
pub fn payload_request<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    record::request(payload).map(|r| PyBytes::new(py, r)).map_err(|e| refused(py, e))
}

/// The time inside a journal payload, Unix ms.
#[pyfunction]
pub fn payload_time_ms(py: Python<'_>, payload: &[u8]) -> PyResult<i64> {
    record::decode(payload).map(|(t, _)| t).map_err(|e| refused(py, e))
}
