//! Incidents: the demand side of the state, with the counts the metrics read kept up to date
//! as incidents change rather than recounted at every scrape.

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::OrdMap;

use crate::command::RequirementGroup;
use crate::types::{Grade, IncidentStatus, N_GRADES};

/// One incident. Units are referred to by their (never reused) slot in the unit table.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub incident_id: String,
    pub grade: Grade,
    pub incident_type: String,
    pub lat: f64,
    pub lon: f64,
    pub area: String,
    /// Shared: most incidents carry one of a handful of response plans.
    pub requirements: Arc<[RequirementGroup]>,
    /// The response plan the requirements came from; empty when the client sent them.
    pub response_plan: String,
    pub status: IncidentStatus,
    /// Every unit ever assigned, in assignment order.
    pub assigned: Vec<u32>,
    /// Units attached now (DISPATCHED, EN_ROUTE or ON_SCENE for this incident).
    pub attached: Vec<u32>,
    pub created_ms: i64,
    pub first_assigned_ms: Option<i64>,
    pub first_on_scene_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    /// Units that reached the scene and were released from it (their part is done): they
    /// still count towards the plan, so a job whose unit left for custody is not queued
    /// again. A unit diverted or stood down before arriving does not count.
    pub cleared: u32,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Closed
    }

    /// Open, no unit attached now, and nobody has arrived yet: waiting for a resource. An
    /// incident whose only unit was stood down is waiting again, and its age still counts
    /// from creation: the target runs from the call.
    pub fn is_waiting(&self) -> bool {
        self.is_open() && self.attached.is_empty() && self.first_on_scene_ms.is_none()
    }

    /// Units the response plan asks for: the sum of its groups' counts.
    pub fn required_units(&self) -> u32 {
        self.requirements.iter().map(|g| g.count).sum()
    }

    /// Still needs units: open, with fewer units attached (plus those that attended and
    /// left) than its plan asks for. This is what a dispatcher means by "pending": a
    /// firearms job with one of its two armed cars is still short. Decided on counts, not
    /// on which group each unit fills, so that a change to a unit's attributes (which does
    /// not touch the incident) never changes the queue behind its back; which group is
    /// unfilled is worked out when a page of the queue is read.
    pub fn is_pending(&self) -> bool {
        self.is_open() && (self.attached.len() as u64 + u64::from(self.cleared)) < u64::from(self.required_units())
    }

    /// The key that orders the pending queue: grade, then age, then id.
    pub fn pending_key(&self) -> PendingKey {
        (self.grade.index() as u8, self.created_ms, self.incident_id.clone())
    }
}

/// (grade index, created_ms, incident_id): the pending queue's order, most urgent grade
/// first, oldest first within a grade, ids breaking ties so the order is total.
pub type PendingKey = (u8, i64, String);

/// Incidents by id (ordered, so ListIncidents pages by id), the counter behind server-chosen
/// ids, and per-grade counts maintained on every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incidents {
    /// Persistent: a snapshot copies it in O(1) under the read lock and walks it after.
    by_id: OrdMap<String, Incident>,
    /// The number the next server-chosen id tries first.
    pub next_number: u64,
    open_by_grade: [u64; N_GRADES],
    /// Waiting incidents by grade, oldest first: (created_ms, id).
    waiting: [BTreeSet<(i64, String)>; N_GRADES],
    /// Closed incidents held, closed longest ago first: (closed_ms, id). Retention takes
    /// them out of memory from the front.
    closed: BTreeSet<(i64, String)>,
    /// Incidents that still need units ([`Incident::is_pending`]), in queue order. Kept as
    /// incidents change, so ListPending reads a page from it without scanning incidents.
    pending: BTreeSet<PendingKey>,
}

