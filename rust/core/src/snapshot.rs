//! Snapshots: the whole state machine as bytes, and back.
//!
//! A snapshot holds everything replay cannot rebuild from the entries after it: units
//! (their slots, live or removed, static attributes, status, incident link and last
//! position with its time, since pings are not journaled), incidents, the idempotency table,
//! the clock, the sequence and the counter behind server-chosen incident ids. The encoding
//! is Protocol Buffers (messages declared here with prost), units column by column so that
//! encoding is a few copies of packed arrays. [`FORMAT`] versions the layout; another
//! version is refused with a message naming it, never guessed at.
//!
//! The encoding is canonical (every collection in a fixed order), so two states are equal
//! exactly when their snapshots are byte-equal: the replay tests compare snapshots, and
//! [`digest`] hashes one.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use prost::Message;

use crate::caps::CapSet;
use crate::command::{Method, RequirementGroup};
use crate::error::{CoreError, CoreResult};
use crate::state::{Incident, Incidents, Machine, Remembered, RequestTable};
use crate::store::{RestoredUnit, UnitStore};
use crate::types::{Agency, Grade, IncidentStatus, Status};

/// The layout version written by this build. Version 1 was the JSON of the Python engine.
pub const FORMAT: u32 = 2;

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
    /// People, shifts, crews and rostered units ([`crate::duty::snapshot`]).
    #[prost(message, optional, tag = "40")]
    duty: Option<crate::duty::snapshot::DutyMsg>,
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
    }
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
}

impl Captured {
    /// The journal sequence the copy was taken at.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The snapshot bytes (canonical).
    pub fn encode(&self) -> Vec<u8> {
        let mut plan_index: BTreeMap<*const [RequirementGroup], u32> = BTreeMap::new();
        let mut plans = Vec::new();
        let mut incidents = Vec::with_capacity(self.incidents.len());
        for i in self.incidents.values() {
            // Shared plans are written once. Keyed by pointer: equal plans that are not
            // shared are written twice, which keeps encoding a lookup, not a comparison.
            let key = Arc::as_ptr(&i.requirements);
            let plan = *plan_index.entry(key).or_insert_with(|| {
                plans.push(PlanRow { groups: i.requirements.iter().map(group_row).collect() });
                (plans.len() - 1) as u32
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
    if s.format != FORMAT {
        return Err(bad(format!("has format {}; this build reads format {FORMAT}", s.format)));
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
        .map(|p| {
            p.groups
                .iter()
                .map(|g| {
                    Ok(RequirementGroup {
                        agency: Agency::from_i32(g.agency, "snapshot")?,
                        unit_types: g.unit_types.clone(),
                        capabilities: g.capabilities.clone(),
                        count: g.count,
                    })
                })
                .collect::<CoreResult<Vec<_>>>()
                .map(Arc::from)
        })
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
