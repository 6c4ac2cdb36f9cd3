//! State → `dispatch.v1` messages. Kept free of decisions: what to answer was decided by
//! the state machine; this only writes it down.

use prost::Message;

use crate::command::{Method, RequirementGroup};
use crate::plans::{PlanBook, ResponsePlan};
use crate::rank::Candidate;
use crate::state::{Incident, Machine, Reply};
use crate::store::UnitStore;
use crate::team::Team;
use crate::time;
use crate::units::NO_TIME;
use crate::wire::pb;

/// A Timestamp for Unix ms.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    let (seconds, nanos) = time::to_seconds_nanos(ms);
    prost_types::Timestamp { seconds, nanos }
}

fn optional_timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms != NO_TIME).then(|| timestamp(ms))
}

/// One unit as the API shows it.
pub fn unit(store: &UnitStore, slot: u32) -> pb::Unit {
    let t = store.table();
    let s = slot as usize;
    pb::Unit {
        unit_id: t.ids[s].to_string(),
        agency: t.agency[s] as i32,
        unit_type: store.unit_type_name(t.unit_type[s]).to_owned(),
        capabilities: store.vocabulary().decode(t.caps[s]),
        home_area: store.area_name(t.home_area[s]).unwrap_or_default().to_owned(),
        shift_start: optional_timestamp(t.shift_start_ms[s]),
        shift_end: optional_timestamp(t.shift_end_ms[s]),
        status: t.status[s] as i32,
        location: t.has_location(slot).then(|| pb::Location { lat: t.lat[s], lon: t.lon[s] }),
        location_time: optional_timestamp(t.location_ms[s]),
        incident_id: t.incident[s].as_deref().unwrap_or_default().to_owned(),
    }
}

pub fn group(g: &RequirementGroup) -> pb::RequirementGroup {
    pb::RequirementGroup {
        agency: g.agency as i32,
        unit_types: g.unit_types.clone(),
        capabilities: g.capabilities.clone(),
        count: g.count,
        arrive_together: g.arrive_together,
    }
}

/// The response plans in force as the API shows them.
pub fn plan_set(book: &PlanBook) -> pb::ResponsePlanSet {
    pb::ResponsePlanSet {
        plans: book.plans().iter().map(plan).collect(),
        source: book.source.clone(),
        install_time: book.installed_ms.map(timestamp),
    }
}

/// The command installing `plans` read from `source`, without its request_id (the caller
/// chooses one).
pub fn replace_plans_request(plans: &[ResponsePlan], source: &str) -> Vec<u8> {
    pb::ReplaceResponsePlansRequest {
        request_id: String::new(),
        plans: plans.iter().map(plan).collect(),
        source: source.to_owned(),
    }
    .encode_to_vec()
}

pub fn plan(p: &ResponsePlan) -> pb::ResponsePlan {
    pb::ResponsePlan {
        name: p.name.clone(),
        incident_type: p.incident_type.clone(),
        grade: p.grade.map_or(0, |g| g as i32),
        area: p.area.clone().unwrap_or_default(),
        time_window: p.window.map(|w| pb::TimeOfDayWindow {
            start_minute: u32::from(w.start_minute),
            end_minute: u32::from(w.end_minute),
        }),
        groups: p.groups.iter().map(group).collect(),
    }
}

/// One incident as the API shows it.
pub fn incident(store: &UnitStore, i: &Incident) -> pb::Incident {
    let ids = |slots: &[u32]| slots.iter().map(|&s| store.table().ids[s as usize].to_string()).collect();
    pb::Incident {
        incident_id: i.incident_id.clone(),
        grade: i.grade as i32,
        incident_type: i.incident_type.clone(),
        location: Some(pb::Location { lat: i.lat, lon: i.lon }),
        area: i.area.clone(),
        requirements: i.requirements.iter().map(group).collect(),
        status: i.status as i32,
        assigned_unit_ids: ids(&i.assigned),
        attached_unit_ids: ids(&i.attached),
        create_time: Some(timestamp(i.created_ms)),
        first_assigned_time: i.first_assigned_ms.map(timestamp),
        first_on_scene_time: i.first_on_scene_ms.map(timestamp),
        close_time: i.closed_ms.map(timestamp),
        response_plan: i.response_plan.clone(),
    }
}

pub fn candidate(c: &Candidate) -> pb::Candidate {
    let b = c.breakdown;
    pb::Candidate {
        unit_id: c.unit_id.clone(),
        eta_seconds: c.eta_seconds,
        distance_m: c.distance_m,
        score: c.score,
        breakdown: Some(pb::ScoreBreakdown {
            mobilisation_seconds: b.mobilisation_seconds,
            travel_seconds: b.travel_seconds,
            cross_area_cost_seconds: b.cross_area_cost,
            shift_overrun_cost_seconds: b.shift_overrun_cost,
            specialist_cost_seconds: b.specialist_cost,
            stale_position_cost_seconds: b.stale_position_cost,
            diversion_cost_seconds: b.diversion_cost,
        }),
        position_age_seconds: c.position_age_seconds,
        diverted_from_incident_id: c.diverted_from.clone().unwrap_or_default(),
    }
}

