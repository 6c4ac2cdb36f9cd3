//! The read RPCs, request bytes to response bytes: nothing is built in Python for them.
//! Reads change nothing; a recommendation's "now" is the caller's argument.

use prost::Message;

use crate::error::{CoreError, CoreResult};
use crate::rank::Query;
use crate::state::{queue, Machine};
use crate::store::LocationReport;
use crate::team;
use crate::types::{Agency, Grade, IncidentStatus, Status};
use crate::wire::decode::{groups, message};
use crate::wire::limits::{DEFAULT_K, MAX_K};
use crate::wire::{encode, pb, token, validate};

fn refuse_if(violations: validate::Violations) -> CoreResult<()> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(CoreError::InvalidFields(violations))
    }
}

/// The response plans in force.
pub fn get_response_plans(m: &Machine, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let _: pb::GetResponsePlansRequest = message(bytes, "GetResponsePlansRequest")?;
    Ok(pb::GetResponsePlansResponse { response_plans: Some(encode::plan_set(m.response_plans())) }.encode_to_vec())
}

pub fn get_unit(m: &Machine, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let r: pb::GetUnitRequest = message(bytes, "GetUnitRequest")?;
    refuse_if(validate::get_unit(&r))?;
    let slot = m.units().slot(&r.unit_id)?;
    Ok(pb::GetUnitResponse { unit: Some(encode::unit(m.units(), slot)) }.encode_to_vec())
}

/// One page of units in unit_id order, walking the id index from the token: a page costs
/// the units it reads, not the fleet.
pub fn list_units(m: &Machine, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let r: pb::ListUnitsRequest = message(bytes, "ListUnitsRequest")?;
    let (violations, page_size, after) = validate::list_units(&r);
    refuse_if(violations)?;
    let statuses: Vec<Status> = r.statuses.iter().filter_map(|&s| Status::from_i32(s, "statuses").ok()).collect();
    let agencies: Vec<Agency> = r.agencies.iter().filter_map(|&a| Agency::from_i32(a, "agencies").ok()).collect();
    let store = m.units();
    let area = (!r.home_area.is_empty()).then_some(r.home_area.as_str());
    let mut matching = store.units_after(&after, &statuses, &agencies, area);
    let units: Vec<pb::Unit> = matching.by_ref().take(page_size).map(|s| encode::unit(store, s)).collect();
    let next_page_token = match (matching.next(), units.last()) {
        (Some(_), Some(last)) => token::encode(token::Listing::Units, &last.unit_id),
        _ => String::new(),
    };
    Ok(pb::ListUnitsResponse { units, next_page_token }.encode_to_vec())
}

pub fn get_incident(m: &Machine, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let r: pb::GetIncidentRequest = message(bytes, "GetIncidentRequest")?;
    refuse_if(validate::get_incident(&r))?;
    let i = m.incidents().get(&r.incident_id).ok_or_else(|| CoreError::UnknownIncident(r.incident_id.clone()))?;
    Ok(pb::GetIncidentResponse { incident: Some(encode::incident(m.units(), i)) }.encode_to_vec())
}

/// One page of incidents in incident_id order, walking the ordered index from the token.
pub fn list_incidents(m: &Machine, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let r: pb::ListIncidentsRequest = message(bytes, "ListIncidentsRequest")?;
    let (violations, page_size, after) = validate::list_incidents(&r);
    refuse_if(violations)?;
    let statuses: Vec<IncidentStatus> =
        r.statuses.iter().filter_map(|&s| IncidentStatus::from_i32(s, "statuses").ok()).collect();
    let grades: Vec<Grade> = r.grades.iter().filter_map(|&g| Grade::from_i32(g, "grades").ok()).collect();
    let mut incidents = Vec::new();
    let mut next_page_token = String::new();
    for i in m.incidents().after(&after) {
        if (!statuses.is_empty() && !statuses.contains(&i.status)) || (!grades.is_empty() && !grades.contains(&i.grade))
        {
            continue;
        }
        if incidents.len() == page_size {
            next_page_token = token::encode(
                token::Listing::Incidents,
                &incidents.last().map_or(String::new(), |x: &pb::Incident| x.incident_id.clone()),
            );
            break;
        }
        incidents.push(encode::incident(m.units(), i));
    }
    Ok(pb::ListIncidentsResponse { incidents, next_page_token }.encode_to_vec())
}

