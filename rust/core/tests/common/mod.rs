//! Shared by the replay property (`tests/replay.rs`) and the deterministic simulation
//! (`tests/simulation.rs`): commands over small pools of colliding ids (plus hostile values
//! in every field), a journal model with the server's CheckJournal lookup, the checks every
//! outcome must pass against that journal, and replay / restore helpers.
#![allow(dead_code)]

use dispatch_engine::command::Method;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::state::requests::RETENTION_MS;
use dispatch_engine::state::{AckTimeouts, JournalAnswer, JournalHit, Machine, Outcome};
use dispatch_engine::store::UnitStore;
use dispatch_engine::wire::{decode, pb, reads};
use dispatch_engine::{record, snapshot};
use prost::Message;

/// 2023-11-14T22:13:20Z: where the clocks of both tests start.
pub const T0: i64 = 1_700_000_000_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;

// ------------------------------------------------------------------------------- pools

/// Ids every generator draws from, few so that commands collide.
pub const UNIT_IDS: &[&str] = &["U1", "U2", "U3", "U4", "U5"];
/// Client incident ids; the last two are also what the server allocates first.
pub const INCIDENT_IDS: &[&str] = &["I1", "I2", "I3", "INC-000001", "INC-000002"];
pub const UNIT_TYPES: &[&str] = &["irv", "arv", "pump", "ambulance"];
/// Known capabilities of the default vocabulary.
pub const CAPS: &[&str] = &["firearms", "taser", "dog", "first_aid", "negotiator"];
pub const AREAS: &[&str] = &["Westminster", "Camden"];

/// Strings no id field accepts, or accepts only at the edge: empty, 65 bytes, 64 bytes of
/// four-byte characters (valid), 68 bytes of them, control and bidi characters, an
/// unknown capability name.
pub fn hostile_strings() -> Vec<String> {
    vec![
        String::new(),
        "x".repeat(65),
        "\u{1f693}".repeat(16),
        "\u{1f693}".repeat(17),
        "a\u{0}b".into(),
        " ".into(),
        "\u{202e}evil".into(),
        "dogg".into(),
        "y".repeat(64),
    ]
}

/// Coordinates no location accepts (or only at the edge).
pub const HOSTILE_F64: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    90.000_000_1,
    -90.000_000_1,
    180.000_000_1,
    1e308,
    -0.0,
    5e-324,
    90.0,
    -180.0,
    f64::MAX,
    f64::MIN,
];

/// Enum numbers outside every dispatch.v1 enum (0 is UNSPECIFIED, never valid).
pub const HOSTILE_ENUMS: &[i32] = &[0, -1, 5, 8, 99, i32::MAX, i32::MIN];

/// Requirement counts outside 1..=50.
pub const HOSTILE_COUNTS: &[u32] = &[0, 51, u32::MAX];

/// Timestamps (seconds, nanos) outside 2000..2100 or malformed, and the two edges.
pub const HOSTILE_TIMESTAMPS: &[(i64, i32)] = &[
    (631_152_000, 0),    // 1990
    (4_102_444_800, 0),  // 2100-01-01: excluded
    (-1, 0),             // 1969
    (1_700_000_000, -1), // bad nanos
    (1_700_000_000, 1_000_000_000),
    (i64::MAX, 0),
    (i64::MIN, 0),
    (946_684_800, 0),             // 2000-01-01: the first valid instant
    (4_102_444_799, 999_999_999), // the last valid instant
];

// ----------------------------------------------------------------------------- commands

/// One requirement group, as the client writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub agency: i32,
    pub unit_types: Vec<String>,
    pub capabilities: Vec<String>,
    pub count: u32,
}

/// A response plan as the server sends it in ReplaceResponsePlans.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    pub name: String,
    pub incident_type: String,
    pub grade: i32,
    pub area: String,
    pub window: Option<(u32, u32)>,
    pub groups: Vec<Group>,
}

impl PlanSpec {
    pub fn pb(&self) -> pb::ResponsePlan {
        pb::ResponsePlan {
            name: self.name.clone(),
            incident_type: self.incident_type.clone(),
            grade: self.grade,
            area: self.area.clone(),
            time_window: self.window.map(|(s, e)| pb::TimeOfDayWindow { start_minute: s, end_minute: e }),
            groups: self.groups.iter().map(Group::pb).collect(),
        }
    }
}

