//! The unit table and the grid kept in step: every state change of a unit goes through
//! here, so the index can never disagree with the table.

use rustc_hash::FxHashMap;

use crate::caps::{CapSet, Vocabulary, DEFAULT_SCARCE};
use crate::error::{CoreError, CoreResult};
use crate::eta::RankConfig;
use crate::geo;
use crate::index::{partition_of, Grid};
use crate::rank::{self, Candidate, Model, Query, Resolved};
use crate::status::{self, Transition};
use crate::types::{Agency, Grade, Status};
use crate::units::{AreaId, TypeId, UnitTable, NO_TIME};

/// Longest unit_id, incident_id or name the core accepts, in bytes. Callsigns are short;
/// a longer id is a client bug, and the limit keeps the audit trail bounded.
pub const MAX_ID_LEN: usize = 64;

/// The static attributes of a unit, as given to [`UnitStore::upsert`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitSpec {
    pub agency: Agency,
    pub unit_type: String,
    pub capabilities: Vec<String>,
    pub home_area: Option<String>,
    pub shift_start_ms: Option<i64>,
    pub shift_end_ms: Option<i64>,
    /// Status of a new unit (default AVAILABLE). For an existing unit it must be `None` or
    /// its current status: status changes go through the lifecycle.
    pub status: Option<Status>,
}

/// One unit as a snapshot holds it (see [`UnitStore::restore_unit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredUnit {
    pub unit_id: String,
    pub live: bool,
    pub agency: Agency,
    pub unit_type: TypeId,
    pub caps: CapSet,
    pub status: Status,
    pub home_area: AreaId,
    pub shift_start_ms: i64,
    pub shift_end_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub location_ms: i64,
    pub incident: Option<String>,
}

/// What a batch location update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocationReport {
    pub applied: usize,
    pub skipped_unknown_unit: usize,
    pub skipped_bad_coordinate: usize,
    pub skipped_stale: usize,
    /// Dated outside the accepted window's lower bound or at/after its upper bound.
    pub skipped_bad_time: usize,
    /// Dated further into the future than the accepted skew.
    pub skipped_future: usize,
}

/// Which ping times a batch accepts: `min_ms <= time < max_ms` is a valid time, and a
/// valid time after `latest_ms` is "from the future". The unit index alone accepts any
/// time; the state machine accepts the API's range and a bounded skew ([`crate::time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingWindow {
    pub min_ms: i64,
    pub max_ms: i64,
    pub latest_ms: i64,
}

impl PingWindow {
    /// Any time but the "no time" marker.
    pub const ANY: PingWindow = PingWindow { min_ms: NO_TIME + 1, max_ms: i64::MAX, latest_ms: i64::MAX };
}

#[derive(Debug, Clone)]
pub struct UnitStore {
    table: UnitTable,
    grid: Grid,
    vocab: Vocabulary,
    scarce: CapSet,
    config: RankConfig,
    types: Vec<(Agency, String)>,
    type_ids: FxHashMap<(Agency, String), TypeId>,
    type_speed: Vec<f64>,
    type_agency: Vec<Agency>,
    areas: Vec<String>,
    area_ids: FxHashMap<String, AreaId>,
}

/// Checks an id against the identifier grammar ([`crate::wire::ident::admit`]: the whole
/// grammar for live requests, length and emptiness only while replaying a journal);
/// `field` names it in the error.
pub fn validate_id(field: &str, id: &str) -> CoreResult<()> {
    crate::wire::ident::admit(id).map_err(|refusal| CoreError::invalid(field, refusal.to_string()))
}

impl UnitStore {
    /// A store with the default capability vocabulary.
    pub fn new(config: RankConfig, cell_deg: f64) -> CoreResult<Self> {
        Self::with_vocabulary(Vocabulary::default(), DEFAULT_SCARCE, config, cell_deg)
    }