/// ListPending: one page of the pending queue as of `now_ms`, walking the queue's ordered
/// index from the token. Each incident's unfilled group and best candidate are worked out
/// for the page only. The grade and area filters skip within the queue.
pub fn list_pending(m: &Machine, bytes: &[u8], now_ms: i64) -> CoreResult<Vec<u8>> {
    let r: pb::ListPendingRequest = message(bytes, "ListPendingRequest")?;
    let (violations, page_size, after) = validate::list_pending(&r);
    refuse_if(violations)?;
    let grades: Vec<Grade> = r.grades.iter().filter_map(|&g| Grade::from_i32(g, "grades").ok()).collect();
    let store = m.units();
    let mut incidents = Vec::new();
    let mut next_page_token = String::new();
    let mut last = None;
    for i in m.incidents().pending_after(after.as_ref()) {
        if (!grades.is_empty() && !grades.contains(&i.grade)) || (!r.area.is_empty() && i.area != r.area) {
            continue;
        }
        if incidents.len() == page_size {
            if let Some(key) = &last {
                next_page_token = token::encode(token::Listing::Pending, &token::pending_cursor(key));
            }
            break;
        }
        let group = queue::first_unfilled_group(store, i);
        let best = group.and_then(|g| queue::best_candidate(store, i, g, now_ms, r.include_diversions));
        incidents.push(pb::PendingIncident {
            incident: Some(encode::incident(store, i)),
            wait_seconds: (now_ms - i.created_ms).max(0) as f64 / 1000.0,
            required_units: i.required_units(),
            attached_units: i.attached.len() as u32 + i.cleared,
            unfilled_group_index: group.map(|g| g as u32),
            best_candidate: best.as_ref().map(encode::candidate),
        });
        last = Some(i.pending_key());
    }
    Ok(pb::ListPendingResponse { incidents, next_page_token }.encode_to_vec())
}

/// Fills a recommendation for one validated request at `now_ms`.
fn recommend_one(m: &Machine, r: &pb::RecommendUnitsRequest, now_ms: i64) -> CoreResult<pb::RecommendUnitsResponse> {
    use pb::recommend_units_request::Target;
    let mut out = pb::RecommendUnitsResponse::default();
    let (lat, lon, grade, area, plan) = match &r.target {
        Some(Target::IncidentId(id)) => {
            let i = m.incidents().get(id).ok_or_else(|| CoreError::UnknownIncident(id.clone()))?;
            out.incident_id.clone_from(id);
            (i.lat, i.lon, i.grade, i.area.clone(), i.requirements.to_vec())
        }
        Some(Target::AdHoc(t)) => {
            let (lat, lon) = t.location.as_ref().map_or((f64::NAN, f64::NAN), |l| (l.lat, l.lon));
            (lat, lon, Grade::from_i32(t.grade, "ad_hoc.grade")?, t.area.clone(), groups(&t.requirements)?)
        }
        None => return Err(CoreError::invalid("target", "set incident_id or ad_hoc")),
    };
    let statuses: Vec<Status> = if r.eligible_statuses.is_empty() {
        vec![Status::Available]
    } else {
        r.eligible_statuses.iter().map(|&s| Status::from_i32(s, "eligible_statuses")).collect::<CoreResult<_>>()?
    };
    for (i, g) in plan.iter().enumerate() {
        let k = if r.k > 0 { r.k as usize } else { MAX_K.min(DEFAULT_K.max(g.count as usize)) };
        let query = Query {
            lat,
            lon,
            now_ms,
            k,
            grade,
            required: g.capabilities.clone(),
            agencies: vec![g.agency],
            statuses: statuses.clone(),
            unit_types: g.unit_types.clone(),
            area: (!area.is_empty()).then(|| area.clone()),
            by_eta: false,
            diversions: r.include_diversions,
        };
        let ranked = m.units().rank(&query).map_err(|e| e.within(&format!("requirements[{i}].")))?;
        out.groups.push(pb::GroupRecommendation {
            group_index: i as u32,
            group: Some(encode::group(g)),
            candidates: ranked.iter().map(encode::candidate).collect(),
        });
    }
    // Every group's filters were accepted above, so the team's queries cannot fail on them.
    let base = Query {
        lat,
        lon,
        now_ms,
        k: 1,
        grade,
        required: Vec::new(),
        agencies: Vec::new(),
        statuses,
        unit_types: Vec::new(),
        area: (!area.is_empty()).then_some(area),
        by_eta: true,
        // The team never takes a unit from another incident: a diversion is the
        // dispatcher's explicit choice among the groups' candidates (AssignUnits with
        // allow_diversion), and a team chosen by ETA would otherwise prefer units already
        // moving, whatever the diversion cost.
        diversions: false,
    };
    let team = team::recommend(m.units(), &base, &plan, r.max_eta_seconds, r.explain)?;
    out.team_eta_seconds = team.eta_seconds();
    (out.team, out.shortfalls) = encode::team(&team, r.explain);
    Ok(out)
}

