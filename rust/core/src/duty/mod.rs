//! Duty management: people with skills, their shifts, and crews that book them onto units.
//!
//! A unit with at least one crew booking is **rostered**: its capabilities and shift window
//! in the unit table are derived from its crews ([`crews::unit_at`]) and written through
//! [`UnitStore::set_crew_attributes`], the path UpsertUnit takes, so ranking, coverage and
//! the grid see them at no extra cost per query. What UpsertUnit sets for such a unit is
//! kept aside (`declared`) and applies again if the unit loses its last booking.
//!
//! Time-driven changes (a crew coming on or going off, a skill becoming valid or lapsing)
//! happen only at clock ticks: every rostered unit has the next instant its derivation can
//! change in an ordered index ([`Duty::next_due`]), `Machine::tick_due` includes the
//! earliest, and the tick re-derives the units due. A command that changes a roster
//! re-derives the units it touches at its own time. So replay, which runs the same ticks
//! and commands at the same times, sees every change at the same instant.
//!
//! When a unit's crew goes off with no crew following, the unit goes OFF_DUTY if it is
//! AVAILABLE or UNAVAILABLE; a committed unit (attached to an incident, or COMMITTED) keeps
//! its status and is flagged as working overtime. When a crew comes on, an OFF_DUTY unit
//! becomes AVAILABLE.

pub mod crews;
pub mod people;
pub mod snapshot;
pub mod wire;

use imbl::{OrdMap, OrdSet};

use crate::caps::CapSet;
use crate::error::{CoreError, CoreResult};
use crate::store::UnitStore;
use crate::types::Status;
use crate::units::NO_TIME;

pub use crews::{Crew, Derived, Shift};
pub use people::{Person, Skill};

/// A unit with crew bookings: what UpsertUnit declared, its crews, and what they make of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rostered {
    pub declared_caps: CapSet,
    pub declared_start_ms: i64,
    pub declared_end_ms: i64,
    /// Ids of the crews booked on the unit (any order).
    pub crews: Vec<String>,
    /// The state last derived and written to the unit table.
    pub derived: Derived,
}

/// A rostered unit's derived state changed (at a tick or by a command).
#[derive(Debug, Clone, PartialEq)]
pub struct RosterChange {
    pub slot: u32,
    /// The crew on the unit now.
    pub crew: Option<String>,
    /// The crew went off while the unit was committed: it keeps its status.
    pub overtime: bool,
}

/// A crew went off with no crew following: the unit went OFF_DUTY, or (`overtime`) it was
/// committed and stayed so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrewOff {
    pub overtime: bool,
}

/// People, shifts, crews and the rostered units' derived state.
#[derive(Debug, Clone, Default)]
pub struct Duty {
    pub(crate) people: OrdMap<String, Person>,
    pub(crate) shifts: OrdMap<String, Shift>,
    pub(crate) crews: OrdMap<String, Crew>,
    pub(crate) rostered: OrdMap<u32, Rostered>,
    /// (due time, slot) of every rostered unit whose derivation will change.
    pub(crate) deadlines: OrdSet<(i64, u32)>,
}

fn conflict(subject: String, reason: String) -> CoreError {
    CoreError::RosterConflict { subject, reason }
}

impl Duty {
    pub fn person(&self, person_id: &str) -> Option<&Person> {
        self.people.get(person_id)
    }

    pub fn shift(&self, shift_id: &str) -> Option<&Shift> {
        self.shifts.get(shift_id)
    }

    pub fn crew(&self, crew_id: &str) -> Option<&Crew> {
        self.crews.get(crew_id)
    }

    pub fn rostered(&self, slot: u32) -> Option<&Rostered> {
        self.rostered.get(&slot)
    }

