//! Request bytes → validated commands.
//!
//! The canonical encoding of the decoded request (prost writes fields in number order and
//! drops unknown ones) is what the journal stores and what a retry is compared with, so two
//! encodings of the same request by different clients are the same request.

use std::sync::Arc;

use prost::Message;

use crate::caps::Vocabulary;
use crate::command::{Command, IncidentChange, Method, NewIncident, RequirementGroup};
use crate::error::{CoreError, CoreResult};
use crate::plans::{ResponsePlan, TimeWindow};
use crate::store::UnitSpec;
use crate::time;
use crate::types::{Agency, Grade, Status};
use crate::wire::{pb, validate};

/// A decoded command with what the journal and the idempotency table need.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub request_id: String,
    pub command: Command,
    /// The canonical encoding of the request.
    pub canonical: Vec<u8>,
}

/// Parses `bytes` as the request message `M`, naming the message in the error.
pub fn message<M: Message + Default>(bytes: &[u8], name: &str) -> CoreResult<M> {
    M::decode(bytes).map_err(|e| CoreError::invalid("request", format!("not a valid dispatch.v1.{name}: {e}")))
}

fn refuse_if(violations: validate::Violations) -> CoreResult<()> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(CoreError::InvalidFields(violations))
    }
}

/// Unix ms of a validated timestamp.
pub fn timestamp_ms(ts: &prost_types::Timestamp) -> Option<i64> {
    time::from_seconds_nanos(ts.seconds, ts.nanos)
}

/// The requirement groups of a validated request.
pub fn groups(groups: &[pb::RequirementGroup]) -> CoreResult<Vec<RequirementGroup>> {
    groups
        .iter()
        .map(|g| {
            Ok(RequirementGroup {
                agency: Agency::from_i32(g.agency, "agency")?,
                unit_types: g.unit_types.clone(),
                capabilities: g.capabilities.clone(),
                count: g.count,
                arrive_together: g.arrive_together,
            })
        })
        .collect()
}

fn location(l: &Option<pb::Location>) -> (f64, f64) {
    l.as_ref().map_or((f64::NAN, f64::NAN), |l| (l.lat, l.lon))
}

/// Decodes and validates the request of `method`.
pub fn command(method: Method, bytes: &[u8], vocab: &Vocabulary) -> CoreResult<Decoded> {
    match method {
        Method::UpsertUnit => {
            let r: pb::UpsertUnitRequest = message(bytes, "UpsertUnitRequest")?;
            refuse_if(validate::upsert_unit(&r, vocab))?;
            let u = r.unit.clone().unwrap_or_default();
            let spec = UnitSpec {
                agency: Agency::from_i32(u.agency, "unit.agency")?,
                unit_type: u.unit_type,
                capabilities: u.capabilities,
                home_area: (!u.home_area.is_empty()).then_some(u.home_area),
                shift_start_ms: u.shift_start.as_ref().and_then(timestamp_ms),
                shift_end_ms: u.shift_end.as_ref().and_then(timestamp_ms),
                status: None,
            };
            Ok(decoded(r.request_id.clone(), Command::UpsertUnit { unit_id: u.unit_id, spec }, &r))
        }
        Method::SetUnitStatus => {
            let r: pb::SetUnitStatusRequest = message(bytes, "SetUnitStatusRequest")?;
            refuse_if(validate::set_unit_status(&r))?;
            let status = Status::from_i32(r.status, "status")?;
            Ok(decoded(r.request_id.clone(), Command::SetUnitStatus { unit_id: r.unit_id.clone(), status }, &r))
        }
        Method::CreateIncident => {
            let r: pb::CreateIncidentRequest = message(bytes, "CreateIncidentRequest")?;
            refuse_if(validate::create_incident(&r, vocab))?;
            let (lat, lon) = location(&r.location);
            let new = NewIncident {
                incident_id: (!r.incident_id.is_empty()).then(|| r.incident_id.clone()),
                grade: Grade::from_i32(r.grade, "grade")?,
                incident_type: r.incident_type.clone(),
                lat,
                lon,
                area: r.area.clone(),
                requirements: groups(&r.requirements)?,
            };
            Ok(decoded(r.request_id.clone(), Command::CreateIncident(new), &r))
        }
        Method::UpdateIncident => {
            let r: pb::UpdateIncidentRequest = message(bytes, "UpdateIncidentRequest")?;
            refuse_if(validate::update_incident(&r, vocab))?;
            let change = IncidentChange {
                grade: r.grade.map(|g| Grade::from_i32(g, "grade")).transpose()?,
                incident_type: r.incident_type.clone(),
                location: r.location.as_ref().map(|l| (l.lat, l.lon)),
                area: r.area.clone(),
                requirements: r.requirements.as_ref().map(|g| groups(&g.groups)).transpose()?,
            };
            let command = Command::UpdateIncident { incident_id: r.incident_id.clone(), change };
            Ok(decoded(r.request_id.clone(), command, &r))
        }
        Method::CloseIncident => {
            let r: pb::CloseIncidentRequest = message(bytes, "CloseIncidentRequest")?;
            refuse_if(validate::close_incident(&r))?;
            Ok(decoded(r.request_id.clone(), Command::CloseIncident { incident_id: r.incident_id.clone() }, &r))
        }
        Method::AssignUnits => {
            let r: pb::AssignUnitsRequest = message(bytes, "AssignUnitsRequest")?;
            refuse_if(validate::assign_units(&r))?;
            let command = Command::AssignUnits {
                incident_id: r.incident_id.clone(),
                unit_ids: r.unit_ids.clone(),
                allow_diversion: r.allow_diversion,
            };
            Ok(decoded(r.request_id.clone(), command, &r))
        }
        Method::UpsertPerson | Method::UpsertShift | Method::BookCrew => {
            let (request_id, command, canonical) = crate::duty::wire::decode(method, bytes, vocab)?;
            Ok(Decoded { request_id, command: Command::Duty(command), canonical })
        }
        Method::Tick => Ok(Decoded { request_id: String::new(), command: Command::Tick, canonical: Vec::new() }),
        Method::ReplaceResponsePlans => {
            let r: pb::ReplaceResponsePlansRequest = message(bytes, "ReplaceResponsePlansRequest")?;
            refuse_if(validate::replace_response_plans(&r))?;
            let plans = r.plans.iter().map(plan).collect::<CoreResult<Vec<_>>>()?;
            let command = Command::ReplaceResponsePlans { plans, source: r.source.clone() };
            Ok(decoded(r.request_id.clone(), command, &r))
        }
    }
}

/// A response plan of a request whose enums and window `validate` has checked; the rest
/// (names, groups, ties) is the plan book's to check.
pub fn plan(p: &pb::ResponsePlan) -> CoreResult<ResponsePlan> {
    let window = p.time_window.map(|w| TimeWindow {
        // Checked to lie below MINUTES_PER_DAY by validation.
        start_minute: w.start_minute as u16,
        end_minute: w.end_minute as u16,
    });
    Ok(ResponsePlan {
        name: p.name.clone(),
        incident_type: p.incident_type.clone(),
        grade: (p.grade != 0).then(|| Grade::from_i32(p.grade, "grade")).transpose()?,
        area: (!p.area.is_empty()).then(|| p.area.clone()),
        window,
        groups: Arc::from(groups(&p.groups)?),
    })
}

fn decoded<M: Message>(request_id: String, command: Command, request: &M) -> Decoded {
    Decoded { request_id, command, canonical: request.encode_to_vec() }
}