impl Group {
    pub fn pb(&self) -> pb::RequirementGroup {
        pb::RequirementGroup {
            agency: self.agency,
            unit_types: self.unit_types.clone(),
            capabilities: self.capabilities.clone(),
            count: self.count,
            arrive_together: false,
        }
    }
}

/// A command as a client sends it (fields may hold hostile values).
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Upsert {
        rid: String,
        unit_id: String,
        agency: i32,
        unit_type: String,
        caps: Vec<String>,
        area: String,
        shift_start: Option<(i64, i32)>,
        shift_end: Option<(i64, i32)>,
    },
    Status {
        rid: String,
        unit_id: String,
        status: i32,
    },
    Create {
        rid: String,
        incident_id: String,
        grade: i32,
        incident_type: String,
        location: Option<(f64, f64)>,
        area: String,
        groups: Vec<Group>,
    },
    Update {
        rid: String,
        incident_id: String,
        grade: Option<i32>,
        incident_type: Option<String>,
        location: Option<(f64, f64)>,
        area: Option<String>,
        groups: Option<Vec<Group>>,
    },
    Close {
        rid: String,
        incident_id: String,
    },
    Assign {
        rid: String,
        incident_id: String,
        unit_ids: Vec<String>,
        /// allow_diversion: units attached elsewhere may be taken (pre-emption).
        divert: bool,
    },
    Tick,
    /// Installs response plans.
    Plans {
        rid: String,
        plans: Vec<PlanSpec>,
    },
    /// Bytes that are not (or not only) a well-formed request of `method`.
    Raw {
        method: Method,
        bytes: Vec<u8>,
    },
}