    pub fn with_vocabulary<S: AsRef<str>>(
        vocab: Vocabulary,
        scarce: &[S],
        config: RankConfig,
        cell_deg: f64,
    ) -> CoreResult<Self> {
        if !(cell_deg.is_finite() && (0.001..=10.0).contains(&cell_deg)) {
            return Err(CoreError::invalid("cell_deg", format!("{cell_deg} is outside [0.001, 10]")));
        }
        config.validate()?;
        let scarce = vocab.encode(scarce)?;
        Ok(Self {
            table: UnitTable::default(),
            grid: Grid::new(cell_deg),
            vocab,
            scarce,
            config,
            types: Vec::new(),
            type_ids: FxHashMap::default(),
            type_speed: Vec::new(),
            type_agency: Vec::new(),
            areas: vec![String::new()],
            area_ids: FxHashMap::default(),
        })
    }

    pub fn table(&self) -> &UnitTable {
        &self.table
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    pub fn scarce(&self) -> CapSet {
        self.scarce
    }

    pub fn config(&self) -> &RankConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Replaces the model; refused whole if any value is invalid.
    pub fn set_config(&mut self, config: RankConfig) -> CoreResult<()> {
        config.validate()?;
        self.type_speed = self.types.iter().map(|(a, t)| config.speed_mps(*a, t)).collect();
        self.config = config;
        Ok(())
    }

    /// Distinct unit types seen (type ids are 0..this).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    pub fn unit_type_name(&self, id: TypeId) -> &str {
        &self.types[id as usize].1
    }

    pub fn area_name(&self, id: AreaId) -> Option<&str> {
        (id != 0).then(|| self.areas[id as usize].as_str())
    }

    pub fn slot(&self, unit_id: &str) -> CoreResult<u32> {
        self.table.slot(unit_id).ok_or_else(|| CoreError::UnknownUnit(unit_id.to_owned()))
    }

    fn intern_type(&mut self, agency: Agency, name: &str) -> CoreResult<TypeId> {
        if let Some(&id) = self.type_ids.get(&(agency, name.to_owned())) {
            return Ok(id);
        }
        validate_id("unit_type", name)?;
        let id = TypeId::try_from(self.types.len())
            .map_err(|_| CoreError::invalid("unit_type", "too many distinct unit types"))?;
        self.types.push((agency, name.to_owned()));
        self.type_ids.insert((agency, name.to_owned()), id);
        self.type_speed.push(self.config.speed_mps(agency, name));
        self.type_agency.push(agency);
        Ok(id)
    }

