//! Snapshots: the whole state machine as bytes, and back.
//!
//! A snapshot holds everything replay cannot rebuild from the entries after it: units
//! (their slots, live or removed, static attributes, status, incident link and last
//! position with its time, since pings are not journaled), incidents, the idempotency table,
//! the clock, the sequence, the counter behind server-chosen incident ids, the running
//! acknowledgement deadlines, the response plans in force and the roster (people, shifts,
//! crews and what the crews make of their units). The encoding
//! is Protocol Buffers (messages declared here with prost), units column by column so that
//! encoding is a few copies of packed arrays. [`FORMAT`] versions the layout; another
//! version is refused with a message naming it, never guessed at.
//!
//! The encoding is canonical (every collection in a fixed order), so two states are equal
//! exactly when their snapshots are byte-equal: the replay tests compare snapshots, and
//! [`digest`] hashes one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use imbl::OrdMap;
use prost::Message;

use crate::caps::CapSet;
use crate::command::{Method, RequirementGroup};
use crate::error::{CoreError, CoreResult};
use crate::plans::{PlanBook, ResponsePlan, TimeWindow};
use crate::state::{Incident, Incidents, Machine, Remembered, RequestTable};
use crate::store::{RestoredUnit, UnitStore};
use crate::types::{Agency, Grade, IncidentStatus, Status};

/// The layout version written by this build. Version 1 was the JSON of the Python engine;
/// version 2 had no response plans (snapshot fields 18-20, incident field 16) and no roster
/// (field 40) and is still read, as a state with neither; its acknowledgement deadlines
/// (15-17) and `cleared` counts (incident field 15) are read as they are, and are simply
/// absent from older writes. Version 3 gained the plans and the roster together (no build
/// wrote version 3 without field 40 outside development), and a version 3 snapshot without
/// field 40 reads as a state with nobody rostered.
pub const FORMAT: u32 = 3;

/// The oldest layout version this build still reads.
pub const OLDEST_FORMAT: u32 = 2;

#[derive(Clone, PartialEq, Message)]
struct SnapshotMsg {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    #[prost(int64, tag = "3")]
    clock_ms: i64,
    #[prost(uint64, tag = "4")]
    next_incident_number: u64,
    /// The capability vocabulary the unit bitmasks refer to.
    #[prost(string, repeated, tag = "5")]
    capabilities: Vec<String>,
    #[prost(int32, repeated, tag = "6")]
    type_agencies: Vec<i32>,
    #[prost(string, repeated, tag = "7")]
    type_names: Vec<String>,
    #[prost(string, repeated, tag = "8")]
    areas: Vec<String>,
    #[prost(message, optional, tag = "9")]
    units: Option<UnitColumns>,
    #[prost(message, repeated, tag = "10")]
    incidents: Vec<IncidentRow>,
    /// Distinct response plans, referred to by index from the incidents.
    #[prost(message, repeated, tag = "11")]
    plans: Vec<PlanRow>,
    #[prost(message, repeated, tag = "12")]
    requests: Vec<RequestRow>,
    #[prost(int64, repeated, tag = "13")]
    evicted_times: Vec<i64>,
    #[prost(fixed64, repeated, tag = "14")]
    evicted_fingerprints: Vec<u64>,
    /// Running acknowledgement deadlines: unit slots and their deadlines, slot order.
    #[prost(uint32, repeated, tag = "15")]
    ack_slots: Vec<u32>,
    #[prost(sfixed64, repeated, tag = "16")]
    ack_deadlines: Vec<i64>,
    /// Units flagged overdue that have not acknowledged yet, slot order.
    #[prost(uint32, repeated, tag = "17")]
    ack_overdue: Vec<u32>,
    /// The response plans in force (format 3), in installation order.
    #[prost(message, repeated, tag = "18")]
    response_plans: Vec<ResponsePlanRow>,
    #[prost(string, tag = "19")]
    plans_source: String,
    #[prost(int64, optional, tag = "20")]
    plans_installed_ms: Option<i64>,
    /// People, shifts, crews and rostered units (format 3; [`crate::duty::snapshot`]).
    /// Numbered apart from the dispatch fields so that these can grow without meeting it.
    #[prost(message, optional, tag = "40")]
    duty: Option<crate::duty::snapshot::DutyMsg>,
}