fn ts(t: Option<(i64, i32)>) -> Option<prost_types::Timestamp> {
    t.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

fn loc(l: Option<(f64, f64)>) -> Option<pb::Location> {
    l.map(|(lat, lon)| pb::Location { lat, lon })
}

/// An unknown field (number 99, varint 1): prost skips it, so the request is the same.
pub const UNKNOWN_FIELD: &[u8] = &[0x98, 0x06, 0x01];

impl Cmd {
    pub fn method(&self) -> Method {
        match self {
            Cmd::Upsert { .. } => Method::UpsertUnit,
            Cmd::Status { .. } => Method::SetUnitStatus,
            Cmd::Create { .. } => Method::CreateIncident,
            Cmd::Update { .. } => Method::UpdateIncident,
            Cmd::Close { .. } => Method::CloseIncident,
            Cmd::Assign { .. } => Method::AssignUnits,
            Cmd::Tick => Method::Tick,
            Cmd::Plans { .. } => Method::ReplaceResponsePlans,
            Cmd::Raw { method, .. } => *method,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Cmd::Upsert { rid, .. }
            | Cmd::Status { rid, .. }
            | Cmd::Create { rid, .. }
            | Cmd::Update { rid, .. }
            | Cmd::Close { rid, .. }
            | Cmd::Assign { rid, .. }
            | Cmd::Plans { rid, .. } => Some(rid),
            Cmd::Tick | Cmd::Raw { .. } => None,
        }
    }

    pub fn with_request_id(mut self, id: &str) -> Cmd {
        match &mut self {
            Cmd::Upsert { rid, .. }
            | Cmd::Status { rid, .. }
            | Cmd::Create { rid, .. }
            | Cmd::Update { rid, .. }
            | Cmd::Close { rid, .. }
            | Cmd::Assign { rid, .. }
            | Cmd::Plans { rid, .. } => *rid = id.to_owned(),
            Cmd::Tick | Cmd::Raw { .. } => {}
        }
        self
    }

    /// The request bytes a client sends.
    pub fn encode(&self) -> Vec<u8> {
        match self.clone() {
            Cmd::Upsert { rid, unit_id, agency, unit_type, caps, area, shift_start, shift_end } => {
                pb::UpsertUnitRequest {
                    request_id: rid,
                    unit: Some(pb::UnitSpec {
                        unit_id,
                        agency,
                        unit_type,
                        capabilities: caps,
                        home_area: area,
                        shift_start: ts(shift_start),
                        shift_end: ts(shift_end),
                    }),
                }
                .encode_to_vec()
            }
            Cmd::Status { rid, unit_id, status } => {
                pb::SetUnitStatusRequest { request_id: rid, unit_id, status }.encode_to_vec()
            }
            Cmd::Create { rid, incident_id, grade, incident_type, location, area, groups } => {
                pb::CreateIncidentRequest {
                    request_id: rid,
                    incident_id,
                    grade,
                    incident_type,
                    location: loc(location),
                    area,
                    requirements: groups.iter().map(Group::pb).collect(),
                }
                .encode_to_vec()
            }
            Cmd::Update { rid, incident_id, grade, incident_type, location, area, groups } => {
                pb::UpdateIncidentRequest {
                    request_id: rid,
                    incident_id,
                    grade,
                    incident_type,
                    location: loc(location),
                    area,
                    requirements: groups.map(|g| pb::Requirements { groups: g.iter().map(Group::pb).collect() }),
                }
                .encode_to_vec()
            }
            Cmd::Close { rid, incident_id } => {
                pb::CloseIncidentRequest { request_id: rid, incident_id }.encode_to_vec()
            }
            Cmd::Assign { rid, incident_id, unit_ids, divert } => {
                pb::AssignUnitsRequest { request_id: rid, incident_id, unit_ids, allow_diversion: divert }
                    .encode_to_vec()
            }
            Cmd::Tick => Vec::new(),
            Cmd::Plans { rid, plans } => pb::ReplaceResponsePlansRequest {
                request_id: rid,
                plans: plans.iter().map(PlanSpec::pb).collect(),
                source: "plans.toml".into(),
            }
            .encode_to_vec(),
            Cmd::Raw { bytes, .. } => bytes,
        }
    }

    /// The same request in other bytes: an unknown field appended.
    pub fn encode_with_unknown_field(&self) -> Vec<u8> {
        let mut bytes = self.encode();
        bytes.extend_from_slice(UNKNOWN_FIELD);
        bytes
    }

    /// A different request of the same method with the same request_id (`k` picks which
    /// field changes). A retry with it must be refused while the first is remembered.
    pub fn tweak(&self, k: u8) -> Cmd {
        let mut c = self.clone();
        let other = |pool: &[&str], current: &str| {
            let i = pool.iter().position(|p| *p == current).map_or(0, |i| i + 1);
            pool[i % pool.len()].to_owned()
        };
        match &mut c {
            Cmd::Upsert { unit_id, agency, caps, area, .. } => match k % 4 {
                0 => *agency = *agency % 3 + 1,
                1 => *unit_id = other(UNIT_IDS, unit_id),
                2 => *area = other(AREAS, area),
                _ => {
                    if caps.pop().is_none() {
                        caps.push("taser".into());
                    }
                }
            },
            Cmd::Status { unit_id, status, .. } => match k % 2 {
                0 => *status = status.rem_euclid(7) + 1,
                _ => *unit_id = other(UNIT_IDS, unit_id),
            },
            Cmd::Create { incident_id, grade, location, .. } => match k % 3 {
                0 => *grade = grade.rem_euclid(4) + 1,
                1 => *incident_id = other(INCIDENT_IDS, incident_id),
                _ => *location = Some(location.map_or((51.5, -0.1), |(la, lo)| (la + 0.001, lo))),
            },
            Cmd::Update { incident_id, grade, area, .. } => match k % 3 {
                0 => *grade = Some(grade.map_or(1, |g| g.rem_euclid(4) + 1)),
                1 => *incident_id = other(INCIDENT_IDS, incident_id),
                _ => {
                    *area = Some(match area.as_deref() {
                        Some("Camden") => "Westminster".into(),
                        _ => "Camden".into(),
                    })
                }
            },
            Cmd::Close { incident_id, .. } => *incident_id = other(INCIDENT_IDS, incident_id),
            Cmd::Assign { incident_id, unit_ids, .. } => {
                if unit_ids.len() > 1 && k % 2 == 0 {
                    // The same units in another order: another request.
                    unit_ids.reverse();
                } else {
                    *incident_id = other(INCIDENT_IDS, incident_id);
                }
            }
            Cmd::Plans { plans, .. } => {
                if plans.pop().is_none() {
                    plans.push(PlanSpec {
                        name: "p".into(),
                        incident_type: "rtc".into(),
                        grade: 0,
                        area: String::new(),
                        window: None,
                        groups: vec![Group { agency: 1, unit_types: vec![], capabilities: vec![], count: 1 }],
                    });
                }
            }
            Cmd::Tick | Cmd::Raw { .. } => {}
        }
        c
    }
}

// ------------------------------------------------------------------------------ journal

pub fn empty_store() -> UnitStore {
    UnitStore::new(RankConfig::default(), 0.01).expect("the default store builds")
}

pub fn fresh_machine(request_capacity: usize) -> Machine {
    let mut m = Machine::new(empty_store(), request_capacity);
    m.ack_timeouts = ACK_TIMEOUTS;
    m
}

/// The acknowledgement deadlines every test machine runs with (configuration: a restored
/// machine must be given the same).
pub const ACK_TIMEOUTS: AckTimeouts = AckTimeouts([Some(60_000), Some(120_000), Some(600_000), None]);

/// One journal entry, as the server writes it, plus the machine's clock after the command
/// (what the idempotency table remembers it at; kept for the checks).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub sequence: u64,
    pub method: Method,
    pub request_id: String,
    pub payload: Vec<u8>,
    pub response: Vec<u8>,
    pub clock_ms: i64,
}