    /// (people, shifts, crews, rostered units) held.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (self.people.len(), self.shifts.len(), self.crews.len(), self.rostered.len())
    }

    /// The earliest instant at which some rostered unit's derived state changes.
    pub fn next_due(&self) -> Option<i64> {
        self.deadlines.get_min().map(|&(due, _)| due)
    }

    /// Registers a person or replaces their name and skills (validated by the wire layer:
    /// capabilities once each, expiry after valid_from); re-derives the units their crews
    /// are booked on. Cannot fail.
    pub fn upsert_person(
        &mut self,
        units: &mut UnitStore,
        person_id: &str,
        name: String,
        skills: Vec<Skill>,
        now: i64,
    ) -> (bool, Vec<RosterChange>, Vec<CrewOff>) {
        let created = !self.people.contains_key(person_id);
        let mut person = self.people.get(person_id).cloned().unwrap_or_default();
        person.name = name;
        person.skills = skills;
        let mut slots: Vec<u32> = person.crews.iter().map(|c| self.crews[c].slot).collect();
        self.people.insert(person_id.to_owned(), person);
        slots.sort_unstable();
        slots.dedup();
        let (changes, offs) = self.refresh_all(units, &slots, now);
        (created, changes, offs)
    }

    /// Books or changes a shift. Refused, naming the record, when it overlaps another
    /// shift of the person or would leave a booked crew member off shift.
    pub fn upsert_shift(&mut self, shift_id: &str, shift: Shift) -> CoreResult<bool> {
        let person = self
            .people
            .get(&shift.person_id)
            .ok_or_else(|| CoreError::UnknownRecord { kind: "person", id: shift.person_id.clone() })?;
        for other_id in person.shifts.iter().filter(|s| *s != shift_id) {
            let other = &self.shifts[other_id];
            if other.start_ms < shift.end_ms && shift.start_ms < other.end_ms {
                return Err(conflict(
                    format!("shift/{other_id}"),
                    format!(
                        "shift {shift_id:?} of person {:?} overlaps their shift {other_id:?} ({} to {} ms)",
                        shift.person_id, other.start_ms, other.end_ms
                    ),
                ));
            }
        }
        let old = self.shifts.get(shift_id).cloned();
        // Every crew of the people concerned must stay covered with the shift replaced.
        let mut concerned = vec![shift.person_id.as_str()];
        if let Some(o) = &old {
            concerned.push(o.person_id.as_str());
        }
        for person_id in concerned {
            for crew_id in &self.people[person_id].crews {
                let crew = &self.crews[crew_id];
                let covered =
                    |s: &Shift| s.person_id == person_id && s.start_ms <= crew.start_ms && crew.end_ms <= s.end_ms;
                let by_others = self.people[person_id]
                    .shifts
                    .iter()
                    .filter(|id| *id != shift_id)
                    .any(|id| covered(&self.shifts[id]));
                if !by_others && !covered(&shift) {
                    return Err(conflict(
                        format!("crew/{crew_id}"),
                        format!("shift {shift_id:?} as sent would leave crew member {person_id:?} off shift"),
                    ));
                }
            }
        }
        // Nothing below can fail.
        if let Some(o) = &old {
            if let Some(p) = self.people.get_mut(&o.person_id) {
                p.shifts.retain(|s| s != shift_id);
            }
        }
        self.people.get_mut(&shift.person_id).expect("checked above").shifts.push(shift_id.to_owned());
        self.shifts.insert(shift_id.to_owned(), shift);
        Ok(old.is_none())
    }

    /// Books a crew or changes a booking, then re-derives the unit(s) concerned at `now`.
    /// Refused, naming the record, for an unknown member, a member without one shift
    /// covering the window, a member booked in another crew meanwhile, or another crew on
    /// the unit meanwhile.
    pub fn book_crew(
        &mut self,
        units: &mut UnitStore,
        crew_id: &str,
        crew: Crew,
        now: i64,
    ) -> CoreResult<(bool, Vec<RosterChange>, Vec<CrewOff>)> {
        for m in &crew.members {
            let person =
                self.people.get(m).ok_or_else(|| CoreError::UnknownRecord { kind: "person", id: m.clone() })?;
            let covered = person
                .shifts
                .iter()
                .map(|s| &self.shifts[s])
                .any(|s| s.start_ms <= crew.start_ms && crew.end_ms <= s.end_ms);
            if !covered {
                return Err(conflict(
                    format!("person/{m}"),
                    format!(
                        "crew member {m:?} has no shift covering the crew's window ({} to {} ms)",
                        crew.start_ms, crew.end_ms
                    ),
                ));
            }
            for other_id in person.crews.iter().filter(|c| *c != crew_id) {
                let other = &self.crews[other_id];
                if other.overlaps(crew.start_ms, crew.end_ms) {
                    let unit = &units.table().ids[other.slot as usize];
                    return Err(conflict(
                        format!("crew/{other_id}"),
                        format!(
                            "person {m:?} is already booked on unit {unit:?} by crew {other_id:?} during that window"
                        ),
                    ));
                }
            }
        }
        if let Some(r) = self.rostered.get(&crew.slot) {
            for other_id in r.crews.iter().filter(|c| *c != crew_id) {
                if self.crews[other_id].overlaps(crew.start_ms, crew.end_ms) {
                    return Err(conflict(
                        format!("crew/{other_id}"),
                        format!(
                            "unit {:?} already has crew {other_id:?} booked during that window",
                            units.table().ids[crew.slot as usize]
                        ),
                    ));
                }
            }
        }
        // Nothing below can fail.
        let old = self.crews.remove(crew_id);
        if let Some(o) = &old {
            for m in &o.members {
                if let Some(p) = self.people.get_mut(m) {
                    p.crews.retain(|c| c != crew_id);
                }
            }
            if let Some(r) = self.rostered.get_mut(&o.slot) {
                r.crews.retain(|c| c != crew_id);
            }
        }
        for m in &crew.members {
            self.people.get_mut(m).expect("checked above").crews.push(crew_id.to_owned());
        }
        let slot = crew.slot;
        if !self.rostered.contains_key(&slot) {
            let (s, t) = (slot as usize, units.table());
            self.rostered.insert(
                slot,
                Rostered {
                    declared_caps: t.caps[s],
                    declared_start_ms: t.shift_start_ms[s],
                    declared_end_ms: t.shift_end_ms[s],
                    crews: Vec::new(),
                    derived: Derived {
                        active: None,
                        caps: t.caps[s],
                        start_ms: t.shift_start_ms[s],
                        end_ms: t.shift_end_ms[s],
                        due_ms: NO_TIME,
                    },
                },
            );
        }
        self.rostered.get_mut(&slot).expect("inserted above").crews.push(crew_id.to_owned());
        self.crews.insert(crew_id.to_owned(), crew);
        let mut slots = vec![slot];
        let created = old.is_none();
        if let Some(o) = old.filter(|o| o.slot != slot) {
            if self.rostered[&o.slot].crews.is_empty() {
                self.unroster(units, o.slot);
            } else {
                slots.push(o.slot);
            }
        }
        slots.sort_unstable();
        let (changes, offs) = self.refresh_all(units, &slots, now);
        Ok((created, changes, offs))
    }

    /// A unit's last booking went: what UpsertUnit declared applies again.
    fn unroster(&mut self, units: &mut UnitStore, slot: u32) {
        if let Some(r) = self.rostered.remove(&slot) {
            if r.derived.due_ms != NO_TIME {
                self.deadlines.remove(&(r.derived.due_ms, slot));
            }
            units.set_crew_attributes(slot, r.declared_caps, r.declared_start_ms, r.declared_end_ms);
        }
    }

    /// After UpsertUnit wrote a unit's declared attributes: for a rostered unit, keeps them
    /// aside and writes the crew-derived ones back. Returns whether the unit is rostered
    /// (its capabilities and shift are overridden).
    pub fn after_upsert(&mut self, units: &mut UnitStore, slot: u32) -> bool {
        let Some(r) = self.rostered.get_mut(&slot) else { return false };
        let (s, t) = (slot as usize, units.table());
        r.declared_caps = t.caps[s];
        r.declared_start_ms = t.shift_start_ms[s];
        r.declared_end_ms = t.shift_end_ms[s];
        units.set_crew_attributes(slot, r.derived.caps, r.derived.start_ms, r.derived.end_ms);
        true
    }

    /// The clock: re-derives every rostered unit due by `now`, in (due, slot) order.
    pub fn tick(&mut self, units: &mut UnitStore, now: i64) -> (Vec<RosterChange>, Vec<CrewOff>) {
        let mut slots = Vec::new();
        while let Some(&(due, slot)) = self.deadlines.get_min() {
            if due > now {
                break;
            }
            self.deadlines.remove(&(due, slot));
            if let Some(r) = self.rostered.get_mut(&slot) {
                r.derived.due_ms = NO_TIME;
            }
            slots.push(slot);
        }
        let (mut changes, offs) = self.refresh_all(units, &slots, now);
        let ids = &units.table().ids;
        changes.sort_by(|a, b| ids[a.slot as usize].cmp(&ids[b.slot as usize]));
        (changes, offs)
    }

    fn refresh_all(&mut self, units: &mut UnitStore, slots: &[u32], now: i64) -> (Vec<RosterChange>, Vec<CrewOff>) {
        let mut changes = Vec::new();
        let mut offs = Vec::new();
        for &slot in slots {
            if let Some((change, off)) = self.refresh(units, slot, now) {
                changes.push(change);
                offs.extend(off);
            }
        }
        (changes, offs)
    }

    /// Re-derives one rostered unit at `now`: writes its capabilities and window, moves its
    /// deadline, and makes the status change a crew going off or coming on implies.
    fn refresh(&mut self, units: &mut UnitStore, slot: u32, now: i64) -> Option<(RosterChange, Option<CrewOff>)> {
        let r = self.rostered.get(&slot)?;
        let d = crews::unit_at(r.crews.iter(), &self.crews, &self.people, now);
        let before = r.derived.clone();
        if before.due_ms != NO_TIME {
            self.deadlines.remove(&(before.due_ms, slot));
        }
        if d.due_ms != NO_TIME {
            self.deadlines.insert((d.due_ms, slot));
        }
        let status = units.table().status[slot as usize];
        let mut off = None;
        let mut to = None;
        if before.active.is_some() && d.active.is_none() {
            match status {
                Status::Available | Status::Unavailable => {
                    to = Some(Status::OffDuty);
                    off = Some(CrewOff { overtime: false });
                }
                Status::OffDuty => {}
                _ => off = Some(CrewOff { overtime: true }),
            }
        } else if d.active.is_some() && before.active != d.active && status == Status::OffDuty {
            to = Some(Status::Available);
        }
        if let Some(to) = to {
            let id = units.table().ids[slot as usize].clone();
            units.set_status(&id, to).expect("OFF_DUTY from AVAILABLE or UNAVAILABLE, and back, are lifecycle moves");
        }
        units.set_crew_attributes(slot, d.caps, d.start_ms, d.end_ms);
        let changed = d.active != before.active
            || d.caps != before.caps
            || (d.start_ms, d.end_ms) != (before.start_ms, before.end_ms)
            || to.is_some()
            || off.is_some();
        let crew = d.active.clone();
        self.rostered.get_mut(&slot).expect("held above").derived = d;
        changed.then(|| (RosterChange { slot, crew, overtime: off.is_some_and(|o| o.overtime) }, off))
    }

    /// Checks every rule the roster keeps; for tests and the simulator.
    pub fn check(&self, units: &UnitStore) -> Result<(), String> {
        let t = units.table();
        for (crew_id, c) in &self.crews {
            let r = self.rostered.get(&c.slot).ok_or_else(|| format!("crew {crew_id} is on a unit not rostered"))?;
            if !r.crews.contains(crew_id) {
                return Err(format!("crew {crew_id} missing from its unit's bookings"));
            }
            for m in &c.members {
                let p = self.people.get(m).ok_or_else(|| format!("crew {crew_id} holds unknown person {m}"))?;
                if !p.crews.contains(crew_id) {
                    return Err(format!("person {m} does not list crew {crew_id}"));
                }
                let covered =
                    p.shifts.iter().any(|s| self.shifts[s].start_ms <= c.start_ms && c.end_ms <= self.shifts[s].end_ms);
                if !covered {
                    return Err(format!("crew {crew_id}: member {m} is not on shift"));
                }
                for other in p.crews.iter().filter(|o| *o != crew_id) {
                    if self.crews[other].overlaps(c.start_ms, c.end_ms) {
                        return Err(format!("person {m} is in crews {crew_id} and {other} at once"));
                    }
                }
            }
        }
        for (shift_id, s) in &self.shifts {
            let p = self.people.get(&s.person_id).ok_or_else(|| format!("shift {shift_id} of unknown person"))?;
            if !p.shifts.contains(shift_id) {
                return Err(format!("person {} does not list shift {shift_id}", s.person_id));
            }
        }
        let mut due = 0;
        for (&slot, r) in &self.rostered {
            if r.crews.is_empty() {
                return Err(format!("unit {} is rostered without a crew", t.ids[slot as usize]));
            }
            let s = slot as usize;
            if (t.caps[s], t.shift_start_ms[s], t.shift_end_ms[s])
                != (r.derived.caps, r.derived.start_ms, r.derived.end_ms)
            {
                return Err(format!("unit {}'s table differs from its crew-derived state", t.ids[s]));
            }
            if r.derived.due_ms != NO_TIME {
                due += 1;
                if !self.deadlines.contains(&(r.derived.due_ms, slot)) {
                    return Err(format!("unit {}'s roster deadline is not indexed", t.ids[s]));
                }
            }
            for (i, a) in r.crews.iter().enumerate() {
                for b in &r.crews[i + 1..] {
                    let (ca, cb) = (&self.crews[a], &self.crews[b]);
                    if ca.overlaps(cb.start_ms, cb.end_ms) {
                        return Err(format!("unit {} has crews {a} and {b} at once", t.ids[s]));
                    }
                }
            }
        }
        if due != self.deadlines.len() {
            return Err(format!("{} roster deadlines indexed for {due} units", self.deadlines.len()));
        }
        Ok(())
    }
}