#[derive(Clone, PartialEq, Message)]
struct ResponsePlanRow {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    incident_type: String,
    /// 0 for any grade.
    #[prost(int32, tag = "3")]
    grade: i32,
    #[prost(string, optional, tag = "4")]
    area: Option<String>,
    #[prost(uint32, optional, tag = "5")]
    window_start_minute: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    window_end_minute: Option<u32>,
    #[prost(message, repeated, tag = "7")]
    groups: Vec<GroupRow>,
}

#[derive(Clone, PartialEq, Message)]
struct UnitColumns {
    #[prost(string, repeated, tag = "1")]
    ids: Vec<String>,
    #[prost(bool, repeated, tag = "2")]
    live: Vec<bool>,
    #[prost(int32, repeated, tag = "3")]
    agency: Vec<i32>,
    #[prost(uint32, repeated, tag = "4")]
    unit_type: Vec<u32>,
    #[prost(fixed64, repeated, tag = "5")]
    caps_lo: Vec<u64>,
    #[prost(fixed64, repeated, tag = "6")]
    caps_hi: Vec<u64>,
    #[prost(int32, repeated, tag = "7")]
    status: Vec<i32>,
    #[prost(uint32, repeated, tag = "8")]
    home_area: Vec<u32>,
    #[prost(sfixed64, repeated, tag = "9")]
    shift_start_ms: Vec<i64>,
    #[prost(sfixed64, repeated, tag = "10")]
    shift_end_ms: Vec<i64>,
    #[prost(double, repeated, tag = "11")]
    lat: Vec<f64>,
    #[prost(double, repeated, tag = "12")]
    lon: Vec<f64>,
    #[prost(sfixed64, repeated, tag = "13")]
    location_ms: Vec<i64>,
    /// The incident each unit is linked to; empty for none.
    #[prost(string, repeated, tag = "14")]
    incident: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct GroupRow {
    #[prost(int32, tag = "1")]
    agency: i32,
    #[prost(string, repeated, tag = "2")]
    unit_types: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    capabilities: Vec<String>,
    #[prost(uint32, tag = "4")]
    count: u32,
    #[prost(bool, tag = "5")]
    arrive_together: bool,
}

#[derive(Clone, PartialEq, Message)]
struct PlanRow {
    #[prost(message, repeated, tag = "1")]
    groups: Vec<GroupRow>,
}

#[derive(Clone, PartialEq, Message)]
struct IncidentRow {
    #[prost(string, tag = "1")]
    incident_id: String,
    #[prost(int32, tag = "2")]
    grade: i32,
    #[prost(string, tag = "3")]
    incident_type: String,
    #[prost(double, tag = "4")]
    lat: f64,
    #[prost(double, tag = "5")]
    lon: f64,
    #[prost(string, tag = "6")]
    area: String,
    #[prost(uint32, tag = "7")]
    plan: u32,
    #[prost(int32, tag = "8")]
    status: i32,
    #[prost(uint32, repeated, tag = "9")]
    assigned: Vec<u32>,
    #[prost(uint32, repeated, tag = "10")]
    attached: Vec<u32>,
    #[prost(int64, tag = "11")]
    created_ms: i64,
    #[prost(int64, optional, tag = "12")]
    first_assigned_ms: Option<i64>,
    #[prost(int64, optional, tag = "13")]
    first_on_scene_ms: Option<i64>,
    #[prost(int64, optional, tag = "14")]
    closed_ms: Option<i64>,
    /// Units that attended and left (they still count towards the plan).
    #[prost(uint32, tag = "15")]
    cleared: u32,
    /// The response plan the requirements came from; empty when the client sent them.
    #[prost(string, tag = "16")]
    response_plan: String,
}

#[derive(Clone, PartialEq, Message)]
struct RequestRow {
    #[prost(uint32, tag = "1")]
    method: u32,
    #[prost(string, tag = "2")]
    request_id: String,
    #[prost(bytes = "vec", tag = "3")]
    request: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    response: Vec<u8>,
    #[prost(uint64, tag = "5")]
    sequence: u64,
    #[prost(int64, tag = "6")]
    time_ms: i64,
}

/// The unit columns as they were, shared where they can be (ids) and copied flat where
/// they cannot: what the state's read lock is held for.
struct UnitsCopy {
    ids: Vec<Arc<str>>,
    live: Vec<bool>,
    agency: Vec<Agency>,
    unit_type: Vec<u16>,
    caps: Vec<CapSet>,
    status: Vec<Status>,
    home_area: Vec<u32>,
    shift_start_ms: Vec<i64>,
    shift_end_ms: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    location_ms: Vec<i64>,
    incident: Vec<Option<Box<str>>>,
}

impl UnitsCopy {
    fn of(store: &UnitStore) -> Self {
        let t = store.table();
        Self {
            ids: t.ids.clone(),
            live: t.live.clone(),
            agency: t.agency.clone(),
            unit_type: t.unit_type.clone(),
            caps: t.caps.clone(),
            status: t.status.clone(),
            home_area: t.home_area.clone(),
            shift_start_ms: t.shift_start_ms.clone(),
            shift_end_ms: t.shift_end_ms.clone(),
            lat: t.lat.clone(),
            lon: t.lon.clone(),
            location_ms: t.location_ms.clone(),
            incident: t.incident.clone(),
        }
    }