impl Incidents {
    pub fn new() -> Self {
        Self { next_number: 1, ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, incident_id: &str) -> Option<&Incident> {
        self.by_id.get(incident_id)
    }

    pub fn contains(&self, incident_id: &str) -> bool {
        self.by_id.contains_key(incident_id)
    }

    /// Incidents with an id greater than `after`, in id order.
    pub fn after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a Incident> + 'a {
        use std::ops::Bound;
        self.by_id.range::<_, str>((Bound::Excluded(after), Bound::Unbounded)).map(|(_, i)| i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Incident> {
        self.by_id.values()
    }

    /// Every incident, in id order, as a copy that shares the map's structure: O(1).
    pub fn shared(&self) -> OrdMap<String, Incident> {
        self.by_id.clone()
    }

    /// A fresh server-chosen id, `INC-000001` onwards, skipping ids a client already took.
    /// Advances the counter: call only when the command will succeed.
    pub fn allocate_id(&mut self) -> String {
        loop {
            let candidate = format!("INC-{:06}", self.next_number);
            self.next_number += 1;
            if !self.by_id.contains_key(&candidate) {
                return candidate;
            }
        }
    }

    /// Open incidents by grade (index: [`Grade::index`]).
    pub fn open_by_grade(&self) -> [u64; N_GRADES] {
        self.open_by_grade
    }

    /// Creation time of the oldest waiting incident of each grade.
    pub fn oldest_waiting_ms(&self) -> [Option<i64>; N_GRADES] {
        std::array::from_fn(|g| self.waiting[g].first().map(|(created, _)| *created))
    }

    /// Pending incidents after `after` (all when `None`), in queue order.
    pub fn pending_after<'a>(&'a self, after: Option<&PendingKey>) -> impl Iterator<Item = &'a Incident> + 'a {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
        self.pending
            .range((start, Bound::Unbounded))
            .map(|(_, _, id)| self.by_id.get(id).expect("the pending queue lists held incidents"))
    }

    /// How many incidents still need units.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Inserts or replaces an incident, keeping the counts in step.
    pub fn put(&mut self, incident: Incident) {
        if let Some(old) = self.by_id.get(&incident.incident_id) {
            let old = old.clone();
            self.uncount(&old);
        }
        self.count(&incident);
        self.by_id.insert(incident.incident_id.clone(), incident);
    }

    /// Changes one incident in place through `f`, keeping the counts in step.
    pub fn update<R>(&mut self, incident_id: &str, f: impl FnOnce(&mut Incident) -> R) -> Option<R> {
        let mut incident = self.by_id.remove(incident_id)?;
        self.uncount(&incident);
        let out = f(&mut incident);
        self.count(&incident);
        self.by_id.insert(incident.incident_id.clone(), incident);
        Some(out)
    }

    /// Closed incidents held in memory.
    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// (closed_ms, id) of the closed incident closed longest ago.
    pub fn oldest_closed(&self) -> Option<(i64, &str)> {
        self.closed.first().map(|(t, id)| (*t, id.as_str()))
    }

    /// Takes an incident out of memory, keeping the counts in step.
    pub fn remove(&mut self, incident_id: &str) -> Option<Incident> {
        let incident = self.by_id.remove(incident_id)?;
        self.uncount(&incident);
        Some(incident)
    }

    fn count(&mut self, i: &Incident) {
        if i.is_open() {
            self.open_by_grade[i.grade.index()] += 1;
        } else {
            self.closed.insert((i.closed_ms.unwrap_or(i.created_ms), i.incident_id.clone()));
        }
        if i.is_waiting() {
            self.waiting[i.grade.index()].insert((i.created_ms, i.incident_id.clone()));
        }
        if i.is_pending() {
            self.pending.insert(i.pending_key());
        }
    }

    fn uncount(&mut self, i: &Incident) {
        if i.is_open() {
            self.open_by_grade[i.grade.index()] -= 1;
        } else {
            self.closed.remove(&(i.closed_ms.unwrap_or(i.created_ms), i.incident_id.clone()));
        }
        if i.is_waiting() {
            self.waiting[i.grade.index()].remove(&(i.created_ms, i.incident_id.clone()));
        }
        if i.is_pending() {
            self.pending.remove(&i.pending_key());
        }
    }

    /// Recounts from scratch and compares with the maintained counts; for tests and the
    /// simulator's invariants.
    pub fn check_counts(&self) -> Result<(), String> {
        let mut fresh = Self { next_number: self.next_number, ..Self::default() };
        for i in self.by_id.values() {
            fresh.count(i);
        }
        if fresh.open_by_grade != self.open_by_grade {
            return Err(format!(
                "open counts {:?} differ from a recount {:?}",
                self.open_by_grade, fresh.open_by_grade
            ));
        }
        if fresh.waiting != self.waiting {
            return Err("waiting incidents differ from a recount".into());
        }
        if fresh.pending != self.pending {
            return Err("pending queue differs from a recount".into());
        }
        if fresh.closed != self.closed {
            return Err("closed incidents differ from a recount".into());
        }
        Ok(())
    }
}