/// What the server's journal index answers for (method, request_id): the latest entry.
pub fn journal_lookup(journal: &[Entry], method: Method, request_id: &str) -> JournalAnswer {
    match journal.iter().rev().find(|e| e.method == method && e.request_id == request_id) {
        Some(e) => JournalAnswer::Found(JournalHit {
            request: record::request(&e.payload).expect("a journaled payload decodes").to_vec(),
            response: e.response.clone(),
            sequence: e.sequence,
        }),
        None => JournalAnswer::Absent,
    }
}

/// Executes as the server does: a CheckJournal is answered from `journal` and the command
/// executed again. Returns the final outcome and whether the journal was consulted.
pub fn execute(m: &mut Machine, journal: &[Entry], method: Method, request: &[u8], time_ms: i64) -> (Outcome, bool) {
    match m.execute(method, request, time_ms, JournalAnswer::Unchecked) {
        Outcome::CheckJournal { request_id } => {
            let answer = journal_lookup(journal, method, &request_id);
            let again = m.execute(method, request, time_ms, answer);
            assert!(
                !matches!(again, Outcome::CheckJournal { .. }),
                "execute asked for a journal lookup of {request_id:?} again after being given one"
            );
            (again, true)
        }
        other => (other, false),
    }
}

/// What a checked outcome was.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Applied {
        sequence: u64,
        response: Vec<u8>,
    },
    /// `stale_positions`: the answer differed from the journaled one only in the position of
    /// a unit (see [`differs_only_in_positions`]); `response` is then the journaled answer.
    Repeated {
        sequence: u64,
        response: Vec<u8>,
        stale_positions: bool,
    },
    Refused(String),
}

/// Whether two encoded answers of `method` differ only in a unit's location and its time:
/// what a replay recomputes differently, because pings are not journaled.
pub fn differs_only_in_positions(method: Method, a: &[u8], b: &[u8]) -> bool {
    fn strip(u: &mut Option<pb::Unit>) {
        if let Some(u) = u {
            u.location = None;
            u.location_time = None;
        }
    }
    match method {
        Method::UpsertUnit => match (pb::UpsertUnitResponse::decode(a), pb::UpsertUnitResponse::decode(b)) {
            (Ok(mut x), Ok(mut y)) => {
                strip(&mut x.unit);
                strip(&mut y.unit);
                x == y
            }
            _ => false,
        },
        Method::SetUnitStatus => match (pb::SetUnitStatusResponse::decode(a), pb::SetUnitStatusResponse::decode(b)) {
            (Ok(mut x), Ok(mut y)) => {
                strip(&mut x.unit);
                strip(&mut y.unit);
                x == y
            }
            _ => false,
        },
        _ => false,
    }
}

