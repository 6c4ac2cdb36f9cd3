//! The dispatch state machine: units, incidents, assignments and the idempotency table in
//! one structure, changed only by [`Machine::execute`].
//!
//! `execute(method, request bytes, time)` decodes and validates the command, answers a
//! retry from the idempotency table, applies a new command whole or not at all, and returns
//! its answer and events. It reads no clock and draws no random number: ids it allocates
//! come from state, and time is the argument. So the live server, recovery (snapshot +
//! journal), a replica and the simulator are the same code path, and a seeded simulation
//! reproduces any run exactly.
//!
//! Atomicity: every command checks everything that can fail before it changes anything,
//! and the changes after the checks cannot fail. A refused command leaves the state exactly
//! as it was (the simulation tests compare digests before and after every refusal).
//!
//! Positions are the exception (see `docs/architecture.md`): AVL pings change only
//! positions, are not journaled, and reach the state through [`Machine::update_locations`];
//! snapshots keep the last position of every unit.

pub mod acks;
pub mod incidents;
pub mod queue;
pub mod requests;

use std::sync::Arc;

use crate::caps::Vocabulary;
use crate::command::{Command, IncidentChange, Method, NewIncident, RequirementGroup};
use crate::error::{CoreError, CoreResult};
use crate::geo;
use crate::plans::{self, PlanBook, ResponsePlan};
use crate::status::Transition;
use crate::store::{validate_id, LocationReport, UnitStore};
use crate::time::{self, DEFAULT_MAX_FUTURE_SKEW_MS};
use crate::types::{Grade, IncidentStatus, Status};
use crate::units::NO_TIME;
use crate::wire;
use prost::Message;

pub use acks::{AckDeadlines, AckTimeouts};
pub use incidents::{Incident, Incidents, PendingKey};
pub use requests::{Lookup, Remembered, RequestTable};

/// What a command did that observers (metrics) count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// An incident got its first unit, `waited_ms` after it was created.
    FirstAssigned { grade: Grade, waited_ms: i64 },
    /// An incident's first unit arrived, `response_ms` after it was created.
    FirstOnScene { grade: Grade, response_ms: i64 },
    /// The clock command forgot this many request_ids past the retention window.
    RequestsExpired { count: u64 },
    /// A unit was taken from an incident of `from_grade` for an IMMEDIATE one.
    Diverted { from_grade: Grade },
    /// A unit dispatched to an incident of `grade` did not acknowledge in time.
    AckOverdue { grade: Grade },
    /// A unit's crew went off with no crew following: it went OFF_DUTY, or, committed,
    /// kept working (`overtime`).
    CrewOff { overtime: bool },
}

/// A unit flagged at a tick for not acknowledging its dispatch in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    pub slot: u32,
    pub incident_id: String,
    pub grade: Grade,
    pub deadline_ms: i64,
    /// For an IMMEDIATE incident, the best AVAILABLE unit now for the place it fills.
    pub proposed: Option<crate::rank::Candidate>,
}

/// What an applied command answers, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Unit {
        slot: u32,
        created: bool,
        /// The unit has crew bookings: its capabilities and shift come from them.
        rostered: bool,
    },
    Status {
        slot: u32,
        released: Option<String>,
    },
    Incident {
        incident_id: String,
    },
    /// An assignment, with the (unit slot, old incident) of every unit it diverted.
    Assigned {
        incident_id: String,
        diversions: Vec<(u32, String)>,
    },
    Closed {
        incident_id: String,
        released: Vec<u32>,
    },
    Tick {
        time_ms: i64,
        expired: u64,
        archived: u64,
        overdue: Vec<Overdue>,
        roster: Vec<crate::duty::RosterChange>,
    },
    Duty(crate::duty::wire::DutyReply),
    Plans,
}

/// A command applied: its answer, its events, and its effect on assignments (which the
/// journal keeps as a second line of defence against double assignment).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub reply: Reply,
    pub events: Vec<Event>,
    /// (unit slot, incident id) pairs the command assigned.
    pub assign: Vec<(u32, String)>,
    /// Unit slots the command released from their incident (before any assignment).
    pub release: Vec<u32>,
    /// Closed incidents the clock command took out of memory: (id, encoded `Incident`),
    /// for the journal's archive, which answers GetIncident for them from then on.
    pub archived: Vec<(String, Vec<u8>)>,
}

impl Applied {
    fn reply(reply: Reply) -> Self {
        Self { reply, events: Vec::new(), assign: Vec::new(), release: Vec::new(), archived: Vec::new() }
    }
}

/// How long closed incidents stay in memory: `age_ms` after their closing, and never more
/// than `count` of them (the closed longest ago leave first). Both apply only at a clock
/// command. Configuration, like the request capacity: a replica or a replay must use the
/// same values to reach the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub age_ms: i64,
    pub count: usize,
}

impl Default for Retention {
    /// A day (the window a control room looks back over), and a bound a surge cannot pass
    /// unnoticed: eight days of London's closures.
    fn default() -> Self {
        Self { age_ms: 24 * 3600 * 1000, count: 100_000 }
    }
}

/// What [`Machine::execute`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied now: journal it (`request` is the canonical encoding to journal).
    Applied {
        sequence: u64,
        request_id: String,
        request: Vec<u8>,
        response: Vec<u8>,
        events: Vec<Event>,
        assign: Vec<(String, String)>,
        release: Vec<String>,
        archived: Vec<(String, Vec<u8>)>,
    },
    /// A retry of an applied command: its first answer.
    Repeated { sequence: u64, response: Vec<u8> },
    /// The request_id may have been answered before the in-memory window: look it up in
    /// the journal and execute again with what was found.
    CheckJournal { request_id: String },
    /// Refused: nothing changed.
    Refused(CoreError),
}

/// A journaled answer found for a request_id (see [`Outcome::CheckJournal`]).
#[derive(Debug, Clone)]
pub struct JournalHit {
    pub request: Vec<u8>,
    pub response: Vec<u8>,
    pub sequence: u64,
}

/// What the caller learnt from the journal about a request_id.
#[derive(Debug, Clone)]
pub enum JournalAnswer {
    /// Not looked up: the table decides, or asks for a lookup.
    Unchecked,
    /// Looked up; the journal has no entry for it.
    Absent,
    Found(JournalHit),
}