/// A recommended team; `explain` adds each member's passed-over unit.
pub fn team(t: &Team, explain: bool) -> (Vec<pb::TeamMember>, Vec<pb::Shortfall>) {
    let members = t
        .members
        .iter()
        .map(|m| {
            let c = candidate(&m.candidate);
            pb::TeamMember {
                unit_id: c.unit_id,
                group_index: m.group as u32,
                eta_seconds: c.eta_seconds,
                score: c.score,
                distance_m: c.distance_m,
                breakdown: c.breakdown,
                position_age_seconds: c.position_age_seconds,
                next_best: m.next_best.as_ref().filter(|_| explain).map(|p| pb::PassedOver {
                    unit_id: p.unit_id.clone(),
                    eta_seconds: p.eta_seconds,
                    reason: match p.other_group {
                        Some(_) => pb::PassedOverReason::InOtherGroup,
                        None => pb::PassedOverReason::LaterArrival,
                    } as i32,
                    other_group_index: p.other_group.unwrap_or(0) as u32,
                }),
            }
        })
        .collect();
    let shortfalls = t
        .shortfalls
        .iter()
        .map(|s| pb::Shortfall { group_index: s.group as u32, missing: s.missing, reason: s.reason as i32 })
        .collect();
    (members, shortfalls)
}

fn incident_of(m: &Machine, incident_id: &str) -> Option<pb::Incident> {
    m.incidents().get(incident_id).map(|i| incident(m.units(), i))
}

/// The encoded response of an applied command, read from the state just after it.
pub fn reply(m: &Machine, method: Method, r: &Reply) -> Vec<u8> {
    let store = m.units();
    match r {
        Reply::Unit { slot, created, rostered } => pb::UpsertUnitResponse {
            unit: Some(unit(store, *slot)),
            created: *created,
            roster_overridden_fields: if *rostered {
                ["capabilities", "shift_start", "shift_end"].map(String::from).to_vec()
            } else {
                Vec::new()
            },
        }
        .encode_to_vec(),
        Reply::Duty(d) => crate::duty::wire::reply(m.duty(), store, d),
        Reply::Status { slot, released } => pb::SetUnitStatusResponse {
            unit: Some(unit(store, *slot)),
            released_incident_id: released.clone().unwrap_or_default(),
        }
        .encode_to_vec(),
        Reply::Incident { incident_id } => {
            let incident = incident_of(m, incident_id);
            match method {
                Method::CreateIncident => pb::CreateIncidentResponse { incident }.encode_to_vec(),
                Method::UpdateIncident => pb::UpdateIncidentResponse { incident }.encode_to_vec(),
                _ => pb::AssignUnitsResponse { incident, diversions: Vec::new() }.encode_to_vec(),
            }
        }
        Reply::Assigned { incident_id, diversions } => pb::AssignUnitsResponse {
            incident: incident_of(m, incident_id),
            diversions: diversions
                .iter()
                .map(|(slot, from)| pb::Diversion {
                    unit_id: store.table().ids[*slot as usize].to_string(),
                    from_incident_id: from.clone(),
                })
                .collect(),
        }
        .encode_to_vec(),
        Reply::Closed { incident_id, released } => pb::CloseIncidentResponse {
            incident: incident_of(m, incident_id),
            released_unit_ids: released.iter().map(|&s| store.table().ids[s as usize].to_string()).collect(),
        }
        .encode_to_vec(),
        Reply::Tick { time_ms, expired, archived, overdue, roster } => pb::ClockTick {
            time: Some(timestamp(*time_ms)),
            expired_request_ids: *expired,
            archived_incidents: *archived,
            overdue_acknowledgements: overdue
                .iter()
                .map(|o| pb::OverdueAcknowledgement {
                    unit_id: store.table().ids[o.slot as usize].to_string(),
                    incident_id: o.incident_id.clone(),
                    grade: o.grade as i32,
                    deadline: Some(timestamp(o.deadline_ms)),
                    proposed: o.proposed.as_ref().map(candidate),
                })
                .collect(),
            roster_changes: roster.iter().map(|c| crate::duty::wire::roster_change(c, store)).collect(),
        }
        .encode_to_vec(),
        Reply::Plans => {
            pb::ReplaceResponsePlansResponse { response_plans: Some(plan_set(m.response_plans())) }.encode_to_vec()
        }
    }
}