/// Checks `outcome` (of `method` with `request` at `time_ms`, on `m` whose digest was
/// `before`) against the journal, and journals an applied command:
/// - applied: the next sequence; a (method, request_id) already journaled must have been
///   forgotten by a clock command at least [`RETENTION_MS`] after it (idempotency is
///   never lost inside the window);
/// - repeated: the journaled entry of that sequence has this method, request_id, request
///   and response, and nothing changed;
/// - refused: nothing changed (atomic apply).
pub fn check_outcome(
    m: &Machine,
    journal: &mut Vec<Entry>,
    method: Method,
    request: &[u8],
    time_ms: i64,
    outcome: Outcome,
    before: u64,
) -> Result<Seen, String> {
    match outcome {
        Outcome::Applied { sequence, request_id, request: canonical, response, .. } => {
            let expected = journal.len() as u64 + 1;
            if sequence != expected || m.sequence() != sequence {
                return Err(format!(
                    "{} applied as sequence {sequence} (machine at {}), expected {expected}",
                    method.name(),
                    m.sequence()
                ));
            }
            if method != Method::Tick {
                let decoded = decode::command(method, request, m.vocabulary()).map_err(|e| format!("{e}"))?;
                if decoded.canonical != canonical || decoded.request_id != request_id {
                    return Err(format!("{} journaled a request other than its canonical form", method.name()));
                }
                if let Some(prev) = journal.iter().rev().find(|e| e.method == method && e.request_id == request_id) {
                    let forgotten = journal[prev.sequence as usize..]
                        .iter()
                        .any(|e| e.method == Method::Tick && e.clock_ms >= prev.clock_ms + RETENTION_MS);
                    if !forgotten {
                        return Err(format!(
                            "{} {request_id:?} applied again as sequence {sequence}, although sequence {} \
                             applied it at {} ms and no clock command has forgotten it (clock now {} ms)",
                            method.name(),
                            prev.sequence,
                            prev.clock_ms,
                            m.clock_ms()
                        ));
                    }
                }
            }
            journal.push(Entry {
                sequence,
                method,
                request_id,
                payload: record::encode(time_ms, &canonical),
                response: response.clone(),
                clock_ms: m.clock_ms(),
            });
            Ok(Seen::Applied { sequence, response })
        }
        Outcome::Repeated { sequence, response } => {
            if snapshot::digest(m) != before {
                return Err(format!("a repeated {} changed the state", method.name()));
            }
            let decoded = decode::command(method, request, m.vocabulary()).map_err(|e| format!("{e}"))?;
            let entry = sequence
                .checked_sub(1)
                .and_then(|i| journal.get(i as usize))
                .ok_or_else(|| format!("{} repeated sequence {sequence}, not in the journal", method.name()))?;
            let first = record::request(&entry.payload).map_err(|e| e.to_string())?;
            let stale_positions =
                entry.response != response && differs_only_in_positions(method, &entry.response, &response);
            if entry.method != method
                || entry.request_id != decoded.request_id
                || first != decoded.canonical.as_slice()
                || (entry.response != response && !stale_positions)
            {
                return Err(format!(
                    "{} {:?} repeated sequence {sequence}, whose entry is {} {:?} with another request or answer",
                    method.name(),
                    decoded.request_id,
                    entry.method.name(),
                    entry.request_id
                ));
            }
            Ok(Seen::Repeated { sequence, response: entry.response.clone(), stale_positions })
        }
        Outcome::Refused(e) => {
            if snapshot::digest(m) != before {
                return Err(format!("a refused {} changed the state (refused with: {e})", method.name()));
            }
            let text = e.to_string();
            if text.is_empty() {
                return Err(format!("a refused {} has an empty message", method.name()));
            }
            Ok(Seen::Refused(text))
        }
        Outcome::CheckJournal { request_id } => Err(format!("unresolved CheckJournal for {request_id:?}")),
    }
}

/// Replays `entries` into `m`; every entry must apply as the next sequence. Returns the
/// entries whose answer differed from the journaled one.
pub fn replay<'a>(m: &mut Machine, entries: &'a [Entry]) -> Result<Vec<&'a Entry>, String> {
    let mut differ = Vec::new();
    for e in entries {
        let same = m
            .replay(e.sequence, e.method.name(), &e.payload, &e.response)
            .map_err(|err| format!("replay of entry {} ({}): {err}", e.sequence, e.method.name()))?;
        if !same {
            differ.push(e);
        }
        m.check_invariants().map_err(|err| format!("after replaying entry {}: {err}", e.sequence))?;
    }
    Ok(differ)
}

/// Restores a snapshot (or starts empty) and replays the journal after it: what a restart
/// does. Returns the machine and the replayed entries whose answer differed.
pub fn restore<'a>(
    snap: Option<&[u8]>,
    journal: &'a [Entry],
    capacity: usize,
) -> Result<(Machine, Vec<&'a Entry>), String> {
    let mut m = match snap {
        Some(bytes) => {
            let mut m =
                snapshot::decode(bytes, empty_store(), capacity).map_err(|e| format!("snapshot decode: {e}"))?;
            m.ack_timeouts = ACK_TIMEOUTS;
            m
        }
        None => fresh_machine(capacity),
    };
    let from = m.sequence() as usize;
    if from > journal.len() {
        return Err(format!("snapshot at sequence {from} is ahead of the journal ({} entries)", journal.len()));
    }
    let differ = replay(&mut m, &journal[from..])?;
    Ok((m, differ))
}

// -------------------------------------------------------------------------------- reads