/// The dispatch state and its one entry point.
#[derive(Debug, Clone)]
pub struct Machine {
    pub(crate) units: UnitStore,
    pub(crate) incidents: Incidents,
    pub(crate) requests: RequestTable,
    /// Acknowledgement deadlines of DISPATCHED units, and those flagged overdue.
    pub(crate) acks: AckDeadlines,
    /// People, shifts and crews, and what the crews make of their units.
    pub(crate) duty: crate::duty::Duty,
    /// Time of the latest command applied (never goes back); 0 before the first.
    pub(crate) clock_ms: i64,
    /// Sequence of the latest command applied: the journal's numbering.
    pub(crate) sequence: u64,
    /// The response plans in force (installed by `ReplaceResponsePlans`).
    pub(crate) plans: PlanBook,
    /// How far ahead of the arrival time a ping may be dated. Configuration, not state.
    pub max_future_skew_ms: i64,
    /// How long closed incidents stay in memory. Configuration, not state.
    pub retention: Retention,
    /// How long a DISPATCHED unit has to acknowledge, per grade. Configuration, not state.
    pub ack_timeouts: AckTimeouts,
}

impl Machine {
    pub fn new(units: UnitStore, request_capacity: usize) -> Self {
        Self {
            units,
            incidents: Incidents::new(),
            requests: RequestTable::new(request_capacity),
            acks: AckDeadlines::default(),
            duty: crate::duty::Duty::default(),
            clock_ms: 0,
            sequence: 0,
            plans: PlanBook::default(),
            max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS,
            retention: Retention::default(),
            ack_timeouts: AckTimeouts::default(),
        }
    }

    pub fn acks(&self) -> &AckDeadlines {
        &self.acks
    }

    pub fn duty(&self) -> &crate::duty::Duty {
        &self.duty
    }