    fn intern_area(&mut self, name: &str) -> CoreResult<AreaId> {
        if let Some(&id) = self.area_ids.get(name) {
            return Ok(id);
        }
        validate_id("home_area", name)?;
        let id = self.areas.len() as AreaId;
        self.areas.push(name.to_owned());
        self.area_ids.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Interned unit types in id order: (agency, name). Snapshots keep this order so a
    /// restored store gives every type its old id.
    pub fn type_table(&self) -> &[(Agency, String)] {
        &self.types
    }

    /// Interned area names in id order (id 0, "no area", is the empty string).
    pub fn area_table(&self) -> &[String] {
        &self.areas
    }

    /// Re-interns a snapshot's type and area tables into an empty store, in their order.
    pub fn restore_tables(&mut self, types: &[(Agency, String)], areas: &[String]) -> CoreResult<()> {
        if !self.types.is_empty() || self.areas.len() != 1 || !self.table.ids.is_empty() {
            return Err(CoreError::invalid("snapshot", "can only be restored into an empty store"));
        }
        for (agency, name) in types {
            self.intern_type(*agency, name)?;
        }
        for name in areas.iter().skip(1) {
            self.intern_area(name)?;
        }
        if self.types.len() != types.len() || self.areas.len() != areas.len().max(1) {
            return Err(CoreError::invalid("snapshot", "repeats a unit type or area name"));
        }
        Ok(())
    }

    /// Appends one unit of a snapshot at the next slot, exactly as it was (status, incident
    /// link, position); a removed unit keeps its dead slot so slots never shift.
    pub fn restore_unit(&mut self, u: &RestoredUnit) -> CoreResult<u32> {
        let types = self.types.len();
        if u.unit_type as usize >= types || u.home_area as usize >= self.areas.len() {
            return Err(CoreError::invalid(
                "snapshot",
                format!("unit {:?} refers to an unknown type or area", u.unit_id),
            ));
        }
        if u.live && self.table.slot(&u.unit_id).is_some() {
            return Err(CoreError::invalid("snapshot", format!("unit {:?} appears twice", u.unit_id)));
        }
        let slot = self.table.push(&u.unit_id, u.agency, u.unit_type, u.status);
        let s = slot as usize;
        let t = &mut self.table;
        t.caps[s] = u.caps;
        t.home_area[s] = u.home_area;
        t.shift_start_ms[s] = u.shift_start_ms;
        t.shift_end_ms[s] = u.shift_end_ms;
        t.incident[s] = u.incident.as_deref().map(Into::into);
        if !u.live {
            t.remove(slot);
            return Ok(slot);
        }
        if u.location_ms != NO_TIME && geo::is_valid(u.lat, u.lon) {
            t.lat[s] = u.lat;
            t.lon[s] = u.lon;
            t.location_ms[s] = u.location_ms;
            self.grid.insert(slot, partition_of(u.agency, u.status), u.lat, u.lon, u.caps, u.unit_type);
        }
        Ok(slot)
    }

    /// Registers a unit or changes its static attributes; returns its slot. Validates
    /// everything before changing anything.
    pub fn upsert(&mut self, unit_id: &str, spec: &UnitSpec) -> CoreResult<u32> {
        validate_id("unit_id", unit_id)?;
        let caps = self.vocab.encode(&spec.capabilities)?;
        if let (Some(start), Some(end)) = (spec.shift_start_ms, spec.shift_end_ms) {
            if start >= end {
                return Err(CoreError::invalid("shift_end", "must be after shift_start"));
            }
        }
        let existing = self.table.slot(unit_id);
        if let (Some(slot), Some(status)) = (existing, spec.status) {
            let current = self.table.status[slot as usize];
            if current != status {
                return Err(CoreError::invalid(
                    "status",
                    format!("unit {unit_id:?} is {}: change status through the lifecycle", current.name()),
                ));
            }
        }
        validate_id("unit_type", &spec.unit_type)?;
        if let Some(area) = &spec.home_area {
            validate_id("home_area", area)?;
        }
        // Nothing below can fail except on exhaustion of u16 type ids, checked first.
        let unit_type = self.intern_type(spec.agency, &spec.unit_type)?;
        let home_area = match &spec.home_area {
            Some(area) => self.intern_area(area)?,
            None => 0,
        };
        let slot = match existing {
            Some(slot) => slot,
            None => self.table.push(unit_id, spec.agency, unit_type, spec.status.unwrap_or(Status::Available)),
        };
        let s = slot as usize;
        self.table.set_agency(slot, spec.agency);
        let t = &mut self.table;
        t.unit_type[s] = unit_type;
        t.caps[s] = caps;
        t.home_area[s] = home_area;
        t.shift_start_ms[s] = spec.shift_start_ms.unwrap_or(NO_TIME);
        t.shift_end_ms[s] = spec.shift_end_ms.unwrap_or(NO_TIME);
        self.grid.repartition(slot, partition_of(spec.agency, t.status[s]));
        self.grid.set_attributes(slot, caps, unit_type);
        Ok(slot)
    }

    /// Sets the capabilities and shift window a unit's crew gives it ([`crate::duty`]),
    /// through the same path as [`Self::upsert`]: the table and the grid entry together, so
    /// the ranking sees crew-derived capabilities exactly as upserted ones.
    pub fn set_crew_attributes(&mut self, slot: u32, caps: CapSet, shift_start_ms: i64, shift_end_ms: i64) {
        let s = slot as usize;
        let t = &mut self.table;
        t.caps[s] = caps;
        t.shift_start_ms[s] = shift_start_ms;
        t.shift_end_ms[s] = shift_end_ms;
        let unit_type = t.unit_type[s];
        self.grid.set_attributes(slot, caps, unit_type);
    }

    /// Live units with an id greater than `after` that pass the filters (an empty filter
    /// passes every unit), in id order: what ListUnits pages through.
    pub fn units_after<'a>(
        &'a self,
        after: &'a str,
        statuses: &'a [Status],
        agencies: &'a [Agency],
        home_area: Option<&'a str>,
    ) -> impl Iterator<Item = u32> + 'a {
        let t = &self.table;
        t.ids_after(after).filter(move |&slot| {
            let i = slot as usize;
            (statuses.is_empty() || statuses.contains(&t.status[i]))
                && (agencies.is_empty() || agencies.contains(&t.agency[i]))
                && home_area.is_none_or(|a| self.area_name(t.home_area[i]) == Some(a))
        })
    }

    /// Forgets a unit. A unit attached to an incident must be released first.
    pub fn remove(&mut self, unit_id: &str) -> CoreResult<()> {
        let slot = self.slot(unit_id)?;
        if let Some(incident) = &self.table.incident[slot as usize] {
            return Err(CoreError::InvalidTransition {
                unit_id: unit_id.to_owned(),
                reason: format!("attached to incident {incident:?}; release it first"),
            });
        }
        self.grid.remove(slot);
        self.table.remove(slot);
        Ok(())
    }

    fn set_status_at(&mut self, slot: u32, status: Status) {
        let s = slot as usize;
        self.table.set_status(slot, status);
        self.grid.repartition(slot, partition_of(self.table.agency[s], status));
    }

    /// Checks a status change against the lifecycle without making it, so a caller can
    /// refuse before journaling; returns the unit's slot and what the change would do.
    pub fn check_transition(&self, unit_id: &str, to: Status) -> CoreResult<(u32, Transition)> {
        let slot = self.slot(unit_id)?;
        let from = self.table.status[slot as usize];
        match status::transition(from, to) {
            Transition::Refused => {
                let hint = if to == Status::Dispatched { " (only an assignment dispatches a unit)" } else { "" };
                Err(CoreError::InvalidTransition {
                    unit_id: unit_id.to_owned(),
                    reason: format!("cannot go from {} to {}{hint}", from.name(), to.name()),
                })
            }
            allowed => Ok((slot, allowed)),
        }
    }

    /// A status change checked against the lifecycle. Returns the incident the unit was
    /// released from, if the change released it.
    pub fn set_status(&mut self, unit_id: &str, to: Status) -> CoreResult<Option<String>> {
        let (slot, transition) = self.check_transition(unit_id, to)?;
        match transition {
            Transition::Refused => unreachable!("check_transition refuses with an error"),
            Transition::Keep => {
                self.set_status_at(slot, to);
                Ok(None)
            }
            Transition::Release => {
                self.set_status_at(slot, to);
                self.table.incident_grade[slot as usize] = 0;
                Ok(self.table.incident[slot as usize].take().map(String::from))
            }
        }
    }

    /// Checks that every unit can be assigned (known, AVAILABLE, listed once), naming the
    /// first that cannot.
    pub fn check_assignable<S: AsRef<str>>(&self, unit_ids: &[S]) -> CoreResult<Vec<u32>> {
        let plan = self.check_assignment(unit_ids, None)?;
        Ok(plan.into_iter().map(|(slot, _)| slot).collect())
    }

    /// Checks an assignment without making it: every unit known, listed once, and either
    /// AVAILABLE or, when `diversion` names the target (pre-emption), attached to another
    /// incident of a lower grade than an IMMEDIATE target. Returns each unit's slot and the
    /// incident it would be diverted from; refuses naming the first unit that cannot go.
    /// The grade rule is fixed here, not configured: an assignment in the journal must
    /// apply again on replay whatever the ranking configuration then.
    pub fn check_assignment<S: AsRef<str>>(
        &self,
        unit_ids: &[S],
        diversion: Option<(&str, Grade)>,
    ) -> CoreResult<Vec<(u32, Option<String>)>> {
        if unit_ids.is_empty() {
            return Err(CoreError::invalid("unit_ids", "must not be empty"));
        }
        let mut plan: Vec<(u32, Option<String>)> = Vec::with_capacity(unit_ids.len());
        for id in unit_ids {
            let id = id.as_ref();
            let slot = self.slot(id)?;
            if plan.iter().any(|(s, _)| *s == slot) {
                return Err(CoreError::invalid("unit_ids", format!("{id:?} listed twice")));
            }
            let s = slot as usize;
            if let Some(incident) = &self.table.incident[s] {
                let Some((target, target_grade)) = diversion else {
                    return Err(CoreError::NotAssignable {
                        unit_id: id.to_owned(),
                        reason: format!("already assigned to incident {incident:?}"),
                    });
                };
                if &**incident == target {
                    return Err(CoreError::NotAssignable {
                        unit_id: id.to_owned(),
                        reason: format!("already attached to incident {incident:?}"),
                    });
                }
                let from_grade = self.table.attached_grade(slot).unwrap_or(Grade::Immediate);
                let refuse = |reason: String| CoreError::DiversionRefused {
                    unit_id: id.to_owned(),
                    from_incident: incident.to_string(),
                    to_incident: target.to_owned(),
                    reason,
                };
                if target_grade != Grade::Immediate {
                    return Err(refuse(format!(
                        "only IMMEDIATE incidents may divert units; it is {}",
                        target_grade.name()
                    )));
                }
                if from_grade.index() <= target_grade.index() {
                    return Err(refuse(format!(
                        "the unit's incident is {}, not of a lower grade than IMMEDIATE",
                        from_grade.name()
                    )));
                }
                plan.push((slot, Some(incident.to_string())));
                continue;
            }
            if self.table.status[s] != Status::Available {
                return Err(CoreError::NotAssignable {
                    unit_id: id.to_owned(),
                    reason: format!("status is {}", self.table.status[s].name()),
                });
            }
            plan.push((slot, None));
        }
        Ok(plan)
    }

    /// Assigns all the units to the incident, or none: each becomes DISPATCHED and linked.
    /// A standalone store knows no grades: its assignments count as IMMEDIATE, which is
    /// never pre-empted.
    pub fn assign<S: AsRef<str>>(&mut self, incident_id: &str, unit_ids: &[S]) -> CoreResult<()> {
        validate_id("incident_id", incident_id)?;
        let slots = self.check_assignable(unit_ids)?;
        self.dispatch_slots(incident_id, Grade::Immediate, &slots);
        Ok(())
    }

    /// Makes checked units DISPATCHED to the incident, linked, with its grade: the state
    /// machine's half of an assignment (a diverted unit moves from its old incident here
    /// in one step, whatever its status was).
    pub fn dispatch_slots(&mut self, incident_id: &str, grade: Grade, slots: &[u32]) {
        for &slot in slots {
            self.set_status_at(slot, Status::Dispatched);
            self.table.incident[slot as usize] = Some(incident_id.into());
            self.table.incident_grade[slot as usize] = grade as u8;
        }
    }

    /// Records a new grade for the units attached to a re-graded incident.
    pub fn regrade(&mut self, slots: &[u32], grade: Grade) {
        for &slot in slots {
            self.table.incident_grade[slot as usize] = grade as u8;
        }
    }

    /// Releases every listed unit still attached to the incident (closing it): DISPATCHED,
    /// EN_ROUTE and ON_SCENE units become AVAILABLE. Returns the ids released.
    pub fn release_incident<S: AsRef<str>>(&mut self, incident_id: &str, unit_ids: &[S]) -> CoreResult<Vec<String>> {
        let mut released = Vec::new();
        for id in unit_ids {
            let Some(slot) = self.table.slot(id.as_ref()) else { continue };
            let s = slot as usize;
            if self.table.incident[s].as_deref() == Some(incident_id) && status::is_attached(self.table.status[s]) {
                self.table.incident[s] = None;
                self.table.incident_grade[s] = 0;
                self.set_status_at(slot, Status::Available);
                released.push(id.as_ref().to_owned());
            }
        }
        Ok(released)
    }

    /// Applies one ping to a known slot: false when older than the stored position.
    #[inline]
    fn apply_location(&mut self, slot: u32, lat: f64, lon: f64, time_ms: i64) -> bool {
        let s = slot as usize;
        let last = self.table.location_ms[s];
        if last != NO_TIME && time_ms < last {
            return false;
        }
        self.table.lat[s] = lat;
        self.table.lon[s] = lon;
        self.table.location_ms[s] = time_ms;
        if !self.grid.relocate(slot, lat, lon) {
            let part = partition_of(self.table.agency[s], self.table.status[s]);
            self.grid.insert(slot, part, lat, lon, self.table.caps[s], self.table.unit_type[s]);
        }
        true
    }

    /// One ping. Ok(false) when it is older than the stored position.
    pub fn update_location(&mut self, unit_id: &str, lat: f64, lon: f64, time_ms: i64) -> CoreResult<bool> {
        let slot = self.slot(unit_id)?;
        geo::validate(lat, lon)?;
        check_time("time_ms", time_ms)?;
        Ok(self.apply_location(slot, lat, lon, time_ms))
    }

    /// A batch of pings addressed by slot. `strict`: any unknown slot or bad value refuses
    /// the whole batch, naming the first offender, and nothing changes. Otherwise each ping
    /// is applied or skipped on its own and counted.
    pub fn update_locations_by_slot(
        &mut self,
        slots: &[i64],
        lat: &[f64],
        lon: &[f64],
        time_ms: &[i64],
        strict: bool,
    ) -> CoreResult<LocationReport> {
        check_lengths("slots", slots.len(), lat.len(), lon.len(), time_ms.len())?;
        let known = |t: &UnitTable, slot: i64| u32::try_from(slot).ok().filter(|&s| t.is_live(s));
        if strict {
            for i in 0..slots.len() {
                if known(&self.table, slots[i]).is_none() {
                    return Err(CoreError::invalid(
                        format!("slots[{i}]"),
                        format!("{} is not a live unit slot", slots[i]),
                    ));
                }
                check_ping(i, lat[i], lon[i], time_ms[i])?;
            }
        }
        let mut report = LocationReport::default();
        for i in 0..slots.len() {
            let Some(slot) = known(&self.table, slots[i]) else {
                report.skipped_unknown_unit += 1;
                continue;
            };
            self.count_ping(&mut report, slot, lat[i], lon[i], time_ms[i], PingWindow::ANY);
        }
        Ok(report)
    }

    /// A batch of pings addressed by unit_id; see [`Self::update_locations_by_slot`].
    pub fn update_locations<S: AsRef<str>>(
        &mut self,
        unit_ids: &[S],
        lat: &[f64],
        lon: &[f64],
        time_ms: &[i64],
        strict: bool,
    ) -> CoreResult<LocationReport> {
        check_lengths("unit_ids", unit_ids.len(), lat.len(), lon.len(), time_ms.len())?;
        if strict {
            for (i, id) in unit_ids.iter().enumerate() {
                if self.table.slot(id.as_ref()).is_none() {
                    return Err(CoreError::UnknownUnit(id.as_ref().to_owned()));
                }
                check_ping(i, lat[i], lon[i], time_ms[i])?;
            }
        }
        Ok(self.apply_pings(unit_ids, lat, lon, time_ms, PingWindow::ANY))
    }

    /// A batch of pings by unit_id, each applied or skipped on its own, with the API's
    /// time range and pings dated after `latest_ms` skipped as from the future.
    pub fn update_locations_checked<S: AsRef<str>>(
        &mut self,
        unit_ids: &[S],
        lat: &[f64],
        lon: &[f64],
        time_ms: &[i64],
        latest_ms: i64,
    ) -> CoreResult<LocationReport> {
        check_lengths("unit_ids", unit_ids.len(), lat.len(), lon.len(), time_ms.len())?;
        let window = PingWindow { min_ms: crate::time::MIN_TIME_MS, max_ms: crate::time::MAX_TIME_MS, latest_ms };
        Ok(self.apply_pings(unit_ids, lat, lon, time_ms, window))
    }

    fn apply_pings<S: AsRef<str>>(
        &mut self,
        unit_ids: &[S],
        lat: &[f64],
        lon: &[f64],
        time_ms: &[i64],
        window: PingWindow,
    ) -> LocationReport {
        let mut report = LocationReport::default();
        for (i, id) in unit_ids.iter().enumerate() {
            let Some(slot) = self.table.slot(id.as_ref()) else {
                report.skipped_unknown_unit += 1;
                continue;
            };
            self.count_ping(&mut report, slot, lat[i], lon[i], time_ms[i], window);
        }
        report
    }

    #[inline]
    fn count_ping(&mut self, report: &mut LocationReport, slot: u32, lat: f64, lon: f64, time_ms: i64, w: PingWindow) {
        if !geo::is_valid(lat, lon) {
            report.skipped_bad_coordinate += 1;
        } else if time_ms < w.min_ms || time_ms >= w.max_ms || time_ms == NO_TIME {
            report.skipped_bad_time += 1;
        } else if time_ms > w.latest_ms {
            report.skipped_future += 1;
        } else if self.apply_location(slot, lat, lon, time_ms) {
            report.applied += 1;
        } else {
            report.skipped_stale += 1;
        }
    }

    /// Resolves names in a query once; unknown capability names are errors.
    pub fn resolve(&self, q: &Query) -> CoreResult<Resolved> {
        rank::validate_k(q.k)?;
        let required = self.vocab.encode(&q.required)?;
        let mut agency_ok = [q.agencies.is_empty(); 3];
        for a in &q.agencies {
            agency_ok[a.index()] = true;
        }
        let mut status_ok = [false; 7];
        if q.statuses.is_empty() {
            status_ok[Status::Available.index()] = true;
        }
        for s in &q.statuses {
            status_ok[s.index()] = true;
        }
        // Pre-emption: committed units join the candidates, filtered by their incident's
        // grade in `rank::eligible_now`.
        let diversion = (q.diversions && q.grade == Grade::Immediate).then(|| {
            status_ok[Status::Dispatched.index()] = true;
            status_ok[Status::EnRoute.index()] = true;
            if self.config.preempt_on_scene {
                status_ok[Status::OnScene.index()] = true;
            }
            std::array::from_fn(|g| self.config.preemptible(Grade::ALL[g]))
        });
        let unit_types = if q.unit_types.is_empty() {
            None
        } else {
            let mut ids = Vec::new();
            for name in &q.unit_types {
                validate_id("unit_types", name)?;
                for &a in Agency::ALL {
                    if let Some(&id) = self.type_ids.get(&(a, name.clone())) {
                        ids.push(id);
                    }
                }
            }
            Some(ids)
        };
        let area = q.area.as_deref().and_then(|a| self.area_ids.get(a).copied()).unwrap_or(0);
        // A query area nobody calls home still makes every unit a cross-area unit.
        let area = if area == 0 && q.area.is_some() { AreaId::MAX } else { area };
        let min_mobilisation = Status::ALL
            .iter()
            .filter(|s| status_ok[s.index()])
            .map(|&s| self.config.mobilisation(s))
            .fold(f64::INFINITY, f64::min);
        let max_speed = self
            .type_speed
            .iter()
            .zip(&self.type_agency)
            .enumerate()
            .filter(|(id, (_, a))| {
                agency_ok[a.index()] && unit_types.as_ref().is_none_or(|t| t.contains(&(*id as TypeId)))
            })
            .map(|(_, (&speed, _))| speed)
            .fold(0.0, f64::max);
        let min_pace =
            if max_speed > 0.0 { self.config.circuity / (max_speed * self.config.blue_light(q.grade)) } else { 0.0 };
        let blue = self.config.blue_light(q.grade);
        let pace_by_type = self.type_speed.iter().map(|&speed| self.config.circuity / (speed * blue)).collect();
        Ok(Resolved {
            pace_by_type,
            stale_exclude_ms: self.config.stale_exclude_after_seconds * 1000.0,
            by_eta: q.by_eta,
            now_ms: q.now_ms,
            k: q.k,
            grade: q.grade,
            required,
            partitions: rank::partitions(&agency_ok, &status_ok),
            agency_ok,
            status_ok,
            unit_types,
            area,
            min_mobilisation,
            min_pace,
            diversion,
        })
    }

    fn model(&self) -> Model<'_> {
        Model {
            config: &self.config,
            type_speed: &self.type_speed,
            type_agency: &self.type_agency,
            scarce: self.scarce,
        }
    }

    /// The exact top-K for a query.
    pub fn rank(&self, q: &Query) -> CoreResult<Vec<Candidate>> {
        let resolved = self.resolve(q)?;
        self.rank_resolved(q.lat, q.lon, &resolved)
    }

    /// The exact top-K at a location for an already resolved query.
    pub fn rank_resolved(&self, lat: f64, lon: f64, q: &Resolved) -> CoreResult<Vec<Candidate>> {
        rank::search(&self.table, &self.grid, &self.model(), lat, lon, q)
    }

    /// The oracle: the same answer by scanning every unit.
    pub fn rank_brute_force(&self, q: &Query) -> CoreResult<Vec<Candidate>> {
        let resolved = self.resolve(q)?;
        geo::validate(q.lat, q.lon)?;
        Ok(rank::brute_force(&self.table, &self.model(), q.lat, q.lon, &resolved))
    }

    /// Bytes held by the table and the index (an estimate of heap use).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.grid.memory_bytes()
    }
}