/// The whole pending queue through ListPending pages of `page_size`, checked against the
/// obvious oracle: every open incident with fewer units counted than its plan asks for,
/// sorted by grade, creation time and id.
pub fn all_pending(m: &Machine, page_size: i32, now_ms: i64) -> Result<Vec<pb::PendingIncident>, String> {
    let mut out: Vec<pb::PendingIncident> = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let req = pb::ListPendingRequest { page_size, page_token: token.clone(), ..Default::default() };
        let bytes = reads::list_pending(m, &req.encode_to_vec(), now_ms).map_err(|e| format!("ListPending: {e}"))?;
        let page = pb::ListPendingResponse::decode(bytes.as_slice()).map_err(|e| format!("ListPending answer: {e}"))?;
        out.extend(page.incidents);
        if page.next_page_token.is_empty() {
            let mut expected: Vec<_> = m
                .incidents()
                .iter()
                .filter(|i| {
                    i.is_open() && (i.attached.len() as u32 + i.cleared) < i.requirements.iter().map(|g| g.count).sum()
                })
                .map(|i| (i.grade as i32, i.created_ms, i.incident_id.clone()))
                .collect();
            expected.sort();
            let got: Vec<_> = out
                .iter()
                .map(|p| {
                    let i = p.incident.clone().unwrap_or_default();
                    let created = i.create_time.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
                    (i.grade, created, i.incident_id)
                })
                .collect();
            if got != expected {
                return Err(format!("ListPending lists {got:?}, the incidents needing units are {expected:?}"));
            }
            return Ok(out);
        }
        token = page.next_page_token;
    }
    Err("ListPending did not end".into())
}

/// Every unit through ListUnits pages of `page_size`, checked in strictly increasing id order.
pub fn all_units(m: &Machine, page_size: i32) -> Result<Vec<pb::Unit>, String> {
    let mut out: Vec<pb::Unit> = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let req = pb::ListUnitsRequest { page_size, page_token: token.clone(), ..Default::default() };
        let bytes = reads::list_units(m, &req.encode_to_vec()).map_err(|e| format!("ListUnits: {e}"))?;
        let page = pb::ListUnitsResponse::decode(bytes.as_slice()).map_err(|e| format!("ListUnits answer: {e}"))?;
        for u in page.units {
            if out.last().is_some_and(|last| last.unit_id >= u.unit_id) {
                return Err(format!("ListUnits is not in strictly increasing id order at {:?}", u.unit_id));
            }
            out.push(u);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
    Err("ListUnits pages never end".into())
}

/// Every incident through ListIncidents pages of `page_size`, checked in id order.
pub fn all_incidents(m: &Machine, page_size: i32) -> Result<Vec<pb::Incident>, String> {
    let mut out: Vec<pb::Incident> = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let req = pb::ListIncidentsRequest { page_size, page_token: token.clone(), ..Default::default() };
        let bytes = reads::list_incidents(m, &req.encode_to_vec()).map_err(|e| format!("ListIncidents: {e}"))?;
        let page =
            pb::ListIncidentsResponse::decode(bytes.as_slice()).map_err(|e| format!("ListIncidents answer: {e}"))?;
        for i in page.incidents {
            if out.last().is_some_and(|last| last.incident_id >= i.incident_id) {
                return Err(format!("ListIncidents is not in strictly increasing id order at {:?}", i.incident_id));
            }
            out.push(i);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
    Err("ListIncidents pages never end".into())
}

/// The state without unit positions (which are not journaled): what a replay from scratch
/// must agree on with a restore when positions were reported.
#[derive(Debug, PartialEq)]
pub struct Projection {
    pub sequence: u64,
    pub clock_ms: i64,
    pub next_incident_number: u64,
    pub remembered: usize,
    pub evicted: usize,
    pub units: Vec<pb::Unit>,
    pub incidents: Vec<pb::Incident>,
}

pub fn projection(m: &Machine) -> Result<Projection, String> {
    let mut units = all_units(m, 1000)?;
    for u in &mut units {
        u.location = None;
        u.location_time = None;
    }
    Ok(Projection {
        sequence: m.sequence(),
        clock_ms: m.clock_ms(),
        next_incident_number: m.incidents().next_number,
        remembered: m.requests().len(),
        evicted: m.requests().evicted_len(),
        units,
        incidents: all_incidents(m, 1000)?,
    })
}

/// Where two snapshots first differ, for failure messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first differ at byte {i} of {} / {}", a.len(), b.len()),
        None => format!("one is a prefix of the other ({} / {} bytes)", a.len(), b.len()),
    }
}