    pub fn units(&self) -> &UnitStore {
        &self.units
    }

    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }

    pub fn requests(&self) -> &RequestTable {
        &self.requests
    }

    pub fn vocabulary(&self) -> &Vocabulary {
        self.units.vocabulary()
    }

    /// The response plans in force.
    pub fn response_plans(&self) -> &PlanBook {
        &self.plans
    }

    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Replaces the ranking model (configuration: not journaled, not in the digest).
    pub fn set_config(&mut self, config: crate::eta::RankConfig) -> CoreResult<()> {
        self.units.set_config(config)
    }

    /// Whether a clock command at `now_ms` would change anything: the server journals a
    /// tick only then (as TigerBeetle's pulse), so an idle journal is not filled with ticks.
    pub fn tick_due(&self, now_ms: i64) -> bool {
        let now = now_ms.max(self.clock_ms);
        self.requests.next_expiry_ms().is_some_and(|due| now >= due)
            || self.acks.earliest().is_some_and(|due| now >= due)
            || self.duty.next_due().is_some_and(|due| now >= due)
            || self.incidents.closed_len() > self.retention.count
            || self
                .incidents
                .oldest_closed()
                .is_some_and(|(closed, _)| now >= closed.saturating_add(self.retention.age_ms))
    }

    /// Executes one command: see the module docs. `journal` is what the journal holds for
    /// the request_id, when a previous call answered [`Outcome::CheckJournal`].
    pub fn execute(&mut self, method: Method, request: &[u8], time_ms: i64, journal: JournalAnswer) -> Outcome {
        let decoded = match wire::decode::command(method, request, self.units.vocabulary()) {
            Ok(d) => d,
            Err(e) => return Outcome::Refused(e),
        };
        if method != Method::Tick {
            let seen = match self.requests.lookup(method, &decoded.request_id) {
                Lookup::Remembered(r) => Some((r.request.to_vec(), r.response.to_vec(), r.sequence)),
                Lookup::InJournal if matches!(journal, JournalAnswer::Unchecked) => {
                    return Outcome::CheckJournal { request_id: decoded.request_id };
                }
                _ => match journal {
                    JournalAnswer::Found(hit) => Some((hit.request, hit.response, hit.sequence)),
                    _ => None,
                },
            };
            if let Some((first, response, sequence)) = seen {
                if first != decoded.canonical {
                    return Outcome::Refused(CoreError::invalid(
                        "request_id",
                        format!(
                            "{:?} was already used for a different {} request; use a new request_id for a new command",
                            decoded.request_id,
                            method.name()
                        ),
                    ));
                }
                return Outcome::Repeated { sequence, response };
            }
        }
        if !time::in_range(time_ms) {
            return Outcome::Refused(CoreError::Unavailable(format!(
                "the server's clock reads {time_ms} ms, outside the valid range; fix the clock and retry"
            )));
        }
        let applied = match self.apply(&decoded.command, time_ms) {
            Ok(a) => a,
            Err(e) => return Outcome::Refused(e),
        };
        self.sequence += 1;
        let response = wire::encode::reply(self, method, &applied.reply);
        if method != Method::Tick {
            self.requests.remember(
                method,
                &decoded.request_id,
                Remembered {
                    request: Arc::from(decoded.canonical.as_slice()),
                    response: Arc::from(response.as_slice()),
                    sequence: self.sequence,
                    time_ms: self.clock_ms,
                },
            );
        }
        let ids = &self.units.table().ids;
        Outcome::Applied {
            sequence: self.sequence,
            request_id: decoded.request_id,
            request: decoded.canonical,
            response,
            events: applied.events,
            assign: applied.assign.into_iter().map(|(slot, i)| (ids[slot as usize].to_string(), i)).collect(),
            release: applied.release.into_iter().map(|slot| ids[slot as usize].to_string()).collect(),
            archived: applied.archived,
        }
    }

    /// Executes a journaled entry again (recovery, replay, a replica): the entry's
    /// `payload` is [`crate::record`]'s encoding. Returns whether the answer equals the
    /// journaled `result` (a difference means this build answers differently from the one
    /// that wrote the entry; the state is still the same). Refuses an entry that does not
    /// apply as the next sequence: the journal and this state disagree.
    pub fn replay(&mut self, sequence: u64, method: &str, payload: &[u8], result: &[u8]) -> CoreResult<bool> {
        let disagree = |what: String| CoreError::invalid(format!("journal entry {sequence}"), what);
        let m = Method::from_name(method).ok_or_else(|| disagree(format!("unknown method {method:?}")))?;
        let (time_ms, request) = crate::record::decode(payload).map_err(|e| disagree(e.to_string()))?;
        if sequence != self.sequence + 1 {
            return Err(disagree(format!("comes after state sequence {}", self.sequence)));
        }
        // The entry is in the journal because it applied as a new command: a fingerprint
        // left by an evicted answer (or colliding with one) must not send replay to the
        // journal, which would find this very entry. Its ids are held to the rules of when
        // it was written, not to today's grammar (`wire::ident`): it was acknowledged.
        match crate::wire::ident::replaying(|| self.execute(m, request, time_ms, JournalAnswer::Absent)) {
            Outcome::Applied { response, request_id, .. } => {
                let same = response == result;
                if !same && m != Method::Tick {
                    // Remember the answer the client got, not the one recomputed now: a
                    // position from a ping (not journaled) may be missing from the state
                    // replay rebuilt, and a retry must get the first answer byte for byte.
                    self.requests.set_response(m, &request_id, Arc::from(result));
                }
                Ok(same)
            }
            Outcome::Refused(e) => Err(disagree(format!("{method} is refused now: {e}"))),
            other => Err(disagree(format!("{method} is not new to this state ({other:?})"))),
        }
    }

    /// Replays stored journal rows read in order after `after` (`tail`: the last sequence
    /// written; `None`: a row whose fields did not decode): verifies them with
    /// [`crate::record::verify`], then replays the good ones. Returns how many were
    /// replayed, how many answered differently from their stored result, and the problem
    /// that stopped the rows, if any (the caller decides what a problem means).
    pub fn replay_stored(
        &mut self,
        rows: &[Option<(crate::record::StoredEntry<'_>, i64)>],
        after: i64,
        tail: i64,
    ) -> CoreResult<(usize, usize, Option<crate::record::Problem>)> {
        let (good, problem) = crate::record::verify(rows.iter().copied(), after, tail);
        let mut differ = 0;
        for (entry, _) in rows[..good].iter().flatten() {
            let sequence = u64::try_from(entry.sequence)
                .map_err(|_| CoreError::invalid("journal", format!("sequence {} is negative", entry.sequence)))?;
            if !self.replay(sequence, entry.method, entry.payload, entry.result)? {
                differ += 1;
            }
        }
        Ok((good, differ, problem))
    }

    /// Applies a validated command at `time_ms` (already checked to be in range).
    fn apply(&mut self, command: &Command, time_ms: i64) -> CoreResult<Applied> {
        // The clock never goes back: a wall clock stepped backwards must not reorder time.
        let now = time_ms.max(self.clock_ms);
        let applied = match command {
            Command::UpsertUnit { unit_id, spec } => self.upsert_unit(unit_id, spec),
            Command::SetUnitStatus { unit_id, status } => self.set_unit_status(unit_id, *status, now),
            Command::CreateIncident(new) => self.create_incident(new, now),
            Command::UpdateIncident { incident_id, change } => self.update_incident(incident_id, change),
            Command::CloseIncident { incident_id } => self.close_incident(incident_id, now),
            Command::AssignUnits { incident_id, unit_ids, allow_diversion } => {
                self.assign_units(incident_id, unit_ids, *allow_diversion, now)
            }
            Command::Tick => Ok(self.tick(now)),
            Command::Duty(c) => self.apply_duty(c, now),
            Command::ReplaceResponsePlans { plans, source } => self.replace_plans(plans, source, now),
        }?;
        self.clock_ms = now;
        Ok(applied)
    }

    fn upsert_unit(&mut self, unit_id: &str, spec: &crate::store::UnitSpec) -> CoreResult<Applied> {
        for (field, value) in [("unit.shift_start", spec.shift_start_ms), ("unit.shift_end", spec.shift_end_ms)] {
            if let Some(t) = value {
                time::check(field, t)?;
            }
        }
        let created = self.units.table().slot(unit_id).is_none();
        let slot = self.units.upsert(unit_id, spec).map_err(|e| e.within("unit."))?;
        let rostered = self.duty.after_upsert(&mut self.units, slot);
        Ok(Applied::reply(Reply::Unit { slot, created, rostered }))
    }

    fn apply_duty(&mut self, command: &crate::duty::wire::DutyCommand, now: i64) -> CoreResult<Applied> {
        use crate::duty::wire::{DutyCommand, DutyReply};
        let (reply, offs) = match command {
            DutyCommand::UpsertPerson { person_id, name, skills } => {
                let (created, _, offs) =
                    self.duty.upsert_person(&mut self.units, person_id, name.clone(), skills.clone(), now);
                (DutyReply::Person { person_id: person_id.clone(), created }, offs)
            }
            DutyCommand::UpsertShift { shift_id, shift } => {
                let created = self.duty.upsert_shift(shift_id, shift.clone())?;
                (DutyReply::Shift { shift_id: shift_id.clone(), created }, Vec::new())
            }
            DutyCommand::BookCrew { crew_id, unit_id, members, start_ms, end_ms, minimums } => {
                let slot = self.units.slot(unit_id)?;
                let crew = crate::duty::Crew {
                    slot,
                    members: members.clone(),
                    start_ms: *start_ms,
                    end_ms: *end_ms,
                    minimums: minimums.clone(),
                };
                let (created, _, offs) = self.duty.book_crew(&mut self.units, crew_id, crew, now)?;
                (DutyReply::Crew { crew_id: crew_id.clone(), created }, offs)
            }
        };
        let mut applied = Applied::reply(Reply::Duty(reply));
        applied.events = offs.into_iter().map(|o| Event::CrewOff { overtime: o.overtime }).collect();
        Ok(applied)
    }

    fn set_unit_status(&mut self, unit_id: &str, to: Status, now: i64) -> CoreResult<Applied> {
        if to == Status::Dispatched {
            return Err(CoreError::InvalidTransition {
                unit_id: unit_id.to_owned(),
                reason: format!(
                    "unit {unit_id:?} cannot be set DISPATCHED directly: only AssignUnits dispatches a unit"
                ),
            });
        }
        let (slot, transition) = self.units.check_transition(unit_id, to)?;
        // Nothing below can fail.
        let from = self.units.table().status[slot as usize];
        let incident_id = self.units.table().incident[slot as usize].as_deref().map(str::to_owned);
        // Any move out of DISPATCHED acknowledges (or ends) the dispatch.
        self.acks.clear(slot);
        let released = self.units.set_status(unit_id, to).expect("checked by check_transition");
        let mut applied = Applied::reply(Reply::Status { slot, released: released.clone() });
        if to == Status::OnScene {
            if let Some(id) = &incident_id {
                let event = self.incidents.update(id, |i| {
                    if i.first_on_scene_ms.is_some() {
                        return None;
                    }
                    i.first_on_scene_ms = Some(now);
                    if matches!(i.status, IncidentStatus::Open | IncidentStatus::Dispatched) {
                        i.status = IncidentStatus::Attended;
                    }
                    Some(Event::FirstOnScene { grade: i.grade, response_ms: now - i.created_ms })
                });
                applied.events.extend(event.flatten());
            }
        }
        if let (Transition::Release, Some(id)) = (transition, &released) {
            // A unit leaving the scene has done its part; one stood down before arriving
            // has not, and its incident is pending again.
            let attended = from == Status::OnScene;
            self.incidents.update(id, |i| {
                i.attached.retain(|&s| s != slot);
                if attended {
                    i.cleared += 1;
                }
            });
            applied.release.push(slot);
        }
        Ok(applied)
    }

    fn create_incident(&mut self, new: &NewIncident, now: i64) -> CoreResult<Applied> {
        if let Some(id) = &new.incident_id {
            validate_id("incident_id", id)?;
            if self.incidents.contains(id) {
                return Err(CoreError::IncidentExists(id.clone()));
            }
        }
        check_incident_fields(&new.incident_type, (new.lat, new.lon), &new.area)?;
        // No requirements sent: the plan in force at the command's time decides, and
        // without one the command is refused as an empty list always was.
        let (requirements, response_plan) = if new.requirements.is_empty() {
            let plan = self.plans.resolve(&new.incident_type, new.grade, &new.area, now).ok_or_else(|| {
                CoreError::invalid(
                    "requirements",
                    format!(
                        "is empty and no response plan matches incident_type {:?} (grade {}, area {:?}) at {:02}:{:02} \
                         Europe/London; send the requirement groups or add a plan for this type",
                        new.incident_type,
                        new.grade.name(),
                        new.area,
                        plans::london_minute_of_day(now) / 60,
                        plans::london_minute_of_day(now) % 60
                    ),
                )
            })?;
            (Arc::clone(&plan.groups), plan.name.clone())
        } else {
            check_groups("requirements", &new.requirements, self.units.vocabulary())?;
            (Arc::from(new.requirements.clone()), String::new())
        };
        let incident_id = match &new.incident_id {
            Some(id) => id.clone(),
            None => self.incidents.allocate_id(),
        };
        self.incidents.put(Incident {
            incident_id: incident_id.clone(),
            grade: new.grade,
            incident_type: new.incident_type.clone(),
            lat: new.lat,
            lon: new.lon,
            area: new.area.clone(),
            requirements,
            response_plan,
            status: IncidentStatus::Open,
            assigned: Vec::new(),
            attached: Vec::new(),
            created_ms: now,
            first_assigned_ms: None,
            first_on_scene_ms: None,
            closed_ms: None,
            cleared: 0,
        });
        Ok(Applied::reply(Reply::Incident { incident_id }))
    }

    fn open_incident(&self, incident_id: &str) -> CoreResult<&Incident> {
        let incident = self.incidents.get(incident_id).ok_or_else(|| CoreError::UnknownIncident(incident_id.into()))?;
        if !incident.is_open() {
            return Err(CoreError::IncidentClosed(incident_id.into()));
        }
        Ok(incident)
    }

    fn update_incident(&mut self, incident_id: &str, change: &IncidentChange) -> CoreResult<Applied> {
        let current = self.open_incident(incident_id)?;
        check_incident_fields(
            change.incident_type.as_deref().unwrap_or(&current.incident_type),
            change.location.unwrap_or((current.lat, current.lon)),
            change.area.as_deref().unwrap_or(&current.area),
        )?;
        if let Some(groups) = &change.requirements {
            check_groups("requirements.groups", groups, self.units.vocabulary())?;
        }
        if let Some(g) = change.grade {
            let attached = current.attached.clone();
            self.units.regrade(&attached, g);
        }
        self.incidents.update(incident_id, |i| {
            if let Some(g) = change.grade {
                i.grade = g;
            }
            if let Some(t) = &change.incident_type {
                i.incident_type.clone_from(t);
            }
            if let Some((lat, lon)) = change.location {
                (i.lat, i.lon) = (lat, lon);
            }
            if let Some(a) = &change.area {
                i.area.clone_from(a);
            }
            if let Some(groups) = &change.requirements {
                i.requirements = Arc::from(groups.clone());
                // The dispatcher's own groups now: no longer the plan's.
                i.response_plan.clear();
            }
        });
        Ok(Applied::reply(Reply::Incident { incident_id: incident_id.to_owned() }))
    }

    fn close_incident(&mut self, incident_id: &str, now: i64) -> CoreResult<Applied> {
        let attached: Vec<String> = self
            .open_incident(incident_id)?
            .attached
            .iter()
            .map(|&slot| self.units.table().ids[slot as usize].to_string())
            .collect();
        let released_ids = self.units.release_incident(incident_id, &attached)?;
        let released: Vec<u32> = released_ids.iter().filter_map(|id| self.units.table().slot(id)).collect();
        for &slot in &released {
            self.acks.clear(slot);
        }
        self.incidents.update(incident_id, |i| {
            i.status = IncidentStatus::Closed;
            i.closed_ms = Some(now);
            i.attached.clear();
        });
        let mut applied =
            Applied::reply(Reply::Closed { incident_id: incident_id.to_owned(), released: released.clone() });
        applied.release = released;
        Ok(applied)
    }

    fn assign_units(
        &mut self,
        incident_id: &str,
        unit_ids: &[String],
        allow_diversion: bool,
        now: i64,
    ) -> CoreResult<Applied> {
        let grade = self.open_incident(incident_id)?.grade;
        let plan = self.units.check_assignment(unit_ids, allow_diversion.then_some((incident_id, grade)))?;
        // Nothing below can fail.
        let slots: Vec<u32> = plan.iter().map(|(slot, _)| *slot).collect();
        let mut applied = Applied::reply(Reply::Incident { incident_id: String::new() });
        let mut diversions = Vec::new();
        for (slot, from) in plan {
            let Some(from) = from else { continue };
            // Detached from the old incident, which keeps the unit in its history
            // (`assigned`) and, short of units again, re-enters the pending queue.
            let from_grade = self
                .incidents
                .update(&from, |i| {
                    i.attached.retain(|&s| s != slot);
                    i.grade
                })
                .expect("an attached unit's incident is held");
            applied.events.push(Event::Diverted { from_grade });
            applied.release.push(slot);
            diversions.push((slot, from));
        }
        self.units.dispatch_slots(incident_id, grade, &slots);
        if let Some(timeout) = self.ack_timeouts.of(grade) {
            for &slot in &slots {
                self.acks.start(slot, now.saturating_add(timeout));
            }
        } else {
            for &slot in &slots {
                self.acks.clear(slot);
            }
        }
        let event = self
            .incidents
            .update(incident_id, |i| {
                i.assigned.extend_from_slice(&slots);
                i.attached.extend_from_slice(&slots);
                if i.status == IncidentStatus::Open {
                    i.status = IncidentStatus::Dispatched;
                }
                if i.first_assigned_ms.is_some() {
                    return None;
                }
                i.first_assigned_ms = Some(now);
                Some(Event::FirstAssigned { grade: i.grade, waited_ms: now - i.created_ms })
            })
            .flatten();
        applied.reply = Reply::Assigned { incident_id: incident_id.to_owned(), diversions };
        applied.events.extend(event);
        applied.assign = slots.into_iter().map(|s| (s, incident_id.to_owned())).collect();
        Ok(applied)
    }

    fn replace_plans(&mut self, plans: &[ResponsePlan], source: &str, now: i64) -> CoreResult<Applied> {
        let book = PlanBook::new(plans.to_vec(), source.to_owned(), now, self.units.vocabulary())?;
        // Nothing below can fail. Incidents keep the groups they were created with: a plan
        // decides what is sent when the call comes in, not afterwards.
        self.plans = book;
        Ok(Applied::reply(Reply::Plans))
    }

    fn tick(&mut self, now: i64) -> Applied {
        let expired = self.requests.expire(now);
        let archived = self.archive_closed(now);
        let overdue = self.flag_overdue(now);
        let (roster, offs) = self.duty.tick(&mut self.units, now);
        let mut events: Vec<Event> = overdue.iter().map(|o| Event::AckOverdue { grade: o.grade }).collect();
        events.extend(offs.into_iter().map(|o| Event::CrewOff { overtime: o.overtime }));
        let mut applied =
            Applied::reply(Reply::Tick { time_ms: now, expired, archived: archived.len() as u64, overdue, roster });
        if expired > 0 {
            events.push(Event::RequestsExpired { count: expired });
        }
        applied.events = events;
        applied.archived = archived;
        applied
    }

    /// Flags the DISPATCHED units whose acknowledgement deadline has passed (each dispatch
    /// once), proposing a replacement for those sent to IMMEDIATE incidents.
    fn flag_overdue(&mut self, now: i64) -> Vec<Overdue> {
        let due = self.acks.take_due(now);
        due.into_iter()
            .map(|(slot, deadline_ms)| {
                let incident_id = self.units.table().incident[slot as usize]
                    .as_deref()
                    .expect("a unit with a deadline is attached")
                    .to_owned();
                let incident = self.incidents.get(&incident_id).expect("an attached unit's incident is held");
                let proposed = (incident.grade == Grade::Immediate)
                    .then(|| {
                        let group = queue::group_of(&self.units, incident, slot)
                            .or_else(|| queue::first_unfilled_group(&self.units, incident))
                            .unwrap_or(0);
                        queue::best_candidate(&self.units, incident, group, now, false)
                    })
                    .flatten();
                Overdue { slot, incident_id, grade: incident.grade, deadline_ms, proposed }
            })
            .collect()
    }

    /// Takes closed incidents past the retention out of memory, returning each one's final
    /// state (encoded) for the journal's archive.
    fn archive_closed(&mut self, now: i64) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((closed, id)) = self.incidents.oldest_closed() {
            let over_count = self.incidents.closed_len() > self.retention.count;
            if !over_count && now < closed.saturating_add(self.retention.age_ms) {
                break;
            }
            let id = id.to_owned();
            let incident = self.incidents.remove(&id).expect("the closed set lists held incidents");
            out.push((id, wire::encode::incident(&self.units, &incident).encode_to_vec()));
        }
        out
    }

    /// Applies a batch of AVL pings that arrived at `now_ms`: each is applied or skipped on
    /// its own and counted (unknown unit, bad coordinate, time outside the valid range, dated
    /// further ahead than the allowed skew, older than the stored position). Not journaled.
    pub fn update_locations<S: AsRef<str>>(
        &mut self,
        unit_ids: &[S],
        lat: &[f64],
        lon: &[f64],
        time_ms: &[i64],
        now_ms: i64,
    ) -> CoreResult<LocationReport> {
        let latest = now_ms.saturating_add(self.max_future_skew_ms);
        self.units.update_locations_checked(unit_ids, lat, lon, time_ms, latest)
    }

    /// Checks every invariant that ties the parts together; for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.units.grid().check_consistency()?;
        self.units.table().check_counts()?;
        self.incidents.check_counts()?;
        self.requests.check()?;
        self.acks.check()?;
        self.duty.check(&self.units)?;
        let t = self.units.table();
        for (slot, _) in self.acks.deadlines() {
            if t.status[slot as usize] != Status::Dispatched {
                return Err(format!(
                    "unit {} has an acknowledgement deadline while {}",
                    t.ids[slot as usize],
                    t.status[slot as usize].name()
                ));
            }
        }
        for slot in self.acks.overdue() {
            if t.status[slot as usize] != Status::Dispatched {
                return Err(format!(
                    "unit {} is flagged overdue while {}",
                    t.ids[slot as usize],
                    t.status[slot as usize].name()
                ));
            }
        }
        let mut holders = vec![0u32; t.capacity()];
        for i in self.incidents.iter() {
            if !i.is_open() && !i.attached.is_empty() {
                return Err(format!("closed incident {} still has units attached", i.incident_id));
            }
            for &slot in &i.attached {
                holders[slot as usize] += 1;
                let link = t.incident[slot as usize].as_deref();
                if link != Some(i.incident_id.as_str()) {
                    return Err(format!(
                        "unit {} attached to {} but linked to {link:?}",
                        t.ids[slot as usize], i.incident_id
                    ));
                }
                if t.incident_grade[slot as usize] != i.grade as u8 {
                    return Err(format!(
                        "unit {} attached to {} records grade {} instead of {}",
                        t.ids[slot as usize], i.incident_id, t.incident_grade[slot as usize], i.grade as u8
                    ));
                }
                if !crate::status::is_attached(t.status[slot as usize]) {
                    return Err(format!(
                        "unit {} attached to {} while {}",
                        t.ids[slot as usize],
                        i.incident_id,
                        t.status[slot as usize].name()
                    ));
                }
            }
        }
        for (slot, &held) in holders.iter().enumerate() {
            if held > 1 {
                return Err(format!("unit {} attached to {held} incidents", t.ids[slot]));
            }
            if held == 0 && t.incident_grade[slot] != 0 {
                return Err(format!("unit {} records an incident grade but is attached to none", t.ids[slot]));
            }
            if t.live[slot] && t.incident[slot].is_some() && held == 0 {
                return Err(format!("unit {} linked to an incident that does not list it", t.ids[slot]));
            }
            let shift_ok = [t.shift_start_ms[slot], t.shift_end_ms[slot], t.location_ms[slot]]
                .iter()
                .all(|&v| v == NO_TIME || time::in_range(v));
            if !shift_ok {
                return Err(format!("unit {} holds a time outside the valid range", t.ids[slot]));
            }
        }
        Ok(())
    }
}