/// RecommendUnits: ranked candidates per requirement group, as of `now_ms`.
pub fn recommend(m: &Machine, bytes: &[u8], now_ms: i64) -> CoreResult<Vec<u8>> {
    let r: pb::RecommendUnitsRequest = message(bytes, "RecommendUnitsRequest")?;
    refuse_if(validate::recommend_units(&r, m.vocabulary()))?;
    Ok(recommend_one(m, &r, now_ms)?.encode_to_vec())
}

/// BatchRecommendUnits: every query answered against the same state.
pub fn batch_recommend(m: &Machine, bytes: &[u8], now_ms: i64) -> CoreResult<Vec<u8>> {
    let r: pb::BatchRecommendUnitsRequest = message(bytes, "BatchRecommendUnitsRequest")?;
    refuse_if(validate::batch_recommend_units(&r, m.vocabulary()))?;
    let results = r
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            recommend_one(m, q, now_ms).map_err(|e| match e {
                CoreError::InvalidArgument { field, reason } => {
                    CoreError::InvalidArgument { field: format!("queries[{i}].{field}"), reason }
                }
                other => other,
            })
        })
        .collect::<CoreResult<_>>()?;
    Ok(pb::BatchRecommendUnitsResponse { results }.encode_to_vec())
}

/// UpdateLocations (one batch of a stream when `batch` > 0): validated for shape, then
/// applied ping by ping at arrival time `now_ms`. A streamed batch is a
/// StreamLocationsRequest, which repeats UpdateLocationsRequest field for field, so both
/// decode as the latter; only the name in a decoding error says which the client sent.
pub fn update_locations(m: &mut Machine, bytes: &[u8], batch: u64, now_ms: i64) -> CoreResult<LocationReport> {
    let name = if batch > 0 { "StreamLocationsRequest" } else { "UpdateLocationsRequest" };
    let r: pb::UpdateLocationsRequest = message(bytes, name)?;
    refuse_if(validate::update_locations(&r, batch))?;
    m.update_locations(&r.unit_ids, &r.lat, &r.lon, &r.time_unix_ms, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::RankConfig;
    use crate::store::UnitStore;

    /// StreamLocations' messages repeat UpdateLocations' field for field: the same bytes
    /// decode as either, which is what lets a streamed batch go through `update_locations`.
    #[test]
    fn stream_locations_messages_share_update_locations_bytes() {
        let streamed = pb::StreamLocationsRequest {
            unit_ids: vec!["CW-IRV-1".into(), "MD21".into()],
            lat: vec![51.5, 51.6],
            lon: vec![-0.1, -0.2],
            time_unix_ms: vec![1_764_000_000_000, 1_764_000_000_001],
        };
        let bytes = streamed.encode_to_vec();
        let unary = pb::UpdateLocationsRequest::decode(bytes.as_slice()).expect("same wire shape");
        assert_eq!(
            (unary.unit_ids, unary.lat, unary.lon, unary.time_unix_ms),
            (streamed.unit_ids, streamed.lat, streamed.lon, streamed.time_unix_ms)
        );

        let totals = pb::UpdateLocationsResponse {
            applied: 3,
            skipped_unknown_unit: 1,
            skipped_bad_coordinate: 2,
            skipped_stale: 4,
            batches: 5,
            skipped_bad_time: 6,
            skipped_future: 7,
        };
        let again = pb::StreamLocationsResponse::decode(totals.encode_to_vec().as_slice()).expect("same wire shape");
        assert_eq!(again.encode_to_vec(), totals.encode_to_vec());
        assert_eq!((again.applied, again.batches, again.skipped_future), (3, 5, 7));
    }

    #[test]
    fn a_malformed_streamed_batch_is_named_as_sent() {
        let mut m = Machine::new(UnitStore::new(RankConfig::default(), 0.01).expect("valid config"), 10);
        let err = update_locations(&mut m, &[0xff], 1, 0).expect_err("not a message");
        assert!(err.to_string().contains("StreamLocationsRequest"), "{err}");
        let err = update_locations(&mut m, &[0xff], 0, 0).expect_err("not a message");
        assert!(err.to_string().contains("UpdateLocationsRequest"), "{err}");
    }
}