    fn columns(&self) -> UnitColumns {
        UnitColumns {
            ids: self.ids.iter().map(|id| id.to_string()).collect(),
            live: self.live.clone(),
            agency: self.agency.iter().map(|&a| a as i32).collect(),
            unit_type: self.unit_type.iter().map(|&x| u32::from(x)).collect(),
            caps_lo: self.caps.iter().map(|&c| c as u64).collect(),
            caps_hi: self.caps.iter().map(|&c| (c >> 64) as u64).collect(),
            status: self.status.iter().map(|&s| s as i32).collect(),
            home_area: self.home_area.clone(),
            shift_start_ms: self.shift_start_ms.clone(),
            shift_end_ms: self.shift_end_ms.clone(),
            lat: self.lat.clone(),
            lon: self.lon.clone(),
            location_ms: self.location_ms.clone(),
            incident: self.incident.iter().map(|i| i.as_deref().unwrap_or_default().to_owned()).collect(),
        }
    }
}

fn group_row(g: &RequirementGroup) -> GroupRow {
    GroupRow {
        agency: g.agency as i32,
        unit_types: g.unit_types.clone(),
        capabilities: g.capabilities.clone(),
        count: g.count,
        arrive_together: g.arrive_together,
    }
}

fn group_of(g: &GroupRow) -> CoreResult<RequirementGroup> {
    Ok(RequirementGroup {
        agency: Agency::from_i32(g.agency, "snapshot")?,
        unit_types: g.unit_types.clone(),
        capabilities: g.capabilities.clone(),
        count: g.count,
        arrive_together: g.arrive_together,
    })
}

fn plan_row(p: &ResponsePlan) -> ResponsePlanRow {
    ResponsePlanRow {
        name: p.name.clone(),
        incident_type: p.incident_type.clone(),
        grade: p.grade.map_or(0, |g| g as i32),
        area: p.area.clone(),
        window_start_minute: p.window.map(|w| u32::from(w.start_minute)),
        window_end_minute: p.window.map(|w| u32::from(w.end_minute)),
        groups: p.groups.iter().map(group_row).collect(),
    }
}

fn plan_of(row: &ResponsePlanRow) -> CoreResult<ResponsePlan> {
    let minute = |m: u32| u16::try_from(m).map_err(|_| bad(format!("plan {:?} has a window minute {m}", row.name)));
    let window = match (row.window_start_minute, row.window_end_minute) {
        (Some(s), Some(e)) => Some(TimeWindow { start_minute: minute(s)?, end_minute: minute(e)? }),
        (None, None) => None,
        _ => return Err(bad(format!("plan {:?} has half a time window", row.name))),
    };
    Ok(ResponsePlan {
        name: row.name.clone(),
        incident_type: row.incident_type.clone(),
        grade: (row.grade != 0).then(|| Grade::from_i32(row.grade, "snapshot")).transpose()?,
        area: row.area.clone(),
        window,
        groups: row.groups.iter().map(group_of).collect::<CoreResult<Vec<_>>>()?.into(),
    })
}

/// A copy of the whole state, taken under the state's read lock and encoded after it is
/// released. The copy shares what never changes in place (unit ids, remembered answers)
/// and copies flat columns, so the lock is held for memory copies, not for building and
/// encoding messages.
pub struct Captured {
    sequence: u64,
    clock_ms: i64,
    next_incident_number: u64,
    capabilities: Vec<String>,
    types: Vec<(Agency, String)>,
    areas: Vec<String>,
    units: UnitsCopy,
    incidents: OrdMap<String, Incident>,
    requests: RequestTable,
    /// Units waiting to acknowledge (a few per open incident): copied whole.
    acks: crate::state::AckDeadlines,
    /// The roster: persistent maps, so the copy is a reference count.
    duty: crate::duty::Duty,
    vocabulary: crate::caps::Vocabulary,
    plans: PlanBook,
}

impl Captured {
    /// The journal sequence the copy was taken at.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The snapshot bytes (canonical).
    pub fn encode(&self) -> Vec<u8> {
        // Equal plans are written once, found by value: which incidents happen to share
        // one allocation depends on history (a restore, a plan reinstalled), and the bytes
        // must not. The pointer map makes that a value comparison per distinct allocation,
        // not per incident.
        let mut by_ptr: BTreeMap<*const [RequirementGroup], u32> = BTreeMap::new();
        let mut by_value: HashMap<&[RequirementGroup], u32> = HashMap::new();
        let mut plans = Vec::new();
        let mut incidents = Vec::with_capacity(self.incidents.len());
        for i in self.incidents.values() {
            let plan = *by_ptr.entry(Arc::as_ptr(&i.requirements)).or_insert_with(|| {
                *by_value.entry(&i.requirements).or_insert_with(|| {
                    plans.push(PlanRow { groups: i.requirements.iter().map(group_row).collect() });
                    (plans.len() - 1) as u32
                })
            });
            incidents.push(IncidentRow {
                incident_id: i.incident_id.clone(),
                grade: i.grade as i32,
                incident_type: i.incident_type.clone(),
                lat: i.lat,
                lon: i.lon,
                area: i.area.clone(),
                plan,
                status: i.status as i32,
                assigned: i.assigned.clone(),
                attached: i.attached.clone(),
                created_ms: i.created_ms,
                first_assigned_ms: i.first_assigned_ms,
                first_on_scene_ms: i.first_on_scene_ms,
                closed_ms: i.closed_ms,
                cleared: i.cleared,
                response_plan: i.response_plan.clone(),
            });
        }
        let requests = self
            .requests
            .answers_in_order()
            .map(|((method, id), r)| RequestRow {
                method: method.code(),
                request_id: id.to_string(),
                request: r.request.to_vec(),
                response: r.response.to_vec(),
                sequence: r.sequence,
                time_ms: r.time_ms,
            })
            .collect();
        let (evicted_times, evicted_fingerprints) = self.requests.evicted_in_order().copied().unzip();
        SnapshotMsg {
            format: FORMAT,
            sequence: self.sequence,
            clock_ms: self.clock_ms,
            next_incident_number: self.next_incident_number,
            capabilities: self.capabilities.clone(),
            type_agencies: self.types.iter().map(|(a, _)| *a as i32).collect(),
            type_names: self.types.iter().map(|(_, n)| n.clone()).collect(),
            areas: self.areas.clone(),
            units: Some(self.units.columns()),
            incidents,
            plans,
            requests,
            evicted_times,
            evicted_fingerprints,
            ack_slots: self.acks.deadlines().map(|(slot, _)| slot).collect(),
            ack_deadlines: self.acks.deadlines().map(|(_, due)| due).collect(),
            ack_overdue: self.acks.overdue().collect(),
            duty: Some(crate::duty::snapshot::encode(&self.duty, &self.vocabulary)),
            response_plans: self.plans.plans().iter().map(plan_row).collect(),
            plans_source: self.plans.source.clone(),
            plans_installed_ms: self.plans.installed_ms,
        }
        .encode_to_vec()
    }
}

/// The snapshot of `m` (canonical bytes).
pub fn encode(m: &Machine) -> Vec<u8> {
    capture(m).encode()
}

/// Copies the state for a snapshot (see [`Captured`]).
pub fn capture(m: &Machine) -> Captured {
    let store = m.units();
    Captured {
        sequence: m.sequence(),
        clock_ms: m.clock_ms(),
        next_incident_number: m.incidents().next_number,
        capabilities: store.vocabulary().names().to_vec(),
        types: store.type_table().to_vec(),
        areas: store.area_table().to_vec(),
        units: UnitsCopy::of(store),
        incidents: m.incidents().shared(),
        requests: m.requests().clone(),
        acks: m.acks().clone(),
        duty: m.duty().clone(),
        vocabulary: store.vocabulary().clone(),
        plans: m.response_plans().clone(),
    }
}

/// The format version of a snapshot, or `None` when the bytes are not a snapshot of ours
/// (the JSON of format 1 starts with `{`).
pub fn format_of(data: &[u8]) -> Option<u32> {
    if data.first() == Some(&b'{') {
        return Some(1);
    }
    SnapshotMsg::decode(data).ok().map(|s| s.format)
}

fn bad(what: impl Into<String>) -> CoreError {
    CoreError::invalid("snapshot", what)
}

/// Restores a snapshot into `empty` (a store with the configured vocabulary and model).
pub fn decode(data: &[u8], empty: UnitStore, request_capacity: usize) -> CoreResult<Machine> {
    if data.first() == Some(&b'{') {
        return Err(bad(format!(
            "has format 1 (JSON, written before the state machine); this build reads format {FORMAT}"
        )));
    }
    let s = SnapshotMsg::decode(data).map_err(|e| bad(format!("unreadable: {e}")))?;
    if !(OLDEST_FORMAT..=FORMAT).contains(&s.format) {
        return Err(bad(format!("has format {}; this build reads formats {OLDEST_FORMAT} to {FORMAT}", s.format)));
    }
    let mut store = empty;
    // Capability bits are positions in the snapshot's vocabulary: map them by name onto the
    // configured one, refusing names it no longer has.
    let vocab = store.vocabulary().clone();
    let remap: Vec<CapSet> = s
        .capabilities
        .iter()
        .map(|name| {
            vocab.encode(&[name]).map_err(|_| bad(format!("capability {name:?} is not in the configured vocabulary")))
        })
        .collect::<CoreResult<_>>()?;
    let types: Vec<(Agency, String)> = s
        .type_agencies
        .iter()
        .zip(&s.type_names)
        .map(|(&a, n)| Ok((Agency::from_i32(a, "snapshot")?, n.clone())))
        .collect::<CoreResult<_>>()?;
    let areas = if s.areas.is_empty() { vec![String::new()] } else { s.areas.clone() };
    store.restore_tables(&types, &areas)?;
    let u = s.units.unwrap_or_default();
    let n = u.ids.len();
    let lens = [u.live.len(), u.agency.len(), u.unit_type.len(), u.caps_lo.len(), u.caps_hi.len(), u.status.len()];
    let lens2 = [u.home_area.len(), u.shift_start_ms.len(), u.shift_end_ms.len(), u.lat.len(), u.lon.len()];
    if lens.iter().chain(&lens2).chain(&[u.location_ms.len(), u.incident.len()]).any(|&l| l != n) {
        return Err(bad("unit columns differ in length"));
    }
    for i in 0..n {
        let stored = CapSet::from(u.caps_lo[i]) | (CapSet::from(u.caps_hi[i]) << 64);
        let caps = (0..remap.len()).filter(|&b| stored & (1 << b) != 0).fold(0, |acc, b| acc | remap[b]);
        store.restore_unit(&RestoredUnit {
            unit_id: u.ids[i].clone(),
            live: u.live[i],
            agency: Agency::from_i32(u.agency[i], "snapshot")?,
            unit_type: u16::try_from(u.unit_type[i]).map_err(|_| bad("unit type id out of range"))?,
            caps,
            status: Status::from_i32(u.status[i], "snapshot")?,
            home_area: u.home_area[i],
            shift_start_ms: u.shift_start_ms[i],
            shift_end_ms: u.shift_end_ms[i],
            lat: u.lat[i],
            lon: u.lon[i],
            location_ms: u.location_ms[i],
            incident: (!u.incident[i].is_empty()).then(|| u.incident[i].clone()),
        })?;
    }
    let plans: Vec<Arc<[RequirementGroup]>> = s
        .plans
        .iter()
        .map(|p| p.groups.iter().map(group_of).collect::<CoreResult<Vec<_>>>().map(Arc::from))
        .collect::<CoreResult<_>>()?;
    let mut incidents = Incidents::new();
    for row in s.incidents {
        let slot_ok = |slots: &[u32]| slots.iter().all(|&x| (x as usize) < n);
        if !slot_ok(&row.assigned) || !slot_ok(&row.attached) {
            return Err(bad(format!("incident {:?} refers to an unknown unit", row.incident_id)));
        }
        incidents.put(Incident {
            grade: Grade::from_i32(row.grade, "snapshot")?,
            status: IncidentStatus::from_i32(row.status, "snapshot")?,
            requirements: plans.get(row.plan as usize).cloned().ok_or_else(|| bad("unknown response plan"))?,
            incident_id: row.incident_id,
            incident_type: row.incident_type,
            lat: row.lat,
            lon: row.lon,
            area: row.area,
            assigned: row.assigned,
            attached: row.attached,
            created_ms: row.created_ms,
            first_assigned_ms: row.first_assigned_ms,
            first_on_scene_ms: row.first_on_scene_ms,
            closed_ms: row.closed_ms,
            cleared: row.cleared,
            response_plan: row.response_plan,
        });
    }
    incidents.next_number = s.next_incident_number;
    let mut requests = RequestTable::new(request_capacity);
    for r in s.requests {
        let method = Method::from_code(r.method).ok_or_else(|| bad(format!("unknown method code {}", r.method)))?;
        let answer = Remembered {
            request: Arc::from(r.request),
            response: Arc::from(r.response),
            sequence: r.sequence,
            time_ms: r.time_ms,
        };
        requests.remember(method, &r.request_id, answer);
    }
    if s.evicted_times.len() != s.evicted_fingerprints.len() {
        return Err(bad("evicted request columns differ in length"));
    }
    for (t, f) in s.evicted_times.into_iter().zip(s.evicted_fingerprints) {
        requests.restore_evicted(t, f);
    }
    // The grade column of attached units is derived: rebuilt from their incidents.
    for i in incidents.iter().filter(|i| i.is_open()) {
        store.regrade(&i.attached, i.grade);
    }
    if s.ack_slots.len() != s.ack_deadlines.len() {
        return Err(bad("acknowledgement deadline columns differ in length"));
    }
    let mut acks = crate::state::AckDeadlines::default();
    for (&slot, &due) in s.ack_slots.iter().zip(&s.ack_deadlines) {
        acks.start(slot, due);
    }
    for &slot in &s.ack_overdue {
        acks.restore_overdue(slot);
    }
    if s.ack_slots.iter().chain(&s.ack_overdue).any(|&x| x as usize >= n) {
        return Err(bad("an acknowledgement deadline refers to an unknown unit"));
    }
    let remap_caps =
        |stored: CapSet| (0..remap.len()).filter(|&b| stored & (1 << b) != 0).fold(0, |acc, b| acc | remap[b]);
    let duty = crate::duty::snapshot::decode(s.duty.unwrap_or_default(), &vocab, &remap_caps, n)?;
    let mut m = Machine::new(store, request_capacity);
    m.duty = duty;
    m.incidents = incidents;
    m.acks = acks;
    m.requests = requests;
    let plans = s.response_plans.iter().map(plan_of).collect::<CoreResult<Vec<_>>>()?;
    // Checked as an install would be: a snapshot must not bring in plans the configured
    // vocabulary cannot serve, nor a tie the resolution could not settle.
    if let Some(p) = PlanBook::problems(&plans, m.vocabulary()).first() {
        return Err(bad(format!("response plan {} is refused now: {} {}", p.plan, p.field, p.reason)));
    }
    m.plans = PlanBook::trusted(plans, s.plans_source, s.plans_installed_ms);
    m.clock_ms = s.clock_ms;
    m.sequence = s.sequence;
    m.check_invariants().map_err(|e| bad(format!("is inconsistent: {e}")))?;
    Ok(m)
}

/// A 64-bit digest of the whole state (FNV-1a over the canonical snapshot): equal states
/// have equal digests, and the simulator prints it to show two runs agree.
pub fn digest(m: &Machine) -> u64 {
    encode(m).iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::RankConfig;
    use crate::plans::TimeWindow;
    use crate::state::JournalAnswer;
    use crate::wire::pb;

    fn store() -> UnitStore {
        UnitStore::new(RankConfig::default(), 0.01).unwrap()
    }

    fn with_plans() -> Machine {
        let mut m = Machine::new(store(), 100);
        let plan = pb::ResponsePlan {
            name: "night".into(),
            incident_type: "burglary".into(),
            grade: 2,
            area: "Camden".into(),
            time_window: Some(pb::TimeOfDayWindow { start_minute: 1320, end_minute: 360 }),
            groups: vec![pb::RequirementGroup { agency: 1, count: 2, arrive_together: true, ..Default::default() }],
        };
        let request =
            pb::ReplaceResponsePlansRequest { request_id: "p".into(), plans: vec![plan], source: "f.toml".into() };
        let outcome = m.execute(
            Method::ReplaceResponsePlans,
            &request.encode_to_vec(),
            1_750_000_000_000,
            JournalAnswer::Unchecked,
        );
        assert!(matches!(outcome, crate::state::Outcome::Applied { .. }), "{outcome:?}");
        m
    }

    #[test]
    fn plans_survive_a_snapshot() {
        let m = with_plans();
        let restored = decode(&encode(&m), store(), 100).unwrap();
        assert_eq!(restored.response_plans(), m.response_plans());
        let p = &restored.response_plans().plans()[0];
        assert_eq!(p.window, Some(TimeWindow { start_minute: 1320, end_minute: 360 }));
        assert!(p.groups[0].arrive_together);
        assert_eq!(encode(&restored), encode(&m));
    }

    #[test]
    fn a_format_2_snapshot_loads_with_no_plans_and_other_formats_are_refused_by_number() {
        // A format 2 snapshot is this layout without fields 18-20: what an older build wrote.
        let mut old = SnapshotMsg::decode(encode(&Machine::new(store(), 100)).as_slice()).unwrap();
        old.format = 2;
        old.duty = None;
        let m = decode(&old.encode_to_vec(), store(), 100).unwrap();
        assert!(m.response_plans().plans().is_empty() && m.response_plans().installed_ms.is_none());
        for format in [1, 4] {
            old.format = format;
            let e = decode(&old.encode_to_vec(), store(), 100).unwrap_err();
            assert!(e.to_string().contains(&format!("has format {format}; this build reads formats 2 to 3")), "{e}");
        }
    }

    #[test]
    fn a_snapshot_whose_plans_the_vocabulary_lacks_is_refused() {
        let m = with_plans();
        let mut msg = SnapshotMsg::decode(encode(&m).as_slice()).unwrap();
        msg.response_plans[0].groups[0].capabilities = vec!["tazer".into()];
        let e = decode(&msg.encode_to_vec(), store(), 100).unwrap_err();
        assert!(e.to_string().contains("response plan 0 is refused"), "{e}");
        m.check_invariants().unwrap();
    }

    /// Plans, acknowledgement deadlines and `cleared` counts side by side in one state.
    fn with_everything() -> Machine {
        let mut m = with_plans();
        m.ack_timeouts = crate::state::AckTimeouts([Some(60_000), Some(60_000), Some(60_000), None]);
        let t = 1_750_000_000_000;
        let mut ok = |method: Method, bytes: Vec<u8>, at: i64| {
            let outcome = m.execute(method, &bytes, at, JournalAnswer::Unchecked);
            assert!(matches!(outcome, crate::state::Outcome::Applied { .. }), "{method:?}: {outcome:?}");
        };
        for id in ["A", "B"] {
            let unit = pb::UnitSpec { unit_id: id.into(), agency: 1, unit_type: "irv".into(), ..Default::default() };
            ok(
                Method::UpsertUnit,
                pb::UpsertUnitRequest { request_id: format!("u{id}"), unit: Some(unit) }.encode_to_vec(),
                t,
            );
        }
        let create = pb::CreateIncidentRequest {
            request_id: "c".into(),
            incident_id: "I1".into(),
            grade: 2,
            incident_type: "burglary".into(),
            location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
            requirements: vec![pb::RequirementGroup { agency: 1, count: 2, ..Default::default() }],
            ..Default::default()
        };
        ok(Method::CreateIncident, create.encode_to_vec(), t + 1);
        let assign = |rid: &str, unit: &str| {
            pb::AssignUnitsRequest {
                request_id: rid.into(),
                incident_id: "I1".into(),
                unit_ids: vec![unit.into()],
                ..Default::default()
            }
            .encode_to_vec()
        };
        let status = |rid: &str, unit: &str, to: Status| {
            pb::SetUnitStatusRequest { request_id: rid.into(), unit_id: unit.into(), status: to as i32 }.encode_to_vec()
        };
        // A attends and leaves (cleared 1); B is dispatched and has not acknowledged yet.
        ok(Method::AssignUnits, assign("a1", "A"), t + 2);
        ok(Method::SetUnitStatus, status("s1", "A", Status::OnScene), t + 3);
        ok(Method::SetUnitStatus, status("s2", "A", Status::Available), t + 4);
        ok(Method::AssignUnits, assign("a2", "B"), t + 5);
        assert_eq!(m.incidents().get("I1").unwrap().cleared, 1);
        assert_eq!(m.acks().deadlines().count(), 1);
        m
    }

    #[test]
    fn plans_deadlines_and_cleared_counts_survive_one_snapshot_byte_for_byte() {
        let m = with_everything();
        let bytes = encode(&m);
        assert_eq!(SnapshotMsg::decode(bytes.as_slice()).unwrap().format, FORMAT);
        let restored = decode(&bytes, store(), 100).unwrap();
        assert_eq!(restored.response_plans(), m.response_plans());
        assert_eq!(restored.acks().deadlines().collect::<Vec<_>>(), m.acks().deadlines().collect::<Vec<_>>());
        assert_eq!(restored.incidents().get("I1").unwrap().cleared, 1);
        assert_eq!(encode(&restored), bytes);
        assert_eq!(digest(&restored), digest(&m));
    }

    #[test]
    fn a_format_2_snapshot_with_deadlines_keeps_them_and_has_no_plans() {
        // What the build before response plans wrote: deadlines and `cleared`, no plans.
        let mut old = SnapshotMsg::decode(encode(&with_everything()).as_slice()).unwrap();
        old.format = 2;
        old.duty = None;
        old.response_plans.clear();
        old.plans_source.clear();
        old.plans_installed_ms = None;
        for row in &mut old.incidents {
            row.response_plan.clear();
        }
        let m = decode(&old.encode_to_vec(), store(), 100).unwrap();
        assert!(m.response_plans().plans().is_empty());
        assert_eq!(m.acks().deadlines().count(), 1);
        assert_eq!(m.incidents().get("I1").unwrap().cleared, 1);
        m.check_invariants().unwrap();
    }

    /// [`with_everything`] and a roster: unit C crewed by a firearms officer on shift.
    fn with_roster() -> Machine {
        let mut m = with_everything();
        let t = 1_750_000_000_000;
        let h = 3_600_000;
        let ts = crate::wire::encode::timestamp;
        let mut ok = |method: Method, bytes: Vec<u8>| {
            let outcome = m.execute(method, &bytes, t + 10, JournalAnswer::Unchecked);
            assert!(matches!(outcome, crate::state::Outcome::Applied { .. }), "{method:?}: {outcome:?}");
        };
        let unit = pb::UnitSpec { unit_id: "C".into(), agency: 1, unit_type: "arv".into(), ..Default::default() };
        ok(Method::UpsertUnit, pb::UpsertUnitRequest { request_id: "uC".into(), unit: Some(unit) }.encode_to_vec());
        let skill = pb::Skill { capability: "firearms".into(), valid_from: None, expiry: Some(ts(t + 4 * h)) };
        let person = pb::Person { person_id: "P1".into(), name: "PC One".into(), skills: vec![skill] };
        ok(
            Method::UpsertPerson,
            pb::UpsertPersonRequest { request_id: "p1".into(), person: Some(person) }.encode_to_vec(),
        );
        let shift = pb::Shift {
            shift_id: "S1".into(),
            person_id: "P1".into(),
            start: Some(ts(t)),
            end: Some(ts(t + 8 * h)),
            ..Default::default()
        };
        ok(Method::UpsertShift, pb::UpsertShiftRequest { request_id: "s1".into(), shift: Some(shift) }.encode_to_vec());
        let crew = pb::Crew {
            crew_id: "K1".into(),
            unit_id: "C".into(),
            person_ids: vec!["P1".into()],
            start: Some(ts(t)),
            end: Some(ts(t + 8 * h)),
            minimums: Vec::new(),
        };
        ok(Method::BookCrew, pb::BookCrewRequest { request_id: "k1".into(), crew: Some(crew) }.encode_to_vec());
        m
    }

    #[test]
    fn plans_deadlines_and_a_roster_share_format_3_byte_for_byte() {
        let m = with_roster();
        let bytes = encode(&m);
        let msg = SnapshotMsg::decode(bytes.as_slice()).unwrap();
        assert_eq!(msg.format, FORMAT);
        assert!(!msg.response_plans.is_empty() && msg.duty.is_some());
        let restored = decode(&bytes, store(), 100).unwrap();
        assert_eq!(restored.duty().sizes(), (1, 1, 1, 1));
        assert_eq!(restored.duty().next_due(), m.duty().next_due());
        assert_eq!(restored.response_plans(), m.response_plans());
        assert_eq!(restored.acks().deadlines().count(), 1);
        let slot = restored.units().slot("C").unwrap() as usize;
        assert_eq!(restored.vocabulary().decode(restored.units().table().caps[slot]), ["firearms"]);
        assert_eq!(encode(&restored), bytes);
        assert_eq!(digest(&restored), digest(&m));
    }

    #[test]
    fn a_format_3_snapshot_without_the_roster_field_loads_with_nobody_rostered() {
        // What a build with response plans but before duty management wrote.
        let mut msg = SnapshotMsg::decode(encode(&with_everything()).as_slice()).unwrap();
        msg.duty = None;
        let m = decode(&msg.encode_to_vec(), store(), 100).unwrap();
        assert_eq!(m.duty().sizes(), (0, 0, 0, 0));
        assert_eq!(m.duty().next_due(), None);
        assert!(!m.response_plans().plans().is_empty());
        assert_eq!(encode(&m), encode(&with_everything()));
        m.check_invariants().unwrap();
    }
}