fn check_incident_fields(incident_type: &str, (lat, lon): (f64, f64), area: &str) -> CoreResult<()> {
    validate_id("incident_type", incident_type)?;
    geo::validate(lat, lon).map_err(|e| e.within("location."))?;
    if !area.is_empty() {
        validate_id("area", area)?;
    }
    Ok(())
}

/// The limits of a response plan, checked in the core so no caller can store one it could
/// not serve (the wire layer names the same limits field by field).
fn check_groups(field: &str, groups: &[RequirementGroup], vocab: &Vocabulary) -> CoreResult<()> {
    match group_problems(groups, vocab).into_iter().next() {
        Some((at, reason)) => Err(CoreError::invalid(format!("{field}{at}"), reason)),
        None => Ok(()),
    }
}

/// Every way `groups` break the limits of a response plan: (field path below the list,
/// e.g. `[1].count`, empty for the list itself; what is wrong).
pub(crate) fn group_problems(groups: &[RequirementGroup], vocab: &Vocabulary) -> Vec<(String, String)> {
    use wire::limits::{MAX_GROUPS, MAX_GROUP_COUNT, MAX_GROUP_NAMES};
    let mut out = Vec::new();
    if groups.is_empty() || groups.len() > MAX_GROUPS {
        out.push((String::new(), format!("needs 1 to {MAX_GROUPS} requirement groups, has {}", groups.len())));
        return out;
    }
    for (i, g) in groups.iter().enumerate() {
        if g.capabilities.len() > MAX_GROUP_NAMES || g.unit_types.len() > MAX_GROUP_NAMES {
            out.push((format!("[{i}]"), format!("names more than {MAX_GROUP_NAMES} unit types or capabilities")));
            continue;
        }
        for (j, name) in g.capabilities.iter().enumerate() {
            if vocab.encode(&[name]).is_err() {
                out.push((format!("[{i}].capabilities[{j}]"), format!("{name:?} is not in the capability vocabulary")));
            }
        }
        if !(1..=MAX_GROUP_COUNT).contains(&g.count) {
            out.push((format!("[{i}].count"), format!("{} is outside [1, {MAX_GROUP_COUNT}]", g.count)));
        }
        for (j, t) in g.unit_types.iter().enumerate() {
            if let Err(e) = validate_id("unit_type", t) {
                out.push((format!("[{i}].unit_types[{j}]"), e.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::RankConfig;
    use crate::wire::pb;

    const T0: i64 = 1_750_000_000_000;
    const DAY: i64 = 24 * 3600 * 1000;

    fn machine(retention: Retention) -> Machine {
        let mut m = Machine::new(UnitStore::new(RankConfig::default(), 0.01).unwrap(), 1000);
        m.retention = retention;
        m
    }

    fn open_and_close(m: &mut Machine, id: &str, at: i64) {
        let create = pb::CreateIncidentRequest {
            request_id: format!("c-{id}"),
            incident_id: id.into(),
            grade: 1,
            incident_type: "t".into(),
            location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
            requirements: vec![pb::RequirementGroup { agency: 1, count: 1, ..Default::default() }],
            ..Default::default()
        };
        let close = pb::CloseIncidentRequest { request_id: format!("x-{id}"), incident_id: id.into() };
        for (method, bytes) in
            [(Method::CreateIncident, create.encode_to_vec()), (Method::CloseIncident, close.encode_to_vec())]
        {
            assert!(matches!(m.execute(method, &bytes, at, JournalAnswer::Unchecked), Outcome::Applied { .. }));
        }
    }

    fn tick(m: &mut Machine, at: i64) -> Vec<String> {
        match m.execute(Method::Tick, b"", at, JournalAnswer::Unchecked) {
            Outcome::Applied { archived, .. } => archived.into_iter().map(|(id, _)| id).collect(),
            other => panic!("tick refused: {other:?}"),
        }
    }

    #[test]
    fn closed_incidents_leave_memory_after_their_retention_with_their_final_state() {
        let mut m = machine(Retention { age_ms: DAY, count: 100 });
        open_and_close(&mut m, "A", T0);
        open_and_close(&mut m, "B", T0 + 1000);
        assert!(!m.tick_due(T0 + DAY - 1));
        assert!(m.tick_due(T0 + DAY));
        assert_eq!(tick(&mut m, T0 + DAY), ["A"]);
        assert!(m.incidents().get("A").is_none() && m.incidents().get("B").is_some());
        assert_eq!(tick(&mut m, T0 + DAY + 1000), ["B"]);
        assert_eq!(m.incidents().closed_len(), 0);
        m.check_invariants().unwrap();
    }

    #[test]
    fn the_count_bound_archives_the_closed_longest_ago_first() {
        let mut m = machine(Retention { age_ms: DAY, count: 1 });
        open_and_close(&mut m, "A", T0);
        assert!(!m.tick_due(T0 + 1));
        open_and_close(&mut m, "B", T0 + 5);
        assert!(m.tick_due(T0 + 6));
        let Outcome::Applied { archived, .. } = m.execute(Method::Tick, b"", T0 + 6, JournalAnswer::Unchecked) else {
            panic!("tick refused")
        };
        assert_eq!(archived.len(), 1);
        let incident = pb::Incident::decode(archived[0].1.as_slice()).unwrap();
        assert_eq!((incident.incident_id.as_str(), incident.status), ("A", IncidentStatus::Closed as i32));
        assert!(m.incidents().get("B").is_some());
        m.check_invariants().unwrap();
    }
}

#[cfg(test)]
mod dispatch_rules_tests {
    //! The pending queue, pre-emption and acknowledgement deadlines through `execute`.
    use super::*;
    use crate::eta::RankConfig;
    use crate::wire::{pb, reads};

    const T0: i64 = 1_750_000_000_000;

    fn run(m: &mut Machine, method: Method, bytes: Vec<u8>, at: i64) -> Outcome {
        m.execute(method, &bytes, at, JournalAnswer::Unchecked)
    }

    fn ok(m: &mut Machine, method: Method, bytes: Vec<u8>, at: i64) -> Vec<u8> {
        match run(m, method, bytes, at) {
            Outcome::Applied { response, .. } => response,
            other => panic!("{method:?} refused: {other:?}"),
        }
    }

    fn machine() -> Machine {
        let mut m = Machine::new(UnitStore::new(RankConfig::default(), 0.01).unwrap(), 1000);
        m.ack_timeouts = AckTimeouts([Some(60_000), Some(120_000), None, None]);
        for (i, id) in ["A", "B", "C"].iter().enumerate() {
            let upsert = pb::UpsertUnitRequest {
                request_id: format!("u-{id}"),
                unit: Some(pb::UnitSpec {
                    unit_id: (*id).into(),
                    agency: 1,
                    unit_type: "irv".into(),
                    ..Default::default()
                }),
            };
            ok(&mut m, Method::UpsertUnit, upsert.encode_to_vec(), T0);
            m.update_locations(&[*id], &[51.5 + 0.01 * i as f64], &[-0.12], &[T0], T0).unwrap();
        }
        m
    }

    fn create(m: &mut Machine, id: &str, grade: Grade, count: u32, at: i64) {
        let r = pb::CreateIncidentRequest {
            request_id: format!("c-{id}"),
            incident_id: id.into(),
            grade: grade as i32,
            incident_type: "t".into(),
            location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
            requirements: vec![pb::RequirementGroup { agency: 1, count, ..Default::default() }],
            ..Default::default()
        };
        ok(m, Method::CreateIncident, r.encode_to_vec(), at);
    }

    fn assign(id: &str, units: &[&str], divert: bool, rid: &str) -> Vec<u8> {
        pb::AssignUnitsRequest {
            request_id: rid.into(),
            incident_id: id.into(),
            unit_ids: units.iter().map(|u| (*u).into()).collect(),
            allow_diversion: divert,
        }
        .encode_to_vec()
    }

    fn status(unit: &str, to: Status, rid: &str) -> Vec<u8> {
        pb::SetUnitStatusRequest { request_id: rid.into(), unit_id: unit.into(), status: to as i32 }.encode_to_vec()
    }

    fn pending_ids(m: &Machine) -> Vec<String> {
        m.incidents().pending_after(None).map(|i| i.incident_id.clone()).collect()
    }

    #[test]
    fn the_queue_orders_by_grade_then_age_and_holds_incidents_short_of_units() {
        let mut m = machine();
        create(&mut m, "S-old", Grade::Significant, 1, T0);
        create(&mut m, "I-new", Grade::Immediate, 2, T0 + 10);
        create(&mut m, "S-new", Grade::Significant, 1, T0 + 20);
        assert_eq!(pending_ids(&m), ["I-new", "S-old", "S-new"]);
        // One of two units: still pending; both: out of the queue.
        ok(&mut m, Method::AssignUnits, assign("I-new", &["A"], false, "a1"), T0 + 30);
        assert_eq!(pending_ids(&m), ["I-new", "S-old", "S-new"]);
        ok(&mut m, Method::AssignUnits, assign("I-new", &["B"], false, "a2"), T0 + 40);
        assert_eq!(pending_ids(&m), ["S-old", "S-new"]);
        // Stood down before arriving: back in the queue.
        ok(&mut m, Method::SetUnitStatus, status("B", Status::Available, "s1"), T0 + 50);
        assert_eq!(pending_ids(&m), ["I-new", "S-old", "S-new"]);
        // A unit that attended and left still counts: no re-queue.
        ok(&mut m, Method::AssignUnits, assign("S-old", &["C"], false, "a3"), T0 + 60);
        ok(&mut m, Method::SetUnitStatus, status("C", Status::OnScene, "s2"), T0 + 70);
        ok(&mut m, Method::SetUnitStatus, status("C", Status::Committed, "s3"), T0 + 80);
        assert_eq!(pending_ids(&m), ["I-new", "S-new"]);
        m.check_invariants().unwrap();
        // The read: waits and the best ETA for the unfilled group, paged.
        let page = |token: String| {
            let r = pb::ListPendingRequest { page_size: 1, page_token: token, ..Default::default() };
            pb::ListPendingResponse::decode(
                reads::list_pending(&m, &r.encode_to_vec(), T0 + 10_010).unwrap().as_slice(),
            )
            .unwrap()
        };
        let first = page(String::new());
        let p = &first.incidents[0];
        assert_eq!(p.incident.as_ref().unwrap().incident_id, "I-new");
        assert_eq!((p.wait_seconds, p.required_units, p.attached_units, p.unfilled_group_index), (10.0, 2, 1, Some(0)));
        assert_eq!(p.best_candidate.as_ref().unwrap().unit_id, "B");
        let second = page(first.next_page_token);
        assert_eq!(second.incidents[0].incident.as_ref().unwrap().incident_id, "S-new");
        assert!(second.next_page_token.is_empty());
    }

    #[test]
    fn a_diversion_moves_the_unit_in_one_command_and_requeues_the_old_incident() {
        let mut m = machine();
        create(&mut m, "S1", Grade::Significant, 1, T0);
        create(&mut m, "I1", Grade::Immediate, 1, T0 + 1);
        ok(&mut m, Method::AssignUnits, assign("S1", &["A"], false, "a1"), T0 + 2);
        ok(&mut m, Method::SetUnitStatus, status("A", Status::EnRoute, "s1"), T0 + 3);
        // Without the opt-in: refused as before.
        assert!(matches!(
            run(&mut m, Method::AssignUnits, assign("I1", &["A"], false, "a2"), T0 + 4),
            Outcome::Refused(CoreError::NotAssignable { .. })
        ));
        // The recommendation offers it with its cost and origin.
        let r = pb::RecommendUnitsRequest {
            target: Some(pb::recommend_units_request::Target::IncidentId("I1".into())),
            k: 5,
            include_diversions: true,
            ..Default::default()
        };
        let rec =
            pb::RecommendUnitsResponse::decode(reads::recommend(&m, &r.encode_to_vec(), T0 + 4).unwrap().as_slice())
                .unwrap();
        let a = rec.groups[0].candidates.iter().find(|c| c.unit_id == "A").expect("A offered");
        assert_eq!(a.diverted_from_incident_id, "S1");
        assert_eq!(a.breakdown.as_ref().unwrap().diversion_cost_seconds, 180.0);
        let Outcome::Applied { response, assign: assigned, release, events, .. } =
            run(&mut m, Method::AssignUnits, assign("I1", &["A"], true, "a3"), T0 + 5)
        else {
            panic!("diversion refused")
        };
        let answer = pb::AssignUnitsResponse::decode(response.as_slice()).unwrap();
        assert_eq!(answer.diversions, [pb::Diversion { unit_id: "A".into(), from_incident_id: "S1".into() }]);
        assert_eq!((assigned, release), (vec![("A".to_owned(), "I1".to_owned())], vec!["A".to_owned()]));
        assert!(events.contains(&Event::Diverted { from_grade: Grade::Significant }));
        let s1 = m.incidents().get("S1").unwrap();
        assert!(s1.attached.is_empty() && s1.assigned.len() == 1, "S1 keeps its history");
        assert_eq!(pending_ids(&m), ["S1"]);
        let slot = m.units().slot("A").unwrap();
        assert_eq!(m.units().table().status[slot as usize], Status::Dispatched);
        assert_eq!(m.units().table().attached_grade(slot), Some(Grade::Immediate));
        m.check_invariants().unwrap();
    }

    #[test]
    fn the_team_never_diverts_even_when_the_groups_offer_diversions() {
        let mut m = machine();
        create(&mut m, "S1", Grade::Significant, 2, T0);
        create(&mut m, "I1", Grade::Immediate, 2, T0 + 1);
        ok(&mut m, Method::AssignUnits, assign("S1", &["A", "B"], false, "a1"), T0 + 2);
        ok(&mut m, Method::SetUnitStatus, status("A", Status::EnRoute, "s1"), T0 + 3);
        let r = pb::RecommendUnitsRequest {
            target: Some(pb::recommend_units_request::Target::IncidentId("I1".into())),
            k: 5,
            include_diversions: true,
            ..Default::default()
        };
        let rec =
            pb::RecommendUnitsResponse::decode(reads::recommend(&m, &r.encode_to_vec(), T0 + 4).unwrap().as_slice())
                .unwrap();
        // A and B, nearer than C, are offered as diversions (A, on the spot, first even with
        // the diversion cost)...
        let offered: Vec<(&str, &str)> = rec.groups[0]
            .candidates
            .iter()
            .map(|c| (c.unit_id.as_str(), c.diverted_from_incident_id.as_str()))
            .collect();
        assert_eq!(offered, [("A", "S1"), ("C", ""), ("B", "S1")]);
        // ...but the team takes only the free unit and names the other place committed.
        assert_eq!(rec.team.iter().map(|t| t.unit_id.as_str()).collect::<Vec<_>>(), ["C"]);
        assert_eq!(
            rec.shortfalls,
            [pb::Shortfall { group_index: 0, missing: 1, reason: pb::ShortfallReason::AllCommitted as i32 }]
        );
    }

    #[test]
    fn diversions_from_equal_or_higher_grades_or_to_lesser_targets_are_refused_whole() {
        let mut m = machine();
        create(&mut m, "I1", Grade::Immediate, 1, T0);
        create(&mut m, "I2", Grade::Immediate, 1, T0);
        create(&mut m, "S1", Grade::Significant, 1, T0);
        create(&mut m, "S2", Grade::Significant, 1, T0);
        ok(&mut m, Method::AssignUnits, assign("I1", &["A"], false, "a1"), T0);
        ok(&mut m, Method::AssignUnits, assign("S1", &["B"], false, "a2"), T0);
        for (target, units, from) in [("I2", vec!["C", "A"], "I1"), ("S2", vec!["B"], "S1")] {
            let before = crate::snapshot::digest(&m);
            match run(&mut m, Method::AssignUnits, assign(target, &units, true, &format!("x-{target}")), T0 + 1) {
                Outcome::Refused(e @ CoreError::DiversionRefused { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(&format!("incident/{from}")) && text.contains(&format!("incident/{target}")),
                        "{text}"
                    );
                }
                other => panic!("not refused: {other:?}"),
            }
            assert_eq!(crate::snapshot::digest(&m), before, "a refused diversion changed the state");
        }
    }

    #[test]
    fn an_unacknowledged_dispatch_is_flagged_once_at_the_tick_past_its_deadline() {
        let mut m = machine();
        create(&mut m, "I1", Grade::Immediate, 1, T0);
        ok(&mut m, Method::AssignUnits, assign("I1", &["A"], false, "a1"), T0);
        assert!(!m.tick_due(T0 + 59_999));
        assert!(m.tick_due(T0 + 60_000));
        let Outcome::Applied { response, events, .. } = run(&mut m, Method::Tick, Vec::new(), T0 + 60_500) else {
            panic!("tick refused")
        };
        let tick = pb::ClockTick::decode(response.as_slice()).unwrap();
        assert_eq!(tick.overdue_acknowledgements.len(), 1);
        let o = &tick.overdue_acknowledgements[0];
        assert_eq!((o.unit_id.as_str(), o.incident_id.as_str(), o.grade), ("A", "I1", Grade::Immediate as i32));
        assert_eq!(o.deadline, Some(crate::wire::encode::timestamp(T0 + 60_000)));
        // The next AVAILABLE unit is proposed; the dispatcher decides.
        assert_eq!(o.proposed.as_ref().unwrap().unit_id, "B");
        assert_eq!(events, [Event::AckOverdue { grade: Grade::Immediate }]);
        assert_eq!(m.acks().overdue().count(), 1);
        // Once per dispatch: nothing more is due.
        assert!(!m.tick_due(T0 + 10 * 60_000));
        // Acknowledging clears the flag.
        ok(&mut m, Method::SetUnitStatus, status("A", Status::EnRoute, "s1"), T0 + 61_000);
        assert_eq!(m.acks().overdue().count(), 0);
        m.check_invariants().unwrap();
        // A snapshot keeps deadlines and flags.
        create(&mut m, "I2", Grade::Immediate, 1, T0 + 62_000);
        ok(&mut m, Method::AssignUnits, assign("I2", &["B"], false, "a2"), T0 + 62_000);
        let bytes = crate::snapshot::encode(&m);
        let restored =
            crate::snapshot::decode(&bytes, UnitStore::new(RankConfig::default(), 0.01).unwrap(), 1000).unwrap();
        assert_eq!(crate::snapshot::encode(&restored), bytes);
        assert_eq!(restored.acks().earliest(), Some(T0 + 122_000));
    }
}