fn check_lengths(field: &str, n: usize, lat: usize, lon: usize, time: usize) -> CoreResult<()> {
    for (name, len) in [("lat", lat), ("lon", lon), ("time_ms", time)] {
        if len != n {
            return Err(CoreError::invalid(name, format!("length {len} differs from {field} length {n}")));
        }
    }
    Ok(())
}

fn check_time(field: &str, time_ms: i64) -> CoreResult<()> {
    if time_ms == NO_TIME {
        return Err(CoreError::invalid(field, "is not a valid time"));
    }
    Ok(())
}

fn check_ping(i: usize, lat: f64, lon: f64, time_ms: i64) -> CoreResult<()> {
    geo::validate(lat, lon).map_err(|e| match e {
        CoreError::InvalidArgument { field, reason } => {
            CoreError::InvalidArgument { field: format!("{field}[{i}]"), reason }
        }
        other => other,
    })?;
    check_time(&format!("time_ms[{i}]"), time_ms)
}

impl UnitStore {
    /// For each point, whether an eligible unit (per the query's filters) can arrive
    /// within `target_s` seconds. The query's location, K and area are not used.
    pub fn coverage(&self, q: &Query, points: &[(f64, f64)], target_s: f64) -> CoreResult<Vec<bool>> {
        if !(target_s.is_finite() && target_s >= 0.0) {
            return Err(CoreError::invalid("target_seconds", format!("{target_s} must be finite and >= 0")));
        }
        let resolved = self.resolve(q)?;
        let model = self.model();
        Ok(points
            .iter()
            .map(|&(lat, lon)| {
                crate::coverage::reachable(&self.table, &self.grid, &model, lat, lon, &resolved, target_s)
            })
            .collect())
    }

    /// The oracle for [`Self::coverage`].
    pub fn coverage_brute_force(&self, q: &Query, points: &[(f64, f64)], target_s: f64) -> CoreResult<Vec<bool>> {
        let resolved = self.resolve(q)?;
        let model = self.model();
        Ok(points
            .iter()
            .map(|&(lat, lon)| {
                crate::coverage::reachable_brute_force(&self.table, &model, lat, lon, &resolved, target_s)
            })
            .collect())
    }
}
